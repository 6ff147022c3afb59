r"""Fit an allpass cascade to a phase response: `fit_phase`.

The fit is non-convex and local minima are the rule, so `fit_phase` runs several starts of different
kinds and keeps the best:

* ``"equation-error"``: M. Lang's linear least-squares allpass design for every order up to
  ``2 * n_sections + 1`` and both polarities (exact on noise-free allpass targets), iteratively reweighted;
* ``"group-delay"``: sections placed on the peaks of the target's group delay;
* ``"random"``: seeded random pole placements.

Each start is polished by gradient descent (L-BFGS or Adam) on the exact differentiable phase of the
cascade, the best is kept, and sections that do nothing are pruned (removed, or replaced by the exact
integer delay they have collapsed to).
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import autograd.numpy as anp
import numpy as np
from scipy import signal

from ._validate import valid_fs, valid_int
from .cascade import Allpass1, Allpass2, AllpassCascade, Delay, Polarity
from .exceptions import ParameterError
from .filters import allpass_phase, second_order_denominator, thiran_coef, warped_frequency
from .losses import phase_loss
from .model import N_OUTPUTS, Direct, get_parameterization
from .optim import adam, cosine_schedule, lbfgs
from .phase_objective import cascade_phase_loss, direct_loss_and_grad
from .ranges import DEFAULT_RANGES, ParamRanges
from .threads import single_threaded_blas

__all__ = ["fit_phase", "FitResult", "STRUCTURES", "equation_error_phase_loss"]

STRUCTURES = ("traditional", "warped", "stretched")
_EXACT = 1e-10  # loss of a practically exact fit (phase error ~1e-5 rad, null below -100 dB)
_N_FINALISTS = 2
# The starts' polishes run on this many threads (direct parameters): two, or one on a one-core machine.
_POLISH_THREADS = min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
_LOSS_RESOLUTION = 1e-15  # rounding level of the loss (a sum of phasors of modulus 1 +- 1e-16)
_START_WARPS = (-0.8, 0.5)  # extra warps of the equation-error starts (structure="warped")


def wrapped_phase_error(phase, target_phase, weights=None):
    """Weighted RMS of the wrapped phase difference in radians."""
    diff = np.angle(np.exp(1j * (np.asarray(phase) - np.asarray(target_phase))))
    weights = np.ones_like(diff) if weights is None else np.asarray(weights)
    return float(np.sqrt(np.sum(weights * diff**2) / np.sum(weights)))


@dataclass
class FitResult:
    """What `fit_phase` returns.

    Attributes
    ----------
    cascade : AllpassCascade
        The fitted filter (allpass sections, integer/fractional delay, polarity).
    loss : float
        Final `apfdsp.losses.phase_loss` on the fitting grid.
    phase_error_rad : float
        Weighted RMS wrapped phase error (rad) on the fitting grid.
    loss_history : ndarray
        Loss per optimiser iteration of the winning start (its polish and final refinement).
    elapsed_s : float
        Wall-clock time of the whole fit.
    start : str
        Kind of the winning start.
    starts : list of dict
        Every start tried: kind, order, polarity, loss after polishing.
    settings : dict
        The settings used (JSON-safe).
    """

    cascade: AllpassCascade
    loss: float
    phase_error_rad: float
    loss_history: np.ndarray
    elapsed_s: float
    start: str
    starts: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Layout:
    """How a matrix of normalised parameters (units x 3) maps to a cascade of a given shape."""

    n2: int
    n1: int
    structure: str
    stretch: int
    polarity: int
    delay_shift: object  # None: no delay unit; int: integer shift before the Thiran unit
    ranges: ParamRanges
    fs: float
    anticausal: tuple = ()  # one bool per section (second-order first), or () for all causal

    def signs(self):
        """+1 per causal and -1 per anticausal section (second-order, then first-order); None: all causal."""
        if not any(self.anticausal):
            return None
        return 1.0 - 2.0 * np.asarray(self.anticausal, dtype=float)

    @property
    def n_units(self):
        return self.n2 + self.n1 + (self.delay_shift is not None)

    def const_phase(self, w):
        shift = 0 if self.delay_shift is None else self.delay_shift
        return -w * shift - np.pi * (self.polarity < 0)

    def phase(self, t, w, const):
        """Cascade phase on grid w; differentiable w.r.t. t. An anticausal section's phase changes sign."""
        total = const
        r = self.ranges
        signs = self.signs()
        if self.n2:
            t2 = t[: self.n2]
            radius = r.pole_radius(t2[:, 0], fs=self.fs)
            den2 = second_order_denominator(radius, r.fc_hz(t2[:, 1], fs=self.fs), fs=self.fs)
            warp = r.warp(t2[:, 2]) if self.structure != "traditional" else 0.0
            stretch = self.stretch if self.structure == "stretched" else 1
            phases = allpass_phase(w, den2, warp, stretch)
            if signs is not None:
                phases = phases * signs[: self.n2, None]
            total = total + anp.sum(phases, axis=0)
        coefs = []
        if self.n1:
            coefs.append(r.coef(t[self.n2 : self.n2 + self.n1, 0], fs=self.fs))
        if self.delay_shift is not None:
            coefs.append(anp.reshape(thiran_coef(1.0 + 0.5 * t[-1, 0]), (1,)))
        if coefs:
            den1 = anp.reshape(anp.concatenate(coefs), (-1, 1))
            phases = allpass_phase(w, den1)
            if signs is not None and self.n1:
                signs1 = np.r_[signs[self.n2 :], np.ones(int(self.delay_shift is not None))]
                phases = phases * signs1[:, None]
            total = total + anp.sum(phases, axis=0)
        return total

    def cells(self, t):
        """Cells of the cascade for normalised parameters t."""
        r = self.ranges
        t = np.asarray(t)
        cells = []
        flags = self.anticausal or (False,) * (self.n2 + self.n1)
        for row, anticausal in zip(t[: self.n2], flags):
            warp = float(r.warp(row[2])) if self.structure != "traditional" else 0.0
            stretch = self.stretch if self.structure == "stretched" else 1
            cells.append(Allpass2(float(r.pole_radius(row[0], fs=self.fs)), float(r.fc_hz(row[1], fs=self.fs)), warp,
                                  stretch, anticausal))
        for row, anticausal in zip(t[self.n2 : self.n2 + self.n1], flags[self.n2 :]):
            cells.append(Allpass1(float(r.coef(row[0], fs=self.fs)), anticausal=anticausal))
        if self.delay_shift is not None:
            samples = self.delay_shift + 1.0 + 0.5 * float(t[-1, 0])
            if abs(samples - round(samples)) < 1e-6:  # an integer delay is an exact shift
                samples = float(round(samples))
            if self.delay_shift < 0 < samples and not samples.is_integer():
                # Realised as fitted, an advance and a Thiran unit (a Delay cell would not advance).
                cells += [Delay(float(self.delay_shift)), Allpass1(float(thiran_coef(samples - self.delay_shift)))]
            else:
                cells.append(Delay(samples))
        if self.polarity < 0:
            cells.append(Polarity(-1))
        return cells

    def t_from(self, sections2, coefs1, frac_delay=1.0):
        """Normalised matrix from second-order (R, fc, warp) triples, first-order coefs and a delay."""
        r = self.ranges
        t = np.zeros((self.n_units, N_OUTPUTS))
        for i, (radius, fc, warp) in enumerate(sections2):
            t[i] = [r.pole_radius_inv(radius, fs=self.fs), r.fc_hz_inv(fc, fs=self.fs), r.warp_inv(warp)]
        for i, coef in enumerate(coefs1):
            t[self.n2 + i, 0] = r.coef_inv(coef, fs=self.fs)
        if self.delay_shift is not None:
            t[-1, 0] = np.clip(2.0 * (frac_delay - 1.0), -0.999, 0.999)
        return t

    def replace(self, **changes):
        values = {k: getattr(self, k) for k in self.__dataclass_fields__}
        values.update(changes)
        return _Layout(**values)


