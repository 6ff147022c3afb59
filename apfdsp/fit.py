r"""Fit an allpass cascade to a phase response: `fit_phase`.

The fit is non-convex and local minima are the rule, so `fit_phase` runs several starts of different
kinds and keeps the best:

* ``"equation-error"``: M. Lang's linear least-squares allpass design for every order up to
  ``2 * n_sections + 1`` and both polarities (exact on noise-free allpass targets), iteratively reweighted;
* ``"group-delay"``: sections placed on the peaks of the target's group delay;
* ``"random"``: seeded random pole placements.

Each start is polished by gradient descent (L-BFGS or Adam) on the exact differentiable phase of the
cascade, the best is kept, and sections that do nothing are pruned (removed, or replaced by the exact
integer delay they have collapsed to). The designs are those of `apfdsp.designs`, the parameter map
`apfdsp.layout.Layout`, the loss `apfdsp.phase_objective`. Implements docs/maths.md section 8.
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ._validate import valid_bool, valid_fs, valid_int
from .cascade import Allpass1, Allpass2, AllpassCascade, Delay
from .designs import (DESIGN, denominator_roots, equation_error_allpass, equation_error_phase_loss,
                      group_delay_peaks, low_group_delay, sections_from_poles)
from .exceptions import ParameterError
from .filters import warped_frequency
from .layout import Layout
from .losses import phase_loss
from .metrics import weighted_phase_error
from .model import Direct, get_parameterization
from .optim import adam, cosine_schedule, lbfgs
from .phase_objective import PhaseGrid
from .ranges import DEFAULT_RANGES, ParamRanges
from .threads import single_threaded_blas

# equation_error_phase_loss lives in apfdsp.designs; it stays importable from here.
__all__ = ["fit_phase", "FitResult", "STRUCTURES", "equation_error_phase_loss"]

STRUCTURES = ("traditional", "warped", "stretched")
_EXACT = 1e-10  # loss of a practically exact fit (phase error ~1e-5 rad, null below -100 dB)
_N_FINALISTS = 2
# The equation-error designs are solved on this many threads: two, or one on a one-core machine.
_DESIGN_THREADS = min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
_LOSS_RESOLUTION = 1e-15  # rounding level of the loss (a sum of phasors of modulus 1 +- 1e-16)


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

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import Allpass2, AllpassCascade
    >>> f = np.geomspace(20, 20000, 256)
    >>> result = fit_phase(f, AllpassCascade([Allpass2(0.8, 1000.0)], fs=48000).phase(f), fs=48000, n_sections=2)
    >>> result.start, len(result.cascade), bool(result.loss < 1e-10)
    ('equation-error', 1, True)
    """

    cascade: AllpassCascade
    loss: float
    phase_error_rad: float
    loss_history: np.ndarray
    elapsed_s: float
    start: str
    starts: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)


# -- the fit --------------------------------------------------------------------------------------


