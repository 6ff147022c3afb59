r"""Figures of allpass cascades and alignments: phase, group delay, poles and zeros, mix loss, fit loss.

The only module of apfdsp that touches matplotlib, and only inside functions (``import apfdsp`` does
not import matplotlib). Every figure is an object-oriented ``matplotlib.figure.Figure`` drawn by the
Agg canvas: no pyplot state, no display needed. The ``plot_*`` functions draw into a given Axes (or a
new figure) and return the Axes; `model_figure` and `align_report` write a complete figure to a file,
atomically (a failed save leaves no partial file behind).

Frequency axes are logarithmic in Hz, from 20 Hz to fs/2.

The curves are those of docs/maths.md, sections 1.3-1.4 and 10.1; docs/architecture.md, section 2.23.
"""

import os
from fractions import Fraction

import numpy as np
from scipy import signal

from ._validate import valid_fs, valid_pair
from .align import AlignResult, broadband_polarity
from .cascade import Allpass1, Allpass2, AllpassCascade, Delay, Polarity
from .estimate import estimate, truncate_common
from .exceptions import OutputError, ParameterError
from .metrics import DB_FLOOR, cross_sums_per_bin, stft_settings

__all__ = [
    "plot_phase",
    "plot_phase_difference",
    "plot_group_delay",
    "plot_pole_zero",
    "plot_mix_loss",
    "plot_loss_curve",
    "model_figure",
    "align_report",
]

#: File formats `model_figure` and `align_report` write, chosen by the file extension.
FIGURE_FORMATS = ("png", "pdf", "svg")
_DPI = 150
_F_LOW = 20.0  # lower end of the frequency axes, Hz
_N_FREQS = 1024  # default frequency grid size
_MIX_LOSS_FLOOR_DB = -30.0  # lowest mix loss shown (deeper values run off the axis)
_COLORS = {"model": "C0", "target": "C1", "dry": "C3", "delay_polarity": "C1", "aligned": "C2"}


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _new_axes(ax, figsize=(7.0, 4.5)):
    """Return `ax`, or the Axes of a new Agg-backed figure (no pyplot)."""
    if ax is not None:
        return ax
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def _new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _check_cascade(cascade):
    if not isinstance(cascade, AllpassCascade):
        raise TypeError(f"cascade must be an AllpassCascade, got {type(cascade).__name__}")
    return cascade


def _f_low(fs):
    return min(_F_LOW, fs / 20.0)


def _default_freqs(fs):
    return np.geomspace(_f_low(fs), fs / 2.0, _N_FREQS)


def _hz_label(value, _pos=None):
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _freq_axis(ax, fs):
    """Log frequency axis in Hz from 20 Hz to fs/2, ticks 20 50 100 200 500 1k ..., grid."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    lo, hi = _f_low(fs), fs / 2.0
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    decades = 10.0 ** np.arange(np.floor(np.log10(lo)), np.ceil(np.log10(hi)) + 1)
    ticks = np.outer(decades, [1.0, 2.0, 5.0]).ravel()
    ticks = ticks[(ticks >= lo * 0.999) & (ticks <= hi * 1.001)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(_hz_label))
    ax.xaxis.set_minor_locator(LogLocator(base=10.0, subs=np.arange(1, 10)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("Frequency (Hz)")
    ax.grid(True, which="major", alpha=0.45)
    ax.grid(True, which="minor", axis="x", alpha=0.15)


def _pi_label(value, _pos=None):
    frac = Fraction(value / np.pi).limit_denominator(8)
    if frac == 0:
        return "0"
    sign = "\u2212" if frac < 0 else ""
    num, den = abs(frac.numerator), frac.denominator
    text = "\u03c0" if num == 1 else f"{num}\u03c0"
    return sign + (text if den == 1 else f"{text}/{den}")


def _pi_axis(ax, lo, hi):
    """Y ticks at multiples of pi (about 4 to 8 of them) labelled 0, pi/2, -2pi, ..."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    span = max(hi - lo, 1e-3) / np.pi
    step = next(s for s in (0.25, 0.5, 1, 2, 4, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, np.inf)
                if span / s <= 8)
    if np.isfinite(step):
        ax.yaxis.set_major_locator(MultipleLocator(step * np.pi))
        ax.yaxis.set_major_formatter(FuncFormatter(_pi_label))


def _as_phase(target, n, name="target"):
    """Phase (rad) of a complex response or a real phase array of length n."""
    arr = np.asarray(target)
    if arr.shape != (n,):
        raise ParameterError(f"{name} must have the shape of freqs ({n},), got {arr.shape}")
    phase = np.angle(arr) if np.iscomplexobj(arr) else arr.astype(np.float64)
    if not np.all(np.isfinite(phase)):
        raise ParameterError(f"{name} contains NaN or Inf")
    return phase


def _valid_plot_freqs(freqs, fs):
    freqs = np.asarray(freqs, dtype=np.float64)
    if freqs.ndim != 1 or freqs.size == 0:
        raise ParameterError(f"freqs must be a non-empty 1-D array of frequencies in Hz, got shape {freqs.shape}")
    if not np.all(np.isfinite(freqs)) or np.any(freqs < 0) or np.any(freqs > fs / 2):
        raise ParameterError(f"freqs must be finite and lie in [0, fs/2] = [0, {fs / 2:g}] Hz")
    return freqs


