"""Tests of apfdsp.resample: moving a model to another sample rate."""

import numpy as np
import pytest

from apfdsp import Allpass1, Allpass2, AllpassCascade, Delay, ParameterError, Polarity
from apfdsp.resample import RESAMPLE_BAND_FRACTION, RESAMPLE_F_MIN_HZ, resample_cascade

FS = 48000.0
# Delays of 160 samples at 48 kHz are whole numbers at 44.1 kHz (147) and 96 kHz (320).
CASCADES = {
    "first-order+polarity": AllpassCascade([Allpass1(-0.9957), Polarity(-1)], fs=FS),
    "second+first+delay": AllpassCascade([Allpass2(0.9, 1000.0), Allpass1(-0.5), Delay(160.0)], fs=FS),
    "warped pair": AllpassCascade([Allpass2(0.95, 300.0, 0.3), Allpass2(0.7, 6000.0)], fs=FS),
    "anticausal": AllpassCascade([Allpass2(0.9, 700.0, anticausal=True), Allpass1(-0.8), Polarity(-1)], fs=FS),
}
# RMS phase error (rad) allowed on the common band: 0.05 rad is a null depth of about -32 dB. Doubling
# the rate is exact in principle (H(z) at 48 kHz is H(z^2) at 96 kHz).
TOLERANCE = {44100.0: 0.05, 96000.0: 1e-4}


def common_band(fs_new, n=400):
    return np.geomspace(RESAMPLE_F_MIN_HZ, RESAMPLE_BAND_FRACTION * min(FS, fs_new), n)


def wrapped_rms(a, b):
    return float(np.sqrt(np.mean(np.angle(np.exp(1j * (a - b))) ** 2)))


@pytest.fixture(scope="module")
def resampled():
    return {(name, fs): resample_cascade(cascade, fs) for name, cascade in CASCADES.items() for fs in TOLERANCE}


@pytest.mark.parametrize("fs", list(TOLERANCE))
@pytest.mark.parametrize("name", list(CASCADES))
def test_phase_is_kept_on_the_common_band(resampled, name, fs):
    old = CASCADES[name]
    new, error = resampled[name, fs]
    assert new.fs == fs
    f = common_band(fs)  # another grid than the one fitted on
    measured = wrapped_rms(new.phase(f), old.phase(f))
    assert measured < TOLERANCE[fs]
    assert error < TOLERANCE[fs] and error == pytest.approx(measured, rel=0.5, abs=1e-6)
    assert new.polarity == old.polarity
    assert np.max(np.abs(new.poles()), initial=0) < 1


@pytest.mark.parametrize("fs", list(TOLERANCE))
def test_delay_is_kept_in_seconds(resampled, fs):
    new, _ = resampled["second+first+delay", fs]
    assert new.integer_delay == 160 * fs / FS  # 147 or 320 samples: 3.333 ms either way
    delays = [c for c in new if isinstance(c, Delay)]
    assert len(delays) == 1 and delays[0].samples == new.integer_delay


def test_a_causal_model_stays_causal():
    # One sample at 48 kHz is 0.46 samples at 22.05 kHz, which apfdsp.Delay would realise with a
    # one-sample advance: the sections carry it instead.
    old = AllpassCascade([Allpass1(-0.5), Delay(1.0)], fs=FS)
    new, error = resample_cascade(old, 22050.0)
    assert new.integer_delay >= 0 and error < 0.05


def test_an_anticausal_model_keeps_anticausal_sections(resampled):
    for fs in TOLERANCE:
        new, _ = resampled["anticausal", fs]
        assert not new.causal and new.sos_anticausal.shape[0] >= 1


def test_a_fractional_advance_is_followed():
    """A model that advances (offline already) may advance further at the new rate; with the causal
    floor of the delay search this case stalled at 0.27 rad."""
    old = AllpassCascade([Allpass2(0.9, 1000.0), Allpass1(-0.5), Delay(-2.7)], fs=FS)
    new, error = resample_cascade(old, 44100.0)
    f = common_band(44100.0)
    assert error < 0.05 and wrapped_rms(new.phase(f), old.phase(f)) < 0.05


def test_same_rate_returns_a_copy():
    old = CASCADES["warped pair"]
    new, error = resample_cascade(old, FS)
    assert new == old and new is not old and error == 0.0


def test_pure_delay_and_polarity_need_no_fit():
    old = AllpassCascade([Delay(160.0), Polarity(-1)], fs=FS)
    new, error = resample_cascade(old, 96000)
    assert list(new) == [Polarity(-1), Delay(320.0)] and error < 1e-12


def test_is_deterministic():
    old = CASCADES["warped pair"]
    assert resample_cascade(old, 96000, seed=3) == resample_cascade(old, 96000, seed=3)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(cascade=[Allpass1(0.5)], fs=44100), TypeError, "cascade must be an AllpassCascade"),
    (dict(cascade=CASCADES["warped pair"], fs=-1), ParameterError, "fs"),
    (dict(cascade=CASCADES["warped pair"], fs=44100, n_sections=0), ParameterError, "n_sections"),
    (dict(cascade=CASCADES["warped pair"], fs=44100, structure="nope"), ParameterError, "structure"),
])
def test_bad_arguments(kwargs, error, match):
    cascade = kwargs.pop("cascade")
    with pytest.raises(error, match=match):
        resample_cascade(cascade, **kwargs)

