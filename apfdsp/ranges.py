"""The one table of parameter ranges, and the maps between normalised and physical parameters.

Every parameterisation (the sinusoidal MLP, the direct one, the command line, the tests) maps a
normalised value ``t`` in (-1, 1) to a physical parameter through `ParamRanges`, so every filter it
produces is stable by construction: ``0 <= pole_radius < r_max < 1``, ``|warp| < warp_max < 1`` and
``|coef| < coef_max < 1``.
"""

from dataclasses import asdict, dataclass

import autograd.numpy as anp
import numpy as np

from ._validate import valid_fs, valid_range
from .exceptions import ParameterError

__all__ = ["ParamRanges", "DEFAULT_RANGES"]


@dataclass(frozen=True)
class ParamRanges:
    """Ranges of the physical allpass parameters.

    Parameters
    ----------
    r_max : float
        Largest pole radius of a second-order section, ``0 < r_max < 1``. 0.999 keeps the decay time
        of the slowest pole below 1000 samples (21 ms at 48 kHz); the original code allowed 0.99999.
    fc_min_hz, fc_max_hz : float
        Range of pole frequencies in Hz, mapped on a log scale. ``fc_max_hz=None`` means 0.499 fs.
    warp_max : float
        Largest magnitude of the warping coefficient ``a`` (``|a| < 1``).
    coef_max : float
        Largest magnitude of a first-order section coefficient ``b`` (``|b| < 1``).
    """

    r_max: float = 0.999
    fc_min_hz: float = 5.0
    fc_max_hz: float = None
    warp_max: float = 0.95
    coef_max: float = 0.999

    def __post_init__(self):
        valid_range(self.r_max, "r_max", 0.0, 1.0, lo_open=True, hi_open=True)
        valid_range(self.warp_max, "warp_max", 0.0, 1.0, hi_open=True)
        valid_range(self.coef_max, "coef_max", 0.0, 1.0, lo_open=True, hi_open=True)
        valid_range(self.fc_min_hz, "fc_min_hz", 0.0, np.inf, lo_open=True, hi_open=True)
        if self.fc_max_hz is not None and not self.fc_max_hz > self.fc_min_hz:
            raise ParameterError(
                f"fc_max_hz must exceed fc_min_hz={self.fc_min_hz!r}, got {self.fc_max_hz!r}"
            )

    def fc_limits(self, fs):
        """Return ``(fc_min_hz, fc_max_hz)`` for sample rate `fs`, checking both lie below fs/2."""
        fs = valid_fs(fs)
        fc_max = 0.499 * fs if self.fc_max_hz is None else float(self.fc_max_hz)
        if not self.fc_min_hz < fc_max < fs / 2:
            raise ParameterError(
                f"pole frequency range [{self.fc_min_hz}, {fc_max}] Hz must lie below fs/2 = {fs / 2:g} Hz"
            )
        return self.fc_min_hz, fc_max

    def to_dict(self):
        """Return the ranges as a JSON-safe dict."""
        return asdict(self)

    # The maps below are differentiable (autograd.numpy) and vectorised.

    def pole_radius(self, t):
        """Map t in (-1, 1) to a pole radius in (0, r_max)."""
        return self.r_max * 0.5 * (t + 1.0)

    def pole_radius_inv(self, radius):
        """Inverse of `pole_radius` (clipped into the open range)."""
        return np.clip(2.0 * np.asarray(radius) / self.r_max - 1.0, -1 + 1e-9, 1 - 1e-9)

    def fc_hz(self, t, *, fs):
        """Map t in (-1, 1) to a pole frequency on a log scale in (fc_min_hz, fc_max_hz)."""
        lo, hi = self.fc_limits(fs)
        return lo * anp.exp(np.log(hi / lo) * 0.5 * (t + 1.0))

    def fc_hz_inv(self, fc_hz, *, fs):
        """Inverse of `fc_hz` (clipped into the open range)."""
        lo, hi = self.fc_limits(fs)
        t = 2.0 * np.log(np.asarray(fc_hz, dtype=float) / lo) / np.log(hi / lo) - 1.0
        return np.clip(t, -1 + 1e-9, 1 - 1e-9)

    def warp(self, t):
        """Map t in (-1, 1) to a warping coefficient in (-warp_max, warp_max)."""
        return self.warp_max * t

    def warp_inv(self, warp):
        """Inverse of `warp` (clipped)."""
        return np.clip(np.asarray(warp) / max(self.warp_max, 1e-300), -1 + 1e-9, 1 - 1e-9)

    def coef(self, t):
        """Map t in (-1, 1) to a first-order coefficient in (-coef_max, coef_max)."""
        return self.coef_max * t

    def coef_inv(self, coef):
        """Inverse of `coef` (clipped)."""
        return np.clip(np.asarray(coef) / self.coef_max, -1 + 1e-9, 1 - 1e-9)


DEFAULT_RANGES = ParamRanges()
