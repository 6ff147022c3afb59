"""The one table of parameter ranges, and the maps between normalised and physical parameters.

Every parameterisation (the sinusoidal MLP, the direct one, the command line, the tests) maps a
normalised value ``t`` in (-1, 1) to a physical parameter through `ParamRanges`, so every filter it
produces is stable by construction: ``0 <= pole_radius < r_max < 1``, ``|warp| < warp_max < 1`` and
``|coef| < coef_max < 1``.

The limits that depend on the sample rate are set in seconds and Hz: the slowest pole may take
`ParamRanges.max_decay_s` seconds to decay by 60 dB, whatever the rate, so a model means the same at
44.1 kHz and at 192 kHz (a limit fixed in samples would allow a 21 ms decay at 48 kHz but only 5 ms at
192 kHz). `ParamRanges.radius_limit` and `ParamRanges.coef_limit` turn it into per-sample limits.

Implements docs/maths.md, section 11 (the table of maps and the stability argument); the module's place
in the package is docs/architecture.md, section 2.3.
"""

from dataclasses import asdict, dataclass
from functools import lru_cache

import autograd.numpy as anp
import numpy as np

from ._validate import valid_fs, valid_range
from .exceptions import ParameterError

__all__ = ["ParamRanges", "DEFAULT_RANGES", "DECAY_DB", "radius_for_decay", "decay_for_radius"]

#: The decay (dB) that `ParamRanges.max_decay_s` measures: the 60 dB decay time (T60) of a pole.
DECAY_DB = 60.0
_LN_DECAY = DECAY_DB / 20.0 * np.log(10.0)  # ln(10^(60/20)): e-folds of a 60 dB decay


def radius_for_decay(decay_s, *, fs):
    r"""Pole radius whose free response decays by 60 dB in `decay_s` seconds at sample rate `fs`.

    :math:`r = 10^{-3 / (f_s T)}`, the radius of a pole with :math:`r^{f_s T} = 10^{-60/20}`
    (docs/maths.md, section 11).

    Parameters
    ----------
    decay_s : float
        The 60 dB decay time T in seconds, positive.
    fs : float
        Sample rate in Hz.

    Returns
    -------
    radius : float
        In (0, 1).

    Examples
    --------
    >>> round(radius_for_decay(0.15, fs=48000), 6), round(radius_for_decay(0.15, fs=192000), 6)
    (0.999041, 0.99976)
    """
    fs = valid_fs(fs)
    decay_s = valid_range(decay_s, "decay_s", 0.0, np.inf, lo_open=True, hi_open=True)
    return float(np.exp(-_LN_DECAY / (fs * decay_s)))


def decay_for_radius(radius, *, fs):
    """Seconds a pole of radius `radius` (in [0, 1)) takes to decay by 60 dB at sample rate `fs`: the
    inverse of `radius_for_decay` (0 for ``radius = 0``).

    Parameters
    ----------
    radius : float
        Pole radius in [0, 1).
    fs : float
        Sample rate in Hz.

    Returns
    -------
    decay_s : float
        The 60 dB decay time in seconds.

    Examples
    --------
    >>> round(decay_for_radius(0.999, fs=48000), 4)
    0.1438
    """
    fs = valid_fs(fs)
    radius = valid_range(radius, "radius", 0.0, 1.0, hi_open=True)
    return 0.0 if radius == 0.0 else float(-_LN_DECAY / (fs * np.log(radius)))


