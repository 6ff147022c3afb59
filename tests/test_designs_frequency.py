"""Tests of the frequency-domain designs of apfdsp.designs (M. Lang's equation error, roots to sections,
group-delay starts), against scipy.signal.freqz / group_delay as the second route."""

import numpy as np
import pytest
from scipy import signal

from apfdsp.cascade import Allpass1, Allpass2, AllpassCascade
from apfdsp.designs import (DESIGN, equation_error_allpass, equation_error_allpass_blas,
                            denominator_roots, equation_error_phase_loss, group_delay_peaks, low_group_delay,
                            sections_from_poles)
from apfdsp.filters import warped_frequency

FS = 48000.0
W = np.linspace(0.005, 3.13, 700)


def _random_denominator(rng, n_pairs, n_real):
    """A stable real denominator A(z) with `n_pairs` complex pole pairs and `n_real` real poles."""
    radius = rng.uniform(0.2, 0.95, n_pairs)
    angle = rng.uniform(0.05, 3.0, n_pairs)
    poles = np.r_[radius * np.exp(1j * angle), radius * np.exp(-1j * angle), rng.uniform(-0.9, 0.9, n_real)]
    return np.poly(poles).real


def _allpass_response(a, w):
    return signal.freqz(a[::-1], a, worN=w)[1]


@pytest.mark.parametrize(("n_pairs", "n_real"), [(1, 0), (2, 1), (4, 0), (6, 3)])
def test_equation_error_is_exact_on_an_allpass(rng, n_pairs, n_real):
    a_true = _random_denominator(rng, n_pairs, n_real)
    order = a_true.size - 1
    basis = np.exp(-1j * np.outer(np.arange(order + 3), W))  # a basis longer than needed
    weights = rng.uniform(0.1, 1.0, W.size)
    a = equation_error_allpass(basis, _allpass_response(a_true, W), order, weights)
    assert np.allclose(a, a_true[1:], atol=1e-8)


@pytest.mark.parametrize(("order", "n_stack"), [(1, 3), (7, 5), (17, 12)])
def test_equation_error_of_a_stack_is_bit_identical_to_one_by_one(rng, order, n_stack):
    """The fit solves the designs of one order as a stack; its choice of starts needs the very same bits
    (small and large stacks: numpy takes other code paths for temporaries above 256 KiB)."""
    w = np.linspace(0.005, 3.13, 1034)
    basis = np.exp(-1j * np.outer(np.arange(order + 2), warped_frequency(w, -0.8)))
    responses = np.exp(1j * rng.uniform(-np.pi, np.pi, (n_stack, w.size)))
    weights = rng.uniform(0.0, 1.0, w.size)
    stacked = equation_error_allpass(basis, responses, order, weights)
    assert stacked.shape == (n_stack, order)
    for response, row in zip(responses, stacked):
        assert np.array_equal(equation_error_allpass(basis, response, order, weights), row)


def test_equation_error_singular_system_gives_zeros():
    basis = np.exp(-1j * np.outer(np.arange(4), W))
    a = equation_error_allpass(basis, np.exp(-1j * W), 3, np.zeros_like(W))
    assert np.array_equal(a, np.zeros(3))
    stacked = equation_error_allpass(basis, np.stack([np.exp(-1j * W)] * 2), 3, np.zeros_like(W))
    assert np.array_equal(stacked, np.zeros((2, 3)))


def test_blas_variant_designs_the_same(rng):
    a_true = _random_denominator(rng, 3, 1)
    order = a_true.size - 1
    h = _allpass_response(a_true, W) * np.exp(1j * rng.normal(0, 0.05, W.size))  # noisy: not exact
    weights = rng.uniform(0.1, 1.0, W.size)
    by_einsum = equation_error_allpass(np.exp(-1j * np.outer(np.arange(order + 1), W)), h, order, weights)
    by_blas = equation_error_allpass_blas(np.exp(-1j * np.outer(W, np.arange(order + 1))), h, order, weights)
    assert np.allclose(by_einsum, by_blas, rtol=1e-8, atol=1e-10)


def test_equation_error_phase_loss_finds_the_shift():
    f = np.linspace(10.0, 23990.0, 3000)
    truth = AllpassCascade([Allpass2(0.8, 2000.0), Allpass1(0.3)], fs=FS)
    target = truth.phase(f) - 2 * np.pi * f / FS * 4  # 4 samples of extra delay
    weights = np.ones_like(f)
    assert equation_error_phase_loss(f, target, fs=FS, weights=weights, order=3, shifts=(0, 4)) < 1e-20
    assert equation_error_phase_loss(f, target, fs=FS, weights=weights, order=3, shifts=(0,)) > 1e-3


