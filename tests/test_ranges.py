"""Tests of apfdsp.ranges: the parameter table, its maps and inverses, and stability by construction."""

import json
from contextlib import nullcontext

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import signal

from apfdsp.cascade import Allpass1, Allpass2, AllpassCascade, Delay
from apfdsp.exceptions import ParameterError
from apfdsp.filters import thiran_coef
from apfdsp.ranges import DEFAULT_RANGES, ParamRanges, decay_for_radius, radius_for_decay

FS = 48000.0
T_INNER = np.linspace(-0.999, 0.999, 201)
EPS = np.finfo(float).eps


@pytest.mark.parametrize(
    ("kwargs", "expectation"),
    [
        ({}, nullcontext()),
        ({"r_max": 0.99999, "warp_max": 0.0, "coef_max": 0.5, "fc_min_hz": 1.0, "fc_max_hz": 2.0}, nullcontext()),
        ({"r_max": 0.0}, pytest.raises(ParameterError, match=r"r_max must lie in \(0.0, 1.0\), got 0.0")),
        ({"r_max": 1.0}, pytest.raises(ParameterError, match=r"r_max must lie in \(0.0, 1.0\), got 1.0")),
        ({"r_max": np.nan}, pytest.raises(ParameterError, match="r_max must be a finite real number, got nan")),
        ({"r_max": "0.9"}, pytest.raises(ParameterError, match="r_max must be a finite real number, got '0.9'")),
        ({"r_max": True}, pytest.raises(ParameterError, match="r_max must be a finite real number")),
        ({"warp_max": -0.1}, pytest.raises(ParameterError, match=r"warp_max must lie in \[0.0, 1.0\)")),
        ({"warp_max": 1.0}, pytest.raises(ParameterError, match="warp_max")),
        ({"coef_max": 0.0}, pytest.raises(ParameterError, match=r"coef_max must lie in \(0.0, 1.0\)")),
        ({"coef_max": 1.0}, pytest.raises(ParameterError, match="coef_max")),
        ({"fc_min_hz": 0.0}, pytest.raises(ParameterError, match="fc_min_hz must lie in")),
        ({"fc_min_hz": np.inf}, pytest.raises(ParameterError, match="fc_min_hz")),
        ({"fc_max_hz": 5.0}, pytest.raises(ParameterError, match="fc_max_hz must exceed fc_min_hz=5.0, got 5.0")),
        ({"fc_min_hz": 100.0, "fc_max_hz": 50.0}, pytest.raises(ParameterError, match="fc_max_hz must exceed")),
    ],
)
def test_param_ranges_validation(kwargs, expectation):
    with expectation:
        ranges = ParamRanges(**kwargs)
        assert ranges.to_dict() == {**DEFAULT_RANGES.to_dict(), **kwargs}


@pytest.mark.parametrize(
    ("kwargs", "fs", "expectation"),
    [
        ({}, 48000, nullcontext((5.0, 0.499 * 48000))),
        ({"fc_max_hz": 20000.0}, 48000, nullcontext((5.0, 20000.0))),
        ({"fc_max_hz": 24000.0}, 48000, pytest.raises(ParameterError, match=r"must lie below fs/2 = 24000 Hz")),
        ({"fc_min_hz": 30000.0}, 48000, pytest.raises(ParameterError, match="must lie below fs/2")),
        ({}, 0, pytest.raises(ParameterError, match="fs must be a positive finite sample rate")),
        ({}, "48k", pytest.raises(ParameterError, match="fs must be a sample rate in Hz")),
    ],
)
def test_fc_limits(kwargs, fs, expectation):
    with expectation as expected:
        assert ParamRanges(**kwargs).fc_limits(fs) == pytest.approx(expected, rel=1e-15)


def test_to_dict_is_json_safe_and_restores():
    ranges = ParamRanges(r_max=0.99, fc_min_hz=20.0, fc_max_hz=18000.0, warp_max=0.8, coef_max=0.9)
    assert ParamRanges(**json.loads(json.dumps(ranges.to_dict()))) == ranges


def test_maps_pinned_values():
    r = ParamRanges(r_max=0.98, fc_min_hz=10.0, fc_max_hz=10000.0, warp_max=0.9, coef_max=0.8)
    assert r.pole_radius(-1.0) == 0.0 and r.pole_radius(1.0) == 0.98 and r.pole_radius(0.0) == 0.49
    assert r.fc_hz(-1.0, fs=FS) == pytest.approx(10.0, rel=1e-14)
    assert r.fc_hz(1.0, fs=FS) == pytest.approx(10000.0, rel=1e-14)
    assert r.fc_hz(0.0, fs=FS) == pytest.approx(np.sqrt(10.0 * 10000.0), rel=1e-14)  # log scale: geometric mean
    assert r.warp(-0.5) == -0.45 and r.coef(0.25) == 0.2
    # Default: fc_max_hz = 0.499 fs.
    assert DEFAULT_RANGES.fc_hz(1.0, fs=44100) == pytest.approx(0.499 * 44100, rel=1e-14)