# -- starts ------------------------------------------------------------------------------------------


def equation_error_denominator(w, response, order, weights, *, n_iter=3):
    r"""Allpass denominator by the equation-error method (M. Lang), iteratively reweighted.

    For an allpass :math:`H = e^{-jN\omega}\,\overline{A(e^{j\omega})}/A(e^{j\omega})` of order N the
    equation :math:`H_t A = e^{-jN\omega}\overline{A}` is linear in :math:`a_1 \dots a_N`:

    .. math:: \sum_k a_k \left(H_t e^{-jk\omega} - e^{-j(N-k)\omega}\right) = e^{-jN\omega} - H_t,

    solved in weighted least squares, then re-solved with weights divided by :math:`|A|^2` of the
    previous solution (which turns the equation error into the true error to first order).

    Parameters
    ----------
    w : ndarray, shape (F,)
        Digital frequencies (rad/sample).
    response : ndarray, shape (F,)
        Target response :math:`H_t` (unit magnitude).
    order : int
        Allpass order N.
    weights : ndarray, shape (F,)
        Non-negative weights.
    n_iter : int
        Number of reweighted solves.

    Returns
    -------
    a : ndarray, shape (order,)
        Coefficients of :math:`A(z) = 1 + a_1 z^{-1} + \dots + a_N z^{-N}`.
    """
    basis = np.exp(-1j * np.outer(np.arange(order + 1), w))  # e^{-jkw}, k = 0..N (rows)
    return _equation_error(basis, response, order, weights, n_iter=n_iter)


