"""apfdsp: differentiable allpass-filter cascades that fit the phase of audio effects.

Fit an allpass cascade to a phase response (`fit_phase`), use it as plain scipy second-order
sections (`AllpassCascade.sos`), and align a dry signal with its wet twin.
"""

from .cascade import Allpass1, Allpass2, AllpassCascade, Delay, FilterState, Polarity
from .exceptions import ApfdspError, AudioError, ModelFileError, ParameterError, StabilityWarning
from .fit import FitResult, fit_phase
from .ranges import DEFAULT_RANGES, ParamRanges
from .version import __version__, show_versions

__all__ = [
    "Allpass1", "Allpass2", "AllpassCascade", "Delay", "FilterState", "Polarity",
    "ApfdspError", "AudioError", "ModelFileError", "ParameterError", "StabilityWarning",
    "FitResult", "fit_phase",
    "DEFAULT_RANGES", "ParamRanges",
    "__version__", "show_versions",
]
