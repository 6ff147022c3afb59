r"""Differentiable second-order-section IIR filtering (an autograd primitive).

`sosfilt` runs exactly :func:`scipy.signal.sosfilt` forward and has an exact reverse-mode
gradient computed with filtering passes run backwards in time (the adjoint of an IIR filter is
the same filter applied time-reversed). It is differentiable w.r.t. ``sos``, ``x`` and ``zi``.

Implements docs/maths.md, section 9.8 (used by the training of section 9.6); the module's place in the
package is docs/architecture.md, section 2.10.
"""

import numbers

import numpy as np
import scipy.signal
from autograd.extend import defvjp_argnums, primitive
from autograd.tracer import getval, isbox

from .exceptions import ParameterError

__all__ = ["sosfilt"]

def sosfilt(sos, x, *, axis=-1, zi=None):
    r"""Filter `x` with a cascade of second-order sections, differentiably.

    Parameters
    ----------
    sos : array_like, shape (n_sections, 6)
        Second-order sections ``[b0, b1, b2, 1, a1, a2]`` as in :func:`scipy.signal.sosfilt`.
        Column 3 (``a0``) must be exactly 1.
    x : array_like, shape (..., n, ...)
        Real input signal; it is filtered along `axis`. Other axes are independent channels.
    axis : int, optional
        The time axis of `x`. Default is -1.
    zi : array_like, shape (n_sections, ..., 2, ...), optional
        Initial states of the sections in scipy's convention: `x`'s shape with ``x.shape[axis]``
        replaced by 2, preceded by ``n_sections``. If given, the final states are returned too.

    Returns
    -------
    y : ndarray of float64
        The filtered signal, same shape as `x`. It is bit-identical to
        ``scipy.signal.sosfilt(sos, x, axis=axis, zi=zi)``: that call does the work.
    zf : ndarray of float64, shape like `zi`
        Final states. Returned only when `zi` is given, as ``(y, zf)``.

    Raises
    ------
    TypeError
        If an input is not a real numeric array.
    NotImplementedError
        If an input is complex (filter the real and imaginary parts separately).
    ParameterError
        If `sos`, `axis` or `zi` has a bad shape or value, or `x` has no samples.

    See Also
    --------
    scipy.signal.sosfilt : The forward computation.

    Notes
    -----
    Differentiable (reverse mode, first order) w.r.t. `sos`, `x` and `zi`. Both ``y`` and ``zf``
    are differentiable outputs. The gradient for column 3 of `sos` is always 0 because ``a0 = 1``
    is a constraint, not a parameter. Forward mode (``make_jvp``) and second derivatives are not
    implemented. All arithmetic is float64.

    **Single section.** Scipy uses transposed direct form II with states :math:`s_1, s_2`:

    .. math::

        v[n] = b_0 u[n] + s_1[n], \quad
        s_1[n+1] = b_1 u[n] - a_1 v[n] + s_2[n], \quad
        s_2[n+1] = b_2 u[n] - a_2 v[n],

    with :math:`s[0] = z_i`. Eliminating the states gives
    :math:`A v = B u + d`, that is

    .. math:: v = \frac{B}{A} u + \frac{1}{A} d, \qquad d[0] = z_{i,0},\; d[1] = z_{i,1},\;
              d[n \ge 2] = 0,

    where :math:`B, A` act as causal (lower-triangular Toeplitz) operators on the N samples.
    Let :math:`g = \partial L / \partial v` and let :math:`q = A^{-T} g`, the all-pole filter
    :math:`1/A` run backwards in time. Then, since :math:`dv = A^{-1}(dB\,u - dA\,v + B\,du + dd)`:

    .. math::

        \frac{\partial L}{\partial b_k} = \sum_n q[n]\, u[n-k], \qquad
        \frac{\partial L}{\partial a_k} = -\sum_n q[n]\, v[n-k], \qquad
        \frac{\partial L}{\partial u} = B^T q, \qquad
        \frac{\partial L}{\partial z_i} = (q[0],\, q[1]),

    where :math:`(B^T q)[m] = \sum_k b_k q[m+k]` is the FIR :math:`B` run backwards in time, so
    :math:`\partial L / \partial u` is :math:`B/A` applied time-reversed.

    **Final state.** Filtering the input extended by two zeros gives :math:`v_e` of length
    N + 2 with :math:`z_{f,0} = v_e[N]` and :math:`z_{f,1} = v_e[N+1] + a_1 v_e[N]`. A cotangent
    :math:`h` of :math:`z_f` therefore adds :math:`h_0 + a_1 h_1` and :math:`h_1` to
    :math:`g` at samples N and N + 1 of :math:`v_e`, and :math:`h_1 z_{f,0}` to
    :math:`\partial L / \partial a_1`; the formulas above then run over N + 2 samples.

    **Cascade.** Section i maps :math:`u_i` to :math:`v_i = u_{i+1}` with its own state
    :math:`z_{i}`. The section inputs :math:`u_1 \ldots u_{n-1}` are recomputed with one
    single-section ``scipy.signal.sosfilt`` pass each (:math:`u_n = y` is reused). The cotangents go
    back section by section: :math:`q_i = A_i^{-T} B_{i+1}^T q_{i+1}`, one pass of the section
    :math:`[B_{i+1}, A_i]` over the time-reversed signal, and :math:`\partial L/\partial x =
    B_0^T q_0`. With states, every section input is extended by two zeros (not by the previous
    section's ringing), so the cotangent of those two samples is dropped and section i's
    :math:`z_f` cotangent takes their place. That replacement is applied through the initial
    state of the reversed pass, which adds to samples 0 and 1 exactly as :math:`d` does above.
    The lagged sums are dot products of shifted, flattened arrays, summed over all channels at once.

    **Cost.** A gradient w.r.t. `sos` costs :math:`2 n_{sections} - 1` single-section passes,
    plus a few dot products per section. A single second-order recursion is limited by
    latency and costs about as much as a cascade of four sections in one call. The forward
    cascade overlaps its sections in this way, and the per-section passes cannot. For 8 sections the
    gradient therefore costs about 10 forward calls. Without `zi`, a gradient w.r.t. `x`
    alone is one time-reversed cascade call, the same cost as the forward call.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.signal
    >>> import autograd
    >>> import autograd.numpy as anp
    >>> from apfdsp.tdfilter import sosfilt
    >>> sos = scipy.signal.butter(4, 0.2, output="sos")
    >>> x = np.random.default_rng(0).standard_normal(256)
    >>> np.array_equal(sosfilt(sos, x), scipy.signal.sosfilt(sos, x))
    True
    >>> energy = lambda s: anp.sum(sosfilt(s, x) ** 2)
    >>> g = autograd.grad(energy)(sos)
    >>> e = np.zeros_like(sos)
    >>> e[1, 4] = 1e-6
    >>> fd = (energy(sos + e) - energy(sos - e)) / 2e-6
    >>> bool(np.isclose(g[1, 4], fd, rtol=1e-6)), bool(np.all(g[:, 3] == 0))
    (True, True)
    """
    sos = _check_sos(sos)
    x = _check_real(x, "x")
    ndim = np.ndim(getval(x))
    if ndim == 0:
        raise ParameterError("x must have at least one dimension (time along `axis`), got a scalar")
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -ndim <= axis < ndim:
        raise ParameterError(
            f"axis must be an integer in [{-ndim}, {ndim - 1}] for x with {ndim} dimensions, "
            f"got {axis!r}"
        )
    axis = int(axis) % ndim
    x_shape = np.shape(getval(x))
    if x_shape[axis] < 1:
        raise ParameterError(f"x has no samples along axis={axis!r} (shape {x_shape!r})")
    if zi is None:
        return _sosfilt(sos, x, axis)
    zi = _check_real(zi, "zi")
    n_sections = np.shape(getval(sos))[0]
    expected = (n_sections,) + x_shape[:axis] + (2,) + x_shape[axis + 1:]
    if np.shape(getval(zi)) != expected:
        raise ParameterError(
            f"zi must have shape {expected!r} (n_sections, then x's shape with axis {axis} "
            f"replaced by 2), got {np.shape(getval(zi))!r}"
        )
    return _sosfilt_zi(sos, x, zi, axis)


