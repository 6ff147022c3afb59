"""Tests of apfdsp.filters: section phase, group delay and SOS export against scipy and the paper's formulas."""

import numpy as np
import pytest
from scipy import signal

from apfdsp.filters import (
    allpass_group_delay,
    allpass_phase,
    allpass_section_sos,
    second_order_denominator,
    thiran_coef,
    warped_frequency,
)

FS = 48000.0
W = np.linspace(0.0, np.pi, 1537)  # includes DC and Nyquist

# (den, warp, stretch): first- and second-order sections, traditional / warped / stretched.
SECTIONS = [
    pytest.param([0.6], 0.0, 1, id="1st-traditional"),
    pytest.param([-0.85], 0.0, 1, id="1st-traditional-neg"),
    pytest.param([0.6], 0.4, 1, id="1st-warped"),
    pytest.param([-0.3], 0.0, 3, id="1st-stretched"),
    pytest.param([0.5], -0.3, 4, id="1st-warped-stretched"),
    pytest.param([-1.2, 0.81], 0.0, 1, id="2nd-traditional"),
    pytest.param([1.5, 0.64], 0.0, 1, id="2nd-traditional-high"),
    pytest.param([-1.2, 0.81], 0.5, 1, id="2nd-warped"),
    pytest.param([-1.2, 0.81], -0.6, 1, id="2nd-warped-neg"),
    pytest.param([-1.2, 0.81], 0.0, 2, id="2nd-stretched"),
    pytest.param([-0.4, 0.49], 0.3, 3, id="2nd-warped-stretched"),
    pytest.param([-1.6, 0.7225], -0.2, 8, id="2nd-warped-stretched-K8"),
]


def _den_pair(den):
    return np.asarray(den, float)[None, :]


def _warped_reference_tf(den, warp, stretch):
    """(b, a) of one section, built independently by substituting v = (a + z^-K)/(1 + a z^-K).

    H(v) = v^M D(1/v) / D(v) with D(v) = 1 + d_1 v + ... + d_M v^M; numerator and denominator are
    multiplied by (1 + a u)^M (u = z^-K) and expanded with polynomial products in u, then upsampled by K.
    """
    d = np.r_[1.0, np.asarray(den, float)]  # D coefficients, ascending powers of v
    order = d.size - 1
    lin_num = np.array([warp, 1.0])  # a + u (ascending powers of u)
    lin_den = np.array([1.0, warp])  # 1 + a u
    num, den_u = np.zeros(order + 1), np.zeros(order + 1)
    for k in range(order + 1):
        # v^k (1 + a u)^M -> (a + u)^k (1 + a u)^(M - k)
        term = np.array([1.0])
        for _ in range(k):
            term = np.convolve(term, lin_num)
        for _ in range(order - k):
            term = np.convolve(term, lin_den)
        den_u += d[k] * term  # D(v) = sum_k d_k v^k
        num += d[order - k] * term  # v^M D(1/v) = sum_k d_{M-k} v^k
    up = lambda p: np.concatenate([[c] + [0.0] * (stretch - 1) for c in p])[: stretch * order + 1]
    return up(num) / den_u[0], up(den_u) / den_u[0]


# -- pinned values from the paper's formulas -----------------------------------------------------------


@pytest.mark.parametrize(
    ("radius", "fc_hz", "expected"),
    [
        (0.9, 12000.0, [0.0, 0.81]),  # fc = fs/4: d = -2 R cos(pi/2) = 0
        (0.5, 0.0, [-1.0, 0.25]),  # fc = 0: d = -2R
        (0.8, 24000.0, [1.6, 0.64]),  # fc = fs/2: d = +2R
        (0.9, 8000.0, [-0.9, 0.81]),  # cos(pi/3) = 1/2
        (0.0, 1000.0, [0.0, 0.0]),
    ],
)
def test_second_order_denominator_pinned(radius, fc_hz, expected):
    np.testing.assert_allclose(second_order_denominator(radius, fc_hz, fs=FS), expected, rtol=0, atol=1e-15)


