"""Tests of apfdsp.optim: the pure Adam step, Adam and L-BFGS minimisation, the cosine schedule."""

import autograd.numpy as anp
import numpy as np
import pytest

from apfdsp.optim import AdamState, adam, adam_init, adam_step, cosine_schedule, lbfgs


def test_adam_init():
    flat = np.array([1.0, -2.0, 3.0])
    state = adam_init(flat)
    assert isinstance(state, AdamState) and state.step == 0
    np.testing.assert_array_equal(state.params, flat)
    assert state.params is not flat  # a copy: later changes to `flat` do not leak in
    np.testing.assert_array_equal(state.m, 0.0)
    np.testing.assert_array_equal(state.v, 0.0)


def test_adam_step_is_pure(rng):
    state = adam_step(adam_init(rng.standard_normal(5)), rng.standard_normal(5), lr=0.1)
    before = [a.copy() for a in state[:3]]
    grad = rng.standard_normal(5)
    grad_before = grad.copy()
    new = adam_step(state, grad, lr=0.1, clip=0.5)
    for original, array in zip(before, state[:3]):
        np.testing.assert_array_equal(array, original)
    np.testing.assert_array_equal(grad, grad_before)
    assert state.step == 1 and new.step == 2
    assert all(a is not b for a, b in zip(new[:3], state[:3]))
    # Same input, same output: resuming from a saved state is exact.
    again = adam_step(state, grad, lr=0.1, clip=0.5)
    for a, b in zip(new[:3], again[:3]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("lr", [1e-3, 0.1])
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e4])
def test_first_step_moves_by_lr_against_gradient_sign(rng, lr, scale):
    """Bias correction: m_hat = g and v_hat = g^2 after one step, so the step is lr * g / (|g| + eps)."""
    params = rng.standard_normal(6)
    grad = scale * rng.uniform(0.5, 2.0, 6) * rng.choice([-1.0, 1.0], 6)
    new = adam_step(adam_init(params), grad, lr=lr)
    expected_step = lr * np.abs(grad) / (np.abs(grad) + 1e-8)
    np.testing.assert_allclose(params - new.params, np.sign(grad) * expected_step, rtol=1e-12)
    np.testing.assert_allclose(new.m, 0.1 * grad, rtol=1e-14)
    np.testing.assert_allclose(new.v, 0.001 * grad**2, rtol=1e-14)


def test_second_step_pinned():
    state = adam_step(adam_init(np.array([0.0])), np.array([1.0]), lr=1.0, eps=0.0)
    state = adam_step(state, np.array([-1.0]), lr=1.0, eps=0.0)
    # m = 0.9*0.1 - 0.1 = -0.01, m_hat = -0.01/0.19; v = 0.999*0.001 + 0.001, v_hat = v/(1 - 0.999^2)
    m_hat = -0.01 / (1 - 0.9**2)
    v_hat = (0.999 * 0.001 + 0.001) / (1 - 0.999**2)
    assert state.params[0] == pytest.approx(-1.0 - m_hat / np.sqrt(v_hat), rel=1e-12)


@pytest.mark.parametrize(
    ("grad", "clip", "expected_m"),
    [
        ([3.0, 4.0], 1.0, [0.06, 0.08]),  # norm 5 clipped to 1, m = 0.1 * g * (1/5)
        ([3.0, 4.0], 5.0, [0.3, 0.4]),  # exactly at the limit: unchanged
        ([3.0, 4.0], 10.0, [0.3, 0.4]),  # below the limit: unchanged
        ([3.0, 4.0], None, [0.3, 0.4]),
        ([0.0, 0.0], 1.0, [0.0, 0.0]),  # zero gradient: no division by zero
    ],
)
def test_adam_step_clip(grad, clip, expected_m):
    state = adam_step(adam_init(np.zeros(2)), np.array(grad), lr=0.01, clip=clip)
    np.testing.assert_allclose(state.m, expected_m, rtol=1e-14)
    clipped = np.array(expected_m) / 0.1
    np.testing.assert_allclose(state.v, 0.001 * clipped**2, rtol=1e-14)
    assert np.all(np.isfinite(state.params))


def test_adam_minimises_quadratic_pytree():
    centre = {"a": np.array([1.0, -2.0]), "b": (np.array(3.0), np.array([[0.5]]))}

    def loss(p):
        return anp.sum((p["a"] - centre["a"]) ** 2) + 4.0 * (p["b"][0] - 3.0) ** 2 + anp.sum((p["b"][1] - 0.5) ** 2)

    start = {"a": np.zeros(2), "b": (np.array(0.0), np.zeros((1, 1)))}
    params, history = adam(loss, start, n_iter=600, lr=0.05, schedule=cosine_schedule(600))
    assert history.shape == (600,) and history[0] == pytest.approx(loss(start))
    np.testing.assert_allclose(params["a"], centre["a"], atol=1e-4)
    np.testing.assert_allclose(params["b"][0], 3.0, atol=1e-4)
    np.testing.assert_allclose(params["b"][1], [[0.5]], atol=1e-4)
    assert loss(params) == pytest.approx(np.min(history), abs=0) and loss(params) < 1e-8
    np.testing.assert_array_equal(start["a"], 0.0)  # the start is not modified


