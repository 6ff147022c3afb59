r"""Alignment metrics for a dry/wet pair: level-equalised mix ratio, mix loss, null depth, and friends.

All metrics compare an (aligned) dry signal `x` with a wet signal `y`, both of shape ``(..., n)`` with time
on the last axis. Channel shapes broadcast (a mono `y` against a stereo `x`), multichannel sums run over
channels as well, and signals of different lengths are compared over their common (shorter) length.
numpy and scipy only.

Implements docs/maths.md, section 10.
"""

from typing import NamedTuple

import numpy as np
from scipy import fft as sp_fft
from scipy import signal

from ._validate import valid_audio, valid_fs, valid_pair, valid_range
from .estimate import gcc_phat, spectra_peaks, truncate_common
from .exceptions import AudioError, ParameterError

__all__ = [
    "DB_FLOOR",
    "stft_settings",
    "mix_ratio",
    "cross_sums_per_bin",
    "mix_loss_db",
    "null_depth_db",
    "normalized_xcorr",
    "energy_sums",
    "broadband_null_from_sums",
    "broadband_null_db",
    "residual_delay",
    "weighted_phase_error",
    "mix_report",
    "BinSums",
    "MixMeter",
    "StreamingMixMeter",
]

#: Floor of the dB metrics: ``mix_loss_db`` of a polarity-flipped copy and ``null_depth_db`` of identical
#: signals would be -inf; they are reported as -200 dB instead.
DB_FLOOR = -200.0
_POWER_FLOOR = 10.0 ** (DB_FLOOR / 10.0)


def stft_settings(fs):
    """STFT size and hop for the metrics: Hann 2048 / hop 512 at 48 kHz, scaled with the sample rate.

    Parameters
    ----------
    fs : float
        Sample rate in Hz.

    Returns
    -------
    nfft : int
        Window and FFT length: ``2048 * fs / 48000`` rounded (in the log domain) to a power of two,
        at least 256.
    hop : int
        ``nfft // 4``.

    Raises
    ------
    ParameterError
        If `fs` is not a positive finite number.

    Examples
    --------
    >>> from apfdsp.metrics import stft_settings
    >>> stft_settings(48000), stft_settings(44100), stft_settings(96000), stft_settings(8000)
    ((2048, 512), (2048, 512), (4096, 1024), (256, 64))
    """
    fs = valid_fs(fs)
    nfft = max(256, int(2 ** int(np.round(np.log2(2048.0 * fs / 48000.0)))))
    return nfft, nfft // 4


_FRAMES_PER_FFT = 256  # frames per batched FFT (bounds the temporary memory of the metrics)