# ----------------------------------------------------------------------------- validation


def _check_real(value, name):
    """Check that `value` is a real numeric array; return it as float64 unless it is traced."""
    raw = np.asarray(getval(value))
    if np.iscomplexobj(raw):
        raise NotImplementedError(
            f"{name} is complex; only real signals are supported (filter the real and imaginary "
            "parts separately)"
        )
    if not (np.issubdtype(raw.dtype, np.number) or raw.dtype == bool):
        raise TypeError(f"{name} must be a real numeric array, got dtype {raw.dtype}")
    if isbox(value):
        return value
    return np.asarray(raw, dtype=np.float64, order="C")


def _check_sos(sos):
    """Check shape ``(n_sections, 6)``, finiteness and ``a0 == 1`` exactly (as scipy does)."""
    sos = _check_real(sos, "sos")
    raw = np.asarray(getval(sos))
    if raw.ndim == 1 and not isbox(sos):
        sos = raw = np.atleast_2d(raw)
    if raw.ndim != 2 or raw.shape[1] != 6 or raw.shape[0] < 1:
        raise ParameterError(
            f"sos must have shape (n_sections, 6) with n_sections >= 1, got {raw.shape!r}"
        )
    if not np.all(np.isfinite(raw)):
        raise ParameterError("sos contains NaN or Inf coefficients")
    if not np.all(raw[:, 3] == 1):
        raise ParameterError(
            f"sos[:, 3] (a0) must be exactly 1, got {raw[:, 3]!r}; divide each row by its a0 first"
        )
    return sos


