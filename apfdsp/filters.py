r"""Allpass sections: exact responses, unwrapped phase, group delay and SOS export.

Every function here is a pure function of arrays. The response functions use `autograd.numpy` only and
are differentiable with autograd; they are vectorised over sections x frequencies.

A section of order M (1 or 2) is described by the coefficients ``den = [d_1, ..., d_M]`` of its
denominator polynomial :math:`D(v) = 1 + d_1 v + \dots + d_M v^M` in the *warped, stretched* delay

.. math:: v = A(z) = \frac{a + z^{-K}}{1 + a z^{-K}},

(``warp`` = a, ``stretch`` = K; a = 0 and K = 1 give the traditional section). The section is the
allpass :math:`H(z) = v^M D(v^{-1}) / D(v)`.

Notes
-----
Exact unwrapped phase without `numpy.unwrap`: with :math:`\theta(\omega)` the phase lag of
:math:`A(e^{j\omega})`,

.. math:: \theta(\omega) = K\omega - 2\,\operatorname{atan2}(a \sin K\omega,\ 1 + a\cos K\omega),

and :math:`D` minimum phase, the section's phase is

.. math:: \phi(\omega) = -M\theta(\omega) - 2 \arg D(e^{-j\theta(\omega)}),

where :math:`\arg D` is continuous in :math:`\omega` because each factor :math:`1 - p e^{-j\theta}`,
:math:`|p| < 1`, has a positive real part. The group delay is
:math:`\tau = \theta'(\omega)\,(M + 2\,\tfrac{d}{d\theta}\arg D)` with
:math:`\theta'(\omega) = K(1 - a^2)/(1 + 2a\cos K\omega + a^2)`.

References
----------
.. [1] A. R. Bargum, S. Serafin, C. Erkut and J. D. Parker, "Differentiable Allpass Filters for Phase
   Response Estimation and Automatic Signal Alignment", Proc. DAFx 2023, arXiv:2306.00860
   (Eqs. 1-2 traditional, Eqs. 3-5 warped and warped + stretched sections).

Implements docs/maths.md, sections 1, 2 and 4 (the Thiran coefficient).
"""

import autograd.numpy as anp
import numpy as np
from autograd.extend import defvjp_argnums, primitive
from scipy import signal

__all__ = [
    "second_order_denominator",
    "warped_frequency",
    "allpass_phase",
    "allpass_group_delay",
    "allpass_section_sos",
    "thiran_coef",
]


def second_order_denominator(pole_radius, fc_hz, *, fs):
    r"""Denominator coefficients ``(d, c)`` of a second-order section, broadcast over sections.

    :math:`c = R^2`, :math:`d = -2R\cos(2\pi f_c / f_s)` ([1]_, Eq. 1).

    Parameters
    ----------
    pole_radius : array_like
        Pole radius R (0 <= R < 1).
    fc_hz : array_like
        Pole frequency in Hz.
    fs : float
        Sample rate in Hz.

    Returns
    -------
    den : ndarray, shape (..., 2)
        ``[d, c]`` per section. Differentiable w.r.t. `pole_radius` and `fc_hz`.

    Examples
    --------
    >>> import numpy as np
    >>> den = second_order_denominator(np.array([0.5, 0.9]), np.array([8000.0, 0.0]), fs=48000)
    >>> np.round(den, 12).tolist()   # one row [d, c] per section: d = -2 R cos(theta), c = R^2
    [[-0.5, 0.25], [-1.8, 0.81]]
    """
    d = -2.0 * pole_radius * anp.cos(2.0 * np.pi * fc_hz / fs)
    c = pole_radius * pole_radius
    return anp.stack([d, c], axis=-1)


