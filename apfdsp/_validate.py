"""Validators used at the public boundaries of apfdsp (never inside autograd-traced code).

Resource limits
---------------
Every size-like number apfdsp reads from a file or an option is checked against a bound before
anything is allocated, so that no crafted or damaged file can exhaust the machine. The bounds
(``LIMITS``; the tests check that this table shows them; ``apfdsp --help`` summarises them):

=========================  ==================  ==========================================================
limit                      value               applies to
=========================  ==================  ==========================================================
``sample_rate_hz``         1 .. 768000         every audio file and model file
``analysis_rate_hz``       8000 .. 768000      audio that is analysed (align, fit, mix)
``channels``               1 .. 64             every audio file
``analysis_samples``       33554432            frames x channels of one file read whole (align, fit, mix)
``analysis_expansion``     8                   beyond 4194304 samples: samples per byte of file, at most
``sections``               1 .. 64             allpass sections of a fit (``--sections``)
``max_delay_ms``           0 .. 60000          the latency searched (``--max-delay-ms``)
``model_bytes``            4194304             size of a model file (JSON)
``model_depth``            32                  nesting depth of a model file's JSON
``model_cells``            1024                cells of a model
``model_stretch``          1 .. 64             stretch factor K of one section
``model_sos_rows``         2048                second-order sections of a model (cells x stretch)
``model_delay_s``          60                  delay (or advance) of a model, in seconds
``model_pole_radius``      0.999999            largest pole radius of a model (a ring time of 1e6 samples)
=========================  ==================  ==========================================================

The boundary checks and the resource limits: docs/architecture.md, sections 2.1 and 3.3.
"""

import numbers

import numpy as np

from .exceptions import AudioError, ParameterError

__all__ = ["valid_fs", "valid_bool", "valid_audio", "valid_pair", "valid_sos", "valid_freqs", "valid_int",
           "valid_range", "LIMITS", "json_depth"]

#: The resource limits of the table above (name -> bound; pairs are inclusive ranges).
LIMITS = {
    "sample_rate_hz": (1, 768_000),
    "analysis_rate_hz": (8_000, 768_000),
    "channels": (1, 64),
    "analysis_samples": 2**25,
    "analysis_expansion": 8,
    "sections": (1, 64),
    "max_delay_ms": (0, 60_000),
    "model_bytes": 2**22,
    "model_depth": 32,
    "model_cells": 1024,
    "model_stretch": (1, 64),
    "model_sos_rows": 2048,
    "model_delay_s": 60,
    "model_pole_radius": 0.999999,
}
# Below this many samples a file read whole is never refused for its compression ratio.
PLAIN_SAMPLES = 2**22


def json_depth(value):
    """Nesting depth of a parsed JSON value (a scalar is 0), computed without recursion.

    Parameters
    ----------
    value : object
        A value as `json.loads` returns it (dicts, lists, scalars).

    Returns
    -------
    int
        0 for a scalar, 1 + the deepest child for a list or dict.

    Examples
    --------
    >>> json_depth(3), json_depth([1, {"a": [2]}])
    (0, 3)
    """
    depth, level = 0, [(value, 0)]
    while level:
        item, d = level.pop()
        depth = max(depth, d)
        if isinstance(item, dict):
            level.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            level.extend((v, d + 1) for v in item)
    return depth


def valid_fs(fs):
    """Return `fs` as a positive finite float, or raise `ParameterError`.

    Parameters
    ----------
    fs : float
        Sample rate in Hz.

    Returns
    -------
    float
        `fs` as a float.

    Examples
    --------
    >>> valid_fs(48000)
    48000.0
    >>> try:
    ...     valid_fs(float("nan"))
    ... except ValueError as err:
    ...     print(type(err).__name__)
    ParameterError
    """
    if isinstance(fs, bool) or not isinstance(fs, numbers.Real):
        raise ParameterError(f"fs must be a sample rate in Hz (a positive number), got {fs!r}")
    fs = float(fs)
    if not np.isfinite(fs) or fs <= 0:
        raise ParameterError(f"fs must be a positive finite sample rate in Hz, got {fs!r}")
    return fs


