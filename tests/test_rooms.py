"""Delay and alignment in simulated rooms (pyroomacoustics): the fast part of ``benchmarks/rooms.py``.

The dry is a microphone close to the source, the wet one further away (or a spaced pair). The bulk
delay must be the direct-path difference (reflections can add up to a stronger correlation peak,
and bins the source does not excite must not pull it to lag 0), and the allpass fit must gain a good
part of what a perfect phase-only correction could over delay + polarity.
"""

import numpy as np
import pytest
from scipy import signal

from apfdsp.align import align
from apfdsp.demo import demo_dry
from apfdsp.estimate import estimate
from apfdsp.metrics import mix_loss_db

pra = pytest.importorskip("pyroomacoustics")

DURATION_S = 2.0


def source(kind, fs, seed=0):
    """Music-like (`demo_dry`), or the same low-passed so that nothing above 11 kHz remains (< -100 dB)."""
    x = demo_dry(fs=fs, duration_s=DURATION_S, seed=seed)
    if kind == "lowpass":
        x = signal.sosfiltfilt(signal.ellip(10, 0.1, 100, 10000, fs=fs, output="sos"), x)
    return x


# Copy of cases of ``benchmarks/rooms.py`` (benchmarks/ is not importable from tests), shorter audio.
# name -> (dimensions m, RT60 s, source, mic 1, mic 2, source kind, fs)
ROOMS = {
    "hall, close 25 cm / 2.5 m": ([25, 18, 10], 2.0, [6.0, 5.0, 1.5], [6.25, 5.0, 1.5], [8.5, 5.1, 1.5], "music", 16000),
    "living room, nothing above 11 kHz": ([5, 4, 2.7], 0.4, [1.5, 2.0, 1.2], [1.75, 2.0, 1.2], [3.5, 2.1, 1.4], "lowpass", 32000),
    "classroom, spaced pair": ([9, 7, 3.2], 0.8, [3.0, 3.5, 1.5], [4.2, 3.2, 1.6], [4.6, 4.4, 1.6], "music", 16000),
    "booth, close / 1.5 m": ([3, 2.5, 2.4], 0.15, [1.0, 1.2, 1.3], [1.25, 1.2, 1.3], [2.5, 1.3, 1.2], "music", 16000),
}


def simulate(name):
    """(dry, wet, fs, direct-path difference in samples, rir1, rir2)."""
    dims, rt60, src, m1, m2, kind, fs = ROOMS[name]
    absorption, order = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(dims, fs=fs, materials=pra.Material(absorption), max_order=min(order, 16),
                       use_rand_ism=False, air_absorption=False)
    room.add_source(src, signal=source(kind, fs))
    room.add_microphone_array(np.array([m1, m2], dtype=float).T)
    room.simulate()
    n = int(DURATION_S * fs)
    src, m1, m2 = (np.asarray(p, dtype=float) for p in (src, m1, m2))
    direct = (np.linalg.norm(m2 - src) - np.linalg.norm(m1 - src)) / room.c * fs
    return (room.mic_array.signals[0][:n], room.mic_array.signals[1][:n], fs, direct,
            np.asarray(room.rir[0][0]), np.asarray(room.rir[1][0]))


@pytest.fixture(scope="module", params=list(ROOMS))
def room(request):
    return request.param, simulate(request.param)


def test_delay_is_the_direct_path(room):
    name, (dry, wet, fs, direct, _, _) = room
    est = estimate(dry, wet, fs=fs)
    assert abs(est.delay_samples - direct) < 1.0, (name, est.delay_samples, direct, est.delay_candidates)
    assert est.polarity == 1


def test_delay_of_a_reversed_pair(room):
    # the distant microphone as the dry: the wet leads, and the dry's reflections show at more negative
    # lags than the direct path
    name, (dry, wet, fs, direct, _, _) = room
    est = estimate(wet, dry, fs=fs)
    assert abs(est.delay_samples + direct) < 1.0, (name, est.delay_samples, est.delay_candidates)


def test_delay_survives_16_bit_files(room):
    # written to 16-bit files: each microphone gets its own quantisation noise floor, and the bins the
    # source does not excite hold nothing else
    name, (dry, wet, fs, direct, _, _) = room
    scale = 0.9 / max(np.max(np.abs(dry)), np.max(np.abs(wet)))
    dry16, wet16 = (np.round(scale * s * 32767) / 32767 for s in (dry, wet))
    est = estimate(dry16, wet16, fs=fs)
    assert abs(est.delay_samples - direct) < 1.0, (name, est.delay_samples, est.delay_candidates)


def perfect_phase(dry, rir1, rir2):
    """The dry through the exact phase of RIR2 / RIR1 (the best any phase-only correction can do)."""
    size = 2 * dry.size + max(rir1.size, rir2.size)
    ratio = np.fft.rfft(rir2, size) * np.conj(np.fft.rfft(rir1, size))
    return np.fft.irfft(np.fft.rfft(dry, size) * np.exp(1j * np.angle(ratio)), size)[: dry.size]


def test_fit_gains_on_delay_and_polarity():
    # one room through the whole of align: the allpass must take a good share of the perfect-phase gain
    dry, wet, fs, direct, rir1, rir2 = simulate("booth, close / 1.5 m")
    result = align(dry, wet, fs=fs)
    assert abs(result.delay_samples - direct) < 1.0
    assert result.confidence != "unrelated"
    floor = mix_loss_db(perfect_phase(dry, rir1, rir2), wet, fs=fs)
    base, after = result.delay_polarity["mix_loss_db"], result.after["mix_loss_db"]
    assert floor > base + 1.0  # there is something to gain
    assert (after - base) / (floor - base) > 0.5
