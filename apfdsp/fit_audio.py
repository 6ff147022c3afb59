r"""Fit an allpass cascade on audio in the time domain: `fit_audio` (the paper's training set-up).

The cascade (traditional, warped or warped + stretched second-order sections, first-order sections,
a fractional delay and a polarity) filters mini-batches of segments of the dry audio with the
differentiable `apfdsp.tdfilter.sosfilt`; a loss compares the result with the same segments of the
wet audio; a hand-written Adam (`apfdsp.optim.adam_step`) updates the parameters.

Differences from the original training code [1]_:

* **No start-up transients in the loss.** The original reset the filter state every 2048 samples, so
  every block started with a transient the wet audio does not have. Here each segment is filtered from
  ``warmup`` samples *before* its start (from rest, which is exact where that reaches the start of
  the audio) and the loss ignores the warm-up part. By default the warm-up is recomputed at every
  step from the current filter: the time its slowest pole takes to decay by 60 dB (`warmup_samples`).
* **Bulk delay and polarity first.** GCC-PHAT (`apfdsp.estimate.estimate`) gives them; the integer
  part of the delay is a fixed shift and the fractional part a trainable Thiran section, as in
  `apfdsp.fit.fit_phase`.
* **Any sample rate**, stable parameter ranges (`apfdsp.ranges.ParamRanges`), and a start from the
  frequency-domain fit (``init="phase-fit"``) when wanted.

References
----------
.. [1] A. R. Bargum, S. Serafin, C. Erkut and J. D. Parker, "Differentiable Allpass Filters for Phase
   Response Estimation and Automatic Signal Alignment", Proc. DAFx 2023, arXiv:2306.00860
   (Sec. 3: the BiasNet model, the sum-magnitude loss and the training; Eqs. 1-5: the sections).
"""

import numbers
import time
from dataclasses import dataclass, field

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad
from autograd.misc.flatten import flatten

from ._validate import valid_audio, valid_fs, valid_int, valid_range
from .cascade import Allpass1, Allpass2, AllpassCascade, Delay
from .estimate import estimate
from .exceptions import AudioError, ParameterError
from .filters import second_order_denominator, thiran_coef
from .fit import STRUCTURES, _Layout
from .losses import mse_loss, multi_resolution_sum_magnitude_loss, ncc_loss, sum_magnitude_stft_loss
from .model import get_parameterization
from .optim import adam_init, adam_step, cosine_schedule
from .ranges import DEFAULT_RANGES, ParamRanges
from .tdfilter import sosfilt

__all__ = ["fit_audio", "AudioFitResult", "LOSSES", "INITS", "warmup_samples", "warmup_bound"]

#: Loss names accepted by `fit_audio`.
LOSSES = ("multi-resolution", "sum-magnitude", "mse", "ncc")
#: Start names accepted by `fit_audio` (an `AllpassCascade` is accepted too).
INITS = ("default", "phase-fit")

_DECAY_DB = 60.0  # the warm-up lets the slowest pole decay by this much
_N_CHECKPOINTS = 10  # full-audio evaluations during training (the best one is kept)
_N_EVAL_SEGMENTS = 16  # longer audio is evaluated on this many evenly spaced segments
_DEFAULT_RADIUS = 0.7  # pole radius of the sections of the default start


# -- warm-up -------------------------------------------------------------------------------------------


def warmup_samples(pole_radius, *, stretch=1, decay_db=_DECAY_DB):
    r"""Samples a pole of radius `pole_radius` takes to decay by `decay_db` dB.

    Parameters
    ----------
    pole_radius : float
        Largest pole radius ``r`` in ``[0, 1)`` (in the variable the recursion runs in).
    stretch : int
        For a stretched section (a recursion in :math:`z^{-K}`), K: each recursion step is K samples.
    decay_db : float
        Decay in dB, default 60.

    Returns
    -------
    n : int
        :math:`n = K \lceil \ln(10^{-\mathrm{dB}/20}) / \ln r \rceil` (0 for ``r = 0``).

    Raises
    ------
    ParameterError
        If `pole_radius` is not in [0, 1).

    Examples
    --------
    >>> warmup_samples(0.999), warmup_samples(0.9), warmup_samples(0.9, stretch=5)
    (6905, 66, 330)
    """
    radius = valid_range(pole_radius, "pole_radius", 0.0, 1.0, hi_open=True)
    if radius == 0.0:
        return 0
    steps = int(np.ceil(np.log(10.0 ** (-decay_db / 20.0)) / np.log(radius)))
    return valid_int(stretch, "stretch", minimum=1) * steps


def _warped_radius_bound(radius, warp):
    r"""Largest z-plane pole radius of a warped section with pole radius `radius` (in v) and |a| <= `warp`."""
    # z = (p - a) / (1 - a p) maps the pole p of the section in v into the z-plane, and
    # 1 - |z|^2 = (1 - a^2)(1 - |p|^2) / |1 - a p|^2 is smallest for |1 - a p| = 1 + |a||p|.
    gap = (1.0 - warp**2) * (1.0 - radius**2) / (1.0 + warp * radius) ** 2
    return float(np.sqrt(max(1.0 - gap, 0.0)))