def warped_frequency(w, warp=0.0, stretch=1):
    r"""Phase lag :math:`\theta(\omega)` of the warping allpass :math:`(a + z^{-K})/(1 + a z^{-K})`.

    Parameters
    ----------
    w : array_like, shape (F,)
        Digital frequencies in rad/sample.
    warp : array_like, shape (S,) or scalar
        Warping coefficient a, |a| < 1.
    stretch : int
        Stretch factor K >= 1.

    Returns
    -------
    theta : ndarray, shape (S, F) (or (F,) for a scalar `warp`)
        Monotone increasing, ``theta(0) = 0`` and ``theta(pi) = K pi``.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([0.0, np.pi / 2, np.pi])
    >>> np.round(warped_frequency(w) / np.pi, 12).tolist()            # no warp: theta = omega
    [0.0, 0.5, 1.0]
    >>> theta = warped_frequency(w, warp=-0.5)                        # a < 0 stretches the low band
    >>> bool(theta[1] > np.pi / 2), float(theta[2] / np.pi)
    (True, 1.0)
    """
    kw = stretch * anp.asarray(w)
    a = anp.expand_dims(warp, -1) if anp.ndim(warp) else warp
    return kw - 2.0 * anp.arctan2(a * anp.sin(kw), 1.0 + a * anp.cos(kw))


def _on_circle(w, den, warp, stretch):
    """Shared intermediates of phase, group delay and their gradients (plain numpy).

    Returns den (S, M), warp (S, 1), the warped delay z = exp(-j theta) (S, F), D(z) (S, F), and cos/sin
    of K w (F,). The vector-Jacobian product computes them again from the inputs (autograd's idiom: no
    state is kept between a forward call and its gradient).
    """
    den = np.atleast_2d(np.asarray(den, dtype=float))
    warp = (np.zeros(den.shape[0]) + np.asarray(warp, dtype=float))[:, None]
    kw = stretch * np.asarray(w, dtype=float)
    cos_kw, sin_kw = np.cos(kw), np.sin(kw)
    # exp(-j theta) = A(e^{jw}) = (a + e^{-jKw}) / (1 + a e^{-jKw}), computed without trigonometry.
    e = cos_kw - 1j * sin_kw
    z = (warp + e) / (1.0 + warp * e)
    d_poly = np.ones_like(z)
    z_power = np.ones_like(z)
    for k in range(den.shape[1]):
        z_power = z_power * z
        d_poly = d_poly + den[:, k : k + 1] * z_power
    return den, warp, z, d_poly, cos_kw, sin_kw


def _dphase_dtheta(den, z, d_poly):
    """d(phase)/d(theta) = -M + 2 Re(sum_k k d_k z^k / D) (negative section group delay in theta)."""
    z_power, weighted = np.ones_like(z), np.zeros_like(z)
    for k in range(den.shape[1]):
        z_power = z_power * z
        weighted = weighted + (k + 1) * den[:, k : k + 1] * z_power
    return -den.shape[1] + 2.0 * np.real(weighted / d_poly)


@primitive
def allpass_phase(w, den, warp=0.0, stretch=1):
    r"""Exact unwrapped phase of allpass sections, one row per section.

    Parameters
    ----------
    w : array_like, shape (F,)
        Digital frequencies in rad/sample, ``0 <= w <= pi``.
    den : array_like, shape (S, M)
        Denominator coefficients ``[d_1, ..., d_M]`` (M = 1 or 2) in the warped delay; the roots of
        ``1 + d_1 v + ... + d_M v^M`` must lie outside the unit circle (poles inside).
    warp : array_like, shape (S,) or scalar
        Warping coefficient a per section.
    stretch : int
        Stretch factor K shared by these sections.

    Returns
    -------
    phase : ndarray, shape (S, F)
        Phase in radians, continuous in `w`, 0 at w = 0.

    Notes
    -----
    :math:`\phi = -M\theta - 2\arg D(e^{-j\theta})` (module Notes). Differentiable w.r.t. `den` and
    `warp` with autograd, through exact hand-written vector-Jacobian products:
    :math:`\partial\phi/\partial d_k = -2\,\Im(z^k / D)` with :math:`z = e^{-j\theta}`, and
    :math:`\partial\phi/\partial a = \partial\phi/\partial\theta \cdot
    (-2\sin K\omega / (1 + 2a\cos K\omega + a^2))`.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.signal import freqz
    >>> w = np.linspace(0, np.pi, 64)
    >>> phase = allpass_phase(w, [[-1.2, 0.81]])[0]
    >>> _, h = freqz([0.81, -1.2, 1.0], [1.0, -1.2, 0.81], worN=w)
    >>> bool(np.allclose(np.exp(1j * phase), h))
    True
    """
    den, warp, _, d_poly, cos_kw, sin_kw = _on_circle(w, den, warp, stretch)
    theta = stretch * np.asarray(w, dtype=float) - 2.0 * np.arctan2(warp * sin_kw, 1.0 + warp * cos_kw)
    return -den.shape[1] * theta - 2.0 * np.angle(d_poly)


