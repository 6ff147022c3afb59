r"""The phase-fitting loss of a cascade and its exact gradient, in plain numpy (no tracing).

`apfdsp.fit_phase` polishes hundreds of starts with L-BFGS; each iteration needs the loss
:math:`L = \sum_f w_f (1 - \cos(\phi(f) - \phi_t(f))) / \sum_f w_f` and its gradient with respect to
the normalised parameters of every section. Traced by autograd this costs about a hundred small
Python-level operations per evaluation; here it is a handful of vectorised numpy expressions over
(sections x frequencies), with the formulas of `apfdsp.filters` (its module notes) in this form:

* second-order section, :math:`D(v) = 1 + d v + c v^2` in the warped delay
  :math:`v = (a + x)/(1 + a x)`, :math:`x = e^{-jK\omega}`, written as the allpass
  :math:`x^2\,\overline{P(x)}/P(x)` of order 2 in x itself, :math:`P(x) = (1 + ax)^2 D(v) = p_0 + p_1 x + p_2 x^2`
  with :math:`p_0 = 1 + da + ca^2`, :math:`p_1 = 2a + d(1 + a^2) + 2ca`, :math:`p_2 = a^2 + da + c`:
  :math:`\phi = -2K\omega - 2\arg P`, :math:`\partial\phi/\partial p_k = -2\Im(x^k/P)`, and the chain rule
  through :math:`p_k(d, c, a)`, :math:`d = -2R\cos(2\pi f_c/f_s)`, :math:`c = R^2`;
* first-order section :math:`P(x) = 1 + b x`, :math:`x = e^{-j\omega}`: :math:`\phi = -\omega - 2\arg P`,
  :math:`\partial\phi/\partial b = -2\Im(x/P)`;
* the fractional delay unit is a first-order section with the Thiran coefficient
  :math:`b = (1 - \delta)/(1 + \delta)`, :math:`\delta = 1 + t/2`;
* an anticausal section contributes :math:`-\phi`; the whole cascade is
  :math:`e^{-j\omega\sum_s \sigma_s m_s}\,\overline{Q}/Q` with Q the product of the sections' P (conjugated
  where anticausal): one division per bin for the phase, one per section for the gradient;
* :math:`\partial L/\partial\phi(f) = w_f \sin(\phi(f) - \phi_t(f)) / \sum w`.

The layout object is an `apfdsp.layout.Layout` (attributes ``n2, n1, structure, stretch, ranges, fs,
delay_shift, polarity``, ``signs()`` and ``const_phase(w)``). `PhaseGrid` holds what every evaluation on
one grid shares (the delay phasors, the target's phasor per shift and polarity), so that a fit computes
them once. tests/test_phase_objective.py checks value and gradient against the autograd route and finite
differences.

Implements docs/maths.md, section 5.2 (with the section derivatives of section 1.5 and the range maps of
section 11); the module's place in the package is docs/architecture.md, section 2.9.
"""

import numpy as np

from .filters import thiran_coef

__all__ = ["cascade_phase_loss", "direct_loss_and_grad", "PhaseGrid"]