@pytest.mark.parametrize(
    ("forward", "inverse"),
    [
        (lambda r, t: r.pole_radius(t, fs=FS), lambda r, x: r.pole_radius_inv(x, fs=FS)),
        (lambda r, t: r.fc_hz(t, fs=FS), lambda r, x: r.fc_hz_inv(x, fs=FS)),
        (lambda r, t: r.warp(t), lambda r, x: r.warp_inv(x)),
        (lambda r, t: r.coef(t, fs=FS), lambda r, x: r.coef_inv(x, fs=FS)),
    ],
    ids=["pole_radius", "fc_hz", "warp", "coef"],
)
def test_maps_are_monotone_and_inverted(forward, inverse):
    r = DEFAULT_RANGES
    values = forward(r, T_INNER)
    assert np.all(np.diff(values) > 0)
    np.testing.assert_allclose(inverse(r, values), T_INNER, rtol=0, atol=1e-12)
    # Inverses clip into the open interval, so the forward map of the clipped value stays in range.
    assert -1 < inverse(r, forward(r, -1.0)) < -1 + 1e-8
    assert 1 - 1e-8 < inverse(r, forward(r, 1.0)) < 1


def test_warp_inverse_with_zero_warp_max_is_finite():
    r = ParamRanges(warp_max=0.0)
    assert r.warp(0.7) == 0.0
    np.testing.assert_array_equal(r.warp_inv(np.array([0.0])), [0.0])


def test_maps_are_differentiable(check_grads):
    r = DEFAULT_RANGES

    def physical(t):
        return r.pole_radius(t[0], fs=FS) + 1e-4 * r.fc_hz(t[1], fs=FS) + r.warp(t[2]) + r.coef(t[0] * t[2], fs=FS)

    check_grads(physical)(np.array([0.3, -0.4, 0.8]))


# -- stability by construction (property tests) --------------------------------------------------------

OPEN_T = st.floats(min_value=-1.0, max_value=1.0, exclude_min=True, exclude_max=True, allow_nan=False)
RANGES = st.builds(
    ParamRanges,
    max_decay_s=st.floats(1e-4, 10.0),
    r_max=st.one_of(st.none(), st.floats(0.05, 0.9999)),
    fc_min_hz=st.floats(1.0, 100.0),
    fc_max_hz=st.one_of(st.none(), st.floats(200.0, 20000.0)),
    warp_max=st.floats(0.0, 0.99),
    coef_max=st.one_of(st.none(), st.floats(0.05, 0.9999)),
)
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None)
W_GRID = np.linspace(0.0, np.pi, 257)


def _check_allpass_and_stable(cascade):
    """|H| = 1 for the analytic response (to 1e-12) and for sosfreqz of the exported SOS; poles inside.

    The SOS check carries a conditioning-aware tolerance: with a pole at distance delta from the unit
    circle, one rounding of a coefficient moves |H| by about eps / delta^2 (a true limit of any SOS).
    """
    poles = cascade.poles()
    assert np.all(np.abs(poles) < 1)
    np.testing.assert_allclose(np.abs(cascade.response(W_GRID * cascade.fs / (2 * np.pi))), 1.0, rtol=0, atol=1e-12)
    sos = cascade.sos
    _, h = signal.sosfreqz(sos, worN=W_GRID)
    delta = 1.0 - np.max(np.abs(poles)) if poles.size else 1.0
    np.testing.assert_allclose(np.abs(h), 1.0, rtol=0, atol=1e-12 + 64 * EPS / delta**2)


@pytest.mark.filterwarnings("ignore::scipy.signal.BadCoefficients")
@PROPERTY_SETTINGS
@given(t_radius=OPEN_T, t_fc=OPEN_T, t_warp=OPEN_T, stretch=st.integers(1, 8), ranges=RANGES)
@example(t_radius=1 - 1e-16, t_fc=-1 + 1e-16, t_warp=-1 + 1e-16, stretch=8, ranges=DEFAULT_RANGES)  # worst corner
@example(t_radius=-1 + 1e-16, t_fc=0.0, t_warp=1e-300, stretch=2, ranges=DEFAULT_RANGES)  # R ~ 1e-17
def test_every_normalised_second_order_section_is_stable_allpass(t_radius, t_fc, t_warp, stretch, ranges):
    fs = FS
    radius = ranges.pole_radius(t_radius, fs=fs)
    assert 0 <= radius <= ranges.radius_limit(fs) < 1  # t -> 1 may round onto r_max itself, still stable
    fc = ranges.fc_hz(t_fc, fs=fs)
    warp = ranges.warp(t_warp)
    assert abs(warp) <= ranges.warp_max < 1
    _check_allpass_and_stable(AllpassCascade([Allpass2(radius, fc, warp, stretch)], fs=fs))


