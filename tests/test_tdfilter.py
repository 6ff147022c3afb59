"""Tests of apfdsp.tdfilter: bit-exact forward vs scipy, exact adjoint gradients, multichannel."""

from contextlib import nullcontext
from functools import partial

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.test_util import check_grads
from scipy import signal

from apfdsp import tdfilter
from apfdsp.exceptions import ParameterError
from apfdsp.tdfilter import sosfilt

check_grads = partial(check_grads, modes=["rev"], order=1)

N = 200


@pytest.fixture
def rng():
    return np.random.default_rng(440)


def random_sos(rng, n_sections):
    """A stable cascade: random poles with radius < 0.9, random zeros (some outside |z| = 1)."""
    p = rng.uniform(0.2, 0.9, n_sections) * np.exp(1j * rng.uniform(0.05, 3.1, n_sections))
    z = rng.uniform(0.2, 1.5, n_sections) * np.exp(1j * rng.uniform(0.0, 3.1, n_sections))
    sos = signal.zpk2sos(np.r_[z, z.conj()], np.r_[p, p.conj()], rng.uniform(0.5, 2.0))
    assert sos.shape == (n_sections, 6) and np.all(sos[:, 3] == 1)
    return sos


def full_sos(free):
    """(n, 5) free coefficients [b0, b1, b2, a1, a2] -> (n, 6) sos with a0 = 1 (differentiable)."""
    return anp.concatenate([free[:, :3], anp.ones((free.shape[0], 1)), free[:, 3:]], axis=1)


def free_of(sos):
    return np.delete(sos, 3, axis=1)


def zi_shape(n_sections, x_shape, axis):
    shape = list(x_shape)
    shape[axis] = 2
    return (n_sections,) + tuple(shape)


def central_fd(f, v, h=1e-6):
    """Central finite-difference gradient of scalar f at array v."""
    grad = np.zeros_like(v)
    for idx in np.ndindex(v.shape):
        e = np.zeros_like(v)
        e[idx] = h
        grad[idx] = (f(v + e) - f(v - e)) / (2 * h)
    return grad