def warmup_bound(*, structure="warped", ranges=DEFAULT_RANGES, stretch=5, decay_db=_DECAY_DB):
    r"""Warm-up that covers every filter the parameter ranges allow (from the pole radius limits).

    Parameters
    ----------
    structure : {"warped", "traditional", "stretched"}
        Second-order section type.
    ranges : ParamRanges
        Parameter ranges; ``r_max``, ``warp_max`` and ``coef_max`` matter.
    stretch : int
        K of the stretched structure.
    decay_db : float
        Decay in dB, default 60.

    Returns
    -------
    n : int
        Samples for the slowest pole any allowed parameter set can have to decay by `decay_db`.

    Notes
    -----
    A warped section maps its pole p (in the warped delay v, :math:`|p| \le R_{max}`) to
    :math:`z = (p - a)/(1 - a p)` with :math:`1 - |z|^2 = (1 - a^2)(1 - |p|^2)/|1 - ap|^2`, so its largest
    z-plane radius is :math:`\sqrt{1 - (1 - a^2)(1 - R^2)/(1 + |a| R)^2}` at :math:`|a| = a_{max}`. With the
    default ranges (R 0.999, a 0.95) that is 0.99997: 269 000 samples, far more than what fitted filters
    need, which is why `fit_audio` recomputes the warm-up from the current filter by default. First-order
    sections are bounded by ``coef_max``, the Thiran section by 1/3; stretched sections take K times
    longer.

    Examples
    --------
    >>> warmup_bound(structure="traditional")
    6905
    """
    if structure not in STRUCTURES:
        raise ParameterError(f"structure must be one of {STRUCTURES}, got {structure!r}")
    if not isinstance(ranges, ParamRanges):
        raise TypeError(f"ranges must be a ParamRanges, got {type(ranges).__name__}")
    radius = ranges.r_max
    if structure != "traditional":
        radius = _warped_radius_bound(radius, ranges.warp_max)
    k = stretch if structure == "stretched" else 1
    return max(warmup_samples(radius, stretch=k, decay_db=decay_db),
               warmup_samples(ranges.coef_max, decay_db=decay_db))


def _max_radius(sos):
    """Largest pole radius of each row of `sos` (numpy, closed form for z^2 + a1 z + a2)."""
    a1, a2 = sos[:, 4], sos[:, 5]
    disc = a1 * a1 - 4.0 * a2
    root = np.sqrt(np.abs(disc))
    real_roots = np.maximum(np.abs(-a1 + root), np.abs(-a1 - root)) / 2.0
    return np.where(disc < 0, np.sqrt(np.abs(a2)), real_roots)


# -- the differentiable cascade ------------------------------------------------------------------------