def valid_int(value, name, *, minimum=None, maximum=None):
    """Return `value` as an int within [minimum, maximum], or raise `ParameterError`.

    Parameters
    ----------
    value : int
        The value checked (bools and non-integral numbers are refused).
    name : str
        Name used in error messages.
    minimum, maximum : int, optional
        Inclusive bounds (default: none).

    Returns
    -------
    int
        `value` as a Python int.

    Examples
    --------
    >>> valid_int(8, "n_sections", minimum=1, maximum=64)
    8
    >>> for bad in (True, 2.5, 0):
    ...     try:
    ...         valid_int(bad, "n_sections", minimum=1)
    ...     except ValueError as err:
    ...         print(type(err).__name__)
    ParameterError
    ParameterError
    ParameterError
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ParameterError(f"{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ParameterError(f"{name} must be <= {maximum}, got {value!r}")
    return value


def valid_range(value, name, lo=-np.inf, hi=np.inf, *, lo_open=False, hi_open=False):
    """Return `value` as a float inside the interval [lo, hi] (ends optionally open); it must be finite.

    Parameters
    ----------
    value : float
        The value checked.
    name : str
        Name used in error messages.
    lo, hi : float
        Ends of the interval (default: the whole real line).
    lo_open, hi_open : bool
        Exclude that end from the interval.

    Returns
    -------
    float
        `value` as a float.

    Examples
    --------
    >>> valid_range(0.5, "warp", -1.0, 1.0, lo_open=True, hi_open=True)
    0.5
    >>> try:
    ...     valid_range(1.0, "warp", -1.0, 1.0, hi_open=True)
    ... except ValueError as err:
    ...     print(type(err).__name__)
    ParameterError
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ParameterError(f"{name} must be a finite real number, got {value!r}")
    value = float(value)
    below = value <= lo if lo_open else value < lo
    above = value >= hi if hi_open else value > hi
    if below or above:
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ParameterError(f"{name} must lie in {left}{lo}, {hi}{right}, got {value!r}")
    return value


