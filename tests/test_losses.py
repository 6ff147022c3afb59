"""Tests of apfdsp.losses: known values, reference STFT, gradients and NaN safety."""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad
from scipy import signal

from apfdsp.exceptions import ParameterError
from apfdsp.losses import (
    complex_response_loss,
    group_delay_loss,
    mse_loss,
    multi_resolution_sum_magnitude_loss,
    ncc_loss,
    phase_loss,
    stft,
    sum_magnitude_stft_loss,
)

N = 1024
SMALL_STFT = {"n_fft": 64, "hop": 16}


@pytest.fixture
def noise(rng):
    return rng.standard_normal(N)


@pytest.fixture
def phases(rng):
    return rng.uniform(-np.pi, np.pi, 257)


# -- known values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(0.0, 0.0), (np.pi, 2.0), (-np.pi, 2.0), (2 * np.pi, 0.0), (-6 * np.pi, 0.0), (np.pi / 2, 1.0), (np.pi / 3, 0.5)],
)
def test_phase_loss_of_constant_offset(phases, offset, expected):
    assert phase_loss(phases + offset, phases) == pytest.approx(expected, abs=1e-12)


def test_phase_loss_small_error_is_half_mean_square(phases, rng):
    error = 1e-3 * rng.standard_normal(phases.size)
    assert phase_loss(phases + error, phases) == pytest.approx(0.5 * np.mean(error**2), rel=1e-6)


def test_phase_loss_weights(phases):
    shifted = phases.copy()
    shifted[:100] += np.pi  # wrong by pi on the first 100 bins only
    weights = np.r_[np.zeros(100), np.ones(phases.size - 100)]
    assert phase_loss(shifted, phases, weights) == pytest.approx(0.0, abs=1e-12)
    assert phase_loss(shifted, phases) == pytest.approx(2.0 * 100 / phases.size, rel=1e-12)
    # Weights are normalised: scaling them changes nothing.
    ramp = np.linspace(0.1, 1.0, phases.size)
    assert phase_loss(shifted, phases, 7.0 * ramp) == pytest.approx(phase_loss(shifted, phases, ramp), rel=1e-14)
    assert phase_loss(shifted, phases, ramp) == pytest.approx(2 * ramp[:100].sum() / ramp.sum(), rel=1e-12)


def test_complex_response_loss_is_twice_phase_loss_on_unit_circle(phases, rng):
    other = phases + rng.uniform(-3, 3, phases.size)
    weights = rng.uniform(0, 1, phases.size)
    value = complex_response_loss(np.exp(1j * other), np.exp(1j * phases), weights)
    assert value == pytest.approx(2 * phase_loss(other, phases, weights), rel=1e-12)
    # Sensitive to magnitude: a gain of 2 on the identical phase gives |2 - 1|^2 = 1.
    assert complex_response_loss(2 * np.exp(1j * phases), np.exp(1j * phases)) == pytest.approx(1.0, rel=1e-12)


def test_group_delay_loss_known_value():
    tau = np.array([1.0, 2.0, 3.0, 4.0])
    assert group_delay_loss(tau + 0.5, tau) == pytest.approx(0.25, rel=1e-15)
    assert group_delay_loss(tau + np.array([0, 0, 0, 2.0]), tau, np.array([1, 1, 1, 3.0])) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("make_y", "expected", "tol"),
    [
        (lambda x: x, 0.0, 1e-9),  # identical signals: every bin in phase
        (lambda x: 3.0 * x, 0.0, 1e-9),  # blind to level
        (lambda x: -x, 1.0, 1e-6),  # polarity inverted: |X + Y| = 0
        (lambda x: -0.25 * x, 0.4, 1e-9),  # |X| + |Y| - |X + Y| = 2 * 0.25|X| over 1.25|X|
    ],
    ids=["identical", "scaled", "inverted", "inverted-scaled"],
)
def test_sum_magnitude_known_values(rng, make_y, expected, tol):
    x = rng.standard_normal(4096)
    y = make_y(x)
    assert sum_magnitude_stft_loss(x, y, n_fft=256, hop=64) == pytest.approx(expected, abs=tol)
    assert sum_magnitude_stft_loss(x, y) == pytest.approx(expected, abs=tol)  # default n_fft=2048, hop=512


def test_sum_magnitude_of_independent_noise_is_between(noise, rng):
    value = sum_magnitude_stft_loss(noise, rng.standard_normal(N), **SMALL_STFT)
    assert 0.1 < value < 0.6