class _Filter:
    r"""Differentiable filtering of audio by the cascade of a `_Layout` with normalised parameters t.

    Second-order rows (:math:`p_1 = a_1/a_0`, :math:`p_2 = a_2/a_0`, DESIGN.md section 2)::

        [p2, p1, 1, 1, p1, p2]

    First-order and Thiran rows ``[b, 1, 0, 1, b, 0]``. A stretched section is :math:`H_W(z^K)`: its
    recursion only links samples K apart, so it is run as :math:`H_W(z)` on the K polyphase
    components (the signal reshaped to ``(n / K, K)`` and filtered along the first of the two axes).
    """

    def __init__(self, layout):
        self.layout = layout
        self.stretch = layout.stretch if layout.structure == "stretched" else 1

    def sos(self, t):
        """``(rows2, rows1)``: second-order rows (in z^-K) and first-order rows, each (n, 6) or None."""
        lay, r = self.layout, self.layout.ranges
        rows2 = rows1 = None
        if lay.n2:
            t2 = t[: lay.n2]
            den = second_order_denominator(r.pole_radius(t2[:, 0]), r.fc_hz(t2[:, 1], fs=lay.fs), fs=lay.fs)
            d, c = den[:, 0], den[:, 1]
            if lay.structure == "traditional":
                p1, p2 = d, c
            else:
                a = r.warp(t2[:, 2])
                a0 = 1.0 + a * d + c * a * a
                p1 = (2.0 * a + d * (1.0 + a * a) + 2.0 * a * c) / a0
                p2 = (a * a + a * d + c) / a0
            ones = np.ones(lay.n2)
            rows2 = anp.stack([p2, p1, ones, ones, p1, p2], axis=1)
        coefs = []
        if lay.n1:
            coefs.append(r.coef(t[lay.n2 : lay.n2 + lay.n1, 0]))
        if lay.delay_shift is not None:
            coefs.append(anp.reshape(thiran_coef(1.0 + 0.5 * t[-1, 0]), (1,)))
        if coefs:
            b = anp.concatenate(coefs)
            ones, zeros = np.ones(b.shape[0]), np.zeros(b.shape[0])
            rows1 = anp.stack([b, ones, zeros, ones, b, zeros], axis=1)
        return rows2, rows1

    def __call__(self, t, x):
        """Filter `x` (..., n) along the last axis (integer shift not applied). Differentiable in t."""
        rows2, rows1 = self.sos(t)
        y = x
        if rows2 is not None and self.stretch == 1 and rows1 is not None:
            y = sosfilt(anp.concatenate([rows2, rows1], axis=0), y)
        else:
            if rows2 is not None:
                y = self._stretched(rows2, y) if self.stretch > 1 else sosfilt(rows2, y)
            if rows1 is not None:
                y = sosfilt(rows1, y)
        return -y if self.layout.polarity < 0 else y

    def _stretched(self, rows, x):
        k, n = self.stretch, x.shape[-1]
        pad = (-n) % k
        if pad:
            x = anp.concatenate([x, np.zeros(x.shape[:-1] + (pad,))], axis=-1)
        lead = x.shape[:-1]
        y = sosfilt(rows, anp.reshape(x, lead + ((n + pad) // k, k)), axis=-2)
        return anp.reshape(y, lead + (n + pad,))[..., :n]

    def warmup(self, t, decay_db=_DECAY_DB):
        """Samples the slowest pole of the filter at t (numpy) takes to decay by `decay_db`."""
        rows2, rows1 = self.sos(np.asarray(t, dtype=float))
        worst = 0
        for rows, k in ((rows2, self.stretch), (rows1, 1)):
            if rows is not None:
                radius = float(np.max(_max_radius(rows)))
                worst = max(worst, warmup_samples(min(radius, 1.0 - 1e-15), stretch=k, decay_db=decay_db))
        return worst


# -- segments ------------------------------------------------------------------------------------------


class _Segments:
    """Segments of a dry/wet pair: dry with warm-up, wet aligned by the integer shift.

    The model output at dry index m is compared with wet index ``m + shift``.
    """

    def __init__(self, dry, wet, shift, length):
        self.dry, self.wet, self.shift = dry, wet, shift
        self.lo = max(0, -shift)
        self.hi = min(dry.shape[-1], wet.shape[-1] - shift)
        self.available = self.hi - self.lo
        self.length = min(length, self.available)

    def random_starts(self, rng, batch_size):
        return rng.integers(self.lo, self.hi - self.length + 1, size=batch_size)

    def eval_starts(self):
        if self.available <= _N_EVAL_SEGMENTS * self.length:
            return None  # evaluate the whole overlap at once
        return np.linspace(self.lo, self.hi - self.length, _N_EVAL_SEGMENTS).round().astype(int)

    def batch(self, starts, warmup):
        """``(x, y, warmup)``: dry segments (batch, ..., warmup + length), wet (batch, ..., length)."""
        if starts is None:  # the whole overlap, filtered from the start of the audio (exact)
            x = self.dry[..., : self.hi][None]
            return x, self.wet[..., self.lo + self.shift : self.hi + self.shift][None], self.lo
        warmup = int(min(warmup, max(int(np.max(starts)), 0)))
        n = self.length
        x = np.zeros((len(starts),) + self.dry.shape[:-1] + (warmup + n,))
        y = np.empty((len(starts),) + self.wet.shape[:-1] + (n,))
        for i, s in enumerate(starts):
            first = max(0, s - warmup)
            x[i, ..., warmup - (s - first):] = self.dry[..., first : s + n]
            y[i] = self.wet[..., s + self.shift : s + self.shift + n]
        return x, y, warmup


# -- losses --------------------------------------------------------------------------------------------


def _pow2(value):
    return int(2 ** int(np.round(np.log2(max(value, 1.0)))))


def _loss_setup(loss, fs, options):
    """``(function(x, y), shortest segment)`` for a loss name; STFT sizes scale with fs."""
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ParameterError(f"loss must be one of {LOSSES}, got {loss!r}")
    options = dict(options or {})
    scale = fs / 48000.0
    try:
        if loss == "multi-resolution":
            options.setdefault("fft_sizes", tuple(_pow2(n * scale) for n in (512, 1024, 2048)))
            options.setdefault("hop_ratio", 0.25)
            sizes = tuple(valid_int(n, "fft size", minimum=4) for n in options["fft_sizes"])
            if not sizes:
                raise ParameterError("loss_options['fft_sizes'] must name at least one size")
            options["fft_sizes"] = sizes
            valid_range(options["hop_ratio"], "hop_ratio", 0.0, 1.0, lo_open=True)
            shortest = max(sizes)
            function = multi_resolution_sum_magnitude_loss
        elif loss == "sum-magnitude":
            options.setdefault("n_fft", _pow2(2048 * scale))
            options.setdefault("hop", options["n_fft"] // 4)
            valid_int(options["hop"], "hop", minimum=1)
            shortest = valid_int(options["n_fft"], "n_fft", minimum=4)
            function = sum_magnitude_stft_loss
        else:
            if options:
                raise ParameterError(f"loss {loss!r} takes no loss_options, got {sorted(options)}")
            shortest = 16
            function = mse_loss if loss == "mse" else ncc_loss
        function(np.zeros(shortest), np.zeros(shortest), **options)  # unknown keys fail here
    except TypeError as err:
        raise ParameterError(f"bad loss_options for loss {loss!r}: {err}") from None
    return (lambda x, y: function(x, y, **options)), shortest, options


# -- starts --------------------------------------------------------------------------------------------


def _layout_from_cascade(cascade, *, structure, stretch, ranges, fs):
    """Layout and normalised parameters that reproduce `cascade` (ParameterError if impossible)."""
    if cascade.fs != fs:
        raise ParameterError(f"init cascade has fs={cascade.fs:g} Hz, the audio fs={fs:g} Hz")
    sections2, coefs1, delay, polarity = [], [], 0.0, 1
    fc_lo, fc_hi = ranges.fc_limits(fs)
    for cell in cascade:
        if isinstance(cell, Allpass2):
            k = stretch if structure == "stretched" else 1
            if cell.stretch != k or (structure == "traditional" and cell.warp != 0.0):
                raise ParameterError(
                    f"init cascade cell {cell} cannot be trained with structure={structure!r}"
                    + (f", stretch={stretch}" if structure == "stretched" else "")
                    + "; pass the matching structure"
                )
            warp_ok = cell.warp == 0.0 or abs(cell.warp) < ranges.warp_max
            if not (cell.pole_radius < ranges.r_max and fc_lo <= cell.fc_hz <= fc_hi and warp_ok):
                raise ParameterError(
                    f"init cascade cell {cell} lies outside the parameter ranges {ranges}; "
                    "pass wider ranges=ParamRanges(...)"
                )
            sections2.append((cell.pole_radius, cell.fc_hz, cell.warp))
        elif isinstance(cell, Allpass1):
            if cell.stretch != 1:
                raise NotImplementedError("stretched first-order sections cannot be trained by fit_audio")
            coef = (cell.coef + cell.warp) / (1.0 + cell.coef * cell.warp)  # warping only re-parameterises
            if not abs(coef) < ranges.coef_max:
                raise ParameterError(
                    f"init cascade cell {cell} (coefficient {coef:.6g}) lies outside coef_max="
                    f"{ranges.coef_max}; pass wider ranges=ParamRanges(coef_max=...)"
                )
            coefs1.append(coef)
        elif isinstance(cell, Delay):
            delay += cell.samples
        else:
            polarity *= cell.sign
    shift = int(np.round(delay)) - 1
    layout = _Layout(len(sections2), len(coefs1), structure, stretch, polarity, shift, ranges, fs)
    return layout, layout.t_from(sections2, coefs1, delay - shift)


def _mean_delay(freqs, phase, *, fs):
    """Mean group delay (samples) over the band of `freqs`: minus the phase drop over the band, per rad."""
    return -float(phase[-1] - phase[0]) / (2 * np.pi * float(freqs[-1] - freqs[0]) / fs)


def _default_start(est, *, n_sections, n_first_order, structure, stretch, ranges, fs):
    r"""Sections spread on a log frequency scale over the band where the dry has weight.

    Pole radius 0.7, no warp, first-order coefficients 0. The integer shift and the fractional delay make
    the start's mean group delay over the band equal to that of the estimated relative response,
    :math:`ar	au = -\Delta\phi / \Delta\omega` from its unwrapped phase (with the integer delay put
    back). Matching the mean delay matters: the total phase drop over the band cannot be changed by the
    gradient, and GCC-PHAT, which locks onto the strongest arrival, underestimates it for a dispersive
    target. The shift stays at or above ``min(round(delay) - 1, 0)`` (causal when GCC-PHAT is).
    """
    weights = est.weights
    keep = (est.freqs > 0) & (weights > 0)
    if np.count_nonzero(keep) < 2:
        keep = est.freqs > 0
    band = est.freqs[keep]
    fc_lo, fc_hi = ranges.fc_limits(fs)
    lo = max(float(band.min()), fc_lo, 20.0)
    hi = min(float(band.max()), fc_hi, 0.45 * fs)
    hi = max(hi, lo * 1.01)
    fcs = np.geomspace(lo, hi, n_sections + 2)[1:-1]
    sections2 = [(_DEFAULT_RADIUS, fc, 0.0) for fc in fcs]
    coefs1 = [0.0] * n_first_order
    probe = _Layout(n_sections, n_first_order, structure, stretch, est.polarity, None, ranges, fs)
    cells = probe.cells(probe.t_from(sections2, coefs1))
    # Mean group delay over the band: target (unwrapped estimate + integer delay) and the start's sections.
    # The estimate is unwrapped over the whole grid from DC, so that the weighted band's end points are
    # connected through bins where the phase is well defined.
    target_phase = np.unwrap(np.angle(est.H * est.polarity)) - 2 * np.pi * est.freqs / fs * est.integer_delay
    index = np.flatnonzero(keep)[[0, -1]]
    target_delay = _mean_delay(est.freqs[index], target_phase[index], fs=fs)
    own = AllpassCascade(cells, fs=fs).phase(est.freqs[index])
    remaining = target_delay - _mean_delay(est.freqs[index], own, fs=fs)
    shift = max(int(np.round(remaining)) - 1, min(est.integer_delay - 1, 0))
    frac = float(np.clip(remaining - shift, 0.5, 1.5))
    layout = probe.replace(delay_shift=shift)
    return layout, layout.t_from(sections2, coefs1, frac)


def _phase_fit_start(est, *, fs, n_sections, structure, stretch, ranges, seed, options):
    r"""Layout and parameters of the frequency-domain fit (`apfdsp.fit_phase`) on the estimate.

    The target is the estimated relative response with the integer delay put back,
    :math:`H(f)\,e^{-j\omega D}`, and the fit starts from the whole GCC-PHAT delay, so that its delay
    candidates (and its causality floor) refer to the total delay; the Welch bins are merged into at most
    2048 log-spaced bands as `apfdsp.align` does.
    """
    from .align import _reduce_grid  # align imports fit; imported here to keep the module light
    from .fit import fit_phase

    w = 2 * np.pi * est.freqs / fs
    response = est.H * np.exp(-1j * w * est.integer_delay)
    freqs, response, weights = _reduce_grid(est.freqs, response, est.x_psd, est.weights, 2048)
    fit_options = {"stretch": stretch, "ranges": ranges, "delay_search": 2 * n_sections + 1}
    fit_options.update(options or {})
    result = fit_phase(freqs, response, fs=fs, weights=weights, n_sections=n_sections, structure=structure,
                       delay=est.delay_samples, seed=seed, **fit_options)
    return _layout_from_cascade(result.cascade, structure=structure, stretch=stretch, ranges=ranges, fs=fs)


# -- result ---------------------------------------------------------------------------------------------


@dataclass
class AudioFitResult:
    """What `fit_audio` returns.

    Attributes
    ----------
    cascade : AllpassCascade
        The fitted filter including its `Delay` and `Polarity`: ``cascade.apply(dry)`` is the aligned dry.
    loss : float
        Loss of `cascade` on the evaluation audio (the whole overlap of dry and wet, or 16 evenly
        spaced segments of long audio).
    loss_history : ndarray
        Mini-batch loss at every training step.
    eval_history : ndarray, shape (n, 2)
        ``(step, loss)`` of the checkpoints on the evaluation audio; the best one is returned.
    elapsed_s : float
        Wall-clock time, including the delay estimate and any frequency-domain start.
    init : str
        ``"default"``, ``"phase-fit"`` or ``"cascade"``.
    method : str
        ``"allpass"``, or ``"delay+polarity"`` when that baseline had the lower loss.
    delay_samples : float
        GCC-PHAT delay of the wet relative to the dry (samples).
    polarity : int
        Polarity of `cascade`.
    start_loss : float
        Loss of the start on the evaluation audio.
    warmup : ndarray of int
        Warm-up (samples) used at every step.
    settings : dict
        The settings used (JSON-safe).
    """

    cascade: AllpassCascade
    loss: float
    loss_history: np.ndarray
    eval_history: np.ndarray
    elapsed_s: float
    init: str
    method: str
    delay_samples: float
    polarity: int
    start_loss: float
    warmup: np.ndarray
    settings: dict = field(default_factory=dict)


# -- the fit --------------------------------------------------------------------------------------------


def _check_pair(dry, wet):
    dry = valid_audio(dry, name="dry")
    wet = valid_audio(wet, name="wet")
    if dry.ndim > 2 or wet.ndim > 2:
        raise ParameterError(
            f"dry and wet must be 1-D (mono) or 2-D (channels, samples), got shapes {dry.shape} and {wet.shape}"
        )
    try:
        channels = np.broadcast_shapes(dry.shape[:-1], wet.shape[:-1])
    except ValueError:
        raise ParameterError(
            f"dry has channel shape {dry.shape[:-1]} and wet {wet.shape[:-1]}: they must match, or one must be mono"
        ) from None
    dry_b = np.broadcast_to(dry, channels + dry.shape[-1:])
    wet_b = np.broadcast_to(wet, channels + wet.shape[-1:])
    return dry, wet, np.ascontiguousarray(dry_b), np.ascontiguousarray(wet_b)


def fit_audio(
    dry,
    wet,
    *,
    fs,
    loss="multi-resolution",
    n_sections=8,
    n_first_order=1,
    structure="warped",
    stretch=5,
    parameterization="direct",
    init="default",
    n_iter=300,
    lr=0.01,
    batch_size=4,
    segment_length=None,
    warmup="auto",
    loss_options=None,
    ranges=DEFAULT_RANGES,
    max_delay_s=0.1,
    clip=None,
    phase_fit_options=None,
    seed=0,
    callback=None,
):
    r"""Fit an allpass cascade to a dry/wet pair by training on the audio (time domain).

    Parameters
    ----------
    dry : array_like, shape (n,) or (channels, n)
        The unprocessed signal.
    wet : array_like, shape (m,) or (channels, m)
        The processed signal. Lengths may differ; a mono signal broadcasts against a multichannel one
        (one shared cascade is fitted).
    fs : float
        Sample rate of both, in Hz.
    loss : {"multi-resolution", "sum-magnitude", "mse", "ncc"}
        ``"multi-resolution"`` (default): `apfdsp.losses.multi_resolution_sum_magnitude_loss`, the paper's
        sum-magnitude STFT loss averaged over FFT sizes 512, 1024, 2048 (at 48 kHz; scaled with fs) with
        hop = size / 4; ``"sum-magnitude"``: one resolution (2048 / 512 at 48 kHz); ``"mse"``: mean
        squared error; ``"ncc"``: 1 - normalised cross-correlation at lag 0.
    n_sections : int
        Number of second-order sections of the default start (the phase-fit start uses at most this many).
    n_first_order : int
        Number of first-order sections of the default start.
    structure : {"warped", "traditional", "stretched"}
        Second-order section type (see `apfdsp.fit_phase`).
    stretch : int
        K of the stretched structure.
    parameterization : {"direct", "mlp", "shared-mlp"} or object
        Parameterisation of the normalised parameters (`apfdsp.model`); ``"mlp"`` is the paper's
        per-section sinusoidal MLP (use a smaller `lr`, e.g. 1e-3).
    init : {"default", "phase-fit"} or AllpassCascade
        Start of the training: ``"default"`` (sections spread log-uniformly over the dry's band, pole
        radius 0.7, delay and polarity from GCC-PHAT), ``"phase-fit"`` (`apfdsp.fit_phase` on the
        estimated relative response, as in `apfdsp.align`, then refined here), or a cascade to refine.
    n_iter : int
        Number of Adam steps.
    lr : float
        Adam learning rate (cosine decay to 5 % over `n_iter`).
    batch_size : int
        Segments per mini-batch.
    segment_length : int, optional
        Samples per segment scored by the loss (without warm-up). Default: 8192 at 48 kHz, scaled with fs
        to a power of two. Shortened to the overlap of dry and wet when that is shorter.
    warmup : "auto", "bound" or int
        Samples filtered before each segment and left out of the loss. ``"auto"`` (default): recomputed
        at every step as the time the slowest pole of the current filter takes to decay by 60 dB;
        ``"bound"``: the same for the slowest pole the ranges allow (`warmup_bound`); an int: fixed.
        Where the warm-up reaches back past the start of the audio, the segment is filtered from the start
        (from rest, exactly as the effect was).
    loss_options : dict, optional
        Keyword arguments of the loss function (``fft_sizes``, ``hop_ratio``; ``n_fft``, ``hop``).
    ranges : ParamRanges
        Parameter ranges (pole radius limit, pole frequency range, ...).
    max_delay_s : float
        Largest latency searched by GCC-PHAT, in seconds.
    clip : float, optional
        Clip the gradient to this global norm.
    phase_fit_options : dict, optional
        Further keyword arguments of `apfdsp.fit_phase` for ``init="phase-fit"``. ``delay_search``
        defaults to ``2 * n_sections + 1`` here (`apfdsp.fit_phase`: 2): the dispersion of an allpass
        biases GCC-PHAT upwards (by 5 to 12 samples for 6 random sections), and an allpass of order N
        carries a mean group delay of N samples, so the bulk delay can lie up to N samples lower.
    seed : int
        Seed of the mini-batch draws, the MLP initialisation and the phase fit: the result is
        deterministic for a given seed.
    callback : callable, optional
        ``callback(step, n_iter, loss_value)`` after every step; returning True stops the training.

    Returns
    -------
    AudioFitResult
        ``.cascade`` (with Delay and Polarity; ``.cascade.apply(dry)`` is aligned with `wet`),
        ``.loss_history``, ``.elapsed_s`` and more.

    Raises
    ------
    TypeError
        If `ranges` is not a `ParamRanges` or `init` is of the wrong type.
    AudioError
        If the audio is empty, silent, non-finite, or its aligned overlap is shorter than the loss needs.
    ParameterError
        For a bad value of any option (for instance an unknown `loss` name).
    NotImplementedError
        For an init cascade with stretched first-order sections.

    See Also
    --------
    apfdsp.align.align : the frequency-domain route (much faster; fits the phase of the estimated
        relative response).
    apfdsp.tdfilter.sosfilt : the differentiable filter.

    Notes
    -----
    **Model.** With normalised parameters :math:`t = g_\theta` from the parameterisation, the output
    for the dry :math:`x` is

    .. math:: \hat y[n] = s \, (H_\theta x)[n - D],

    where :math:`s = \pm 1` and the integer shift :math:`D` are fixed from GCC-PHAT, and
    :math:`H_\theta` is the cascade of second-order sections (rows
    :math:`[p_2, p_1, 1, 1, p_1, p_2]`, with :math:`p_1 = a_1/a_0`, :math:`p_2 = a_2/a_0`,
    :math:`a_0 = 1 + ad + ca^2`, :math:`a_1 = 2a + d(1 + a^2) + 2ac`, :math:`a_2 = a^2 + ad + c`,
    :math:`c = R^2`, :math:`d = -2R\cos(2\pi f_c/f_s)`; [1]_ Eqs. 1-3), first-order sections
    :math:`(b + z^{-1})/(1 + bz^{-1})` and a Thiran section for the fractional delay
    :math:`\delta \in (0.5, 1.5)`, :math:`b = (1 - \delta)/(1 + \delta)`. A stretched section
    :math:`H_W(z^K)` ([1]_ Eq. 5) is run as :math:`H_W(z)` on the K polyphase components of the signal.

    **Segments and warm-up.** A mini-batch draws B segment starts :math:`s_b` uniformly. Segment b is
    filtered from rest over :math:`x[s_b - W \ldots s_b + L)` and the loss scores its last L samples
    against :math:`y[s_b + D \ldots s_b + D + L)`. The state error at :math:`s_b` is a free response of
    the filter, which decays like :math:`r^n` for the largest pole radius r, so with

    .. math:: W = \left\lceil \frac{\ln 10^{-60/20}}{\ln r} \right\rceil

    the start-up transient has decayed by 60 dB before the scored part (`warmup_samples`); samples
    before the start of the audio are zeros, which is exact.

    **Losses** (sums over segments, channels, frames t and bins f; X, Y the STFTs of :math:`\hat y, y`):

    .. math::

        L_{SM} = \frac{\sum |X| + |Y| - |X + Y|}{\sum |X| + |Y|}, \qquad
        L_{MSE} = \overline{(\hat y - y)^2}, \qquad
        L_{NCC} = 1 - \frac{\sum \hat y y}{\|\hat y\| \|y\|},

    and the multi-resolution loss is the mean of :math:`L_{SM}` over the FFT sizes.

    **Training.** Adam [2]_ on the flattened parameters with learning rate
    :math:`\eta_i = \eta\,(0.05 + 0.95 \cdot \tfrac12 (1 + \cos(\pi i / N)))`. The loss of the
    evaluation audio (the whole overlap, filtered exactly from the start of the audio; for audio longer
    than 16 segments, 16 evenly spaced segments with warm-up) is computed at the start and at 10
    checkpoints; the best parameters are returned, and the delay + polarity baseline instead if its loss
    is lower.

    **Default start.** The integer shift and the Thiran delay are chosen so that the start's mean group
    delay over the dry's band equals that of the estimated relative response H,
    :math:`\bar\tau = -\Delta\phi/\Delta\omega` (unwrapped phase of H with the integer delay put back).
    The total phase drop over the band is fixed by the integer shift and the filter order, which the
    gradient cannot change, and the GCC-PHAT delay (the strongest arrival) underestimates it for
    dispersive targets.

    References
    ----------
    .. [1] A. R. Bargum et al., "Differentiable Allpass Filters for Phase Response Estimation and
       Automatic Signal Alignment", DAFx 2023, arXiv:2306.00860.
    .. [2] D. P. Kingma and J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import Allpass2, AllpassCascade, Delay
    >>> from apfdsp.metrics import null_depth_db
    >>> fs = 16000
    >>> dry = np.random.default_rng(0).standard_normal(fs // 2)
    >>> effect = AllpassCascade([Allpass2(0.8, 700.0), Delay(5.0)], fs=fs)
    >>> result = fit_audio(dry, effect(dry), fs=fs, n_sections=1, n_first_order=0, n_iter=100, lr=0.05)
    >>> bool(null_depth_db(result.cascade.apply(dry), effect(dry), fs=fs) < -40)
    True
    """
    start_time = time.perf_counter()
    fs = valid_fs(fs)
    dry_in, wet_in, dry, wet = _check_pair(dry, wet)
    loss_fn, shortest, loss_options = _loss_setup(loss, fs, loss_options)
    n_sections = valid_int(n_sections, "n_sections", minimum=1, maximum=64)
    n_first_order = valid_int(n_first_order, "n_first_order", minimum=0, maximum=64)
    if not isinstance(structure, str) or structure not in STRUCTURES:
        raise ParameterError(f"structure must be one of {STRUCTURES}, got {structure!r}")
    stretch = valid_int(stretch, "stretch", minimum=1, maximum=64)
    n_iter = valid_int(n_iter, "n_iter", minimum=0)
    lr = valid_range(lr, "lr", 0.0, np.inf, lo_open=True, hi_open=True)
    batch_size = valid_int(batch_size, "batch_size", minimum=1)
    if segment_length is None:
        segment_length = max(_pow2(8192 * fs / 48000.0), shortest)
    segment_length = valid_int(segment_length, "segment_length", minimum=shortest)
    if isinstance(warmup, str):
        if warmup not in ("auto", "bound"):
            raise ParameterError(f"warmup must be 'auto', 'bound' or a number of samples, got {warmup!r}")
    else:
        warmup = valid_int(warmup, "warmup", minimum=0)
    if not isinstance(ranges, ParamRanges):
        raise TypeError(f"ranges must be a ParamRanges, got {type(ranges).__name__}")
    ranges.fc_limits(fs)
    valid_range(max_delay_s, "max_delay_s", 0.0, np.inf, lo_open=True, hi_open=True)
    if clip is not None:
        clip = valid_range(clip, "clip", 0.0, np.inf, lo_open=True, hi_open=True)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ParameterError(f"seed must be an integer, got {seed!r}")
    if isinstance(init, str):
        if init not in INITS:
            raise ParameterError(f"init must be one of {INITS} or an AllpassCascade, got {init!r}")
    elif not isinstance(init, AllpassCascade):
        raise TypeError(f"init must be one of {INITS} or an AllpassCascade, got {type(init).__name__}")
    param = get_parameterization(parameterization)
    rng = np.random.default_rng(seed)

    if min(dry.shape[-1], wet.shape[-1]) < shortest:
        raise AudioError(
            f"dry and wet overlap by {min(dry.shape[-1], wet.shape[-1])} samples; loss {loss!r} needs at "
            f"least {shortest}: use longer audio or smaller loss_options"
        )
    # Delay and polarity first (GCC-PHAT), then the start.
    est = estimate(dry_in, wet_in, fs=fs, max_delay_s=max_delay_s)
    if isinstance(init, AllpassCascade):
        init_name = "cascade"
        layout, t0 = _layout_from_cascade(init, structure=structure, stretch=stretch, ranges=ranges, fs=fs)
    elif init == "phase-fit":
        init_name = init
        layout, t0 = _phase_fit_start(est, fs=fs, n_sections=n_sections, structure=structure,
                                      stretch=stretch, ranges=ranges, seed=seed, options=phase_fit_options)
    else:
        init_name = init
        layout, t0 = _default_start(est, n_sections=n_sections, n_first_order=n_first_order,
                                    structure=structure, stretch=stretch, ranges=ranges, fs=fs)

    segments = _Segments(dry, wet, layout.delay_shift, segment_length)
    if segments.available < shortest:
        raise AudioError(
            f"dry and wet overlap by {max(segments.available, 0)} samples after removing the delay of "
            f"{layout.delay_shift + 1} samples; loss {loss!r} needs at least {shortest}: use longer audio "
            "or smaller loss_options"
        )
    filt = _Filter(layout)
    bound = warmup_bound(structure=structure, ranges=ranges, stretch=stretch)

    def warmup_for(t):
        if warmup == "auto":
            return filt.warmup(t)
        return bound if warmup == "bound" else warmup

    def batch_loss(x, y, skip):
        def objective(params):
            return loss_fn(filt(param.forward(params), x)[..., skip:], y)

        return objective

    eval_starts = segments.eval_starts()

    def evaluate(t):
        x, y, skip = segments.batch(eval_starts, warmup_for(t))
        return float(loss_fn(filt(t, x)[..., skip:], y))

    # Training: Adam on flattened parameters, cosine learning-rate decay, checkpoints on the whole audio.
    params0 = param.init(t0, rng=rng)
    flat, unflatten = flatten(params0)
    state = adam_init(flat)
    schedule = cosine_schedule(max(n_iter, 1))
    history, warmups = np.empty(n_iter), np.empty(n_iter, dtype=int)
    checkpoints = set(np.linspace(0, n_iter, _N_CHECKPOINTS + 1).round().astype(int).tolist())
    best_t = np.asarray(param.forward(params0))
    start_loss = best_loss = evaluate(best_t)
    evals = [(0, start_loss)]
    steps_done = 0
    for i in range(n_iter):
        params = unflatten(state.params)
        t = np.asarray(param.forward(params))
        x, y, skip = segments.batch(segments.random_starts(rng, batch_size), warmup_for(t))
        value, grad = value_and_grad(lambda f: batch_loss(x, y, skip)(unflatten(f)))(state.params)
        history[i], warmups[i] = value, skip
        steps_done = i + 1
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            break
        state = adam_step(state, grad, lr=lr * schedule(i), clip=clip)
        stop = callback is not None and callback(i, n_iter, float(value))
        if steps_done in checkpoints or stop:
            t = np.asarray(param.forward(unflatten(state.params)))
            current = evaluate(t)
            evals.append((steps_done, current))
            if current < best_loss:
                best_loss, best_t = current, t
        if stop:
            break
    history, warmups = history[:steps_done], warmups[:steps_done]

    # Never worse than delay + polarity alone (GCC-PHAT delay: integer shift + Thiran section).
    method, cells = "allpass", layout.cells(best_t)
    base_shift = int(np.round(est.delay_samples)) - 1
    base_layout = _Layout(0, 0, structure, stretch, est.polarity, base_shift, ranges, fs)
    base_t = base_layout.t_from([], [], est.delay_samples - base_shift)
    base_segments = _Segments(dry, wet, base_shift, segment_length)
    if base_segments.available >= shortest:
        base_loss = _evaluate_layout(base_segments, base_layout, base_t, loss_fn)
        if base_loss < best_loss:
            method, cells, best_loss = "delay+polarity", base_layout.cells(base_t), base_loss
    cascade = AllpassCascade(cells, fs=fs)
    settings = {
        "loss": loss, "loss_options": {k: list(v) if isinstance(v, tuple) else v for k, v in loss_options.items()},
        "n_sections": n_sections, "n_first_order": n_first_order, "structure": structure, "stretch": stretch,
        "parameterization": param.name, "init": init_name, "n_iter": n_iter, "lr": lr,
        "batch_size": batch_size, "segment_length": int(segments.length), "warmup": warmup,
        "warmup_bound": int(bound), "ranges": ranges.to_dict(), "max_delay_s": max_delay_s, "clip": clip,
        "seed": int(seed), "delay_shift": int(layout.delay_shift),
    }
    return AudioFitResult(
        cascade=cascade,
        loss=float(best_loss),
        loss_history=history,
        eval_history=np.array(evals, dtype=float),
        elapsed_s=time.perf_counter() - start_time,
        init=init_name,
        method=method,
        delay_samples=float(est.delay_samples),
        polarity=cascade.polarity,
        start_loss=float(start_loss),
        warmup=warmups,
        settings=settings,
    )


def _evaluate_layout(segments, layout, t, loss_fn):
    """Loss of the cascade (layout, t) on the evaluation segments of `segments`."""
    filt = _Filter(layout)
    x, y, skip = segments.batch(segments.eval_starts(), filt.warmup(t))
    return float(loss_fn(filt(t, x)[..., skip:], y))