def _phase_vjp(argnums, ans, args, kwargs):
    """Vector-Jacobian products of `allpass_phase` w.r.t. den (argnum 1) and warp (argnum 2)."""
    w, den = args[0], args[1]
    warp = args[2] if len(args) > 2 else kwargs.get("warp", 0.0)
    stretch = args[3] if len(args) > 3 else kwargs.get("stretch", 1)
    den_arr, warp_arr, z, d_poly, cos_kw, sin_kw = _on_circle(w, den, warp, stretch)
    jacobians = {}
    if 1 in argnums:
        ratio, columns = 1.0 / d_poly, []
        for _ in range(den_arr.shape[1]):
            ratio = ratio * z
            columns.append(-2.0 * np.imag(ratio))  # d phase / d d_k = -2 Im(z^k / D)
        jacobians[1] = (np.stack(columns, axis=1), np.shape(den))  # (S, M, F)
    if 2 in argnums:
        dtheta_da = -2.0 * sin_kw / (1.0 + 2.0 * warp_arr * cos_kw + warp_arr**2)
        jacobians[2] = (_dphase_dtheta(den_arr, z, d_poly) * dtheta_da, np.shape(warp))  # (S, F)

    def vjp(g):
        g = np.atleast_2d(g)
        out = []
        for argnum in argnums:
            jac, shape = jacobians[argnum]
            if argnum == 1:
                out.append(np.reshape(np.sum(jac * g[:, None, :], axis=-1), shape))
            else:
                out.append(np.reshape(np.sum(jac * g, axis=-1), shape) if shape else np.sum(jac * g))
        return tuple(out)

    return vjp


defvjp_argnums(allpass_phase, _phase_vjp)


def allpass_group_delay(w, den, warp=0.0, stretch=1):
    r"""Exact group delay of allpass sections in samples, one row per section.

    Parameters
    ----------
    w : array_like, shape (F,)
        Digital frequencies in rad/sample, ``0 <= w <= pi``.
    den : array_like, shape (S, M)
        Denominator coefficients ``[d_1, ..., d_M]`` (M = 1 or 2) in the warped delay, poles inside the
        unit circle (as for `allpass_phase`).
    warp : array_like, shape (S,) or scalar
        Warping coefficient a per section.
    stretch : int
        Stretch factor K shared by these sections.

    Returns
    -------
    tau : ndarray, shape (S, F)
        :math:`-d\phi/d\omega` in samples (positive).

    Notes
    -----
    :math:`\tau = -\tfrac{\partial\phi}{\partial\theta}\,\theta'(\omega)` with
    :math:`\tfrac{\partial\phi}{\partial\theta} = -M + 2\Re(\sum_k k d_k z^k / D)` and
    :math:`\theta'(\omega) = K(1 - a^2)/(1 + 2a\cos K\omega + a^2)`. For a traditional section this is
    the sum over its poles :math:`re^{j\vartheta}` of :math:`(1 - r^2)/(1 - 2r\cos(\omega - \vartheta) + r^2)`.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import signal
    >>> w = np.linspace(0.1, 3.0, 7)
    >>> den = np.array([[-1.2, 0.81]])                      # one second-order section
    >>> _, tau = signal.group_delay(([0.81, -1.2, 1.0], [1.0, -1.2, 0.81]), w=w)
    >>> bool(np.allclose(allpass_group_delay(w, den)[0], tau))
    True
    """
    den_arr, warp_arr, z, d_poly, cos_kw, _ = _on_circle(w, den, warp, stretch)
    dtheta_dw = stretch * (1.0 - warp_arr**2) / (1.0 + 2.0 * warp_arr * cos_kw + warp_arr**2)
    return -_dphase_dtheta(den_arr, z, d_poly) * dtheta_dw


