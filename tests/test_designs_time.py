"""Tests of the time-domain designs of apfdsp.designs: equation error on samples, Steiglitz-McBride."""

import dataclasses

import numpy as np
import pytest
from scipy import signal

from apfdsp.cascade import Allpass1, Allpass2, AllpassCascade, Delay
from apfdsp.designs import (
    DESIGN,
    _allpass_sos,
    _bulk_delays,
    _DesignScore,
    _inverse_sos,
    _LaggedPair,
    _sections_from_v_poles,
    _solve_equation_error,
    _stable_poles,
    _start_layout,
    _steiglitz_mcbride,
    _z_poles,
    null_on_audio,
    time_equation_error_ladder,
    time_equation_error_starts,
    warped_radius_bound,
)
from apfdsp.estimate import estimate
from apfdsp.ranges import DEFAULT_RANGES

FS = 16000


# -- the least-squares machinery ----------------------------------------------------------------------


def _poles(cascade):
    _, poles, _ = signal.sos2zpk(cascade.sos)
    return np.sort_complex(poles[np.abs(poles) > 1e-12])


@pytest.mark.parametrize("warp", [0.0, -0.8, 0.5])
def test_solve_equation_error_is_exact(rng, warp):
    """One solve recovers the denominator of audio through an allpass, with a gain and a polarity flip."""
    effect = AllpassCascade([Allpass2(0.9, 800.0), Allpass2(0.5, 3000.0), Allpass1(0.4)], fs=FS)
    dry = rng.standard_normal(8000)
    wet = -0.7 * np.concatenate([np.zeros(5), effect(dry)[:-5]])
    pair = _LaggedPair(dry, wet)
    if warp == 0.0:  # every delay from one Gram matrix: the true one has no equation error
        delays = np.arange(2, 9)
        gram = pair.gram(5, (2, 8 + 5))
        a, residual = _solve_equation_error(gram, y_order=5, x_lo=2, order=5, delays=delays, polarity=-1,
                                            instrumental=True, n_gain=3)
        best = int(np.argmin(residual))
        assert delays[best] == 5 and residual[best] < 1e-20
        a = a[best]
    else:
        gram = pair.gram(5, (5, 10), warp=warp)
        a = _solve_equation_error(gram, y_order=5, x_lo=5, order=5, delays=[5], polarity=-1, n_gain=3)[0][0]
    np.testing.assert_allclose(np.sort_complex(_z_poles(np.roots(np.r_[1.0, a]), warp)), _poles(effect), atol=1e-8)


def test_instrumental_variables_are_consistent_under_noise(rng):
    """Noise on the wet (-10 dB): plain least squares is biased, the instrumental-variable solve is not."""
    effect = AllpassCascade([Allpass2(0.9, 800.0), Allpass2(0.6, 3000.0)], fs=FS)
    dry = rng.standard_normal(FS)
    wet = np.concatenate([np.zeros(3), effect(dry)[:-3]]) + 0.3 * rng.standard_normal(FS)
    a_true = np.real(np.poly(_poles(effect)))[1:]
    gram = _LaggedPair(dry, wet).gram(4, (0, 12))
    errors = [np.linalg.norm(_solve_equation_error(gram, y_order=4, x_lo=0, order=4, delays=[3], polarity=1,
                                                   instrumental=iv, n_gain=3)[0][0] - a_true)
              for iv in (False, True)]
    assert errors[0] > 0.5 and errors[1] < 0.05


@pytest.mark.parametrize("warp", [0.0, -0.8, 0.5])
def test_allpass_inverse_and_section_maps(rng, warp):
    """`_allpass_sos` of the z-plane poles = the warped sections from `_sections_from_v_poles`, and
    `_inverse_sos` is 1/A(V) up to a constant (V = (z^-1 + warp)/(1 + warp z^-1))."""
    v_poles = np.array([0.8 * np.exp(0.3j), 0.8 * np.exp(-0.3j), 0.5 * np.exp(2j), 0.5 * np.exp(-2j), -0.3])
    sections2, coefs1 = _sections_from_v_poles(v_poles, warp, structure="warped", ranges=DEFAULT_RANGES, fs=FS)
    cells = [Allpass2(r, fc, w) for r, fc, w in sections2] + [Allpass1(c) for c in coefs1]
    x = rng.standard_normal(500)
    np.testing.assert_allclose(signal.sosfilt(_allpass_sos(_z_poles(v_poles, warp)), x),
                               AllpassCascade(cells, fs=FS).apply(x), atol=1e-12)
    w, response = signal.sosfreqz(_inverse_sos(v_poles, warp), worN=64)
    v = (np.exp(-1j * w) + warp) / (1.0 + warp * np.exp(-1j * w))
    a_of_v = np.polyval(np.real(np.poly(v_poles))[::-1], v)  # 1 + a_1 V + ... + a_N V^N
    product = response * a_of_v
    np.testing.assert_allclose(product, product[0], rtol=1e-10)


