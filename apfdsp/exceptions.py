"""Exception and warning types raised by apfdsp.

Library code raises these with a message in the user's terms and never prints or exits; the command line
turns them into one line and exit code 2 (docs/architecture.md, sections 2.1 and 3.3).
"""

__all__ = ["ApfdspError", "ParameterError", "AudioError", "ModelFileError", "OutputError", "StabilityWarning"]


class ApfdspError(Exception):
    """Base class of every error apfdsp raises on purpose.

    Catch it to handle any of apfdsp's own errors (the command line maps it to exit code 2).

    Examples
    --------
    >>> from apfdsp import AllpassCascade, Delay
    >>> try:
    ...     AllpassCascade([Delay(1.0)], fs=-1)
    ... except ApfdspError as err:
    ...     print(type(err).__name__)
    ParameterError
    """


class ParameterError(ApfdspError, ValueError):
    """A parameter has a bad value (wrong range, shape, NaN/Inf, ...).

    Also a `ValueError`, so code written for numpy/scipy conventions catches it.

    Examples
    --------
    >>> from apfdsp import Allpass2
    >>> try:
    ...     Allpass2(1.5, 1000.0)
    ... except ValueError as err:
    ...     print(type(err).__name__, "pole_radius" in str(err))
    ParameterError True
    """


class AudioError(ApfdspError, ValueError):
    """Audio that cannot be used: unreadable, empty, silent, non-finite or too short.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import align
    >>> try:
    ...     align(np.zeros(4800), np.zeros(4800), fs=48000)
    ... except AudioError:
    ...     print("refused")
    refused
    """


class ModelFileError(ApfdspError, ValueError):
    """A model file is missing, corrupt, or of an unsupported format version.

    Examples
    --------
    >>> import os, tempfile
    >>> from apfdsp.io import load_model
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "model.json")
    >>> with open(path, "w") as f:
    ...     _ = f.write("{not json")
    >>> try:
    ...     load_model(path)
    ... except ModelFileError:
    ...     print("refused")
    refused
    >>> tmp.cleanup()
    """


class OutputError(ApfdspError, ValueError):
    """An output file cannot or must not be written (it is an input, or its directory is missing or read-only).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from apfdsp.io import write_audio
    >>> tmp = tempfile.TemporaryDirectory()
    >>> try:
    ...     write_audio(os.path.join(tmp.name, "no such directory", "out.wav"), np.zeros(10), 48000)
    ... except OutputError:
    ...     print("refused")
    refused
    >>> tmp.cleanup()
    """


class StabilityWarning(UserWarning):
    """A result is valid but numerically poor (poles very close to the unit circle, no convergence).

    A warning, not an error: the result is returned. Turn it into an error where that matters:

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", StabilityWarning)
    ...     try:
    ...         warnings.warn("poles at radius 0.99999", StabilityWarning)
    ...     except StabilityWarning as w:
    ...         print(w)
    poles at radius 0.99999
    """