class _Problem:
    """The data of one fit (grid, target, weights, parameterisation, optimiser): the loss of a layout,
    and the polish of a start."""

    def __init__(self, w, target_phase, weights, parameterization, optimizer, lr):
        self.w, self.target_phase, self.weights = w, target_phase, weights
        self.grid = PhaseGrid(w, target_phase, weights)
        self.parameterization = parameterization
        self.optimizer, self.lr = optimizer, lr

    def loss_fn(self, layout):
        """The loss of `layout` as a function of the parameterisation's parameters (autograd-traceable)."""
        const = layout.const_phase(self.w)
        forward = self.parameterization.forward

        def loss(params):
            return phase_loss(layout.phase(forward(params), self.w, const), self.target_phase, self.weights)

        return loss

    def value(self, layout, t):
        """The loss of `layout` with normalised parameters `t`."""
        return self.grid.loss(layout, t, gradient=False)

    def values(self, starts):
        """The losses of the ``(layout, t)`` pairs `starts`, those of one shape evaluated together."""
        groups = {}  # shape -> indices into starts
        for index, (layout, _) in enumerate(starts):
            groups.setdefault((layout.n2, layout.n1, layout.delay_shift is None), []).append(index)
        values = np.empty(len(starts))
        for indices in groups.values():
            values[indices] = self.grid.losses([starts[i][0] for i in indices], [starts[i][1] for i in indices])
        return values

    def polish(self, layout, t, *, n_iter, rng):
        """Optimise from t; return (t, loss, history)."""
        if layout.n_units == 0:
            return t, self.value(layout, t), np.array([self.value(layout, t)])
        params = self.parameterization.init(t, rng=rng)
        loss = self.loss_fn(layout)
        if self.optimizer == "lbfgs":
            # Direct parameters: the hand-written gradient (same values, no tracing overhead).
            by_hand = self.grid.direct_objective(layout) if isinstance(self.parameterization, Direct) else None
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
    gradient is computed by hand (`apfdsp.phase_objective`) for direct parameters, by autograd otherwise.

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
    spec = _check_arguments(freqs, target, fs=fs, weights=weights, structure=structure, n_sections=n_sections,
                            stretch=stretch, polarity=polarity, delay=delay, parameterization=parameterization,
                            optimizer=optimizer, delay_search=delay_search, min_delay=min_delay, n_random=n_random,
                            n_keep=n_keep, max_iter=max_iter, lr=lr, ranges=ranges, prune=prune,
                            anticausal=anticausal, seed=seed)
    rng = np.random.default_rng(seed)
    w = 2 * np.pi * spec.freqs / spec.fs
    problem = _Problem(w, spec.target_phase, spec.weights, spec.parameterization, optimizer, lr)
    delay_shift, frac = _delay_start(delay, min_delay)
    base = Layout(0, 0, structure, spec.stretch, 1, delay_shift, ranges, spec.fs)
    starts = []
    if structure != "stretched":
        candidates, tau_shift = _delay_candidates(w, spec.target_phase, spec.weights, delay=delay, min_delay=min_delay,
                                                  delay_search=spec.delay_search, n_sections=spec.n_sections)
        starts += _equation_error_starts(problem, base, candidates, tau_shift=tau_shift, polarities=spec.polarities,
                                         anticausal=anticausal, n_keep=spec.n_keep)
    starts += _group_delay_start(problem, base, spec.n_sections, frac)
    n_random = max(spec.n_random, 0 if starts else 1)  # no start from the designs: one random start
    starts += _random_starts(rng, base, spec.freqs, spec.weights, spec.n_sections, frac, n_random)
    starts = _best_polarity(problem, starts, spec.polarities)
    tried, best = _polish_and_select(problem, starts, max_iter=spec.max_iter, rng=rng, callback=callback)
    value, layout, t, history, kind = best
    if callback is not None:
        callback("refine", len(starts), len(starts) + 1)
    if prune:
        layout, t, value = _prune(problem, layout, t, value, rng=rng, max_iter=spec.max_iter)
    cells = layout.cells(t)
    if prune:
        cells = _collapse_delays(cells, fs=spec.fs)
    result = _assemble_result(AllpassCascade(cells, fs=spec.fs), spec, history=history, kind=kind, tried=tried,
                              start_time=start_time)
    if callback is not None:
        callback("done", len(starts) + 1, len(starts) + 1)
    return result


@dataclass(frozen=True)
class _FitSpec:
    """The checked arguments of one `fit_phase` call (the others are used as given)."""

    freqs: np.ndarray
    target_phase: np.ndarray
    weights: np.ndarray  # normalised to a maximum of 1
    fs: float
    n_sections: int
    stretch: int
    polarities: tuple
    n_random: int
    delay_search: int
    n_keep: int
    max_iter: int
    parameterization: object
    settings: dict  # JSON-safe, for `FitResult.settings`


