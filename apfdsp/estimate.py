r"""Non-differentiable pre-alignment: bulk delay, polarity and the relative response of a dry/wet pair.

The wet signal ``y = effect(x)`` is related to the dry signal ``x`` by a latency, maybe a polarity flip,
and a phase (and magnitude) response. This module estimates

* the delay of `y` relative to `x` with sub-sample accuracy and the polarity (`gcc_phat`),
* the relative response ``H = S_yx / S_xx`` and the coherence from Welch spectra (`relative_response`),
* the weights for fitting an allpass to the phase of `H` (`fit_weights`),

and bundles them in one call (`estimate`). numpy and scipy only; every step is vectorised.

Signals have time on the last axis, shape ``(..., n)``. A multichannel pair is analysed jointly: the
cross-spectra of all channels are pooled (summed), and a mono `x` broadcasts against a stereo `y`.

Implements docs/maths.md, sections 6 and 7.
"""

from dataclasses import dataclass

import numpy as np
from scipy import fft as sp_fft
from scipy import signal

from ._validate import valid_fs, valid_int, valid_pair, valid_range
from .exceptions import AudioError, ParameterError

__all__ = [
    "gcc_phat",
    "gcc_peaks",
    "DelayPeaks",
    "relative_response",
    "default_nperseg",
    "fit_weights",
    "Estimate",
    "estimate",
    "reduce_grid",
    "truncate_common",
]

#: Smallest Welch segment length accepted by `relative_response` (samples).
MIN_NPERSEG = 64
#: Number of Welch segments (50 % overlap) the default segment length aims for at least.
MIN_SEGMENTS = 8
#: Regularisation of the coherence weight gamma^2 / (1 - gamma^2 + COHERENCE_DELTA) of the delay search
#: (caps the weight of a perfectly coherent bin at 1000 times that of a half-coherent one).
COHERENCE_DELTA = 0.001
#: Bins whose dry or wet power spectral density lies this many dB below its own maximum carry no usable
#: signal and get no weight in the delay search.
ENERGY_FLOOR_DB = 80.0
#: Length (seconds) of the Hann fades at both ends of each signal before the delay search: without them
#: the two recordings' common start and end (steps at the same instants) correlate at lag 0.
EDGE_FADE_S = 0.02
#: Precedence rule: among the correlation peaks within this many dB of the strongest, the one of the
#: shortest delay is the direct path (often weaker than its sum of reflections, never later): the
#: earliest when the wet lags, the latest when it leads (then the dry is the distant microphone).
PRECEDENCE_DB = 6.0
#: ... looking back at most this far (seconds) before the strongest peak (the reach of strong reflections).
PRECEDENCE_WINDOW_S = 0.03
#: ... and at least this far (seconds) before it: closer peaks belong to the effect's own response (a
#: low-pass's phase gives two peaks of opposite sign one sample either side of its delay).
PRECEDENCE_MIN_GAP_S = 0.001
#: Number of correlation peaks refined and compared by the precedence rule.
MAX_CANDIDATES = 8
#: Highest frequency given a non-zero fitting weight, as a fraction of fs/2.
WEIGHT_MAX_FRACTION = 0.95


# --------------------------------------------------------------------------------------------------
# helpers shared with apfdsp.metrics and apfdsp.align
# --------------------------------------------------------------------------------------------------
def truncate_common(x, y):
    """Cut `x` and `y` to their common (shorter) length along the last axis.

    Parameters
    ----------
    x, y : ndarray, shape (..., n)
        Two signals, time on the last axis.

    Returns
    -------
    x, y : ndarray
        Views of the first ``min(n_x, n_y)`` samples of each.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.estimate import truncate_common
    >>> x, y = truncate_common(np.arange(5.0), np.ones((2, 3)))
    >>> x.shape, y.shape
    ((3,), (2, 3))
    """
    n = min(x.shape[-1], y.shape[-1])
    return x[..., :n], y[..., :n]


def _pool(a):
    """Sum an array of shape (..., m) over all leading axes; return shape (m,)."""
    return a.reshape(-1, a.shape[-1]).sum(axis=0)


def _pow2_round(value):
    """Nearest power of two (in the log sense) to a positive number."""
    return int(2 ** int(np.round(np.log2(value))))


# --------------------------------------------------------------------------------------------------
# GCC with coherence weights and the precedence (direct-path) rule
# --------------------------------------------------------------------------------------------------
def _edge_taper(x, fs):
    """Fade both ends of `x` (Hann halves of EDGE_FADE_S, at most an eighth of the signal each)."""
    n = x.shape[-1]
    fade = min(int(round(EDGE_FADE_S * fs)), n // 8)
    if fade < 2:
        return x
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)
    window = np.ones(n)
    window[:fade], window[n - fade:] = ramp, ramp[::-1]
    return x * window


def _cross_spectra(x, y, max_lag):
    """Pooled one-sided cross-spectrum G = sum Y X* of the zero-padded pair, and nfft."""
    nx, ny = x.shape[-1], y.shape[-1]
    # circular lags 0..max_lag and -max_lag..-1 are free of wrap-around when nfft >= max(nx, ny) + max_lag
    nfft = sp_fft.next_fast_len(max(nx, ny) + max_lag + 1, real=True)
    X = sp_fft.rfft(x, nfft, axis=-1)
    Y = sp_fft.rfft(y, nfft, axis=-1)
    shape = np.broadcast_shapes(X.shape, Y.shape)
    return _pool(np.broadcast_to(Y * np.conj(X), shape)), nfft