def rel_err(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize(
    "shape, axis",
    [((N,), -1), ((N,), 0), ((3, N), -1), ((N, 3), 0), ((2, N, 3), 1), ((2, 3, N), -1)],
)
@pytest.mark.parametrize("with_zi", [False, True])
def test_forward_bit_identical_to_scipy(rng, shape, axis, with_zi):
    sos = random_sos(rng, 4)
    x = rng.standard_normal(shape)
    if with_zi:
        zi = rng.standard_normal(zi_shape(4, shape, axis))
        y, zf = sosfilt(sos, x, axis=axis, zi=zi)
        y_ref, zf_ref = signal.sosfilt(sos, x, axis=axis, zi=zi)
        assert np.array_equal(zf, zf_ref)
    else:
        y = sosfilt(sos, x, axis=axis)
        y_ref = signal.sosfilt(sos, x, axis=axis)
    assert y.dtype == np.float64 and y.shape == x.shape
    assert np.array_equal(y, y_ref)


def test_forward_other_input_types_match_scipy(rng):
    sos = random_sos(rng, 2)
    x_int = rng.integers(-100, 100, N)
    assert np.array_equal(sosfilt(sos, x_int), signal.sosfilt(sos, x_int))
    x32 = rng.standard_normal(N).astype(np.float32)
    assert np.array_equal(sosfilt(sos, x32), signal.sosfilt(sos, x32))
    assert np.array_equal(sosfilt(sos.tolist(), list(x32)), signal.sosfilt(sos, x32))
    assert np.array_equal(sosfilt(sos[0], x32), signal.sosfilt(sos[0], x32))  # one row, 1-D


def test_blockwise_with_state_equals_one_shot(rng):
    sos = random_sos(rng, 3)
    x = rng.standard_normal((2, N))
    zi = np.zeros((3, 2, 2))
    y1, zi = sosfilt(sos, x[:, :70], zi=zi)
    y2, zi = sosfilt(sos, x[:, 70:], zi=zi)
    assert np.array_equal(np.concatenate([y1, y2], axis=1), signal.sosfilt(sos, x))


# --------------------------------------------------------------------------- check_grads


@pytest.mark.parametrize("n_sections", [1, 2, 5])
def test_check_grads_wrt_x(rng, n_sections):
    sos = random_sos(rng, n_sections)
    x = rng.standard_normal(N)
    check_grads(lambda x_: sosfilt(sos, x_))(x)


@pytest.mark.parametrize("n_sections", [1, 2, 5])
def test_check_grads_wrt_sos(rng, n_sections):
    free = free_of(random_sos(rng, n_sections))
    x = rng.standard_normal(N)
    check_grads(lambda p: sosfilt(full_sos(p), x))(free)


@pytest.mark.parametrize("n_sections", [1, 2, 5])
def test_check_grads_wrt_zi_and_all_with_state(rng, n_sections):
    sos = random_sos(rng, n_sections)
    x = rng.standard_normal(N)
    zi = rng.standard_normal((n_sections, 2))
    # Tuple output (y, zf): check_grads draws cotangents for both.
    check_grads(lambda z: sosfilt(sos, x, zi=z))(zi)
    check_grads(lambda p: sosfilt(full_sos(p), x, zi=zi))(free_of(sos))
    check_grads(lambda x_: sosfilt(sos, x_, zi=zi))(x)
    check_grads(lambda p, x_, z: sosfilt(full_sos(p), x_, zi=z)[0])(free_of(sos), x, zi)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_check_grads_multichannel_any_axis(rng, axis):
    shape = [3, 4, 5]
    shape[axis] = 60
    x = rng.standard_normal(shape)
    sos = random_sos(rng, 2)
    zi = rng.standard_normal(zi_shape(2, x.shape, axis))
    check_grads(lambda p, x_, z: sosfilt(full_sos(p), x_, axis=axis, zi=z))(free_of(sos), x, zi)
    check_grads(lambda p, x_: sosfilt(full_sos(p), x_, axis=axis))(free_of(sos), x)


@pytest.mark.parametrize("n_samples", [1, 2, 3])
def test_check_grads_very_short_signals(rng, n_samples):
    sos = random_sos(rng, 2)
    x = rng.standard_normal(n_samples)
    zi = rng.standard_normal((2, 2))
    check_grads(lambda p, x_, z: sosfilt(full_sos(p), x_, zi=z))(free_of(sos), x, zi)
    check_grads(lambda p, x_: sosfilt(full_sos(p), x_))(free_of(sos), x)


# --------------------------------------------------------------------------- finite differences


@pytest.mark.parametrize("loss_kind", ["linear", "square"])
@pytest.mark.parametrize("with_zi", [False, True])
def test_gradient_matches_central_difference(rng, loss_kind, with_zi):
    n_sections = 3
    sos = random_sos(rng, n_sections)
    x = rng.standard_normal((2, N))
    zi = rng.standard_normal((n_sections, 2, 2)) if with_zi else None
    r = rng.standard_normal(x.shape)
    rz = rng.standard_normal((n_sections, 2, 2))

    def loss(free, x_, z):
        out = sosfilt(full_sos(free), x_, zi=z)
        y, zf = out if z is not None else (out, None)
        if loss_kind == "linear":
            value = anp.sum(y * r)
        else:
            value = anp.sum(y**2)
        if zf is not None:
            value = value + anp.sum(zf * rz)  # exercises the zf cotangent
        return value

    free = free_of(sos)
    g_free, g_x = autograd.grad(loss, (0, 1))(free, x, zi)
    assert rel_err(g_free, central_fd(lambda p: loss(p, x, zi), free)) < 1e-6
    assert rel_err(g_x, central_fd(lambda x_: loss(free, x_, zi), x)) < 1e-6
    if with_zi:
        g_zi = autograd.grad(loss, 2)(free, x, zi)
        assert rel_err(g_zi, central_fd(lambda z: loss(free, x, z), zi)) < 1e-6


def test_gradient_of_a0_column_is_zero(rng):
    sos = random_sos(rng, 3)
    x = rng.standard_normal(N)
    g = autograd.grad(lambda s: anp.sum(sosfilt(s, x) ** 2))(sos)
    assert np.all(g[:, 3] == 0) and np.all(np.abs(g[:, [0, 1, 2, 4, 5]]) > 0)


def test_fast_x_path_matches_full_adjoint(rng):
    """The one-cascade gradient for x alone equals the section-by-section one."""
    sos = random_sos(rng, 5)
    x2 = rng.standard_normal((2, N))
    y2 = signal.sosfilt(sos, x2)
    g2 = rng.standard_normal(x2.shape)
    _, fast, _ = tdfilter._adjoint(sos, x2, None, y2, None, g2, None, False, True, False)
    _, full, _ = tdfilter._adjoint(sos, x2, None, y2, None, g2, None, True, True, False)
    np.testing.assert_allclose(fast, full, rtol=1e-12, atol=1e-12 * np.abs(full).max())


# --------------------------------------------------------------------------- multichannel


@pytest.mark.parametrize("axis", [0, -1])
def test_multichannel_equals_per_channel(rng, axis):
    sos = random_sos(rng, 3)
    x = rng.standard_normal((4, N)) if axis == -1 else rng.standard_normal((N, 4))
    zi = rng.standard_normal(zi_shape(3, x.shape, axis))
    r = rng.standard_normal(x.shape)
    take = (lambda a, c: a[c]) if axis == -1 else (lambda a, c: a[:, c])
    take_zi = (lambda z, c: z[:, c]) if axis == -1 else (lambda z, c: z[:, :, c])

    y, zf = sosfilt(sos, x, axis=axis, zi=zi)
    channels = [sosfilt(sos, take(x, c), zi=take_zi(zi, c)) for c in range(4)]
    for c, (y_c, zf_c) in enumerate(channels):
        assert np.array_equal(take(y, c), y_c)
        assert np.array_equal(take_zi(zf, c), zf_c)
    assert not np.allclose(channels[0][0], channels[1][0])  # the channels really differ

    def loss(s, x_, z, ax):
        y_, zf_ = sosfilt(s, x_, axis=ax, zi=z)
        return y_, zf_

    def multi(s, x_, z):
        y_, zf_ = loss(s, x_, z, axis)
        return anp.sum(y_ * r) + anp.sum(zf_**2)

    def single(s, x_, z, c):
        y_, zf_ = loss(s, x_, z, -1)
        return anp.sum(y_ * take(r, c)) + anp.sum(zf_**2)

    g_sos, g_x, g_zi = autograd.grad(multi, (0, 1, 2))(sos, x, zi)
    per = [autograd.grad(single, (0, 1, 2))(sos, take(x, c), take_zi(zi, c), c) for c in range(4)]
    np.testing.assert_allclose(g_sos, sum(p[0] for p in per), rtol=1e-10)
    for c, (_, g_x_c, g_zi_c) in enumerate(per):
        np.testing.assert_allclose(take(g_x, c), g_x_c, rtol=1e-12)
        np.testing.assert_allclose(take_zi(g_zi, c), g_zi_c, rtol=1e-12)


# --------------------------------------------------------------------------- errors


GOOD_SOS = signal.butter(4, 0.2, output="sos")
BAD_A0 = GOOD_SOS.copy()
BAD_A0[1, 3] = 2.0
NAN_SOS = GOOD_SOS.copy()
NAN_SOS[0, 0] = np.nan
X = np.ones(16)


@pytest.mark.parametrize(
    "kwargs, expectation",
    [
        ({}, nullcontext()),
        ({"zi": np.zeros((2, 2))}, nullcontext()),
        ({"axis": 0}, nullcontext()),
        ({"sos": np.ones((2, 5))}, pytest.raises(ParameterError, match=r"shape \(n_sections, 6\)")),
        ({"sos": np.ones((0, 6))}, pytest.raises(ParameterError, match="n_sections >= 1")),
        ({"sos": BAD_A0}, pytest.raises(ParameterError, match="a0")),
        ({"sos": NAN_SOS}, pytest.raises(ParameterError, match="NaN")),
        ({"sos": GOOD_SOS + 0j}, pytest.raises(NotImplementedError, match="complex")),
        ({"x": X + 1j}, pytest.raises(NotImplementedError, match="complex")),
        ({"x": np.array(["a", "b"])}, pytest.raises(TypeError, match="real numeric")),
        ({"x": 1.0}, pytest.raises(ParameterError, match="at least one dimension")),
        ({"x": np.ones((3, 0))}, pytest.raises(ParameterError, match="no samples")),
        ({"axis": 1}, pytest.raises(ParameterError, match="axis must be")),
        ({"axis": 0.0}, pytest.raises(ParameterError, match="axis must be")),
        ({"axis": True}, pytest.raises(ParameterError, match="axis must be")),
        ({"zi": np.zeros((2, 3))}, pytest.raises(ParameterError, match=r"zi must have shape \(2, 2\)")),
        ({"zi": np.zeros((2, 2)) + 1j}, pytest.raises(NotImplementedError, match="complex")),
    ],
)
def test_validation(kwargs, expectation):
    args = {"sos": GOOD_SOS, "x": X, **kwargs}
    with expectation:
        out = sosfilt(args.pop("sos"), args.pop("x"), **args)
        ref = signal.sosfilt(GOOD_SOS, X, axis=kwargs.get("axis", -1), zi=kwargs.get("zi"))
        assert np.array_equal(out[0] if "zi" in kwargs else out, ref[0] if "zi" in kwargs else ref)


def test_parameter_error_is_a_value_error():
    with pytest.raises(ValueError):
        sosfilt(BAD_A0, X)


def test_validation_inside_traced_function():
    def loss(s):
        return anp.sum(sosfilt(s, X))

    with pytest.raises(ParameterError, match="a0"):
        autograd.grad(loss)(BAD_A0)
    with pytest.raises(ParameterError, match="shape"):
        autograd.grad(loss)(GOOD_SOS[0])  # a traced sos must already be 2-D
