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
* **A start from the audio itself.** The default start is M. Lang's equation-error allpass design
  solved in the time domain on the dry/wet samples (linear least squares for every order, delay and
  polarity, then Steiglitz-McBride iterations), exact on audio through an allpass; the original
  started from random MLP weights. A start from the frequency-domain fit (``init="phase-fit"``) is
  available too.
* **Any sample rate** and stable parameter ranges (`apfdsp.ranges.ParamRanges`).

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
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

from ._validate import valid_audio, valid_fs, valid_int, valid_range
from .cascade import Allpass1, Allpass2, AllpassCascade, Delay
from .estimate import estimate
from .exceptions import AudioError, ParameterError
from .filters import second_order_denominator, thiran_coef
from .fit import STRUCTURES, _Layout, equation_error_phase_loss
from .losses import mse_loss, multi_resolution_sum_magnitude_loss, ncc_loss, phase_loss, sum_magnitude_stft_loss
from .metrics import null_depth_db
from .model import get_parameterization
from .optim import adam_init, adam_step, cosine_schedule
from .ranges import DEFAULT_RANGES, ParamRanges
from .tdfilter import sosfilt
from .threads import single_threaded_blas

__all__ = ["fit_audio", "AudioFitResult", "LOSSES", "INITS", "warmup_samples", "warmup_bound", "SECTION_RUNGS",
           "MAX_SECTIONS", "BASE_SECTIONS", "ORDER_MARGIN_DB", "more_sections"]

#: Loss names accepted by `fit_audio`.
LOSSES = ("multi-resolution", "sum-magnitude", "mse", "ncc")
#: Start names accepted by `fit_audio` (an `AllpassCascade` is accepted too).
INITS = ("default", "equation-error", "log-spaced", "phase-fit")

_DECAY_DB = 60.0  # the warm-up lets the slowest pole decay by this much
_N_CHECKPOINTS = 10  # full-audio evaluations during training (the best one is kept)
_N_EVAL_SEGMENTS = 16  # longer audio is evaluated on this many evenly spaced segments
_LOG_SPACED_RADIUS = 0.7  # pole radius of the sections of the log-spaced start
_EQ_MAX_ROWS = 2**16  # sample times per channel in the least-squares problems of the equation-error start
_EQ_MAX_SPAN = 2**18  # the sample times lie within this many samples from the dry's onset
_EQ_N_BLOCKS = 8  # more sample times than _EQ_MAX_ROWS: this many evenly spaced blocks
_EQ_CHUNK = 8192  # rows of lagged samples formed at once
_EQ_N_CANDIDATES = 4  # equation-error designs refined (Steiglitz-McBride) and scored on the loss
_EQ_SM_ITER = 3  # Steiglitz-McBride iterations per design
_EQ_MAX_ORDER = 2 * 32 + 2  # highest allpass order of the equation-error designs (MAX_SECTIONS sections)
_EQ_ORIGIN = 1e-5  # poles closer to z = 0 are one-sample delays
_EXACT_NULL_DB = -100.0  # null depth of the start on the whole audio below which it is not trained
_EQ_IV_RCOND = 1e-13  # relative eigenvalue floor of the instruments' Gram matrix
_EQ_GAIN_ITER = 3  # alternations of gain and denominator in the screening solves
_EQ_N_DELAYS = 2  # bulk delays per (order, polarity) whose output error is computed
_EQ_WARPS = (-0.8, 0.5)  # warps of the warped designs (structure="warped"), as in apfdsp.fit
_EQ_N_WARP_DELAYS = 3  # bulk delays of the warped designs

#: Rungs of the automatic order (``n_sections=None``): the largest number of second-order sections tried.
SECTION_RUNGS = (3, 8, 16, 32)
#: Sections of the starts other than the equation-error one with ``n_sections=None`` (and of
#: `apfdsp.align`'s frequency-domain fit).
BASE_SECTIONS = 8
#: Largest number of second-order sections the automatic order uses.
MAX_SECTIONS = SECTION_RUNGS[-1]
#: A rung of more sections is kept when it deepens the null on the audio by at least this many dB.
ORDER_MARGIN_DB = 1.0
#: `more_sections` tries a high-order design only when an equation-error probe of the highest rung's order
#: beats the first fit's phase loss on the estimate by this many dB (a cheap probe before a costly design).
PROBE_MARGIN_DB = 10.0
#: A measured magnitude response flatter than this (weighted RMS spread, dB) marks an allpass effect.
FLAT_DB = 0.5
#: ... and a weighted mean coherence above this.
FLAT_COHERENCE = 0.9995
_TINY = np.finfo(float).tiny


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


def warmup_bound(*, structure="warped", ranges=DEFAULT_RANGES, stretch=5, decay_db=_DECAY_DB, fs=None):
    r"""Warm-up that covers every filter the parameter ranges allow (from the pole radius limits).

    Parameters
    ----------
    structure : {"warped", "traditional", "stretched"}
        Second-order section type.
    ranges : ParamRanges
        Parameter ranges; their radius and coefficient limits at `fs` and ``warp_max`` matter.
    stretch : int
        K of the stretched structure.
    decay_db : float
        Decay in dB, default 60.
    fs : float, optional
        Sample rate in Hz; needed unless the ranges fix ``r_max`` and ``coef_max`` per sample.

    Returns
    -------
    n : int
        Samples for the slowest pole any allowed parameter set can have to decay by `decay_db`.

    Notes
    -----
    A warped section maps its pole p (in the warped delay v, :math:`|p| \le R_{max}`) to
    :math:`z = (p - a)/(1 - a p)` with :math:`1 - |z|^2 = (1 - a^2)(1 - |p|^2)/|1 - ap|^2`, so its largest
    z-plane radius is :math:`\sqrt{1 - (1 - a^2)(1 - R^2)/(1 + |a| R)^2}` at :math:`|a| = a_{max}`. With the
    default ranges at 48 kHz (R 0.999, a 0.95) that is 0.99997: 269 000 samples, far more than what fitted filters
    need, which is why `fit_audio` recomputes the warm-up from the current filter by default. First-order
    sections are bounded by ``coef_max``, the Thiran section by 1/3; stretched sections take K times
    longer.

    Examples
    --------
    >>> warmup_bound(structure="traditional", fs=48000)
    6912
    """
    if structure not in STRUCTURES:
        raise ParameterError(f"structure must be one of {STRUCTURES}, got {structure!r}")
    if not isinstance(ranges, ParamRanges):
        raise TypeError(f"ranges must be a ParamRanges, got {type(ranges).__name__}")
    if fs is None and (ranges.r_max is None or ranges.coef_max is None):
        raise ParameterError("the ranges' limits depend on the sample rate: pass fs")
    radius = ranges.radius_limit(fs)
    if structure != "traditional":
        radius = _warped_radius_bound(radius, ranges.warp_max)
    k = stretch if structure == "stretched" else 1
    return max(warmup_samples(radius, stretch=k, decay_db=decay_db),
               warmup_samples(ranges.coef_limit(fs), decay_db=decay_db))


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

    Second-order rows (:math:`p_1 = a_1/a_0`, :math:`p_2 = a_2/a_0`, docs/maths.md section 2.2)::

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
            radius = r.pole_radius(t2[:, 0], fs=lay.fs)
            den = second_order_denominator(radius, r.fc_hz(t2[:, 1], fs=lay.fs), fs=lay.fs)
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
            coefs.append(r.coef(t[lay.n2 : lay.n2 + lay.n1, 0], fs=lay.fs))
        if lay.delay_shift is not None:
            coefs.append(anp.reshape(thiran_coef(1.0 + 0.5 * t[-1, 0]), (1,)))
        if coefs:
            b = anp.concatenate(coefs)
            ones, zeros = np.ones(b.shape[0]), np.zeros(b.shape[0])
            rows1 = anp.stack([b, ones, zeros, ones, b, zeros], axis=1)
        return rows2, rows1

    def __call__(self, t, x):
        """Filter `x` (..., n) along the last axis (integer shift not applied). Differentiable in t.

        Anticausal sections (``layout.anticausal``) run on the time-reversed output of the causal ones,
        as `apfdsp.AllpassCascade.apply` runs them.
        """
        rows2, rows1 = self.sos(t)
        if any(self.layout.anticausal):
            return self._two_sided(rows2, rows1, x)
        y = x
        if rows2 is not None and self.stretch == 1 and rows1 is not None:
            y = sosfilt(anp.concatenate([rows2, rows1], axis=0), y)
        else:
            if rows2 is not None:
                y = self._stretched(rows2, y) if self.stretch > 1 else sosfilt(rows2, y)
            if rows1 is not None:
                y = sosfilt(rows1, y)
        return -y if self.layout.polarity < 0 else y

    def _two_sided(self, rows2, rows1, x):
        """Causal rows forwards, then anticausal rows on the time-reversed signal."""
        if self.stretch > 1:
            raise ParameterError("the stretched structure cannot have anticausal sections")
        lay = self.layout
        flags = np.asarray(lay.anticausal, dtype=bool)
        rows = [r for r in (rows2, rows1) if r is not None]
        rows = rows[0] if len(rows) == 1 else anp.concatenate(rows, axis=0)
        # the Thiran row (last, when there is a delay unit) is causal
        flags = np.concatenate([flags, np.zeros(rows.shape[0] - flags.size, dtype=bool)])
        causal, anti = np.flatnonzero(~flags), np.flatnonzero(flags)
        y = sosfilt(rows[causal], x) if causal.size else x
        y = sosfilt(rows[anti], y[..., ::-1])[..., ::-1]
        return -y if lay.polarity < 0 else y

    def warmups(self, t, decay_db=_DECAY_DB):
        """``(before, after)``: warm-up before a segment (all sections, as `warmup`) and after it (the
        anticausal sections, which ring before their input; 0 for a causal cascade)."""
        before = self.warmup(t, decay_db)
        return before, (before if any(self.layout.anticausal) else 0)

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

    def batch(self, starts, warmup, after=0):
        """``(x, y, warmup)``: dry segments (batch, ..., warmup + length + after), wet (batch, ..., length).

        The model output for the wet is ``filtered[..., warmup : warmup + length]``. `after` samples past
        the segment end (the warm-up of anticausal sections, zeros past the end of the audio, where
        `apfdsp.AllpassCascade.apply` starts them from rest too).
        """
        if starts is None:  # the whole overlap, filtered from the start of the audio (exact)
            x = self.dry[..., : min(self.hi + int(after), self.dry.shape[-1])][None]
            return x, self.wet[..., self.lo + self.shift : self.hi + self.shift][None], self.lo
        warmup = int(min(warmup, max(int(np.max(starts)), 0)))
        n = self.length
        end = self.dry.shape[-1]
        after = int(min(after, max(end - int(np.min(starts)) - n, 0)))
        x = np.zeros((len(starts),) + self.dry.shape[:-1] + (warmup + n + after,))
        y = np.empty((len(starts),) + self.wet.shape[:-1] + (n,))
        for i, s in enumerate(starts):
            first, last = max(0, s - warmup), min(end, s + n + after)
            x[i, ..., warmup - (s - first) : warmup + (last - s)] = self.dry[..., first:last]
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


