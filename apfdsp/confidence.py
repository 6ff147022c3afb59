r"""How far a dry/wet pair is related: the confidence verdict and the warnings of an alignment.

`align` fits a linear, time-invariant phase model. Whether that means anything depends on the pair:
two unrelated recordings "align" to some delay too. This module measures, from short-time cross-spectra
of the integer-aligned pair, how much of the wet is a linear function of the dry and whether that
function stays the same over time, and turns that (with the alignment's own null depth) into

* ``confidence``: ``"related"``, ``"weak"`` or ``"unrelated"``,
* ``warnings``: sentences for the user (unrelated signals, time-varying effect, strongly nonlinear
  effect, too little material, wet clipped).

The statistics are sums over STFT segments grouped in blocks (`CoherenceAccumulator`), so they can be
accumulated block by block over files of any length.

Notes
-----
With Hann-windowed segments :math:`m` (50 % overlap) grouped in blocks :math:`b` of ``BLOCK_SEGMENTS``
segments, and channel sums included,

.. math:: S^b_{yx}(f) = \sum_{m \in b} X_m^*(f) Y_m(f), \quad S^b_{xx}, S^b_{yy} \text{ likewise}, \quad
          S_{yx} = \sum_b S^b_{yx}, \ldots

the **linear fraction** is the share of the wet's energy that the best single linear, time-invariant
filter of the dry predicts (the coherent output power over the output power),

.. math:: E = \frac{\sum_f |S_{yx}(f)|^2 / S_{xx}(f)}{\sum_f S_{yy}(f)},

and the **block-wise linear fraction** :math:`E_b` is the same with one filter per block,
:math:`\sum_b \sum_f |S^b_{yx}|^2 / S^b_{xx}` in the numerator. Both are biased upwards by the finite
number of averaged segments (for independent signals :math:`E \approx 1/K` with :math:`K` independent
segments; half-overlapping Hann segments count :math:`1/(1 + 2/36)` each); the reported values remove
that bias:

.. math:: \hat E = \frac{E - 1/K}{1 - 1/K}, \qquad
          V = \frac{(E_b - E)/(1 - E) - 1/K_b}{1 - 1/K_b},

:math:`V` being the share of what one filter leaves unexplained that block-wise filters explain beyond
chance (:math:`K_b` segments per block): near 0 for a time-invariant effect on stationary material,
large when the effect's response moves (chorus, phaser, flanger). `pair_statistics` measures :math:`E`
on long segments (``LONG_SEGMENT`` = 8192 samples at 48 kHz: a room's response fits in them) and
:math:`E_s` and :math:`V` on short ones (``SHORT_SEGMENT`` = 2048, blocks of 4: 107 ms at 48 kHz).

Implements docs/maths.md, section 7.1.
"""

from dataclasses import dataclass

import numpy as np
from scipy import signal

from ._validate import valid_fs, valid_pair

__all__ = [
    "CoherenceAccumulator",
    "PairStatistics",
    "pair_statistics",
    "clipped_fraction",
    "verdict",
    "VERDICT_THRESHOLDS",
]

#: Segments per block of the time-variation statistic (Hann segments, 50 % overlap).
BLOCK_SEGMENTS = 4
#: Segment lengths (samples at 48 kHz, scaled with fs to a power of two) of the two analyses: short
#: segments in blocks for the time variation, long ones for the linear fraction (long enough to hold the
#: response of a room, so that reverberation does not pass for unrelated audio).
SHORT_SEGMENT, LONG_SEGMENT = 2048, 8192
#: Equivalent number of independent segments per Hann segment at 50 % overlap (1 / (1 + 2 rho^2),
#: rho = 1/6 the correlation of adjacent segments' power estimates).
_OVERLAP_EFFICIENCY = 1.0 / (1.0 + 2.0 / 36.0)