def _save(fig, path, *, inputs=()):
    """Write `fig` to `path` atomically, in the format named by the extension; return `path` as str."""
    from .audiofile import atomic_output

    try:
        path = os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None
    ext = os.path.splitext(path)[1][1:].lower()
    if ext not in FIGURE_FORMATS:
        raise OutputError(
            f"cannot write figure {path!r}: unknown extension {'.' + ext if ext else '(none)'!r}; "
            f"use one of {', '.join('.' + e for e in FIGURE_FORMATS)}"
        )
    with atomic_output(path, inputs=inputs) as tmp:
        fig.savefig(tmp, format=ext, dpi=_DPI)
    return path


def _cells_text(cascade, *, max_lines=14):
    """Monospace description of a cascade: one line per cell, then totals."""
    lines = []
    for i, cell in enumerate(cascade):
        if isinstance(cell, Delay):
            ms = 1e3 * cell.samples / cascade.fs
            text = f"Delay {cell.samples:.6g} samples ({ms:.4g} ms)"
            if cell.thiran is not None:
                text += "\n       = shift + Thiran allpass"
        elif isinstance(cell, Polarity):
            text = "Polarity inverted (x -1)" if cell.sign < 0 else "Polarity normal"
        elif isinstance(cell, Allpass2):
            text = f"Allpass2 R={cell.pole_radius:.4f} fc={cell.fc_hz:.5g} Hz"
            if cell.warp:
                text += f" warp={cell.warp:+.3g}"
            if cell.stretch > 1:
                text += f" K={cell.stretch}"
        else:  # Allpass1: a cascade holds only the four cell types
            text = f"Allpass1 coef={cell.coef:+.4f}"
            if cell.warp:
                text += f" warp={cell.warp:+.3g}"
            if cell.stretch > 1:
                text += f" K={cell.stretch}"
        if isinstance(cell, (Allpass1, Allpass2)) and cell.anticausal:
            text += " (backwards)"
        lines.append(f"{i:2d}  {text}")
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [f"    ... {len(lines) - max_lines + 1} more cells"]
    if not lines:
        lines = ["    (no cells: identity)"]
    return "\n".join(lines)


def _polarity_text(cascade):
    """The broadband polarity of a model alone, judged on a pink spectrum from 20 Hz to 20 kHz."""
    freqs = np.geomspace(20.0, min(20000.0, 0.49 * cascade.fs), 512)
    delay = sum(c.samples for c in cascade if isinstance(c, Delay))
    _, label, rotation = broadband_polarity(cascade, freqs, np.gradient(freqs) / freqs, delay)
    return f"polarity {label}" + (f" ({abs(rotation):.0f} deg on a pink spectrum)" if label == "phase rotated" else "")


def _cascade_totals(cascade):
    gd = cascade.group_delay(_default_freqs(cascade.fs))
    return (
        f"fs {cascade.fs:g} Hz, {len(cascade)} cells, filter order {cascade.order}, "
        f"{cascade.sos_rows_text()}\n"
        f"integer shift {cascade.integer_delay} samples, {_polarity_text(cascade)}\n"
        f"group delay {gd.min():.4g} to {gd.max():.4g} samples "
        f"({1e3 * gd.min() / cascade.fs:.3g} to {1e3 * gd.max() / cascade.fs:.3g} ms)"
    )


