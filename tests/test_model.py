"""Tests of apfdsp.model: the direct and sinusoidal-MLP parameterisations, and their gradients."""

from contextlib import nullcontext

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import jacobian
from autograd.misc.flatten import flatten

from apfdsp.exceptions import ParameterError
from apfdsp.filters import allpass_phase, second_order_denominator
from apfdsp.losses import phase_loss
from apfdsp.model import N_OUTPUTS, Direct, SinusoidalMLP, get_parameterization
from apfdsp.ranges import DEFAULT_RANGES, ParamRanges

FS = 48000.0
TINY = {"hidden": (8, 4), "input_size": 6}
PARAMETERIZATIONS = [
    pytest.param(Direct(), id="direct"),
    pytest.param(SinusoidalMLP(**TINY), id="mlp"),
    pytest.param(SinusoidalMLP(**TINY, shared=True), id="shared-mlp"),
    pytest.param(SinusoidalMLP(**TINY, omega0=30.0), id="mlp-omega30"),
]


def _t_start(rng, n_units=4):
    return rng.uniform(-0.95, 0.95, size=(n_units, N_OUTPUTS))


@pytest.mark.parametrize("param", PARAMETERIZATIONS)
def test_init_reproduces_start(param, rng):
    t_start = _t_start(rng)
    params = param.init(t_start, rng=rng)
    t = np.asarray(param.forward(params))
    assert t.shape == t_start.shape
    np.testing.assert_allclose(t, t_start, rtol=0, atol=1e-12)


@pytest.mark.parametrize("param", PARAMETERIZATIONS)
@pytest.mark.parametrize("n_units", [1, 5])
def test_n_params_counts_the_pytree(param, n_units, rng):
    params = param.init(_t_start(rng, n_units), rng=rng)
    flat, _ = flatten(params)
    assert flat.size == param.n_params(n_units)


def test_n_params_pinned():
    # Per-unit: input 6 + (6+1)*8 + (8+1)*4 + (4+1)*3 = 6 + 56 + 36 + 15 = 113 per net.
    assert SinusoidalMLP(**TINY).n_params(4) == 4 * 113
    # Shared: one net with 3*4 = 12 outputs: 6 + 56 + 36 + 5*12 = 158.
    assert SinusoidalMLP(**TINY, shared=True).n_params(4) == 158
    assert Direct().n_params(4) == 12
    # The paper's default widths 1024 -> 512 -> 256 -> 128 -> 3.
    assert SinusoidalMLP().n_params(1) == 1024 + 1025 * 512 + 513 * 256 + 257 * 128 + 129 * 3


@pytest.mark.parametrize("param", PARAMETERIZATIONS)
def test_forward_is_bounded(param, rng):
    params = param.init(_t_start(rng), rng=rng)
    flat, unflatten = flatten(params)
    wild = unflatten(flat + 50.0 * rng.standard_normal(flat.size))
    t = np.asarray(param.forward(wild))
    assert np.all(np.abs(t) <= 1.0)
    assert np.all(np.isfinite(t))


@pytest.mark.parametrize(
    ("t", "u"),
    [(0.0, 0.0), (0.6, 0.75), (-0.8, -4 / 3), (1.0, 1 / np.sqrt(1 - (1 - 1e-7) ** 2) * (1 - 1e-7))],
)
def test_direct_map_pinned(t, u):
    """t = u / sqrt(1 + u^2), inverted by init (clipped at 1 - 1e-7)."""
    direct = Direct()
    assert direct.init(np.array([[t, 0.0, 0.0]]))[0, 0] == pytest.approx(u, rel=1e-12)
    assert direct.forward(np.array([u]))[0] == pytest.approx(min(t, 1 - 1e-7), rel=1e-12)