def valid_bool(value, name):
    """Return `value` as a bool; only True and False (Python's or numpy's) are accepted.

    Parameters
    ----------
    value : bool or numpy.bool_
        The value checked.
    name : str
        Name used in error messages.

    Returns
    -------
    bool
        `value` as a Python bool.

    Examples
    --------
    >>> import numpy as np
    >>> valid_bool(np.True_, "causal")
    True
    >>> try:
    ...     valid_bool(1, "causal")
    ... except ValueError as err:
    ...     print(type(err).__name__)
    ParameterError
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def valid_audio(x, *, name="x", min_samples=1, allow_silent=False):
    """Check an audio array and return it as float64 with time on the last axis.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Audio samples.
    name : str
        Name used in error messages.
    min_samples : int
        Smallest acceptable number of samples.
    allow_silent : bool
        Accept an all-zero signal.

    Returns
    -------
    x : ndarray of float64

    Raises
    ------
    TypeError
        If `x` is not numeric.
    AudioError
        If `x` is empty, too short, not finite or silent.

    Examples
    --------
    >>> valid_audio([0.5, -0.25, 0.0]).dtype
    dtype('float64')
    >>> try:
    ...     valid_audio([0.0, 0.0])
    ... except ValueError as err:
    ...     print(type(err).__name__)
    AudioError
    """
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim == 0 or arr.size == 0:
        raise AudioError(f"{name} is empty: it holds no audio samples")
    if arr.shape[-1] < min_samples:
        raise AudioError(
            f"{name} is too short: {arr.shape[-1]} samples, at least {min_samples} are needed"
        )
    if not np.all(np.isfinite(arr)):
        raise AudioError(f"{name} contains NaN or Inf samples; clean the audio first")
    if not allow_silent and not np.any(arr):
        raise AudioError(f"{name} is silent (all samples are zero): there is nothing to analyse")
    return arr


def valid_pair(x, y, *, names=("x", "y"), min_samples=1, allow_silent=False, max_ndim=None):
    """Check two audio arrays that are analysed together; return them as float64 arrays.

    Each is checked by `valid_audio`; their channel shapes (all axes but the last, time) must broadcast:
    the same channels, or one of them mono.

    Parameters
    ----------
    x, y : array_like, shape (..., n)
        The two signals (the lengths may differ).
    names : tuple of str
        Their names in error messages (``("dry", "wet")`` for an alignment).
    min_samples : int
        Smallest acceptable number of samples of each.
    allow_silent : bool
        Accept all-zero signals.
    max_ndim : int, optional
        Largest number of dimensions; 2 accepts mono ``(n,)`` and ``(channels, n)`` arrays only.

    Returns
    -------
    x, y : ndarray of float64

    Raises
    ------
    TypeError
        If an array is not numeric.
    AudioError
        If an array is empty, too short, not finite or (unless `allow_silent`) silent.
    ParameterError
        If the arrays have more than `max_ndim` dimensions or their channel shapes do not broadcast.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp._validate import valid_pair
    >>> dry, wet = valid_pair(np.ones(4), np.ones((2, 3)), names=("dry", "wet"))
    >>> dry.shape, wet.shape, wet.dtype
    ((4,), (2, 3), dtype('float64'))
    >>> valid_pair(np.ones((2, 4)), np.ones((3, 4)), names=("dry", "wet"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    apfdsp.exceptions.ParameterError: the channel shapes of dry (2,) and wet (3,) do not broadcast: they must match, ...
    """
    first, second = names
    x = valid_audio(x, name=first, min_samples=min_samples, allow_silent=allow_silent)
    y = valid_audio(y, name=second, min_samples=min_samples, allow_silent=allow_silent)
    if max_ndim is not None and max(x.ndim, y.ndim) > max_ndim:
        raise ParameterError(
            f"{first} and {second} must be 1-D (mono) or 2-D (channels, samples) arrays, got shapes {x.shape} "
            f"and {y.shape}" if max_ndim == 2 else
            f"{first} and {second} must have at most {max_ndim} dimensions, got shapes {x.shape} and {y.shape}"
        )
    try:
        np.broadcast_shapes(x.shape[:-1], y.shape[:-1])
    except ValueError:
        raise ParameterError(
            f"the channel shapes of {first} {x.shape[:-1]!r} and {second} {y.shape[:-1]!r} do not broadcast: "
            f"they must match, or one must be mono (pass arrays of shape (..., n), or a mono (n,) signal)"
        ) from None
    return x, y


def valid_sos(sos):
    """Check a second-order-section array; return ``(sos, n_sections)``.

    Raises `ParameterError` unless `sos` has shape ``(n, 6)``, is finite and has ``a0 == 1``.

    Parameters
    ----------
    sos : array_like, shape (n_sections, 6)
        Second-order sections, one ``[b0, b1, b2, a0, a1, a2]`` row each (scipy's layout).

    Returns
    -------
    sos : ndarray of float64, shape (n_sections, 6)
    n_sections : int

    Examples
    --------
    >>> from scipy import signal
    >>> sos, n = valid_sos(signal.butter(4, 0.2, output="sos"))
    >>> sos.shape, n
    ((2, 6), 2)
    """
    sos = np.atleast_2d(np.asarray(sos, dtype=np.float64))
    if sos.ndim != 2 or sos.shape[1] != 6:
        raise ParameterError(f"sos must have shape (n_sections, 6), got {sos.shape}")
    if not np.all(np.isfinite(sos)):
        raise ParameterError("sos contains NaN or Inf coefficients")
    if not np.allclose(sos[:, 3], 1.0):
        raise ParameterError("sos rows must be normalised so that a0 == 1 (column 3)")
    return sos, sos.shape[0]


def valid_freqs(freqs, *, fs, name="freqs"):
    """Return a 1-D float64 frequency grid in Hz with every value in [0, fs/2].

    Parameters
    ----------
    freqs : array_like, shape (k,)
        Frequencies in Hz.
    fs : float
        Sample rate in Hz.
    name : str
        Name used in error messages.

    Returns
    -------
    ndarray of float64, shape (k,)

    Examples
    --------
    >>> valid_freqs([0, 1000, 24000], fs=48000).tolist()
    [0.0, 1000.0, 24000.0]
    >>> try:
    ...     valid_freqs([30000.0], fs=48000)
    ... except ValueError as err:
    ...     print(type(err).__name__)
    ParameterError
    """
    freqs = np.asarray(freqs, dtype=np.float64)
    if freqs.ndim != 1 or freqs.size == 0:
        raise ParameterError(f"{name} must be a non-empty 1-D array of frequencies in Hz, got shape {freqs.shape}")
    if not np.all(np.isfinite(freqs)) or np.any(freqs < 0) or np.any(freqs > fs / 2):
        raise ParameterError(f"{name} must be finite and lie in [0, fs/2] = [0, {fs / 2:g}] Hz")
    return freqs