# -- the parts of time_equation_error_starts -----------------------------------------------------------------


def test_constants_are_one_frozen_table():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DESIGN.sm_iter = 5
    assert DESIGN.max_order == 2 * 32 + 2 and DESIGN.exact_null_db == -100.0


def test_warped_radius_bound_is_the_largest_z_radius(rng):
    """The bound equals the largest |z| of (p - a)/(1 - a p) over |p| = R and |a| <= warp (brute force)."""
    for radius, warp in [(0.9, 0.5), (0.999, 0.95), (0.3, 0.0)]:
        p = radius * np.exp(1j * np.linspace(0, 2 * np.pi, 2001))
        a = np.linspace(-warp, warp, 201)[:, None]
        brute = np.max(np.abs((p - a) / (1 - a * p)))
        assert warped_radius_bound(radius, warp) == pytest.approx(brute, abs=1e-7)


def test_null_on_audio_matches_the_metric_and_is_zero_without_energy(rng):
    from apfdsp.metrics import null_depth_db

    dry = rng.standard_normal(4000)
    model = AllpassCascade([Allpass2(0.7, 900.0), Delay(2.0)], fs=FS)
    wet = AllpassCascade([Allpass2(0.7, 1000.0), Delay(2.0)], fs=FS)(dry)
    assert null_on_audio(model, dry, wet) == null_depth_db(model.apply(dry), wet, fs=FS)
    assert null_on_audio(model, dry, np.zeros(4000)) == 0.0


def test_bulk_delays_range():
    """From the GCC-PHAT delay minus 2 N_max + 2 to it plus 2; not below 0 when it is causal."""
    np.testing.assert_array_equal(_bulk_delays(3, 2), np.arange(0, 6))
    np.testing.assert_array_equal(_bulk_delays(20, 2), np.arange(14, 23))
    np.testing.assert_array_equal(_bulk_delays(-3, 2), np.arange(-9, 0))


def test_stable_poles_reflect_and_clip():
    a = np.real(np.poly([2.0, 0.5 * np.exp(1j), 0.5 * np.exp(-1j)]))[1:]
    poles = _stable_poles(a, 0.45)
    assert np.all(np.abs(poles) <= 0.45 + 1e-12)
    np.testing.assert_allclose(np.sort(np.abs(poles)), [0.45, 0.45, 0.45])
    poles = _stable_poles(a, 0.99)
    np.testing.assert_allclose(np.sort(np.abs(poles)), [0.5, 0.5, 0.5], atol=1e-12)  # 2 reflected to 1/2


def _allpass_pair(rng, *, noise=0.0, n=8000):
    effect = AllpassCascade([Allpass2(0.9, 800.0), Allpass2(0.5, 3000.0), Delay(4.0)], fs=FS)
    dry = rng.standard_normal((1, n))
    wet = effect(dry) + noise * rng.standard_normal((1, n))
    return effect, dry, wet


def test_design_score_output_error_and_penalty(rng):
    """The score of the true denominator is its order penalty only (output error 0); a wrong one is worse."""
    effect, dry, wet = _allpass_pair(rng)
    pair = _LaggedPair(dry, wet)
    blocks = pair.blocks(4, (0, 12))
    score = _DesignScore(pair, blocks, plain_radius=0.999, r_max=0.999, anticausal=False)
    upper = np.array([0.9 * np.exp(2j * np.pi * 800.0 / FS), 0.5 * np.exp(2j * np.pi * 3000.0 / FS)])
    a_true = np.real(np.poly(np.r_[upper, upper.conj()]))[1:]
    error, gain, two_sided = score(4, 4, 1, a_true, 0.0)
    assert error == pytest.approx(DESIGN.order_tiebreak * 4, abs=1e-20) and not two_sided
    np.testing.assert_allclose(gain, 1.0)
    assert score(4, 4, 1, a_true * 0.9, 0.0)[0] > 1e-4
    assert score(4, 4, 1, np.full(4, np.inf), 0.0)[0] == np.inf
    np.testing.assert_array_equal(score.outside(np.array([-2.5, 1.0])), [True, False])  # roots 2, 0.5


