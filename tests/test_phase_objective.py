"""The hand-written phase loss and gradient of `apfdsp.phase_objective` against the autograd route."""

import numpy as np
import pytest
from autograd import value_and_grad

from apfdsp.fit import _Layout
from apfdsp.losses import phase_loss
from apfdsp.model import Direct
from apfdsp.phase_objective import cascade_phase_loss, direct_loss_and_grad
from apfdsp.ranges import DEFAULT_RANGES

FS = 48000.0
W = 2 * np.pi * np.geomspace(20, 20000, 300) / FS

LAYOUTS = {
    "warped 3+1, delay, inverted": _Layout(3, 1, "warped", 1, -1, 4, DEFAULT_RANGES, FS),
    "traditional 2": _Layout(2, 0, "traditional", 1, 1, None, DEFAULT_RANGES, FS),
    "stretched 2+2": _Layout(2, 2, "stretched", 3, 1, None, DEFAULT_RANGES, FS),
    "anticausal mix": _Layout(2, 2, "warped", 1, 1, 0, DEFAULT_RANGES, FS, (True, False, False, True)),
    "delay only": _Layout(0, 0, "warped", 1, 1, 7, DEFAULT_RANGES, FS),
    "first-order only": _Layout(0, 3, "warped", 1, -1, None, DEFAULT_RANGES, FS, (False, True, False)),
}


def problem(layout, seed):
    rng = np.random.default_rng(seed)
    t = rng.uniform(-0.95, 0.95, (layout.n_units, 3))
    target = rng.uniform(-np.pi, np.pi, W.size)
    weights = rng.uniform(0.0, 1.0, W.size)
    return t, target, weights


def autograd_route(layout, target, weights):
    const = layout.const_phase(W)
    return value_and_grad(lambda p: phase_loss(layout.phase(Direct().forward(p), W, const), target, weights))


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_value_and_gradient_equal_the_autograd_route(name, seed):
    layout = LAYOUTS[name]
    t, target, weights = problem(layout, seed)
    params = Direct().init(t)
    expected_value, expected_grad = autograd_route(layout, target, weights)(params)
    value, grad = direct_loss_and_grad(layout, W, layout.const_phase(W), target, weights)(params)
    assert value == pytest.approx(float(expected_value), rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_gradient_equals_central_differences(name):
    layout = LAYOUTS[name]
    t, target, weights = problem(layout, 7)
    const = layout.const_phase(W)
    _, grad = cascade_phase_loss(layout, t, W, const, target, weights)
    step = 1e-6
    numeric = np.zeros_like(t)
    for index in np.ndindex(t.shape):
        delta = np.zeros_like(t)
        delta[index] = step
        plus = cascade_phase_loss(layout, t + delta, W, const, target, weights, gradient=False)
        minus = cascade_phase_loss(layout, t - delta, W, const, target, weights, gradient=False)
        numeric[index] = (plus - minus) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_loss_is_zero_on_the_cascade_own_phase():
    layout = LAYOUTS["anticausal mix"]
    t, _, weights = problem(layout, 3)
    cascade_phase = np.asarray(layout.phase(t, W, layout.const_phase(W)))
    value, grad = cascade_phase_loss(layout, t, W, layout.const_phase(W), cascade_phase + 2 * np.pi, weights)
    assert value < 1e-14
    assert np.max(np.abs(grad)) < 1e-12