# ----------------------------------------------------------------------------- primitives


@primitive
def _sosfilt(sos, x, axis):
    return scipy.signal.sosfilt(sos, x, axis=axis)


@primitive
def _sosfilt_zi(sos, x, zi, axis):
    y, zf = scipy.signal.sosfilt(sos, x, axis=axis, zi=zi)
    return y, zf


def _make_vjp(argnums, ans, args, kwargs):
    if len(args) == 4:
        sos, x, zi, axis = args
        y, zf = ans
    else:
        (sos, x, axis), zi, y, zf = args, None, ans, None
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    need_sos, need_x, need_zi = 0 in argnums, 1 in argnums, 2 in argnums

    def vjp(g):
        gy, gzf = (g[0], g[1]) if zi is not None else (g, None)
        x2, shape = _to_rows(x, axis)
        y2, _ = _to_rows(y, axis)
        g2, _ = _to_rows(gy, axis)
        zi2, zf2, gzf2 = (None if z is None else _state_to_rows(z, axis) for z in (zi, zf, gzf))
        g_sos, g_x2, g_zi2 = _adjoint(sos, x2, zi2, y2, zf2, g2, gzf2, need_sos, need_x, need_zi)
        out = {0: g_sos}
        if need_x:
            out[1] = np.moveaxis(g_x2.reshape(shape), -1, axis)
        if need_zi:
            zshape = (sos.shape[0],) + shape[:-1] + (2,)
            out[2] = np.moveaxis(g_zi2.reshape(zshape), -1, axis + 1)
        return tuple(out[k] for k in argnums)

    return vjp


defvjp_argnums(_sosfilt, _make_vjp)
defvjp_argnums(_sosfilt_zi, _make_vjp)


# ----------------------------------------------------------------------------- layout helpers


def _to_rows(a, axis):
    """Move `axis` last and flatten the rest: a C-contiguous ``(channels, n)`` float64 array."""
    a = np.moveaxis(np.asarray(a, dtype=np.float64), axis, -1)
    return np.ascontiguousarray(a.reshape(-1, a.shape[-1])), a.shape


def _state_to_rows(z, axis):
    """Scipy state layout ``(n_sections, ..., 2, ...)`` -> ``(n_sections, channels, 2)``."""
    z = np.moveaxis(np.asarray(z, dtype=np.float64), axis + 1, -1)
    return np.ascontiguousarray(z.reshape(z.shape[0], -1, 2))


def _lagdot(q, u, k):
    r"""Sum over channels b and samples n of ``q[b, n] u[b, n-k]`` for ``(channels, n)`` arrays."""
    n = q.shape[1]
    if k >= n:
        return 0.0
    if k == 0:
        return float(np.dot(q.ravel(), u.ravel()))
    s = np.dot(q.ravel()[k:], u.ravel()[:-k])
    if q.shape[0] > 1:  # remove the pairs that straddle two channels in the flattened arrays
        s -= np.sum(q[1:, :k] * u[:-1, n - k:])
    return float(s)


def _fir_adjoint(q, b, scratch):
    """``(B^T q)[m] = b0 q[m] + b1 q[m+1] + b2 q[m+2]`` along the last axis.

    `scratch`, an array of q's shape, is overwritten.
    """
    du = b[0] * q
    for k in (1, 2):
        tmp = np.multiply(q[:, k:], b[k], out=scratch[:, :-k])
        du[:, :-k] += tmp
    return du