# --------------------------------------------------------------------------------------------------
# single panels
# --------------------------------------------------------------------------------------------------
def plot_phase(cascade, *, freqs=None, target=None, weights=None, remove_delay_samples=0.0, ax=None):
    r"""Plot the unwrapped phase of a cascade on a log-frequency axis, optionally against a target.

    Parameters
    ----------
    cascade : AllpassCascade
        The model.
    freqs : array_like, shape (F,), optional
        Frequencies in Hz in [0, fs/2]; needed with `target`. Default: 1024 log-spaced points from
        20 Hz to fs/2.
    target : array_like, shape (F,), optional
        Measured target on `freqs`: a complex response or a phase in radians (wrapped or not), with
        the same delay convention as the model (its full delay included).
    weights : array_like, shape (F,), optional
        Non-negative reliability of each target point (e.g. `Estimate.weights`). Shown as a shaded
        band on a right-hand axis (normalised to a maximum of 1) and as the opacity of the target points.
    remove_delay_samples : float, optional
        A pure delay (samples) whose linear phase :math:`2\pi f D / f_s` is added back to both model and
        target, so that a bulk latency does not hide the dispersion. Stated in the y-axis label when
        non-zero. Default 0.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; default a new figure.

    Returns
    -------
    ax : matplotlib.axes.Axes

    Raises
    ------
    TypeError
        If `cascade` is not an AllpassCascade.
    ParameterError
        If `target` or `weights` is given without `freqs` or with another length, or values are invalid.

    Notes
    -----
    The target is drawn unwrapped *relative to the model*,
    :math:`\phi_t^{plot} = \phi_m + \angle e^{j(\phi_t - \phi_m)}`, so it sits on the model curve
    wherever the two agree modulo :math:`2\pi` and its distance from the curve is the wrapped phase error.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import AllpassCascade, Allpass2
    >>> from apfdsp.plot import plot_phase
    >>> cascade = AllpassCascade([Allpass2(0.9, 1000.0)], fs=48000)
    >>> ax = plot_phase(cascade)
    >>> ax.get_xlabel(), len(ax.get_lines())
    ('Frequency (Hz)', 1)
    """
    cascade = _check_cascade(cascade)
    fs = cascade.fs
    if (target is not None or weights is not None) and freqs is None:
        raise ParameterError("target and weights are given on a frequency grid: pass freqs as well")
    freqs = _default_freqs(fs) if freqs is None else _valid_plot_freqs(freqs, fs)
    keep = freqs > 0  # a log axis cannot show DC
    if not np.any(keep):
        raise ParameterError("freqs must hold at least one frequency above 0 Hz")
    f = freqs[keep]
    linear = 2 * np.pi * f * float(remove_delay_samples) / fs
    model = cascade.phase(f) + linear
    ax = _new_axes(ax)
    _freq_axis(ax, fs)
    lo, hi = float(model.min()), float(model.max())
    handles = []
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != freqs.shape or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ParameterError(f"weights must be non-negative finite numbers of shape {freqs.shape}, got shape {w.shape}")
        w = w[keep]
        w = w / w.max() if w.max() > 0 else np.ones_like(w)
        twin = ax.twinx()
        order = np.argsort(f)
        band = twin.fill_between(f[order], 0.0, w[order], color="0.5", alpha=0.18, linewidth=0,
                                 label="fit weight (right axis)")
        twin.set_ylim(0, 4.0)  # the band fills the lower quarter of the panel
        twin.set_yticks([0, 0.5, 1])
        twin.set_ylabel("Fit weight (max = 1)", color="0.4", loc="bottom")
        twin.tick_params(axis="y", colors="0.4")
        ax.set_zorder(twin.get_zorder() + 1)  # curves above the band
        ax.patch.set_visible(False)
        handles.append(band)
    else:
        w = None
    if target is not None:
        tphase = _as_phase(target, freqs.size)[keep] + linear
        tplot = model + np.angle(np.exp(1j * (tphase - model)))
        from matplotlib.colors import to_rgba

        rgba = np.tile(to_rgba(_COLORS["target"]), (f.size, 1))
        rgba[:, 3] = 0.9 if w is None else 0.1 + 0.85 * w
        label = "measured target" + ("" if w is None else " (opacity = weight)")
        pts = ax.scatter(f, tplot, s=14, c=rgba, edgecolors="none", label=label, zorder=4)
        handles.append(pts)
        lo, hi = min(lo, float(tplot.min())), max(hi, float(tplot.max()))
    (line,) = ax.plot(f, model, color=_COLORS["model"], lw=1.8, label="model", zorder=3)
    handles.insert(0, line)
    pad = 0.06 * max(hi - lo, 0.5)
    ax.set_ylim(lo - pad, hi + pad)
    _pi_axis(ax, lo - pad, hi + pad)
    ylabel = "Phase (rad)"
    if remove_delay_samples:
        ylabel = f"Phase, {remove_delay_samples:.4g}-sample delay removed (rad)"
    ax.set_ylabel(ylabel)
    ax.set_title("Phase response")
    ax.legend(handles=handles, loc="best", fontsize="small")
    return ax


def plot_group_delay(cascade, *, freqs=None, ax=None):
    """Plot the group delay of a cascade in samples (left axis) and milliseconds (right axis).

    Parameters
    ----------
    cascade : AllpassCascade
        The model; its integer delay is included.
    freqs : array_like, shape (F,), optional
        Frequencies in Hz in [0, fs/2]. Default: 1024 log-spaced points from 20 Hz to fs/2.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; default a new figure.

    Returns
    -------
    ax : matplotlib.axes.Axes

    Raises
    ------
    TypeError
        If `cascade` is not an AllpassCascade.
    ParameterError
        If `freqs` is invalid.

    Examples
    --------
    >>> from apfdsp import AllpassCascade, Allpass2, Delay
    >>> from apfdsp.plot import plot_group_delay
    >>> ax = plot_group_delay(AllpassCascade([Allpass2(0.9, 500.0), Delay(12.0)], fs=48000))
    >>> ax.get_ylabel(), len(ax.get_lines())
    ('Group delay (samples)', 1)
    """
    cascade = _check_cascade(cascade)
    fs = cascade.fs
    freqs = _default_freqs(fs) if freqs is None else _valid_plot_freqs(freqs, fs)
    f = freqs[freqs > 0]
    if f.size == 0:
        raise ParameterError("freqs must hold at least one frequency above 0 Hz")
    gd = cascade.group_delay(f)
    ax = _new_axes(ax)
    _freq_axis(ax, fs)
    ax.plot(f, gd, color=_COLORS["model"], lw=2, label="model")
    lo, hi = float(min(gd.min(), 0.0)), float(gd.max())
    pad = 0.08 * max(hi - lo, 1.0)
    ax.set_ylim(lo - (pad if lo < 0 else 0.0), hi + pad)
    ax.set_ylabel("Group delay (samples)")
    sec = ax.secondary_yaxis("right", functions=(lambda s: s * 1e3 / fs, lambda ms: ms * fs / 1e3))
    sec.set_ylabel("Group delay (ms)")
    ax.set_title("Group delay")
    return ax