class PhaseGrid:
    r"""A fit's grid, target and weights, with the intermediates every loss evaluation on them shares.

    The unit-delay phasors :math:`e^{-jK\omega}` (per stretch K) and the phasor
    :math:`e^{j(\phi_c - \phi_t)}` of the target with a layout's shift and polarity taken out are
    computed once per grid (and per K, shift and polarity) instead of once per evaluation; the values
    are those `cascade_phase_loss` computes, bit for bit. Safe to share between threads (a value
    computed twice is the same value).

    Parameters
    ----------
    w : ndarray, shape (F,)
        Digital frequencies in rad/sample.
    target_phase, weights : ndarray, shape (F,)
        The fit's target (rad) and its non-negative weights.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.layout import Layout
    >>> from apfdsp.ranges import DEFAULT_RANGES
    >>> w = np.linspace(0.01, 3.0, 64)
    >>> grid = PhaseGrid(w, np.zeros(64), np.ones(64))
    >>> layout = Layout(1, 0, "warped", 1, 1, None, DEFAULT_RANGES, 48000.0)
    >>> t = np.array([[0.5, 0.1, 0.2]])
    >>> grid.loss(layout, t, gradient=False) == cascade_phase_loss(layout, t, w, np.zeros(64), np.zeros(64),
    ...                                                           np.ones(64), gradient=False)
    True
    """

    def __init__(self, w, target_phase, weights):
        self.w, self.target_phase, self.weights = w, target_phase, weights
        self.weight_sum = np.sum(weights)
        self._remembered = {}  # (kind, key) -> value: what evaluations on this grid share

    def _remember(self, key, compute):
        """The value kept under `key`, made by ``compute()`` the first time (two threads that both make it
        make the same value)."""
        value = self._remembered.get(key)
        if value is None:
            value = self._remembered.setdefault(key, compute())
        return value

    def unit_delay(self, stretch):
        """The phasor :math:`e^{-jK\\omega}` for K = `stretch` (computed once).

        Parameters
        ----------
        stretch : int
            K (any integer: a net delay of a cascade in samples too).

        Returns
        -------
        phasor : ndarray of complex, shape (F,)

        Examples
        --------
        >>> import numpy as np
        >>> grid = PhaseGrid(np.array([0.0, np.pi / 2]), np.zeros(2), np.ones(2))
        >>> np.round(grid.unit_delay(1), 12)
        array([1.+0.j, 0.-1.j])
        """
        def compute():
            kw = stretch * self.w
            return np.cos(kw) - 1j * np.sin(kw)

        return self._remember(("unit delay", stretch), compute)

    def delay_powers(self, stretch):
        """The columns ``1, x, x^2`` for :math:`x = e^{-jK\\omega}`, K = `stretch` (computed once).

        Parameters
        ----------
        stretch : int
            K.

        Returns
        -------
        powers : ndarray of complex, shape (F, 3)

        Examples
        --------
        >>> import numpy as np
        >>> grid = PhaseGrid(np.array([0.0, np.pi / 2]), np.zeros(2), np.ones(2))
        >>> np.round(grid.delay_powers(1), 12)
        array([[ 1.+0.j,  1.+0.j,  1.+0.j],
               [ 1.+0.j,  0.-1.j, -1.-0.j]])
        """
        def compute():
            x, x2 = self.unit_delay(stretch), self.unit_delay(2 * stretch)
            return np.stack((np.ones_like(x), x, x2), axis=1)

        return self._remember(("powers", stretch), compute)

    def layout_terms(self, layout):
        r"""The signs of `layout`'s units and the phasor :math:`e^{-j\omega\sum_s\sigma_s m_s}` of their
        degrees (computed once per layout).

        Parameters
        ----------
        layout : apfdsp.layout.Layout
            Its ``n2``, ``n1``, ``structure``, ``stretch``, delay unit and ``signs()`` are used.

        Returns
        -------
        signs : ndarray, shape (n_units,)
            +1 per causal, -1 per anticausal unit (the delay unit, last, is causal).
        delay : ndarray of complex, shape (F,)

        Examples
        --------
        >>> import numpy as np
        >>> from apfdsp.layout import Layout
        >>> from apfdsp.ranges import DEFAULT_RANGES
        >>> grid = PhaseGrid(np.array([0.0, np.pi / 2]), np.zeros(2), np.ones(2))
        >>> signs, delay = grid.layout_terms(Layout(1, 1, "warped", 1, 1, 0, DEFAULT_RANGES, 48000.0, (True, False)))
        >>> signs.tolist(), np.round(delay, 12).tolist()  # -2 + 1 + 1 = 0 samples
        ([-1.0, 1.0, 1.0], [(1+0j), (1+0j)])
        """
        stretch = layout.stretch if layout.structure == "stretched" else 1
        unit_signs = layout.signs()
        key = (layout.n2, layout.n1, stretch, layout.delay_shift is None,
               None if unit_signs is None else tuple(unit_signs))
        def compute():
            n_first = layout.n1 + (layout.delay_shift is not None)
            signs = np.ones(layout.n2 + n_first)
            if unit_signs is not None:
                signs[: layout.n2 + layout.n1] = unit_signs
            net = int(round(signs @ np.r_[np.full(layout.n2, 2.0 * stretch), np.ones(n_first)]))
            return signs, self.unit_delay(net)

        return self._remember(("layout", key), compute)

    def error(self, layout):
        r"""The phasor :math:`e^{j(\phi_c - \phi_t)}` of `layout`'s shift and polarity (computed once).

        Parameters
        ----------
        layout : apfdsp.layout.Layout
            Its ``delay_shift`` and ``polarity`` are used.

        Returns
        -------
        phasor : ndarray of complex, shape (F,)

        Examples
        --------
        >>> import numpy as np
        >>> from apfdsp.layout import Layout
        >>> from apfdsp.ranges import DEFAULT_RANGES
        >>> grid = PhaseGrid(np.array([0.0, np.pi]), np.zeros(2), np.ones(2))
        >>> np.round(grid.error(Layout(0, 0, "warped", 1, -1, 1, DEFAULT_RANGES, 48000.0)).real, 12)
        array([-1.,  1.])
        """
        return self._remember(("error", layout.delay_shift, layout.polarity < 0),
                              lambda: np.exp(1j * (layout.const_phase(self.w) - self.target_phase)))

    def loss(self, layout, t, *, gradient=True):
        """`cascade_phase_loss` of `layout` and `t` on this grid: loss, and dLoss/dt with `gradient`.

        Parameters
        ----------
        layout : apfdsp.layout.Layout
            The cascade's shape.
        t : ndarray, shape (n_units, 3)
            Normalised parameters.
        gradient : bool
            Also return the gradient.

        Returns
        -------
        loss : float
        grad : ndarray, shape of `t` (only with ``gradient=True``)

        Examples
        --------
        >>> import numpy as np
        >>> from apfdsp.layout import Layout
        >>> from apfdsp.ranges import DEFAULT_RANGES
        >>> grid = PhaseGrid(np.linspace(0.01, 3.0, 64), np.zeros(64), np.ones(64))
        >>> loss, grad = grid.loss(Layout(1, 0, "warped", 1, 1, None, DEFAULT_RANGES, 48000.0), np.zeros((1, 3)))
        >>> bool(0 < loss < 2), grad.shape
        (True, (1, 3))
        """
        t = np.asarray(t, dtype=float)
        return _loss(layout, t, self, self.error(layout), self.layout_terms(layout), gradient)

    def losses(self, layouts, ts):
        """The losses of several layouts of one shape in one vectorised evaluation.

        The layouts share ``n2``, ``n1``, ``structure``, ``stretch`` and whether they have a delay unit;
        their shifts, polarities and anticausal flags may differ. Each value equals ``loss(layout, t,
        gradient=False)`` to rounding (the sums over frequency are taken in another order).

        Parameters
        ----------
        layouts : sequence of apfdsp.layout.Layout
            Layouts of one shape.
        ts : sequence of ndarray, each of shape (n_units, 3)
            Their normalised parameters.

        Returns
        -------
        losses : ndarray, shape (len(layouts),)

        Examples
        --------
        >>> import numpy as np
        >>> from apfdsp.layout import Layout
        >>> from apfdsp.ranges import DEFAULT_RANGES
        >>> grid = PhaseGrid(np.linspace(0.01, 3.0, 64), np.zeros(64), np.ones(64))
        >>> layouts = [Layout(1, 0, "warped", 1, p, None, DEFAULT_RANGES, 48000.0) for p in (1, -1)]
        >>> ts = [np.array([[0.5, 0.1, 0.2]])] * 2
        >>> one_by_one = [grid.loss(layout, t, gradient=False) for layout, t in zip(layouts, ts)]
        >>> bool(np.allclose(grid.losses(layouts, ts), one_by_one))
        True
        """
        first = layouts[0]
        t = np.asarray(ts, dtype=float)
        error = np.stack([self.error(layout) for layout in layouts])
        terms = _unit_terms(first, t, self)
        if terms:
            signs, delays = zip(*(self.layout_terms(layout) for layout in layouts))
            error = error * _cascade_phasor(np.concatenate([term[1] for term in terms], axis=-2), np.stack(signs),
                                            np.stack(delays))
        return np.maximum((1.0 - error.real) @ self.weights / self.weight_sum, 0.0)

    def direct_objective(self, layout):
        """`direct_loss_and_grad` of `layout` on this grid.

        Parameters
        ----------
        layout : apfdsp.layout.Layout
            The cascade's shape.

        Returns
        -------
        objective : callable
            ``f(u) -> (loss, dloss/du)`` with ``t = u / sqrt(1 + u^2)``.

        Examples
        --------
        >>> import numpy as np
        >>> from apfdsp.layout import Layout
        >>> from apfdsp.ranges import DEFAULT_RANGES
        >>> grid = PhaseGrid(np.linspace(0.01, 3.0, 64), np.zeros(64), np.ones(64))
        >>> objective = grid.direct_objective(Layout(1, 0, "warped", 1, 1, None, DEFAULT_RANGES, 48000.0))
        >>> objective(np.zeros((1, 3)))[1].shape
        (1, 3)
        """
        return _direct_objective(layout, self, self.error(layout))