def _check_arguments(freqs, target, *, fs, weights, structure, n_sections, stretch, polarity, delay,
                     parameterization, optimizer, delay_search, min_delay, n_random, n_keep, max_iter, lr, ranges,
                     prune, anticausal, seed):
    """Check the arguments of `fit_phase` (raising `ParameterError` in its terms); return a `_FitSpec`."""
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
    anticausal = valid_bool(anticausal, "anticausal")
    if delay is not None and (not np.isfinite(delay)):
        raise ParameterError(f"delay must be a finite number of samples or None, got {delay!r}")
    if not isinstance(ranges, ParamRanges):
        raise TypeError(f"ranges must be a ParamRanges, got {type(ranges).__name__}")
    ranges.fc_limits(fs)
    param = get_parameterization(parameterization)
    settings = {
        "structure": structure, "n_sections": n_sections, "stretch": stretch, "polarity": polarity,
        "delay": delay, "delay_search": delay_search, "min_delay": min_delay, "parameterization": param.name,
        "optimizer": optimizer, "n_random": n_random, "n_keep": n_keep, "max_iter": max_iter, "lr": lr,
        "ranges": ranges.to_dict(), "prune": prune, "anticausal": bool(anticausal), "seed": seed,
    }
    return _FitSpec(freqs, target_phase, weights, fs, n_sections, stretch, (1, -1) if polarity == "auto" else (polarity,),
                    n_random, delay_search, n_keep, max_iter, param, settings)


def _delay_start(delay, min_delay):
    """(integer shift, fractional start) of the delay unit for a delay estimate; (None, None) without one.

    The unit realises ``shift + frac`` with ``frac`` in (0.5, 1.5); an estimate below `min_delay` starts
    from the smallest allowed shift.
    """
    if delay is None:
        return None, None
    delay_shift = int(np.round(delay)) - 1
    frac = float(delay) - delay_shift
    if min_delay is not None and delay_shift < np.ceil(max(min_delay, -1e9)):
        # The estimate itself would break the bound: start from the smallest allowed delay.
        delay_shift, frac = int(np.ceil(min_delay)), 1.0
    return delay_shift, frac