@pytest.mark.filterwarnings("ignore::scipy.signal.BadCoefficients")
@PROPERTY_SETTINGS
@given(t_coef=OPEN_T, t_warp=OPEN_T, t_delay=OPEN_T, stretch=st.integers(1, 8), ranges=RANGES)
def test_every_normalised_first_order_section_and_delay_is_stable_allpass(t_coef, t_warp, t_delay, stretch, ranges):
    coef = ranges.coef(t_coef, fs=FS)
    assert abs(coef) < ranges.coef_limit(FS) < 1
    warp = ranges.warp(t_warp)
    if stretch > 1 and abs(coef + warp) < 1e-12:
        return  # the degenerate pure-delay case is the known bug pinned in test_filters.py
    # The fitted fractional delay unit: Thiran of 1 + t/2 samples (fit.py), in (0.5, 1.5).
    frac = 1.0 + 0.5 * t_delay
    assert abs(thiran_coef(frac)) < 1
    cascade = AllpassCascade([Allpass1(coef, warp, stretch), Delay(4.0 + frac)], fs=FS)
    _check_allpass_and_stable(cascade)


# -- limits in seconds: the same meaning at every sample rate --------------------------------------------


@pytest.mark.parametrize("fs", [8000.0, 44100.0, 48000.0, 96000.0, 192000.0])
@pytest.mark.parametrize("decay_s", [0.01, 0.15, 2.0])
def test_radius_limit_is_a_decay_time_at_every_rate(fs, decay_s):
    """The slowest allowed pole decays by 60 dB in max_decay_s seconds, whatever the rate: checked on the
    impulse response of a one-pole filter (scipy.signal.lfilter) at that radius."""
    ranges = ParamRanges(max_decay_s=decay_s)
    radius = ranges.radius_limit(fs)
    assert ranges.coef_limit(fs) == radius < 1
    n = int(round(decay_s * fs))
    impulse = signal.lfilter([1.0], [1.0, -radius], np.r_[1.0, np.zeros(n)])
    assert 20 * np.log10(impulse[n]) == pytest.approx(-60.0, abs=1e-6 + 20 * np.log10(radius) * -1.0)
    assert decay_for_radius(radius, fs=fs) == pytest.approx(decay_s, rel=1e-9)
    # the largest normalised value maps onto that radius, and its inverse back
    assert ranges.pole_radius(1.0, fs=fs) == radius
    assert ranges.pole_radius_inv(ranges.pole_radius(0.3, fs=fs), fs=fs) == pytest.approx(0.3, abs=1e-12)


def test_default_limit_holds_the_surveyor_model_at_192k_and_stays_near_0999_at_48k():
    """The default decay limit (0.144 s) reaches the pole radii of the paper's Surveyor model at 192 kHz
    (second-order R up to 0.99923, first-order coefficient -0.9995 once its warp is folded in), which the
    old per-sample limit 0.999 did not, and is 0.999 at 48 kHz, as before."""
    from apfdsp import pretrained

    surveyor = pretrained.load("surveyor-192k")
    fs = surveyor.fs
    for cell in surveyor:
        if isinstance(cell, Allpass2):
            assert cell.pole_radius < DEFAULT_RANGES.radius_limit(fs)
            assert abs(cell.warp) < DEFAULT_RANGES.warp_max
        elif isinstance(cell, Allpass1):
            coef = (cell.coef + cell.warp) / (1.0 + cell.coef * cell.warp)
            assert 0.999 < abs(coef) < DEFAULT_RANGES.coef_limit(fs)
    assert DEFAULT_RANGES.radius_limit(48000) == pytest.approx(0.999, abs=2e-6)
    assert DEFAULT_RANGES.radius_limit(44100) < DEFAULT_RANGES.radius_limit(48000) < DEFAULT_RANGES.radius_limit(192000)


def test_limits_that_depend_on_fs_need_fs():
    with pytest.raises(ParameterError, match="pass fs"):
        DEFAULT_RANGES.pole_radius(0.0)
    with pytest.raises(ParameterError, match="pass fs"):
        DEFAULT_RANGES.coef(0.0)
    fixed = ParamRanges(r_max=0.9, coef_max=0.8)
    assert fixed.pole_radius(1.0) == fixed.radius_limit(192000) == 0.9 and fixed.coef(1.0) == 0.8
    with pytest.raises(ParameterError, match="max_decay_s must lie in"):
        ParamRanges(max_decay_s=0.0)
    with pytest.raises(ParameterError, match="decay_s must be a finite real number, got inf"):
        radius_for_decay(np.inf, fs=48000)