#: Thresholds of `verdict` (fractions of the wet's energy, dB and seconds), documented in its Notes.
VERDICT_THRESHOLDS = {
    "unrelated_fraction": 0.1,
    "coincidence_fraction": 0.3,
    "coincidence_peak": 0.1,
    "weak_fraction": 0.4,
    "nonlinear_fraction": 0.6,
    "time_variation": 0.1,
    "time_variation_min_unexplained": 0.03,
    "long_response_share": 0.2,
    "weak_null_db": -3.0,
    "min_duration_s": 1.0,
    "clipped_fraction": 1e-4,
}


def segment_length(fs, at_48k=SHORT_SEGMENT):
    """Segment length `at_48k` scaled to the sample rate `fs` and rounded to a power of two (at least 64).

    Parameters
    ----------
    fs : float
        Sample rate in Hz.
    at_48k : int
        Segment length at 48 kHz.

    Returns
    -------
    int
        A power of two, at least 64.

    Examples
    --------
    >>> segment_length(48000), segment_length(44100), segment_length(192000), segment_length(8000, at_48k=256)
    (2048, 2048, 8192, 64)
    """
    return max(64, int(2 ** np.round(np.log2(at_48k * valid_fs(fs) / 48000.0))))


class CoherenceAccumulator:
    """Block-wise sums of the cross- and auto-spectra of a dry/wet pair (one segment length).

    Parameters
    ----------
    fs : float
        Sample rate in Hz.
    nperseg : int, optional
        Segment length (Hann window, 50 % overlap). Default: `segment_length` of `fs`.

    Notes
    -----
    `update` takes consecutive chunks of the (integer-aligned) dry and wet; each chunk is cut into
    half-overlapping segments, the segments into blocks of ``BLOCK_SEGMENTS``. Only per-frequency sums
    and a scalar are kept, so memory does not grow with the length of the audio. Samples that do not fill
    a whole block are ignored: pass chunks of a multiple of ``chunk_samples`` (plus ``nperseg // 2``
    samples of overlap with the next chunk, as ``x[i * chunk : (i + 1) * chunk + nperseg // 2]``).

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.confidence import CoherenceAccumulator
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal(96000)
    >>> acc = CoherenceAccumulator(fs=48000)
    >>> acc.update(x, 0.5 * x)
    >>> round(acc.linear_fraction(), 3), acc.time_variation() < 0.1
    (1.0, True)
    """

    def __init__(self, *, fs, nperseg=None):
        self.fs = valid_fs(fs)
        self.nperseg = segment_length(self.fs) if nperseg is None else int(nperseg)
        self.hop = self.nperseg // 2
        self.chunk_samples = BLOCK_SEGMENTS * self.hop
        n_freq = self.nperseg // 2 + 1
        self.s_yx = np.zeros(n_freq, dtype=complex)
        self.s_xx = np.zeros(n_freq)
        self.s_yy = np.zeros(n_freq)
        self.block_explained = 0.0  # sum over blocks of the wet energy each block's own filter predicts
        self.n_segments = 0
        self.n_channels = 1

    def update(self, x, y):
        """Add a chunk of the integer-aligned pair (shape (..., n), channels broadcast).

        Parameters
        ----------
        x, y : array_like, shape (..., n)
            Chunk of the dry and of the wet, aligned to the integer delay; a mono `x` broadcasts against a
            multichannel `y`.

        Examples
        --------
        Chunks of ``chunk_samples`` (plus half a segment of overlap) add up to one call on the whole:

        >>> import numpy as np
        >>> x = np.random.default_rng(0).standard_normal(48000)
        >>> whole, chunked = CoherenceAccumulator(fs=48000), CoherenceAccumulator(fs=48000)
        >>> whole.update(x, 0.5 * x)
        >>> step = chunked.chunk_samples
        >>> for start in range(0, 48000, step):
        ...     chunked.update(x[start : start + step + chunked.hop], 0.5 * x[start : start + step + chunked.hop])
        >>> chunked.n_segments == whole.n_segments, round(chunked.linear_fraction(), 6)
        (True, 1.0)
        """
        x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        self.n_channels = int(np.prod(x.shape[:-1], dtype=int))
        n_blocks = (x.shape[-1] - self.hop) // self.chunk_samples
        if n_blocks < 1:
            return
        n_seg = n_blocks * BLOCK_SEGMENTS
        index = (np.arange(n_seg) * self.hop)[:, None] + np.arange(self.nperseg)
        window = signal.windows.hann(self.nperseg, sym=False)
        X = np.fft.rfft(x[..., index] * window, axis=-1)  # (..., segments, freqs)
        Y = np.fft.rfft(y[..., index] * window, axis=-1)
        shape = (-1, n_blocks, BLOCK_SEGMENTS, X.shape[-1])  # channels pooled with the segments
        yx = (np.conj(X) * Y).reshape(shape).sum(axis=(0, 2))
        xx = (X.real**2 + X.imag**2).reshape(shape).sum(axis=(0, 2))
        self.s_yy += (Y.real**2 + Y.imag**2).reshape(shape).sum(axis=(0, 1, 2))
        ok = xx > 0
        self.block_explained += float(np.sum(np.abs(yx[ok]) ** 2 / xx[ok]))
        self.s_yx += yx.sum(axis=0)
        self.s_xx += xx.sum(axis=0)
        self.n_segments += n_seg

    def _explained(self):
        ok = self.s_xx > 0
        total = float(self.s_yy.sum())
        return float(np.sum(np.abs(self.s_yx[ok]) ** 2 / self.s_xx[ok])), total

    def linear_fraction(self):
        """Bias-corrected share of the wet's energy one LTI filter of the dry predicts (0 with no data).

        Returns
        -------
        float
            In [0, 1]: 1 for an LTI effect, near 0 for unrelated signals (docs/maths.md, section 7.1).

        Examples
        --------
        >>> import numpy as np
        >>> x, noise = np.random.default_rng(0).standard_normal((2, 48000))
        >>> related, unrelated = CoherenceAccumulator(fs=48000), CoherenceAccumulator(fs=48000)
        >>> related.update(x, 0.5 * x); unrelated.update(x, noise)
        >>> round(related.linear_fraction(), 6), unrelated.linear_fraction() < 0.05
        (1.0, True)
        """
        explained, total = self._explained()
        if not total > 0 or self.n_segments == 0:
            return 0.0
        bias = 1.0 / max(self.n_segments * self.n_channels * _OVERLAP_EFFICIENCY, 2.0)
        return float(max((min(explained / total, 1.0) - bias) / (1.0 - bias), 0.0))

    def time_variation(self):
        """Bias-corrected share of what one filter leaves unexplained that block-wise filters explain.

        Returns
        -------
        float
            In [0, 1]: near 0 for a time-invariant effect (docs/maths.md, section 7.1).

        Examples
        --------
        >>> import numpy as np
        >>> x, noise = np.random.default_rng(0).standard_normal((2, 48000))
        >>> unrelated = CoherenceAccumulator(fs=48000)
        >>> unrelated.update(x, noise)
        >>> unrelated.time_variation() < 0.1
        True
        """
        explained, total = self._explained()
        if not total > 0 or self.n_segments == 0:
            return 0.0
        raw = min(explained / total, 1.0)
        gained = (min(self.block_explained / total, 1.0) - raw) / max(1.0 - raw, 1e-12)
        bias = 1.0 / max(BLOCK_SEGMENTS * self.n_channels * _OVERLAP_EFFICIENCY, 2.0)
        return float(min(max((gained - bias) / (1.0 - bias), 0.0), 1.0))