def _welch_weights(x, y, *, fs, integer_delay, nperseg):
    """Welch grid, GCC weight gamma^2 / (1 - gamma^2 + delta) and the energy mask of the shifted pair.

    Bins where either pooled power spectral density lies more than ``ENERGY_FLOOR_DB`` below its own
    maximum carry no usable signal: their weight is zero.
    """
    xs, ys = _shift_pair(x, y, integer_delay)
    nperseg = min(nperseg, xs.shape[-1])
    freqs, s_yx, s_xx, s_yy = _fast_pooled_spectra(xs, ys, fs=fs, nperseg=nperseg)
    return (freqs, *_coherence_weights(s_yx, s_xx, s_yy))


def _coherence_weights(s_yx, s_xx, s_yy):
    """(weights, alive): the GCC weight gamma^2 / (1 - gamma^2 + delta) of averaged spectra, zero where
    either power spectrum lies more than ``ENERGY_FLOOR_DB`` below its own maximum (`alive` False)."""
    floor = 10.0 ** (-ENERGY_FLOOR_DB / 10.0)
    alive = (s_xx > floor * s_xx.max()) & (s_yy > floor * s_yy.max())
    coh = np.clip(_safe_div(np.abs(s_yx) ** 2, s_xx * s_yy), 0.0, 1.0)
    return np.where(alive, coh / (1.0 - coh + COHERENCE_DELTA), 0.0), alive


def _peak_candidates(r, nfft, max_lag):
    """Integer lags of the local maxima of |r| in [-max_lag, max_lag], strongest first (at most MAX_CANDIDATES)."""
    lags = np.arange(-max_lag, max_lag + 1)
    mag = np.abs(r[lags % nfft])
    if mag.size < 3:
        return lags[np.argsort(-mag)][:1]
    inner = (mag[1:-1] >= mag[:-2]) & (mag[1:-1] > mag[2:])
    local = np.flatnonzero(np.r_[mag[0] > mag[1], inner, mag[-1] > mag[-2]])
    if local.size == 0:
        local = np.array([int(np.argmax(mag))])
    order = local[np.argsort(-mag[local], kind="stable")][:MAX_CANDIDATES]
    # peaks that cannot come within PRECEDENCE_DB of the strongest once refined between the samples
    # (a peak half-way between two samples reads up to ~4 dB low on them) need no refinement
    order = order[mag[order] >= mag[order[0]] * 10.0 ** (-(PRECEDENCE_DB + 4.0) / 20.0)]
    return lags[order]


@dataclass(frozen=True)
class DelayPeaks:
    """Result of `gcc_peaks`: the chosen delay, its signed peak, how it was chosen, and the competitors.

    Attributes
    ----------
    delay_samples : float
        Chosen delay of `y` relative to `x` (positive: `y` lags), sub-sample.
    peak : float
        Normalised weighted correlation at `delay_samples`, in [-1, 1]; its sign is the polarity.
    choice : str
        ``"strongest"`` when the strongest peak was also the direct path, else ``"earliest within 6 dB"``
        (the wet lags: the direct path before its reflections) or ``"latest within 6 dB"`` (the wet leads:
        the dry is the reverberant one, whose reflections show at more negative lags).
    candidates : tuple of (float, float)
        ``(delay_samples, peak)`` of the peaks within ``PRECEDENCE_DB`` of the strongest (the chosen one
        included), by increasing delay.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(16000)
    >>> peaks = gcc_peaks(x, -np.r_[np.zeros(25), x][:16000], fs=16000)
    >>> round(peaks.delay_samples, 3), round(peaks.peak, 2), peaks.choice
    (25.0, -1.0, 'strongest')
    """

    delay_samples: float
    peak: float
    choice: str
    candidates: tuple


def _refined_peaks(W, r, nfft, lags):
    """Sub-sample delay and normalised signed peak of each integer lag in `lags`."""
    cW, omega = _interp_terms(W, nfft)
    norm = max(np.abs(cW).sum(), np.finfo(float).tiny)
    out = []
    for k0 in lags:
        sign = 1.0 if r[k0 % nfft] >= 0 else -1.0
        tau = _refine_peak(cW, omega, r, int(k0), sign)
        out.append((tau, float(np.clip((cW * np.exp(1j * omega * tau)).sum().real / norm, -1.0, 1.0))))
    return out


def _weighted_correlation(G, nfft, weight_freqs, weights, fs):
    """Spectrum W = G / |G| * weight (weights interpolated from their Welch grid) and its correlation."""
    fine = np.interp(np.arange(G.size) * fs / nfft, weight_freqs, weights)
    W = G / (np.abs(G) + np.finfo(float).tiny) * fine
    return W, sp_fft.irfft(W, nfft)