def _second_order_terms(layout, t2, grid):
    """The second-order sections of parameters `t2` (..., S, 3) as allpasses x^m conj(P(x)) / P(x) in their
    delay x = exp(-jKw): P's values (..., S, F), the degree m = 2K, and a function of dLoss/dphase (F,)
    returning dLoss/dt (S, 3) (a single layout; each section's phase counted with sign +1).

    P(x) = (1 + a x)^2 D((a + x) / (1 + a x)) = p0 + p1 x + p2 x^2 (docs/maths.md, section 5.2), so
    dphi/dp_k = -2 Im(x^k / P), and the chain rule runs through p_k(d, c, a).
    """
    ranges, fs = layout.ranges, layout.fs
    stretch = layout.stretch if layout.structure == "stretched" else 1
    x, x2 = grid.unit_delay(stretch), grid.unit_delay(2 * stretch)
    radius = ranges.pole_radius(t2[..., 0], fs=fs)
    fc = ranges.fc_hz(t2[..., 1], fs=fs)
    angle = 2.0 * np.pi * fc / fs
    d, c = -2.0 * radius * np.cos(angle), radius * radius
    warped = layout.structure != "traditional"
    a = ranges.warp(t2[..., 2]) if warped else np.zeros_like(d)
    p0, p1, p2 = 1.0 + d * a + c * a * a, 2.0 * a + d * (1.0 + a * a) + 2.0 * c * a, a * a + d * a + c
    values = p0[..., None] + p1[..., None] * x + p2[..., None] * x2

    def gradient(dloss_dphase):
        # dLoss/dp_k = sum_f dLoss/dphi(f) (-2 Im(x^k / P)): one product with the powers of x
        dp0, dp1, dp2 = -2.0 * ((dloss_dphase / values) @ grid.delay_powers(stretch)).imag.T
        g_d = a * dp0 + (1.0 + a * a) * dp1 + a * dp2
        g_c = a * a * dp0 + 2.0 * a * dp1 + dp2
        lo, hi = ranges.fc_limits(fs)
        grad = np.zeros((len(t2), 3))
        # chain rule: d = -2 R cos(2 pi fc / fs), c = R^2, and the range maps' dR/dt, dfc/dt, da/dt
        grad[:, 0] = (g_d * -2.0 * np.cos(angle) + g_c * 2.0 * radius) * (0.5 * ranges.radius_limit(fs))
        grad[:, 1] = g_d * 2.0 * radius * np.sin(angle) * (2.0 * np.pi / fs) * fc * 0.5 * np.log(hi / lo)
        if warped:
            g_a = (d + 2.0 * c * a) * dp0 + (2.0 + 2.0 * d * a + 2.0 * c) * dp1 + (2.0 * a + d) * dp2
            grad[:, 2] = g_a * ranges.warp_max
        return grad

    return values, 2 * stretch, gradient


