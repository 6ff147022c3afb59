"""Exception and warning types raised by apfdsp."""

__all__ = ["ApfdspError", "ParameterError", "AudioError", "ModelFileError", "OutputError", "StabilityWarning"]


class ApfdspError(Exception):
    """Base class of every error apfdsp raises on purpose."""


class ParameterError(ApfdspError, ValueError):
    """A parameter has a bad value (wrong range, shape, NaN/Inf, ...)."""


class AudioError(ApfdspError, ValueError):
    """Audio that cannot be used: unreadable, empty, silent, non-finite or too short."""


class ModelFileError(ApfdspError, ValueError):
    """A model file is missing, corrupt, or of an unsupported format version."""


class OutputError(ApfdspError, ValueError):
    """An output file cannot or must not be written (it is an input, or its directory is missing or read-only)."""


class StabilityWarning(UserWarning):
    """A result is valid but numerically poor (poles very close to the unit circle, no convergence)."""
