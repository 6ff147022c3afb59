"""apfdsp: differentiable allpass-filter cascades that fit the phase of audio effects.

Fit an allpass cascade to a phase response (`fit_phase`) or to audio (`fit_audio`), align a dry
signal with its wet twin (`align`), and use the result as plain scipy second-order sections
(`AllpassCascade.sos`).

docs/architecture.md, section 1 maps the package (its layers and modules) and section 4 answers "where
is X?"; docs/maths.md states the mathematics the code implements.
"""

from .align import AlignResult, align, fit_alignment
from .cascade import Allpass1, Allpass2, AllpassCascade, Delay, FilterState, Polarity
from .exceptions import (
    ApfdspError,
    AudioError,
    ModelFileError,
    OutputError,
    ParameterError,
    StabilityWarning,
)
from .fit import FitResult, fit_phase
from .fit_audio import fit_audio
from .ranges import DEFAULT_RANGES, ParamRanges
from .resample import resample_cascade
from .version import __version__, show_versions

__all__ = [
    "AlignResult", "align", "fit_alignment",
    "Allpass1", "Allpass2", "AllpassCascade", "Delay", "FilterState", "Polarity",
    "ApfdspError", "AudioError", "ModelFileError", "OutputError", "ParameterError", "StabilityWarning",
    "FitResult", "fit_phase", "fit_audio",
    "DEFAULT_RANGES", "ParamRanges", "resample_cascade",
    "__version__", "show_versions",
]