def test_sections_from_poles_reflects_and_flags(rng):
    """A design with poles outside the circle: the flagged (anticausal) sections give back its exact
    response, the reflected causal ones its conjugate (second route: scipy.signal.freqz)."""
    inside = 0.8 * np.exp(0.7j)
    outside = 1.25 * np.exp(2.0j)
    real_outside = -1.6
    poles = np.array([inside, inside.conjugate(), outside, outside.conjugate(), real_outside])
    sections2, coefs1, flags = sections_from_poles(poles, fs=FS, r_max=0.999)
    assert flags == [False, True, True]
    assert [r for r, _, _ in sections2] == pytest.approx([0.8, 0.8])
    assert sections2[1][1] == pytest.approx(2.0 * FS / (2 * np.pi))
    assert coefs1 == pytest.approx([1 / 1.6])
    cells = [Allpass2(r, fc, anticausal=flag) for (r, fc, _), flag in zip(sections2, flags)]
    cells.append(Allpass1(coefs1[0], anticausal=flags[2]))
    f = W * FS / (2 * np.pi)
    a = np.poly(poles).real
    h_design = _allpass_response(a, W)
    h_cells = AllpassCascade(cells, fs=FS).response(f)
    # equal up to a constant unit factor (the real pole outside contributes -1/p)
    ratio = h_design / h_cells
    assert np.allclose(ratio, ratio[0], atol=1e-9) and abs(abs(ratio[0]) - 1) < 1e-9


def test_sections_from_poles_clips_the_radius():
    r_max = 0.99
    sections2, coefs1, _ = sections_from_poles(np.array([0.9999j, -0.9999j, 0.99995]), fs=FS, r_max=r_max)
    assert sections2[0][0] == r_max ** DESIGN.section_decay_power
    assert abs(coefs1[0]) == r_max ** DESIGN.section_decay_power


def test_low_group_delay_of_a_delay_plus_allpass():
    f = W * FS / (2 * np.pi)
    phase = AllpassCascade([Allpass2(0.9, 3000.0)], fs=FS).phase(f) - 12.0 * W
    tau = -np.gradient(np.unwrap(phase), W)
    assert low_group_delay(W, phase, np.ones_like(W)) == pytest.approx(np.percentile(tau, 10))
    assert 12.0 < low_group_delay(W, phase, np.ones_like(W)) < 13.0
    assert low_group_delay(W, phase, np.r_[1.0, 1.0, np.zeros(W.size - 2)]) == 0.0


def test_group_delay_peaks_finds_the_sections():
    f = np.linspace(10.0, 23000.0, 6000)
    w = 2 * np.pi * f / FS
    truth = AllpassCascade([Allpass2(0.97, 500.0), Allpass2(0.9, 8000.0)], fs=FS)
    peaks = group_delay_peaks(w, truth.phase(f), np.ones_like(f), 4, fs=FS, r_max=0.999)
    assert len(peaks) == 2
    by_frequency = sorted(peaks, key=lambda section: section[1])
    assert by_frequency[0][1] == pytest.approx(500.0, rel=0.02)
    assert by_frequency[1][1] == pytest.approx(8000.0, rel=0.02)
    assert by_frequency[0][0] > by_frequency[1][0]  # the sharper peak gets the larger radius
    assert group_delay_peaks(w, truth.phase(f), np.ones_like(f), 1, fs=FS, r_max=0.999) == peaks[:1]
    assert group_delay_peaks(w, -3.0 * w, np.ones_like(f), 4, fs=FS, r_max=0.999) == []


def test_denominator_roots_equal_numpy_roots(rng):
    for order in (1, 2, 5, 12):
        a = rng.normal(0, 0.5, (9, order))
        a[3, -1] = 0.0  # a root at z = 0 (numpy.roots deflates it)
        a[5] = np.poly(rng.uniform(-0.9, 0.9, order))[1:]  # all roots real: a real array
        for row, roots in zip(a, denominator_roots(a)):
            expected = np.roots(np.r_[1.0, row])
            assert roots.dtype == expected.dtype and np.array_equal(roots, expected)
    assert denominator_roots(np.zeros((0, 3))) == []