def test_second_order_denominator_broadcasts():
    den = second_order_denominator(np.array([0.9, 0.5]), np.array([8000.0, 0.0]), fs=FS)
    np.testing.assert_allclose(den, [[-0.9, 0.81], [-1.0, 0.25]], atol=1e-15)


@pytest.mark.parametrize("stretch", [1, 2, 5])
@pytest.mark.parametrize("warp", [0.0, 0.7, -0.9])
def test_warped_frequency_is_phase_lag_of_warping_allpass(warp, stretch):
    theta = warped_frequency(W, warp, stretch)
    b = np.r_[warp, np.zeros(stretch - 1), 1.0]
    a = np.r_[1.0, np.zeros(stretch - 1), warp]
    _, h = signal.freqz(b, a, worN=W)
    np.testing.assert_allclose(np.exp(-1j * theta), h, rtol=0, atol=1e-13)
    assert theta[0] == 0.0
    np.testing.assert_allclose(theta[-1], stretch * np.pi, rtol=1e-14)
    assert np.all(np.diff(theta) > 0)


def test_warped_frequency_vectorised_over_sections():
    warps = np.array([0.0, 0.3, -0.5])
    theta = warped_frequency(W, warps, 2)
    assert theta.shape == (3, W.size)
    for row, warp in zip(theta, warps):
        np.testing.assert_array_equal(row, warped_frequency(W, warp, 2))


@pytest.mark.parametrize(("frac", "coef"), [(1.0, 0.0), (0.5, 1 / 3), (1.5, -0.2), (0.3, 0.7 / 1.3)])
def test_thiran_coef_pinned_and_dc_delay(frac, coef):
    b = thiran_coef(frac)
    assert b == pytest.approx(coef, rel=1e-15, abs=1e-15)
    # A first-order allpass (b + z^-1)/(1 + b z^-1) has DC group delay (1 - b)/(1 + b).
    _, gd = signal.group_delay(([b, 1.0], [1.0, b]), w=[0.0])
    assert gd[0] == pytest.approx(frac, rel=1e-12)