def _first_order_coefs(layout, t):
    """Coefficients (..., U) of the first-order and delay units of parameters `t` (..., units, 3), and
    their derivatives with respect to t (None without such units)."""
    n2, n1 = layout.n2, layout.n1
    coefs, dcoef = [], []
    if n1:
        coefs.append(layout.ranges.coef(t[..., n2 : n2 + n1, 0], fs=layout.fs))
        dcoef.append(np.full(coefs[-1].shape, layout.ranges.coef_limit(layout.fs)))
    if layout.delay_shift is not None:
        frac = 1.0 + 0.5 * t[..., -1:, 0]
        coefs.append(thiran_coef(frac))
        dcoef.append(-1.0 / (1.0 + frac) ** 2)  # d/dt of the Thiran coefficient
    if not coefs:
        return None, None
    return np.concatenate(coefs, axis=-1), np.concatenate(dcoef, axis=-1)


def _first_order_terms(layout, t, grid):
    """The first-order and delay units as allpasses x conj(P) / P, P = 1 + b x, x = exp(-jw): P's values
    (..., U, F), the degree 1 and the gradient function (see `_second_order_terms`); None without units."""
    coefs, dcoef = _first_order_coefs(layout, t)
    if coefs is None:
        return None
    x = grid.unit_delay(1)
    values = 1.0 + coefs[..., None] * x

    def gradient(dloss_dphase):
        grad = np.zeros((coefs.shape[0], 3))
        grad[:, 0] = -2.0 * ((x / values).imag @ dloss_dphase) * dcoef  # dphi/db = -2 Im(x / P)
        return grad

    return values, 1, gradient


