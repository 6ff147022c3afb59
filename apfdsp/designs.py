r"""Classical allpass designs: M. Lang's equation error and Steiglitz-McBride (docs/maths.md sections 8 and 9).

The designs give the fits their starts: they solve linear least-squares problems instead of training.

* Frequency domain (docs/maths.md section 8): M. Lang's equation-error allpass design on a target
  response (`equation_error_allpass`, `equation_error_allpass_blas`), the probe
  `equation_error_phase_loss`, the roots of a stack of designs (`denominator_roots`), their split into
  sections (`sections_from_poles`) and the group-delay starts (`low_group_delay`, `group_delay_peaks`);
  their constants are the one table `DESIGN`. `apfdsp.fit.fit_phase` starts from them.
* Time domain (docs/maths.md section 9): `time_equation_error_starts` and `time_equation_error_ladder`
  design allpass cascades from the dry/wet samples themselves (equation error with instrumental
  variables, then Steiglitz-McBride iterations); their tuning constants are the one table
  `DESIGN`. `apfdsp.fit_audio` starts its training from them.

References
----------
.. [1] M. Lang, "Allpass filter design and applications", IEEE Trans. Signal Processing 46(9),
   pp. 2505-2514, 1998 (the linear equation-error formulation and its iterative reweighting).
.. [2] M. Lang and T. I. Laakso, "Simple and robust method for the design of allpass filters using
   least-squares phase error criterion", IEEE Trans. Circuits and Systems II 41(1), pp. 40-48, 1994.
"""

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

from ._validate import valid_fs, valid_int
from .cascade import AllpassCascade
from .exceptions import AudioError
from .layout import Layout
from .losses import phase_loss
from .metrics import null_depth_db

__all__ = ["DESIGN", "DesignConstants", "equation_error_allpass", "equation_error_allpass_blas",
           "equation_error_phase_loss", "denominator_roots", "sections_from_poles", "low_group_delay",
           "group_delay_peaks",
           "time_equation_error_starts", "time_equation_error_ladder",
           "null_on_audio", "warped_radius_bound", "time_allpass_probe_db"]


# -- frequency-domain designs (docs/maths.md section 8) -----------------------------------------------

@dataclass(frozen=True)
class DesignConstants:
    """The constants of the classical designs, frequency and time domain (one table; `DESIGN` is the instance used).

    Attributes
    ----------
    start_warps : tuple of float
        Warps of the extra equation-error designs of ``structure="warped"`` (besides 0), in frequency
        and in time: -0.8 resolves low frequencies, 0.5 high ones (docs/maths.md sections 8.4, 9.3).
    n_solves : int
        Reweighted least-squares solves per design (section 8.2).
    ridge : float
        Ridge of the normal equations, relative to their mean diagonal (section 8.1).
    min_denominator : float
        Floor of :math:`|A|` in the reweighting :math:`w / |A|^2`.
    real_root_tolerance : float
        A root with :math:`|\\mathrm{Im}\\,p|` at most this is real (a first-order section).
    section_decay_power : int
        Radii of designed sections are clipped to ``r_max ** section_decay_power`` (2: at most half
        the longest decay the ranges allow).
    low_delay_percentile : float
        `low_group_delay` is this percentile of the group delay ...
    low_delay_weight : float
        ... over the bins with at least this fraction of the largest weight.
    peak_prominence : float
        Smallest prominence (samples) of a group-delay peak that gets a section (`group_delay_peaks`).
    peak_radius_min : float
        Smallest pole radius of a group-delay start.
    peak_decay_power : int
        Largest pole radius of a group-delay start: ``r_max ** peak_decay_power``.
    max_rows, max_span, n_blocks, chunk, onset_level, iv_rcond, gain_iter, n_delays, n_warp_delays, \
    order_penalty, order_tiebreak, n_candidates, sm_iter, max_order, origin, warp_grid, exact_null_db
        The time-domain designs' constants (docs/maths.md section 9), each commented where it is declared.

    Examples
    --------
    >>> DESIGN.start_warps, DESIGN.n_solves, DESIGN.sm_iter
    ((-0.8, 0.5), 2, 3)
    """

    start_warps: tuple = (-0.8, 0.5)
    n_solves: int = 2
    ridge: float = 1e-16
    min_denominator: float = 1e-6
    real_root_tolerance: float = 1e-9
    section_decay_power: int = 2
    low_delay_percentile: float = 10.0
    low_delay_weight: float = 0.1
    peak_prominence: float = 0.5
    peak_radius_min: float = 0.1
    peak_decay_power: int = 10
    # -- time domain (section 9)
    max_rows: int = 2**16  # sample times per channel in the least-squares problems (section 9.1)
    max_span: int = 2**18  # the sample times lie within this many samples from the dry's onset
    n_blocks: int = 8  # more sample times than max_rows: this many evenly spaced blocks
    chunk: int = 8192  # rows of lagged samples formed at once (memory, not results)
    onset_level: float = 1e-3  # the dry's onset: its first sample above this fraction of its peak
    iv_rcond: float = 1e-13  # relative eigenvalue floor of the instruments' Gram matrix (section 9.2)
    gain_iter: int = 3  # alternations of gain and denominator in the screening solves (section 9.1)
    n_delays: int = 2  # bulk delays per (order, polarity) whose output error is computed (section 9.3)
    n_warp_delays: int = 3  # bulk delays of the warped designs
    order_penalty: float = 0.05  # ranking by error times 1 + order_penalty * order (sections 8.5, 9.4)
    order_tiebreak: float = 1e-13  # ... plus order_tiebreak * order: the lower order wins exact ties
    n_candidates: int = 4  # designs refined by Steiglitz-McBride and returned as starts
    sm_iter: int = 3  # Steiglitz-McBride iterations per design (section 9.4)
    max_order: int = 2 * 32 + 2  # highest allpass order (32 sections, the automatic order's largest)
    origin: float = 1e-5  # unwarped roots closer to z = 0 are one-sample delays (section 9.5)
    warp_grid: int = 401  # warps tried to bring a pair found without warping inside the ranges
    exact_null_db: float = -100.0  # a design whose null on the whole audio is below this is exact