def _layout_from_cascade(cascade, *, structure, stretch, ranges, fs, anticausal=False):
    """Layout and normalised parameters that reproduce `cascade` (ParameterError if impossible).

    Anticausal cells are accepted with ``anticausal=True`` only.
    """
    if cascade.fs != fs:
        raise ParameterError(f"init cascade has fs={cascade.fs:g} Hz, the audio fs={fs:g} Hz")
    sections2, coefs1, delay, polarity = [], [], 0.0, 1
    flags2, flags1 = [], []
    fc_lo, fc_hi = ranges.fc_limits(fs)
    for cell in cascade:
        if getattr(cell, "anticausal", False):
            if not anticausal:
                raise ParameterError(f"init cascade cell {cell} is anticausal: pass anticausal=True to train it")
            if cell.stretch != 1:
                raise ParameterError(f"init cascade cell {cell}: stretched sections cannot be anticausal")
        if isinstance(cell, Allpass2):
            flags2.append(bool(cell.anticausal))
            k = stretch if structure == "stretched" else 1
            if cell.stretch != k or (structure == "traditional" and cell.warp != 0.0):
                raise ParameterError(
                    f"init cascade cell {cell} cannot be trained with structure={structure!r}"
                    + (f", stretch={stretch}" if structure == "stretched" else "")
                    + "; pass the matching structure"
                )
            warp_ok = cell.warp == 0.0 or abs(cell.warp) < ranges.warp_max
            if not (cell.pole_radius < ranges.radius_limit(fs) and fc_lo <= cell.fc_hz <= fc_hi and warp_ok):
                raise ParameterError(
                    f"init cascade cell {cell} lies outside the parameter ranges {ranges} (pole radius "
                    f"below {ranges.radius_limit(fs):.6g} at {fs:g} Hz); pass wider ranges=ParamRanges(...)"
                )
            sections2.append((cell.pole_radius, cell.fc_hz, cell.warp))
        elif isinstance(cell, Allpass1):
            if cell.stretch != 1:
                raise NotImplementedError("stretched first-order sections cannot be trained by fit_audio")
            coef = (cell.coef + cell.warp) / (1.0 + cell.coef * cell.warp)  # warping only re-parameterises
            if not abs(coef) < ranges.coef_limit(fs):
                raise ParameterError(
                    f"init cascade cell {cell} (coefficient {coef:.6g}) lies outside coef_max="
                    f"{ranges.coef_limit(fs):.6g} at {fs:g} Hz; pass wider ranges=ParamRanges(max_decay_s=...)"
                )
            coefs1.append(coef)
            flags1.append(bool(cell.anticausal))
        elif isinstance(cell, Delay):
            delay += cell.samples
        else:
            polarity *= cell.sign
    shift = int(np.round(delay)) - 1
    flags = tuple(flags2 + flags1)
    layout = _Layout(len(sections2), len(coefs1), structure, stretch, polarity, shift, ranges, fs,
                     flags if any(flags) else ())
    return layout, layout.t_from(sections2, coefs1, delay - shift)


def _mean_delay(freqs, phase, *, fs):
    """Mean group delay (samples) over the band of `freqs`: minus the phase drop over the band, per rad."""
    return -float(phase[-1] - phase[0]) / (2 * np.pi * float(freqs[-1] - freqs[0]) / fs)