def _unit_terms(layout, t, grid):
    """``[(rows, values, degree, gradient)]`` of the second-order sections, then the first-order and delay
    units, of parameters `t` (..., units, 3)."""
    terms = []
    if layout.n2:
        terms.append((slice(0, layout.n2), *_second_order_terms(layout, t[..., : layout.n2, :], grid)))
    first = _first_order_terms(layout, t, grid)
    if first is not None:
        terms.append((slice(layout.n2, layout.n2 + first[0].shape[-2]), *first))
    return terms


def _cascade_phasor(values, signs, delay):
    r"""exp(j sum_s sign_s phi_s) = x^net conj(Q) / Q from the units' P values (..., U, F), their signs
    (..., U) and `delay` = exp(-jw net) with net = sum_s sign_s m_s: Q is the product of the P values,
    conjugated for an anticausal unit (docs/maths.md, section 5.2)."""
    if np.any(signs < 0):
        values = np.where(signs[..., None] < 0, values.conj(), values)
    q = np.prod(values, axis=-2)
    return delay * q.conj() / q


def cascade_phase_loss(layout, t, w, const, target_phase, weights, *, gradient=True):
    r"""Loss of the cascade described by `layout` and normalised parameters `t`, and dLoss/dt.

    Parameters
    ----------
    layout : object
        ``n2, n1, structure, stretch, ranges, fs, delay_shift`` and ``signs()`` (see `apfdsp.fit`).
    t : ndarray, shape (n2 + n1 + has_delay, 3)
        Normalised parameters in (-1, 1).
    w : ndarray, shape (F,)
        Digital frequencies in rad/sample.
    const : ndarray, shape (F,)
        Phase of the integer shift and polarity (not parameterised).
    target_phase, weights : ndarray, shape (F,)
        The fit's target and its weights.
    gradient : bool
        Also return the gradient.

    Returns
    -------
    loss : float
    grad : ndarray, shape of `t` (only with ``gradient=True``)

    Notes
    -----
    The loss needs the phase only modulo :math:`2\pi`, so the cascade is evaluated as the product of
    its sections' phasors :math:`e^{j\phi_s} = v^M \bar D / D`;
    :math:`1 - \cos(\phi - \phi_t) = 1 - \Re\,E` and :math:`\sin(\phi - \phi_t) = \Im\,E` with
    :math:`E = e^{j\phi} e^{-j\phi_t}`.

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from apfdsp.ranges import DEFAULT_RANGES
    >>> layout = SimpleNamespace(n2=1, n1=0, structure="warped", stretch=1, ranges=DEFAULT_RANGES,
    ...                          fs=48000.0, delay_shift=None, signs=lambda: None)
    >>> w = np.linspace(0.01, 3.0, 64)
    >>> t = np.array([[0.5, 0.1, 0.2]])
    >>> loss, grad = cascade_phase_loss(layout, t, w, np.zeros(64), np.zeros(64), np.ones(64))
    >>> step = np.zeros_like(t); step[0, 1] = 1e-6
    >>> numeric = (cascade_phase_loss(layout, t + step, w, np.zeros(64), np.zeros(64), np.ones(64),
    ...                               gradient=False) - loss) / 1e-6
    >>> bool(abs(numeric - grad[0, 1]) < 1e-4 * max(1.0, abs(grad[0, 1])))
    True
    """
    t = np.asarray(t, dtype=float)
    grid = PhaseGrid(w, target_phase, weights)
    return _loss(layout, t, grid, np.exp(1j * (const - target_phase)), grid.layout_terms(layout), gradient)


