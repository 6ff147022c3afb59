"""Tests of apfdsp.layout.Layout: the autograd phase against the cells' own phase (a second route), the
map from physical parameters to t and back, and the constant phase."""

import numpy as np
import pytest
from autograd import grad

from apfdsp.cascade import Allpass1, Allpass2, AllpassCascade, Delay, Polarity
from apfdsp.layout import Layout
from apfdsp.ranges import DEFAULT_RANGES, ParamRanges

FS = 48000.0
F = np.geomspace(20.0, 20000.0, 300)
W = 2 * np.pi * F / FS

LAYOUTS = {
    "warped 3+1, delay, inverted": Layout(3, 1, "warped", 1, -1, 4, DEFAULT_RANGES, FS),
    "traditional 2": Layout(2, 0, "traditional", 1, 1, None, DEFAULT_RANGES, FS),
    "stretched 2+2": Layout(2, 2, "stretched", 3, 1, None, DEFAULT_RANGES, FS),
    "anticausal mix": Layout(2, 2, "warped", 1, 1, 0, DEFAULT_RANGES, FS, (True, False, False, True)),
    "delay only": Layout(0, 0, "warped", 1, 1, 7, DEFAULT_RANGES, FS),
    "advance + Thiran": Layout(1, 0, "warped", 1, 1, -3, DEFAULT_RANGES, FS),
    "other ranges": Layout(2, 1, "warped", 1, 1, None, ParamRanges(max_decay_s=0.02, fc_min_hz=30.0), 44100.0),
}


def _random_t(layout, rng):
    return rng.uniform(-0.95, 0.95, (layout.n_units, 3))


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_phase_matches_the_cells(name, rng):
    """Layout.phase (autograd route) equals the phase of the cascade of its cells (cascade's own route)."""
    layout = LAYOUTS[name]
    fs = layout.fs
    w = 2 * np.pi * F / fs
    t = _random_t(layout, rng)
    phase = layout.phase(t, w, layout.const_phase(w))
    cascade_phase = AllpassCascade(layout.cells(t), fs=fs).phase(F)
    assert np.allclose(np.exp(1j * phase), np.exp(1j * cascade_phase), atol=1e-9)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_phase_gradient_matches_finite_differences(name, rng):
    layout = LAYOUTS[name]
    w = 2 * np.pi * F / layout.fs
    t = _random_t(layout, rng)
    const = layout.const_phase(w)
    weights = rng.uniform(0, 1, F.size)

    def objective(tt):
        return np.sum(weights * layout.phase(tt, w, const))

    analytic = grad(objective)(t)
    step = 1e-6
    for index in np.ndindex(t.shape):
        bump = np.zeros_like(t)
        bump[index] = step
        numeric = (objective(t + bump) - objective(t - bump)) / (2 * step)
        assert abs(numeric - analytic[index]) < 1e-5 * max(1.0, abs(analytic[index]))


def test_cells_types_and_order():
    layout = LAYOUTS["warped 3+1, delay, inverted"]
    cells = layout.cells(np.zeros((layout.n_units, 3)))
    assert [type(c) for c in cells] == [Allpass2] * 3 + [Allpass1, Delay, Polarity]
    assert cells[4].samples == 5.0  # shift 4 + (1 + 0/2), snapped to an integer


def test_t_from_and_cells_round_trip():
    """Physical parameters -> t -> cells gives back the parameters (inside the ranges)."""
    layout = Layout(2, 1, "warped", 1, 1, 2, DEFAULT_RANGES, FS, (False, True, False))
    sections = [(0.9, 250.0, -0.3), (0.5, 7000.0, 0.6)]
    t = layout.t_from(sections, [-0.4], 1.3)
    cells = layout.cells(t)
    for cell, (radius, fc, warp) in zip(cells[:2], sections):
        assert cell.pole_radius == pytest.approx(radius, rel=1e-12)
        assert cell.fc_hz == pytest.approx(fc, rel=1e-12)
        assert cell.warp == pytest.approx(warp, rel=1e-12)
    assert cells[1].anticausal and not cells[0].anticausal
    assert cells[2].coef == pytest.approx(-0.4, rel=1e-12)
    assert cells[3].samples == pytest.approx(3.3, rel=1e-12)


def test_t_from_clips_into_the_open_range():
    layout = Layout(1, 1, "warped", 1, 1, 0, DEFAULT_RANGES, FS)
    t = layout.t_from([(1.5, 1e6, 3.0)], [2.0], 9.0)
    assert np.all(np.abs(t) < 1)
    assert np.all(np.abs(AllpassCascade(layout.cells(t), fs=FS).poles()) < 1)


def test_t_from_leaves_missing_rows_zero():
    layout = Layout(3, 2, "warped", 1, 1, None, DEFAULT_RANGES, FS)
    t = layout.t_from([(0.5, 1000.0, 0.0)], [])
    assert np.all(t[1:] == 0)


def test_const_phase_is_shift_and_polarity():
    assert np.array_equal(Layout(0, 0, "warped", 1, 1, None, DEFAULT_RANGES, FS).const_phase(W), -W * 0)
    layout = Layout(0, 0, "warped", 1, -1, 5, DEFAULT_RANGES, FS)
    assert np.allclose(layout.const_phase(W), -5 * W - np.pi)


def test_signs_and_replace():
    layout = Layout(1, 1, "warped", 1, 1, None, DEFAULT_RANGES, FS)
    assert layout.signs() is None
    assert layout.replace(anticausal=(False, False)).signs() is None
    mixed = layout.replace(anticausal=(False, True))
    assert np.array_equal(mixed.signs(), [1.0, -1.0])
    assert mixed.n2 == layout.n2 and layout.anticausal == ()  # the original is unchanged (frozen)
    with pytest.raises(AttributeError):
        layout.n2 = 3