def test_steiglitz_mcbride_lowers_the_output_error_on_noise(rng):
    """From a biased plain least-squares design on a noisy wet, the iterations lower the output error."""
    _, dry, wet = _allpass_pair(rng, noise=0.3, n=FS)
    pair = _LaggedPair(dry, wet)
    score = _DesignScore(pair, pair.blocks(4, (4, 8)), plain_radius=0.999, r_max=0.999, anticausal=False)
    gram = pair.gram(4, (4, 8))
    a = _solve_equation_error(gram, y_order=4, x_lo=4, order=4, delays=[4], polarity=1)[0][0]
    design = (*score(4, 4, 1, a, 0.0), 4, 4, 1, a, 0.0)
    error, best_a, two_sided = _steiglitz_mcbride(pair, score, design)
    assert error < 0.9 * design[0] and not two_sided
    assert score(4, 4, 1, best_a, 0.0)[0] == error


def test_start_layout_origin_poles_join_the_delay_and_too_many_pairs_are_dropped():
    poles = np.array([0.0 + 0.0j, 0.8 * np.exp(0.3j), 0.8 * np.exp(-0.3j), 0.4 + 0.0j])
    shape = dict(structure="traditional", stretch=1, ranges=DEFAULT_RANGES, fs=FS)
    layout, t = _start_layout(poles, None, 0.0, 6, -1, n_sections=1, **shape)
    assert (layout.n2, layout.n1, layout.delay_shift, layout.polarity) == (1, 1, 6, -1)
    cells = layout.cells(t)
    assert isinstance(cells[-2], Delay) and cells[-2].samples == 7.0
    assert _start_layout(poles, None, 0.0, 6, 1, n_sections=0, **shape) is None
    flags = np.array([True, True, False, False])  # the origin pole anticausal: an advance
    layout, _ = _start_layout(poles, flags, 0.0, 6, 1, n_sections=1, **shape)
    assert layout.delay_shift == 4 and layout.anticausal == (True, False)


@pytest.mark.parametrize("structure", ["traditional", "warped"])
def test_starts_are_exact_on_audio_through_an_allpass(rng, structure):
    effect, dry, wet = _allpass_pair(rng)
    starts = time_equation_error_starts(dry, wet, estimate(dry, wet, fs=FS), n_sections=3, n_first_order=1,
                                        structure=structure, stretch=5, ranges=DEFAULT_RANGES, fs=FS)
    assert 1 <= len(starts) <= DESIGN.n_candidates + 1
    nulls = [null_on_audio(AllpassCascade(layout.cells(t), fs=FS), dry, wet) for layout, t in starts]
    assert nulls[0] < -100
    assert time_equation_error_starts(dry, wet, estimate(dry, wet, fs=FS), n_sections=3, n_first_order=1,
                                      structure="stretched", stretch=5, ranges=DEFAULT_RANGES, fs=FS) == []


def test_ladder_climbs_only_while_the_null_deepens(rng):
    """Four sections: the rungs (1, 2, 4, 8) stop at 4 (exact); a fixed n_sections is one rung."""
    effect = AllpassCascade([Allpass2(0.9, 500.0), Allpass2(0.8, 1500.0), Allpass2(0.7, 3000.0),
                             Allpass2(0.85, 5000.0)], fs=FS)
    dry = rng.standard_normal((1, FS // 2))
    wet = effect(dry)
    est = estimate(dry, wet, fs=FS)
    shape = dict(structure="traditional", stretch=1, ranges=DEFAULT_RANGES, fs=FS)
    starts, n = time_equation_error_ladder(dry, wet, est, n_sections=None, n_first_order=0, anticausal=False,
                                           rungs=(1, 2, 4, 8), margin_db=1.0, **shape)
    assert n == 4
    assert null_on_audio(AllpassCascade(starts[0][0].cells(starts[0][1]), fs=FS), dry, wet) < -100
    starts, n = time_equation_error_ladder(dry, wet, est, n_sections=2, n_first_order=0, anticausal=False,
                                           rungs=(1, 2, 4, 8), margin_db=1.0, **shape)
    assert n == 2 and all(layout.n2 <= 2 for layout, _ in starts)