def _frames(x, fs):
    """(frames, window, centre): the metric STFT's frames of `x` as a strided view (..., frames, nfft).

    The frame range and zero padding are those of ``scipy.signal.ShortTimeFFT(win, hop, fs).stft``
    (``p_min .. p_max(n)``); `centre` is the factor (-1)^k that puts time zero at the window centre,
    as ShortTimeFFT does. ShortTimeFFT.stft runs a Python loop over frames, which made the metrics
    the slowest part of `apfdsp.align` on a minute of audio; here the frames are one strided view and
    the FFTs run in batches (tests compare the two).
    """
    nfft, hop = stft_settings(fs)
    short = (nfft + 1) // 2 - x.shape[-1]
    if short > 0:  # ShortTimeFFT needs half a window of samples; trailing zeros add no energy
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, short)])
    window = signal.windows.hann(nfft, sym=False)
    stft = signal.ShortTimeFFT(window, hop, fs)
    n = x.shape[-1]
    first, last = stft.p_min, stft.p_max(n)
    start = first * hop - stft.m_num_mid  # first sample of the first frame (<= 0)
    stop = (last - 1) * hop - stft.m_num_mid + nfft  # one past the last sample of the last frame
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(-start, max(stop - n, 0))])
    frames = np.lib.stride_tricks.sliding_window_view(padded, nfft, axis=-1)[..., ::hop, :][..., : last - first, :]
    centre = np.where(np.arange(nfft // 2 + 1) % 2, -1.0, 1.0)  # nfft is even: m_num_mid = nfft / 2
    return frames, window, centre


def _spectrum_chunks(frames, window, centre, chunk=_FRAMES_PER_FFT):
    """Yield (start, spectrum of the frames start .. start + chunk), shape (..., chunk, freqs)."""
    for i in range(0, frames.shape[-2], chunk):
        yield i, np.fft.rfft(frames[..., i : i + chunk, :] * window) * centre


def _metric_spectrum(x, fs):
    """The metric STFT of `x` with frames before frequencies: shape (..., frames, freqs)."""
    frames, window, centre = _frames(x, fs)
    spectrum = np.empty(frames.shape[:-1] + (centre.size,), dtype=complex)
    for i, chunk in _spectrum_chunks(frames, window, centre):
        spectrum[..., i : i + chunk.shape[-2], :] = chunk
    return spectrum


def _metric_stft(x, fs):
    """STFT used by every metric (periodic Hann, `stft_settings`), shape (..., freqs, frames): the
    values of ``scipy.signal.ShortTimeFFT(win, hop, fs).stft(x)`` (see `_frames`)."""
    return np.swapaxes(_metric_spectrum(x, fs), -1, -2)


class BinSums(NamedTuple):
    r"""Sums over the metric STFT's frames and channels, per frequency bin, of a dry `x` against a wet `y`.

    From these come every spectral metric of the pair: the mix ratio and null depth
    (:math:`\sum_f` of `magnitude` and `real`, see `mix_ratio`) and the residual delay (a
    coherence-weighted GCC of `cross`, `power_x` and `power_y`, see `residual_delay`).

    Attributes
    ----------
    magnitude : ndarray, shape (F,)
        :math:`A(f) = \sum |X||Y|`.
    real : ndarray, shape (F,)
        :math:`B(f) = \sum \mathrm{Re}(X Y^*)`.
    cross : ndarray, complex, shape (F,)
        :math:`\sum Y X^*` (its phase grows with the delay of `y`).
    power_x, power_y : ndarray, shape (F,)
        :math:`\sum |X|^2` and :math:`\sum |Y|^2` (the wet's counted once per channel pair, as `cross`).

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.metrics import MixMeter
    >>> x = np.random.default_rng(0).standard_normal(8000)
    >>> sums = MixMeter(2 * x, n=8000, fs=48000).cross_sums(x)
    >>> bool(np.allclose(sums.magnitude, sums.real)), bool(np.allclose(sums.cross.real, sums.real))
    (True, True)
    """

    magnitude: np.ndarray
    real: np.ndarray
    cross: np.ndarray
    power_x: np.ndarray
    power_y: np.ndarray

    @classmethod
    def zeros(cls, bins):
        """Empty sums of `bins` frequency bins, to be added to.

        Parameters
        ----------
        bins : int
            Number of frequency bins (``nfft // 2 + 1`` of `stft_settings`).

        Returns
        -------
        BinSums

        Examples
        --------
        >>> sums = BinSums.zeros(3)
        >>> sums.cross.dtype.kind, float(sums.magnitude.sum())
        ('c', 0.0)
        """
        return cls(np.zeros(bins), np.zeros(bins), np.zeros(bins, complex), np.zeros(bins), np.zeros(bins))

    def totals(self):
        r"""``(A, B)`` summed over frequency; AudioError when the pair shares no energy.

        Returns
        -------
        A, B : float
            :math:`\sum_f A(f)` and :math:`\sum_f B(f)` (docs/maths.md, section 10.1).

        Examples
        --------
        >>> import numpy as np
        >>> x = np.random.default_rng(0).standard_normal(8000)
        >>> A, B = MixMeter(x, n=8000, fs=48000).cross_sums(-x).totals()   # an inversion: B = -A
        >>> bool(np.isclose(B, -A)), mix_loss_db(-x, x, fs=48000)
        (True, -200.0)
        """
        A, B = float(self.magnitude.sum()), float(self.real.sum())
        if not A > 0:
            raise AudioError(
                "x and y share no energy in any time-frequency bin over their common length; "
                "check that the signals overlap in time"
            )
        return A, B


def _bin_sums(x, y, fs, *, y_spectrum=None, chunk=_FRAMES_PER_FFT):
    """`BinSums` of validated `x` and `y` of the same length.

    `y_spectrum` is `_metric_spectrum` of `y` when already known (`MixMeter`), else `y` is transformed
    batch by batch with `x`. The sums are accumulated over batches of `chunk` frames, so no full-size
    product is ever formed.
    """
    frames_x, window, centre = _frames(x, fs)
    chunks_y = None if y_spectrum is not None else _spectrum_chunks(*_frames(y, fs), chunk=chunk)
    sums = BinSums.zeros(centre.size)
    for i, X in _spectrum_chunks(frames_x, window, centre, chunk=chunk):
        Y = y_spectrum[..., i : i + X.shape[-2], :] if chunks_y is None else next(chunks_y)[1]
        _add_bin_sums(sums, X, Y)
    return sums


def _add_bin_sums(sums, X, Y):
    """Add the frames of spectra `X` and `Y` (broadcasting over channels) to `sums` in place."""
    X, Y = np.broadcast_arrays(X, Y)
    X, Y = np.reshape(X, (-1, X.shape[-1])), np.reshape(Y, (-1, Y.shape[-1]))
    XY = X * np.conj(Y)
    total = XY.sum(axis=0)
    sums.magnitude[:] += np.abs(XY).sum(axis=0)
    sums.real[:] += total.real
    sums.cross[:] += np.conj(total)
    for power, Z in ((sums.power_x, X), (sums.power_y, Y)):
        power[:] += np.einsum("ij,ij->j", Z.real, Z.real) + np.einsum("ij,ij->j", Z.imag, Z.imag)


def cross_sums_per_bin(x, y, fs, *, y_spectrum=None, chunk=_FRAMES_PER_FFT):
    """Per frequency bin, (A(f), B(f)) = (sum |X||Y|, sum Re(X conj Y)) over frames and channels.

    The sums behind `mix_ratio` (its r is ``(A.sum() + B.sum()) / (2 * A.sum())``), on the STFT of
    `stft_settings`: the `magnitude` and `real` fields of `BinSums`.

    Parameters
    ----------
    x, y : ndarray, shape (..., n)
        A validated pair of the same length (channel shapes that broadcast).
    fs : float
        Sample rate in Hz (validated).
    y_spectrum : ndarray, optional
        The metric spectrum of `y` when already known (`MixMeter`); else `y` is transformed batch by
        batch with `x`.
    chunk : int
        Frames per batch: the sums are accumulated over batches, so no full-size product is formed.

    Returns
    -------
    A, B : ndarray, shape (nfft // 2 + 1,)
        Per bin of ``np.fft.rfftfreq(nfft, 1 / fs)``.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.metrics import cross_sums_per_bin
    >>> x = np.random.default_rng(0).standard_normal(8000)
    >>> A, B = cross_sums_per_bin(x, -x, 16000.0)
    >>> bool(np.allclose(B, -A))  # an inverted copy: every bin cancels
    True
    """
    sums = _bin_sums(x, y, fs, y_spectrum=y_spectrum, chunk=chunk)
    return sums.magnitude, sums.real


def _cross_sums(x, y, fs, *, y_spectrum=None):
    """Validated `BinSums` of `x` against `y` over their common length (`y_spectrum` as `_bin_sums`)."""
    fs = valid_fs(fs)
    x, y = valid_pair(x, y)
    x, y = truncate_common(x, y)
    return _bin_sums(x, y, fs, y_spectrum=y_spectrum)


def _ratio(A, B):
    return float(np.clip((A + B) / (2.0 * A), 0.0, 1.0))


def _null(A, B):
    """1 - r from the cross sums, clipped to [0, 1] (the null depth's power ratio)."""
    return float(np.clip((A - B) / (2.0 * A), 0.0, 1.0))


def _db(power):
    return float(10.0 * np.log10(max(power, _POWER_FLOOR)))


def mix_ratio(x, y, *, fs):
    r"""Level-equalised mix ratio r in [0, 1]: 1 when every time-frequency bin is in phase.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Dry (aligned) signal.
    y : array_like, shape (..., m)
        Wet signal; channel shapes must broadcast with `x`. Compared over ``min(n, m)`` samples.
    fs : float
        Sample rate in Hz (sets the STFT size, see `stft_settings`).

    Returns
    -------
    r : float
        1 for signals in phase in every bin, 0.5 for random phase, 0 for a polarity flip.

    Raises
    ------
    AudioError
        If a signal is empty, silent or non-finite, or the two share no time-frequency bin.
    ParameterError
        If `fs` is invalid or the channel shapes do not broadcast.

    See Also
    --------
    mix_loss_db, null_depth_db

    Notes
    -----
    With :math:`X = \mathrm{STFT}(x)`, :math:`Y = \mathrm{STFT}(y)` (periodic Hann, `stft_settings`,
    ``scipy.signal.ShortTimeFFT``) and sums over frequency, time and channels,

    .. math:: r = \frac{\sum |X||Y| + \sum \mathrm{Re}(X Y^*)}{2 \sum |X||Y|}
                = \frac{\sum |X||Y| \,(1 + \cos \Delta\phi)}{2 \sum |X||Y|}.

    This is the energy of dry + wet brought to the same level in every bin, relative to the in-phase ideal,
    weighted by the cross energy :math:`|X||Y|`: gain, EQ and compression do not change it, only phase.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.metrics import mix_ratio
    >>> x = np.random.default_rng(0).standard_normal(48000)
    >>> mix_ratio(x, 0.3 * x, fs=48000), mix_ratio(x, -x, fs=48000)
    (1.0, 0.0)
    """
    return _ratio(*_cross_sums(x, y, fs).totals())


def mix_loss_db(x, y, *, fs):
    r"""Mix loss in dB, ``10 log10 r``: 0 dB loses nothing to phase cancellation, -3 dB is random phase.

    Parameters
    ----------
    x, y : array_like, shape (..., n)
        Dry and wet signals (see `mix_ratio`).
    fs : float
        Sample rate in Hz.

    Returns
    -------
    loss_db : float
        In ``[DB_FLOOR, 0]``; a polarity-flipped copy (r = 0) gives ``DB_FLOOR`` = -200 dB, not -inf.

    Raises
    ------
    AudioError, ParameterError
        As `mix_ratio`.

    Notes
    -----
    .. math:: L = 10 \log_{10} \max(r, 10^{-20}).

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.metrics import mix_loss_db
    >>> x = np.random.default_rng(0).standard_normal(48000)
    >>> mix_loss_db(x, x, fs=48000), mix_loss_db(x, -x, fs=48000)
    (0.0, -200.0)
    """
    return _db(mix_ratio(x, y, fs=fs))


def null_depth_db(x, y, *, fs):
    r"""Null depth in dB, ``10 log10(1 - r)``: the depth of the level-equalised difference dry - wet.

    Parameters
    ----------
    x, y : array_like, shape (..., n)
        Dry and wet signals (see `mix_ratio`).
    fs : float
        Sample rate in Hz.

    Returns
    -------
    null_db : float
        In ``[DB_FLOOR, 0]``; identical signals give about ``DB_FLOOR`` = -200 dB (no -inf, no warning),
        a polarity flip 0 dB, random phase -3 dB.

    Raises
    ------
    AudioError, ParameterError
        As `mix_ratio`.

    Notes
    -----
    .. math:: N = 10 \log_{10} \max(1 - r, 10^{-20}), \qquad
              1 - r = \frac{\sum |X||Y| (1 - \cos\Delta\phi)}{2 \sum |X||Y|}
              \approx \frac{\overline{\Delta\phi^2}}{4}.

    So -20 / -30 / -40 dB correspond to about 0.2 / 0.06 / 0.02 rad of weighted RMS phase error. The
    difference ``1 - r`` is computed as ``(A - B) / 2A`` (no cancellation against 1).

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.metrics import null_depth_db
    >>> x = np.random.default_rng(0).standard_normal(48000)
    >>> bool(null_depth_db(x, 0.5 * x, fs=48000) <= -150), null_depth_db(x, -x, fs=48000)
    (True, 0.0)
    """
    return _db(_null(*_cross_sums(x, y, fs).totals()))


def normalized_xcorr(x, y):
    r"""Normalised cross-correlation at lag 0, in [-1, 1] (not level-invariant per frequency).

    Parameters
    ----------
    x : array_like, shape (..., n)
    y : array_like, shape (..., m)
        Channel shapes must broadcast; compared over the common length.

    Returns
    -------
    ncc : float

    Raises
    ------
    AudioError
        If a signal is empty, non-finite or silent (also over the common length).
    ParameterError
        If the channel shapes do not broadcast.

    Notes
    -----
    .. math:: \rho = \frac{\sum x y}{\sqrt{\sum x^2 \sum y^2}}

    with sums over samples and (broadcast) channels.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.metrics import normalized_xcorr
    >>> x = np.random.default_rng(0).standard_normal(1000)
    >>> normalized_xcorr(x, -2 * x)
    -1.0
    """
    x, y = valid_pair(x, y)
    x, y = truncate_common(x, y)
    xb, yb = np.broadcast_arrays(x, y)
    den = np.sqrt(np.sum(xb * xb) * np.sum(yb * yb))
    if not den > 0:
        raise AudioError("x or y is silent over the common length: the correlation is undefined")
    return float(np.clip(np.sum(xb * yb) / den, -1.0, 1.0))


def energy_sums(x, y):
    r"""Time-domain energy sums of a dry/wet pair: ``(sum y**2, sum x*y, sum x**2)``.

    The three numbers `broadband_null_from_sums` needs. They add up over blocks: the sums of a long
    signal are the sums of its blocks' sums, so the broadband null of a file can be measured block by
    block.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Dry (aligned) signal.
    y : array_like, shape (..., m)
        Wet signal; channel shapes must broadcast with `x`. Compared over ``min(n, m)`` samples.

    Returns
    -------
    s_yy, s_xy, s_xx : float
        Sums over samples and (broadcast) channels.

    Raises
    ------
    AudioError
        If a signal is empty or non-finite.
    ParameterError
        If the channel shapes do not broadcast.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.metrics import energy_sums
    >>> x = np.array([1.0, -1.0, 2.0, 0.0])
    >>> energy_sums(x, 2 * x)
    (24.0, 12.0, 6.0)
    """
    xb, yb = np.broadcast_arrays(*truncate_common(*valid_pair(x, y, allow_silent=True)))
    return float(np.sum(yb * yb)), float(np.sum(xb * yb)), float(np.sum(xb * xb))


def broadband_null_from_sums(s_yy, s_xy, s_xx):
    r"""Broadband null in dB from the energy sums of `energy_sums` (accumulated over blocks if need be).

    The null a polarity-flip-and-sum test in a DAW shows once the fader is set right: the level of
    the residual ``y - g x`` relative to the wet ``y``, with one gain `g` for the whole signal (all
    frequencies, all channels), the least-squares gain, but never negative (the polarity button stays
    as it is: an inverted dry gives no null at all).

    Parameters
    ----------
    s_yy, s_xy, s_xx : float
        :math:`\sum y^2`, :math:`\sum x y`, :math:`\sum x^2` (wet, cross, dry).

    Returns
    -------
    null_db : float
        In ``[DB_FLOOR, 0]``: 0 dB when nothing cancels (unrelated or inverted signals, silent dry),
        ``DB_FLOOR`` for identical signals up to a positive gain.

    Raises
    ------
    AudioError
        If the wet is silent (``s_yy = 0``): there is nothing to null.
    ParameterError
        If a sum is not finite, an energy is negative, or the sums violate Cauchy-Schwarz grossly.

    Notes
    -----
    .. math:: g = \max\left(\frac{\sum x y}{\sum x^2}, 0\right), \qquad
              N_{bb} = 10 \log_{10} \frac{\sum (y - g x)^2}{\sum y^2}
              = 10 \log_{10} \left(1 - \rho_+^2\right), \quad
              \rho_+ = \frac{\max(\sum x y, 0)}{\sqrt{\sum x^2 \sum y^2}}.

    Unlike the phase-only `null_depth_db` (level-matched in every band), it also counts every
    difference in tone: an EQ, distortion or noise limit it even when the phase is perfect. Its
    ``1 - rho**2`` loses no precision that matters above -150 dB.

    Examples
    --------
    >>> from apfdsp.metrics import broadband_null_from_sums
    >>> round(broadband_null_from_sums(1.0, 0.9, 1.0), 2)  # correlation 0.9
    -7.21
    >>> broadband_null_from_sums(1.0, -1.0, 1.0)  # inverted: the sum doubles, no null
    0.0
    """
    try:
        s_yy, s_xy, s_xx = (float(v) for v in (s_yy, s_xy, s_xx))
    except (TypeError, ValueError):
        raise ParameterError("the energy sums must be three numbers (see energy_sums)") from None
    if not all(np.isfinite(v) for v in (s_yy, s_xy, s_xx)) or s_yy < 0 or s_xx < 0:
        raise ParameterError(
            f"the energy sums must be finite and the energies non-negative, got {(s_yy, s_xy, s_xx)!r}"
        )
    if not s_yy > 0:
        raise AudioError("the wet signal is silent: a null relative to it is undefined")
    if s_xx == 0.0 or s_xy <= 0.0:
        return 0.0
    if s_xy * s_xy > s_xx * s_yy * (1.0 + 1e-9):
        raise ParameterError("the energy sums are inconsistent: (sum x*y)**2 > sum x**2 * sum y**2")
    return _db(max(1.0 - s_xy * s_xy / (s_xx * s_yy), 0.0))


def broadband_null_db(x, y):
    r"""Broadband null in dB of a dry `x` against a wet `y`: what a DAW polarity-flip-and-sum shows.

    The residual ``y - g x`` relative to `y`, with one non-negative least-squares gain `g` for the
    whole signal (see `broadband_null_from_sums` for the equation). No sample rate is needed: it is a
    time-domain energy ratio.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Dry (aligned) signal.
    y : array_like, shape (..., m)
        Wet signal (see `energy_sums`).

    Returns
    -------
    null_db : float
        In ``[DB_FLOOR, 0]``; the lower the better.

    Raises
    ------
    AudioError, ParameterError
        As `energy_sums` and `broadband_null_from_sums`.

    See Also
    --------
    null_depth_db : the phase-only null (level-matched in every band).

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.metrics import broadband_null_db
    >>> x = np.random.default_rng(0).standard_normal(48000)
    >>> broadband_null_db(0.5 * x, x) <= -150, broadband_null_db(-x, x)
    (True, 0.0)
    """
    return broadband_null_from_sums(*energy_sums(x, y))


def residual_delay(x, y, *, fs, max_delay_s=0.01, max_duration_s=None):
    r"""Remaining delay of `y` relative to `x` in samples (sub-sample; positive: `y` lags), or None.

    Parameters
    ----------
    x, y : array_like, shape (..., n)
        Dry (aligned) and wet signals; lengths may differ.
    fs : float
        Sample rate in Hz.
    max_delay_s : float, optional
        Search range in seconds, default 0.01 (after alignment the delay should be small).
    max_duration_s : float or None, optional
        Measure only the middle `max_duration_s` seconds of the common length (the same samples of
        both, so the delay between them is unchanged). None (default): the whole signals.

    Returns
    -------
    delay_samples : float or None
        None when no frequency bin carries energy in both signals.

    Raises
    ------
    AudioError, ParameterError
        As `apfdsp.estimate.gcc_phat`.

    See Also
    --------
    apfdsp.estimate.spectra_peaks : the estimator (coherence-weighted GCC, band-limited sub-sample peak).
    apfdsp.estimate.gcc_phat : the same on whole-signal spectra, for longer search ranges.

    Notes
    -----
    The cross and power spectra are those the other metrics sum anyway (the metric STFT,
    `stft_settings`, summed over frames: `BinSums`), so the residual delay of a report costs almost
    nothing. Their lags are circular in the STFT frame, so a search range longer than a quarter of a
    frame (10.7 ms at 48 kHz) uses `apfdsp.estimate.gcc_phat` on the whole signals instead.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.metrics import residual_delay
    >>> x = np.random.default_rng(0).standard_normal(8000)
    >>> round(residual_delay(x, np.roll(x, 3), fs=48000), 2)
    3.0
    """
    fs = valid_fs(fs)
    max_delay_s = valid_range(max_delay_s, "max_delay_s", 0.0, np.inf, lo_open=True)
    x, y = truncate_common(*valid_pair(x, y))
    if max_duration_s is not None:
        max_duration_s = valid_range(max_duration_s, "max_duration_s", 0.0, np.inf, lo_open=True)
        keep = max(int(max_duration_s * fs), 1)
        start = max((x.shape[-1] - keep) // 2, 0)
        x, y = x[..., start : start + keep], y[..., start : start + keep]
    if _stft_lag_limit(fs) < np.ceil(max_delay_s * fs):
        return gcc_phat(x, y, fs=fs, max_delay_s=max_delay_s)[0]
    return _residual_delay_from_sums(_bin_sums(x, y, fs), fs, max_delay_s)


def _stft_lag_limit(fs):
    """Longest lag (samples) measured on the metric STFT's cross spectrum: a quarter of a frame."""
    return stft_settings(fs)[0] // 4


def _residual_delay_from_sums(sums, fs, max_delay_s):
    """`residual_delay` from `BinSums`, searched within ``max_delay_s`` but at most `_stft_lag_limit`
    (None without shared energy)."""
    max_lag = min(max(1, int(np.ceil(max_delay_s * fs))), _stft_lag_limit(fs))
    found = spectra_peaks(sums.cross, sums.power_x, sums.power_y, fs=fs, max_lag=max_lag)
    return None if found is None else found.delay_samples


def weighted_phase_error(phase_a, phase_b, weights=None):
    r"""Weighted RMS of the wrapped phase difference, in radians.

    Parameters
    ----------
    phase_a, phase_b : array_like
        Phases in radians (wrapped or unwrapped), broadcastable to one shape.
    weights : array_like, optional
        Non-negative weights broadcastable to that shape, e.g. the dry power spectrum. Default: uniform.

    Returns
    -------
    error_rad : float
        In ``[0, pi]``.

    Raises
    ------
    ParameterError
        If the inputs are empty, non-finite, do not broadcast, or the weights are negative or all zero.

    Notes
    -----
    .. math:: e = \sqrt{\frac{\sum w \,\mathrm{wrap}(a - b)^2}{\sum w}}, \qquad
              \mathrm{wrap}(\theta) = \arg e^{j\theta} \in [-\pi, \pi],

    computed as the angle of the unit phasor, which keeps a tiny error's relative precision (a modulo
    of :math:`\pi - \theta` would round it to about :math:`10^{-16}` rad absolute).

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.metrics import weighted_phase_error
    >>> a = np.array([0.1, 2 * np.pi + 0.1, -0.1])
    >>> round(weighted_phase_error(a, np.zeros(3), weights=[1, 1, 2]), 12)
    0.1
    """
    try:
        a, b = np.broadcast_arrays(np.asarray(phase_a, dtype=np.float64), np.asarray(phase_b, dtype=np.float64))
        w = np.ones(a.shape) if weights is None else np.asarray(weights, dtype=np.float64)
        a, b, w = np.broadcast_arrays(a, b, w)
    except ValueError as err:
        raise ParameterError(
            f"phase_a, phase_b and weights must be numeric arrays of broadcastable shapes ({err})"
        ) from None
    if a.size == 0:
        raise ParameterError("phase_a and phase_b are empty")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(np.isfinite(w))):
        raise ParameterError("phase_a, phase_b and weights must be finite (no NaN or Inf)")
    if np.any(w < 0) or not np.sum(w) > 0:
        raise ParameterError("weights must be non-negative and not all zero")
    d = np.angle(np.exp(1j * (a - b)))
    return float(np.sqrt(np.sum(w * d * d) / np.sum(w)))


def mix_report(x, y, *, fs, max_delay_s=0.01):
    """All alignment metrics of a dry/wet pair in one dict.

    Parameters
    ----------
    x, y : array_like, shape (..., n)
        Dry (aligned) and wet signals.
    fs : float
        Sample rate in Hz.
    max_delay_s : float, optional
        Search range of the residual delay, default 0.01 s, at most a quarter of the metric STFT's
        frame (`stft_settings`: 10.7 ms at 44.1 and 48 kHz, 8 ms at 16 kHz).

    Returns
    -------
    report : dict
        ``mix_ratio`` (r), ``mix_loss_db``, ``null_db`` (phase-only, `null_depth_db`),
        ``broadband_null_db`` (`broadband_null_db`), ``ncc`` (`normalized_xcorr`) and
        ``residual_delay_samples`` (`residual_delay`), all plain floats; the residual delay is None
        when it cannot be measured (no frequency bin with energy in both signals).

    Raises
    ------
    AudioError, ParameterError
        As the individual metrics.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.metrics import mix_report
    >>> x = np.random.default_rng(0).standard_normal(48000)
    >>> rep = mix_report(x, 0.5 * x, fs=48000)
    >>> rep["mix_loss_db"], rep["ncc"], bool(rep["null_db"] <= -150)
    (0.0, 1.0, True)
    """
    return _report(_cross_sums(x, y, fs), x, y, valid_fs(fs), max_delay_s)


class MixMeter:
    """`mix_report` of several candidate dry signals against one wet signal, its STFT computed once.

    Parameters
    ----------
    y : array_like, shape (..., m)
        The wet (reference) signal.
    n : int
        Length of the candidates that will be measured (their common length with `y` is used).
    fs : float
        Sample rate in Hz.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.metrics import MixMeter, mix_report
    >>> x = np.random.default_rng(0).standard_normal(8000)
    >>> meter = MixMeter(np.roll(x, 2), n=x.size, fs=48000)
    >>> meter.report(x) == mix_report(x, np.roll(x, 2), fs=48000)
    True
    """

    def __init__(self, y, *, n, fs):
        self.fs = valid_fs(fs)
        self.y = valid_audio(y, name="y")
        self.n = int(n)
        length = min(self.n, self.y.shape[-1])
        self._y_spectrum = _metric_spectrum(self.y[..., :length], self.fs)

    def cross_sums(self, x):
        """`BinSums` of `x` against the wet signal (see `mix_ratio`).

        Parameters
        ----------
        x : array_like, shape (..., n)
            Candidate dry signal.

        Returns
        -------
        BinSums

        Examples
        --------
        >>> import numpy as np
        >>> wet = np.random.default_rng(0).standard_normal(48000)
        >>> sums = MixMeter(wet, n=48000, fs=48000).cross_sums(0.5 * wet)   # same phase: B = A
        >>> bool(np.allclose(sums.real, sums.magnitude)), bool(np.allclose(sums.power_x, 0.25 * sums.power_y))
        (True, True)
        """
        if np.shape(x)[-1] != self.n:
            raise ParameterError(f"this MixMeter measures signals of {self.n} samples, got {np.shape(x)[-1]}")
        return _cross_sums(x, self.y, self.fs, y_spectrum=self._y_spectrum)

    def null_db(self, x, *, sums=None):
        """`null_depth_db` of `x` against the wet signal; `sums` from `cross_sums` if already known.

        Parameters
        ----------
        x : array_like, shape (..., n)
            Candidate dry signal.
        sums : BinSums, optional
            ``self.cross_sums(x)``, when already computed.

        Returns
        -------
        float
            Null depth in dB (negative: a deeper null).

        Examples
        --------
        >>> import numpy as np
        >>> wet = np.random.default_rng(0).standard_normal(48000)
        >>> meter = MixMeter(wet, n=48000, fs=48000)
        >>> sums = meter.cross_sums(0.5 * wet)
        >>> meter.null_db(0.5 * wet, sums=sums) == null_depth_db(0.5 * wet, wet, fs=48000)
        True
        """
        sums = self.cross_sums(x) if sums is None else sums
        return _db(_null(*sums.totals()))

    def report(self, x, *, max_delay_s=0.01, sums=None):
        """`mix_report` of `x` against the wet signal; `sums` from `cross_sums` if already known.

        Parameters
        ----------
        x : array_like, shape (..., n)
            Candidate dry signal.
        max_delay_s : float
            Largest residual delay searched, in seconds (as `mix_report`).
        sums : BinSums, optional
            ``self.cross_sums(x)``, when already computed.

        Returns
        -------
        dict
            The keys and values of `mix_report`.

        Examples
        --------
        >>> import numpy as np
        >>> wet = np.random.default_rng(0).standard_normal(48000)
        >>> report = MixMeter(wet, n=48000, fs=48000).report(-wet)   # an inversion: no null, the mix cancels
        >>> report["null_db"], report["mix_loss_db"]
        (0.0, -200.0)
        """
        return _report(self.cross_sums(x) if sums is None else sums, x, self.y, self.fs, max_delay_s)


def _report(sums, x, y, fs, max_delay_s):
    A, B = sums.totals()
    return {
        "mix_ratio": _ratio(A, B),
        "mix_loss_db": _db(_ratio(A, B)),
        "null_db": _db(_null(A, B)),
        "broadband_null_db": broadband_null_from_sums(*energy_sums(x, y)),
        "ncc": normalized_xcorr(x, y),
        "residual_delay_samples": _residual_delay_from_sums(sums, fs, max_delay_s),
    }


class StreamingMixMeter:
    r"""`mix_report` sums of candidate dry signals against one wet signal, fed block by block.

    For files too long to hold in memory: the signals arrive in consecutive blocks of equal length
    (time on the last axis), and the metric STFT's frames are cut from a buffer of less than one frame
    plus the current block, on the same grid as the in-memory metrics (`mix_report`), so the sums
    agree with them to rounding. Memory: one block and one frame per signal.

    Parameters
    ----------
    n : int
        Total length (samples) of the signals, known in advance (it fixes the last frames).
    fs : float
        Sample rate in Hz.
    n_candidates : int
        Number of candidate dry signals measured against the wet.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.metrics import StreamingMixMeter, mix_report
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.standard_normal(30000), rng.standard_normal(30000)
    >>> meter = StreamingMixMeter(30000, fs=48000, n_candidates=1)
    >>> for start in range(0, 30000, 7000):
    ...     meter.add(y[start : start + 7000], [x[start : start + 7000]])
    >>> streamed, whole = meter.report(0), mix_report(x, y, fs=48000)
    >>> bool(abs(streamed["null_db"] - whole["null_db"]) < 1e-9), bool(abs(streamed["ncc"] - whole["ncc"]) < 1e-12)
    (True, True)
    >>> bool(abs(streamed["broadband_null_db"] - whole["broadband_null_db"]) < 1e-9)
    True
    """

    def __init__(self, n, *, fs, n_candidates):
        self.fs = valid_fs(fs)
        self.n = int(n)
        if self.n < 1:
            raise ParameterError(f"n must be a positive number of samples, got {n!r}")
        self.n_candidates = int(n_candidates)
        self.nfft, self.hop = stft_settings(self.fs)
        # The frame grid of `_frames` for a signal of n samples (padded to half a window if shorter).
        n_eff = max(self.n, (self.nfft + 1) // 2)
        stft = signal.ShortTimeFFT(signal.windows.hann(self.nfft, sym=False), self.hop, self.fs)
        first, last = stft.p_min, stft.p_max(n_eff)
        self._lead = -(first * self.hop - stft.m_num_mid)  # zeros before the first sample
        self._frames_left = last - first
        self._window = stft.win
        self._centre = np.where(np.arange(self.nfft // 2 + 1) % 2, -1.0, 1.0)
        self._buffers = None
        self._seen = 0
        bins = self.nfft // 2 + 1
        self._sums = [BinSums.zeros(bins) for _ in range(self.n_candidates)]
        self._xy = np.zeros(self.n_candidates)
        self._xx = np.zeros(self.n_candidates)
        self._yy = 0.0

    def add(self, wet, candidates):
        """Add the next block of the wet signal and of each candidate (all of one length).

        Parameters
        ----------
        wet : array_like, shape (..., b)
            Next block of the wet signal.
        candidates : list of array_like, shape (..., b)
            Next block of each of the ``n_candidates`` dry signals, in order.

        Examples
        --------
        >>> import numpy as np
        >>> wet = np.random.default_rng(0).standard_normal(10000)
        >>> meter = StreamingMixMeter(10000, fs=48000, n_candidates=1)
        >>> for start in range(0, 10000, 3000):                    # blocks of 3000, the last one shorter
        ...     meter.add(wet[start : start + 3000], [wet[start : start + 3000]])
        >>> meter.report(0)["null_db"]
        -200.0
        """
        wet = np.asarray(wet, dtype=float)
        candidates = [np.asarray(c, dtype=float) for c in candidates]
        if len(candidates) != self.n_candidates or any(c.shape[-1] != wet.shape[-1] for c in candidates):
            raise ParameterError(
                f"add() takes one wet block and {self.n_candidates} candidate blocks of the same length"
            )
        take = min(wet.shape[-1], self.n - self._seen)
        if take <= 0:
            return
        wet, candidates = wet[..., :take], [c[..., :take] for c in candidates]
        self._seen += take
        self._yy += float(np.sum(np.broadcast_arrays(wet, *candidates)[0] ** 2))
        for k, c in enumerate(candidates):
            cb, wb = np.broadcast_arrays(c, wet)
            self._xy[k] += float(np.sum(cb * wb))
            self._xx[k] += float(np.sum(cb * cb))
        self._push([wet] + candidates)

    def _push(self, blocks, final=False):
        if self._buffers is None:
            self._buffers = [np.concatenate([np.zeros(b.shape[:-1] + (self._lead,)), b], axis=-1) for b in blocks]
        else:
            self._buffers = [np.concatenate([buf, b], axis=-1) for buf, b in zip(self._buffers, blocks)]
        length = self._buffers[0].shape[-1]
        count = min(self._frames_left, max(0, (length - self.nfft) // self.hop + 1))
        if count:
            self._accumulate(count)
            self._buffers = [buf[..., count * self.hop :] for buf in self._buffers]
            self._frames_left -= count

    def _accumulate(self, count):
        spectra = []
        for buf in self._buffers:
            frames = np.lib.stride_tricks.sliding_window_view(buf, self.nfft, axis=-1)[..., :: self.hop, :][..., :count, :]
            spectra.append(sp_fft.rfft(frames * self._window, axis=-1, workers=-1) * self._centre)
        for sums, X in zip(self._sums, spectra[1:]):
            _add_bin_sums(sums, X, spectra[0])

    def _finish(self):
        if self._frames_left > 0:
            if self._buffers is None:
                raise AudioError("no samples were added to the StreamingMixMeter")
            pad = self._frames_left * self.hop + self.nfft
            self._push([np.zeros(buf.shape[:-1] + (pad,)) for buf in self._buffers])

    def sums(self, k):
        """`BinSums` of candidate `k` (see `MixMeter.cross_sums`), after every block was added.

        Parameters
        ----------
        k : int
            Index of the candidate (0 to ``n_candidates - 1``).

        Returns
        -------
        BinSums

        Examples
        --------
        Fed block by block, the sums equal the in-memory ones to rounding:

        >>> import numpy as np
        >>> wet, dry = np.random.default_rng(0).standard_normal((2, 20000))
        >>> meter = StreamingMixMeter(20000, fs=48000, n_candidates=2)
        >>> for start in range(0, 20000, 4096):
        ...     block = slice(start, start + 4096)
        ...     meter.add(wet[block], [dry[block], wet[block]])
        >>> streamed, whole = meter.sums(0), MixMeter(wet, n=20000, fs=48000).cross_sums(dry)
        >>> bool(np.allclose(streamed.totals(), whole.totals()))
        True
        """
        if self._seen < self.n:
            raise ParameterError(f"only {self._seen} of the announced {self.n} samples were added")
        self._finish()
        return self._sums[k]

    def report(self, k, *, max_delay_s=0.01):
        """`mix_report` of candidate `k`.

        Parameters
        ----------
        k : int
            Index of the candidate (0 to ``n_candidates - 1``).
        max_delay_s : float
            Largest residual delay searched, in seconds (as `mix_report`).

        Returns
        -------
        dict
            The keys and values of `mix_report`, for the whole signals.

        Examples
        --------
        >>> import numpy as np
        >>> wet = np.random.default_rng(0).standard_normal(8000)
        >>> meter = StreamingMixMeter(8000, fs=48000, n_candidates=1)
        >>> meter.add(wet, [-wet])                                   # one block: the whole signals
        >>> meter.report(0)["mix_loss_db"], meter.report(0)["ncc"]
        (-200.0, -1.0)
        """
        sums = self.sums(k)
        A, B = sums.totals()
        den = np.sqrt(self._xx[k] * self._yy)
        return {
            "mix_ratio": _ratio(A, B),
            "mix_loss_db": _db(_ratio(A, B)),
            "null_db": _db(_null(A, B)),
            "broadband_null_db": broadband_null_from_sums(self._yy, self._xy[k], self._xx[k]),
            "ncc": float(np.clip(self._xy[k] / den, -1.0, 1.0)) if den > 0 else 0.0,
            "residual_delay_samples": _residual_delay_from_sums(sums, self.fs, max_delay_s),
        }