@dataclass(frozen=True)
class PairStatistics:
    """Statistics of a dry/wet pair behind the verdict (see the module Notes).

    Attributes
    ----------
    linear_fraction : float
        Bias-corrected share of the wet's energy that one linear, time-invariant filter of the dry
        predicts (long segments), in [0, 1]: 1 for an LTI effect, 0 for unrelated signals.
    short_linear_fraction : float
        The same on the short segments of the time-variation analysis.
    time_variation : float
        Bias-corrected share of what one filter leaves unexplained (short segments) that one filter per
        block of ``BLOCK_SEGMENTS`` segments explains, in [0, 1].
    duration_s : float
        Length of the analysed common range of the pair, in seconds.
    clipped_fraction : float
        Share of the wet's samples in runs at its peak magnitude (`clipped_fraction`).

    Examples
    --------
    >>> stats = PairStatistics(linear_fraction=0.98, short_linear_fraction=0.97, time_variation=0.01,
    ...                        duration_s=5.0, clipped_fraction=0.0)
    >>> verdict(stats, null_db=-35.0)
    ('related', [])
    """

    linear_fraction: float
    short_linear_fraction: float
    time_variation: float
    duration_s: float
    clipped_fraction: float


def pair_statistics(x, y, *, fs, integer_delay=0):
    """`PairStatistics` of a dry `x` and wet `y` after pairing ``x[n]`` with ``y[n + integer_delay]``.

    Parameters
    ----------
    x, y : array_like, shape (..., n)
        Dry and wet; channel shapes broadcast, lengths may differ (the common range is used).
    fs : float
        Sample rate in Hz.
    integer_delay : int
        Latency of the wet in samples (from the delay estimate).

    Returns
    -------
    PairStatistics

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.confidence import pair_statistics
    >>> rng = np.random.default_rng(1)
    >>> x, other = rng.standard_normal((2, 48000))
    >>> round(pair_statistics(x, np.r_[np.zeros(10), x], fs=48000, integer_delay=10).linear_fraction, 2)
    1.0
    >>> pair_statistics(x, other, fs=48000).linear_fraction < 0.05
    True
    """
    fs = valid_fs(fs)
    x, y = valid_pair(x, y)
    clipped = clipped_fraction(y)
    d = int(integer_delay)
    x, y = (x, y[..., d:]) if d >= 0 else (x[..., -d:], y)
    n = min(x.shape[-1], y.shape[-1])
    x, y = x[..., :n], y[..., :n]
    short = CoherenceAccumulator(fs=fs)
    short.update(x, y)
    long_ = CoherenceAccumulator(fs=fs, nperseg=min(segment_length(fs, LONG_SEGMENT), max(n // 4, 64)))
    long_.update(x, y)
    return PairStatistics(long_.linear_fraction(), short.linear_fraction(), short.time_variation(), n / fs,
                          clipped)


def verdict(stats, *, null_db=None, peak=None):
    """Confidence (``"related"``, ``"weak"``, ``"unrelated"``) and warnings from `PairStatistics`.

    Parameters
    ----------
    stats : PairStatistics
    null_db : float, optional
        Null depth of the aligned dry against the wet (dB), from the alignment.
    peak : float, optional
        Normalised peak of the delay search (`apfdsp.estimate.gcc_peaks`), in [-1, 1].

    Returns
    -------
    confidence : str
    warnings : list of str

    Notes
    -----
    With the thresholds of ``VERDICT_THRESHOLDS`` (:math:`E` the linear fraction, :math:`E_s` that of the
    short segments, :math:`V` the time variation):

    * ``"unrelated"`` when :math:`E < 0.1`: less than a tenth of the wet is a linear function of the
      dry (unrelated recordings measure 0 to 0.04), or when :math:`E < 0.3` and the delay search's
      peak is below 0.1 in magnitude: two tonal recordings that happen to share pitches are coherent
      at those pitches for a while, but no delay relates them (unrelated pairs peak at about 0.03,
      a distant microphone in a hall above 0.2);
    * ``"weak"`` when :math:`E < 0.4` or the aligned null is shallower than -3 dB;
    * ``"related"`` otherwise.

    Warnings: *time-varying* when :math:`V \\ge 0.1`, :math:`1 - E_s \\ge 0.03` and
    :math:`(E - E_s) / (1 - E_s) < 0.2`: block-wise filters explain a good part of what one filter cannot,
    that part is audible, and the long segments do not explain it instead (a response longer than the
    short segments, such as a room's, also leaves the short segments' filter with a remainder that
    block-wise filters partly fit: rooms measure 0.26 to 0.8 there, chorus and phaser on music or noise
    below 0.12; on a sine sweep, which visits each frequency once, one long filter explains even a
    chorus, and no warning is given); *strongly nonlinear* when
    :math:`E < 0.6` and the pair is not unrelated; *too little material* below 1 s of common audio;
    *wet clipped* when at least 1e-4 of the wet's samples sit in runs of 3 or more at its peak.

    Examples
    --------
    >>> from apfdsp.confidence import PairStatistics, verdict
    >>> verdict(PairStatistics(0.99, 0.99, 0.0, 5.0, 0.0), null_db=-40.0)
    ('related', [])
    >>> verdict(PairStatistics(0.01, 0.0, 0.0, 5.0, 0.0))[0]
    'unrelated'
    """
    t = VERDICT_THRESHOLDS
    fraction = stats.linear_fraction
    warnings = []
    no_delay = peak is not None and abs(peak) < t["coincidence_peak"] and fraction < t["coincidence_fraction"]
    if fraction < t["unrelated_fraction"] or no_delay:
        confidence = "unrelated"
        warnings.append(f"unrelated signals: only {100 * fraction:.0f} % of the wet is a linear function of the "
                        f"dry{' and no delay relates them' if no_delay else ''}; the alignment is meaningless")
    elif fraction < t["weak_fraction"] or (null_db is not None and null_db > t["weak_null_db"]):
        confidence = "weak"
    else:
        confidence = "related"
    if confidence != "unrelated" and fraction < t["nonlinear_fraction"]:
        warnings.append(f"strongly nonlinear effect, noise or long reverberation: only {100 * fraction:.0f} % of "
                        f"the wet is a linear, time-invariant function of the dry; the phase model covers that part")
    short_remainder = 1.0 - stats.short_linear_fraction
    long_share = (fraction - stats.short_linear_fraction) / max(short_remainder, 1e-12)
    if (stats.time_variation >= t["time_variation"] and short_remainder >= t["time_variation_min_unexplained"]
            and long_share < t["long_response_share"] and confidence != "unrelated"):
        warnings.append("time-varying effect: the relation between dry and wet changes over time (modulation "
                        "such as chorus or phaser, or dynamics); no static model can follow it")
    if stats.duration_s < t["min_duration_s"]:
        warnings.append(f"too little material: {stats.duration_s:.2f} s of common audio; use at least "
                        f"{t['min_duration_s']:g} s for a reliable delay and phase")
    if stats.clipped_fraction >= t["clipped_fraction"]:
        warnings.append(f"wet clipped: {100 * stats.clipped_fraction:.2g} % of its samples sit at its peak; "
                        f"clipping is not a phase shift and limits the null")
    return confidence, warnings


def clipped_fraction(y):
    """Share of the samples of `y` in runs of 3 or more at its peak magnitude (same sign): digital clipping.

    Parameters
    ----------
    y : array_like, shape (..., n)
        The wet signal.

    Returns
    -------
    float
        Share in [0, 1] of all samples (all channels) in such runs.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.confidence import clipped_fraction
    >>> t = np.arange(48000) / 48000
    >>> clipped_fraction(np.sin(2 * np.pi * 5 * t)), clipped_fraction(np.clip(2 * np.sin(2 * np.pi * 5 * t), -1, 1)) > 0.1
    (0.0, True)
    """
    y = np.asarray(y, dtype=float).reshape(-1, np.shape(y)[-1])
    peak = np.max(np.abs(y))
    if not peak > 0:
        return 0.0
    at_peak = np.where(np.abs(y) >= peak * (1 - 1e-9), np.sign(y), 0.0)
    # a sample is clipped when it and both neighbours (or two on one side) sit at the same rail
    same_next = (at_peak[:, 1:] != 0) & (at_peak[:, 1:] == at_peak[:, :-1])
    run3 = same_next[:, 1:] & same_next[:, :-1]  # samples i-1, i, i+1 all at one rail
    clipped = np.zeros(at_peak.shape, dtype=bool)
    clipped[:, 1:-1] |= run3
    clipped[:, :-2] |= run3
    clipped[:, 2:] |= run3
    return float(clipped.mean())