def thiran_coef(frac_delay):
    r"""Coefficient b of the first-order Thiran allpass :math:`(b + z^{-1})/(1 + b z^{-1})`.

    It has a group delay of exactly `frac_delay` samples at DC: :math:`b = (1 - d)/(1 + d)`.
    Stable for ``frac_delay > 0``; most accurate for 0.5 <= d <= 1.5.

    Parameters
    ----------
    frac_delay : float
        Delay d in samples (> 0).

    Returns
    -------
    float
        The coefficient b.

    Examples
    --------
    >>> thiran_coef(1.0), round(thiran_coef(0.5), 12)     # b = (1 - d)/(1 + d)
    (0.0, 0.333333333333)
    """
    return (1.0 - frac_delay) / (1.0 + frac_delay)


def _warped_polys(den, warp):
    """Numerator and denominator (in z^-1, length M+1) of one warped section, before stretching."""
    a = float(warp)
    if len(den) == 1:
        beta = (den[0] + a) / (1.0 + den[0] * a)  # (b + a) / (1 + b a)
        return np.array([beta, 1.0]), np.array([1.0, beta])
    d, c = den
    # Multiplied-out warped section (docs/maths.md, section 2.2; [1]_, Eq. 3).
    num = np.array([c + a * d + a * a, 2 * a * c + d * (1 + a * a) + 2 * a, c * a * a + a * d + 1.0])
    den_z = np.array([1.0 + a * d + c * a * a, 2 * a + d * (1 + a * a) + 2 * a * c, a * a + a * d + c])
    return num / den_z[0], den_z / den_z[0]


def allpass_section_sos(den, warp=0.0, stretch=1):
    r"""Second-order sections of one (warped, stretched) allpass section.

    Parameters
    ----------
    den : array_like, shape (M,)
        Denominator coefficients ``[d_1, ..., d_M]`` in the warped delay (M = 1 or 2).
    warp : float
        Warping coefficient a, |a| < 1.
    stretch : int
        Stretch factor K >= 1.

    Returns
    -------
    sos : ndarray, shape (n, 6)
        One row for K = 1. For K > 1 the section has order M K and is exported through its poles and
        zeros with `scipy.signal.zpk2sos` (never by expanding long polynomials): the poles are the K-th
        roots of the roots u of :math:`a_0 u^M + a_1 u^{M-1} + \dots` in :math:`u = z^K`, the zeros
        their conjugate reciprocals.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import signal
    >>> sos = allpass_section_sos(np.array([-1.2, 0.81]), warp=0.3)
    >>> w = np.linspace(0, np.pi, 5)
    >>> _, h = signal.sosfreqz(sos, worN=w)
    >>> phase = allpass_phase(w, np.array([[-1.2, 0.81]]), 0.3)[0]
    >>> bool(np.allclose(np.abs(h), 1)), bool(np.allclose(h, np.exp(1j * phase)))
    (True, True)
    """
    den = np.asarray(den, dtype=float)
    num, den_z = _warped_polys(den, warp)
    if stretch == 1:
        row = np.zeros(6)
        row[: num.size], row[3 : 3 + den_z.size] = num, den_z
        return row[None, :]
    kth = np.exp(2j * np.pi * np.arange(stretch) / stretch)

    def kth_roots(poly):
        """Roots in z of poly(u = z^K) (leading zero coefficients drop roots at infinity)."""
        roots_u = np.roots(poly).astype(complex)
        return (roots_u[:, None] ** (1.0 / stretch) * kth[None, :]).ravel()

    # Multiplied by z^{MK}: num(z) = b0 z^{MK} + b1 z^{(M-1)K} + ...; a vanishing b0 comes with poles
    # at the origin (a pure delay factor z^-d), which zpk2sos cannot express: export it as delay rows.
    poles, zeros = kth_roots(den_z), kth_roots(num)
    poles = poles[np.abs(poles) > 0]
    n_delay = len(den) * stretch - len(poles)
    lead = num[np.flatnonzero(num)[0]]
    rows = [signal.zpk2sos(zeros, poles, lead / den_z[0])] if len(poles) else []
    if not rows:
        rows.append(np.array([[lead / den_z[0], 0.0, 0.0, 1.0, 0.0, 0.0]]))
    rows += [np.array([[0.0, 0.0, 1.0, 1.0, 0.0, 0.0]])] * (n_delay // 2)
    rows += [np.array([[0.0, 1.0, 0.0, 1.0, 0.0, 0.0]])] * (n_delay % 2)
    return np.concatenate(rows)