def gcc_peaks(x, y, *, fs, max_delay_s=0.1, nperseg=None):
    r"""Delay of `y` relative to `x` by coherence-weighted GCC, preferring the direct path over reflections.

    Parameters
    ----------
    x, y, fs, max_delay_s
        As in `gcc_phat`.
    nperseg : int, optional
        Welch segment length of the coherence that weights the correlation. Default: `default_nperseg`
        of the common length.

    Returns
    -------
    DelayPeaks
        The chosen delay and peak, ``choice`` (``"strongest"``, ``"earliest within 6 dB"`` or
        ``"latest within 6 dB"``) and the competing peaks.

    Raises
    ------
    AudioError, ParameterError
        As `gcc_phat`.

    See Also
    --------
    gcc_phat : the same estimate as a ``(delay, peak)`` pair; its Notes give the method.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.estimate import gcc_peaks
    >>> x = np.random.default_rng(0).standard_normal(16000)
    >>> y = np.r_[np.zeros(40), x][:16000] + 1.5 * np.r_[np.zeros(90), x][:16000]  # a louder echo
    >>> found = gcc_peaks(x, y, fs=16000)
    >>> round(found.delay_samples, 1), found.choice, [round(d) for d, _ in found.candidates]
    (40.0, 'earliest within 6 dB', [40, 90])
    """
    fs = valid_fs(fs)
    max_delay_s = valid_range(max_delay_s, "max_delay_s", 0.0, np.inf, lo_open=True)
    x, y = valid_pair(x, y)
    nx, ny = x.shape[-1], y.shape[-1]
    # linear correlation lags run from -(nx - 1) to ny - 1
    max_lag = max(1, int(np.ceil(max_delay_s * fs)))
    max_lag = min(max_lag, max(nx, ny) - 1) if max(nx, ny) > 1 else 0
    G, nfft = _cross_spectra(_edge_taper(x, fs), _edge_taper(y, fs), max_lag)
    W = G / (np.abs(G) + np.finfo(float).tiny)  # plain PHAT: only for audio too short for Welch spectra
    n_common = min(nx, ny)
    if n_common >= MIN_NPERSEG:
        nperseg = default_nperseg(fs, n_common) if nperseg is None else valid_int(nperseg, "nperseg",
                                                                                  minimum=MIN_NPERSEG)
        # pass 1: PHAT over the bins where both signals carry energy (these weights need no lag)
        freqs, _, alive = _welch_weights(x, y, fs=fs, integer_delay=0, nperseg=nperseg)
        W, r = _weighted_correlation(G, nfft, freqs, alive.astype(float), fs)
        k0 = int(_peak_candidates(r, nfft, max_lag)[0])
        # pass 2: maximum-likelihood weights from the Welch coherence of the pair shifted by that lag
        if abs(k0) <= n_common - MIN_NPERSEG:
            freqs, weights, _ = _welch_weights(x, y, fs=fs, integer_delay=k0, nperseg=nperseg)
            if np.any(weights > 0):
                W, r = _weighted_correlation(G, nfft, freqs, weights, fs)
    else:
        r = sp_fft.irfft(W, nfft)
    peaks = _refined_peaks(W, r, nfft, _peak_candidates(r, nfft, max_lag))
    return _precedence(peaks, fs)


def _precedence(peaks, fs):
    """Choose among refined peaks: the one nearest zero lag within PRECEDENCE_DB of the strongest, on its zero side."""
    first = max(peaks, key=lambda dp: abs(dp[1]))
    level = abs(first[1]) * 10.0 ** (-PRECEDENCE_DB / 20.0)
    competing = tuple(sorted((dp for dp in peaks if abs(dp[1]) >= level), key=lambda dp: dp[0]))
    # the direct path is the shortest: before the strongest peak when the wet lags, after it when it leads
    rivals = [dp for dp in competing if abs(dp[0]) < abs(first[0])
              and PRECEDENCE_MIN_GAP_S * fs <= abs(dp[0] - first[0]) <= PRECEDENCE_WINDOW_S * fs]
    chosen = min(rivals, key=lambda dp: abs(dp[0])) if rivals else first
    if chosen is first:
        choice = "strongest"
    else:
        choice = f"{'earliest' if chosen[0] < first[0] else 'latest'} within {PRECEDENCE_DB:g} dB"
    return DelayPeaks(delay_samples=float(chosen[0]), peak=float(chosen[1]), choice=choice, candidates=competing)


def _interp_terms(W, nfft):
    """Hermitian weights c_k (1 at DC and Nyquist, else 2) folded into W, and the bin frequencies."""
    c = np.full(W.shape[-1], 2.0)
    c[0] = 1.0
    if nfft % 2 == 0:
        c[-1] = 1.0
    omega = 2.0 * np.pi * np.arange(W.shape[-1]) / nfft
    return c * W, omega


def _refine_peak(cW, omega, r, k0, sign):
    """Maximise sign * r(tau) near integer lag k0, r(tau) being the band-limited interpolant of the correlation.

    r(tau) = sum_k Re(c_k W_k exp(j omega_k tau)) (times 1/nfft). Start from the parabola through the
    three integer samples around k0 (bias < 0.15 sample), then Newton steps on the exact derivatives.
    """
    nfft = r.size
    a, b, c = sign * r[np.array([k0 - 1, k0, k0 + 1]) % nfft]
    curv = a - 2.0 * b + c
    tau = k0 + (float(np.clip(0.5 * (a - c) / curv, -0.5, 0.5)) if curv < 0 else 0.0)
    for _ in range(12):
        e = cW * np.exp(1j * omega * tau)
        d1 = -sign * (omega * e.imag).sum()  # d/dtau Re(e) = -omega Im(e)
        d2 = -sign * (omega**2 * e.real).sum()
        if d2 >= 0:  # not concave here: keep the current value
            break
        step = float(np.clip(-d1 / d2, -0.25, 0.25))
        tau += step
        if abs(step) < 1e-7:
            break
    return float(np.clip(tau, k0 - 1.0, k0 + 1.0))


