"""What the summary says about polarity, method and real time, on effects a mix engineer uses.

"inverted" must mean that the effect flips the signal where it has its energy (the polarity button
would help), never a model's internal Polarity cell that a section turns back. Effects are real:
pedalboard's plug-ins and scipy's filters, on a short synthetic music track.
"""

import numpy as np
import pytest
from scipy import signal

from apfdsp import Allpass1, AllpassCascade, Delay, Polarity
from apfdsp.align import align, broadband_polarity, method_label
from apfdsp.demo import demo_dry

pedalboard = pytest.importorskip("pedalboard")

FS = 48000


@pytest.fixture(scope="module")
def dry():
    return demo_dry(fs=FS, duration_s=2.0, seed=3)


def _board(*plugins):
    board = pedalboard.Pedalboard(list(plugins))
    return lambda x: board(x.astype(np.float32), FS).astype(np.float64)


def _sos(sos):
    return lambda x: signal.sosfilt(sos, x)


def _room(x):
    ir = np.zeros(480)
    ir[[0, 131, 289, 401]] = [1.0, 0.45, -0.3, 0.2]
    return signal.fftconvolve(x, ir)[: x.size]


EFFECTS = {
    "phaser": _board(pedalboard.Phaser(rate_hz=0.01, depth=0.0, feedback=0.3)),
    "allpass-chain": lambda x: signal.lfilter(*signal.zpk2tf([1 / 0.7, 1 / 0.9], [0.7, 0.9], 0.63), x),
    "peak-eq": _board(pedalboard.PeakFilter(cutoff_frequency_hz=1200.0, gain_db=9.0, q=1.0)),
    "low-shelf": _board(pedalboard.LowShelfFilter(cutoff_frequency_hz=200.0, gain_db=6.0)),
    "high-pass-4": _sos(signal.butter(4, 150.0, "highpass", fs=FS, output="sos")),
    "high-pass+peak": lambda x: _board(pedalboard.PeakFilter(cutoff_frequency_hz=3000.0, gain_db=-6.0, q=2.0))(
        signal.sosfilt(signal.butter(2, 80.0, "highpass", fs=FS, output="sos"), x)),
    "convolution": _room,
}


@pytest.fixture(scope="module")
def results(dry):
    cache = {}

    def get(name, sign):
        if (name, sign) not in cache:
            cache[name, sign] = align(dry, sign * EFFECTS[name](dry), fs=FS, n_sections=6)
        return cache[name, sign]

    return get


@pytest.mark.parametrize("name", sorted(EFFECTS))
def test_no_inversion_is_never_called_inverted(results, name):
    result = results(name, 1)
    summary = result.summary()
    assert summary["polarity"] == 1 and summary["polarity_label"] != "inverted", summary


@pytest.mark.parametrize("name", sorted(EFFECTS))
def test_inverted_wet_is_always_called_inverted(results, name):
    result = results(name, -1)
    summary = result.summary()
    assert summary["polarity"] == -1 and summary["polarity_label"] == "inverted", summary


def test_polarity_judgement_matches_the_polarity_button(results, dry):
    """Second route: flipping the aligned-by-delay dry's polarity makes the broadband sum null deeper
    exactly for the cases called inverted (one case of each kind)."""
    for name, sign in (("high-pass-4", 1), ("high-pass-4", -1), ("peak-eq", -1), ("low-shelf", 1)):
        wet = sign * EFFECTS[name](dry)
        shift = int(round(results(name, sign).delay_samples))
        delayed = np.r_[np.zeros(max(shift, 0)), dry][: dry.size]
        button_helps = np.sum(wet * delayed) < 0
        assert button_helps == (results(name, sign).polarity < 0), name


@pytest.mark.parametrize("make_wet", [
    lambda dry: dry + 1e-4 * np.random.default_rng(0).standard_normal(dry.size),
    lambda dry: _board(pedalboard.Bitcrush(bit_depth=14))(dry),
], ids=["tiny-noise", "bitcrush"])
def test_near_identity_models_are_realtime_capable(dry, make_wet):
    result = align(dry, make_wet(dry), fs=FS, n_sections=4)
    summary = result.summary()
    assert summary["realtime_capable"] is True
    assert result.cascade.integer_delay >= 0 and summary["polarity_label"] == "normal"
    assert summary["method_label"] == method_label(summary["method"], summary["n_sections"])


def test_sub_sample_delay_is_not_an_advance():
    """+0.0008 and +0.3 samples: no advance; the realised delay is right at low frequencies."""
    for samples in (0.0008, 0.3):
        cascade = AllpassCascade([Delay(samples)], fs=FS)
        assert cascade.integer_delay == 0 and cascade.causal
        assert cascade.group_delay([10.0])[0] == pytest.approx(samples, rel=1e-3)
    assert AllpassCascade([Delay(-0.3)], fs=FS).integer_delay < 0  # the wet leads: an advance


def test_method_vocabulary():
    assert method_label("allpass", 0) == "delay+polarity"
    assert method_label("allpass", 2) == "allpass (2 sections)"


def test_broadband_polarity_of_a_turned_back_flip():
    """A model whose Polarity cell a first-order section near z = 1 turns back is not inverted."""
    f = np.linspace(0, FS / 2, 1025)
    w = np.where(f > 50, 1 / np.maximum(f, 1), 0.0)
    model = AllpassCascade([Polarity(-1), Allpass1(-0.999)], fs=FS)
    assert broadband_polarity(model, f, w, 0.0)[:2] == (1, "normal")
    assert broadband_polarity(AllpassCascade([Polarity(-1)], fs=FS), f, w, 0.0)[:2] == (-1, "inverted")
