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
  polarity, then Steiglitz-McBride iterations; `apfdsp.designs.time_equation_error_starts`, docs/maths.md
  section 9), exact on audio through an allpass; the original started from random MLP weights. A
  start from the frequency-domain fit (``init="phase-fit"``) is available too.
* **Any sample rate** and stable parameter ranges (`apfdsp.ranges.ParamRanges`).

References
----------
.. [1] A. R. Bargum, S. Serafin, C. Erkut and J. D. Parker, "Differentiable Allpass Filters for Phase
   Response Estimation and Automatic Signal Alignment", Proc. DAFx 2023, arXiv:2306.00860
   (Sec. 3: the BiasNet model, the sum-magnitude loss and the training; Eqs. 1-5: the sections).
"""

import time
from dataclasses import dataclass, field

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad
from autograd.misc.flatten import flatten

from ._validate import valid_bool, valid_fs, valid_int, valid_pair, valid_range
from .cascade import Allpass1, Allpass2, AllpassCascade, Delay, Polarity
from .designs import (DESIGN, null_on_audio, time_allpass_probe_db, time_equation_error_ladder,
                      warped_radius_bound)
from .estimate import estimate, reduce_grid
from .exceptions import AudioError, ParameterError
from .fit import STRUCTURES, equation_error_phase_loss
from .layout import Layout
from .losses import mse_loss, multi_resolution_sum_magnitude_loss, ncc_loss, phase_loss, sum_magnitude_stft_loss
from .metrics import null_depth_db
from .model import get_parameterization
from .optim import adam_init, adam_step, cosine_schedule
from .ranges import DEFAULT_RANGES, ParamRanges
from .tdfilter import sosfilt
from .threads import single_threaded_blas

__all__ = ["fit_audio", "AudioFitResult", "LOSSES", "INITS", "warmup_samples", "warmup_bound", "SECTION_RUNGS",
           "MAX_SECTIONS", "BASE_SECTIONS", "ORDER_MARGIN_DB", "more_sections", "order_probe"]

#: Loss names accepted by `fit_audio`.
LOSSES = ("multi-resolution", "sum-magnitude", "mse", "ncc")
#: Start names accepted by `fit_audio` (an `AllpassCascade` is accepted too).
INITS = ("default", "equation-error", "log-spaced", "phase-fit")

_DECAY_DB = 60.0  # the warm-up lets the slowest pole decay by this much
_N_CHECKPOINTS = 10  # full-audio evaluations during training (the best one is kept)
_N_EVAL_SEGMENTS = 16  # longer audio is evaluated on this many evenly spaced segments
_LOG_SPACED_RADIUS = 0.7  # pole radius of the sections of the log-spaced start
_EXACT_NULL_DB = DESIGN.exact_null_db  # a start whose null on the whole audio is below this is not trained

#: Rungs of the automatic order (``n_sections=None``): the largest number of second-order sections tried.
SECTION_RUNGS = (3, 8, 16, 32)
#: Sections of the starts other than the equation-error one with ``n_sections=None`` (and of
#: `apfdsp.align`'s frequency-domain fit).
BASE_SECTIONS = 8
#: Largest number of second-order sections the automatic order uses.
MAX_SECTIONS = SECTION_RUNGS[-1]
#: A rung of more sections is kept when it deepens the null on the audio by at least this many dB, and
#: `more_sections` climbs to the next rung only while each rung deepens the previous one's null by this much.
ORDER_MARGIN_DB = 1.0
#: `more_sections` tries a time-domain design only when a probe says it can beat the first fit by this
#: many dB: an equation-error probe of the highest rung's order against the first fit's phase loss on the
#: estimate, or (flat magnitude) the time-domain allpass probe against the first fit's null on the audio
#: (docs/maths.md, section 9.9).
PROBE_MARGIN_DB = 10.0
#: A measured magnitude response flatter than this (weighted RMS spread, dB) may be an allpass effect.
FLAT_DB = 0.5
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
        radius = warped_radius_bound(radius, ranges.warp_max)
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


class LayoutFilter:
    r"""Differentiable filtering of audio by the cascade of a `Layout` with normalised parameters t.

    Second-order rows (:math:`p_1 = a_1/a_0`, :math:`p_2 = a_2/a_0`, docs/maths.md section 2.2)::

        [p2, p1, 1, 1, p1, p2]

    First-order and Thiran rows ``[b, 1, 0, 1, b, 0]``. A stretched section is :math:`H_W(z^K)`: its
    recursion only links samples K apart, so it is run as :math:`H_W(z)` on the K polyphase
    components (the signal reshaped to ``(n / K, K)`` and filtered along the first of the two axes).

    Parameters
    ----------
    layout : apfdsp.layout.Layout
        The units (sections, first-order units, delay unit, polarity) the parameters t describe.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import Allpass2, AllpassCascade
    >>> from apfdsp.layout import Layout
    >>> from apfdsp.ranges import DEFAULT_RANGES
    >>> layout = Layout(1, 0, "warped", 1, 1, None, DEFAULT_RANGES, 48000)
    >>> t = layout.t_from([(0.9, 1000.0, 0.2)], [], 1.0)
    >>> x = np.random.default_rng(0).standard_normal(256)
    >>> cascade = AllpassCascade(layout.cells(t), fs=48000)
    >>> bool(np.allclose(LayoutFilter(layout)(t, x), cascade.apply(x)))
    True
    """

    def __init__(self, layout):
        self.layout = layout
        self.stretch = layout.stretch if layout.structure == "stretched" else 1

    def sos(self, t):
        """The filter's rows at parameters `t`.

        Parameters
        ----------
        t : array_like, shape (units, 3)
            Normalised parameters (`apfdsp.layout.Layout`); autograd arrays pass through.

        Returns
        -------
        rows2, rows1 : ndarray, shape (n, 6), or None
            Second-order rows (in :math:`z^{-K}` for the stretched structure) and first-order rows
            (the Thiran unit last), None where the layout has none.

        Examples
        --------
        >>> from apfdsp.layout import Layout
        >>> from apfdsp.ranges import DEFAULT_RANGES
        >>> layout = Layout(1, 1, "traditional", 1, 1, None, DEFAULT_RANGES, 48000)
        >>> rows2, rows1 = LayoutFilter(layout).sos(layout.t_from([(0.5, 6000.0, 0.0)], [0.25], 1.0))
        >>> rows2.shape, [round(float(v), 6) for v in rows1[0]]
        ((1, 6), [0.25, 1.0, 0.0, 1.0, 0.25, 0.0])
        """
        lay = self.layout
        rows2 = rows1 = None
        if lay.n2:
            den, a = lay.second_order_denominators(t)
            d, c = den[:, 0], den[:, 1]
            if lay.structure == "traditional":
                p1, p2 = d, c
            else:
                a0 = 1.0 + a * d + c * a * a
                p1 = (2.0 * a + d * (1.0 + a * a) + 2.0 * a * c) / a0
                p2 = (a * a + a * d + c) / a0
            ones = np.ones(lay.n2)
            rows2 = anp.stack([p2, p1, ones, ones, p1, p2], axis=1)
        b = lay.first_order_coefs(t)
        if b is not None:
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
        """Warm-up before a segment (all sections, as `warmup`) and after it (anticausal sections).

        Parameters
        ----------
        t : array_like
            Normalised parameters.
        decay_db : float
            Decay of the slowest pole the warm-up allows, in dB.

        Returns
        -------
        before, after : int
            Samples; `after` is 0 for a causal cascade (anticausal sections ring before their input).

        Examples
        --------
        >>> from apfdsp.layout import Layout
        >>> from apfdsp.ranges import DEFAULT_RANGES
        >>> layout = Layout(1, 0, "traditional", 1, 1, None, DEFAULT_RANGES, 48000)
        >>> before, after = LayoutFilter(layout).warmups(layout.t_from([(0.9, 1000.0, 0.0)], [], 1.0))
        >>> before > 0, after
        (True, 0)
        """
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
        """Samples the slowest pole of the filter at `t` takes to decay by `decay_db` (`warmup_samples`).

        Parameters
        ----------
        t : array_like
            Normalised parameters (plain numbers: this is not differentiated).
        decay_db : float
            Decay in dB.

        Returns
        -------
        samples : int

        Examples
        --------
        >>> from apfdsp.layout import Layout
        >>> from apfdsp.ranges import DEFAULT_RANGES
        >>> layout = Layout(1, 0, "traditional", 1, 1, None, DEFAULT_RANGES, 48000)
        >>> LayoutFilter(layout).warmup(layout.t_from([(0.9, 1000.0, 0.0)], [], 1.0)) == warmup_samples(0.9)
        True
        """
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
    layout = Layout(len(sections2), len(coefs1), structure, stretch, polarity, shift, ranges, fs,
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
    probe = Layout(n_sections, n_first_order, structure, stretch, est.polarity, None, ranges, fs)
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


def _phase_fit_start(est, *, fs, n_sections, structure, stretch, ranges, seed, options, anticausal=False):
    r"""Layout and parameters of the frequency-domain fit (`apfdsp.fit_phase`) on the estimate.

    The target is the estimated relative response with the integer delay put back,
    :math:`H(f)\,e^{-j\omega D}`, and the fit starts from the whole GCC-PHAT delay, so that its delay
    candidates (and its causality floor) refer to the total delay; the Welch bins are merged into at most
    2048 log-spaced bands as `apfdsp.align` does. With `anticausal`, `apfdsp.fit_phase` may use
    anticausal sections (its ``anticausal=True``).
    """
    from .fit import fit_phase

    w = 2 * np.pi * est.freqs / fs
    response = est.H * np.exp(-1j * w * est.integer_delay)
    freqs, response, weights = reduce_grid(est.freqs, response, est.x_psd, est.weights, 2048)
    fit_options = {"stretch": stretch, "ranges": ranges, "delay_search": 2 * n_sections + 1,
                   "anticausal": anticausal}
    fit_options.update(options or {})
    result = fit_phase(freqs, response, fs=fs, weights=weights, n_sections=n_sections, structure=structure,
                       delay=est.delay_samples, seed=seed, **fit_options)
    return _layout_from_cascade(result.cascade, structure=structure, stretch=stretch, ranges=ranges, fs=fs,
                                anticausal=anticausal)


# -- the automatic order of apfdsp.align ------------------------------------------------------------


def _flat_magnitude(H, weights):
    """Whether the measured level is flat enough for an allpass effect: the weighted RMS spread of
    20 log10 |H| about its weighted mean is below `FLAT_DB` (a cheap filter before the allpass probe)."""
    level = 20 * np.log10(np.maximum(np.abs(H), _TINY))
    total = np.sum(weights)
    mean = np.sum(weights * level) / total
    return bool(np.sqrt(np.sum(weights * (level - mean) ** 2) / total) < FLAT_DB)


def _flat_rungs(dry, wet, est, first_null):
    """The rungs of the time-domain ladder for a flat-magnitude pair: none unless the allpass probe
    (`apfdsp.designs.time_allpass_probe_db` of the rungs' orders 2 n + 2) beats the first fit's null
    `first_null` by `PROBE_MARGIN_DB`; else up to the lowest rung whose probe is within
    `ORDER_MARGIN_DB` of the deepest, or exact (below -100 dB; docs/maths.md, section 9.9)."""
    rungs = SECTION_RUNGS[:-1]
    _, _, dry, wet = _check_pair(dry, wet)
    probe = time_allpass_probe_db(dry, wet, est, [2 * n + 2 for n in rungs])
    deepest = float(np.min(probe))
    if not deepest <= first_null - PROBE_MARGIN_DB:
        return ()
    enough = max(deepest, _EXACT_NULL_DB) + ORDER_MARGIN_DB  # below -100 dB every probe counts as exact
    cap = int(np.flatnonzero(probe <= enough)[0])
    return rungs[: cap + 1]


def _frequency_probe(freqs, H, weights, fs, n_sections):
    """`apfdsp.designs.equation_error_phase_loss` of the order of `n_sections` sections (2 n + 1), with
    the bulk delay shortened by 0 to that order."""
    order = 2 * n_sections + 1
    return equation_error_phase_loss(freqs, H, fs=fs, weights=weights, order=order,
                                     shifts=(0, -(order // 4), -(order // 2), -(3 * order // 4), -order))


def _high_rung(freqs, H, weights, fs, top_probe):
    """The rung of a high-order design: the one below `MAX_SECTIONS` where its frequency probe is within
    `ORDER_MARGIN_DB` of the top rung's probe `top_probe` or exact (null below -100 dB, a loss of
    2e-10: docs/maths.md, section 9.7), else `MAX_SECTIONS` (a design's cost grows with its order)."""
    lower = SECTION_RUNGS[-2]
    exact_loss = 2.0 * 10 ** (_EXACT_NULL_DB / 10)
    enough = max(top_probe, exact_loss) * 10 ** (ORDER_MARGIN_DB / 10)
    return lower if _frequency_probe(freqs, H, weights, fs, lower) <= enough else MAX_SECTIONS


def order_probe(est, *, fs):
    """The frequency-domain probe of `more_sections`: how well an allpass of `MAX_SECTIONS` sections can fit.

    `apfdsp.designs.equation_error_phase_loss` of order ``2 * MAX_SECTIONS + 1`` on the estimate's bins
    that carry weight (docs/maths.md, section 9.7). It needs only the estimate, so `apfdsp.align` computes
    it while the first fit runs.

    Parameters
    ----------
    est : apfdsp.estimate.Estimate
        The pair's estimate.
    fs : float
        Sample rate in Hz.

    Returns
    -------
    loss : float
        The phase loss of the best unpolished design (`apfdsp.losses.phase_loss`).

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import Allpass2, AllpassCascade
    >>> from apfdsp.estimate import estimate
    >>> dry = np.random.default_rng(0).standard_normal(48000)
    >>> wet = AllpassCascade([Allpass2(0.9, 500.0)], fs=48000).apply(dry)
    >>> bool(order_probe(estimate(dry, wet, fs=48000), fs=48000) < 1e-4)
    True
    """
    keep = est.weights > 0
    return _frequency_probe(est.freqs[keep], est.H[keep], est.weights[keep], fs, MAX_SECTIONS)


@single_threaded_blas
def more_sections(dry, wet, est, allpass, *, fs, causal=False, seed=0, probe=None):
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
    probe : float, optional
        ``order_probe(est, fs=fs)``, when already computed.

    Returns
    -------
    AllpassCascade
        `allpass` itself, or the design with the deepest null on the audio.

    Notes
    -----
    Where a probe (`apfdsp.designs.equation_error_phase_loss` of the order of `SECTION_RUNGS[-1]` sections,
    on the Welch grid) beats the phase loss of `allpass` by `PROBE_MARGIN_DB`, the time-domain
    equation-error design of `apfdsp.fit_audio` is made (no training) with the sections of the rung below,
    where the same probe at that rung's order is as good (within `ORDER_MARGIN_DB`, or exact), else with
    `MAX_SECTIONS`. Where the measured magnitude is flat (`FLAT_DB`) and the time-domain allpass
    probe (`apfdsp.designs.time_allpass_probe_db`, docs/maths.md section 9.9: how well the best allpass
    explains the wet on the samples, free of the Welch estimate's bias that limits the frequency-domain
    fit) beats the null of `allpass` on the audio
    by `PROBE_MARGIN_DB`, the same design is made with the rungs of `SECTION_RUNGS`, from the first up to
    the one the probe says suffices, climbing while each rung deepens the previous rung's null by
    `ORDER_MARGIN_DB`. A design is kept if its null on the audio is deeper than the best so far by
    `ORDER_MARGIN_DB`; an exact one (null below -100 dB) ends the search.

    Examples
    --------
    A chain of 12 first-order allpasses (40 Hz - 6 kHz): the frequency-domain fit alone (``n_sections=8``)
    stops near -50 dB, the time-domain design that `apfdsp.align` adds by default is exact.

    >>> import numpy as np
    >>> from scipy import signal
    >>> from apfdsp.align import align
    >>> fs = 16000
    >>> dry = np.random.default_rng(0).standard_normal(fs // 2)
    >>> coef = (lambda t: (t - 1) / (t + 1))(np.tan(np.pi * np.geomspace(40.0, 6000.0, 12) / fs))
    >>> sos = np.column_stack([coef, np.ones(12), np.zeros(12), np.ones(12), coef, np.zeros(12)])
    >>> result = align(dry, signal.sosfilt(sos, dry), fs=fs)  # calls more_sections
    >>> bool(result.after["null_db"] < -100)
    True
    """
    try:
        return _climb(dry, wet, est, allpass, fs=fs, causal=causal, seed=seed, probe=probe)
    except AudioError:  # too little audio for a time-domain design (or its probe): the first fit stands
        return allpass


def _climb(dry, wet, est, allpass, *, fs, causal, seed, probe):
    """`more_sections`' probes and designs (which raise `AudioError` on audio too short for them)."""
    keep = est.weights > 0
    freqs, H, weights = est.freqs[keep], est.H[keep], est.weights[keep]
    w = 2 * np.pi * freqs / fs
    current = float(phase_loss(allpass.phase(freqs) + w * est.integer_delay, np.angle(H), weights))
    probe = order_probe(est, fs=fs) if probe is None else probe
    rungs, first_null = (), None
    if probe < current * 10 ** (-PROBE_MARGIN_DB / 10):
        rungs = (_high_rung(freqs, H, weights, fs, probe),)
    elif _flat_magnitude(H, weights):
        first_null = null_depth_db(allpass.apply(dry), wet, fs=fs)
        rungs = _flat_rungs(dry, wet, est, first_null)
    if not rungs:
        return allpass
    best = allpass
    best_null = null_depth_db(allpass.apply(dry), wet, fs=fs) if first_null is None else first_null
    previous = 0.0  # the null of the previous rung's design
    for n_sections in rungs:
        design = fit_audio(dry, wet, fs=fs, n_sections=n_sections, n_iter=0, init="equation-error",
                           anticausal=not causal, seed=seed).cascade
        null = null_depth_db(design.apply(dry), wet, fs=fs)
        if null <= best_null - ORDER_MARGIN_DB:
            best, best_null = design, null
        if null <= _EXACT_NULL_DB or not null <= previous - ORDER_MARGIN_DB:
            break
        previous = null
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

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import Allpass2, AllpassCascade, Delay
    >>> dry = np.random.default_rng(0).standard_normal(8000)
    >>> effect = AllpassCascade([Allpass2(0.8, 2000.0), Delay(3.0)], fs=16000)
    >>> result = fit_audio(dry, effect(dry), fs=16000, n_sections=1, n_iter=0)
    >>> result.method, result.init, bool(result.loss < 1e-6)
    ('allpass', 'equation-error', True)
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
    dry, wet = valid_pair(dry, wet, names=("dry", "wet"), max_ndim=2)
    channels = np.broadcast_shapes(dry.shape[:-1], wet.shape[:-1])
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
    setup = _checked_arguments(
        dry, wet, fs=fs, loss=loss, n_sections=n_sections, n_first_order=n_first_order, structure=structure,
        stretch=stretch, parameterization=parameterization, init=init, n_iter=n_iter, lr=lr,
        batch_size=batch_size, segment_length=segment_length, warmup=warmup, loss_options=loss_options,
        ranges=ranges, max_delay_s=max_delay_s, clip=clip, phase_fit_options=phase_fit_options,
        anticausal=anticausal, seed=seed, callback=callback)
    rng = np.random.default_rng(setup.seed)
    # Delay and polarity first (GCC-PHAT), then the start.
    est = estimate(setup.dry_in, setup.wet_in, fs=setup.fs, max_delay_s=setup.max_delay_s)
    init_name, layout, t0, n_used = _start(setup, est)
    segments = _Segments(setup.dry, setup.wet, layout.delay_shift, setup.segment_length)
    if segments.available < setup.shortest:
        raise AudioError(
            f"dry and wet overlap by {max(segments.available, 0)} samples after removing the delay of "
            f"{layout.delay_shift + 1} samples; loss {setup.loss!r} needs at least {setup.shortest}: use longer "
            "audio or smaller loss_options"
        )
    bound = warmup_bound(structure=setup.structure, ranges=setup.ranges, stretch=setup.stretch, fs=setup.fs)
    objective = _Objective(layout, segments, setup.loss_fn, warmup=setup.warmup, bound=bound)
    training = _train(objective, setup, t0, rng)
    settings = _settings(setup, n_used=n_used, segment_length=segments.length, bound=bound,
                         delay_shift=layout.delay_shift, trained=training.trained)
    return _result(layout, training, _delay_polarity_baseline(setup, est), est, init_name=init_name,
                   settings=settings, start_time=start_time)


# -- arguments -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Setup:
    """The checked arguments of `fit_audio` (`_checked_arguments`)."""

    dry_in: np.ndarray  # the pair as given (validated): what the estimate analyses
    wet_in: np.ndarray
    dry: np.ndarray  # the pair with its channels broadcast, contiguous: what the designs and the training use
    wet: np.ndarray
    fs: float
    loss: str
    loss_fn: object  # loss_fn(model_output, wet)
    shortest: int  # fewest samples the loss takes
    loss_options: dict
    n_requested: object  # n_sections as asked for: an int, or None for the automatic order
    n_sections: int  # sections of the starts other than the equation-error one
    n_first_order: int
    structure: str
    stretch: int
    param: object  # the parameterisation (apfdsp.model)
    init: object
    n_iter: int
    lr: float
    batch_size: int
    segment_length: int
    warmup: object  # "auto", "bound" or an int
    ranges: ParamRanges
    max_delay_s: float
    clip: object
    phase_fit_options: object
    anticausal: bool
    seed: int
    callback: object

    def shape(self):
        """Keyword arguments that size a start: sections, structure, ranges, sample rate."""
        return {"n_sections": self.n_sections, "n_first_order": self.n_first_order, "structure": self.structure,
                "stretch": self.stretch, "ranges": self.ranges, "fs": self.fs}


def _checked_arguments(dry, wet, *, fs, loss, n_sections, n_first_order, structure, stretch, parameterization,
                       init, n_iter, lr, batch_size, segment_length, warmup, loss_options, ranges, max_delay_s,
                       clip, phase_fit_options, anticausal, seed, callback):
    """`_Setup` of the arguments of `fit_audio`, checked in the order of its signature (its Raises section)."""
    fs = valid_fs(fs)
    dry_in, wet_in, dry, wet = _check_pair(dry, wet)
    loss_fn, shortest, loss_options = _loss_setup(loss, fs, loss_options)
    n_requested = None if n_sections is None else valid_int(n_sections, "n_sections", minimum=1, maximum=64)
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
    anticausal = _checked_anticausal(anticausal, structure)
    seed = valid_int(seed, "seed")
    _check_init(init, structure)
    param = get_parameterization(parameterization)
    if min(dry.shape[-1], wet.shape[-1]) < shortest:
        raise AudioError(
            f"dry and wet overlap by {min(dry.shape[-1], wet.shape[-1])} samples; loss {loss!r} needs at "
            f"least {shortest}: use longer audio or smaller loss_options"
        )
    return _Setup(dry_in, wet_in, dry, wet, fs, loss, loss_fn, shortest, loss_options, n_requested,
                  BASE_SECTIONS if n_requested is None else n_requested, n_first_order, structure, stretch,
                  param, init, n_iter, lr, batch_size, segment_length, warmup, ranges, max_delay_s, clip,
                  phase_fit_options, anticausal, seed, callback)


def _checked_anticausal(anticausal, structure):
    anticausal = valid_bool(anticausal, "anticausal")
    if anticausal and structure == "stretched":
        raise ParameterError("anticausal=True needs structure 'warped' or 'traditional', not 'stretched'")
    return anticausal


def _check_init(init, structure):
    if isinstance(init, str):
        if init == "equation-error" and structure == "stretched":
            raise ParameterError("init='equation-error' needs structure 'warped' or 'traditional', not 'stretched'")
        if init not in INITS:
            raise ParameterError(f"init must be one of {INITS} or an AllpassCascade, got {init!r}")
    elif not isinstance(init, AllpassCascade):
        raise TypeError(f"init must be one of {INITS} or an AllpassCascade, got {type(init).__name__}")


# -- the start -------------------------------------------------------------------------------------------


def _equation_error_candidates(setup, est):
    """``(candidates, n_sections_used)``: the time-domain designs (`apfdsp.designs.time_equation_error_ladder`)
    as ``("equation-error", layout, t)``, with as many sections as the audio asks for when ``n_sections=None``."""
    starts, n_used = time_equation_error_ladder(
        setup.dry, setup.wet, est, anticausal=setup.anticausal, rungs=SECTION_RUNGS, margin_db=ORDER_MARGIN_DB,
        **{**setup.shape(), "n_sections": setup.n_requested})
    return [("equation-error", layout, t) for layout, t in starts], n_used


def _log_spaced_candidates(setup, est):
    """``[("log-spaced", layout, t)]``: sections spread over the dry's band (`_log_spaced_start`)."""
    return [("log-spaced", *_log_spaced_start(est, **setup.shape()))]


def _phase_fit_candidates(setup, est, *, anticausal):
    """``[("phase-fit", layout, t)]``: the frequency-domain fit on the estimate (`_phase_fit_start`)."""
    return [("phase-fit", *_phase_fit_start(
        est, fs=setup.fs, n_sections=setup.n_sections, structure=setup.structure, stretch=setup.stretch,
        ranges=setup.ranges, seed=setup.seed, options=setup.phase_fit_options, anticausal=anticausal))]


def _start(setup, est):
    """``(name, layout, t, n_sections_used)``: the start of the training (docs/maths.md section 9.6).

    An init cascade or ``init="phase-fit"`` is the start; otherwise the candidates of the init (the
    equation-error designs, the log-spaced start and, for ``init="default"`` with anticausal sections,
    the frequency-domain fit with anticausal sections) compete by null depth (`_best_start`).
    """
    init = setup.init
    if isinstance(init, AllpassCascade):
        layout, t = _layout_from_cascade(init, structure=setup.structure, stretch=setup.stretch,
                                         ranges=setup.ranges, fs=setup.fs, anticausal=setup.anticausal)
        return "cascade", layout, t, setup.n_sections
    if init == "phase-fit":
        return (*_phase_fit_candidates(setup, est, anticausal=setup.anticausal)[0], setup.n_sections)
    candidates, n_used = [], setup.n_sections
    if init != "log-spaced":
        candidates, n_used = _equation_error_candidates(setup, est)
    if init != "equation-error":
        candidates += _log_spaced_candidates(setup, est)
    if init == "default" and setup.anticausal:
        # The time-domain equation error rarely lands on two-sided designs when the wet is not an
        # allpass of the dry (a filter with a magnitude response): the frequency-domain fit with
        # anticausal sections competes too.
        try:
            candidates += _phase_fit_candidates(setup, est, anticausal=True)
        except (ParameterError, NotImplementedError):
            pass
    return (*_best_start(candidates, setup.dry, setup.wet, setup.segment_length, setup.shortest), n_used)


def _best_start(candidates, dry, wet, segment_length, shortest):
    """``(name, layout, t)`` of the candidate start with the deepest null on the whole audio.

    Candidates are compared by `apfdsp.metrics.null_depth_db` of the dry filtered by each (the whole
    signal, so that slowly decaying poles and anticausal sections are measured without segment-edge
    transients, which dominate the loss of near-exact starts); nulls within 0.01 dB count as equal and
    the first candidate among them wins (`candidates` are in order of preference). Candidates whose
    delay leaves less overlap than the loss needs are skipped; with none left, the first candidate is
    returned (`fit_audio` then reports the short overlap).
    """
    scored = []
    for name, layout, t in candidates:
        segments = _Segments(dry, wet, layout.delay_shift, segment_length)
        if segments.available >= shortest:
            scored.append((_null_of(layout, t, dry, wet), name, layout, t))
    if not scored:
        if not candidates:
            raise AudioError("no equation-error start fits the audio: use init='default' or longer audio")
        return candidates[0]
    deepest = min(item[0] for item in scored)
    _, name, layout, t = next(item for item in scored if item[0] <= deepest + 0.01)
    return name, layout, t


def _null_of(layout, t, dry, wet):
    """`apfdsp.designs.null_on_audio` of the cascade of (layout, t)."""
    return null_on_audio(AllpassCascade(layout.cells(t), fs=layout.fs), dry, wet)


# -- training --------------------------------------------------------------------------------------------


class _Objective:
    """The loss of the cascade of a layout on segments of the pair (docs/maths.md section 9.6).

    `warmup` is ``"auto"`` (the warm-up of the filter at t, `LayoutFilter.warmup`), ``"bound"`` (`bound`) or a
    number of samples; segments of a cascade with anticausal sections get it after their end too.
    """

    def __init__(self, layout, segments, loss_fn, *, warmup="auto", bound=None):
        self.filt, self.segments, self.loss_fn = LayoutFilter(layout), segments, loss_fn
        self.warmup, self.bound = warmup, bound
        self.eval_starts = segments.eval_starts()

    def warmups(self, t):
        """``(before, after)``: warm-up samples before and after a segment for the filter at t."""
        if self.warmup == "auto":
            return self.filt.warmups(t)
        before = self.bound if self.warmup == "bound" else self.warmup
        return before, (before if any(self.filt.layout.anticausal) else 0)

    def loss(self, t, x, y, skip):
        """Loss of the filter at t (differentiable) on dry segments `x` (with warm-up `skip`) against `y`."""
        return self.loss_fn(self.filt(t, x)[..., skip : skip + y.shape[-1]], y)

    def evaluate(self, t):
        """Loss on the evaluation audio (the whole overlap, or evenly spaced segments of long audio)."""
        x, y, skip = self.segments.batch(self.eval_starts, *self.warmups(t))
        return float(self.loss(t, x, y, skip))

    def mini_batch(self, rng, batch_size, t):
        """``(x, y, skip)`` of `batch_size` random segments, with the warm-up of the filter at t."""
        return self.segments.batch(self.segments.random_starts(rng, batch_size), *self.warmups(t))

    def null_db(self, t):
        """Null depth of the whole dry filtered by the cascade at t against the wet (`_null_of`)."""
        return _null_of(self.filt.layout, t, self.segments.dry, self.segments.wet)


@dataclass
class _Training:
    """What `_train` returns."""

    best_t: np.ndarray  # parameters of the best checkpoint (the start included)
    best_loss: float
    start_loss: float
    history: np.ndarray  # mini-batch loss per step
    warmups: np.ndarray  # warm-up per step
    evals: list  # (step, loss) of the checkpoints
    trained: bool  # False when the start was exact and no step was taken


def _train(objective, setup, t0, rng):
    """Adam on the flattened parameters from t0, cosine learning-rate decay, checkpoints on the evaluation audio.

    A start that is already exact (null depth on the whole audio below -100 dB, whatever the loss) is not
    trained, since Adam's steps could only move it away from the optimum.
    """
    param, n_iter = setup.param, setup.n_iter
    params0 = param.init(t0, rng=rng)
    flat, unflatten = flatten(params0)
    state = adam_init(flat)
    schedule = cosine_schedule(max(n_iter, 1))
    history, warmups = np.empty(n_iter), np.empty(n_iter, dtype=int)
    checkpoints = set(np.linspace(0, n_iter, _N_CHECKPOINTS + 1).round().astype(int).tolist())
    best_t = np.asarray(param.forward(params0))
    start_loss = best_loss = objective.evaluate(best_t)
    evals = [(0, start_loss)]
    steps_done = 0
    exact_start = objective.null_db(best_t) <= _EXACT_NULL_DB
    for i in range(0 if exact_start else n_iter):
        t = np.asarray(param.forward(unflatten(state.params)))
        x, y, skip = objective.mini_batch(rng, setup.batch_size, t)
        value, grad = value_and_grad(lambda f: objective.loss(param.forward(unflatten(f)), x, y, skip))(state.params)
        history[i], warmups[i] = value, skip
        steps_done = i + 1
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            break
        state = adam_step(state, grad, lr=setup.lr * schedule(i), clip=setup.clip)
        stop = setup.callback is not None and setup.callback(i, n_iter, float(value))
        if steps_done in checkpoints or stop:
            t = np.asarray(param.forward(unflatten(state.params)))
            current = objective.evaluate(t)
            evals.append((steps_done, current))
            if current < best_loss:
                best_loss, best_t = current, t
        if stop:
            break
    return _Training(best_t, best_loss, start_loss, history[:steps_done], warmups[:steps_done], evals,
                     not exact_start)


# -- the result ------------------------------------------------------------------------------------------


def delay_polarity_model(est, *, fs):
    """The delay + polarity model of a pair: the fallback of both routes (`fit_audio` and `apfdsp.align`).

    Parameters
    ----------
    est : apfdsp.estimate.Estimate
        The pair's estimate.
    fs : float
        Sample rate in Hz.

    Returns
    -------
    AllpassCascade
        A `Delay` of the GCC-PHAT delay ``est.delay_samples`` and a `Polarity` flip when ``est.polarity``
        is -1: no allpass sections. `fit_audio` returns it (``method="delay+polarity"``) when its loss on
        the evaluation audio is lower than that of the fitted cascade; `apfdsp.align` keeps it unless
        the allpass model gives a deeper null on the audio (docs/maths.md section 10.4).

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.estimate import estimate
    >>> dry = np.random.default_rng(0).standard_normal(8000)
    >>> wet = -np.concatenate([np.zeros(12), dry[:-12]])
    >>> delay, polarity = delay_polarity_model(estimate(dry, wet, fs=16000), fs=16000)
    >>> round(delay.samples, 2), polarity
    (12.0, Polarity(sign=-1))
    """
    return AllpassCascade([Delay(est.delay_samples)] + ([Polarity(-1)] if est.polarity < 0 else []), fs=fs)


def _delay_polarity_baseline(setup, est):
    """``(layout, t, loss)`` of `delay_polarity_model` on the evaluation audio (loss inf when its delay leaves
    less overlap than the loss needs)."""
    layout, t = _layout_from_cascade(delay_polarity_model(est, fs=setup.fs), structure=setup.structure,
                                     stretch=setup.stretch, ranges=setup.ranges, fs=setup.fs)
    segments = _Segments(setup.dry, setup.wet, layout.delay_shift, setup.segment_length)
    loss = _Objective(layout, segments, setup.loss_fn).evaluate(t) if segments.available >= setup.shortest else np.inf
    return layout, t, loss


def _settings(setup, *, n_used, segment_length, bound, delay_shift, trained):
    """`AudioFitResult.settings`: the settings used, JSON-safe."""
    return {
        "loss": setup.loss,
        "loss_options": {k: list(v) if isinstance(v, tuple) else v for k, v in setup.loss_options.items()},
        "n_sections": setup.n_requested, "n_sections_used": n_used, "n_first_order": setup.n_first_order,
        "structure": setup.structure, "stretch": setup.stretch,
        "parameterization": setup.param.name, "init": setup.init if isinstance(setup.init, str) else "cascade",
        "n_iter": setup.n_iter, "lr": setup.lr,
        "batch_size": setup.batch_size, "segment_length": int(segment_length), "warmup": setup.warmup,
        "warmup_bound": int(bound), "ranges": setup.ranges.to_dict(), "max_delay_s": setup.max_delay_s,
        "clip": setup.clip, "anticausal": setup.anticausal, "seed": int(setup.seed), "delay_shift": int(delay_shift),
        "trained": trained,
    }


def _result(layout, training, baseline, est, *, init_name, settings, start_time):
    """`AudioFitResult` of the trained cascade, or of the delay + polarity `baseline` (``(layout, t, loss)``)
    when its loss is lower: never worse than delay + polarity alone."""
    method = "delay+polarity" if layout.n2 + layout.n1 == 0 else "allpass"  # a start with no sections
    cells, best_loss = layout.cells(training.best_t), training.best_loss
    base_layout, base_t, base_loss = baseline
    if base_loss < best_loss:
        method, cells, best_loss = "delay+polarity", base_layout.cells(base_t), base_loss
    cascade = AllpassCascade(cells, fs=layout.fs)
    return AudioFitResult(
        cascade=cascade,
        loss=float(best_loss),
        loss_history=training.history,
        eval_history=np.array(training.evals, dtype=float),
        elapsed_s=time.perf_counter() - start_time,
        init=init_name,
        method=method,
        delay_samples=float(est.delay_samples),
        polarity=cascade.polarity,
        start_loss=float(training.start_loss),
        warmup=training.warmups,
        settings=settings,
    )