# -- SOS export --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("den", "warp", "stretch"), SECTIONS)
def test_section_sos_shape_and_allpass(den, warp, stretch):
    sos = allpass_section_sos(den, warp, stretch)
    order = len(den) * stretch
    assert sos.shape == ((order + 1) // 2, 6)
    np.testing.assert_array_equal(sos[:, 3], 1.0)
    _, h = signal.sosfreqz(sos, worN=W)
    np.testing.assert_allclose(np.abs(h), 1.0, rtol=0, atol=1e-12)
    _, poles, _ = signal.sos2zpk(sos)
    assert np.all(np.abs(poles) < 1)


@pytest.mark.parametrize(("den", "warp", "stretch"), [p for p in SECTIONS if p.values[2] <= 4])
def test_section_sos_equals_independent_expansion(den, warp, stretch):
    """Low orders only: sos2tf and polynomial expansion are accurate there."""
    b_ref, a_ref = _warped_reference_tf(den, warp, stretch)
    b, a = signal.sos2tf(allpass_section_sos(den, warp, stretch))
    assert np.all(b[b_ref.size :] == 0) and np.all(a[a_ref.size :] == 0)  # odd orders: zero padding
    np.testing.assert_allclose(b[: b_ref.size], b_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a[: a_ref.size], a_ref, rtol=0, atol=1e-12)


def test_section_sos_pinned_traditional_row():
    # Eq. 1 of the paper: H(z) = (c + d z^-1 + z^-2) / (1 + d z^-1 + c z^-2).
    np.testing.assert_array_equal(allpass_section_sos([-0.9, 0.81]), [[0.81, -0.9, 1.0, 1.0, -0.9, 0.81]])
    np.testing.assert_array_equal(allpass_section_sos([0.25]), [[0.25, 1.0, 0.0, 1.0, 0.25, 0.0]])


@pytest.mark.parametrize(
    ("den", "warp", "stretch"),
    [([0.0], 0.0, 3), ([0.5], -0.5, 2), ([0.0, 0.0], 0.0, 2)],
    ids=["coef0-K3", "coef-eq-minus-warp-K2", "radius0-K2"],
)
def test_section_sos_pure_delay_stretched(den, warp, stretch):
    sos = allpass_section_sos(den, warp, stretch)
    _, h = signal.sosfreqz(sos, worN=W)
    np.testing.assert_allclose(np.abs(h), 1.0, atol=1e-12)


# -- exact phase and group delay --------------------------------------------------------------------


@pytest.mark.parametrize(("den", "warp", "stretch"), SECTIONS)
def test_allpass_phase_matches_freqz_of_sos(den, warp, stretch):
    phase = allpass_phase(W, _den_pair(den), warp, stretch)
    assert phase.shape == (1, W.size)
    _, h = signal.sosfreqz(allpass_section_sos(den, warp, stretch), worN=W)
    np.testing.assert_allclose(np.exp(1j * phase[0]), h, rtol=0, atol=1e-10)
    # Continuous (not wrapped), zero at DC, -M K pi at Nyquist, monotone non-increasing.
    assert phase[0, 0] == 0.0
    np.testing.assert_allclose(phase[0, -1], -len(den) * stretch * np.pi, rtol=1e-12)
    assert np.max(np.abs(np.diff(phase[0]))) < np.pi / 2
    assert np.all(np.diff(phase[0]) <= 1e-15)


@pytest.mark.parametrize(("den", "warp", "stretch"), SECTIONS)
def test_allpass_group_delay_matches_scipy_and_finite_difference(den, warp, stretch):
    sos = allpass_section_sos(den, warp, stretch)
    w = W[1:-1]
    tau = allpass_group_delay(w, _den_pair(den), warp, stretch)[0]
    tau_scipy = sum(signal.group_delay((row[:3], row[3:]), w=w)[1] for row in sos)
    np.testing.assert_allclose(tau, tau_scipy, rtol=1e-6)
    h = 1e-6
    fd = -(allpass_phase(w + h, _den_pair(den), warp, stretch) - allpass_phase(w - h, _den_pair(den), warp, stretch))
    np.testing.assert_allclose(tau, fd[0] / (2 * h), rtol=1e-6)
    assert np.all(tau > 0)


def test_group_delay_traditional_pole_sum_formula():
    """Notes of allpass_group_delay: sum over poles of (1 - r^2)/(1 - 2 r cos(w - theta) + r^2)."""
    radius, angle = 0.9, 0.4
    den = [[-2 * radius * np.cos(angle), radius**2]]
    expected = sum(
        (1 - radius**2) / (1 - 2 * radius * np.cos(W - s * angle) + radius**2) for s in (1, -1)
    )
    np.testing.assert_allclose(allpass_group_delay(W, den)[0], expected, rtol=1e-13)


def test_phase_vectorised_over_sections_with_warp_array():
    den = np.array([[-1.2, 0.81], [0.3, 0.25], [1.0, 0.5]])
    warps = np.array([0.0, 0.4, -0.7])
    phase = allpass_phase(W, den, warps, 2)
    tau = allpass_group_delay(W, den, warps, 2)
    assert phase.shape == tau.shape == (3, W.size)
    for i in range(3):
        np.testing.assert_array_equal(phase[i], allpass_phase(W, den[i : i + 1], warps[i], 2)[0])
        np.testing.assert_allclose(tau[i], allpass_group_delay(W, den[i : i + 1], warps[i], 2)[0], rtol=1e-14)


# -- gradients -------------------------------------------------------------------------------------

W_GRAD = np.linspace(0.01, 3.1, 37)


@pytest.mark.parametrize("stretch", [1, 3])
@pytest.mark.parametrize(
    "den",
    [[[0.3], [-0.6]], [[-1.2, 0.81], [0.4, 0.3]]],
    ids=["first-order", "second-order"],
)
@pytest.mark.parametrize("wrt", ["den", "warp", "scalar-warp", "both"])
def test_allpass_phase_gradients(check_grads, den, stretch, wrt):
    den = np.array(den)
    warp = np.array([0.35, -0.5])
    if wrt == "den":
        check_grads(lambda d: allpass_phase(W_GRAD, d, warp, stretch))(den)
    elif wrt == "warp":
        check_grads(lambda a: allpass_phase(W_GRAD, den, a, stretch))(warp)
    elif wrt == "scalar-warp":
        check_grads(lambda a: allpass_phase(W_GRAD, den, a, stretch))(0.2)
    else:
        check_grads(lambda d, a: allpass_phase(W_GRAD, d, a, stretch), argnum=(0, 1))(den, warp)


def test_allpass_phase_gradient_through_second_order_denominator(check_grads):
    def phase_of(radius, fc_hz):
        return allpass_phase(W_GRAD, second_order_denominator(radius, fc_hz, fs=FS), 0.3, 2)

    check_grads(phase_of, argnum=(0, 1))(np.array([0.7, 0.9]), np.array([300.0, 5000.0]))


def test_results_follow_changed_arguments():
    """No result is kept between calls: a changed (even mutated in place) argument gives a new phase."""
    from apfdsp.filters import allpass_phase as phase

    w = np.linspace(0.01, 3.0, 64)
    den = np.array([[-1.2, 0.81]])
    first = phase(w, den).copy()
    w *= 0.5  # same object, new values
    np.testing.assert_allclose(phase(w, den), phase(w.copy(), den), rtol=0, atol=0)
    assert not np.allclose(phase(w, den), first)
    den[0, 1] = 0.64  # the same for the coefficients
    np.testing.assert_allclose(phase(w, den), phase(w, den.copy()), rtol=0, atol=0)
    _, h = signal.freqz([0.64, -1.2, 1.0], [1.0, -1.2, 0.64], worN=w)
    np.testing.assert_allclose(np.exp(1j * phase(w, den)[0]), h, atol=1e-12)


def test_gradient_after_an_interleaved_forward_call():
    """The VJP is computed from its own inputs: forward calls between a forward pass and its backward
    pass (another fit, another thread) do not change the gradient."""
    from autograd import make_vjp

    w = np.linspace(0.01, 3.0, 64)
    den, warp, g = np.array([[-1.2, 0.81], [0.3, 0.2]]), np.array([0.3, -0.2]), np.ones((2, 64))
    want = make_vjp(allpass_phase, argnum=1)(w, den, warp, 2)[0](g)
    vjp, _ = make_vjp(allpass_phase, argnum=1)(w, den, warp, 2)
    allpass_phase(w, den[::-1] * 0.5, -warp, 2)  # another forward call in between
    np.testing.assert_array_equal(vjp(g), want)
    assert not np.array_equal(make_vjp(allpass_phase, argnum=1)(w, den * 0.5, warp, 2)[0](g), want)


def test_phase_and_group_delay_are_thread_safe_and_do_not_alias():
    import threading

    from apfdsp.filters import allpass_group_delay

    w = np.linspace(0.01, 3.0, 256)
    dens = [np.array([[-1.2 + 0.01 * i, 0.81]]) for i in range(2)]
    want = [allpass_group_delay(w, d.copy()) for d in dens]
    wrong = [0, 0]

    def work(i):
        for _ in range(2000):
            wrong[i] += not np.array_equal(allpass_group_delay(w, dens[i]), want[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == [0, 0]
    den = np.array([[-1.2, 0.81]])
    first = allpass_group_delay(w, den)
    den[0, 0] = 0.5  # overwrite the caller's array, then ask again for the first values
    allpass_group_delay(w, den)
    den[0, 0] = -1.2
    np.testing.assert_array_equal(allpass_group_delay(w, den), first)
