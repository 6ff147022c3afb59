"""The hand-written phase loss and gradient of `apfdsp.phase_objective` against the autograd route."""

import numpy as np
import pytest
from autograd import value_and_grad

from apfdsp.layout import Layout
from apfdsp.losses import phase_loss
from apfdsp.model import Direct
from apfdsp.phase_objective import PhaseGrid, cascade_phase_loss, direct_loss_and_grad
from apfdsp.ranges import DEFAULT_RANGES

FS = 48000.0
W = 2 * np.pi * np.geomspace(20, 20000, 300) / FS

LAYOUTS = {
    "warped 3+1, delay, inverted": Layout(3, 1, "warped", 1, -1, 4, DEFAULT_RANGES, FS),
    "traditional 2": Layout(2, 0, "traditional", 1, 1, None, DEFAULT_RANGES, FS),
    "stretched 2+2": Layout(2, 2, "stretched", 3, 1, None, DEFAULT_RANGES, FS),
    "anticausal mix": Layout(2, 2, "warped", 1, 1, 0, DEFAULT_RANGES, FS, (True, False, False, True)),
    "delay only": Layout(0, 0, "warped", 1, 1, 7, DEFAULT_RANGES, FS),
    "first-order only": Layout(0, 3, "warped", 1, -1, None, DEFAULT_RANGES, FS, (False, True, False)),
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


def test_phase_grid_is_bit_identical_to_cascade_phase_loss(rng):
    """PhaseGrid.loss (phasors computed once per grid) gives exactly the values of cascade_phase_loss."""
    target = rng.uniform(-np.pi, np.pi, W.size)
    weights = rng.uniform(0.0, 1.0, W.size)
    grid = PhaseGrid(W, target, weights)
    for structure, stretch in [("warped", 1), ("traditional", 1), ("stretched", 3)]:
        for _ in range(8):
            n2, n1 = int(rng.integers(0, 5)), int(rng.integers(0, 3))
            flags = tuple(bool(f) for f in rng.random(n2 + n1) < 0.3) if rng.random() < 0.5 else ()
            layout = Layout(n2, n1, structure, stretch, int(rng.choice([1, -1])),
                             None if rng.random() < 0.3 else int(rng.integers(-2, 6)), DEFAULT_RANGES, FS, flags)
            t = rng.uniform(-0.95, 0.95, (layout.n_units, 3))
            const = layout.const_phase(W)
            assert grid.loss(layout, t, gradient=False) == cascade_phase_loss(layout, t, W, const, target, weights,
                                                                               gradient=False)
            value, grad = grid.loss(layout, t)
            value_ref, grad_ref = cascade_phase_loss(layout, t, W, const, target, weights)
            assert value == value_ref and np.array_equal(grad, grad_ref)
            if layout.n_units:
                params = rng.normal(size=t.shape)
                ours = grid.direct_objective(layout)(params)
                reference = direct_loss_and_grad(layout, W, const, target, weights)(params)
                assert ours[0] == reference[0] and np.array_equal(ours[1], reference[1])


@pytest.mark.parametrize("structure", ["warped", "traditional", "stretched"])
@pytest.mark.parametrize(("n2", "n1", "shift"), [(3, 0, None), (2, 3, 4), (0, 2, -1), (1, 1, None)])
def test_losses_of_a_stack_equal_the_losses_one_by_one(rng, structure, n2, n1, shift):
    """`PhaseGrid.losses` (the scores of the equation-error starts) equals `PhaseGrid.loss` per layout, with
    shifts, polarities and anticausal flags that differ within the stack."""
    target = rng.uniform(-np.pi, np.pi, W.size)
    grid = PhaseGrid(W, target, rng.uniform(0.1, 1.0, W.size))
    layouts, ts = [], []
    for k in range(6):
        flags = tuple(bool(f) for f in rng.integers(0, 2, n2 + n1)) if k % 2 else ()
        layouts.append(Layout(n2, n1, structure, 3, (-1) ** k, None if shift is None else shift + k,
                              DEFAULT_RANGES, FS, flags))
        ts.append(rng.uniform(-0.9, 0.9, (n2 + n1 + (shift is not None), 3)))
    one_by_one = [grid.loss(layout, t, gradient=False) for layout, t in zip(layouts, ts)]
    np.testing.assert_allclose(grid.losses(layouts, ts), one_by_one, rtol=1e-12, atol=1e-15)