def gcc_phat(x, y, *, fs, max_delay_s=0.1):
    r"""Delay of `y` relative to `x` by coherence-weighted GCC, with sub-sample refinement, and the signed peak.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Reference (dry) signal.
    y : array_like, shape (..., m)
        Delayed / processed (wet) signal. Lengths may differ; channel shapes must broadcast with
        those of `x` (a mono `x` against a stereo `y` is fine). Channels are pooled.
    fs : float
        Sample rate in Hz.
    max_delay_s : float, optional
        Only lags within ``±max_delay_s`` seconds are searched (at least ±1 sample). Default 0.1 s.

    Returns
    -------
    delay_samples : float
        Delay of `y` relative to `x` in samples; positive means `y` lags `x`
        (``y[n] ≈ x[n - delay_samples]``).
    peak : float
        Normalised coherence-weighted correlation at that delay, in [-1, 1]. Its sign is the
        polarity of `y` relative to `x`; its magnitude is a confidence (1 for a pure delay).

    Raises
    ------
    AudioError
        If `x` or `y` is empty, non-finite or silent.
    ParameterError
        If `fs` or `max_delay_s` is not positive, or the channel shapes do not broadcast.

    See Also
    --------
    gcc_peaks : the same, with the competing peaks and the rule that chose.
    estimate : delay, polarity and relative response in one call.
    apfdsp.metrics.residual_delay : the same estimator with a smaller search range.

    Notes
    -----
    With one-sided spectra :math:`X_k, Y_k` of the zero-padded signals (each faded in and out over
    ``EDGE_FADE_S`` = 20 ms, so that the common start and end of two recordings do not correlate at lag
    0; FFT length :math:`N`, long enough that the searched lags do not wrap around) and sums over
    (broadcast) channels, :math:`G_k = \sum Y_k X_k^*`. The correlation is

    .. math:: r(\tau) = \sum_k c_k \,\mathrm{Re}\!\left(W_k e^{j \omega_k \tau}\right), \quad
              W_k = \frac{G_k}{|G_k|}\,\psi_k, \quad \omega_k = 2\pi k / N, \quad c_k \in \{1, 2\},

    with weights :math:`\psi` from Welch spectra of the pair (`default_nperseg`), interpolated to the
    FFT grid, and zero wherever the dry or the wet power spectral density lies more than
    ``ENERGY_FLOOR_DB`` = 80 dB below its own maximum (bins that carry no signal, whose phase is
    noise or edge leakage):

    * *pass 1* (no lag known yet): :math:`\psi_k = 1` (PHAT over the bins that carry energy), and
      :math:`k_0 = \arg\max_{|k| \le L} |r[k]|`;
    * *pass 2*: the maximum-likelihood weights :math:`\psi = \hat\gamma^2 / (1 - \hat\gamma^2 + 0.001)`,
      :math:`\hat\gamma^2` the Welch magnitude-squared coherence of :math:`x[n]` and
      :math:`y[n + k_0]`, so that bins where the wet is not a linear function of the dry (stop bands,
      noise floors, distortion products, diffuse reverberation) do not pull the peak.

    The local maxima of :math:`|r|` on the integer lags (at most ``MAX_CANDIDATES`` = 8) are refined by
    Newton steps on :math:`\mathrm{sign}(r[k])\, r(\tau)` with :math:`r'` and :math:`r''` in closed form,
    started from the parabola through the three samples around each (for a pure fractional delay
    :math:`d`, :math:`r(\tau)` peaks exactly at :math:`\tau = d`, whereas parabolic interpolation alone
    is biased by up to about 0.12 sample). *Precedence*: among the peaks within ``PRECEDENCE_DB`` = 6 dB
    of the strongest, at least ``PRECEDENCE_MIN_GAP_S`` = 1 ms and at most ``PRECEDENCE_WINDOW_S`` =
    30 ms from it and nearer to zero lag, the one nearest to zero lag is the delay (else the strongest).
    In a room the direct path is the shortest, but reflections can add up to a stronger peak: when the
    wet is the distant microphone (it lags) they come after the direct path, so the rule picks the
    earliest; when the dry is (the wet leads), the dry's reflections show at more negative lags and the
    rule picks the latest. `gcc_peaks` says which rule chose and lists the competitors. The peak is
    reported as
    :math:`r(\tau) / \sum_k c_k |W_k|`.

    References
    ----------
    .. [1] C. Knapp and G. Carter, "The generalized correlation method for estimation of time delay",
       IEEE Trans. ASSP 24(4), 1976.
    .. [2] D. Bargum, S. Serafin, C. Erkut and J. Parker, "Differentiable allpass filters for phase
       response estimation and automatic signal alignment", DAFx 2023, arXiv:2306.00860.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.estimate import gcc_phat
    >>> x = np.random.default_rng(0).standard_normal(8192)
    >>> y = -0.5 * np.concatenate([np.zeros(25), x])[:8000]   # 25 samples late, inverted, shorter
    >>> delay, peak = gcc_phat(x, y, fs=48000)
    >>> round(delay, 2), bool(peak < -0.9)
    (25.0, True)
    """
    found = gcc_peaks(x, y, fs=fs, max_delay_s=max_delay_s)
    return found.delay_samples, found.peak