def _equation_error(basis, response, order, weights, *, n_iter):
    """`equation_error_denominator` on a precomputed basis ``exp(-j w k)``, shape (k = 0..>=order, F)."""
    e_k = basis[1 : order + 1]
    matrix = response * e_k - basis[order - 1 :: -1][:order]  # rows: unknowns, columns: frequencies
    rhs = basis[order] - response
    row_weight2 = weights
    a = np.zeros(order)
    for _ in range(n_iter):
        # Real unknowns: the normal equations are Re(M^H W M) a = Re(M^H W r) (fast, N x N).
        # einsum over contiguous frequency rows: the summation order the designs (and so the effect
        # table) were measured with; BLAS's matmul rounds differently and the search then picks other
        # starts by a hair.
        weighted = matrix.conj() * row_weight2
        normal = np.real(np.einsum("if,jf->ij", weighted, matrix))
        rhs_normal = np.real(np.einsum("if,f->i", weighted, rhs))
        # A tiny ridge keeps ill-conditioned systems (clustered poles) solvable; the gradient
        # polish that follows removes the bias it adds.
        ridge = 1e-16 * np.trace(normal) / order
        try:
            a = np.linalg.solve(normal + ridge * np.eye(order), rhs_normal)
        except np.linalg.LinAlgError:
            a = np.zeros(order)
        row_weight2 = weights / np.maximum(np.abs(1.0 + np.einsum("kf,k->f", e_k, a)), 1e-6) ** 2
    return a


