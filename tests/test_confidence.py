"""The confidence verdict: unrelated pairs, time-varying and linear effects, clipping, short audio, the CLI."""

import contextlib
import io
import json
import os

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from apfdsp import cli
from apfdsp.align import align
from apfdsp.confidence import (
    VERDICT_THRESHOLDS,
    CoherenceAccumulator,
    PairStatistics,
    clipped_fraction,
    pair_statistics,
    verdict,
)
from apfdsp.demo import demo_dry
from apfdsp.estimate import estimate

FS = 32000
DURATION_S = 3.0
N = int(FS * DURATION_S)


# -- material ---------------------------------------------------------------------------------------------------
def drum(seed, bpm=100):
    """Kicks and noise snares on a grid."""
    rng = np.random.default_rng(seed)
    x = np.zeros(N)
    step = int(30 / bpm * FS)
    for k, start in enumerate(range(0, N, step)):
        m = min(N - start, int(0.2 * FS))
        t = np.arange(m) / FS
        if k % 2 == 0:
            x[start:start + m] += np.sin(2 * np.pi * (45 * t + 80 * (1 - np.exp(-25 * t)))) * np.exp(-10 * t)
        else:
            x[start:start + m] += 0.5 * rng.standard_normal(m) * np.exp(-30 * t)
    return x + 1e-3 * rng.standard_normal(N)


def flute(seed):
    """A breathy tone with vibrato (rate and phase of the player's own), about three notes a second."""
    rng = np.random.default_rng(seed)
    t = np.arange(N) / FS
    notes = rng.choice([523.3, 587.3, 659.3, 784.0, 880.0], size=int(rng.uniform(2.5, 3.5) * DURATION_S) + 1)
    vibrato = 1 + 0.006 * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t + rng.uniform(0, 2 * np.pi))
    f0 = np.repeat(notes, int(np.ceil(N / notes.size)))[:N] * vibrato
    phase = 2 * np.pi * np.cumsum(f0) / FS
    tone = np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.12 * np.sin(3 * phase)
    breath = signal.sosfilt(signal.butter(2, [1000, 4000], "bandpass", fs=FS, output="sos"), rng.standard_normal(N))
    return 0.3 * tone + 0.05 * breath


