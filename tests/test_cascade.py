"""Tests of apfdsp.cascade: cells and AllpassCascade against scipy.signal (sosfreqz, group_delay, sosfilt)."""

import json
from contextlib import nullcontext

import numpy as np
import pytest
from scipy import signal

from apfdsp.cascade import Allpass1, Allpass2, AllpassCascade, Delay, FilterState, Polarity
from apfdsp.exceptions import ParameterError
from apfdsp.filters import thiran_coef
from apfdsp.model_format import load_model, save_model

FS = 48000.0
F = np.linspace(0.0, FS / 2, 2049)  # DC to Nyquist
F_FINE = np.linspace(0.0, FS / 2, 40001)


def _cases():
    """Every structure and order: (id, cells)."""
    cases = []
    for k in range(1, 9):
        warp = 0.5 if k % 2 else -0.3
        cases += [
            (f"allpass2-traditional-K{k}", [Allpass2(0.85, 2000.0, 0.0, k)]),
            (f"allpass2-warped-K{k}", [Allpass2(0.85, 2000.0, warp, k)]),
            (f"allpass1-traditional-K{k}", [Allpass1(-0.6, 0.0, k)]),
            (f"allpass1-warped-K{k}", [Allpass1(0.4, warp, k)]),
        ]
    cases += [
        ("delay-integer", [Delay(7)]),
        ("delay-fractional", [Delay(3.3)]),
        ("delay-half", [Delay(2.5)]),
        ("polarity", [Polarity(-1)]),
        ("polarity-normal", [Polarity(1)]),
        ("empty", []),
        (
            "mixed",
            [Allpass2(0.9, 150.0), Allpass2(0.7, 6000.0, 0.4), Allpass2(0.6, 900.0, -0.2, 3), Allpass1(0.3),
             Allpass1(-0.5, 0.2, 2), Delay(12.4), Polarity(-1)],
        ),
        ("two-polarities", [Polarity(-1), Allpass1(0.2), Polarity(-1)]),
    ]
    return cases


CASES = [pytest.param(cells, id=name) for name, cells in _cases()]
ADVANCES = [
    pytest.param([Delay(-5), Allpass2(0.8, 1000.0)], id="advance-integer"),
    pytest.param([Delay(-2.7), Allpass1(0.5)], id="advance-fractional"),
]


def _reference_response(cascade, f):
    _, h = signal.sosfreqz(cascade.sos, worN=f, fs=cascade.fs)
    return h * np.exp(-1j * 2 * np.pi * f / cascade.fs * cascade.integer_delay)


def _reference_apply(cascade, x):
    """sosfilt of the exported SOS, then the integer shift (zero-filled), along the last axis."""
    y = signal.sosfilt(cascade.sos, x, axis=-1)
    shift, n = cascade.integer_delay, x.shape[-1]
    out = np.zeros_like(y)
    if shift >= 0:
        out[..., shift:] = y[..., : n - shift]
    else:
        out[..., : n + shift] = y[..., -shift:]
    return out


# -- response, phase and group delay against scipy ----------------------------------------------