#: The constants of the designs (and of `apfdsp.fit.fit_phase`'s and `apfdsp.fit_audio`'s starts).
DESIGN = DesignConstants()


def _solve_normal(normal, rhs_normal, order):
    """Solve the (stacked) ridge-regularised normal equations; a singular system gives a = 0."""
    ridge = DESIGN.ridge * np.trace(normal, axis1=-2, axis2=-1) / order
    system = normal + ridge[..., None, None] * np.eye(order)
    try:
        return np.linalg.solve(system, rhs_normal[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.zeros(rhs_normal.shape)
        for index in np.ndindex(rhs_normal.shape[:-1]):
            try:
                out[index] = np.linalg.solve(system[index], rhs_normal[index])
            except np.linalg.LinAlgError:
                pass
        return out


def equation_error_allpass(basis, response, order, weights, *, n_iter=DESIGN.n_solves):
    r"""Allpass denominator of order N by M. Lang's equation-error method, iteratively reweighted.

    For an allpass :math:`H = e^{-jN\omega}\,\overline{A(e^{j\omega})}/A(e^{j\omega})` the equation
    :math:`H_t A = e^{-jN\omega}\overline{A}` is linear in :math:`a_1 \dots a_N`:

    .. math:: \sum_k a_k \left(H_t e^{-jk\omega} - e^{-j(N-k)\omega}\right) = e^{-jN\omega} - H_t,

    solved in weighted least squares (real normal equations, a tiny ridge), then re-solved with the
    weights divided by :math:`|A|^2` of the previous solution, which turns the equation error into the
    true error to first order (docs/maths.md sections 8.1-8.2). Exact on a noise-free allpass target
    of order N.

    Parameters
    ----------
    basis : ndarray, shape (K + 1, F), K >= order
        :math:`e^{-jk\omega}` for k = 0..K (rows) on the grid (a warped grid designs warped sections).
    response : ndarray, shape (F,) or (B, F)
        Target response(s) :math:`H_t` of unit magnitude; a stack is solved at once.
    order : int
        Allpass order N.
    weights : ndarray, shape (F,)
        Non-negative weights.
    n_iter : int
        Number of reweighted solves.

    Returns
    -------
    a : ndarray, shape (order,) or (B, order)
        Coefficients of :math:`A(z) = 1 + a_1 z^{-1} + \dots + a_N z^{-N}`; zeros where the system is
        singular.

    Notes
    -----
    The normal equations are summed with `numpy.einsum` over the frequencies in order: a stack gives
    bit for bit the results of solving its members one by one (the fit's choice among starts depends
    on the last bit).

    References
    ----------
    M. Lang, "Allpass filter design and applications", IEEE Trans. Signal Processing 46(9), 1998.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import signal
    >>> w = np.linspace(0.01, 3.1, 500)
    >>> a_true = np.poly([0.9 * np.exp(0.5j), 0.9 * np.exp(-0.5j), -0.4]).real
    >>> _, h = signal.freqz(a_true[::-1], a_true, worN=w)
    >>> basis = np.exp(-1j * np.outer(np.arange(4), w))
    >>> bool(np.allclose(equation_error_allpass(basis, h, 3, np.ones_like(w)), a_true[1:]))
    True
    """
    response = np.asarray(response)
    single = response.ndim == 1
    response = response[None] if single else response
    e_k = basis[1 : order + 1]
    # rows: unknowns, columns: frequencies (one such matrix per response); built in place (the same numbers
    # with fewer temporaries of stack size)
    matrix = np.multiply(response[:, None, :], e_k[None])
    matrix -= basis[order - 1 :: -1][:order][None]
    rhs = basis[order][None] - response
    row_weight2 = weights
    weighted = np.empty_like(matrix)
    a = np.zeros((response.shape[0], order))
    for _ in range(n_iter):
        # einsum over contiguous frequency rows: the summation order the designs were measured with
        # (BLAS's matmul rounds differently, and the search then picks other starts by a hair).
        np.conjugate(matrix, out=weighted)
        weighted *= row_weight2[..., None, :]
        normal = np.real(np.einsum("bif,bjf->bij", weighted, matrix))
        rhs_normal = np.real(np.einsum("bif,bf->bi", weighted, rhs))
        a = _solve_normal(normal, rhs_normal, order)
        denominator = np.abs(1.0 + np.einsum("kf,bk->bf", e_k, a))
        row_weight2 = weights / np.maximum(denominator, DESIGN.min_denominator) ** 2
    return a[0] if single else a


def equation_error_allpass_blas(basis, response, order, weights, *, n_iter=DESIGN.n_solves):
    r"""`equation_error_allpass` with its normal equations as real matrix products (BLAS).

    The same design, faster on long grids and high orders, rounded differently (so not used where the
    fit's choice of starts depends on the last bit).

    Parameters
    ----------
    basis : ndarray, shape (F, K + 1), K >= order
        :math:`e^{-jk\omega}` for k = 0..K (columns).
    response : ndarray, shape (F,)
        Target response of unit magnitude.
    order : int
        Allpass order N.
    weights : ndarray, shape (F,)
        Non-negative weights.
    n_iter : int
        Number of reweighted solves.

    Returns
    -------
    a : ndarray, shape (order,)

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import signal
    >>> w = np.linspace(0.01, 3.1, 500)
    >>> a_true = np.poly([0.8 * np.exp(1j), 0.8 * np.exp(-1j)]).real
    >>> _, h = signal.freqz(a_true[::-1], a_true, worN=w)
    >>> basis = np.exp(-1j * np.outer(w, np.arange(3)))
    >>> bool(np.allclose(equation_error_allpass_blas(basis, h, 2, np.ones_like(w)), a_true[1:]))
    True
    """
    matrix = response[:, None] * basis[:, 1 : order + 1] - basis[:, order - 1 :: -1][:, :order]
    rhs = basis[:, order] - response
    stacked = np.concatenate([matrix.real, matrix.imag])
    stacked_rhs = np.concatenate([rhs.real, rhs.imag])
    row_weight = weights
    a = np.zeros(order)
    for _ in range(n_iter):
        weighted = stacked * np.tile(row_weight, 2)[:, None]
        a = _solve_normal(weighted.T @ stacked, weighted.T @ stacked_rhs, order)
        denominator = np.abs(1.0 + basis[:, 1 : order + 1] @ a)
        row_weight = weights / np.maximum(denominator, DESIGN.min_denominator) ** 2
    return a


def equation_error_phase_loss(freqs, target, *, fs, weights, order, shifts=(0,), max_bins=2048):
    r"""Phase loss of the best unpolished equation-error allpass design of one order (a cheap probe).

    For every integer shift s in `shifts` and both polarities, M. Lang's equation-error method
    (`equation_error_allpass_blas`, two reweighted solves) designs an allpass
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

    References
    ----------
    M. Lang, "Allpass filter design and applications", IEEE Trans. Signal Processing 46(9), 1998.

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
            a = equation_error_allpass_blas(basis, polarity * residual, order, weights)
            phase = -(order + shift) * w - 2 * np.angle(basis @ np.r_[1.0, a]) + np.pi * (polarity < 0)
            best = min(best, float(phase_loss(phase, target_phase, weights)))
    return best


def denominator_roots(a):
    r"""Roots of :math:`z^N A(z)`, :math:`A(z) = 1 + a_1 z^{-1} + \dots + a_N z^{-N}`, for a stack of designs.

    `numpy.roots` of ``[1, a_1, ..., a_N]`` for every row, its companion-matrix eigenvalues computed in
    one stacked call: the same values, bit for bit (a real array where all of a row's roots are real).

    Parameters
    ----------
    a : ndarray, shape (B, N)
        Denominator coefficients, one design per row.

    Returns
    -------
    roots : list of ndarray
        The N roots of each design.

    Examples
    --------
    >>> import numpy as np
    >>> roots = denominator_roots(np.array([[-1.5, 0.56], [0.0, -0.25]]))
    >>> [np.sort(r).round(6).tolist() for r in roots]
    [[0.7, 0.8], [-0.5, 0.5]]
    """
    a = np.asarray(a, dtype=float)
    n_designs, order = a.shape
    companion = np.zeros((n_designs, order, order))
    companion[:, 0, :] = -a
    below = np.arange(order - 1)
    companion[:, below + 1, below] = 1.0
    eigenvalues = np.linalg.eigvals(companion) if n_designs else np.zeros((0, order))
    roots = []
    for row, values in zip(a, eigenvalues):
        if row[-1] == 0.0:  # roots at z = 0: numpy.roots deflates them
            roots.append(np.roots(np.r_[1.0, row]))
        else:
            roots.append(values.real if np.all(values.imag == 0) else values)
    return roots


def sections_from_poles(poles, *, fs, r_max):
    """Split an allpass design's poles into second-order sections and first-order coefficients.

    Poles outside the unit circle are reflected inside (:math:`1/\\bar p`); the returned flags say
    which were outside. An allpass with a pole p outside the circle has, on the circle, the conjugate
    response of the stable section with pole :math:`1/\\bar p` (times a unit constant that cancels over
    a conjugate pair): an anticausal section realises it exactly, a causal one with the opposite phase
    (docs/maths.md section 8.5).

    Parameters
    ----------
    poles : ndarray of complex
        Roots of the design's denominator (complex ones in conjugate pairs).
    fs : float
        Sample rate in Hz.
    r_max : float
        Radius limit of the ranges; radii are clipped to ``r_max ** 2`` (at most half the longest decay).

    Returns
    -------
    sections2 : list of (float, float, float)
        ``(R, fc, 0.0)`` per conjugate pair (the pole with positive imaginary part).
    coefs1 : list of float
        First-order coefficient ``-p`` per real pole (radius clipped).
    outside : list of bool
        Per section (second-order ones first, then first-order): whether its pole lay outside the circle.

    Examples
    --------
    >>> import numpy as np
    >>> poles = np.array([0.9 * np.exp(0.1j), 0.9 * np.exp(-0.1j), -2.0])
    >>> sections2, coefs1, outside = sections_from_poles(poles, fs=48000.0, r_max=0.999)
    >>> [(round(float(r), 3), round(float(fc), 1)) for r, fc, _ in sections2], [round(float(c), 3) for c in coefs1]
    ([(0.9, 763.9)], [0.5])
    >>> outside
    [False, True]
    """
    outside = np.abs(poles) >= 1
    poles = poles.copy()
    poles[outside] = 1.0 / np.conj(poles[outside])
    radius = np.minimum(np.abs(poles), r_max**DESIGN.section_decay_power)
    angle = np.angle(poles)
    tolerance = DESIGN.real_root_tolerance
    pair = poles.imag > tolerance
    real = np.abs(poles.imag) <= tolerance
    sections2 = [(r, abs(a) * fs / (2 * np.pi), 0.0) for r, a in zip(radius[pair], angle[pair])]
    coefs1 = [-np.sign(p.real) * r for r, p in zip(radius[real], poles[real])]
    return sections2, coefs1, [bool(o) for o in outside[pair]] + [bool(o) for o in outside[real]]


def low_group_delay(w, target_phase, weights):
    """A low percentile (10 %) of a target's group delay over its well-weighted bins, in samples.

    An allpass only adds delay, so the pure delay of a fit is at most about this (docs/maths.md section 8.3).

    Parameters
    ----------
    w : ndarray, shape (F,)
        Digital frequencies (rad/sample), increasing.
    target_phase, weights : ndarray, shape (F,)
        Target phase (rad, wrapped or not) and non-negative weights.

    Returns
    -------
    tau : float
        The `DESIGN.low_delay_percentile` percentile of the group delay over the bins with at
        least `DESIGN.low_delay_weight` of the largest weight; 0.0 with fewer than 3 such bins.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.linspace(0.01, 3.0, 200)
    >>> round(low_group_delay(w, -7.0 * w, np.ones_like(w)), 6)
    7.0
    """
    tau = -np.gradient(np.unwrap(target_phase), w)
    good = weights >= DESIGN.low_delay_weight * np.max(weights)
    if np.count_nonzero(good) <= 2:
        return 0.0
    return float(np.percentile(tau[good], DESIGN.low_delay_percentile))


def group_delay_peaks(w, target_phase, weights, n_sections, *, fs, r_max):
    """Second-order sections on the largest peaks of a target's excess group delay.

    A pole pair of radius R peaks at about :math:`(1 + R)/(1 - R)` samples of group delay, so a peak
    of :math:`\\tau` samples above the target's smallest group delay gets
    :math:`R = (\\tau - 1)/(\\tau + 1)` at its frequency (docs/maths.md section 8.5).

    Parameters
    ----------
    w : ndarray, shape (F,)
        Digital frequencies (rad/sample), increasing.
    target_phase, weights : ndarray, shape (F,)
        Target phase (rad) and non-negative weights (bins of zero weight are ignored).
    n_sections : int
        Largest number of sections (the most prominent peaks).
    fs : float
        Sample rate in Hz.
    r_max : float
        Radius limit of the ranges.

    Returns
    -------
    sections2 : list of (float, float, float)
        ``(R, fc, 0.0)`` per peak, most prominent first.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import Allpass2, AllpassCascade
    >>> f = np.linspace(10.0, 20000.0, 4000)
    >>> phase = AllpassCascade([Allpass2(0.95, 1000.0)], fs=48000).phase(f)
    >>> [(round(float(r), 2), round(float(fc), -1)) for r, fc, _ in group_delay_peaks(2 * np.pi * f / 48000, phase,
    ...                                                               np.ones_like(f), 4, fs=48000, r_max=0.999)]
    [(0.95, 1000.0)]
    """
    unwrapped = np.unwrap(target_phase)
    tau = -np.gradient(unwrapped, w)
    tau = tau - np.min(tau[weights > 0]) if np.any(weights > 0) else tau
    tau = np.where(weights > 0, tau, 0.0)
    peaks, props = signal.find_peaks(tau, prominence=DESIGN.peak_prominence)
    order = np.argsort(props["prominences"])[::-1][:n_sections]
    sections = []
    for i in peaks[order]:
        radius = np.clip((tau[i] - 1.0) / (tau[i] + 1.0), DESIGN.peak_radius_min,
                         r_max**DESIGN.peak_decay_power)
        sections.append((radius, w[i] * fs / (2 * np.pi), 0.0))
    return sections


# -- time domain: equation error on the samples, Steiglitz-McBride (docs/maths.md section 9) -------------


def warped_radius_bound(radius, warp):
    r"""Largest z-plane pole radius of a warped section with pole radius `radius` (in v) and :math:`|a| \le` `warp`.

    Parameters
    ----------
    radius : float
        Pole radius of the section in the warped variable v, in [0, 1).
    warp : float
        Largest magnitude of the warp a, in [0, 1).

    Returns
    -------
    float
        :math:`\sqrt{1 - (1 - a^2)(1 - R^2)/(1 + |a| R)^2}` (docs/maths.md section 2.3).

    Examples
    --------
    >>> round(warped_radius_bound(0.999, 0.95), 6), warped_radius_bound(0.5, 0.0)
    (0.999974, 0.5)
    """
    # z = (p - a) / (1 - a p) maps the pole p of the section in v into the z-plane, and
    # 1 - |z|^2 = (1 - a^2)(1 - |p|^2) / |1 - a p|^2 is smallest for |1 - a p| = 1 + |a||p|.
    gap = (1.0 - warp**2) * (1.0 - radius**2) / (1.0 + warp * radius) ** 2
    return float(np.sqrt(max(1.0 - gap, 0.0)))


def null_on_audio(cascade, dry, wet):
    """Null depth of the whole `dry` filtered by `cascade` against `wet`; 0 dB when they share no energy.

    Parameters
    ----------
    cascade : AllpassCascade
        The model (with its delay and polarity).
    dry, wet : ndarray
        The pair, time on the last axis.

    Returns
    -------
    float
        `apfdsp.metrics.null_depth_db` of ``cascade.apply(dry)`` against `wet` (dB), or 0.0 where that
        raises `AudioError` (no energy over the overlap).

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import AllpassCascade, Allpass2
    >>> dry = np.random.default_rng(0).standard_normal(8000)
    >>> effect = AllpassCascade([Allpass2(0.8, 700.0)], fs=16000)
    >>> bool(null_on_audio(effect, dry, effect(dry)) < -100), null_on_audio(effect, dry, np.zeros(8000))
    (True, 0.0)
    """
    try:
        return null_depth_db(cascade.apply(dry), wet, fs=cascade.fs)
    except AudioError:
        return 0.0


class _LaggedPair:
    r"""Lagged (or warped-lagged) samples of a dry/wet pair: the least-squares data of the equation-error start.

    With the warped delay :math:`V = (z^{-1} + \lambda)/(1 + \lambda z^{-1})` (:math:`V = z^{-1}` for
    :math:`\lambda = 0`; the substitution of the warped sections, docs/maths.md sections 2.1 and 9.3), a row holds at
    one sample time n the columns :math:`Y_c = (V^c y)[n]`, :math:`c = 0 \ldots K`, then
    :math:`X_c = (V^c z^{-L_{lo}} x)[n]`, :math:`c = 0 \ldots L_{hi} - L_{lo}` (x the dry, y the wet).
    For :math:`\lambda = 0` these are the lagged samples :math:`y[n - c]` and :math:`x[n - L_{lo} - c]`,
    taken with sliding windows; otherwise each power of V is one more first-order allpass pass. Only
    sample times at which every lag exists are used (the covariance method, no zero padding): at most
    `max_rows` per channel, in ``DESIGN.n_blocks`` evenly spaced blocks when there are more (a sweep then
    contributes all its frequencies), from the first sample where the dry is not silent to at most
    `max_span` samples later. All filtering runs from the start of the audio, from rest, as the effect
    did, so it is exact. The wet is divided by a gain per channel (`gain`: first the ratio of RMS
    levels, which an allpass keeps; later the least-squares gain of a model), so that a level
    difference does not bias the designs: they are level-invariant, like the loss.
    """

    def __init__(self, dry, wet, max_rows=DESIGN.max_rows, max_span=DESIGN.max_span):
        self.dry = dry.reshape(-1, dry.shape[-1])
        self.wet = wet.reshape(-1, wet.shape[-1])
        loud = np.flatnonzero(np.max(np.abs(self.dry), axis=0) > DESIGN.onset_level * np.max(np.abs(self.dry)))
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
        length = self.max_rows // DESIGN.n_blocks
        starts = np.linspace(first, stop - length, DESIGN.n_blocks).round().astype(int)
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
            for p in range(first, last, DESIGN.chunk):
                q = min(p + DESIGN.chunk, last)
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
        keep = eigval > DESIGN.iv_rcond * eigval[-1]
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
    upper = z_poles[z_poles.imag > DESIGN.real_root_tolerance]
    reals = z_poles[np.abs(z_poles.imag) <= DESIGN.real_root_tolerance].real
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
    section with coefficient -p, p its z-plane pole (clipped to the ranges by `Layout.t_from`).
    """
    sections2 = []
    for q in v_poles[v_poles.imag > DESIGN.real_root_tolerance]:
        section_warp = warp
        if warp == 0.0 and structure == "warped" and abs(q) >= ranges.radius_limit(fs):
            grid = np.linspace(-1.0, 1.0, DESIGN.warp_grid) * 0.999 * ranges.warp_max
            section_warp = float(grid[np.argmin(np.abs((q + grid) / (1.0 + grid * q)))])
            q = (q + section_warp) / (1.0 + section_warp * q)
        radius = min(abs(q), ranges.radius_limit(fs))  # `Layout.t_from` keeps it inside the open range
        sections2.append((radius, abs(np.angle(q)) * fs / (2 * np.pi), section_warp))
    reals = v_poles[np.abs(v_poles.imag) <= DESIGN.real_root_tolerance]
    coefs1 = list(-_z_poles(reals, warp).real)
    return sections2, coefs1




class _DesignScore:
    """Output error of a design on the pair (section 9.4), penalised by its order; its roots as poles.

    One object per `time_equation_error_starts` call: it holds the pair, the blocks of sample times
    scored, the radius limits of the structure and whether two-sided (anticausal) variants compete.
    """

    def __init__(self, pair, blocks, *, plain_radius, r_max, anticausal):
        self.pair, self.blocks = pair, blocks
        self.plain_radius, self.r_max, self.anticausal = plain_radius, r_max, anticausal

    def v_poles(self, a, warp):
        """Stable roots of ``[1, a]`` within the radius the structure realises (in V for a warped design)."""
        return _stable_poles(a, self.plain_radius if warp == 0.0 else self.r_max)

    @staticmethod
    def outside(a):
        """Whether each root of ``[1, a]`` lies outside the unit circle (in the order of `v_poles`)."""
        return np.abs(np.roots(np.r_[1.0, a])) > 1.0

    def __call__(self, order, delay, polarity, a, warp):
        """``(penalised output error, gains, two_sided)``; an error of inf for an overflowed solve."""
        if not np.all(np.isfinite(a)):  # an overflowed solve (band-limited audio, a singular system)
            return np.inf, 1.0, False
        z_poles = _z_poles(self.v_poles(a, warp), warp)
        error, gain = self.pair.output_error(z_poles, delay, polarity, self.blocks)
        two_sided = False
        if self.anticausal:
            flags = self.outside(a)
            if np.any(flags):
                error2, gain2 = self.pair.output_error(z_poles, delay, polarity, self.blocks, anticausal=flags)
                if error2 < error:
                    error, gain, two_sided = error2, gain2, True
        penalised = error * (1.0 + DESIGN.order_penalty * order) + DESIGN.order_tiebreak * order
        return penalised, gain, two_sided


def _bulk_delays(integer_delay, max_order):
    """Bulk delays D screened: from the GCC-PHAT delay minus 2 N_max + 2 to it plus 2 (section 9.3)."""
    d_lo = integer_delay - 2 * max_order - 2
    if integer_delay >= 0:
        d_lo = max(d_lo, 0)  # causal when GCC-PHAT is
    return np.arange(d_lo, max(integer_delay + 2, d_lo) + 1)


def _screened_designs(gram, delays, x_lo, *, polarities, orders, y_order):
    """``(order, delay, polarity, a, 0.0)`` of the best delays per (order, polarity), from one Gram matrix."""
    designs = []
    for polarity in polarities:
        for order in orders:
            a, residual = _solve_equation_error(gram, y_order=y_order, x_lo=x_lo, order=order, delays=delays,
                                                polarity=polarity, instrumental=True, n_gain=DESIGN.gain_iter)
            designs += [(order, int(delays[i]), polarity, a[i], 0.0)
                        for i in np.argsort(residual)[: DESIGN.n_delays]]
    return designs


def _warped_designs(pair, delays, *, polarities, orders, max_order):
    """``(order, delay, polarity, a, warp)`` on the warped delays `DESIGN.start_warps` (plain least squares)."""
    designs = []
    for warp in DESIGN.start_warps:
        for delay in delays:
            warped_gram = pair.gram(max_order, (delay, delay + max_order), warp=warp)
            for polarity in polarities:
                for order in orders:
                    a, _ = _solve_equation_error(warped_gram, y_order=max_order, x_lo=delay, order=order,
                                                 delays=[delay], polarity=polarity, n_gain=DESIGN.gain_iter)
                    designs.append((order, delay, polarity, a[0], warp))
    return designs


def _steiglitz_mcbride(pair, score, scored_design):
    r"""``(error, a, two_sided)`` of the best of a design and its Steiglitz-McBride iterates (section 9.4).

    Each iteration filters both signals by :math:`1/A` of the previous iterate (its reflected, stable
    roots: the prefilter only weights the equations by :math:`1/|A|^2`) and solves the plain
    least-squares system again.
    """
    error, gain, two_sided, order, delay, polarity, a, warp = scored_design
    best_error, best_a, best_two_sided = error, a, two_sided
    for _ in range(DESIGN.sm_iter):
        sm_gram = pair.gram(order, (delay, delay + order), warp=warp, poles=score.v_poles(a, warp), gain=gain)
        a = _solve_equation_error(sm_gram, y_order=order, x_lo=delay, order=order, delays=[delay],
                                  polarity=polarity)[0][0]
        error, gain, two_sided = score(order, delay, polarity, a, warp)
        if not np.isfinite(error):
            break
        if error < best_error:
            best_error, best_a, best_two_sided = error, a, two_sided
    return best_error, best_a, best_two_sided


def time_equation_error_starts(dry, wet, est, *, n_sections, n_first_order, structure, stretch, ranges, fs,
                               anticausal=False, min_order=1):
    r"""Allpass cascades designed from the dry/wet samples: M. Lang's equation error, then Steiglitz-McBride.

    The starts of `apfdsp.fit_audio` (docs/maths.md section 9). For an allpass of order N behind a bulk
    delay D and polarity s, :math:`A(z)\,y = s z^{-D-N} A(z^{-1})\,x` is linear in the coefficients of
    A: the equation error of Lang [1]_, written for samples instead of frequencies. Minimising it is
    one linear least-squares problem; the output error :math:`y - s z^{-D} H x` that matters is not
    linear, and the equation error is a biased estimate of it on noisy or non-allpass data [2]_.

    1. **Screening.** For every allpass order :math:`N \le N_{max} = 2 \cdot` `n_sections` +
       `n_first_order` + 1 (at most ``DESIGN.max_order``), both polarities and every bulk delay D
       from :math:`\hat D - 2N_{max} - 2` to :math:`\hat D + 2` (:math:`\hat D` the GCC-PHAT delay,
       which the dispersion of an allpass biases upwards), a solve with instrumental variables (the
       lagged dry samples [4]_, which keep noise on the wet from biasing it), alternated
       ``DESIGN.gain_iter`` times with the gain, gives the denominator; all come from one Gram
       matrix of lagged samples. The ``DESIGN.n_delays`` delays of every (order, polarity) with the
       lowest equation error are kept.
    2. **Warped designs** (structure ``"warped"``): the same on the warped delay V with warps
       ``DESIGN.start_warps``, for the ``DESIGN.n_warp_delays`` best delays of step 1 (plain least
       squares). Warping spreads poles crowded near z = 1, where the plain design is numerically
       singular, and its roots are warped sections directly.
    3. **Ranking** by output error (the model run on the dry) times
       :math:`1 + 0.05 N`: low orders first among near-equal errors.
    4. **Steiglitz-McBride** [3]_. The best designs get ``DESIGN.sm_iter`` iterations: both signals
       are filtered by :math:`1/A` of the previous solution and the plain system is solved again,
       which turns the equation error :math:`A e` into the output error e to first order; the iterate
       with the lowest output error is kept.
    5. **Sections.** Roots outside the unit circle are reflected inside, radii clipped to the ranges;
       roots at z = 0 (unwarped) are one-sample delays and join the bulk delay; the rest become
       sections. Designs with more than `n_sections` complex pairs are dropped. The Thiran section of
       the layout is set to exactly one sample. Step 4 and 5 run down the ranking until
       ``DESIGN.n_candidates`` starts are made.

    With ``anticausal=True`` every design is also scored with its roots outside the unit circle kept
    as anticausal sections (same bulk delay); a two-sided design is returned in both variants.

    Parameters
    ----------
    dry, wet : ndarray, shape (channels, n) and (channels, m)
        The pair (contiguous, channels broadcast as `apfdsp.fit_audio` does).
    est : apfdsp.estimate.Estimate
        Its estimate (integer delay and polarity from GCC-PHAT).
    n_sections : int
        Largest number of second-order sections (complex root pairs) of a design.
    n_first_order : int
        First-order sections of the layout the orders are sized for (:math:`N_{max}` above).
    structure : {"warped", "traditional", "stretched"}
        Section type of the layouts (none for "stretched": its sections are polynomials in
        :math:`z^{-K}`).
    stretch : int
        K of the stretched structure (kept in the layouts).
    ranges : ParamRanges
        Parameter ranges the sections are clipped to.
    fs : float
        Sample rate in Hz.
    anticausal : bool
        Score the two-sided variants too.
    min_order : int
        Lowest order designed (`time_equation_error_ladder` adds only orders above those it tried).

    Returns
    -------
    starts : list of (layout, t)
        Best (lowest output error) first; ``layout.cells(t)`` is the cascade. Empty for the stretched
        structure or when the audio is too short for the lags.

    References
    ----------
    .. [1] M. Lang, "Allpass filter design and applications", IEEE Trans. Signal Processing 46(9), 1998.
    .. [2] J. J. Shynk, "Adaptive IIR filtering", IEEE ASSP Magazine 6(2), 1989 (equation error and
       output error).
    .. [3] K. Steiglitz and L. E. McBride, "A technique for the identification of linear systems",
       IEEE Trans. Automatic Control 10(4), 1965.
    .. [4] T. Söderström and P. Stoica, "System Identification", Prentice Hall, 1989 (instrumental
       variables).

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import Allpass2, AllpassCascade, Delay
    >>> from apfdsp.estimate import estimate
    >>> from apfdsp.ranges import DEFAULT_RANGES
    >>> fs = 16000
    >>> dry = np.random.default_rng(0).standard_normal((1, fs // 2))
    >>> wet = AllpassCascade([Allpass2(0.8, 700.0), Delay(5.0)], fs=fs)(dry)
    >>> starts = time_equation_error_starts(dry, wet, estimate(dry, wet, fs=fs), n_sections=1,
    ...                                     n_first_order=0, structure="traditional", stretch=1,
    ...                                     ranges=DEFAULT_RANGES, fs=fs)
    >>> layout, t = starts[0]
    >>> bool(null_on_audio(AllpassCascade(layout.cells(t), fs=fs), dry, wet) < -100)
    True
    """
    if structure == "stretched":
        return []
    max_order = min(2 * n_sections + n_first_order + 1, DESIGN.max_order)
    # Largest pole radius of an unwarped design the structure realises (warped sections reach closer to
    # |z| = 1); a warped design's roots are section poles, bounded by r_max.
    r_max = ranges.radius_limit(fs)
    plain_radius = r_max if structure == "traditional" else warped_radius_bound(r_max, ranges.warp_max)
    delays = _bulk_delays(est.integer_delay, max_order)
    x_lags = (int(delays[0]), int(delays[-1]) + max_order)
    pair = _LaggedPair(dry, wet)
    gram = pair.gram(max_order, x_lags)
    if gram is None:
        return []
    score = _DesignScore(pair, pair.blocks(max_order, x_lags), plain_radius=plain_radius, r_max=r_max,
                         anticausal=anticausal)
    polarities, orders = (est.polarity, -est.polarity), range(min(min_order, max_order), max_order + 1)
    designs = _screened_designs(gram, delays, x_lags[0], polarities=polarities, orders=orders, y_order=max_order)
    scored = sorted(((*score(*design), *design) for design in designs), key=lambda item: item[0])
    if structure == "warped":
        warp_delays = list(dict.fromkeys(delay for _, _, _, _, delay, *_ in scored))[: DESIGN.n_warp_delays]
        scored += [(*score(*design), *design) for design in _warped_designs(
            pair, warp_delays, polarities=polarities, orders=orders, max_order=max_order)]
        scored.sort(key=lambda item: item[0])
    shape = {"n_sections": n_sections, "structure": structure, "stretch": stretch, "ranges": ranges, "fs": fs}
    starts = []
    for design in scored:
        if not np.isfinite(design[0]):
            break  # sorted: only failed designs remain
        delay, polarity, warp = design[4], design[5], design[7]
        best_error, best_a, best_two_sided = _steiglitz_mcbride(pair, score, design)
        poles = score.v_poles(best_a, warp)
        # A two-sided design is also returned reflected (all causal): the loss decides between them.
        variants = [score.outside(best_a), np.zeros(len(poles), dtype=bool)] if best_two_sided else [None]
        made = [_start_layout(poles, flags, warp, delay, polarity, **shape) for flags in variants]
        starts += [(best_error, *item) for item in made if item is not None]
        if len(starts) >= DESIGN.n_candidates:
            break
    starts.sort(key=lambda item: item[0])
    return [(layout, t) for _, layout, t in starts]


def time_equation_error_ladder(dry, wet, est, *, n_sections, n_first_order, anticausal, rungs, margin_db,
                               **shape):
    """Time-domain designs with as many sections as the audio asks for.

    Parameters
    ----------
    dry, wet, est, n_first_order
        As `time_equation_error_starts`.
    n_sections : int or None
        A fixed largest number of sections, or None: chosen by the rungs.
    anticausal : bool
        Two-sided designs compete with the causal ones (both kinds are designed).
    rungs : sequence of int
        With ``n_sections=None``: growing largest numbers of sections (`apfdsp.fit_audio.SECTION_RUNGS`).
    margin_db : float
        A rung is kept when it deepens the best null on the audio by at least this (dB).
    **shape
        ``structure``, ``stretch``, ``ranges``, ``fs`` of `time_equation_error_starts`.

    Returns
    -------
    starts : list of (layout, t)
        The starts, the best rung's first.
    n_sections : int
        The number of sections of the last rung kept.

    Notes
    -----
    With a fixed `n_sections`, the starts of `time_equation_error_starts` (for both kinds, two-sided first,
    when `anticausal`). With None the next rung's designs (its orders only) are added while the best
    start's null on the whole audio (`null_on_audio`) deepens by at least `margin_db`, and not once a
    start is already exact (``DESIGN.exact_null_db``).

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import Allpass2, AllpassCascade
    >>> from apfdsp.estimate import estimate
    >>> from apfdsp.ranges import DEFAULT_RANGES
    >>> fs = 16000
    >>> dry = np.random.default_rng(0).standard_normal((1, fs // 2))
    >>> wet = AllpassCascade([Allpass2(0.8, 700.0), Allpass2(0.6, 3000.0)], fs=fs)(dry)
    >>> starts, n = time_equation_error_ladder(dry, wet, estimate(dry, wet, fs=fs), n_sections=None,
    ...     n_first_order=0, anticausal=False, rungs=(1, 2, 4), margin_db=1.0, structure="traditional",
    ...     stretch=1, ranges=DEFAULT_RANGES, fs=fs)
    >>> n
    2
    """
    rungs = tuple(rungs) if n_sections is None else (n_sections,)
    kinds = (True, False) if anticausal else (False,)

    def null(layout, t):
        return null_on_audio(AllpassCascade(layout.cells(t), fs=layout.fs), dry, wet)

    def designs(n, min_order):
        # With anticausal sections allowed, the causal designs compete too: two-sided designs can
        # crowd the best causal one out of the shortlist, and the causal one may be the exact one.
        # Singular systems (band-limited audio) may overflow a solve: that design is skipped, silently.
        with np.errstate(over="ignore", invalid="ignore"):
            return [start for two_sided in kinds for start in time_equation_error_starts(
                dry, wet, est, n_sections=n, n_first_order=n_first_order, anticausal=two_sided,
                min_order=min_order, **shape)]

    starts = designs(rungs[0], 1)
    if len(rungs) == 1 or not starts:
        return starts, rungs[0]
    best = min(null(layout, t) for layout, t in starts)
    kept = rungs[0]
    for previous, n in zip(rungs, rungs[1:]):
        if best <= DESIGN.exact_null_db:
            break
        more = designs(n, 2 * previous + n_first_order + 2)
        found = min((null(layout, t) for layout, t in more), default=0.0)
        if not found <= best - margin_db:
            break
        starts, best, kept = more + starts, found, n
    return starts, kept


def time_allpass_probe_db(dry, wet, est, orders, *, max_rows=2**14):
    r"""How well an allpass of each order explains the wet from the dry, in dB (the probe of
    `apfdsp.fit_audio.more_sections`, docs/maths.md section 9.9).

    Parameters
    ----------
    dry, wet : ndarray, shape (channels, n) and (channels, m)
        The pair, with the same number of channels.
    est : apfdsp.estimate.Estimate
        The pair's estimate (its integer delay and polarity).
    orders : sequence of int
        Allpass orders N.
    max_rows : int
        Sample times per channel in the least-squares problems.

    Returns
    -------
    ndarray, shape (len(orders),)
        Per order, :math:`10 \log_{10} \min_D (1 - \rho^2)`, :math:`\rho` the correlation of the two sides
        :math:`A(z)\,y` and :math:`z^{-D-N} A(z^{-1})\,x` of the equation-error design of section 9.1
        (gain alternations, no instruments) for each bulk delay D of section 9.3; in [-200, 0] dB,
        0 dB where the audio is too short for the lags.

    Notes
    -----
    Near the numerical floor when the wet is an allpass of at most that order of the dry; a magnitude
    response, a time-varying gain, distortion or noise leave an error at their own level. The score is
    the mismatch of the two filtered sides relative to their size, not the equation error relative to
    the signals: a predictable wet (a sweep, steady tones) lets A(z) nearly cancel both sides, which makes
    the equation error small whatever the dry is, but not the sides' mismatch.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import signal
    >>> from apfdsp.estimate import estimate
    >>> fs = 16000
    >>> dry = np.random.default_rng(0).standard_normal((1, fs // 2))
    >>> wet = signal.lfilter([0.5, -0.3, 1.0], [1.0, -0.3, 0.5], dry)  # a second-order allpass
    >>> probe = time_allpass_probe_db(dry, wet, estimate(dry, wet, fs=fs), (1, 2, 4))
    >>> bool(probe[0] > -40), bool(probe[1] < -100), bool(probe[2] < -100)
    (True, True, True)
    """
    orders = [int(order) for order in orders]
    top = max(orders)
    delays = _bulk_delays(est.integer_delay, top)
    x_lags = (int(delays[0]), int(delays[-1]) + top)
    gram = _LaggedPair(dry, wet, max_rows=max_rows).gram(top, x_lags)
    if gram is None:
        return np.zeros(len(orders))
    rows = np.arange(len(delays))[:, None]
    scores = []
    for order in orders:
        with np.errstate(over="ignore", invalid="ignore"):  # singular systems (band-limited audio)
            a = _solve_equation_error(gram, y_order=top, x_lo=x_lags[0], order=order, delays=delays,
                                      polarity=est.polarity, n_gain=DESIGN.gain_iter)[0]
        coefs = np.column_stack([np.ones(len(delays)), a])  # a_0 = 1, ..., a_N per delay
        wet_side = np.zeros((len(delays), gram.shape[0]))
        wet_side[:, : order + 1] = coefs  # A(z) y: columns y[n - k]
        dry_side = np.zeros_like(wet_side)  # z^(-D-N) A(1/z) x: a_k on the column of lag D + N - k
        dry_side[rows, top + 1 - x_lags[0] + delays[:, None] + order - np.arange(order + 1)] = coefs
        with np.errstate(over="ignore", invalid="ignore"):
            yy, xx = (np.einsum("di,ij,dj->d", side, gram, side) for side in (wet_side, dry_side))
            xy = np.einsum("di,ij,dj->d", wet_side, gram, dry_side)
            mismatch = (yy * xx - xy**2) / (yy * xx)
        scores.append(np.nanmin(np.where(np.isfinite(mismatch), mismatch, np.nan), initial=1.0))
    return 10 * np.log10(np.clip(scores, 1e-20, 1.0))


def _start_layout(poles, flags, warp, delay, polarity, *, n_sections, structure, stretch, ranges, fs):
    """``(layout, t)`` of a design (reflected roots `poles`, `flags`: anticausal ones or None), or None
    when it has more than `n_sections` complex pairs."""
    flags = np.zeros(len(poles), dtype=bool) if flags is None else np.asarray(flags, dtype=bool)
    if warp == 0.0:  # a pole at z = 0 is a one-sample delay (an advance if anticausal): bulk delay
        at_origin = np.abs(poles) < DESIGN.origin
        delay += int(np.count_nonzero(at_origin & ~flags)) - int(np.count_nonzero(at_origin & flags))
        poles, flags = poles[~at_origin], flags[~at_origin]
    sections2, coefs1 = _sections_from_v_poles(poles, warp, structure=structure, ranges=ranges, fs=fs)
    if len(sections2) > n_sections:
        return None
    tolerance = DESIGN.real_root_tolerance
    pairs, reals = poles.imag > tolerance, np.abs(poles.imag) <= tolerance
    flags = tuple(bool(f) for f in flags[pairs]) + tuple(bool(f) for f in flags[reals])
    layout = Layout(len(sections2), len(coefs1), structure, stretch, polarity, delay - 1, ranges, fs,
                     flags if any(flags) else ())
    return layout, layout.t_from(sections2, coefs1, 1.0)