def test_adam_returns_best_not_last():
    """With a too-large constant step Adam oscillates; the best parameters seen are returned."""
    params, history = adam(lambda x: anp.sum(x**2), np.array([1.0]), n_iter=50, lr=0.7)
    assert params[0] ** 2 == pytest.approx(history.min(), rel=1e-15)
    assert history.min() < history[-1]


def test_adam_schedule_is_used():
    calls = []

    def frozen(i):
        calls.append(i)
        return 0.0

    params, history = adam(lambda x: anp.sum(x**2), np.array([1.0, 2.0]), n_iter=20, lr=0.1, schedule=frozen)
    assert calls == list(range(20))
    np.testing.assert_array_equal(params, [1.0, 2.0])
    np.testing.assert_array_equal(history, 5.0)
    # A schedule of 0.5 halves the first step exactly.
    half, _ = adam(lambda x: anp.sum(x**2), np.array([1.0]), n_iter=2, lr=0.1, schedule=lambda i: 0.5)
    assert half[0] == pytest.approx(1.0 - 0.05 * 1 / (1 + 1e-8 / 2), rel=1e-12)


def test_adam_callback_stops_early_and_sees_params():
    seen = []

    def callback(params, i, value):
        seen.append((params.copy(), i, value))
        return i == 4

    _, history = adam(lambda x: anp.sum(x**2), np.array([1.0]), n_iter=100, lr=0.1, callback=callback)
    assert history.size == 5 and [s[1] for s in seen] == [0, 1, 2, 3, 4]
    assert all(value == pytest.approx(p[0] ** 2, rel=1e-15) for p, _, value in seen)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_adam_stops_on_non_finite_gradient():
    def loss(x):
        return anp.sum(anp.sqrt(x))  # gradient infinite at 0

    params, history = adam(loss, np.array([0.0, 1.0]), n_iter=10, lr=0.1)
    assert history.size == 1
    np.testing.assert_array_equal(params, [0.0, 1.0])


def test_lbfgs_minimises_rosenbrock():
    def rosenbrock(p):
        x = p["x"]
        return anp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    params, history = lbfgs(rosenbrock, {"x": np.array([-1.2, 1.0, -0.5, 0.8])}, max_iter=500)
    np.testing.assert_allclose(params["x"], 1.0, atol=1e-6)
    assert history[0] > 10 and history[-1] < 1e-12
    assert history.min() == history[-1]


def test_lbfgs_callback_and_max_iter():
    iterations = []
    _, history = lbfgs(
        lambda x: anp.sum((x - 3.0) ** 4), np.zeros(3), max_iter=5, callback=lambda p, n, v: iterations.append(v)
    )
    assert 1 <= len(iterations) <= 5
    assert iterations == sorted(iterations, reverse=True)  # accepted iterates only go down


def test_lbfgs_survives_non_finite_region():
    """Non-finite values are reported to scipy as +inf, so the line search backs off."""

    def loss(x):
        return anp.sum((x - 0.5) ** 2) + anp.where(x[0] > 2.0, np.nan, 0.0)

    params, history = lbfgs(loss, np.array([1.9, 0.0]), max_iter=50)
    np.testing.assert_allclose(params, 0.5, atol=1e-6)
    assert np.all(np.isfinite(history))


@pytest.mark.parametrize(
    ("i", "expected"),
    [(0, 1.0), (50, 0.525), (100, 0.05), (150, 0.05), (25, 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi / 4)))],
)
def test_cosine_schedule(i, expected):
    assert cosine_schedule(100, final=0.05)(i) == pytest.approx(expected, rel=1e-14)


def test_lbfgs_stops_when_the_loss_stalls():
    """A loss that keeps creeping down towards its infimum 1 (x -> infinity): the stall rule stops once
    20 iterations gain less than 0.1 %; ftol alone runs on."""
    def creeping(x):
        return 1.0 + 1e-2 * anp.sum(1.0 / (1.0 + x**2))

    x0 = np.full(3, 0.5)
    _, stalled = lbfgs(creeping, x0, max_iter=300)
    _, full = lbfgs(creeping, x0, max_iter=300, stall_rtol=0)
    assert len(stalled) < len(full)
    assert stalled[-21] - stalled[-1] <= 1e-3 * stalled[-21]  # the rule that stopped it
    assert stalled[-1] - 1.0 < 1e-6  # 1e-6 of the loss: nothing that matters was left


def test_lbfgs_exact_problems_do_not_stall():
    target = np.linspace(1.0, 2.0, 5)
    x, history = lbfgs(lambda x: anp.sum((x - target) ** 2), np.zeros(5), max_iter=200)
    np.testing.assert_allclose(x, target, atol=1e-7)
    assert history[-1] < 1e-14