def _loss(layout, t, grid, error, layout_terms, gradient):
    """`cascade_phase_loss` on a `PhaseGrid`, from the phasor `error` of the shift, polarity and target and
    the layout's `PhaseGrid.layout_terms`."""
    terms = _unit_terms(layout, t, grid)
    signs, delay = layout_terms
    if terms:
        error = error * _cascade_phasor(np.concatenate([term[1] for term in terms]), signs, delay)
    loss = max(float(np.dot(grid.weights, 1.0 - error.real) / grid.weight_sum), 0.0)
    if not gradient:
        return loss
    dloss_dphase = grid.weights * error.imag / grid.weight_sum
    grad = np.zeros_like(t)
    for rows, _, _, part_gradient in terms:
        grad[rows] = part_gradient(dloss_dphase) * signs[rows, None]  # an anticausal section's phase is -phi
    return loss, grad


def direct_loss_and_grad(layout, w, const, target_phase, weights):
    """``f(u) -> (loss, dloss/du)`` for the direct parameterisation ``t = u / sqrt(1 + u^2)``.

    The objective `apfdsp.optim.lbfgs` minimises when the fit uses direct parameters (`apfdsp.model.Direct`).
    The chain rule through the map adds the factor :math:`dt/du = (1 + u^2)^{-3/2}` (docs/maths.md,
    section 5.2). `PhaseGrid.direct_objective` is the same on a grid shared by many layouts.

    Parameters
    ----------
    layout : layout
        The cascade's layout (see the module notes).
    w : ndarray, shape (F,)
        Frequencies in rad/sample.
    const : ndarray, shape (F,)
        Phase of the integer shift and polarity on `w`.
    target_phase, weights : ndarray, shape (F,)
        The target phase (radians) and its non-negative weights.

    Returns
    -------
    objective : callable
        ``objective(u) -> (loss, gradient)`` for an array `u` of the layout's shape (units x 3).

    Examples
    --------
    The gradient agrees with central differences (a layout of one plain second-order section):

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from apfdsp.ranges import DEFAULT_RANGES
    >>> layout = SimpleNamespace(n2=1, n1=0, structure="traditional", stretch=1, polarity=1, delay_shift=None,
    ...                          ranges=DEFAULT_RANGES, fs=48000.0, signs=lambda: None)
    >>> w = np.linspace(0.01, 3.0, 64)
    >>> target = -2.0 * np.arctan2(np.sin(w), 0.3 + np.cos(w))   # some smooth target phase
    >>> objective = direct_loss_and_grad(layout, w, np.zeros_like(w), target, np.ones_like(w))
    >>> u = np.array([[0.2, -0.4, 0.0]])
    >>> loss, grad = objective(u)
    >>> step = np.array([[1e-6, 0.0, 0.0]])
    >>> numeric = (objective(u + step)[0] - objective(u - step)[0]) / 2e-6
    >>> bool(np.isclose(grad[0, 0], numeric, rtol=1e-5))
    True
    """
    return _direct_objective(layout, PhaseGrid(w, target_phase, weights), np.exp(1j * (const - target_phase)))


def _direct_objective(layout, grid, error):
    layout_terms = grid.layout_terms(layout)  # the layout is fixed during a polish

    def objective(params):
        params = np.asarray(params, dtype=float)
        t = params / np.sqrt(1.0 + params * params)
        loss, grad_t = _loss(layout, t, grid, error, layout_terms, True)
        return loss, grad_t * (1.0 + params * params) ** -1.5

    return objective