@pytest.mark.parametrize("cells", CASES + ADVANCES)
def test_response_matches_sosfreqz(cells):
    cascade = AllpassCascade(cells, fs=FS)
    h_ref = _reference_response(cascade, F)
    np.testing.assert_allclose(cascade.response(F), h_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.abs(cascade.response(F)), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.abs(h_ref), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cells", CASES + ADVANCES)
def test_group_delay_matches_scipy_and_phase_derivative(cells):
    cascade = AllpassCascade(cells, fs=FS)
    f = F[1:-1]
    w = 2 * np.pi * f / FS
    tau = cascade.group_delay(f)
    # Sum of scipy's group delay per exported SOS row, plus the integer shift.
    tau_rows = sum(signal.group_delay((row[:3], row[3:]), w=w)[1] for row in cascade.sos) + cascade.integer_delay
    np.testing.assert_allclose(tau, tau_rows, rtol=1e-6, atol=1e-12)
    if cascade.order <= 4:  # the expanded transfer function is accurate at low orders only
        _, tau_tf = signal.group_delay(signal.sos2tf(cascade.sos), w=w)
        np.testing.assert_allclose(tau, tau_tf + cascade.integer_delay, rtol=1e-6, atol=1e-9)
    # Central finite difference of the exact phase (step 1e-3 Hz). The rounding error of the
    # difference (~eps |phase| / step ~ 1e-8 samples) sets the absolute floor where tau crosses 0.
    df = 1e-3
    fd = -(cascade.phase(f + df) - cascade.phase(f - df)) / (2 * np.pi * 2 * df / FS)
    np.testing.assert_allclose(tau, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cells", CASES)
def test_phase_continuous_and_monotone(cells):
    cascade = AllpassCascade(cells, fs=FS)
    phase = cascade.phase(F_FINE)
    steps = np.diff(phase)
    assert np.max(np.abs(steps)) < np.pi / 2
    assert np.all(steps <= 1e-12)
    # At DC only the polarity remains; at Nyquist every order contributes -pi.
    assert phase[0] == pytest.approx(-np.pi * (cascade.polarity < 0), abs=1e-15)
    expected_nyquist = -np.pi * (cascade.order + cascade.integer_delay + (cascade.polarity < 0))
    assert phase[-1] == pytest.approx(expected_nyquist, rel=1e-12)


@pytest.mark.parametrize("samples", [0.0, 1.0, 7.0, 0.6, 3.3, 2.5, 3.5, 10.999, -2.7])
def test_delay_cell_realisation(samples):
    delay = Delay(samples)
    cascade = AllpassCascade([delay], fs=FS)
    # Thiran: exact group delay at DC.
    assert cascade.group_delay([0.0])[0] == pytest.approx(samples, abs=1e-12)
    if float(samples).is_integer():
        assert delay.thiran is None and delay.shift == samples and cascade.order == 0
    else:
        frac = samples - delay.shift
        assert 0.5 <= frac <= 1.5
        assert delay.thiran == Allpass1(thiran_coef(frac))


@pytest.mark.parametrize("samples", [7.487023886991772e-21, 1e-12, -1e-12, 3.0 + 1e-10, 1e-8, 4e-7, 1e-6])
def test_delay_within_5e7_of_an_integer_is_that_shift(samples, rng, tmp_path):
    """A GCC-PHAT delay of 7.5e-21 samples (40 s of silence, then noise) made Delay.thiran build
    Allpass1(1.0) and raise: within 5e-7 samples of an integer a delay is that integer's exact shift
    (the input comes out shifted, bit for bit); from 1e-6 on it keeps its Thiran unit, whose pole
    stays inside the radius a model file may hold (the model saves and loads)."""
    delay = Delay(samples)
    x = rng.standard_normal(64)
    if abs(samples - round(samples)) <= 5e-7:
        assert delay.thiran is None and delay.shift == round(samples)
        np.testing.assert_array_equal(AllpassCascade([delay], fs=FS).apply(x), np.r_[np.zeros(delay.shift), x][: x.size])
    else:
        assert abs(delay.thiran.coef) < 1 and delay.shift == 0
        assert AllpassCascade([delay], fs=FS).group_delay([0.0])[0] == pytest.approx(samples, abs=1e-12)
    path = str(tmp_path / "delay.json")
    save_model(path, AllpassCascade([delay], fs=FS))
    assert load_model(path)[0] == AllpassCascade([delay], fs=FS)


# -- filtering ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cells", CASES + ADVANCES)
def test_apply_equals_sosfilt_with_shift(cells, rng):
    cascade = AllpassCascade(cells, fs=FS)
    x = rng.standard_normal(777)
    y = cascade.apply(x)
    np.testing.assert_allclose(y, _reference_apply(cascade, x), rtol=0, atol=1e-13)
    np.testing.assert_array_equal(cascade(x), y)
    impulse = signal.unit_impulse(300)
    np.testing.assert_allclose(cascade.apply(impulse), _reference_apply(cascade, impulse), rtol=0, atol=1e-14)


def test_apply_impulse_response_energy_is_one():
    """An allpass with all its impulse response inside the window has unit energy."""
    cascade = AllpassCascade([Allpass2(0.9, 500.0, 0.3, 2), Allpass1(-0.7), Delay(5.5), Polarity(-1)], fs=FS)
    h = cascade.apply(signal.unit_impulse(8000))
    assert np.sum(h**2) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    ("shift", "expected"),
    [(3, [0, 0, 0, 1, 2]), (-2, [3, 4, 5, 0, 0]), (5, [0, 0, 0, 0, 0]), (-9, [0, 0, 0, 0, 0])],
)
def test_apply_integer_shift_offline(shift, expected):
    y = AllpassCascade([Delay(shift)], fs=FS).apply(np.arange(1.0, 6.0))
    np.testing.assert_array_equal(y, expected)


STREAM_CASES = [
    pytest.param([Allpass2(0.9, 300.0, 0.2, 3), Allpass1(0.4), Delay(9.3), Polarity(-1)], id="mixed"),
    pytest.param([Delay(40)], id="pure-delay-longer-than-blocks"),
    pytest.param([Allpass1(-0.8, 0.0, 5)], id="stretched-no-delay"),
]


@pytest.mark.parametrize("cells", STREAM_CASES)
@pytest.mark.parametrize("layout", ["mono", "channels-first", "axis0"])
@pytest.mark.parametrize("block_sizes", [(37,), (1, 2, 50, 13), (999,)], ids=["37", "mixed", "longer-than-signal"])
def test_blockwise_apply_with_state_equals_one_shot(cells, layout, block_sizes, rng):
    cascade = AllpassCascade(cells, fs=FS)
    n = 500
    if layout == "mono":
        x, axis = rng.standard_normal(n), -1
    elif layout == "channels-first":
        x, axis = rng.standard_normal((2, n)), -1
    else:
        x, axis = rng.standard_normal((n, 2)), 0
    whole = cascade.apply(x, axis=axis)
    state = cascade.initial_state(x.shape, axis=axis)
    assert isinstance(state, FilterState)
    pieces, start, i = [], 0, 0
    while start < n:
        size = block_sizes[i % len(block_sizes)]
        block = np.take(x, np.arange(start, min(start + size, n)), axis=axis)
        y, state = cascade.apply(block, axis=axis, zi=state)
        assert y.shape == block.shape
        pieces.append(y)
        start, i = start + size, i + 1
    np.testing.assert_allclose(np.concatenate(pieces, axis=axis), whole, rtol=0, atol=1e-13)


@pytest.mark.parametrize("cells", [CASES[-2].values[0], STREAM_CASES[0].values[0]], ids=["mixed", "stream-mixed"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_multichannel_equals_per_channel(cells, axis, rng):
    cascade = AllpassCascade(cells, fs=FS)
    x = rng.standard_normal((3, 640))
    if axis == 0:
        x = x.T
    y = cascade.apply(x, axis=axis)
    assert y.shape == x.shape
    channels = [cascade.apply(np.take(x, c, axis=1 - (axis % 2))) for c in range(3)]
    np.testing.assert_allclose(np.stack(channels, axis=1 - (axis % 2)), y, rtol=0, atol=1e-14)
    assert not np.allclose(channels[0], channels[1])  # the channels really differ


def test_apply_batch_shape_three_dims(rng):
    cascade = AllpassCascade([Allpass2(0.8, 2000.0, 0.1), Delay(2)], fs=FS)
    x = rng.standard_normal((2, 3, 200))
    y = cascade.apply(x)
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(y[i, j], cascade.apply(x[i, j]), rtol=0, atol=1e-14)


# -- poles, structure, serialisation, repr ---------------------------------------------------------


@pytest.mark.parametrize("cells", CASES)
def test_poles_strictly_inside_unit_circle(cells):
    cascade = AllpassCascade(cells, fs=FS)
    poles = cascade.poles()
    assert poles.size == cascade.order
    assert np.all(np.abs(poles) < 1 - 1e-3)


@pytest.mark.parametrize(
    ("cells", "order", "polarity", "integer_delay", "structures"),
    [
        ([Allpass2(0.5, 100.0)], 2, 1, 0, ["traditional"]),
        ([Allpass2(0.5, 100.0, 0.2)], 2, 1, 0, ["warped"]),
        ([Allpass2(0.5, 100.0, 0.0, 4)], 8, 1, 0, ["warped+stretched"]),
        ([Allpass1(0.5, 0.0, 3), Polarity(-1)], 3, -1, 0, ["warped+stretched"]),
        ([Allpass1(0.5, 0.3), Delay(4.2), Polarity(-1), Polarity(-1)], 2, 1, 3, ["warped"]),
        ([Delay(-3)], 0, 1, -3, []),
    ],
)
def test_cascade_properties(cells, order, polarity, integer_delay, structures):
    cascade = AllpassCascade(cells, fs=FS)
    assert (cascade.order, cascade.polarity, cascade.integer_delay) == (order, polarity, integer_delay)
    assert [c.structure for c in cascade if isinstance(c, (Allpass1, Allpass2))] == structures


@pytest.mark.parametrize("cells", CASES)
def test_to_dict_json_roundtrip_is_bit_identical(cells):
    cascade = AllpassCascade(cells, fs=FS)
    restored = AllpassCascade.from_dict(json.loads(json.dumps(cascade.to_dict())))
    assert restored == cascade
    assert restored.sos.tobytes() == cascade.sos.tobytes()
    assert [type(c) for c in restored] == [type(c) for c in cascade]


def test_roundtrip_of_awkward_floats():
    cascade = AllpassCascade([Allpass2(0.1 + 0.2, 1000.0 / 3.0, -1 / 7, 3), Delay(1e-3 + 2)], fs=44100.0 / 3)
    restored = AllpassCascade.from_dict(json.loads(json.dumps(cascade.to_dict())))
    assert restored == cascade and restored.sos.tobytes() == cascade.sos.tobytes()


def test_repr_lists_cells():
    cells = [Allpass2(0.9, 150.0), Allpass2(0.6, 900.0, -0.2, 3), Allpass1(0.3), Delay(12.4), Polarity(-1)]
    text = repr(AllpassCascade(cells, fs=FS))
    lines = text.splitlines()
    assert len(lines) == 1 + len(cells)
    assert "5 cells" in lines[0] and "order 10" in lines[0] and "inverted" in lines[0] and "delay 11" in lines[0]
    for i, (line, cell) in enumerate(zip(lines[1:], cells)):
        assert line.lstrip().startswith(f"{i}: {cell}")
    assert "[traditional]" in lines[1] and "[warped+stretched]" in lines[2]
    assert "stretch=3" in lines[2] and "warp=-0.2" in lines[2]


def test_list_behaviour():
    cells = [Allpass2(0.9, 150.0), Allpass1(0.3), Polarity(-1)]
    cascade = AllpassCascade(cells[:1], fs=FS)
    cascade.append(cells[1])
    cascade.extend(cells[2:])
    assert len(cascade) == 3 and list(cascade) == cells and cascade[1] == cells[1]
    head = cascade[:2]
    assert isinstance(head, AllpassCascade) and list(head) == cells[:2] and head.fs == FS
    copy = cascade.copy()
    assert copy == cascade and copy is not cascade
    copy.append(Delay(1))
    assert len(cascade) == 3 and copy != cascade
    assert AllpassCascade(cells, fs=44100) != AllpassCascade(cells, fs=FS)


# -- error paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expectation"),
    [
        (lambda: Allpass2(0.999, 20000.0, -0.99, 8), nullcontext()),
        (lambda: Allpass2(1.0, 100.0), pytest.raises(ParameterError, match=r"pole_radius must lie in \[0.0, 1.0\)")),
        (lambda: Allpass2(-0.1, 100.0), pytest.raises(ParameterError, match="pole_radius")),
        (lambda: Allpass2(np.nan, 100.0), pytest.raises(ParameterError, match="pole_radius must be a finite real")),
        (lambda: Allpass2(0.5, -1.0), pytest.raises(ParameterError, match="fc_hz")),
        (lambda: Allpass2(0.5, 100.0, 1.0), pytest.raises(ParameterError, match="warp")),
        (lambda: Allpass2(0.5, 100.0, 0.0, 0), pytest.raises(ParameterError, match="stretch must be >= 1, got 0")),
        (lambda: Allpass2(0.5, 100.0, 0.0, 2.0), pytest.raises(ParameterError, match="stretch")),
        (lambda: Allpass2(True, 100.0), pytest.raises(ParameterError, match="pole_radius")),
        (lambda: Allpass1(-0.999, 0.5, 3), nullcontext()),
        (lambda: Allpass1(1.0), pytest.raises(ParameterError, match="coef must lie in")),
        (lambda: Allpass1("0.5"), pytest.raises(ParameterError, match="coef must be a finite real number, got '0.5'")),
        (lambda: Allpass1(0.5, -1.0), pytest.raises(ParameterError, match="warp")),
        (lambda: Delay(np.inf), pytest.raises(ParameterError, match="samples")),
        (lambda: Polarity(1), nullcontext()),
        (lambda: Polarity(0), pytest.raises(ParameterError, match="sign must be 1 or -1, got 0")),
        (lambda: Polarity(True), pytest.raises(ParameterError, match="sign")),
        (lambda: AllpassCascade([Allpass2(0.5, 24000.0)], fs=FS), nullcontext()),
        (lambda: AllpassCascade([Allpass2(0.5, 24000.1)], fs=FS), pytest.raises(ParameterError, match=r"fc_hz must lie in \[0, fs/2\]")),
        (lambda: AllpassCascade([], fs=0), pytest.raises(ParameterError, match="fs")),
        (lambda: AllpassCascade([0.5], fs=FS), pytest.raises(TypeError, match="cells must be Allpass2")),
        (lambda: AllpassCascade([Allpass1(0.5)], fs=FS).response([-1.0]), pytest.raises(ParameterError, match="f must")),
        (lambda: AllpassCascade([Allpass1(0.5)], fs=FS).phase([24001.0]), pytest.raises(ParameterError, match="f must")),
        (lambda: AllpassCascade([Allpass1(0.5)], fs=FS).group_delay([[1.0]]), pytest.raises(ParameterError, match="f must")),
        (
            lambda: AllpassCascade([Delay(-2)], fs=FS).apply(np.ones(8), zi=FilterState(np.zeros((1, 2)), np.zeros(0))),
            pytest.raises(ParameterError, match="advances the signal by 2 samples"),
        ),
        (lambda: AllpassCascade([Delay(2)], fs=FS).apply(np.ones(8), zi=np.zeros((1, 2))), pytest.raises(TypeError, match="FilterState")),
    ],
)
def test_constructor_and_call_errors(make, expectation):
    with expectation:
        make()


GOOD = {"fs": 48000.0, "cells": [{"type": "allpass2", "pole_radius": 0.5, "fc_hz": 100.0, "warp": 0.0, "stretch": 1}]}


@pytest.mark.parametrize(
    ("data", "expectation"),
    [
        (GOOD, nullcontext()),
        ({"fs": 48000, "cells": [{"type": "allpass1", "coef": 0.1}, {"type": "polarity"}]}, nullcontext()),
        ([1, 2], pytest.raises(ParameterError, match="needs the keys 'fs' and 'cells'")),
        ({"cells": []}, pytest.raises(ParameterError, match="needs the keys 'fs' and 'cells'")),
        ({"fs": 48000}, pytest.raises(ParameterError, match="needs the keys")),
        ({"fs": 48000, "cells": [{"type": "allpass3"}]}, pytest.raises(ParameterError, match="cell 0: 'type' must be one of")),
        ({"fs": 48000, "cells": [{"type": "delay", "samples": 1}, 7]}, pytest.raises(ParameterError, match="cell 1: 'type'")),
        ({"fs": 48000, "cells": [{"coef": 0.1}]}, pytest.raises(ParameterError, match="cell 0: 'type'")),
        ({"fs": 48000, "cells": [{"type": "allpass1", "coef": 0.1, "gain": 2}]}, pytest.raises(ParameterError, match=r"cell 0: unknown field\(s\) \['gain'\]")),
        ({"fs": 48000, "cells": [{"type": "allpass2", "pole_radius": 0.5}]}, pytest.raises(ParameterError, match="cell 0: .*fc_hz")),
        ({"fs": 48000, "cells": [{"type": "allpass1", "coef": 1.5}]}, pytest.raises(ParameterError, match="coef must lie in")),
        ({"fs": -1, "cells": []}, pytest.raises(ParameterError, match="fs")),
        ({"fs": 1000, "cells": [{"type": "allpass2", "pole_radius": 0.5, "fc_hz": 600.0}]}, pytest.raises(ParameterError, match="fc_hz")),
    ],
)
def test_from_dict_errors(data, expectation):
    with expectation:
        cascade = AllpassCascade.from_dict(data)
        assert cascade.to_dict()["cells"][0]["type"] == data["cells"][0]["type"]


# -- anticausal sections (run backwards in time, offline) ------------------------------------------
ANTICAUSAL = [
    pytest.param([Allpass2(0.9, 150.0, anticausal=True), Allpass1(-0.5, anticausal=True),
                  Allpass2(0.7, 6000.0, 0.4), Delay(3.3), Polarity(-1)], id="mixed"),
    pytest.param([Allpass2(0.6, 900.0, -0.2, 3, True), Allpass1(0.3, 0.2, 2, True)], id="stretched-warped"),
    pytest.param([Allpass1(-0.8, anticausal=True), Delay(-4)], id="with-advance"),
]


def _reference_anticausal(cascade, f):
    """sosfreqz of the causal SOS times the conjugate of the anticausal SOS's, and the shift."""
    _, causal = signal.sosfreqz(cascade.sos, worN=f, fs=cascade.fs)
    _, anti = signal.sosfreqz(cascade.sos_anticausal, worN=f, fs=cascade.fs)
    return causal * np.conj(anti) * np.exp(-1j * 2 * np.pi * f / cascade.fs * cascade.integer_delay)


@pytest.mark.parametrize("cells", ANTICAUSAL)
def test_anticausal_response_is_conjugate_of_its_sos(cells):
    cascade = AllpassCascade(cells, fs=FS)
    assert cascade.sos_anticausal.shape[0] >= 1 and not cascade.causal
    np.testing.assert_allclose(cascade.response(F), _reference_anticausal(cascade, F), rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.abs(cascade.response(F)), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cells", ANTICAUSAL)
def test_anticausal_group_delay_is_negative_of_its_rows(cells):
    cascade = AllpassCascade(cells, fs=FS)
    f = F[1:-1]
    w = 2 * np.pi * f / FS
    rows = lambda sos: sum((signal.group_delay((row[:3], row[3:]), w=w)[1] for row in sos), np.zeros_like(w))
    expected = rows(cascade.sos) - rows(cascade.sos_anticausal) + cascade.integer_delay
    np.testing.assert_allclose(cascade.group_delay(f), expected, rtol=1e-6, atol=1e-9)
    df = 1e-3
    fd = -(cascade.phase(f + df) - cascade.phase(f - df)) / (2 * np.pi * 2 * df / FS)
    np.testing.assert_allclose(cascade.group_delay(f), fd, rtol=1e-6, atol=1e-7)
    # a lone anticausal section has a negative group delay everywhere
    lone = AllpassCascade([Allpass2(0.9, 1000.0, anticausal=True)], fs=FS)
    assert np.all(lone.group_delay(f) < 0)


@pytest.mark.parametrize("cells", ANTICAUSAL)
def test_anticausal_apply_matches_frequency_response(cells, rng):
    """Filtering equals multiplying the spectrum by the response (circular, with zero padding on
    both sides long enough for the causal tail and the anticausal pre-ringing to decay)."""
    cascade = AllpassCascade(cells, fs=FS)
    pad = 8192
    x = np.r_[np.zeros(pad), rng.standard_normal(2000), np.zeros(pad)]
    y = cascade.apply(x)
    f = np.fft.rfftfreq(x.size, 1 / FS)
    expected = np.fft.irfft(np.fft.rfft(x) * cascade.response(f), x.size)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-9)
    # and it is sosfilt forwards, then sosfilt of the anticausal SOS on the reversed signal
    forward = signal.sosfilt(cascade.sos, x)
    both = signal.sosfilt(cascade.sos_anticausal, forward[::-1])[::-1]
    np.testing.assert_allclose(y, _reference_apply(AllpassCascade([Delay(cascade.integer_delay)], fs=FS), both),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("cells", ANTICAUSAL)
def test_anticausal_poles_of_what_runs_are_inside(cells):
    cascade = AllpassCascade(cells, fs=FS)
    poles = cascade.poles()
    assert poles.size > 0 and np.all(np.abs(poles) < 1)


@pytest.mark.parametrize("cells", ANTICAUSAL)
def test_anticausal_cannot_stream_and_roundtrips(cells):
    cascade = AllpassCascade(cells, fs=FS)
    with pytest.raises(ParameterError, match="anticausal|advances"):
        cascade.apply(np.ones(16), zi=cascade.initial_state((16,)))
    data = json.loads(json.dumps(cascade.to_dict()))
    assert AllpassCascade.from_dict(data) == cascade
    assert any(entry.get("anticausal") is True for entry in data["cells"])
    assert "anticausal" in repr(cascade)


def test_causal_cells_do_not_write_the_anticausal_key():
    data = AllpassCascade([Allpass2(0.5, 100.0), Allpass1(0.2)], fs=FS).to_dict()
    assert all("anticausal" not in entry for entry in data["cells"])
    assert AllpassCascade([Allpass1(0.2)], fs=FS).causal
    assert AllpassCascade([Allpass1(0.2)], fs=FS).sos_anticausal.shape == (0, 6)


@pytest.mark.parametrize("bad", [1, "yes", None, 0.0])
def test_anticausal_must_be_bool(bad):
    with pytest.raises(ParameterError, match="anticausal must be True or False"):
        Allpass2(0.5, 100.0, anticausal=bad)
    with pytest.raises(ParameterError, match="anticausal must be True or False"):
        Allpass1(0.5, anticausal=bad)
    entry = {"type": "allpass1", "coef": 0.5, "anticausal": bad}
    with pytest.raises(ParameterError, match="anticausal"):
        AllpassCascade.from_dict({"fs": FS, "cells": [entry]})


def test_repr_counts_anticausal_rows():
    cascade = AllpassCascade([Allpass2(0.5, 100.0), Allpass1(0.3, anticausal=True)], fs=FS)
    assert "2 SOS rows (1 backwards)" in repr(cascade)
    assert "1 SOS rows" in repr(AllpassCascade([Allpass2(0.5, 100.0)], fs=FS))