def equation_error_phase_loss(freqs, target, *, fs, weights, order, shifts=(0,), max_bins=2048):
    r"""Phase loss of the best unpolished equation-error allpass design of one order (a cheap probe).

    For every integer shift s in `shifts` and both polarities, M. Lang's equation-error method
    (`equation_error_denominator`, two reweighted solves) designs an allpass
    :math:`z^{-N} A(z^{-1})/A(z)` of order N = `order` for the target with the delay :math:`z^{-s}`
    taken out; its exact phase :math:`-(N + s)\omega - 2\arg A(e^{j\omega}) + \pi [\text{inverted}]`
    (its roots wherever they are: a root outside the unit circle is an anticausal section) is scored
    with `apfdsp.losses.phase_loss`. Nothing is polished: the value estimates what a fit of that order
    can reach, to decide whether more sections are worth a fit.

    Parameters
    ----------
    freqs, target, weights : array_like, shape (F,)
        Frequencies (Hz), target phase (rad) or complex response, non-negative weights.
    fs : float
        Sample rate in Hz.
    order : int
        Allpass order N.
    shifts : sequence of int
        Integer delays (samples) tried.
    max_bins : int
        Longer grids are sampled (every k-th bin, not averaged: averaging would lose a phase that
        turns quickly, as that of an allpass comb does) down to at most this many bins.

    Returns
    -------
    loss : float
        The lowest loss over shifts and polarities (on the sampled grid).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import signal
    >>> f = np.linspace(10, 23990, 4000)
    >>> _, h = signal.freqz(np.r_[0.6, np.zeros(22), 1.0], np.r_[1.0, np.zeros(22), 0.6], worN=f, fs=48000)
    >>> bool(equation_error_phase_loss(f, h, fs=48000, weights=np.ones_like(f), order=23) < 1e-12)
    True
    """
    freqs = np.asarray(freqs, dtype=float)
    target = np.asarray(target)
    target_phase = np.angle(target) if np.iscomplexobj(target) else np.asarray(target, dtype=float)
    weights = np.asarray(weights, dtype=float)
    order = valid_int(order, "order", minimum=1)
    step = max(1, -(-freqs.size // valid_int(max_bins, "max_bins", minimum=order + 1)))
    freqs, target_phase, weights = freqs[::step], target_phase[::step], weights[::step]
    w = 2 * np.pi * freqs / valid_fs(fs)
    basis = np.exp(-1j * np.outer(w, np.arange(order + 1)))
    best = np.inf
    for shift in shifts:
        residual = np.exp(1j * (target_phase + w * shift))
        for polarity in (1, -1):
            a = _real_equation_error(basis, polarity * residual, order, weights)
            phase = -(order + shift) * w - 2 * np.angle(basis @ np.r_[1.0, a]) + np.pi * (polarity < 0)
            best = min(best, float(phase_loss(phase, target_phase, weights)))
    return best


def _real_equation_error(basis, response, order, weights, n_iter=2):
    """`_equation_error` with its normal equations as real matrix products (BLAS; for long grids and
    high orders, where the einsum of `_equation_error` is slow)."""
    matrix = response[:, None] * basis[:, 1 : order + 1] - basis[:, order - 1 :: -1][:, :order]
    rhs = basis[:, order] - response
    stacked = np.concatenate([matrix.real, matrix.imag])
    stacked_rhs = np.concatenate([rhs.real, rhs.imag])
    row_weight = weights
    a = np.zeros(order)
    for _ in range(n_iter):
        weighted = stacked * np.tile(row_weight, 2)[:, None]
        normal = weighted.T @ stacked
        ridge = 1e-16 * np.trace(normal) / order
        try:
            a = np.linalg.solve(normal + ridge * np.eye(order), weighted.T @ stacked_rhs)
        except np.linalg.LinAlgError:
            a = np.zeros(order)
        row_weight = weights / np.maximum(np.abs(1.0 + basis[:, 1 : order + 1] @ a), 1e-6) ** 2
    return a


def _sections_from_poles(poles, *, fs, r_max):
    """Split poles into second-order (R, fc, 0) triples (complex pairs) and first-order coefs (real).

    Poles outside the unit circle are reflected inside (1/conj(p)); the returned flags (second-order
    ones first, then first-order) say which were outside. An allpass with a pole p outside the circle
    has, on the circle, the conjugate response of the stable section with pole 1/conj(p) (times a
    unit constant that cancels over a conjugate pair): an anticausal section realises it exactly, a
    causal one with the opposite phase.
    """
    outside = np.abs(poles) >= 1
    poles = poles.copy()
    poles[outside] = 1.0 / np.conj(poles[outside])
    radius = np.minimum(np.abs(poles), r_max**2)  # at most half the longest decay
    angle = np.angle(poles)
    pair = poles.imag > 1e-9
    real = np.abs(poles.imag) <= 1e-9
    sections2 = [(r, abs(a) * fs / (2 * np.pi), 0.0) for r, a in zip(radius[pair], angle[pair])]
    coefs1 = [-np.sign(p.real) * r for r, p in zip(radius[real], poles[real])]
    return sections2, coefs1, [bool(o) for o in outside[pair]] + [bool(o) for o in outside[real]]


def _low_group_delay(w, target_phase, weights):
    """A low percentile (10 %) of the target's group delay over the well-weighted bins, in samples."""
    tau = -np.gradient(np.unwrap(target_phase), w)
    good = weights >= 0.1 * np.max(weights)
    return float(np.percentile(tau[good], 10)) if np.count_nonzero(good) > 2 else 0.0


def _group_delay_peaks(w, target_phase, weights, n_sections, *, fs, r_max):
    """Second-order sections on the largest peaks of the target's group delay."""
    unwrapped = np.unwrap(target_phase)
    tau = -np.gradient(unwrapped, w)
    tau = tau - np.min(tau[weights > 0]) if np.any(weights > 0) else tau
    tau = np.where(weights > 0, tau, 0.0)
    peaks, props = signal.find_peaks(tau, prominence=0.5)
    order = np.argsort(props["prominences"])[::-1][:n_sections]
    sections = []
    for i in peaks[order]:
        radius = np.clip((tau[i] - 1.0) / (tau[i] + 1.0), 0.1, r_max**10)
        sections.append((radius, w[i] * fs / (2 * np.pi), 0.0))
    return sections


# -- the fit --------------------------------------------------------------------------------------


class _Problem:
    """The data of one fit: grid, target, weights and the loss of a layout."""

    def __init__(self, w, target_phase, weights, parameterization, optimizer, n_iter, lr):
        self.w, self.target_phase, self.weights = w, target_phase, weights
        self.parameterization = parameterization
        self.optimizer, self.n_iter, self.lr = optimizer, n_iter, lr

    def loss_fn(self, layout):
        const = layout.const_phase(self.w)
        forward = self.parameterization.forward

        def loss(params):
            return phase_loss(layout.phase(forward(params), self.w, const), self.target_phase, self.weights)

        return loss

    def value(self, layout, t):
        const = layout.const_phase(self.w)
        return cascade_phase_loss(layout, t, self.w, const, self.target_phase, self.weights, gradient=False)

    def polish(self, layout, t, *, n_iter, rng):
        """Optimise from t; return (t, loss, history)."""
        if layout.n_units == 0:
            return t, self.value(layout, t), np.array([self.value(layout, t)])
        params = self.parameterization.init(t, rng=rng)
        loss = self.loss_fn(layout)
        if self.optimizer == "lbfgs":
            # Direct parameters: the hand-written gradient (same values, no tracing overhead).
            by_hand = None if not isinstance(self.parameterization, Direct) else direct_loss_and_grad(
                layout, self.w, layout.const_phase(self.w), self.target_phase, self.weights)
            params, history = lbfgs(loss, params, max_iter=n_iter, loss_and_grad=by_hand)
        else:
            params, history = adam(loss, params, n_iter=n_iter, lr=self.lr, schedule=cosine_schedule(n_iter))
            if self.optimizer == "adam+lbfgs":
                params, more = lbfgs(loss, params, max_iter=n_iter)
                history = np.concatenate([history, more])
        t = np.asarray(self.parameterization.forward(params))
        return t, self.value(layout, t), history


@single_threaded_blas
def fit_phase(
    freqs,
    target,
    *,
    fs,
    weights=None,
    structure="warped",
    n_sections=8,
    stretch=5,
    polarity="auto",
    delay=None,
    parameterization="direct",
    optimizer="lbfgs",
    delay_search=2,
    min_delay=None,
    n_random=2,
    n_keep=3,
    max_iter=300,
    lr=0.02,
    ranges=DEFAULT_RANGES,
    prune=True,
    anticausal=False,
    seed=0,
    callback=None,
):
    r"""Fit an allpass cascade to a target phase response.

    Parameters
    ----------
    freqs : array_like, shape (F,)
        Frequencies in Hz, in [0, fs/2].
    target : array_like, shape (F,)
        Target phase in radians (wrapped or not), or a complex response (only its phase is used).
    fs : float
        Sample rate in Hz.
    weights : array_like, shape (F,), optional
        Non-negative weight per frequency (e.g. cross power x coherence); uniform when None.
    structure : {"warped", "traditional", "stretched"}
        Second-order section type. ``"warped"`` (default) adds a warp to each section;
        ``"stretched"`` uses warped sections in :math:`z^{-K}`, K = `stretch`.
        First-order sections are always available (traditional: warping a first-order section only
        re-parameterises its coefficient).
    n_sections : int
        Largest number of second-order sections; first-order sections count as half a section, and
        one more first-order section is allowed (total order up to ``2 * n_sections + 1``). The fit
        may use fewer.
    stretch : int
        K for ``structure="stretched"``.
    polarity : {"auto", 1, -1}
        Try both polarities, or fix one.
    delay : float, optional
        Starting value in samples of a delay to fit together with the sections (its fractional part
        is fitted as a Thiran section). The starts also try shorter integer delays, whose difference
        the allpass sections then carry, but never below `min_delay`. None: no delay term.
    parameterization : {"direct", "mlp", "shared-mlp"} or object
        How the optimiser sees the parameters (see `apfdsp.model`).
    optimizer : {"lbfgs", "adam", "adam+lbfgs"}
        Local optimiser used to polish every start.
    delay_search : int
        With `delay`: the equation-error starts also try integer delays up to this many samples
        shorter than `delay` (a dispersive effect biases delay estimates upwards), and for each
        order N one about N samples shorter.
    min_delay : float, optional
        Smallest integer shift (samples) the fit may use (the fractional delay unit adds 0.5 to 1.5
        samples to it); default ``min(round(delay) - 1, 0)``, so that a causal delay gives a causal
        model that can be streamed.
    n_random : int
        Number of random starts (in addition to the equation-error and group-delay starts).
    n_keep : int
        Number of equation-error starts polished (the best ones before polishing).
    max_iter : int
        Iterations per polish (the winner gets another `max_iter`).
    lr : float
        Adam learning rate (Adam only).
    ranges : ParamRanges
        Parameter ranges (pole radius limit, pole frequency range, ...).
    prune : bool
        Remove sections whose removal does not worsen the fit, and turn sections that have collapsed
        into pure delays into integer delays.
    anticausal : bool
        Allow anticausal sections (run backwards in time, offline only; see `apfdsp.Allpass2`). The
        equation-error design then keeps its poles outside the unit circle as anticausal sections
        instead of reflecting them into causal ones. A causal allpass has a positive group delay and
        a phase that starts at 0 or pi: a first-order high-pass (phase pi/2 at low frequencies) or a
        peaking EQ (negative group delay beside the peak) is out of its reach, and a mixed
        causal/anticausal cascade follows such phases closely.
    seed : int
        Seed of every random choice: the fit is deterministic for a given seed.
    callback : callable, optional
        ``callback(stage, done, total)`` for progress displays.

    Returns
    -------
    FitResult

    Raises
    ------
    ParameterError
        For a bad value of any parameter.

    Notes
    -----
    The loss is :math:`\sum_f w (1 - \cos(\phi(f) - \phi_t(f))) / \sum_f w`
    (`apfdsp.losses.phase_loss`), the frequency-domain form of the paper's sum-magnitude loss [1]_.
    The phase :math:`\phi` is the exact phase of the cascade (`apfdsp.filters.allpass_phase`); its
    gradient comes from autograd.

    The defaults (direct parameters and L-BFGS, equation-error starts of every order, two random
    starts, warped sections) were chosen from the measurements of ``benchmarks/compare_structures.py``
    (README, "Structure comparison"): on exact targets the equation-error start makes the fit exact,
    and on estimated targets L-BFGS on direct parameters reaches the same or lower loss than Adam on
    the sinusoidal MLP in a fraction of the time.

    References
    ----------
    .. [1] A. R. Bargum et al., "Differentiable Allpass Filters for Phase Response Estimation and
       Automatic Signal Alignment", DAFx 2023, arXiv:2306.00860.
    .. [2] M. Lang, "Allpass filter design and applications", IEEE Trans. Signal Processing 46(9), 1998.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import AllpassCascade, Allpass2
    >>> truth = AllpassCascade([Allpass2(0.9, 300.0), Allpass2(0.7, 4000.0)], fs=48000)
    >>> f = np.geomspace(20, 20000, 512)
    >>> result = fit_phase(f, truth.phase(f), fs=48000, n_sections=4)
    >>> bool(result.phase_error_rad < 1e-6)
    True
    """
    start_time = time.perf_counter()
    fs = valid_fs(fs)
    freqs = np.asarray(freqs, dtype=float)
    if freqs.ndim != 1 or freqs.size < 2 or np.any(~np.isfinite(freqs)) or np.any(freqs < 0) or np.any(freqs > fs / 2):
        raise ParameterError(f"freqs must be a 1-D array of at least 2 frequencies in [0, fs/2 = {fs / 2:g}] Hz")
    target = np.asarray(target)
    if target.shape != freqs.shape:
        raise ParameterError(f"target must have the shape of freqs {freqs.shape}, got {target.shape}")
    if not np.all(np.isfinite(target)):
        raise ParameterError("target contains NaN or Inf")
    target_phase = np.angle(target) if np.iscomplexobj(target) else target.astype(float)
    if weights is None:
        weights = np.ones_like(freqs)
    weights = np.asarray(weights, dtype=float)
    if weights.shape != freqs.shape or np.any(~np.isfinite(weights)) or np.any(weights < 0) or not np.any(weights > 0):
        raise ParameterError("weights must be finite, non-negative, of the shape of freqs, and not all zero")
    weights = weights / np.max(weights)
    if structure not in STRUCTURES:
        raise ParameterError(f"structure must be one of {STRUCTURES}, got {structure!r}")
    n_sections = valid_int(n_sections, "n_sections", minimum=1, maximum=64)
    stretch = valid_int(stretch, "stretch", minimum=1, maximum=64)
    if polarity not in ("auto", 1, -1):
        raise ParameterError(f"polarity must be 'auto', 1 or -1, got {polarity!r}")
    if optimizer not in ("lbfgs", "adam", "adam+lbfgs"):
        raise ParameterError(f"optimizer must be 'lbfgs', 'adam' or 'adam+lbfgs', got {optimizer!r}")
    n_random = valid_int(n_random, "n_random", minimum=0)
    delay_search = valid_int(delay_search, "delay_search", minimum=0)
    n_keep = valid_int(n_keep, "n_keep", minimum=0)
    max_iter = valid_int(max_iter, "max_iter", minimum=1)
    if not isinstance(anticausal, (bool, np.bool_)):
        raise ParameterError(f"anticausal must be True or False, got {anticausal!r}")
    if delay is not None and (not np.isfinite(delay)):
        raise ParameterError(f"delay must be a finite number of samples or None, got {delay!r}")
    if not isinstance(ranges, ParamRanges):
        raise TypeError(f"ranges must be a ParamRanges, got {type(ranges).__name__}")
    ranges.fc_limits(fs)
    param = get_parameterization(parameterization)
    rng = np.random.default_rng(seed)

    w = 2 * np.pi * freqs / fs
    problem = _Problem(w, target_phase, weights, param, optimizer, max_iter, lr)
    polarities = (1, -1) if polarity == "auto" else (polarity,)
    delay_shift = None if delay is None else int(np.round(delay)) - 1
    frac = None if delay is None else float(delay) - delay_shift
    if delay is not None and min_delay is not None and delay_shift < np.ceil(max(min_delay, -1e9)):
        # The estimate itself would break the bound: start from the smallest allowed delay.
        delay_shift, frac = int(np.ceil(min_delay)), 1.0
    base = _Layout(0, 0, structure, stretch, 1, delay_shift, ranges, fs)
    # Delay candidates (integer shift, fractional start) for the equation-error starts: a dispersive
    # target biases a delay estimate upwards, and an allpass can add delay but never remove it.
    max_order = 2 * n_sections + 1
    tau_shift = None
    if delay is None:
        delay_candidates = {order: [(None, 0.0)] for order in range(1, max_order + 1)}
    else:
        # An allpass of order N has a mean group delay of N samples, so each order is also tried
        # with the bulk delay reduced by about N (the allpass then carries that delay itself).
        # Shifts stay >= the lowest allowed: a causal delay estimate gives a causal (streamable) model.
        if min_delay is None:
            lowest = min(delay_shift, 0)
        else:
            lowest = int(np.ceil(max(min_delay, -1e9)))
        # The pure delay is at most the smallest group delay of the target (an allpass only adds
        # delay), so the shifts from there up to the estimate are tried as well.
        tau_low = _low_group_delay(w, target_phase, weights)
        tau_shift = max(int(np.floor(min(tau_low, delay))) - 1, lowest)
        first = tau_shift - delay_search
        span = list(range(max(first, lowest), delay_shift))
        step = max(1, len(span) // 12)
        shifts = set(span[::-1][::step] + span[-delay_search:] + [tau_shift]) - {delay_shift}
        near = [(delay_shift, frac)] + [(shift, 1.0) for shift in sorted(shifts)]
        delay_candidates = {
            order: [(shift, f) for shift, f in near if shift >= lowest]
            + [(delay_shift + j - order, 1.0) for j in (1, 2)
               if j - order < -delay_search and delay_shift + j - order >= lowest]
            for order in range(1, max_order + 1)
        }
    # Equation-error starts on a warped frequency axis too (warped structure): a warp lambda moves
    # the resolution of a low-order design to low (lambda < 0) or high (lambda > 0) frequencies, and
    # its poles are directly those of warped sections with warp = lambda.
    warps = (0.0,) + (_START_WARPS if structure == "warped" else ())

    starts = []  # (kind, layout, t)
    if structure != "stretched":
        scored = []
        for lam in warps:
            theta = warped_frequency(w, lam)
            basis = np.exp(-1j * np.outer(np.arange(max_order + 1), theta))  # rows k = 0..max_order
            for order, candidates in delay_candidates.items():
                if lam != 0.0:  # the warped families try the estimate and the group-delay floor only
                    candidates = candidates[:1] + [c for c in candidates[1:] if c[0] == tau_shift]
                for shift, frac_start in candidates:
                    residual = np.exp(1j * (target_phase + w * ((shift or 0) + frac_start * (shift is not None))))
                    for pol in polarities:
                        a = _equation_error(basis, pol * residual, order, weights, n_iter=2)
                        sections2, coefs1, outside = _sections_from_poles(
                            np.roots(np.r_[1.0, a]), fs=fs, r_max=ranges.radius_limit(fs))
                        usable = [fc > ranges.fc_min_hz for _, fc, _ in sections2] + [True] * len(coefs1)
                        sections2 = [(r, fc, lam) for r, fc, _ in sections2 if fc > ranges.fc_min_hz]
                        coefs1 = [(c + lam) / (1.0 + c * lam) for c in coefs1]  # warped 1st order -> plain
                        flags = tuple(o for o, u in zip(outside, usable) if u) if anticausal else ()
                        layout = base.replace(n2=len(sections2), n1=len(coefs1), polarity=pol, delay_shift=shift)
                        if 2 * layout.n2 + layout.n1 > max_order:
                            continue
                        t = layout.t_from(sections2, coefs1, frac_start)
                        # The reflected (all causal) design is scored too: it is sometimes the better start.
                        variants = [layout] + ([layout.replace(anticausal=flags)] if any(flags) else [])
                        for variant in variants:
                            scored.append((problem.value(variant, t), order, pol, variant, t))
        # Best first; among practically equal losses the lower order first (no wasted sections).
        # Losses below _LOSS_RESOLUTION are rounding noise: equal, so the order and the start order decide.
        scored.sort(key=lambda item: max(item[0], _LOSS_RESOLUTION) * (1.0 + 0.05 * item[1]) + 1e-13 * item[1])
        for value, order, pol, layout, t in scored[:n_keep]:
            starts.append(("equation-error", layout, t))
    peaks = _group_delay_peaks(w, target_phase, weights, n_sections, fs=fs, r_max=ranges.radius_limit(fs))
    if peaks:
        layout = base.replace(n2=len(peaks))
        starts.append(("group-delay", layout, layout.t_from(peaks, [], frac or 1.0)))
    lo, hi = max(freqs[weights > 0].min(), ranges.fc_min_hz), min(freqs[weights > 0].max(), ranges.fc_limits(fs)[1])
    for _ in range(max(n_random, 0 if starts else 1)):  # no start from the designs: one random start
        n2 = n_sections
        radius = rng.uniform(0.3, 0.95, n2)
        fc = np.exp(rng.uniform(np.log(lo), np.log(hi), n2))
        layout = base.replace(n2=n2)
        starts.append(("random", layout, layout.t_from(list(zip(radius, fc, np.zeros(n2))), [], frac or 1.0)))
    # Starts other than equation-error get the better of the two polarities.
    resolved = []
    for kind, layout, t in starts:
        if kind != "equation-error":
            options = [layout.replace(polarity=p) for p in polarities]
            layout = min(options, key=lambda lay: problem.value(lay, t))
        resolved.append((kind, layout, t))

    # Stage 1: a short polish of every start. Stage 2: the best few get the full budget.
    tried, polished = [], []
    short_iter = max(1, max_iter // 4)
    for i, (kind, layout, (t_fit, value, history)) in enumerate(
            _polish_starts(problem, resolved, n_iter=short_iter, rng=rng)):
        if callback is not None:
            callback("polish", i, len(resolved) + 1)
        tried.append({"kind": kind, "n_sections": layout.n2 + layout.n1, "polarity": layout.polarity, "loss": value})
        polished.append((value, layout, t_fit, history, kind))
        if value < _EXACT:
            break  # exact fit (noise-free target): nothing can beat it
    polished.sort(key=lambda item: item[0])
    best = None
    for value, layout, t, history, kind in polished[:_N_FINALISTS]:
        if value >= _EXACT:
            t, value, more = problem.polish(layout, t, n_iter=max_iter, rng=rng)
            history = np.concatenate([history, more])
        if best is None or _better(value, layout, best[0], best[1]):
            best = (value, layout, t, history, kind)
    value, layout, t, history, kind = best
    if callback is not None:
        callback("refine", len(resolved), len(resolved) + 1)
    if prune:
        layout, t, value = _prune(problem, layout, t, value, rng=rng, max_iter=max_iter)
    cells = layout.cells(t)
    if prune:
        cells = _collapse_delays(cells, fs=fs)
    cascade = AllpassCascade(cells, fs=fs)
    model_phase = cascade.phase(freqs)
    settings = {
        "structure": structure, "n_sections": n_sections, "stretch": stretch, "polarity": polarity,
        "delay": delay, "delay_search": delay_search, "min_delay": min_delay, "parameterization": param.name, "optimizer": optimizer, "n_random": n_random,
        "n_keep": n_keep, "max_iter": max_iter, "lr": lr, "ranges": ranges.to_dict(), "prune": prune,
        "anticausal": bool(anticausal), "seed": seed,
    }
    if callback is not None:
        callback("done", len(resolved) + 1, len(resolved) + 1)
    return FitResult(
        cascade=cascade,
        loss=float(phase_loss(model_phase, target_phase, weights)),
        phase_error_rad=wrapped_phase_error(model_phase, target_phase, weights),
        loss_history=history,
        elapsed_s=time.perf_counter() - start_time,
        start=kind,
        starts=tried,
        settings=settings,
    )


def _polish_starts(problem, starts, *, n_iter, rng):
    """Yield (kind, layout, polish result) for each start, in order.

    With direct parameters a polish uses no random numbers, so after the first start (often exact on
    clean targets, which ends the search) the others are polished on two threads: numpy releases the
    GIL in the array arithmetic that dominates a polish. The results are those of polishing in order.
    """
    starts = list(starts)
    if not starts:
        return
    kind, layout, t = starts[0]
    yield kind, layout, problem.polish(layout, t, n_iter=n_iter, rng=rng)
    rest = starts[1:]
    if not isinstance(problem.parameterization, Direct) or len(rest) < 2 or _POLISH_THREADS < 2:
        for kind, layout, t in rest:
            yield kind, layout, problem.polish(layout, t, n_iter=n_iter, rng=rng)
        return
    with ThreadPoolExecutor(max_workers=_POLISH_THREADS) as pool:
        futures = [pool.submit(problem.polish, layout, t, n_iter=n_iter, rng=None) for _, layout, t in rest]
        try:
            for (kind, layout, _), future in zip(rest, futures):
                yield kind, layout, future.result()
        finally:
            for future in futures:
                future.cancel()


def _better(value, layout, best_value, best_layout):
    """Lower loss wins; a smaller model wins when the losses are practically equal."""
    size, best_size = layout.n2 * 2 + layout.n1, best_layout.n2 * 2 + best_layout.n1
    tolerance = 0.05 * best_value + 1e-12
    if size < best_size:
        return value <= best_value + tolerance
    if size > best_size:
        return value < best_value - tolerance
    return value < best_value


def _without(layout, t, index, *, snap):
    """Layout and parameters without unit `index`; with `snap`, its delay (an advance if the unit is
    anticausal) moves into the delay unit."""
    keep = np.ones(layout.n_units, bool)
    keep[index] = False
    is_second = index < layout.n2
    changes = {"n2": layout.n2 - is_second, "n1": layout.n1 - (not is_second)}
    flags = list(layout.anticausal)
    if flags:
        anticausal = flags.pop(index)
        changes["anticausal"] = tuple(flags) if any(flags) else ()
    else:
        anticausal = False
    if snap:
        changes["delay_shift"] = layout.delay_shift + (2 if is_second else 1) * (-1 if anticausal else 1)
    return layout.replace(**changes), t[keep]


def _near_delay(layout, t, index, tolerance=0.05):
    """Whether unit `index` is close to a pure delay (pole radius or coefficient near 0)."""
    r = layout.ranges
    if index < layout.n2:
        plain = layout.structure == "traditional" or abs(float(r.warp(t[index, 2]))) < tolerance
        return layout.structure != "stretched" and plain and float(r.pole_radius(t[index, 0], fs=layout.fs)) < tolerance
    return abs(float(r.coef(t[index, 0], fs=layout.fs))) < tolerance


def _prune(problem, layout, t, value, *, rng, max_iter):
    """Drop sections whose removal leaves the loss practically unchanged (then re-polish).

    A section that has collapsed into (nearly) a pure delay is removed and its delay moved into the
    delay unit, when there is one.
    """
    tolerance = 0.02 * value + 1e-10
    changed = True
    while changed and layout.n2 + layout.n1 > 0:
        changed = False
        for index in range(layout.n2 + layout.n1):
            candidates = [False]
            if layout.delay_shift is not None and _near_delay(layout, t, index):
                candidates.insert(0, True)
            for snap in candidates:
                smaller, t_small = _without(layout, t, index, snap=snap)
                if snap or problem.value(smaller, t_small) <= value + tolerance:
                    t_new, value_new, _ = problem.polish(smaller, t_small, n_iter=max_iter // 3, rng=rng)
                    if value_new <= value + tolerance:
                        layout, t, value, changed = smaller, t_new, min(value, value_new), True
                        break
            if changed:
                break
    return layout, t, value


def _collapse_delays(cells, *, fs, tolerance=1e-6):
    """Replace sections that are pure delays to within `tolerance` by integer delays."""
    out, extra = [], 0
    for cell in cells:
        sign = -1 if isinstance(cell, (Allpass1, Allpass2)) and cell.anticausal else 1
        if isinstance(cell, Allpass2) and cell.stretch == 1 and cell.warp == 0 and cell.pole_radius < tolerance:
            extra += 2 * sign
        elif isinstance(cell, Allpass1) and cell.stretch == 1 and abs(cell.coef) < tolerance:
            extra += sign
        else:
            out.append(cell)
    if extra:
        out.append(Delay(float(extra)))
    return out