def _delay_candidates(w, target_phase, weights, *, delay, min_delay, delay_search, n_sections):
    """Delay candidates of the equation-error designs, per allpass order (docs/maths.md section 8.3).

    Returns ``({order: [(integer shift or None, fractional start), ...]}, tau_shift)`` for the orders
    1 to ``2 * n_sections + 1``, the estimate first; `tau_shift` is the shift of the target's group-delay
    floor (None without `delay`). A dispersive target biases a delay estimate upwards, and an allpass can
    add delay but never remove it, so shorter shifts are tried too, never below the lowest allowed.
    """
    max_order = 2 * n_sections + 1
    if delay is None:
        return {order: [(None, 0.0)] for order in range(1, max_order + 1)}, None
    delay_shift, frac = _delay_start(delay, min_delay)
    # Shifts stay >= the lowest allowed: a causal delay estimate gives a causal (streamable) model.
    lowest = min(delay_shift, 0) if min_delay is None else int(np.ceil(max(min_delay, -1e9)))
    # The pure delay is at most the smallest group delay of the target (an allpass only adds delay),
    # so the shifts from there up to the estimate are tried as well.
    tau_shift = max(int(np.floor(min(low_group_delay(w, target_phase, weights), delay))) - 1, lowest)
    span = list(range(max(tau_shift - delay_search, lowest), delay_shift))
    step = max(1, len(span) // 12)
    shifts = set(span[::-1][::step] + span[-delay_search:] + [tau_shift]) - {delay_shift}
    near = [(delay_shift, frac)] + [(shift, 1.0) for shift in sorted(shifts)]
    # An allpass of order N has a mean group delay of N samples, so each order is also tried with the
    # bulk delay reduced by about N (the allpass then carries that delay itself).
    candidates = {
        order: [(shift, f) for shift, f in near if shift >= lowest]
        + [(delay_shift + j - order, 1.0) for j in (1, 2)
           if j - order < -delay_search and delay_shift + j - order >= lowest]
        for order in range(1, max_order + 1)
    }
    return candidates, tau_shift


def _design_starts(base, poles, *, warp, polarity, shift, frac_start, anticausal, max_order):
    """(layout, t) starts of one equation-error design with roots `poles` on warp `warp`.

    The roots become sections (`apfdsp.designs.sections_from_poles`); pairs below the lowest pole
    frequency are dropped; the roots of a warped design are warped sections directly, and its real
    roots plain first-order coefficients (docs/maths.md sections 2.2 and 8.4). With `anticausal`, a design with
    roots outside the unit circle gives two starts: reflected (all causal) and with those sections
    anticausal. None when the design has more than `max_order` sections' worth of order.
    """
    ranges, fs = base.ranges, base.fs
    sections2, coefs1, outside = sections_from_poles(poles, fs=fs, r_max=ranges.radius_limit(fs))
    usable = [fc > ranges.fc_min_hz for _, fc, _ in sections2] + [True] * len(coefs1)
    sections2 = [(r, fc, warp) for r, fc, _ in sections2 if fc > ranges.fc_min_hz]
    coefs1 = [(c + warp) / (1.0 + c * warp) for c in coefs1]  # warped first order -> plain
    flags = tuple(o for o, u in zip(outside, usable) if u) if anticausal else ()
    layout = base.replace(n2=len(sections2), n1=len(coefs1), polarity=polarity, delay_shift=shift)
    if 2 * layout.n2 + layout.n1 > max_order:
        return []
    t = layout.t_from(sections2, coefs1, frac_start)
    # The reflected (all causal) design is scored too: it is sometimes the better start.
    return [(layout, t)] + ([(layout.replace(anticausal=flags), t)] if any(flags) else [])


def _equation_error_starts(problem, base, candidates, *, tau_shift, polarities, anticausal, n_keep):
    """The `n_keep` best equation-error starts ("equation-error", layout, t), before polishing.

    M. Lang's design (`apfdsp.designs.equation_error_allpass`) for every order and delay candidate of
    `_delay_candidates`, both polarities, and with ``base.structure == "warped"`` on the warped axes
    of `DESIGN.start_warps` too (those try the estimate and the group-delay floor only).
    Ranked by loss x (1 + `DESIGN.order_penalty` order) (docs/maths.md section 8.5). The designs of one order and warp
    are solved as one stack.
    """
    max_order = max(candidates)
    warps = (0.0,) + (DESIGN.start_warps if base.structure == "warped" else ())
    responses = {}  # (shift, frac_start, polarity) -> target with that delay and polarity taken out
    for shift, frac_start in dict.fromkeys(c for order_candidates in candidates.values() for c in order_candidates):
        total_delay = (shift or 0) + frac_start * (shift is not None)
        residual = np.exp(1j * (problem.target_phase + problem.w * total_delay))
        for polarity in polarities:
            responses[shift, frac_start, polarity] = polarity * residual
    jobs = []  # (basis, warp, order, keys): the designs of one order and warp, solved as one stack
    for warp in warps:
        theta = warped_frequency(problem.w, warp)
        basis = np.exp(-1j * np.outer(np.arange(max_order + 1), theta))  # rows k = 0..max_order
        for order, order_candidates in candidates.items():
            if warp != 0.0:
                order_candidates = order_candidates[:1] + [c for c in order_candidates[1:] if c[0] == tau_shift]
            keys = [(shift, frac_start, polarity) for shift, frac_start in order_candidates for polarity in polarities]
            if keys:
                jobs.append((basis, warp, order, keys))

    def scored_designs(job):
        basis, warp, order, keys = job
        designs = equation_error_allpass(basis, np.array([responses[key] for key in keys]), order, problem.weights)
        starts = [start for (shift, frac_start, polarity), poles in zip(keys, denominator_roots(designs))
                  for start in _design_starts(base, poles, warp=warp, polarity=polarity, shift=shift,
                                              frac_start=frac_start, anticausal=anticausal, max_order=max_order)]
        return [(value, order, layout, t) for value, (layout, t) in zip(problem.values(starts), starts)]

    # Each stack's arithmetic is the same on any thread, and the results are kept in job order.
    scored = [item for items in _map_in_order(scored_designs, jobs) for item in items]  # (loss, order, layout, t)
    # Best first; among practically equal losses the lower order first (no wasted sections).
    # Losses below _LOSS_RESOLUTION are rounding noise: equal, so the order and the start order decide.
    scored.sort(key=lambda item: max(item[0], _LOSS_RESOLUTION) * (1.0 + DESIGN.order_penalty * item[1])
                + DESIGN.order_tiebreak * item[1])
    return [("equation-error", layout, t) for _, _, layout, t in scored[:n_keep]]


def _group_delay_start(problem, base, n_sections, frac):
    """One start ("group-delay", layout, t) with sections on the target's group-delay peaks, or none."""
    peaks = group_delay_peaks(problem.w, problem.target_phase, problem.weights, n_sections, fs=base.fs,
                              r_max=base.ranges.radius_limit(base.fs))
    if not peaks:
        return []
    layout = base.replace(n2=len(peaks))
    return [("group-delay", layout, layout.t_from(peaks, [], frac or 1.0))]


def _random_starts(rng, base, freqs, weights, n_sections, frac, n_random):
    """`n_random` seeded random starts ("random", layout, t): R ~ U(0.3, 0.95), fc log-uniform over the
    weighted band (within the ranges)."""
    ranges = base.ranges
    lo = max(freqs[weights > 0].min(), ranges.fc_min_hz)
    hi = min(freqs[weights > 0].max(), ranges.fc_limits(base.fs)[1])
    layout = base.replace(n2=n_sections)
    starts = []
    for _ in range(n_random):
        radius = rng.uniform(0.3, 0.95, n_sections)
        fc = np.exp(rng.uniform(np.log(lo), np.log(hi), n_sections))
        starts.append(("random", layout, layout.t_from(list(zip(radius, fc, np.zeros(n_sections))), [], frac or 1.0)))
    return starts


def _best_polarity(problem, starts, polarities):
    """The starts, those other than equation-error with the better of the allowed polarities."""
    resolved = []
    for kind, layout, t in starts:
        if kind != "equation-error":
            options = [layout.replace(polarity=p) for p in polarities]
            layout = min(options, key=lambda lay: problem.value(lay, t))
        resolved.append((kind, layout, t))
    return resolved


def _polish_and_select(problem, starts, *, max_iter, rng, callback):
    """Stage 1: a short polish of every start (stopping at an exact fit); stage 2: the best
    `_N_FINALISTS` get the full budget. Returns (tried, (loss, layout, t, history, kind) of the best)."""
    tried, polished = [], []
    # One thread: a polish is hundreds of small array operations, and two threads contending for the GIL
    # between them were slower than one (measured in benchmarks/speed_memory.py).
    for i, (kind, layout, t) in enumerate(starts):
        t_fit, value, history = problem.polish(layout, t, n_iter=max(1, max_iter // 4), rng=rng)
        if callback is not None:
            callback("polish", i, len(starts) + 1)
        tried.append({"kind": kind, "n_sections": layout.n2 + layout.n1, "polarity": layout.polarity, "loss": value})
        polished.append((value, layout, t_fit, history, kind))
        if value < _EXACT:
            break  # exact fit (noise-free target): nothing can beat it
    polished.sort(key=lambda item: item[0])
    finalists = polished[:_N_FINALISTS]
    best = None
    for value, layout, t, history, kind in finalists:
        if value >= _EXACT:  # not yet exact: the full budget
            t, value, more = problem.polish(layout, t, n_iter=max_iter, rng=rng)
            history = np.concatenate([history, more])
        if best is None or _better(value, layout, best[0], best[1]):
            best = (value, layout, t, history, kind)
    return tried, best


def _assemble_result(cascade, spec, *, history, kind, tried, start_time):
    """The `FitResult` of a fitted cascade (loss and phase error on the fitting grid)."""
    model_phase = cascade.phase(spec.freqs)
    return FitResult(
        cascade=cascade,
        loss=float(phase_loss(model_phase, spec.target_phase, spec.weights)),
        phase_error_rad=weighted_phase_error(model_phase, spec.target_phase, spec.weights),
        loss_history=history,
        elapsed_s=time.perf_counter() - start_time,
        start=kind,
        starts=tried,
        settings=spec.settings,
    )


def _map_in_order(function, items):
    """``[function(item) for item in items]``, on `_DESIGN_THREADS` threads (numpy releases the GIL in the
    long einsums of the designs)."""
    if len(items) < 2 or _DESIGN_THREADS < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=_DESIGN_THREADS) as pool:
        return list(pool.map(function, items))


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