def test_mlp_seeded_init_is_deterministic_and_seed_dependent():
    mlp = SinusoidalMLP(**TINY)
    t_start = np.full((2, 3), 0.3)
    a = flatten(mlp.init(t_start, rng=np.random.default_rng(1)))[0]
    b = flatten(mlp.init(t_start, rng=np.random.default_rng(1)))[0]
    c = flatten(mlp.init(t_start, rng=np.random.default_rng(2)))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_mlp_per_unit_nets_are_independent(rng):
    """Per-unit layout: the Jacobian of unit i's outputs w.r.t. unit j's weights is zero for i != j."""
    mlp = SinusoidalMLP(**TINY)
    params = mlp.init(_t_start(rng, 3), rng=rng)
    flat, unflatten = flatten(params)
    jac = jacobian(lambda p: mlp.forward(unflatten(p)))(flat)  # (3, 3, n_params)
    # Perturb only unit 1's input vector: only row 1 changes.
    moved = {"input": params["input"].copy(), "layers": params["layers"]}
    moved["input"][1] += 0.5
    diff = np.abs(np.asarray(mlp.forward(moved)) - np.asarray(mlp.forward(params)))
    assert np.all(diff[[0, 2]] == 0) and np.all(diff[1] > 0)
    assert np.count_nonzero(np.abs(jac).sum(axis=(0, 1))) == flat.size  # every parameter matters


def test_shared_mlp_couples_units(rng):
    mlp = SinusoidalMLP(**TINY, shared=True)
    params = mlp.init(_t_start(rng, 3), rng=rng)
    moved = {"input": params["input"] + 0.5, "layers": params["layers"]}
    diff = np.abs(np.asarray(mlp.forward(moved)) - np.asarray(mlp.forward(params)))
    assert np.all(diff > 0)


@pytest.mark.parametrize(
    ("name", "options", "expectation"),
    [
        ("direct", {}, nullcontext(Direct())),
        ("mlp", {"hidden": [8, 4], "input_size": 6}, nullcontext(SinusoidalMLP(**TINY))),
        ("shared-mlp", {"hidden": (8,)}, nullcontext(SinusoidalMLP(hidden=(8,), shared=True))),
        (SinusoidalMLP(**TINY), {}, nullcontext(SinusoidalMLP(**TINY))),
        ("biasnet", {}, pytest.raises(ParameterError, match="parameterization must be 'direct', 'mlp' or 'shared-mlp', got 'biasnet'")),
        ("mlp", {"hidden": (8, 0)}, pytest.raises(ParameterError, match="hidden width must be >= 1, got 0")),
        ("mlp", {"hidden": (8.5,)}, pytest.raises(ParameterError, match="hidden width must be an integer")),
        (3, {}, pytest.raises(TypeError, match="parameterization must be a name or a parameterisation object")),
    ],
)
def test_get_parameterization(name, options, expectation):
    with expectation as expected:
        param = get_parameterization(name, **options)
        assert param == expected
        assert param.name == (name if isinstance(name, str) else "mlp")


# -- gradients -------------------------------------------------------------------------------------


@pytest.mark.parametrize("param", PARAMETERIZATIONS)
def test_forward_gradients(param, check_grads, rng):
    params = param.init(_t_start(rng, 2), rng=rng)
    check_grads(param.forward)(params)


W_GRID = 2 * np.pi * np.geomspace(20.0, 20000.0, 48) / FS


@pytest.mark.parametrize("param", PARAMETERIZATIONS)
@pytest.mark.parametrize(("structure", "stretch"), [("traditional", 1), ("warped", 1), ("stretched", 3)])
def test_chain_gradient_parameterisation_to_phase_loss(param, structure, stretch, check_grads, rng):
    """parameterisation -> ParamRanges maps -> allpass_phase -> phase_loss, as in fit.py."""
    ranges = ParamRanges(r_max=0.99)
    target = -3.0 * W_GRID - 0.5 * np.sin(5 * W_GRID)
    weights = np.linspace(0.2, 1.0, W_GRID.size)

    def loss(params):
        t = param.forward(params)
        den = second_order_denominator(ranges.pole_radius(t[:, 0]), ranges.fc_hz(t[:, 1], fs=FS), fs=FS)
        warp = ranges.warp(t[:, 2]) if structure != "traditional" else 0.0
        phase = anp.sum(allpass_phase(W_GRID, den, warp, stretch), axis=0)
        return phase_loss(phase, target, weights)

    params = param.init(_t_start(rng, 3), rng=rng)
    value = loss(params)
    assert 0 < value < 2
    check_grads(loss)(params)


def test_chain_gradient_with_first_order_and_default_ranges(check_grads, rng):
    r = DEFAULT_RANGES
    param = Direct()

    def loss(params):
        t = param.forward(params)
        den = anp.reshape(r.coef(t[:, 0], fs=FS), (-1, 1))
        return phase_loss(anp.sum(allpass_phase(W_GRID, den, r.warp(t[:, 2])), axis=0), -W_GRID)

    check_grads(loss)(param.init(_t_start(rng, 2)))