def plot_pole_zero(cascade, *, ax=None):
    """Plot the poles (x) and zeros (o) of a cascade's filter in the z-plane, with the unit circle.

    Parameters
    ----------
    cascade : AllpassCascade
        The model. Its integer shift is not part of the SOS: it is noted in the panel (a delay of D
        samples is D poles at z = 0). Zeros far outside the unit circle are listed rather than drawn.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; default a new figure.

    Returns
    -------
    ax : matplotlib.axes.Axes

    Raises
    ------
    TypeError
        If `cascade` is not an AllpassCascade.

    Notes
    -----
    Every allpass pole :math:`p` has its zero at :math:`1/p^*`, mirrored in the unit circle.
    Anticausal sections (run backwards in time) are drawn as the filter they realise: poles outside
    the unit circle, zeros inside.

    Examples
    --------
    >>> from apfdsp import AllpassCascade, Allpass2
    >>> from apfdsp.plot import plot_pole_zero
    >>> ax = plot_pole_zero(AllpassCascade([Allpass2(0.9, 1000.0)], fs=48000))
    >>> ax.get_aspect(), sorted(t.get_text() for t in ax.get_legend().get_texts())
    (1.0, ['poles (2)', 'unit circle', 'zeros (2)'])
    """
    cascade = _check_cascade(cascade)
    zeros, poles, _ = signal.sos2zpk(cascade.sos)
    # padding of first-order sections: a pole and a zero at the origin that cancel
    poles = poles[np.abs(poles) > 1e-12]
    zeros = zeros[np.abs(zeros) > 1e-12]
    anti_poles = np.array([], complex)
    if cascade.sos_anticausal.shape[0]:
        # An anticausal section realises the mirror image 1/conj(.) of the poles and zeros it runs with.
        anti_zeros, anti_poles, _ = signal.sos2zpk(cascade.sos_anticausal)
        anti_poles = 1.0 / np.conj(anti_poles[np.abs(anti_poles) > 1e-12])
        zeros = np.concatenate([zeros, 1.0 / np.conj(anti_zeros[np.abs(anti_zeros) > 1e-12])])
    ax = _new_axes(ax, figsize=(5.5, 5.5))
    theta = np.linspace(0, 2 * np.pi, 512)
    ax.plot(np.cos(theta), np.sin(theta), color="0.3", lw=1, label="unit circle")
    radii = np.abs(np.concatenate([poles, anti_poles, zeros, [1.0]]))
    view = float(min(max(1.25, 1.1 * radii.max()), 2.5))
    inside = np.abs(zeros) <= view
    ax.plot(poles.real, poles.imag, "x", color=_COLORS["model"], ms=9, mew=2, ls="none",
            label=f"poles ({poles.size})")
    if anti_poles.size:
        ax.plot(anti_poles.real, anti_poles.imag, "x", color="C1", ms=9, mew=2, ls="none",
                label=f"anticausal poles ({anti_poles.size}, run backwards)")
    ax.plot(zeros[inside].real, zeros[inside].imag, "o", mfc="none", mec="C3", ms=9, mew=1.6, ls="none",
            label=f"zeros ({zeros.size})")
    notes = []
    if (~inside).any():
        far = ", ".join(f"{z.real:+.3g}{z.imag:+.3g}j" for z in zeros[~inside][:3])
        notes.append(f"{(~inside).sum()} zero(s) off the chart: {far}")
    off_chart = np.abs(anti_poles) > view
    if off_chart.any():
        far = ", ".join(f"{p.real:+.3g}{p.imag:+.3g}j" for p in anti_poles[off_chart][:3])
        notes.append(f"{off_chart.sum()} anticausal pole(s) off the chart: {far}")
    shift = cascade.integer_delay
    if shift > 0:
        notes.append(f"+ {shift}-sample shift ({shift} poles at z = 0, not drawn)")
    elif shift < 0:
        notes.append(f"+ {-shift}-sample advance (non-causal, not drawn)")
    if cascade.polarity < 0:
        notes.append("+ polarity inversion (gain -1)")
    if not poles.size and not anti_poles.size:
        notes.insert(0, "no poles or zeros in the SOS part")
    if notes:
        ax.text(0.02, 0.02, "\n".join(notes), transform=ax.transAxes, fontsize="small", va="bottom",
                bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.9))
    ax.axhline(0, color="0.75", lw=0.8, zorder=0)
    ax.axvline(0, color="0.75", lw=0.8, zorder=0)
    ax.set_xlim(-view, view)
    ax.set_ylim(-view, view)
    ax.set_aspect("equal")
    ax.set_xlabel("Real part")
    ax.set_ylabel("Imaginary part")
    ax.set_title("Poles and zeros (z-plane)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    return ax


def _mix_sums(x, y, *, fs, block_frames=256):
    """Per-bin sums A(f) = sum |X||Y| and B(f) = sum Re(X Y*) over frames and channels.

    Same STFT and conventions as `apfdsp.metrics.mix_ratio` (so ``(A.sum() + B.sum()) / (2 A.sum())``
    is its r), computed in blocks of frames to bound memory on long signals.
    """
    fs = valid_fs(fs)
    x, y = truncate_common(*valid_pair(x, y))
    nfft, _ = stft_settings(fs)
    A, B = cross_sums_per_bin(x, y, fs, chunk=block_frames)
    return np.fft.rfftfreq(nfft, 1.0 / fs), A, B


def _smoothed_ratio(freqs, A, B, *, fs, fraction=6, n_points=300):
    """1/`fraction`-octave smoothed mix ratio r(f): band sums of A and B, then their ratio.

    Bands are centred on `n_points` log-spaced frequencies from 20 Hz to fs/2; where a band is
    narrower than an STFT bin the nearest bin is used, duplicate bands are dropped, and each value is
    placed at the mean frequency of its bins (so low frequencies show the bins, not stairs).
    """
    centres = np.geomspace(max(_f_low(fs), freqs[1]), fs / 2.0, n_points)
    half = 2.0 ** (0.5 / fraction)
    lo = np.searchsorted(freqs, centres / half, side="left")
    hi = np.searchsorted(freqs, centres * half, side="right")
    nearest = np.clip(np.round(centres / freqs[1]).astype(int), 0, freqs.size - 1)
    empty = hi <= lo  # band narrower than a bin: use the nearest bin
    lo = np.where(empty, nearest, lo)
    hi = np.where(empty, nearest + 1, hi)
    lo, hi = np.unique(np.stack([lo, hi]), axis=1)
    cA, cB, cF = (np.r_[0.0, np.cumsum(v)] for v in (A, B, freqs))
    a = cA[hi] - cA[lo]
    b = cB[hi] - cB[lo]
    f = (cF[hi] - cF[lo]) / (hi - lo)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(a > 0, np.clip((a + b) / (2.0 * a), 0.0, 1.0), np.nan)
    return f, r


def _fmt2(value):
    """Two decimals, without a "-0.00"."""
    return f"{0.0 if abs(value) < 5e-3 else value:.2f}"


def _db(r):
    with np.errstate(divide="ignore"):
        return np.maximum(10.0 * np.log10(r), DB_FLOOR)


def plot_mix_loss(dry, wet, aligned, *, fs, delay_polarity=None, ax=None):
    r"""Plot, per frequency, what the level-equalised dry + wet mix loses to phase, before and after alignment.

    Parameters
    ----------
    dry : array_like, shape (..., n)
        The dry signal as given.
    wet : array_like, shape (..., m)
        The wet signal; channel shapes broadcast with `dry` (multichannel sums are pooled).
    aligned : array_like, shape (..., n)
        The aligned dry signal (e.g. ``AlignResult.aligned``).
    fs : float
        Sample rate in Hz.
    delay_polarity : array_like, shape (..., n), optional
        The dry after delay + polarity correction only: drawn as a third curve.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; default a new figure.

    Returns
    -------
    ax : matplotlib.axes.Axes

    Raises
    ------
    AudioError
        If a signal is empty, silent or non-finite.
    ParameterError
        If `fs` is invalid or channel shapes do not broadcast.

    See Also
    --------
    apfdsp.metrics.mix_loss_db : the broadband number (quoted in the legend).

    Notes
    -----
    With the STFT of `apfdsp.metrics` (`stft_settings`, periodic Hann, ``scipy.signal.ShortTimeFFT``)
    and sums over frames t and channels,

    .. math:: r(f) = \frac{\sum_t |X||Y| + \mathrm{Re}(X Y^*)}{2 \sum_t |X||Y|},

    with both sums taken over 1/6-octave bands before dividing; the curve is :math:`10\log_{10} r(f)`:
    0 dB loses nothing, -3 dB is random phase, a notch is a cancellation. The legend quotes the
    broadband `apfdsp.metrics.mix_loss_db`.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.plot import plot_mix_loss
    >>> x = np.random.default_rng(0).standard_normal(24000)
    >>> from apfdsp.metrics import mix_loss_db
    >>> wet = np.roll(x, 5)  # a 5-sample latency: a comb filter in the mix
    >>> ax = plot_mix_loss(x, wet, wet, fs=48000)
    >>> [t.get_text() for t in ax.get_legend().get_texts()][:2]
    ['dry as given (-3.10 dB)', 'aligned (0.00 dB)']
    >>> f"{mix_loss_db(x, wet, fs=48000):.2f}"
    '-3.10'
    """
    fs = valid_fs(fs)
    curves = [("dry as given", dry, _COLORS["dry"], "-")]
    if delay_polarity is not None:
        curves.append(("delay + polarity only", delay_polarity, _COLORS["delay_polarity"], "--"))
    curves.append(("aligned", aligned, _COLORS["aligned"], "-"))
    ax = _new_axes(ax)
    _freq_axis(ax, fs)
    lowest = 0.0
    for label, x, color, style in curves:
        freqs, A, B = _mix_sums(x, wet, fs=fs)
        broadband = _db(max((A.sum() + B.sum()) / (2.0 * A.sum()), 0.0)) if A.sum() > 0 else np.nan
        centres, r = _smoothed_ratio(freqs, A, B, fs=fs)
        loss = _db(r)
        ax.plot(centres, loss, style, color=color, lw=2, label=f"{label} ({_fmt2(broadband)} dB)")
        if np.isfinite(loss).any():
            lowest = min(lowest, float(np.nanmin(loss)))
    ax.axhline(10 * np.log10(0.5), color="0.4", lw=1, ls=":", label="random phase (-3 dB)")
    ax.set_ylim(max(lowest - 1.0, _MIX_LOSS_FLOOR_DB), 1.0)
    ax.set_ylabel("Mix loss to phase (dB, 0 = none)")
    ax.set_title("Level-equalised dry + wet mix: loss per frequency (1/6 octave)")
    ax.legend(loc="best", fontsize="small", title="curve (mix loss over the whole band)", title_fontsize="small")
    return ax


def plot_loss_curve(history, *, ax=None):
    """Plot a fit's loss against the optimiser iteration on a log y axis.

    Parameters
    ----------
    history : array_like or FitResult
        Loss per iteration, or an object with a ``loss_history`` attribute (`apfdsp.FitResult`).
        Values <= 0 are drawn at the smallest positive value.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; default a new figure.

    Returns
    -------
    ax : matplotlib.axes.Axes

    Raises
    ------
    ParameterError
        If the history is empty, not 1-D or not finite.

    Examples
    --------
    >>> from apfdsp.plot import plot_loss_curve
    >>> ax = plot_loss_curve([1.0, 0.1, 0.01, 0.005])
    >>> ax.get_yscale(), ax.get_xlabel()
    ('log', 'Iteration')
    """
    history = getattr(history, "loss_history", history)
    h = np.asarray(history, dtype=np.float64)
    if h.ndim != 1 or h.size == 0 or not np.all(np.isfinite(h)):
        raise ParameterError(f"history must be a non-empty 1-D array of finite losses, got shape {h.shape}")
    positive = h[h > 0]
    floor = positive.min() if positive.size else 1e-300
    h = np.maximum(h, floor)
    ax = _new_axes(ax)
    it = np.arange(h.size)
    ax.plot(it, h, "-", color=_COLORS["model"], lw=1.5, marker="o" if h.size <= 50 else None, ms=3,
            label="loss")
    best = int(np.argmin(h))
    ax.plot([best], [h[best]], "*", color="C3", ms=12, ls="none", label=f"lowest: {h[best]:.3g} (iteration {best})")
    ax.set_yscale("log")
    ax.set_xlabel("Iteration")
    ax.set_ylabel("Phase loss (log scale)")
    ax.set_title("Fit loss")
    ax.grid(True, which="major", alpha=0.45)
    ax.grid(True, which="minor", axis="y", alpha=0.15)
    ax.legend(loc="upper right", fontsize="small")
    return ax


def _text_panel(ax, title, text, *, fontsize=9):
    ax.axis("off")
    ax.set_title(title, loc="left")
    ax.text(0.0, 1.0, text, transform=ax.transAxes, va="top", ha="left", family="monospace",
            fontsize=fontsize, linespacing=1.35)


# --------------------------------------------------------------------------------------------------
# figures written to files
# --------------------------------------------------------------------------------------------------
def model_figure(cascade, path, *, target=None, freqs=None, weights=None, title=None):
    """Write a 2 x 2 overview of a cascade: phase, group delay, poles and zeros, and its cells.

    Parameters
    ----------
    cascade : AllpassCascade
        The model.
    path : str or os.PathLike
        Output file; the format follows the extension (``.png``, ``.pdf`` or ``.svg``). Written
        atomically: on failure no partial file is left behind.
    target, freqs, weights : array_like, optional
        As in `plot_phase`.
    title : str, optional
        Figure title; default names the cascade.

    Returns
    -------
    path : str

    Raises
    ------
    TypeError
        If `cascade` is not an AllpassCascade.
    ParameterError
        As `plot_phase`.
    OutputError
        If the extension is not supported or the file cannot be written.

    Notes
    -----
    The phase panel shows the phase with the cascade's integer shift removed (its linear phase would
    hide the allpass dispersion); the group-delay panel includes it.

    Examples
    --------
    >>> import os, tempfile
    >>> from apfdsp import AllpassCascade, Allpass2, Delay, Polarity
    >>> from apfdsp.plot import model_figure
    >>> cascade = AllpassCascade([Allpass2(0.9, 500.0), Delay(12.0), Polarity(-1)], fs=48000)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = model_figure(cascade, os.path.join(d, "model.png"))
    ...     os.path.getsize(path) > 10_000
    True
    """
    cascade = _check_cascade(cascade)
    fig = _new_figure((13.0, 9.0))
    axes = fig.subplots(2, 2)
    shift = cascade.integer_delay
    ax = plot_phase(cascade, freqs=freqs, target=target, weights=weights, remove_delay_samples=shift, ax=axes[0, 0])
    if shift:
        ax.set_title(f"Phase response (integer shift of {shift} samples removed)")
    plot_group_delay(cascade, ax=axes[0, 1])
    plot_pole_zero(cascade, ax=axes[1, 0])
    _text_panel(axes[1, 1], "Cells", _cells_text(cascade) + "\n\n" + _cascade_totals(cascade))
    fig.suptitle(title or f"Allpass cascade: {len(cascade)} cells at {cascade.fs:g} Hz", fontsize="x-large")
    return _save(fig, path)


def _log_groups(freqs, H, weights, *, fs, n_groups=400):
    """Merge a linear Welch grid into <= n_groups log-spaced groups above 20 Hz for display.

    H is averaged with the weights (complex mean), the weight is the group mean (independent of the
    group width), and the frequency is the weight-centred mean. Groups without weight are dropped.
    """
    keep = (freqs >= _f_low(fs)) & (freqs <= fs / 2)
    freqs, H, weights = freqs[keep], H[keep], weights[keep]
    edges = np.geomspace(freqs[0], freqs[-1] * (1 + 1e-9), n_groups + 1)
    idx = np.clip(np.searchsorted(edges, freqs, side="right") - 1, 0, n_groups - 1)
    count = np.bincount(idx, minlength=n_groups)
    wsum = np.bincount(idx, weights, minlength=n_groups)
    fsum = np.bincount(idx, weights * freqs, minlength=n_groups)
    hre = np.bincount(idx, weights * H.real, minlength=n_groups)
    him = np.bincount(idx, weights * H.imag, minlength=n_groups)
    ok = wsum > 0
    return fsum[ok] / wsum[ok], (hre[ok] + 1j * him[ok]) / wsum[ok], wsum[ok] / count[ok]


def _worth_a_curve(history, min_points=6, min_range=1.02):
    """True for a loss history with more than a handful of points that changes visibly."""
    if history is None or np.size(history) < min_points:
        return False
    h = np.asarray(history, dtype=float)
    positive = h[h > 0]
    return positive.size >= min_points and positive.max() / positive.min() > min_range


def _wrapped_degrees(phase):
    return np.degrees(np.angle(np.exp(1j * np.asarray(phase))))


def plot_phase_difference(cascade, freqs, measured, weights, delay_samples, *, ax=None):
    r"""Plot the measured phase of wet vs dry and the model's, bulk delay removed, wrapped to +-180 degrees.

    Parameters
    ----------
    cascade : AllpassCascade
        The model; drawn over the whole band (20 Hz to fs/2).
    freqs : array_like
        Frequencies of the measurement in Hz.
    measured : array_like
        Phase of the wet relative to the dry at `freqs`, radians (any wrapping), full delay included.
    weights : array_like
        Reliability of each measured point (its opacity).
    delay_samples : float
        Bulk delay removed from both, in samples.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    ax : matplotlib.axes.Axes

    Notes
    -----
    Both curves are drawn as :math:`\mathrm{wrap}(\phi(f) + 2\pi f D / f_s)` in degrees, in
    (-180, 180]: the scale of a phase meter, on which 0 is in phase and +-180 is inverted. The
    model's line is broken where it wraps.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import AllpassCascade, Allpass2, Delay
    >>> from apfdsp.plot import plot_phase_difference
    >>> model = AllpassCascade([Allpass2(0.9, 1000.0), Delay(5.0)], fs=48000)
    >>> f = np.geomspace(20, 20000, 50)
    >>> ax = plot_phase_difference(model, f, model.phase(f), np.ones(50), 5.0)
    >>> tuple(float(v) for v in ax.get_ylim())
    (-180.0, 180.0)
    """
    from matplotlib.colors import to_rgba

    cascade = _check_cascade(cascade)
    fs = cascade.fs
    f = _valid_plot_freqs(freqs, fs)
    measured, w = np.asarray(measured, dtype=float), np.asarray(weights, dtype=float)
    if measured.shape != f.shape or w.shape != f.shape or np.any(~np.isfinite(w)) or np.any(w < 0):
        raise ParameterError("freqs, measured and weights must be finite arrays of one shape (weights >= 0)")
    ax = _new_axes(ax)
    _freq_axis(ax, fs)
    grid = _default_freqs(fs)
    model = _wrapped_degrees(cascade.phase(grid) + 2 * np.pi * grid * delay_samples / fs)
    model[np.r_[False, np.abs(np.diff(model)) > 180]] = np.nan  # break the line where it wraps
    rgba = np.tile(to_rgba(_COLORS["target"]), (f.size, 1))
    rgba[:, 3] = 0.15 + 0.8 * (w / w.max() if w.max() > 0 else 1.0)
    ax.scatter(f, _wrapped_degrees(measured + 2 * np.pi * f * delay_samples / fs), s=18, c=rgba,
               edgecolors="none", label="wet vs dry, measured (opacity = reliability)", zorder=5)
    ax.plot(grid, model, color=_COLORS["model"], lw=1.4, label="model applied to the dry", zorder=4)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_ylim(-180.0, 180.0)
    ax.set_yticks([-180, -90, 0, 90, 180])
    ax.set_ylabel("Phase (degrees; 0 = in phase, \u00b1180 = inverted)")
    ax.legend(loc="lower left", fontsize="small")
    return ax


def _report_text(result, fit, cascade, fs, per_channel):
    summary = result.summary()
    labels = summary["method_label"] if isinstance(summary["method_label"], list) else [summary["method_label"]]
    rows = [("broadband null", "broadband_null_db", "DAW flip-and-sum, one gain"),
            ("phase-only null", "null_db", "levels matched per band"),
            ("mix loss", "mix_loss_db", "0 dB is best")]
    table = [f"{'':16s}{'before':>9s}{'delay+pol':>11s}{'after':>9s}"]
    for name, key, hint in rows:
        vals = [result.before[key], result.delay_polarity[key], result.after[key]]
        table.append(f"{name:16s}" + "".join(f"{_fmt2(v):>{9 if i != 1 else 11}s}" for i, v in enumerate(vals))
                     + f"   ({hint})")
    polarity = summary["polarity_label"]
    if polarity == "phase rotated":
        polarity = f"not inverted, phase rotated ({abs(summary['phase_rotation_deg']):.0f} deg on average)"
    lines = [
        f"method: {', '.join(labels)}",
        f"{'channel 1: ' if per_channel else ''}bulk delay {result.delay_samples:.3f} samples "
        f"({1e3 * result.delay_samples / fs:.3f} ms)",
        f"polarity: {polarity}",
        f"real time: {'yes' if summary['realtime_capable'] else 'no (files only)'}",
        "",
        *table,
        "",
        "Nulls: lower is better. The broadband null also counts",
        "changes in tone (EQ, drive), so it stays shallower for",
        "such effects; the phase-only null measures alignment.",
        "",
    ]
    if fit is not None and hasattr(fit, "loss"):
        lines.append(f"fit: loss {fit.loss:.3g}, phase error {fit.phase_error_rad:.3g} rad (weighted RMS)")
    lines.append(f"alignment took {result.elapsed_s:.2f} s")
    lines += ["", f"model{' (channel 1)' if per_channel else ''}:", _cells_text(cascade, max_lines=10)]
    return "\n".join(lines)


def _channel(a, i):
    a = np.asarray(a)
    return a[i] if a.ndim == 2 and a.shape[0] > 1 else (a[0] if a.ndim == 2 else a)


def align_report(result, dry, wet, path, *, fs, title=None):
    r"""Write a report figure of an alignment: phase of wet vs dry and model, mix loss, group delay, numbers.

    Parameters
    ----------
    result : AlignResult
        From `apfdsp.align.align` (or `fit_alignment`, in which case the aligned signal is recomputed).
    dry, wet : array_like, shape (n,) or (channels, n)
        The signals given to `align`.
    path : str or os.PathLike
        Output file (``.png``, ``.pdf`` or ``.svg``), written atomically.
    fs : float
        Sample rate in Hz.
    title : str, optional
        Figure title.

    Returns
    -------
    path : str

    Raises
    ------
    TypeError
        If `result` is not an AlignResult.
    AudioError, ParameterError
        For invalid signals or `fs`.
    OutputError
        If the extension is not supported or the file cannot be written.

    Notes
    -----
    Panels:

    1. **Phase of wet vs dry, and of the model** (`plot_phase_difference`), wrapped to +-180 degrees
       over the whole band. The measurement is the phase of :math:`H = S_{yx}/S_{xx}` from
       `apfdsp.estimate.estimate` (with the settings of the alignment), merged into log-spaced groups,
       its opacity the fit weight. Both have the same bulk delay (``result.delay_samples``) removed.
       Per-channel results show channel 1.
    2. **Mix loss per frequency** (`plot_mix_loss`) of the dry as given, after delay + polarity only,
       and aligned.
    3. **Group delay** of the model (`plot_group_delay`).
    4. **Fit loss** per iteration (`plot_loss_curve`), only when the history has more than a handful of
       points that change visibly.
    5. **Numbers**: broadband null, phase-only null and mix loss before -> delay + polarity -> after,
       polarity, method, real time, and the cells.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from apfdsp import AllpassCascade, Allpass2, Delay
    >>> from apfdsp.align import align
    >>> from apfdsp.plot import align_report
    >>> dry = np.random.default_rng(0).standard_normal(24000)
    >>> wet = AllpassCascade([Allpass2(0.9, 500.0), Delay(12.0)], fs=48000)(dry)
    >>> result = align(dry, wet, fs=48000, n_sections=2)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = align_report(result, dry, wet, os.path.join(d, "report.png"), fs=48000)
    ...     os.path.getsize(path) > 10_000
    True
    """
    if not isinstance(result, AlignResult):
        raise TypeError(f"result must be an AlignResult from apfdsp.align.align, got {type(result).__name__}")
    fs = valid_fs(fs)
    dry, wet = valid_pair(dry, wet, names=("dry", "wet"))
    per_channel = isinstance(result.cascade, list)
    cascades = result.cascade if per_channel else [result.cascade]
    fits = result.fit if isinstance(result.fit, list) else [result.fit]
    settings = result.settings or {}
    est_kwargs = {k: settings[k] for k in ("max_delay_s", "nperseg") if settings.get(k) is not None}

    # Per model: the measured response and the delay + polarity baseline (as `align` builds it).
    pairs = [(_channel(dry, i), _channel(wet, i)) for i in range(len(cascades))] if per_channel else [(dry, wet)]
    ests = [estimate(d, w, fs=fs, **est_kwargs) for d, w in pairs]
    baselines = [AllpassCascade([Delay(e.delay_samples)] + ([Polarity(-1)] if e.polarity < 0 else []), fs=fs)
                 for e in ests]
    if per_channel:
        aligned = result.aligned if result.aligned is not None else np.stack(
            [c.apply(d) for c, (d, _) in zip(cascades, pairs)])
        by_baseline = np.stack([b.apply(d) for b, (d, _) in zip(baselines, pairs)])
    else:
        aligned = result.aligned if result.aligned is not None else cascades[0].apply(dry)
        by_baseline = baselines[0].apply(dry)

    history = getattr(fits[0], "loss_history", None) if fits[0] is not None else None
    show_loss = _worth_a_curve(history)
    fig = _new_figure((14.0, 14.5 if show_loss else 10.5))
    grid = fig.add_gridspec(3 if show_loss else 2, 2, width_ratios=[1.15, 1.0])
    ax_phase, ax_mix = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    ax_gd, ax_text = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1:, 1])

    # 1. phase of wet vs dry and of the model, same bulk delay removed, wrapped to +-180 degrees
    cascade, est = cascades[0], ests[0]
    f, H, w = _log_groups(est.freqs, est.H, est.weights, fs=fs)
    bulk = float(est.delay_samples)
    measured = np.angle(H) - 2 * np.pi * f * est.integer_delay / fs  # put back the delay estimate() removed
    plot_phase_difference(cascade, f, measured, w, bulk, ax=ax_phase)
    ax_phase.set_title(f"Phase of wet relative to dry{' (channel 1)' if per_channel else ''}, and of the model\n"
                       f"bulk delay of {bulk:.2f} samples ({1e3 * bulk / fs:.3g} ms) removed from both")

    # 2. mix loss per frequency
    plot_mix_loss(dry, wet, aligned, fs=fs, delay_polarity=by_baseline, ax=ax_mix)
    ax_mix.set_title("What the dry + wet mix loses to phase, per 1/6 octave")

    # 3. group delay of the model
    plot_group_delay(cascade, ax=ax_gd)
    ax_gd.set_title(f"Group delay of the model{' (channel 1)' if per_channel else ''}: how late each frequency comes")

    # 4. loss curve, only when it says something
    if show_loss:
        plot_loss_curve(history, ax=fig.add_subplot(grid[2, 0]))

    # 5. numbers
    _text_panel(ax_text, "Before \u2192 delay + polarity \u2192 after", _report_text(result, fits[0], cascade, fs,
                                                                                    per_channel), fontsize=9)

    fig.suptitle(title or "apfdsp alignment report", fontsize="x-large")
    return _save(fig, path)