@dataclass(frozen=True)
class ParamRanges:
    """Ranges of the physical allpass parameters.

    Parameters
    ----------
    max_decay_s : float
        Longest 60 dB decay time (seconds) of a pole: of a second-order section's pole pair (in the
        section's own delay variable, see Notes) and of a first-order section's pole. Default 0.144 s,
        the decay of radius 0.999 at 48 kHz (the limit before it was set in seconds): pole radius
        below 0.999 at 48 kHz, 0.99891 at 44.1 kHz, 0.99975 at 192 kHz (where the paper's Surveyor
        model needs 0.9995), every filter stable at any rate.
    fc_min_hz, fc_max_hz : float
        Range of pole frequencies in Hz, mapped on a log scale. ``fc_max_hz=None`` means 0.499 fs.
    warp_max : float
        Largest magnitude of the warping coefficient ``a`` (``|a| < 1``). It is a map of the frequency
        axis, not a time: any ``|a| < 1`` keeps a section stable, at any rate.
    r_max : float, optional
        A fixed limit of the pole radius per sample, ``0 < r_max < 1``, instead of the one that
        `max_decay_s` gives at the sample rate (None, the default).
    coef_max : float, optional
        A fixed limit of the magnitude of a first-order coefficient ``b`` (``|b| < 1``), instead of the
        one from `max_decay_s` (None, the default).

    Notes
    -----
    A warped section's radius R is that of its poles in the warped delay
    :math:`v^{-1} = (z^{-1} + a)/(1 + a z^{-1})`; its poles in z lie at most at
    :math:`\\sqrt{1 - (1 - a^2)(1 - R^2)/(1 + |a| R)^2}` (`apfdsp.fit_audio.warmup_bound`), still inside
    the unit circle. The original training code allowed R up to 0.99999 at 192 kHz.

    Examples
    --------
    >>> ranges = ParamRanges()
    >>> round(ranges.radius_limit(48000), 5), round(ranges.radius_limit(192000), 5)
    (0.999, 0.99975)
    >>> ParamRanges(r_max=0.99).radius_limit(192000)
    0.99
    """

    max_decay_s: float = 0.144
    fc_min_hz: float = 5.0
    fc_max_hz: float = None
    warp_max: float = 0.95
    r_max: float = None
    coef_max: float = None

    def __post_init__(self):
        valid_range(self.max_decay_s, "max_decay_s", 0.0, np.inf, lo_open=True, hi_open=True)
        if self.r_max is not None:
            valid_range(self.r_max, "r_max", 0.0, 1.0, lo_open=True, hi_open=True)
        valid_range(self.warp_max, "warp_max", 0.0, 1.0, hi_open=True)
        if self.coef_max is not None:
            valid_range(self.coef_max, "coef_max", 0.0, 1.0, lo_open=True, hi_open=True)
        valid_range(self.fc_min_hz, "fc_min_hz", 0.0, np.inf, lo_open=True, hi_open=True)
        if self.fc_max_hz is not None and not self.fc_max_hz > self.fc_min_hz:
            raise ParameterError(
                f"fc_max_hz must exceed fc_min_hz={self.fc_min_hz!r}, got {self.fc_max_hz!r}"
            )

    def radius_limit(self, fs):
        """Largest pole radius of a second-order section at sample rate `fs` (`r_max` if set).

        Parameters
        ----------
        fs : float
            Sample rate in Hz (unused when `r_max` is set).

        Returns
        -------
        float
            In (0, 1).

        Examples
        --------
        >>> round(ParamRanges().radius_limit(44100), 5)
        0.99891
        """
        if self.r_max is not None:
            return float(self.r_max)
        return _cached(radius_for_decay, self.max_decay_s, fs)

    def coef_limit(self, fs):
        """Largest magnitude of a first-order coefficient at sample rate `fs` (`coef_max` if set).

        Parameters
        ----------
        fs : float
            Sample rate in Hz (unused when `coef_max` is set).

        Returns
        -------
        float
            In (0, 1).

        Examples
        --------
        >>> round(ParamRanges().coef_limit(48000), 5), ParamRanges(coef_max=0.5).coef_limit(48000)
        (0.999, 0.5)
        """
        if self.coef_max is not None:
            return float(self.coef_max)
        return _cached(radius_for_decay, self.max_decay_s, fs)

    def fc_limits(self, fs):
        """Return ``(fc_min_hz, fc_max_hz)`` for sample rate `fs`, checking both lie below fs/2.

        Parameters
        ----------
        fs : float
            Sample rate in Hz.

        Returns
        -------
        fc_min_hz, fc_max_hz : float

        Raises
        ------
        ParameterError
            If the range does not lie below fs/2 (a sample rate too low for the range).

        Examples
        --------
        >>> ParamRanges().fc_limits(48000)
        (5.0, 23952.0)
        """
        return _cached(_fc_limits, self, fs)

    def to_dict(self):
        """Return the ranges as a JSON-safe dict.

        Returns
        -------
        dict
            One entry per field; ``ParamRanges(**d)`` rebuilds equal ranges.

        Examples
        --------
        >>> d = ParamRanges(warp_max=0.9).to_dict()
        >>> d["warp_max"], ParamRanges(**d) == ParamRanges(warp_max=0.9)
        (0.9, True)
        """
        return asdict(self)

    # The maps below are differentiable (autograd.numpy) and vectorised. `fs` may be left out only
    # when the corresponding limit is fixed (`r_max`, `coef_max`).

    def _radius_max(self, fs):
        if fs is None and self.r_max is None:
            raise ParameterError("the pole radius limit depends on the sample rate: pass fs")
        return self.radius_limit(fs)

    def _coef_max(self, fs):
        if fs is None and self.coef_max is None:
            raise ParameterError("the first-order coefficient limit depends on the sample rate: pass fs")
        return self.coef_limit(fs)

    def pole_radius(self, t, *, fs=None):
        """Map t in (-1, 1) to a pole radius in (0, radius_limit(fs)).

        Parameters
        ----------
        t : array_like
            Normalised values in (-1, 1).
        fs : float, optional
            Sample rate in Hz; needed unless `r_max` is set.

        Returns
        -------
        radius : ndarray or float
            :math:`R_{max}(t + 1)/2`. Differentiable with autograd.

        Examples
        --------
        >>> ParamRanges(r_max=0.9).pole_radius(0.0), float(ParamRanges(r_max=0.9).pole_radius_inv(0.45))
        (0.45, 0.0)
        """
        return self._radius_max(fs) * 0.5 * (t + 1.0)

    def pole_radius_inv(self, radius, *, fs=None):
        """Inverse of `pole_radius` (clipped into the open range).

        Parameters
        ----------
        radius : array_like
            Pole radii.
        fs : float, optional
            Sample rate in Hz; needed unless `r_max` is set.

        Returns
        -------
        t : ndarray
            In [-1 + 1e-9, 1 - 1e-9].

        Examples
        --------
        >>> r = ParamRanges()
        >>> float(r.pole_radius_inv(r.radius_limit(48000), fs=48000))   # the limit itself is clipped inside
        0.999999999
        """
        return np.clip(2.0 * np.asarray(radius) / self._radius_max(fs) - 1.0, -1 + 1e-9, 1 - 1e-9)

    def fc_hz(self, t, *, fs):
        """Map t in (-1, 1) to a pole frequency on a log scale in (fc_min_hz, fc_max_hz).

        Parameters
        ----------
        t : array_like
            Normalised values in (-1, 1).
        fs : float
            Sample rate in Hz.

        Returns
        -------
        fc_hz : ndarray or float
            :math:`f_{lo} (f_{hi}/f_{lo})^{(t+1)/2}`. Differentiable with autograd.

        Examples
        --------
        >>> r = ParamRanges(fc_min_hz=10.0, fc_max_hz=1000.0)
        >>> round(float(r.fc_hz(0.0, fs=48000)), 9)   # the geometric middle of the range
        100.0
        """
        lo, hi = self.fc_limits(fs)
        return lo * anp.exp(np.log(hi / lo) * 0.5 * (t + 1.0))

    def fc_hz_inv(self, fc_hz, *, fs):
        """Inverse of `fc_hz` (clipped into the open range).

        Parameters
        ----------
        fc_hz : array_like
            Pole frequencies in Hz.
        fs : float
            Sample rate in Hz.

        Returns
        -------
        t : ndarray

        Examples
        --------
        >>> r = ParamRanges(fc_min_hz=10.0, fc_max_hz=1000.0)
        >>> float(r.fc_hz_inv(100.0, fs=48000)), float(r.fc_hz_inv(5.0, fs=48000))
        (0.0, -0.999999999)
        """
        lo, hi = self.fc_limits(fs)
        t = 2.0 * np.log(np.asarray(fc_hz, dtype=float) / lo) / np.log(hi / lo) - 1.0
        return np.clip(t, -1 + 1e-9, 1 - 1e-9)

    def warp(self, t):
        """Map t in (-1, 1) to a warping coefficient in (-warp_max, warp_max).

        Parameters
        ----------
        t : array_like
            Normalised values in (-1, 1).

        Returns
        -------
        warp : ndarray or float
            ``warp_max * t``.

        Examples
        --------
        >>> ParamRanges().warp(-0.5), float(ParamRanges().warp_inv(-0.475))
        (-0.475, -0.5)
        """
        return self.warp_max * t

    def warp_inv(self, warp):
        """Inverse of `warp` (clipped).

        Parameters
        ----------
        warp : array_like
            Warping coefficients.

        Returns
        -------
        t : ndarray
            In [-1 + 1e-9, 1 - 1e-9].

        Examples
        --------
        >>> float(ParamRanges(warp_max=0.5).warp_inv(0.25))
        0.5
        """
        return np.clip(np.asarray(warp) / max(self.warp_max, 1e-300), -1 + 1e-9, 1 - 1e-9)

    def coef(self, t, *, fs=None):
        """Map t in (-1, 1) to a first-order coefficient in (-coef_limit(fs), coef_limit(fs)).

        Parameters
        ----------
        t : array_like
            Normalised values in (-1, 1).
        fs : float, optional
            Sample rate in Hz; needed unless `coef_max` is set.

        Returns
        -------
        coef : ndarray or float
            ``coef_limit(fs) * t``.

        Examples
        --------
        >>> ParamRanges(coef_max=0.8).coef(-0.5)
        -0.4
        """
        return self._coef_max(fs) * t

    def coef_inv(self, coef, *, fs=None):
        """Inverse of `coef` (clipped).

        Parameters
        ----------
        coef : array_like
            First-order coefficients.
        fs : float, optional
            Sample rate in Hz; needed unless `coef_max` is set.

        Returns
        -------
        t : ndarray
            In [-1 + 1e-9, 1 - 1e-9].

        Examples
        --------
        >>> float(ParamRanges(coef_max=0.8).coef_inv(-0.4))
        -0.5
        """
        return np.clip(np.asarray(coef) / self._coef_max(fs), -1 + 1e-9, 1 - 1e-9)


def _fc_limits(ranges, fs):
    fs = valid_fs(fs)
    fc_max = 0.499 * fs if ranges.fc_max_hz is None else float(ranges.fc_max_hz)
    if not ranges.fc_min_hz < fc_max < fs / 2:
        raise ParameterError(
            f"pole frequency range [{ranges.fc_min_hz}, {fc_max}] Hz must lie below fs/2 = {fs / 2:g} Hz"
        )
    return ranges.fc_min_hz, fc_max


@lru_cache(maxsize=256, typed=True)
def _cached_call(function, first, fs):
    return function(first, fs=fs)


def _cached(function, first, fs):
    """``function(first, fs=fs)``, remembered: the fits ask for the same limits thousands of times.

    Bad values are not remembered (the call raises each time); an unhashable `fs` is not cached."""
    try:
        return _cached_call(function, first, fs)
    except TypeError:
        return function(first, fs=fs)


DEFAULT_RANGES = ParamRanges()