def _run(sos_rows, j, u, zi=None):
    """Filter rows `u` with row j of `sos_rows`, starting from state `zi` (channels, 2) or zero."""
    if zi is None:
        return scipy.signal.sosfilt(sos_rows[j:j + 1], u, axis=-1)
    return scipy.signal.sosfilt(sos_rows[j:j + 1], u, axis=-1, zi=zi[None])[0]


# ----------------------------------------------------------------------------- adjoint


def _adjoint(sos, x2, zi2, y2, zf2, g2, gzf2, need_sos, need_x, need_zi):
    """Gradients w.r.t. (sos, x2, zi2) in the row layout; entries not needed are None.

    Shapes: x2, y2, g2 ``(channels, n)``; zi2, zf2, gzf2 ``(n_sections, channels, 2)`` or None.
    """
    if zi2 is None and not need_sos:
        # x only: dL/dx = H^T g, one cascade run backwards in time.
        rev = np.ascontiguousarray(sos[::-1])
        return None, scipy.signal.sosfilt(rev, g2[:, ::-1], axis=-1)[:, ::-1], None

    n_sections = sos.shape[0]
    n_ch, n = x2.shape
    pad = 0 if zi2 is None else 2  # with states, signals are extended by two samples (Notes)
    if pad and gzf2 is None:
        gzf2 = np.zeros((n_sections, n_ch, 2))

    def extend(w):
        return np.concatenate([w, np.zeros((n_ch, pad))], axis=1) if pad else w

    if need_sos:
        # Forward chain: us[i] is the (extended) input of section i, us[n_sections] = y.
        # Section i's extended output differs from us[i + 1] only at sample n: ends[i].
        # One workspace for the intermediates: far fewer fresh memory pages than n arrays.
        inner = np.empty((n_sections - 1, n_ch, n + pad))
        us, ends = [extend(x2)], []
        for i in range(n_sections - 1):
            inner[i] = _run(sos, i, us[-1], None if zi2 is None else zi2[i])
            if pad:
                ends.append(inner[i][:, n].copy())
                inner[i][:, n:] = 0.0
            us.append(inner[i])
        us.append(extend(y2))
        if pad:
            ends.append(zf2[-1][:, 0])  # zf_0 = v_e[n] (Notes)

    # Backward chain in reversed time: row j maps q_{i+1} to q_i (i = n_sections-1-j), being
    # [B_{i+1}, A_i] with B_{n_sections} = 1. The zf cotangent enters as the row's initial state.
    rows = np.empty((n_sections, 6))
    rows[:, 3:] = sos[::-1, 3:]
    rows[0, :3] = (1.0, 0.0, 0.0)
    rows[1:, :3] = sos[::-1, :3][:-1]
    g_sos = np.zeros((n_sections, 6)) if need_sos else None
    g_zi2 = np.zeros((n_sections, n_ch, 2)) if need_zi else None
    r = extend(g2)[:, ::-1]
    q = np.empty((n_ch, n + pad))  # q_i in forward time, reused for every section
    for j in range(n_sections):
        i = n_sections - 1 - j
        state = None
        if pad:
            # Cotangent of v_e at samples n+1, n (reversed positions 0, 1), replacing B_{i+1} r.
            h, a1 = gzf2[i], sos[i, 4]
            inject = np.stack([h[:, 1], h[:, 0] + a1 * h[:, 1]], axis=1)
            b = rows[j, :3]
            state = inject - np.stack([b[0] * r[:, 0], b[0] * r[:, 1] + b[1] * r[:, 0]], axis=1)
        r = _run(rows, j, r, state)
        if need_sos or need_zi or (need_x and i == 0):
            np.copyto(q, r[:, ::-1])
        if need_sos:
            for k in range(3):
                g_sos[i, k] = _lagdot(q, us[i], k)
            for k in (1, 2):
                g_sos[i, 3 + k] = -_lagdot(q, us[i + 1], k)
            if pad:
                g_sos[i, 4] += np.sum((gzf2[i][:, 1] - q[:, n + 1]) * ends[i])
        if need_zi:
            g_zi2[i] = q[:, :2]
    g_x2 = _fir_adjoint(q, sos[0, :3], r)[:, :n] if need_x else None
    return g_sos, g_x2, g_zi2