def _log_spaced_start(est, *, n_sections, n_first_order, structure, stretch, ranges, fs):
    r"""Sections spread on a log frequency scale over the band where the dry has weight.

    Pole radius 0.7, no warp, first-order coefficients 0. The integer shift and the fractional delay make
    the start's mean group delay over the band equal to that of the estimated relative response,
    :math:`\bar\tau = -\Delta\phi / \Delta\omega` from its unwrapped phase (with the integer delay put
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
    sections2 = [(_LOG_SPACED_RADIUS, fc, 0.0) for fc in fcs]
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


# -- the equation-error start (time domain) -------------------------------------------------------------


class _LaggedPair:
    r"""Lagged (or warped-lagged) samples of a dry/wet pair: the least-squares data of the equation-error start.

    With the warped delay :math:`V = (z^{-1} + \lambda)/(1 + \lambda z^{-1})` (:math:`V = z^{-1}` for
    :math:`\lambda = 0`; the substitution of the warped sections, docs/maths.md sections 2.1 and 9.3), a row holds at
    one sample time n the columns :math:`Y_c = (V^c y)[n]`, :math:`c = 0 \ldots K`, then
    :math:`X_c = (V^c z^{-L_{lo}} x)[n]`, :math:`c = 0 \ldots L_{hi} - L_{lo}` (x the dry, y the wet).
    For :math:`\lambda = 0` these are the lagged samples :math:`y[n - c]` and :math:`x[n - L_{lo} - c]`,
    taken with sliding windows; otherwise each power of V is one more first-order allpass pass. Only
    sample times at which every lag exists are used (the covariance method, no zero padding): at most
    `max_rows` per channel, in `_EQ_N_BLOCKS` evenly spaced blocks when there are more (a sweep then
    contributes all its frequencies), from the first sample where the dry is not silent to at most
    `max_span` samples later. All filtering runs from the start of the audio, from rest, as the effect
    did, so it is exact. The wet is divided by a gain per channel (`gain`: first the ratio of RMS
    levels, which an allpass keeps; later the least-squares gain of a model), so that a level
    difference does not bias the designs: they are level-invariant, like the loss.
    """

    def __init__(self, dry, wet, max_rows=_EQ_MAX_ROWS, max_span=_EQ_MAX_SPAN):
        self.dry = dry.reshape(-1, dry.shape[-1])
        self.wet = wet.reshape(-1, wet.shape[-1])
        loud = np.flatnonzero(np.max(np.abs(self.dry), axis=0) > 1e-3 * np.max(np.abs(self.dry)))
        self.onset = int(loud[0]) if loud.size else 0
        self.max_rows, self.max_span = max_rows, max_span
        span = slice(self.onset, self.onset + max_span)
        dry_power = np.sum(self.dry[:, span] ** 2, axis=-1)
        wet_power = np.sum(self.wet[:, span] ** 2, axis=-1)
        ok = (dry_power > 0) & (wet_power > 0)
        self.gain = np.where(ok, np.sqrt(wet_power / np.where(ok, dry_power, 1.0)), 1.0)

    def blocks(self, y_order, x_lags):
        """List of ``(first, stop)`` blocks of sample times that have all the lags (empty if none)."""
        first = self.onset + max(y_order, x_lags[1], 0)
        stop = min(self.wet.shape[-1], self.dry.shape[-1] + x_lags[0], self.onset + self.max_span)
        if stop <= first:
            return []
        if stop - first <= self.max_rows:
            return [(first, stop)]
        length = self.max_rows // _EQ_N_BLOCKS
        starts = np.linspace(first, stop - length, _EQ_N_BLOCKS).round().astype(int)
        return [(int(a), int(a) + length) for a in starts]

    def gram(self, y_order, x_lags, *, warp=0.0, poles=None, gain=None):
        r"""Gram matrix of the rows, summed over channels; None if no sample time has all the lags.

        The wet is divided by `gain` (per channel; default `self.gain`). With `poles` (of
        :math:`A(V)`), both signals are first filtered by :math:`1/A(V)` (`_inverse_sos`), the
        prefilter of a Steiglitz-McBride iteration.
        """
        x_lo, x_hi = x_lags
        blocks = self.blocks(y_order, x_lags)
        if not blocks:
            return None
        stop = blocks[-1][1]
        gain = self.gain if gain is None else gain
        ys, xs = self.wet[:, :stop] / gain[:, None], self.dry[:, : stop - x_lo]
        if poles is not None:
            sos = _inverse_sos(poles, warp)
            ys, xs = signal.sosfilt(sos, ys), signal.sosfilt(sos, xs)
        if warp == 0.0:
            # Row n of a sliding window of length K + 1 starting at n - K, reversed: s[n], ..., s[n - K].
            y_cols = sliding_window_view(ys, y_order + 1, axis=-1)[:, :, ::-1]
            x_cols = sliding_window_view(xs, x_hi - x_lo + 1, axis=-1)[:, :, ::-1]
            y_offset, x_offset = y_order, x_hi
        else:
            times = np.concatenate([np.arange(a, b) for a, b in blocks])
            y_cols = _warped_lags(ys, y_order, warp, times)
            x_cols = _warped_lags(xs, x_hi - x_lo, warp, times - x_lo)
            blocks, y_offset, x_offset = [(0, len(times))], 0, 0
        size = y_order + 1 + x_hi - x_lo + 1
        gram = np.zeros((size, size))
        for first, last in blocks:
            for p in range(first, last, _EQ_CHUNK):
                q = min(p + _EQ_CHUNK, last)
                for channel in range(ys.shape[0]):
                    rows = np.concatenate([y_cols[channel, p - y_offset : q - y_offset],
                                           x_cols[channel, p - x_offset : q - x_offset]], axis=1)
                    gram += rows.T @ rows
        return gram

    def output_error(self, z_poles, delay, polarity, blocks, anticausal=None):
        r"""Level-invariant output error of a model over `blocks`, and its gains.

        With the model :math:`m = s z^{-D} z^{-N} A(z^{-1})/A(z)\, x` (A with the z-plane roots
        `z_poles`; `blocks`, from `blocks`, must hold the lags ``delay ... delay + N``) and the
        least-squares gain :math:`g_c \ge 0` of every channel, the error is
        :math:`\sum_c \|y_c - g_c m_c\|^2 / \sum_c \|y_c\|^2`.

        With `anticausal` (a bool per pole of `z_poles`, all inside the unit circle), the flagged poles
        are sections run backwards in time (over the whole dry, as `apfdsp.AllpassCascade.apply` does):
        the model then has the poles ``1 / conj(p)`` of the flagged ones, with the same delay.

        Returns
        -------
        error : float
        gain : ndarray, shape (channels,)
            The gains :math:`g_c` (1 where the model is silent or anti-correlated).
        """
        stop = blocks[-1][1]
        if anticausal is not None and np.any(anticausal):
            z_poles, anticausal = np.asarray(z_poles), np.asarray(anticausal, dtype=bool)
            full = signal.sosfilt(_allpass_sos(z_poles[~anticausal]), self.dry)
            full = polarity * signal.sosfilt(_allpass_sos(z_poles[anticausal]), full[:, ::-1])[:, ::-1]
        else:
            full = polarity * signal.sosfilt(_allpass_sos(z_poles), self.dry[:, : stop - delay])
        wet = np.concatenate([self.wet[:, first:last] for first, last in blocks], axis=1)
        model = np.concatenate([full[:, first - delay : last - delay] for first, last in blocks], axis=1)
        cross, power = np.sum(wet * model, axis=1), np.sum(model**2, axis=1)
        gain = np.where(cross > 0, cross / np.maximum(power, 1e-300), 0.0)
        error = np.sum((wet - gain[:, None] * model) ** 2) / max(np.sum(wet**2), 1e-300)
        return float(error), np.where(gain > 0, gain, 1.0)


def _warped_lags(s, order, warp, times):
    r"""``(channels, len(times), order + 1)``: :math:`(V^c s)[n]` for the sample times n, c = 0 ... order."""
    out = np.empty(s.shape[:1] + (len(times), order + 1))
    for c in range(order + 1):
        out[:, :, c] = s[:, times]
        if c < order:
            s = signal.lfilter([warp, 1.0], [1.0, warp], s, axis=-1)
    return out


def _solve_equation_error(gram, *, y_order, x_lo, order, delays, polarity, instrumental=False, n_gain=0):
    r"""Least-squares allpass denominators of one order for several bulk delays (time-domain equation error).

    The model is :math:`y = g s\, z^{-D} V^N A(V^{-1}) / A(V)\, x` with
    :math:`A(V) = 1 + \sum_{k=1}^N a_k V^k` (V the warped delay of `_LaggedPair`; :math:`z^{-1}` without
    warping) and a gain g = 1/c. Multiplied by A it is linear in :math:`a_k` for a given c (M. Lang's
    equation error, docs/maths.md sections 8.1 and 9.1); without warping, with :math:`M = D + N`,

    .. math:: c \Big(y[n] + \sum_k a_k y[n-k]\Big) = s \Big(x[n-M] + \sum_k a_k x[n-M+k]\Big),

    i.e. :math:`U a = v` with columns :math:`u_k = c Y_k - s X_{N-k}` and :math:`v = s X_N - c Y_0`,
    where :math:`Y_k = V^k y` and :math:`X_j = V^j z^{-D} x` (`_LaggedPair.gram`; without warping,
    every D in the dry lags of the Gram matrix can be solved for, with warping only D = `x_lo`). Plain
    least squares solves :math:`U^T U a = U^T v`. Noise on y enters U and biases that solution; with
    ``instrumental=True`` the equations are projected on the dry columns Z of the Gram matrix
    (instruments: correlated with U, not with noise on the wet): inner products
    :math:`\langle p, q\rangle = p^T Z (Z^T Z)^{-1} Z^T q` (two-stage least squares), which is
    consistent. Every inner product is a quadratic form of the Gram matrix. With `n_gain` > 0, c starts
    at 1 and alternates `n_gain` times with a: :math:`c = \langle w, t\rangle / \langle w, w\rangle`,
    :math:`w = Y_0 + \sum_k a_k Y_k`, :math:`t = s(X_N + \sum_k a_k X_{N-k})`; on exact data a gain
    error of 1e-3 otherwise leaves the design far off (the system is badly conditioned).

    Returns
    -------
    a : ndarray, shape (len(delays), order)
        Denominator coefficients :math:`a_1 \ldots a_N` for every delay D.
    residual : ndarray, shape (len(delays),)
        The minimised (projected) equation error relative to :math:`c^2\|Y_0\|^2 + \|X_N\|^2`.
    """
    size = gram.shape[0]
    if instrumental:
        # Whitening by (Z^T Z)^(-1/2); directions of Z that are numerically dependent are left out.
        eigval, eigvec = np.linalg.eigh(gram[y_order + 1 :, y_order + 1 :])
        keep = eigval > _EQ_IV_RCOND * eigval[-1]
        projected = gram[:, y_order + 1 :] @ (eigvec[:, keep] / np.sqrt(eigval[keep]))
        metric = projected @ projected.T
    else:
        metric = gram
    delays = np.asarray(delays)
    index, k = np.arange(len(delays)), np.arange(order)
    end_col = y_order + 1 - x_lo + delays + order  # column of X_N (X_j of delay D: column of lag D + j)
    # Every vector is a combination of the Gram columns: Y_k (k = 1..N), s X_{N-k}, s X_N and Y_0.
    y_k = np.zeros((len(delays), size, order))
    y_k[:, k + 1, k] = 1.0
    x_k = np.zeros((len(delays), size, order))
    x_k[index[:, None], end_col[:, None] - 1 - k[None, :], k[None, :]] = polarity
    x_end = np.zeros((len(delays), size))
    x_end[index, end_col] = polarity
    y_0 = np.zeros(size)
    y_0[0] = 1.0

    def gram_of(p, q):  # <p_i, q_j> for stacks of column combinations (delays, size, m)
        return np.swapaxes(p, 1, 2) @ (metric @ q)

    def dot(p, q):  # <p, q> for one combination per delay (delays, size)
        return np.einsum("dn,dn->d", p, q @ metric)

    c = np.ones(len(delays))
    for step in range(n_gain + 1):
        u = c[:, None, None] * y_k - x_k
        v = x_end - c[:, None] * y_0
        normal, rhs = gram_of(u, u), gram_of(u, v[:, :, None])[:, :, 0]
        try:
            a = np.linalg.solve(normal, rhs[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:  # silent stretches, a band-limited dry: the minimum-norm solution
            a = np.einsum("dij,dj->di", np.linalg.pinv(normal), rhs)
        if step < n_gain:
            w = y_0 + np.einsum("dnk,dk->dn", y_k, a)
            t = x_end + np.einsum("dnk,dk->dn", x_k, a)
            update = dot(w, t) / np.maximum(dot(w, w), 1e-300)
            c = np.where(update > 0, update, c)  # a negative gain is the other polarity's design
    energy = c**2 * gram[0, 0] + gram[end_col, end_col]
    residual = (dot(v, v) - np.einsum("dk,dk->d", rhs, a)) / np.maximum(energy, 1e-300)
    return a, residual


def _stable_poles(a, r_max):
    """Roots of ``[1, a]`` reflected inside the unit circle and scaled to radius <= `r_max`."""
    roots = np.roots(np.r_[1.0, a])
    outside = np.abs(roots) > 1.0
    roots[outside] = 1.0 / np.conj(roots[outside])
    radius = np.abs(roots)
    return np.where(radius > r_max, roots * r_max / np.maximum(radius, 1e-300), roots)


def _z_poles(v_poles, warp):
    r"""z-plane poles :math:`(q - \lambda)/(1 - \lambda q)` of :math:`1/A(V)` for the roots q of A in V."""
    return (v_poles - warp) / (1.0 - warp * v_poles)


def _denominator_rows(z_poles):
    """Rows ``[1, d, c]`` of every complex pair (upper half-plane pole) and ``[1, -p, 0]`` of every real pole."""
    upper = z_poles[z_poles.imag > 1e-9]
    reals = z_poles[np.abs(z_poles.imag) <= 1e-9].real
    return np.concatenate([np.stack([np.ones(len(upper)), -2.0 * upper.real, np.abs(upper) ** 2], axis=1),
                           np.stack([np.ones(len(reals)), -reals, np.zeros(len(reals))], axis=1)])


def _sos(numerator, denominator):
    """SOS from numerator and denominator rows (the identity for none)."""
    if not len(denominator):
        return np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])
    return np.concatenate([numerator, denominator], axis=1)


def _allpass_sos(z_poles):
    r"""SOS of the allpass :math:`z^{-N} A(z^{-1})/A(z)` whose denominator has the roots `z_poles`."""
    den = _denominator_rows(z_poles)
    real = den[:, 2] == 0.0
    # The numerator is the denominator reversed: [c, d, 1] for a pair, [b, 1, 0] for a first-order [1, b, 0].
    num = np.where(real[:, None], den[:, [1, 0, 2]], den[:, ::-1])
    return _sos(num, den)


def _inverse_sos(v_poles, warp):
    r"""SOS of :math:`1/A(V)` (up to a constant) for the roots `v_poles` of A in the warped variable.

    Each factor :math:`1 - qV = (1 - \lambda q)(1 - p z^{-1})/(1 + \lambda z^{-1})` with p the z-plane
    pole (`_z_poles`), so :math:`1/A(V) \propto \prod_i (1 + \lambda z^{-1})/(1 - p_i z^{-1})`.
    """
    den = _denominator_rows(_z_poles(v_poles, warp))
    real = den[:, 2] == 0.0
    num = np.where(real[:, None], [1.0, warp, 0.0], [1.0, 2.0 * warp, warp * warp])
    return _sos(num, den)


def _sections_from_v_poles(v_poles, warp, *, structure, ranges, fs):
    r"""Second-order (R, fc, warp) triples and first-order coefficients with the given poles.

    A complex pair of roots q of :math:`A(V)` is the warped section with warp :math:`\lambda`, radius
    :math:`|q|` and angle :math:`\arg q` (docs/maths.md sections 2.3 and 9.5). Found without warping, a pair whose
    radius is beyond the ranges is, for the warped structure, given the warp a of smallest :math:`|q|`
    on a grid, :math:`q = (p + a)/(1 + ap)` the pole in the warped variable (the inverse of
    `_z_poles`); the traditional structure clips the radius. A real root becomes the first-order
    section with coefficient -p, p its z-plane pole (clipped to the ranges by `_Layout.t_from`).
    """
    sections2 = []
    for q in v_poles[v_poles.imag > 1e-9]:
        section_warp = warp
        if warp == 0.0 and structure == "warped" and abs(q) >= ranges.radius_limit(fs):
            grid = np.linspace(-1.0, 1.0, 401) * 0.999 * ranges.warp_max
            section_warp = float(grid[np.argmin(np.abs((q + grid) / (1.0 + grid * q)))])
            q = (q + section_warp) / (1.0 + section_warp * q)
        radius = min(abs(q), ranges.radius_limit(fs))  # `_Layout.t_from` keeps it inside the open range
        sections2.append((radius, abs(np.angle(q)) * fs / (2 * np.pi), section_warp))
    reals = v_poles[np.abs(v_poles.imag) <= 1e-9]
    coefs1 = list(-_z_poles(reals, warp).real)
    return sections2, coefs1


def _equation_error_starts(dry, wet, est, *, n_sections, n_first_order, structure, stretch, ranges, fs,
                           anticausal=False, min_order=1):
    r"""Starts from M. Lang's equation-error allpass design on the audio itself (time domain).

    1. **Screening.** For every allpass order :math:`N \le N_{max} = 2 \cdot` `n_sections` +
       `n_first_order` + 1 (the order of the log-spaced layout with its Thiran section; at most
       `_EQ_MAX_ORDER`), both polarities and every bulk delay D from :math:`\hat D - 2N_{max} - 2` to
       :math:`\hat D + 2` (:math:`\hat D` the GCC-PHAT delay, which the dispersion of an allpass biases
       upwards), an instrumental-variable solve, alternated `_EQ_GAIN_ITER` times with the gain, gives
       the denominator (`_solve_equation_error`); all come from one Gram matrix of lagged samples
       (`_LaggedPair`). The `_EQ_N_DELAYS` delays of every (order, polarity) with the lowest equation
       error are kept.
    2. **Warped designs** (structure ``"warped"``): the same on the warped delay V with warps
       `_EQ_WARPS`, for the `_EQ_N_WARP_DELAYS` best delays of step 1, one Gram matrix per delay and
       plain least squares (its K + 1 dry columns are too few instruments). Warping spreads poles
       crowded near z = 1 (high-Q low-frequency sections at high sample rates), where the plain design
       is numerically singular, and its roots are warped sections directly.
    3. **Ranking** by output error (the model run on the dry, `_LaggedPair.output_error`) times
       :math:`1 + 0.05 N`: low orders first among near-equal errors.
    4. **Steiglitz-McBride.** The best `_EQ_N_CANDIDATES` get `_EQ_SM_ITER` iterations: both signals are
       filtered by :math:`1/A` of the previous solution and the plain least-squares system is solved
       again, which turns the equation error :math:`A e` into the output error e to first order (the
       fixed point is unbiased on noisy or non-allpass data); the iterate with the lowest output error
       is kept.
    5. **Sections.** Roots outside the unit circle are reflected inside, radii clipped to the ranges;
       roots at z = 0 (unwarped) are one-sample delays and join the bulk delay; the rest become
       sections (`_sections_from_v_poles`). Designs with more than `n_sections` complex pairs are
       dropped. The Thiran section of the layout is set to exactly one sample.

    With `min_order` the designs start at that order (the ladder of `_equation_error_ladder` adds only
    orders above those it has tried).

    With ``anticausal=True`` every design is also scored (output error over the whole dry) with its
    roots outside the unit circle kept as anticausal sections, which realise them exactly (same bulk
    delay; a root at infinity is a one-sample advance); the better of the two variants is kept.

    Returns
    -------
    starts : list of (layout, t)
        Best (lowest output error) first. Empty for the stretched structure (its sections are
        polynomials in :math:`z^{-K}`) or when the audio is too short for the lags.
    """
    if structure == "stretched":
        return []
    max_order = min(2 * n_sections + n_first_order + 1, _EQ_MAX_ORDER)
    # Largest pole radius of an unwarped design the structure realises (warped sections reach closer to
    # |z| = 1); a warped design's roots are section poles, bounded by r_max.
    r_max = ranges.radius_limit(fs)
    plain_radius = r_max if structure == "traditional" else _warped_radius_bound(r_max, ranges.warp_max)
    d_lo = est.integer_delay - 2 * max_order - 2
    if est.integer_delay >= 0:
        d_lo = max(d_lo, 0)  # causal when GCC-PHAT is
    delays = np.arange(d_lo, max(est.integer_delay + 2, d_lo) + 1)
    x_lags = (int(delays[0]), int(delays[-1]) + max_order)
    pair = _LaggedPair(dry, wet)
    gram = pair.gram(max_order, x_lags)
    if gram is None:
        return []
    blocks = pair.blocks(max_order, x_lags)

    def v_poles(a, warp):
        return _stable_poles(a, plain_radius if warp == 0.0 else r_max)

    def outside(a):
        return np.abs(np.roots(np.r_[1.0, a])) > 1.0  # in the order of `v_poles`

    def output_error(order, delay, polarity, a, warp):
        """Output error, penalised by the order, the gains of the model and whether it is two-sided."""
        if not np.all(np.isfinite(a)):  # an overflowed solve (band-limited audio, a singular system)
            return np.inf, 1.0, False
        z_poles = _z_poles(v_poles(a, warp), warp)
        error, gain = pair.output_error(z_poles, delay, polarity, blocks)
        two_sided = False
        if anticausal:
            flags = outside(a)
            if np.any(flags):
                error2, gain2 = pair.output_error(z_poles, delay, polarity, blocks, anticausal=flags)
                if error2 < error:
                    error, gain, two_sided = error2, gain2, True
        return error * (1.0 + 0.05 * order) + 1e-13 * order, gain, two_sided

    designs = []  # (order, delay, polarity, a, warp)
    for polarity in (est.polarity, -est.polarity):
        for order in range(min(min_order, max_order), max_order + 1):
            a, residual = _solve_equation_error(gram, y_order=max_order, x_lo=x_lags[0], order=order,
                                                delays=delays, polarity=polarity, instrumental=True,
                                                n_gain=_EQ_GAIN_ITER)
            designs += [(order, int(delays[i]), polarity, a[i], 0.0) for i in np.argsort(residual)[:_EQ_N_DELAYS]]
    scored = sorted(((*output_error(*design), *design) for design in designs), key=lambda item: item[0])
    if structure == "warped":
        warp_delays = list(dict.fromkeys(delay for _, _, _, _, delay, *_ in scored))[:_EQ_N_WARP_DELAYS]
        for warp in _EQ_WARPS:
            for delay in warp_delays:
                warped_gram = pair.gram(max_order, (delay, delay + max_order), warp=warp)
                for polarity in (est.polarity, -est.polarity):
                    for order in range(min(min_order, max_order), max_order + 1):
                        a, _ = _solve_equation_error(warped_gram, y_order=max_order, x_lo=delay, order=order,
                                                     delays=[delay], polarity=polarity, n_gain=_EQ_GAIN_ITER)
                        design = (order, delay, polarity, a[0], warp)
                        scored.append((*output_error(*design), *design))
        scored.sort(key=lambda item: item[0])

    starts = []
    for error, gain, two_sided, order, delay, polarity, a, warp in scored:
        if not np.isfinite(error):
            break  # sorted: only failed designs remain
        best_error, best_a, best_two_sided = error, a, two_sided
        for _ in range(_EQ_SM_ITER):
            # The prefilter 1/A only weights the equations by 1/|A|^2: its reflected (stable) poles do.
            sm_gram = pair.gram(order, (delay, delay + order), warp=warp, poles=v_poles(a, warp), gain=gain)
            a = _solve_equation_error(sm_gram, y_order=order, x_lo=delay, order=order, delays=[delay],
                                      polarity=polarity)[0][0]
            error, gain, two_sided = output_error(order, delay, polarity, a, warp)
            if not np.isfinite(error):
                break
            if error < best_error:
                best_error, best_a, best_two_sided = error, a, two_sided
        poles = v_poles(best_a, warp)
        # A two-sided design is also returned reflected (all causal): the loss decides between them.
        variants = [outside(best_a), np.zeros(len(poles), dtype=bool)] if best_two_sided else [None]
        made = [_start_layout(poles, flags, warp, delay, polarity, n_sections=n_sections, structure=structure,
                              stretch=stretch, ranges=ranges, fs=fs) for flags in variants]
        made = [item for item in made if item is not None]
        if not made:
            continue
        starts += [(best_error, layout, t) for layout, t in made]
        if len(starts) >= _EQ_N_CANDIDATES:
            break
    starts.sort(key=lambda item: item[0])
    return [(layout, t) for _, layout, t in starts]


def _equation_error_ladder(dry, wet, est, *, n_sections, n_first_order, anticausal, **shape):
    """Equation-error starts with as many sections as the audio asks for (`n_sections` None: auto).

    With a fixed `n_sections`, the starts of `_equation_error_starts`. With None, the orders grow in
    rungs (`SECTION_RUNGS`: up to 3, 8, 16, then `MAX_SECTIONS` second-order sections): the next rung's
    designs (its orders only) are added while the best start's null on the whole audio
    (`apfdsp.metrics.null_depth_db`) deepens by at least `ORDER_MARGIN_DB`, and not once a start is
    already exact (null below -100 dB). Returns ``(starts, n_sections)``: the starts, best rung's
    first, and the number of sections of the last rung kept.
    """
    rungs = SECTION_RUNGS if n_sections is None else (n_sections,)
    kinds = (True, False) if anticausal else (False,)

    def designs(n, min_order):
        # With anticausal sections allowed, the causal designs compete too: two-sided designs can
        # crowd the best causal one out of the shortlist, and the causal one may be the exact one.
        # Singular systems (band-limited audio) may overflow a solve: that design is skipped, silently.
        with np.errstate(over="ignore", invalid="ignore"):
            return [start for two_sided in kinds for start in _equation_error_starts(
                dry, wet, est, n_sections=n, n_first_order=n_first_order, anticausal=two_sided,
                min_order=min_order, **shape)]

    starts = designs(rungs[0], 1)
    if len(rungs) == 1 or not starts:
        return starts, rungs[0]
    best = min(_null_on_audio(layout, t, dry, wet) for layout, t in starts)
    kept = rungs[0]
    for previous, n in zip(rungs, rungs[1:]):
        if best <= _EXACT_NULL_DB:
            break
        more = designs(n, 2 * previous + n_first_order + 2)
        null = min((_null_on_audio(layout, t, dry, wet) for layout, t in more), default=0.0)
        if not null <= best - ORDER_MARGIN_DB:
            break
        starts, best, kept = more + starts, null, n
    return starts, kept


def _start_layout(poles, flags, warp, delay, polarity, *, n_sections, structure, stretch, ranges, fs):
    """``(layout, t)`` of an equation-error design (reflected roots `poles`, `flags`: anticausal ones or
    None), or None when it has more than `n_sections` complex pairs."""
    flags = np.zeros(len(poles), dtype=bool) if flags is None else np.asarray(flags, dtype=bool)
    if warp == 0.0:  # a pole at z = 0 is a one-sample delay (an advance if anticausal): bulk delay
        at_origin = np.abs(poles) < _EQ_ORIGIN
        delay += int(np.count_nonzero(at_origin & ~flags)) - int(np.count_nonzero(at_origin & flags))
        poles, flags = poles[~at_origin], flags[~at_origin]
    sections2, coefs1 = _sections_from_v_poles(poles, warp, structure=structure, ranges=ranges, fs=fs)
    if len(sections2) > n_sections:
        return None
    pairs, reals = poles.imag > 1e-9, np.abs(poles.imag) <= 1e-9
    flags = tuple(bool(f) for f in flags[pairs]) + tuple(bool(f) for f in flags[reals])
    layout = _Layout(len(sections2), len(coefs1), structure, stretch, polarity, delay - 1, ranges, fs,
                     flags if any(flags) else ())
    return layout, layout.t_from(sections2, coefs1, 1.0)


def _phase_fit_start(est, *, fs, n_sections, structure, stretch, ranges, seed, options, anticausal=False):
    r"""Layout and parameters of the frequency-domain fit (`apfdsp.fit_phase`) on the estimate.

    The target is the estimated relative response with the integer delay put back,
    :math:`H(f)\,e^{-j\omega D}`, and the fit starts from the whole GCC-PHAT delay, so that its delay
    candidates (and its causality floor) refer to the total delay; the Welch bins are merged into at most
    2048 log-spaced bands as `apfdsp.align` does. With `anticausal`, `apfdsp.fit_phase` may use
    anticausal sections (its ``anticausal=True``).
    """
    from .align import _reduce_grid  # align imports fit; imported here to keep the module light
    from .fit import fit_phase

    w = 2 * np.pi * est.freqs / fs
    response = est.H * np.exp(-1j * w * est.integer_delay)
    freqs, response, weights = _reduce_grid(est.freqs, response, est.x_psd, est.weights, 2048)
    fit_options = {"stretch": stretch, "ranges": ranges, "delay_search": 2 * n_sections + 1,
                   "anticausal": anticausal}
    fit_options.update(options or {})
    result = fit_phase(freqs, response, fs=fs, weights=weights, n_sections=n_sections, structure=structure,
                       delay=est.delay_samples, seed=seed, **fit_options)
    return _layout_from_cascade(result.cascade, structure=structure, stretch=stretch, ranges=ranges, fs=fs,
                                anticausal=anticausal)


# -- the automatic order of apfdsp.align ------------------------------------------------------------


def _flat_magnitude(H, coherence, weights):
    """Whether the wet looks like an allpass of the dry (up to a gain), where the time-domain design is
    exact: the weighted spread of 20 log10 |H| about its weighted mean is below `FLAT_DB` and the
    weighted mean coherence above `FLAT_COHERENCE` (a compressor's gain is flat too, but not linear)."""
    level = 20 * np.log10(np.maximum(np.abs(H), _TINY))
    total = np.sum(weights)
    mean = np.sum(weights * level) / total
    spread = np.sqrt(np.sum(weights * (level - mean) ** 2) / total)
    return bool(spread < FLAT_DB and np.sum(weights * coherence) / total > FLAT_COHERENCE)


def more_sections(dry, wet, est, allpass, *, fs, causal=False, seed=0):
    """The automatic order of `apfdsp.align`: `allpass`, or a time-domain design with more sections where
    that pays.

    Parameters
    ----------
    dry, wet : ndarray
        The pair (time on the last axis), as `fit_audio` takes them.
    est : apfdsp.estimate.Estimate
        The pair's estimate (relative response, coherence, weights, integer delay).
    allpass : AllpassCascade
        The frequency-domain fit of the pair, with its whole delay (applies to `dry`).
    fs : float
        Sample rate in Hz.
    causal : bool
        Keep the design causal (`fit_audio` ``anticausal=not causal``).
    seed : int
        Seed passed to `fit_audio`.

    Returns
    -------
    AllpassCascade
        `allpass` itself, or the design with the deepest null on the audio.

    Notes
    -----
    Where a probe (`apfdsp.fit.equation_error_phase_loss` of the order of `SECTION_RUNGS[-1]` sections,
    on the Welch grid) beats the phase loss of `allpass` by `PROBE_MARGIN_DB`, the time-domain
    equation-error design of `apfdsp.fit_audio` with orders up to that of `MAX_SECTIONS` sections is
    made (no training); where the measured magnitude is flat (`_flat_magnitude`: the effect is an
    allpass, on which the time-domain design is exact while the Welch estimate limits the
    frequency-domain fit), the same design with the first rung's sections (`SECTION_RUNGS[0]`), then,
    if that paid, with `BASE_SECTIONS`. A design is kept if its null on the audio is deeper than
    the best so far by `ORDER_MARGIN_DB`; an exact one (null below -100 dB) ends the search.
    """
    keep = est.weights > 0
    freqs, H, weights = est.freqs[keep], est.H[keep], est.weights[keep]
    w = 2 * np.pi * freqs / fs
    current = float(phase_loss(allpass.phase(freqs) + w * est.integer_delay, np.angle(H), weights))
    order = 2 * SECTION_RUNGS[-1] + 1
    probe = equation_error_phase_loss(freqs, H, fs=fs, weights=weights, order=order,
                                      shifts=(0, -(order // 4), -(order // 2), -(3 * order // 4), -order))
    if probe < current * 10 ** (-PROBE_MARGIN_DB / 10):
        orders = [MAX_SECTIONS]
    elif _flat_magnitude(H, est.coherence[keep], weights):
        orders = [SECTION_RUNGS[0], BASE_SECTIONS]  # the first rung, and 8 sections only where that pays
    else:
        return allpass
    best, best_null = allpass, null_depth_db(allpass.apply(dry), wet, fs=fs)
    for n_sections in orders:
        design = fit_audio(dry, wet, fs=fs, n_sections=n_sections, n_iter=0, init="equation-error",
                           anticausal=not causal, seed=seed).cascade
        null = null_depth_db(design.apply(dry), wet, fs=fs)
        if not null <= best_null - ORDER_MARGIN_DB:
            break
        best, best_null = design, null
        if null <= _EXACT_NULL_DB:
            break
    return best



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
        The start the training ran from: ``"equation-error"`` or ``"log-spaced"`` (the two kinds
        ``init="default"`` chooses from), ``"phase-fit"`` or ``"cascade"``.
    method : str
        ``"allpass"``, or ``"delay+polarity"`` when that baseline had the lower loss or the fitted
        cascade has no allpass sections (an equation-error start on a pure delay).
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


@single_threaded_blas
def fit_audio(
    dry,
    wet,
    *,
    fs,
    loss="multi-resolution",
    n_sections=None,
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
    anticausal=False,
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
    n_sections : int or None
        Largest number of second-order sections of the equation-error start; the number of sections
        of the log-spaced and phase-fit starts. None (default): chosen from the audio (see Notes,
        *Order*): the equation-error designs grow from 3 to 8, 16 and `MAX_SECTIONS` (32) sections
        while the null on the audio deepens by at least `ORDER_MARGIN_DB` (1 dB) per step; the other
        starts use 8 (`BASE_SECTIONS`).
    n_first_order : int
        Number of first-order sections of the log-spaced start; the equation-error start designs
        allpass orders up to ``2 * n_sections + n_first_order + 1`` (its real poles become first-order
        sections, as many as it has).
    structure : {"warped", "traditional", "stretched"}
        Second-order section type (see `apfdsp.fit_phase`).
    stretch : int
        K of the stretched structure.
    parameterization : {"direct", "mlp", "shared-mlp"} or object
        Parameterisation of the normalised parameters (`apfdsp.model`); ``"mlp"`` is the paper's
        per-section sinusoidal MLP (use a smaller `lr`, e.g. 1e-3).
    init : {"default", "equation-error", "log-spaced", "phase-fit"} or AllpassCascade
        Start of the training (see Notes, *Starts*):

        * ``"default"``: of the equation-error starts and the log-spaced start, the one with the lowest
          loss on the evaluation audio (on audio through an allpass, the equation-error start, which
          is then exact). Time domain only; `AudioFitResult.init` says which one won.
        * ``"equation-error"``: M. Lang's equation-error allpass design solved on the dry/wet samples
          (time domain), the best of a few designs by loss. Not for the stretched structure.
        * ``"log-spaced"``: sections spread log-uniformly over the dry's band, pole radius 0.7, delay
          from the mean group delay of the estimated response, polarity from GCC-PHAT (the default
          before the equation-error start; the training alone rarely gets far from it).
        * ``"phase-fit"``: `apfdsp.fit_phase` on the estimated relative response (frequency domain),
          as in `apfdsp.align`.
        * an `AllpassCascade`: refined as it is.
    n_iter : int
        Number of Adam steps. None are taken when the start is already exact (its null depth on the
        whole audio, `apfdsp.metrics.null_depth_db`, below -100 dB; ``settings["trained"]`` is then False).
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
    anticausal : bool
        Allow anticausal sections (`apfdsp.Allpass2` / `apfdsp.Allpass1` with ``anticausal=True``: stable
        sections run backwards in time; offline only, the cascade is then not real-time). Default False,
        the paper's causal set-up. Turn it on when the wet is not an allpass of the dry but a filter with
        a magnitude response (a high-pass, an EQ): the phase of such a filter (minimum phase) is only
        followed well by a mix of causal and anticausal sections, e.g. a 200 Hz high-pass on music
        nulls to about -35 dB instead of -20 dB. Then the equation-error start also scores its designs
        with roots outside the unit circle kept as anticausal sections (same bulk delay) and keeps the
        better variant, ``init="phase-fit"`` and ``init="default"`` (as one more candidate) use
        `apfdsp.fit_phase` with ``anticausal=True``, and an init cascade may have anticausal cells. The
        training keeps every section on its side; segments get a warm-up after their end too (the
        anticausal sections ring before their input). Not for the stretched structure.
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
        For a bad value of any option (for instance an unknown `loss` name), or an init cascade with
        anticausal cells without ``anticausal=True``.
    NotImplementedError
        For an init cascade (or a phase-fit start) with stretched first-order sections.

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
    before the start of the audio are zeros, which is exact. With anticausal sections
    (``anticausal=True``) the causal rows run forwards and the anticausal ones on the time-reversed
    result, so segment b is filtered over :math:`x[s_b - W \ldots s_b + L + W)` (zeros past the end of the
    audio, where `apfdsp.AllpassCascade.apply` starts them from rest too) and the loss scores exactly
    the L samples in between.

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

    **Starts.** The training is local: from sections spread over the band (the log-spaced start) it
    rarely leaves the delay + polarity level on a dispersive target, so the default starts from the
    audio itself. An allpass of order N with denominator
    :math:`A(z) = 1 + \sum_{k=1}^N a_k z^{-k}` behind a bulk delay D and polarity s,
    :math:`y = s z^{-D} z^{-N} A(z^{-1})/A(z)\, x`, satisfies :math:`A(z)\,y = s z^{-D} z^{-N} A(z^{-1})\,x`,
    which is linear in the :math:`a_k` (the equation-error method of M. Lang, docs/maths.md section 9.1,
    written for samples instead of frequencies); with :math:`M = D + N`,

    .. math:: y[n] + \sum_{k=1}^N a_k\, y[n-k] = s \Big(x[n-M] + \sum_{k=1}^N a_k\, x[n-M+k]\Big).

    Over the samples this is one linear least-squares problem per (N, D, s); every one of them is read
    off one Gram matrix of lagged samples (sliding windows over the audio, at most 2^16 sample times
    per channel). The equations are projected on lagged dry samples (instrumental variables), which
    keeps noise on the wet from biasing them, and a gain is estimated with the denominator, which
    makes the design level-invariant like the loss. For the warped structure the designs are also
    solved on the warped delay :math:`(z^{-1} + \lambda)/(1 + \lambda z^{-1})`,
    :math:`\lambda \in \{-0.8, 0.5\}`, whose roots are warped sections directly: that keeps the
    problem well conditioned where poles crowd near z = 1 (high-Q sections at low frequencies, high
    sample rates). The designs are ranked by output
    error (the model run on the dry, compared with the wet); the best four are refined by
    Steiglitz-McBride iterations (both signals filtered by :math:`1/A` of the previous solution, then
    solved again: at the fixed point the equation error is the output error, without the bias of the
    equation error), their roots become sections (complex pairs: second-order sections; real roots:
    first-order sections; roots at z = 0: one more sample of bulk delay) and the one with the lowest
    loss on the evaluation audio is the start. On noise-free audio through an allpass the start is
    exact (null depth at the numerical floor) and the training keeps it; on other audio the training
    refines it. The start takes well under a second (about 0.2 s for 1 s at 16 kHz, 0.5 s for
    0.5 s at 192 kHz).

    **Order.** With ``n_sections=None`` the equation-error designs start with the orders of 3
    second-order sections (and `n_first_order` + 1 more), and add the orders of 8, 16, then 32
    sections (`SECTION_RUNGS`) while the best design's null on the whole audio deepens by at least
    1 dB (`ORDER_MARGIN_DB`) per rung, and not at all once a design is exact. The orders up to 8
    sections cost what a fixed ``n_sections=8`` costs (each order is designed once); more are only
    designed where 8 improved on 3. The small first rung keeps low-order designs from competing with
    higher ones that are ill-conditioned on band-limited audio (the Surveyor on a 20 Hz - 20 kHz sweep
    at 192 kHz: exact with orders up to 8, -61 dB with orders up to 10). A 12th-order allpass chain
    gets its order this way; an effect whose error does not fall with the order until far above it
    (an allpass comb of 40 samples stays as bad at order 18 as at order 8) needs an explicit
    `n_sections` here (`apfdsp.align` detects it with a probe and asks for 32, `more_sections`).

    The log-spaced start chooses its integer shift and Thiran delay so that its mean group delay over
    the dry's band equals that of the estimated relative response H,
    :math:`\bar\tau = -\Delta\phi/\Delta\omega` (unwrapped phase of H with the integer delay put back):
    the total phase drop over the band is fixed by the integer shift and the filter order, which the
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
    >>> result.init
    'equation-error'
    >>> bool(null_depth_db(result.cascade.apply(dry), effect(dry), fs=fs) < -40)
    True
    """
    start_time = time.perf_counter()
    fs = valid_fs(fs)
    dry_in, wet_in, dry, wet = _check_pair(dry, wet)
    loss_fn, shortest, loss_options = _loss_setup(loss, fs, loss_options)
    n_requested = None if n_sections is None else valid_int(n_sections, "n_sections", minimum=1, maximum=64)
    n_sections = BASE_SECTIONS if n_requested is None else n_requested  # for the other starts
    n_used = n_sections
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
    if not isinstance(anticausal, (bool, np.bool_)):
        raise ParameterError(f"anticausal must be True or False, got {anticausal!r}")
    anticausal = bool(anticausal)
    if anticausal and structure == "stretched":
        raise ParameterError("anticausal=True needs structure 'warped' or 'traditional', not 'stretched'")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ParameterError(f"seed must be an integer, got {seed!r}")
    if isinstance(init, str):
        if init == "equation-error" and structure == "stretched":
            raise ParameterError("init='equation-error' needs structure 'warped' or 'traditional', not 'stretched'")
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
        layout, t0 = _layout_from_cascade(init, structure=structure, stretch=stretch, ranges=ranges, fs=fs,
                                          anticausal=anticausal)
    elif init == "phase-fit":
        init_name = init
        layout, t0 = _phase_fit_start(est, fs=fs, n_sections=n_sections, structure=structure,
                                      stretch=stretch, ranges=ranges, seed=seed, options=phase_fit_options,
                                      anticausal=anticausal)
    else:
        shape = {"n_sections": n_sections, "n_first_order": n_first_order, "structure": structure,
                 "stretch": stretch, "ranges": ranges, "fs": fs}
        candidates = []  # (name, layout, t)
        if init != "log-spaced":
            starts, n_used = _equation_error_ladder(dry, wet, est, anticausal=anticausal,
                                                    **{**shape, "n_sections": n_requested})
            candidates += [("equation-error", lay, t) for lay, t in starts]
        if init != "equation-error":
            candidates.append(("log-spaced", *_log_spaced_start(est, **shape)))
        if init == "default" and anticausal:
            # The time-domain equation error rarely lands on two-sided designs when the wet is not an
            # allpass of the dry (a filter with a magnitude response): the frequency-domain fit with
            # anticausal sections competes too.
            try:
                candidates.append(("phase-fit", *_phase_fit_start(
                    est, fs=fs, n_sections=n_sections, structure=structure, stretch=stretch, ranges=ranges,
                    seed=seed, options=phase_fit_options, anticausal=True)))
            except (ParameterError, NotImplementedError):
                pass
        init_name, layout, t0 = _best_start(candidates, dry, wet, segment_length, shortest, loss_fn)

    segments = _Segments(dry, wet, layout.delay_shift, segment_length)
    if segments.available < shortest:
        raise AudioError(
            f"dry and wet overlap by {max(segments.available, 0)} samples after removing the delay of "
            f"{layout.delay_shift + 1} samples; loss {loss!r} needs at least {shortest}: use longer audio "
            "or smaller loss_options"
        )
    filt = _Filter(layout)
    bound = warmup_bound(structure=structure, ranges=ranges, stretch=stretch, fs=fs)

    def warmup_for(t):
        if warmup == "auto":
            return filt.warmup(t)
        return bound if warmup == "bound" else warmup

    def warmups_for(t):  # before and after a segment: anticausal sections ring before their input
        before = warmup_for(t)
        return before, (before if any(layout.anticausal) else 0)

    def batch_loss(x, y, skip):
        def objective(params):
            return loss_fn(filt(param.forward(params), x)[..., skip : skip + y.shape[-1]], y)

        return objective

    eval_starts = segments.eval_starts()

    def evaluate(t):
        x, y, skip = segments.batch(eval_starts, *warmups_for(t))
        return float(loss_fn(filt(t, x)[..., skip : skip + y.shape[-1]], y))

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
    # A start that is already exact (null depth on the whole audio below -100 dB, whatever the loss)
    # is not trained, since Adam's steps could only move it away from the optimum.
    exact_start = _null_on_audio(layout, best_t, dry, wet) <= _EXACT_NULL_DB
    # The delay + polarity baseline (GCC-PHAT delay: integer shift + Thiran section).
    base_shift = int(np.round(est.delay_samples)) - 1
    base_layout = _Layout(0, 0, structure, stretch, est.polarity, base_shift, ranges, fs)
    base_t = base_layout.t_from([], [], est.delay_samples - base_shift)
    base_segments = _Segments(dry, wet, base_shift, segment_length)
    base_loss = (_evaluate_layout(base_segments, base_layout, base_t, loss_fn)
                 if base_segments.available >= shortest else np.inf)
    for i in range(0 if exact_start else n_iter):
        params = unflatten(state.params)
        t = np.asarray(param.forward(params))
        x, y, skip = segments.batch(segments.random_starts(rng, batch_size), *warmups_for(t))
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

    # Never worse than delay + polarity alone.
    method = "delay+polarity" if layout.n2 + layout.n1 == 0 else "allpass"  # a start with no sections
    cells = layout.cells(best_t)
    if base_loss < best_loss:
        method, cells, best_loss = "delay+polarity", base_layout.cells(base_t), base_loss
    cascade = AllpassCascade(cells, fs=fs)
    settings = {
        "loss": loss, "loss_options": {k: list(v) if isinstance(v, tuple) else v for k, v in loss_options.items()},
        "n_sections": n_requested, "n_sections_used": n_used, "n_first_order": n_first_order,
        "structure": structure, "stretch": stretch,
        "parameterization": param.name, "init": init if isinstance(init, str) else "cascade",
        "n_iter": n_iter, "lr": lr,
        "batch_size": batch_size, "segment_length": int(segments.length), "warmup": warmup,
        "warmup_bound": int(bound), "ranges": ranges.to_dict(), "max_delay_s": max_delay_s, "clip": clip,
        "anticausal": anticausal, "seed": int(seed), "delay_shift": int(layout.delay_shift), "trained": not exact_start,
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


def _null_on_audio(layout, t, dry, wet):
    """`apfdsp.metrics.null_depth_db` of the whole dry filtered by the cascade of (layout, t) against
    the wet; 0 dB when they share no energy over their overlap."""
    try:
        return null_depth_db(AllpassCascade(layout.cells(t), fs=layout.fs).apply(dry), wet, fs=layout.fs)
    except AudioError:
        return 0.0


def _best_start(candidates, dry, wet, segment_length, shortest, loss_fn):
    """``(name, layout, t)`` of the candidate start with the deepest null on the whole audio.

    Candidates are compared by `apfdsp.metrics.null_depth_db` of the dry filtered by each (the whole
    signal, so that slowly decaying poles and anticausal sections are measured without segment-edge
    transients, which dominate the loss of near-exact starts); nulls within 0.01 dB count as equal and
    the first candidate among them wins (`candidates` are in order of preference). Candidates whose
    delay leaves less overlap than the loss needs are skipped; with none left, the first candidate is
    returned (`fit_audio` then reports the short overlap).
    """
    del loss_fn  # the selection uses the metric, not the training loss (see above)
    scored = []
    for name, layout, t in candidates:
        segments = _Segments(dry, wet, layout.delay_shift, segment_length)
        if segments.available >= shortest:
            scored.append((_null_on_audio(layout, t, dry, wet), name, layout, t))
    if not scored:
        if not candidates:
            raise AudioError("no equation-error start fits the audio: use init='default' or longer audio")
        return candidates[0]
    deepest = min(item[0] for item in scored)
    _, name, layout, t = next(item for item in scored if item[0] <= deepest + 0.01)
    return name, layout, t


def _evaluate_layout(segments, layout, t, loss_fn):
    """Loss of the cascade (layout, t) on the evaluation segments of `segments`."""
    filt = _Filter(layout)
    x, y, skip = segments.batch(segments.eval_starts(), *filt.warmups(t))
    return float(loss_fn(filt(t, x)[..., skip : skip + y.shape[-1]], y))