def spectra_peaks(s_yx, s_xx, s_yy, *, fs, max_lag):
    r"""Coherence-weighted GCC of a pair from its averaged spectra on one FFT grid, with the precedence rule.

    The second pass of `gcc_peaks` on spectra that are already averaged (Welch, or the frames of an STFT
    as in `apfdsp.metrics`): :math:`W_k = S_{yx,k} / |S_{yx,k}|\, \hat\gamma^2_k / (1 - \hat\gamma^2_k + 0.001)`,
    zero where either power spectrum lies ``ENERGY_FLOOR_DB`` below its maximum; the correlation's peaks
    within ``max_lag`` are refined and chosen as in `gcc_phat`. The lags are circular in the frame
    length, so `max_lag` should stay well below half of it (a quarter is safe with a Hann window).

    Parameters
    ----------
    s_yx : array_like, complex, shape (nfft // 2 + 1,)
        Averaged cross spectrum :math:`\sum Y X^*` (positive delay: `y` lags).
    s_xx, s_yy : array_like, shape (nfft // 2 + 1,)
        Averaged power spectra of `x` and `y`.
    fs : float
        Sample rate in Hz.
    max_lag : int
        Largest lag searched, in samples, either sign.

    Returns
    -------
    DelayPeaks or None
        None when no bin carries energy in both signals.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import signal
    >>> from apfdsp.estimate import spectra_peaks
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal(48000)
    >>> y = np.r_[np.zeros(7), x[:-7]]
    >>> _, s_yx = signal.csd(x, y, nperseg=1024)
    >>> _, s_xx = signal.welch(x, nperseg=1024)
    >>> _, s_yy = signal.welch(y, nperseg=1024)
    >>> round(spectra_peaks(s_yx, s_xx, s_yy, fs=48000, max_lag=100).delay_samples, 3)
    7.0
    """
    s_yx = np.asarray(s_yx)
    s_xx, s_yy = np.asarray(s_xx, dtype=float), np.asarray(s_yy, dtype=float)
    weights, alive = _coherence_weights(s_yx, s_xx, s_yy)
    if not np.any(alive & (np.abs(s_yx) > 0)):
        return None
    W = s_yx / (np.abs(s_yx) + np.finfo(float).tiny) * weights
    nfft = 2 * (W.size - 1)
    r = sp_fft.irfft(W, nfft)
    max_lag = int(min(max(1, max_lag), nfft // 2 - 1))
    return _precedence(_refined_peaks(W, r, nfft, _peak_candidates(r, nfft, max_lag)), fs)


# --------------------------------------------------------------------------------------------------
# relative response
# --------------------------------------------------------------------------------------------------
def default_nperseg(fs, n_samples=None):
    """Welch segment length: 16384 at 48 kHz scaled with fs to a power of two, shortened for short audio.

    Parameters
    ----------
    fs : float
        Sample rate in Hz.
    n_samples : int, optional
        Length of the audio to analyse. When given, the segment is shortened (by powers of two) until
        the audio holds at least ``MIN_SEGMENTS`` = 8 half-overlapping segments, but never below
        ``MIN_NPERSEG`` = 64.

    Returns
    -------
    nperseg : int

    Raises
    ------
    AudioError
        If `n_samples` is too short for even one segment of ``MIN_NPERSEG`` samples.

    Examples
    --------
    >>> from apfdsp.estimate import default_nperseg
    >>> default_nperseg(48000), default_nperseg(96000), default_nperseg(48000, 48000)
    (16384, 32768, 8192)
    """
    fs = valid_fs(fs)
    nperseg = max(MIN_NPERSEG, _pow2_round(16384 * fs / 48000.0))
    if n_samples is None:
        return nperseg
    n_samples = valid_int(n_samples, "n_samples", minimum=0)
    if n_samples < MIN_NPERSEG:
        raise AudioError(
            f"the audio is too short for spectral analysis: {n_samples} usable samples, "
            f"at least {MIN_NPERSEG} are needed (and {MIN_NPERSEG * (MIN_SEGMENTS + 1) // 2} for a "
            f"reliable estimate)"
        )
    # K half-overlapping segments need n >= (K + 1) * nperseg / 2
    cap = 2 * n_samples / (MIN_SEGMENTS + 1)
    while nperseg > MIN_NPERSEG and nperseg > cap:
        nperseg //= 2
    return nperseg


def _shift_pair(x, y, integer_delay):
    """Pair x[n] with y[n + integer_delay] over the longest common range."""
    if integer_delay >= 0:
        y = y[..., integer_delay:]
    else:
        x = x[..., -integer_delay:]
    return truncate_common(x, y)


def _safe_div(num, den):
    """num / den where den > 0 (relative to its maximum), 0 elsewhere."""
    den = np.asarray(den)
    top = np.max(np.abs(den))
    ok = (den > 1e-14 * top) if top > 0 else np.zeros(den.shape, dtype=bool)
    out = np.zeros(np.broadcast_shapes(np.shape(num), den.shape), dtype=np.result_type(num, den))
    np.divide(num, den, out=out, where=ok)
    return out


def _pooled_spectra(x, y, *, fs, nperseg):
    """Pooled Welch spectra (freqs, S_yx, S_xx, S_yy) of a validated, equal-length pair (scipy)."""
    kw = dict(fs=fs, window="hann", nperseg=nperseg, noverlap=nperseg // 2, detrend=False, axis=-1)
    shape = np.broadcast_shapes(x.shape, y.shape)
    xb, yb = np.broadcast_to(x, shape), np.broadcast_to(y, shape)
    freqs, s_yx = signal.csd(xb, yb, **kw)  # scipy: conj(X) Y, i.e. S_yx = H S_xx for y = h * x
    _, s_xx = signal.welch(xb, **kw)
    _, s_yy = signal.welch(yb, **kw)
    return freqs, _pool(s_yx), _pool(s_xx), _pool(s_yy)


def _fast_pooled_spectra(x, y, *, fs, nperseg):
    """`_pooled_spectra` to rounding, with one STFT per signal instead of four (for the delay search).

    The values of `scipy.signal.csd` and `scipy.signal.welch` (Hann, 50 % overlap, no detrending,
    density scaling, mean over segments). The relative response keeps scipy's own route: the fit
    downstream is sensitive to the last bits of its target.
    """
    shape = np.broadcast_shapes(x.shape, y.shape)
    window = signal.windows.hann(nperseg, sym=False)
    hop = nperseg - nperseg // 2

    def stft(a):
        frames = np.lib.stride_tricks.sliding_window_view(a, nperseg, axis=-1)[..., ::hop, :]
        return sp_fft.rfft(frames * window, axis=-1)

    X, Y = stft(x), stft(y)
    scale = np.full(X.shape[-1], 2.0 / (fs * np.sum(window**2)))  # one-sided density
    scale[0] /= 2.0
    if nperseg % 2 == 0:
        scale[-1] /= 2.0
    out_shape = shape[:-1] + (X.shape[-1],)

    def pooled(a):
        return _pool(np.broadcast_to(a.mean(axis=-2) * scale, out_shape))

    s_yx = pooled(np.conj(X) * Y)  # scipy's convention: conj(X) Y, i.e. S_yx = H S_xx for y = h * x
    return np.fft.rfftfreq(nperseg, 1.0 / fs), s_yx, pooled(X.real**2 + X.imag**2), pooled(Y.real**2 + Y.imag**2)


def relative_response(x, y, *, fs, nperseg=None, integer_delay=0):
    r"""Relative frequency response ``H = S_yx / S_xx`` of `y` to `x`, and the magnitude-squared coherence.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Dry signal.
    y : array_like, shape (..., m)
        Wet signal; channel shapes must broadcast with `x`. Channels are pooled.
    fs : float
        Sample rate in Hz.
    nperseg : int, optional
        Welch segment length (Hann window, 50 % overlap). Default: `default_nperseg` (16384 at
        48 kHz, scaled with fs, shortened so that at least 8 segments fit the audio).
    integer_delay : int, optional
        `y` is shifted left by this many samples before the analysis (``y[n + integer_delay]`` is paired
        with ``x[n]``), so that a latency does not smear the Welch segments. Negative values shift right.

    Returns
    -------
    freqs : ndarray, shape (nperseg // 2 + 1,)
        Frequencies in Hz.
    H : ndarray of complex, same shape
        Relative response of the **shifted** pair: the latency ``integer_delay`` is removed, so the true
        response is ``H * exp(-2j pi freqs integer_delay / fs)``. Zero where ``S_xx`` vanishes.
    coherence : ndarray, same shape
        Magnitude-squared coherence in [0, 1] from the same spectra.

    Raises
    ------
    AudioError
        If a signal is empty, silent or non-finite, or if the overlap of the shifted pair is too short for
        spectral analysis (fewer than 64 samples, or fewer than `nperseg`).
    ParameterError
        If `fs`, `nperseg` or `integer_delay` is invalid or the channel shapes do not broadcast.

    See Also
    --------
    estimate : runs `gcc_phat` first and chooses `integer_delay` for you.

    Notes
    -----
    With Welch averages over segments :math:`m` (and channels :math:`c`) of the windowed spectra,

    .. math:: S_{yx}(f) = \sum_{c,m} X^*_{c,m}(f) Y_{c,m}(f), \quad
              S_{xx}(f) = \sum_{c,m} |X_{c,m}(f)|^2, \quad
              H(f) = \frac{S_{yx}(f)}{S_{xx}(f)}, \quad
              \gamma^2(f) = \frac{|S_{yx}(f)|^2}{S_{xx}(f) S_{yy}(f)}.

    For an LTI ``y = h * x``, :math:`H` is the frequency response of :math:`h` (the :math:`H_1` estimator,
    unbiased by noise on `y`). The coherence drops where `y` is not a linear function of `x`. Pooling
    fits one response to all channels: channels of `y` that differ (e.g. in level) lower the coherence
    and `H` is their energy-weighted compromise.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import signal
    >>> from apfdsp.estimate import relative_response
    >>> x = np.random.default_rng(0).standard_normal(2**15)
    >>> b, a = signal.butter(2, 2000, fs=48000)
    >>> y = signal.lfilter(b, a, x)
    >>> f, H, coh = relative_response(x, y, fs=48000, nperseg=1024)
    >>> _, H_true = signal.freqz(b, a, worN=f, fs=48000)
    >>> band = (f > 50) & (f < 4000)
    >>> bool(np.max(np.abs(H[band] - H_true[band])) < 0.05), bool(coh[band].min() > 0.95)
    (True, True)
    """
    freqs, H, coh, _, _ = _relative_spectra(x, y, fs=fs, nperseg=nperseg, integer_delay=integer_delay)
    return freqs, H, coh


def _relative_spectra(x, y, *, fs, nperseg, integer_delay):
    """Validated core of `relative_response`; also returns the pooled S_xx and the nperseg used."""
    fs = valid_fs(fs)
    integer_delay = valid_int(integer_delay, "integer_delay")
    x, y = valid_pair(x, y)
    xs, ys = _shift_pair(x, y, integer_delay)
    n = xs.shape[-1]
    if nperseg is None:
        nperseg = default_nperseg(fs, n)
    else:
        nperseg = valid_int(nperseg, "nperseg", minimum=MIN_NPERSEG)
        if nperseg > n:
            raise AudioError(
                f"the audio is too short for nperseg={nperseg!r}: the (shifted) pair overlaps over "
                f"{n} samples; pass a smaller nperseg or longer audio"
            )
    if not np.any(xs) or not np.any(ys):
        raise AudioError(
            f"after shifting by integer_delay={integer_delay!r}, x or y is silent over their common range"
        )
    freqs, s_yx, s_xx, s_yy = _pooled_spectra(xs, ys, fs=fs, nperseg=nperseg)
    H = _safe_div(s_yx, s_xx)
    coh = np.clip(_safe_div(np.abs(s_yx) ** 2, s_xx * s_yy), 0.0, 1.0)
    return freqs, H, coh, s_xx, nperseg


def fit_weights(freqs, H, coherence, x_psd, *, fs=None):
    r"""Weights for fitting a phase response to ``angle(H)``: cross-spectrum magnitude times coherence.

    Parameters
    ----------
    freqs : array_like, shape (k,)
        Frequencies in Hz (as returned by `relative_response`).
    H : array_like of complex, shape (k,)
        Relative response ``S_yx / S_xx``.
    coherence : array_like, shape (k,)
        Magnitude-squared coherence in [0, 1].
    x_psd : array_like, shape (k,)
        Power spectral density of the dry signal, ``S_xx``.
    fs : float, optional
        Sample rate in Hz. Default: ``2 * freqs[-1]`` (the grid of `relative_response` ends at fs/2).

    Returns
    -------
    weights : ndarray, shape (k,)
        Non-negative weights with maximum 1; zero at DC and above ``0.95 * fs / 2``.

    Raises
    ------
    ParameterError
        If the shapes differ, or values are non-finite or negative.
    AudioError
        If every weight is zero (no coherent energy to fit).

    Notes
    -----
    .. math:: w(f) = \frac{|S_{yx}(f)|\,\gamma^2(f)}{\max_f |S_{yx}(f)|\,\gamma^2(f)}, \qquad
              |S_{yx}| = |H|\, S_{xx},

    set to zero for :math:`f = 0` and :math:`f > 0.95 f_s / 2`. The cross-spectrum magnitude favours the
    frequencies where both signals have energy, the coherence those where the relation is linear
    (docs/maths.md, section 6).

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.estimate import fit_weights
    >>> f = np.linspace(0, 24000, 5)
    >>> fit_weights(f, np.ones(5), np.ones(5), np.array([1., 4., 2., 1., 1.]))
    array([0.  , 1.  , 0.5 , 0.25, 0.  ])
    """
    freqs = np.asarray(freqs, dtype=np.float64)
    H = np.asarray(H)
    coherence = np.asarray(coherence, dtype=np.float64)
    x_psd = np.asarray(x_psd, dtype=np.float64)
    if freqs.ndim != 1 or not (H.shape == coherence.shape == x_psd.shape == freqs.shape):
        raise ParameterError(
            f"freqs, H, coherence and x_psd must be 1-D arrays of the same length, got shapes "
            f"{freqs.shape}, {H.shape}, {coherence.shape}, {x_psd.shape}"
        )
    for name, v in (("freqs", freqs), ("H", H), ("coherence", coherence), ("x_psd", x_psd)):
        if not np.all(np.isfinite(v)):
            raise ParameterError(f"{name} contains NaN or Inf values")
    if np.any(coherence < 0) or np.any(x_psd < 0) or np.any(freqs < 0):
        raise ParameterError("freqs, coherence and x_psd must be non-negative")
    nyquist = freqs[-1] if fs is None else valid_fs(fs) / 2.0
    w = np.abs(H) * x_psd * coherence
    w = np.where((freqs > 0) & (freqs <= WEIGHT_MAX_FRACTION * nyquist), w, 0.0)
    top = w.max()
    if not top > 0:
        raise AudioError(
            "all fitting weights are zero: the dry and the wet share no coherent energy between DC and "
            "0.95 fs/2 (unrelated signals, or wet channels that cancel when pooled: align them per channel)"
        )
    return w / top


# --------------------------------------------------------------------------------------------------
# one call
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """Result of `estimate`: bulk delay, polarity and the relative response of a dry/wet pair.

    Attributes
    ----------
    delay_samples : float
        Delay of `y` relative to `x` (positive: `y` lags), sub-sample, from `gcc_phat`.
    polarity : int
        +1 or -1, the sign of the GCC-PHAT peak.
    gcc_peak : float
        Signed normalised GCC-PHAT peak in [-1, 1].
    integer_delay : int
        ``round(delay_samples)``: the shift applied to `y` before the spectral analysis.
    fs : float
        Sample rate in Hz.
    nperseg : int
        Welch segment length used.
    freqs : ndarray, shape (k,)
        Frequencies in Hz.
    H : ndarray of complex, shape (k,)
        Relative response of the pair after removing ``integer_delay`` (polarity and the residual
        fractional delay ``delay_samples - integer_delay`` are still in it).
    coherence : ndarray, shape (k,)
        Magnitude-squared coherence.
    x_psd : ndarray, shape (k,)
        Pooled dry power spectral density ``S_xx``.
    weights : ndarray, shape (k,)
        Phase-fitting weights from `fit_weights`.
    delay_choice : str
        How `gcc_peaks` chose the delay: ``"strongest"``, ``"earliest within 6 dB"`` or ``"latest within 6 dB"``.
    delay_candidates : tuple of (float, float)
        The competing correlation peaks ``(delay_samples, peak)`` (see `DelayPeaks`).

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import AllpassCascade, Allpass2, Delay
    >>> x = np.random.default_rng(0).standard_normal(48000)
    >>> effect = AllpassCascade([Allpass2(0.8, 1000.0), Delay(30.0)], fs=48000)
    >>> est = estimate(x, effect(x), fs=48000)
    >>> est.integer_delay, est.polarity, est.freqs.shape == est.H.shape == est.weights.shape
    (30, 1, True)
    >>> band = (est.freqs > 100) & (est.freqs < 10000)    # H is the response without the integer delay
    >>> f = est.freqs[band]
    >>> error = np.angle(est.H[band] * np.exp(-2j * np.pi * f / 48000 * est.integer_delay) / effect.response(f))
    >>> bool(np.max(np.abs(error)) < 0.01)
    True
    """

    delay_samples: float
    polarity: int
    gcc_peak: float
    integer_delay: int
    fs: float
    nperseg: int
    freqs: np.ndarray
    H: np.ndarray
    coherence: np.ndarray
    x_psd: np.ndarray
    weights: np.ndarray
    delay_choice: str = "strongest"
    delay_candidates: tuple = ()

    @property
    def target_phase(self):
        """Wrapped phase of `H` (radians): what an allpass (with polarity) should reproduce."""
        return np.angle(self.H)


def estimate(x, y, *, fs, max_delay_s=0.1, nperseg=None):
    r"""Estimate delay, polarity and relative response of a wet signal `y` against its dry twin `x`.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Dry signal.
    y : array_like, shape (..., m)
        Wet (processed) signal; channel shapes must broadcast with `x`.
    fs : float
        Sample rate in Hz.
    max_delay_s : float, optional
        Largest latency searched, in seconds (either sign). Default 0.1.
    nperseg : int, optional
        Welch segment length; default from `default_nperseg`.

    Returns
    -------
    Estimate
        Delay, polarity, the spectra of the integer-aligned pair and the fitting weights.

    Raises
    ------
    AudioError
        If the audio is empty, silent, non-finite or too short.
    ParameterError
        For invalid `fs`, `max_delay_s`, `nperseg` or channel shapes, or when no frequency carries weight.

    See Also
    --------
    gcc_phat, relative_response, fit_weights

    Notes
    -----
    1. :math:`(d, p) =` `gcc_peaks` :math:`(x, y)`; polarity :math:`= \mathrm{sign}(p)`.
    2. :math:`H, \gamma^2 =` `relative_response` of :math:`x[n]` and :math:`y[n + \mathrm{round}(d)]`.
    3. :math:`w =` `fit_weights` :math:`(H, \gamma^2, S_{xx})`.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.estimate import estimate
    >>> x = np.random.default_rng(1).standard_normal(2**15)
    >>> y = -np.concatenate([np.zeros(12), x])
    >>> est = estimate(x, y, fs=48000)
    >>> est.integer_delay, est.polarity, bool(np.allclose(est.H[1:], -1, atol=1e-6))
    (12, -1, True)
    """
    fs = valid_fs(fs)
    x, y = valid_pair(x, y)
    found = gcc_peaks(x, y, fs=fs, max_delay_s=max_delay_s)
    delay, peak = found.delay_samples, found.peak
    integer_delay = int(np.round(delay))
    freqs, H, coh, x_psd, nperseg = _relative_spectra(
        x, y, fs=fs, nperseg=nperseg, integer_delay=integer_delay
    )
    weights = fit_weights(freqs, H, coh, x_psd, fs=fs)
    return Estimate(
        delay_samples=float(delay),
        polarity=1 if peak >= 0 else -1,
        gcc_peak=float(peak),
        integer_delay=integer_delay,
        fs=fs,
        nperseg=int(nperseg),
        freqs=freqs,
        H=H,
        coherence=coh,
        x_psd=x_psd,
        weights=weights,
        delay_choice=found.choice,
        delay_candidates=found.candidates,
    )


def reduce_grid(freqs, H, x_psd, weights, max_bins):
    r"""Merge Welch bins into at most `max_bins` log-spaced groups, the grid a fit works on.

    Bins are merged by summing :math:`S_{yx} = H S_{xx}` and :math:`S_{xx}` (a coarser Welch estimate
    at high frequencies), weights are summed, and the group frequency is the weight-centred mean. Bins
    with zero weight are dropped.

    Parameters
    ----------
    freqs : ndarray, shape (F,)
        Bin frequencies in Hz, increasing (`Estimate.freqs`).
    H : ndarray, shape (F,)
        Relative response per bin (`Estimate.H`, or any response on the same bins).
    x_psd : ndarray, shape (F,)
        Dry power spectral density per bin (`Estimate.x_psd`).
    weights : ndarray, shape (F,)
        Non-negative fitting weights per bin (`Estimate.weights`).
    max_bins : int
        Largest number of groups returned.

    Returns
    -------
    freqs : ndarray, shape (G,)
        Weight-centred group frequencies (Hz), ``G <= max_bins``.
    H : ndarray, shape (G,)
        Response of each group, :math:`\sum S_{yx} / \sum S_{xx}`.
    weights : ndarray, shape (G,)
        Summed weights.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.estimate import reduce_grid
    >>> freqs = np.linspace(0.0, 24000.0, 1025)
    >>> H = np.exp(-2j * np.pi * freqs / 48000.0)  # one sample of delay
    >>> f, h, w = reduce_grid(freqs, H, np.ones(1025), (freqs > 0).astype(float), 64)
    >>> f.size <= 64, float(w.sum()), bool(np.all(np.abs(h) > 0.99))
    (True, 1024.0, True)
    """
    keep = weights > 0
    freqs, H, x_psd, weights = freqs[keep], H[keep], x_psd[keep], weights[keep]
    if freqs.size <= max_bins:
        return freqs, H, weights
    edges = np.unique(np.round(np.geomspace(1, freqs.size, max_bins + 1)).astype(int) - 1)
    edges[-1] = freqs.size
    edges = np.unique(np.r_[0, edges])
    starts = edges[:-1]
    s_yx = np.add.reduceat(H * x_psd, starts)
    s_xx = np.add.reduceat(x_psd, starts)
    w_sum = np.add.reduceat(weights, starts)
    f_mean = np.add.reduceat(weights * freqs, starts) / w_sum
    return f_mean, s_yx / np.maximum(s_xx, np.finfo(float).tiny), w_sum