def noise(seed, pink=False):
    w = np.random.default_rng(seed).standard_normal(N)
    if pink:
        w = np.fft.irfft(np.fft.rfft(w) / np.sqrt(np.maximum(np.arange(N // 2 + 1), 1)), N)
    return 0.3 * w / np.std(w)


def sweep(up=True):
    t = np.arange(N) / FS
    s = np.sin(2 * np.pi * 20 * (800 ** (t / DURATION_S) - 1) * DURATION_S / np.log(800))
    return s if up else s[::-1]


def music(seed):
    return demo_dry(fs=FS, duration_s=DURATION_S, seed=seed)


UNRELATED = {
    "drum vs flute": lambda: (drum(1), flute(2)),
    "drum vs drum at another tempo": lambda: (drum(3), drum(4, bpm=123)),
    "flute vs another flute": lambda: (flute(5), flute(6)),
    "music vs white noise": lambda: (music(1), noise(7)),
    "music vs pink noise": lambda: (music(2), noise(8, pink=True)),
    "white vs white": lambda: (noise(9), noise(10)),
    "pink vs pink": lambda: (noise(11, True), noise(12, True)),
    "sweep vs noise": lambda: (sweep(), noise(13)),
    "sweep up vs sweep down": lambda: (sweep(), sweep(up=False)),
    "music vs flute": lambda: (music(3), flute(14)),
    "flute vs drum": lambda: (flute(15), drum(16)),
    "music vs drum": lambda: (music(4), drum(17, bpm=90)),
}


def statistics(dry, wet):
    """Verdict inputs as `align` computes them: statistics at the estimated integer delay, and the peak."""
    est = estimate(dry, wet, fs=FS)
    return pair_statistics(dry, wet, fs=FS, integer_delay=est.integer_delay), est.gcc_peak


def pedalboard_wet(board, dry):
    return board(dry.astype(np.float32)[None, :], FS)[0].astype(np.float64)


# -- the acceptance cases -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(UNRELATED))
def test_unrelated_pairs_are_unrelated(name):
    dry, wet = UNRELATED[name]()
    stats, peak = statistics(dry, wet)
    confidence, warnings = verdict(stats, peak=peak)
    assert confidence == "unrelated", (stats, peak)
    assert warnings[0].startswith("unrelated signals")


def test_align_reports_unrelated_and_related():
    dry, wet = UNRELATED["drum vs flute"]()
    result = align(dry, wet, fs=FS, n_sections=2)
    assert result.confidence == "unrelated" and result.warnings[0].startswith("unrelated")
    summary = result.summary()
    assert summary["confidence"] == "unrelated" and summary["warnings"] == result.warnings
    related = align(dry, signal.lfilter(*signal.butter(2, 2000, fs=FS), dry), fs=FS, n_sections=2)
    assert related.confidence == "related" and related.warnings == []
    json.dumps(related.summary(), allow_nan=False)


def _boards():
    import pedalboard as pb

    linear = {
        "HighpassFilter 200 Hz": pb.Pedalboard([pb.HighpassFilter(cutoff_frequency_hz=200)]),
        "LowpassFilter 3 kHz": pb.Pedalboard([pb.LowpassFilter(cutoff_frequency_hz=3000)]),
        "LadderFilter LPF12 800 Hz": pb.Pedalboard([pb.LadderFilter(mode=pb.LadderFilter.Mode.LPF12, cutoff_hz=800,
                                                                    resonance=0.3, drive=1.0)]),
        "LadderFilter HPF12 300 Hz": pb.Pedalboard([pb.LadderFilter(mode=pb.LadderFilter.Mode.HPF12, cutoff_hz=300,
                                                                    resonance=0.3, drive=1.0)]),
        "PeakFilter 1 kHz +9 dB": pb.Pedalboard([pb.PeakFilter(cutoff_frequency_hz=1000, gain_db=9, q=1.0)]),
    }
    varying = {
        "Chorus (default: 1 Hz)": pb.Pedalboard([pb.Chorus()]),
        "Chorus 0.5 Hz, depth 0.5": pb.Pedalboard([pb.Chorus(rate_hz=0.5, depth=0.5, mix=0.5)]),
        "Phaser (default: 1 Hz)": pb.Pedalboard([pb.Phaser()]),
        "Phaser 0.5 Hz, depth 0.8": pb.Pedalboard([pb.Phaser(rate_hz=0.5, depth=0.8, mix=0.5)]),
    }
    return linear, varying


SOURCES = {"music": lambda: music(0), "pink noise": lambda: noise(0, pink=True), "log sweep": sweep}


@pytest.mark.parametrize("source", list(SOURCES))
def test_linear_effects_related_without_warnings(source):
    pytest.importorskip("pedalboard")
    dry = SOURCES[source]()
    for name, board in _boards()[0].items():
        stats, peak = statistics(dry, pedalboard_wet(board, dry))
        assert verdict(stats, null_db=-20.0, peak=peak) == ("related", []), (name, stats, peak)


@pytest.mark.parametrize("source", list(SOURCES))
def test_time_varying_effects_warned(source):
    pytest.importorskip("pedalboard")
    dry = SOURCES[source]()
    for name, board in _boards()[1].items():
        stats, peak = statistics(dry, pedalboard_wet(board, dry))
        confidence, warnings = verdict(stats, peak=peak)
        assert confidence != "unrelated", (name, stats, peak)
        warned = any(w.startswith("time-varying effect") for w in warnings)
        if source == "log sweep":
            # a sweep visits each frequency once: a long static filter explains the modulated wet
            assert warned or stats.linear_fraction > 0.95, (name, stats)
        else:
            assert warned, (name, stats)


# -- the statistics --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("snr_db", [20.0, 0.0, -10.0])
def test_linear_fraction_matches_the_signal_to_noise_ratio(rng, snr_db):
    # wet = filtered dry + independent noise: the linear fraction is the filtered dry's share of the wet
    x = rng.standard_normal(N)
    clean = signal.lfilter(*signal.butter(2, [300, 5000], "bandpass", fs=FS), x)
    extra = rng.standard_normal(N)
    extra *= np.std(clean) * 10 ** (-snr_db / 20) / np.std(extra)
    expected = np.var(clean) / (np.var(clean) + np.var(extra))
    stats = pair_statistics(x, clean + extra, fs=FS)
    assert stats.linear_fraction == pytest.approx(expected, abs=0.03)
    assert stats.time_variation < VERDICT_THRESHOLDS["time_variation"]


def test_time_variation_of_a_switching_filter(rng):
    # the filter changes every 0.1 s: block-wise filters explain what one cannot
    x = rng.standard_normal(N)
    a = signal.lfilter(*signal.butter(2, 1000, fs=FS), x)
    b = -signal.lfilter(*signal.butter(2, 1000, "highpass", fs=FS), x)
    switch = (np.arange(N) // int(0.1 * FS)) % 2 == 0
    stats = pair_statistics(x, np.where(switch, a, b), fs=FS)
    assert stats.time_variation > 0.5
    assert pair_statistics(x, a, fs=FS).time_variation < 0.05


def test_accumulator_block_by_block_equals_one_pass(rng):
    x = rng.standard_normal(N)
    y = signal.lfilter([1, 0.5], [1, -0.3], x) + 0.3 * rng.standard_normal(N)
    whole = CoherenceAccumulator(fs=FS)
    whole.update(x, y)
    parts = CoherenceAccumulator(fs=FS)
    chunk, overlap = parts.chunk_samples, parts.nperseg // 2
    for start in range(0, N, chunk):
        parts.update(x[start:start + chunk + overlap], y[start:start + chunk + overlap])
    assert parts.n_segments == whole.n_segments
    np.testing.assert_allclose(parts.s_yx, whole.s_yx, rtol=1e-10)
    assert parts.linear_fraction() == pytest.approx(whole.linear_fraction(), rel=1e-10)
    assert parts.time_variation() == pytest.approx(whole.time_variation(), rel=1e-8, abs=1e-12)


def test_multichannel_pooling(rng):
    x = rng.standard_normal((2, N))
    # one filter shared by both channels (the channels' spectra are pooled, as for `align`)
    stats = pair_statistics(x, signal.lfilter([0.5, 0.2], [1.0], -x), fs=FS)
    assert stats.linear_fraction > 0.99
    assert pair_statistics(x, x[::-1], fs=FS).linear_fraction < VERDICT_THRESHOLDS["unrelated_fraction"]


def test_clipped_wet_warned(rng):
    dry = music(0)
    clipped = np.clip(3.0 * dry, -1.0, 1.0)
    assert clipped_fraction(clipped) > 1e-3
    assert clipped_fraction(np.tanh(3.0 * dry)) == 0.0  # soft saturation has no flat top
    assert clipped_fraction(dry) == 0.0
    stats, peak = statistics(dry, clipped)
    _, warnings = verdict(stats, peak=peak)
    assert any(w.startswith("wet clipped") for w in warnings)


def test_too_little_material_warned(rng):
    x = rng.standard_normal(int(0.5 * FS))
    stats = pair_statistics(x, np.r_[np.zeros(7), x], fs=FS, integer_delay=7)
    confidence, warnings = verdict(stats)
    assert confidence == "related" and stats.duration_s == pytest.approx(0.5, abs=0.01)
    assert [w.split(":")[0] for w in warnings] == ["too little material"]


def test_verdict_thresholds():
    t = VERDICT_THRESHOLDS
    ok = dict(short_linear_fraction=0.99, time_variation=0.0, duration_s=3.0, clipped_fraction=0.0)
    assert verdict(PairStatistics(linear_fraction=0.99, **ok)) == ("related", [])
    assert verdict(PairStatistics(linear_fraction=0.99, **ok), null_db=-2.0) == ("weak", [])
    just_weak = verdict(PairStatistics(linear_fraction=t["unrelated_fraction"] + 0.01, **ok))
    assert just_weak[0] == "weak" and just_weak[1][0].startswith("strongly nonlinear")
    assert verdict(PairStatistics(linear_fraction=t["unrelated_fraction"] - 0.01, **ok))[0] == "unrelated"
    # shared pitches without a delay that relates the two
    coincidence = PairStatistics(linear_fraction=t["coincidence_fraction"] - 0.01, **ok)
    assert verdict(coincidence, peak=t["coincidence_peak"] / 2)[0] == "unrelated"
    assert verdict(coincidence, peak=-2 * t["coincidence_peak"])[0] == "weak"
    # a large block-wise gain on an inaudible remainder is no warning
    moving = dict(ok, time_variation=0.9, short_linear_fraction=1 - t["time_variation_min_unexplained"] / 2)
    assert verdict(PairStatistics(linear_fraction=0.99, **moving)) == ("related", [])
    moving["short_linear_fraction"] = 0.8
    assert verdict(PairStatistics(linear_fraction=0.82, **moving))[1][0].startswith("time-varying")
    # ... unless long segments explain it (a long response, such as a room's)
    assert verdict(PairStatistics(linear_fraction=0.9, **moving)) == ("related", [])


# -- the command line ------------------------------------------------------------------------------------------------
def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def unrelated_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unrelated")
    dry, wet = UNRELATED["drum vs flute"]()
    paths = []
    for name, x in (("drum.wav", dry), ("flute.wav", wet)):
        sf.write(str(folder / name), 0.5 * x / np.max(np.abs(x)), FS, subtype="PCM_24")
        paths.append(folder / name)
    return folder, paths


def test_cli_strict_refuses_unrelated(unrelated_files):
    folder, (dry, wet) = unrelated_files
    out = folder / "aligned.wav"
    model = folder / "model.json"
    code, stdout, stderr = _run(["align", dry, wet, "-o", out, "--model-out", model, "--sections", "2",
                                 "--strict"])
    assert code == 2 and stdout == ""
    assert "unrelated" in stderr and "nothing was written" in stderr and "Traceback" not in stderr
    assert stderr.count("\n") == 1
    assert not out.exists() and not model.exists()
    assert sorted(os.listdir(folder)) == ["drum.wav", "flute.wav"]


def test_cli_json_and_warnings(unrelated_files):
    folder, (dry, wet) = unrelated_files
    out = folder / "aligned_loose.wav"
    code, stdout, stderr = _run(["align", dry, wet, "-o", out, "--sections", "2", "--json"])
    assert code == 0 and out.exists()
    record = json.loads(stdout)
    assert record["confidence"] == "unrelated"
    assert record["warnings"][0].startswith("unrelated signals")
    assert record["delay_choice"] in ("strongest", "earliest within 6 dB", "latest within 6 dB")
    assert "apfdsp: warning: unrelated signals" in stderr
    os.remove(out)


@pytest.mark.parametrize("max_analysis_samples", [4096 * 16, 2**20])
def test_align_files_strict_writes_nothing(unrelated_files, max_analysis_samples):
    # both routes: an excerpt of a long file (streamed output) and the whole file in memory
    from apfdsp.align_files import align_files
    from apfdsp.exceptions import AudioError

    folder, (dry, wet) = unrelated_files
    out = folder / "strict.wav"
    with pytest.raises(AudioError, match="unrelated"):
        align_files(dry, wet, out, n_sections=2, strict=True, max_analysis_samples=max_analysis_samples)
    assert sorted(os.listdir(folder)) == ["drum.wav", "flute.wav"]