def test_multi_resolution_is_mean_of_single_resolutions(noise, rng):
    y = noise + 0.5 * rng.standard_normal(N)
    sizes = (32, 64, 256)
    expected = np.mean([sum_magnitude_stft_loss(noise, y, n_fft=n, hop=n // 4) for n in sizes])
    assert multi_resolution_sum_magnitude_loss(noise, y, fft_sizes=sizes) == pytest.approx(expected, rel=1e-14)
    expected_half = np.mean([sum_magnitude_stft_loss(noise, y, n_fft=n, hop=n // 2) for n in sizes])
    value = multi_resolution_sum_magnitude_loss(noise, y, fft_sizes=sizes, hop_ratio=0.5)
    assert value == pytest.approx(expected_half, rel=1e-14)
    assert multi_resolution_sum_magnitude_loss(noise, -noise, fft_sizes=sizes) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    ("make_y", "expected"),
    [(lambda x: x, 0.0), (lambda x: 3.0 * x, 0.0), (lambda x: -x, 2.0), (lambda x: -0.1 * x, 2.0)],
    ids=["identical", "scaled", "inverted", "inverted-scaled"],
)
def test_ncc_loss_known_values(noise, make_y, expected):
    assert ncc_loss(noise, make_y(noise)) == pytest.approx(expected, abs=1e-12)


def test_ncc_loss_of_orthogonal_signals_is_one():
    x = np.sin(2 * np.pi * 4 * np.arange(N) / N)
    y = np.cos(2 * np.pi * 4 * np.arange(N) / N)
    assert ncc_loss(x, y) == pytest.approx(1.0, abs=1e-12)


def test_mse_loss_known_value(noise):
    assert mse_loss(noise, noise) == 0.0
    assert mse_loss(noise + 0.5, noise) == pytest.approx(0.25, rel=1e-12)
    assert mse_loss(np.zeros(4), np.array([1.0, -1.0, 2.0, 0.0])) == pytest.approx(1.5)


# -- STFT ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_fft", "hop"), [(64, 16), (256, 64), (100, 33), (N, 1)])
def test_stft_matches_framed_rfft(noise, n_fft, hop):
    window = signal.get_window("hann", n_fft)  # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(noise, n_fft)[::hop]
    expected = np.fft.rfft(frames * window, axis=-1)
    spec = stft(noise, n_fft=n_fft, hop=hop)
    assert spec.shape == (1 + (N - n_fft) // hop, n_fft // 2 + 1)
    np.testing.assert_allclose(spec, expected, rtol=0, atol=1e-11)


def test_stft_batched(rng):
    x = rng.standard_normal((2, 3, 300))
    spec = stft(x, **SMALL_STFT)
    assert spec.shape == (2, 3, 1 + (300 - 64) // 16, 33)
    np.testing.assert_allclose(spec[1, 2], stft(x[1, 2], **SMALL_STFT), rtol=0, atol=0)


def test_stft_too_short_raises_parameter_error():
    with pytest.raises(ParameterError, match="shorter than n_fft=64"):
        stft(np.ones(63), n_fft=64, hop=16)


def test_stft_too_short_raises_value_error():
    with pytest.raises(ValueError, match="signal of 63 samples is shorter than n_fft=64"):
        sum_magnitude_stft_loss(np.ones(63), np.ones(63), n_fft=64, hop=16)


# -- gradients and NaN safety -----------------------------------------------------------------------


def _loss_cases(rng):
    x = rng.standard_normal(256)
    y = rng.standard_normal(256) + 0.5 * x
    phase = rng.uniform(-3, 3, 64)
    target = rng.uniform(-3, 3, 64)
    weights = rng.uniform(0.1, 1.0, 64)
    return {
        "phase": (lambda p: phase_loss(p, target, weights), phase),
        "phase-unweighted": (lambda p: phase_loss(p, target), phase),
        "complex-via-phase": (lambda p: complex_response_loss(anp.exp(1j * p), np.exp(1j * target), weights), phase),
        "complex-direct": (
            lambda h: complex_response_loss(h, np.exp(1j * target), weights),
            np.exp(1j * phase) * rng.uniform(0.5, 1.5, 64),
        ),
        "group-delay": (lambda t: group_delay_loss(t, 3.0 + target, weights), 3.0 + phase),
        "sum-magnitude": (lambda s: sum_magnitude_stft_loss(s, y, **SMALL_STFT), x),
        "sum-magnitude-second-arg": (lambda s: sum_magnitude_stft_loss(x, s, **SMALL_STFT), y),
        "multi-resolution": (lambda s: multi_resolution_sum_magnitude_loss(s, y, fft_sizes=(32, 64)), x),
        "mse": (lambda s: mse_loss(s, y), x),
        "ncc": (lambda s: ncc_loss(s, y), x),
    }


@pytest.mark.parametrize(
    "name",
    ["phase", "phase-unweighted", "complex-via-phase", "complex-direct", "group-delay", "sum-magnitude",
     "sum-magnitude-second-arg", "multi-resolution", "mse", "ncc"],
)
def test_loss_gradients(name, check_grads, rng):
    loss, argument = _loss_cases(rng)[name]
    assert np.ndim(loss(argument)) == 0
    check_grads(loss)(argument)


@pytest.mark.parametrize(
    ("loss", "make_pair"),
    [
        (lambda x, y: sum_magnitude_stft_loss(x, y, **SMALL_STFT), lambda x: (x, -x)),
        (lambda x, y: sum_magnitude_stft_loss(x, y, **SMALL_STFT), lambda x: (0 * x, x)),
        (lambda x, y: multi_resolution_sum_magnitude_loss(x, y, fft_sizes=(32, 64)), lambda x: (x, -x)),
        (ncc_loss, lambda x: (0 * x, x)),
        (ncc_loss, lambda x: (x, x)),
    ],
    ids=["sum-mag-cancel", "sum-mag-silent", "multi-cancel", "ncc-silent", "ncc-identical"],
)
def test_gradients_are_finite_at_degenerate_points(loss, make_pair, noise):
    x, y = make_pair(noise)
    g = grad(loss)(x, y)
    assert g.shape == x.shape and np.all(np.isfinite(g))
