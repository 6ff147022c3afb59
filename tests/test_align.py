"""Acceptance tests of `apfdsp.align.align` (docs/maths.md, sections 6, 7 and 10).

Three groups, each alignment computed once (module-level caches) and checked by several tests:

* **Round trip**: the wet is the dry through a delay (integer or fractional, `Delay` cells), maybe a
  polarity flip, and a random 8-section warped cascade. What "align finds d" means: an allpass adds
  delay of its own (its group delay is positive everywhere), so ``d`` alone is not identifiable from
  the audio; what is, and what we check, is (1) the aligned dry has no residual delay left against
  the wet (within 0.1 sample), (2) the fitted model's total delay (power-weighted group delay, allpass
  included) equals the true one within 0.1 sample, (3) the reported bulk delay is a delay the wet
  really has: ``d`` plus the bulk delay of the allpass part (exactly so for integer ``d``, where GCC
  is shift-equivariant), and not less than ``d`` (by more than the one sample a Thiran cell may lose at
  high frequencies); plus the polarity and a null of -40 dB or deeper.
* **Real effects** rendered with pedalboard on music, pink noise and a log sweep: `align` is never
  worse than delay + polarity alone (the library's own baseline and an independent plain
  cross-correlation one), and on the linear filters reaches -35 dB, or, where even a perfect phase
  match cannot (the level-equalised null of the effect's own phase applied to the dry is shallower),
  comes within 1.5 dB of that floor.
* **Layouts**: shared stereo model, per-channel models, mono dry against stereo wet, wet longer or
  shorter than the dry, and a wet that leads the dry (``result.advanced``).

The null depth is recomputed here with `apfdsp.metrics.null_depth_db` on ``result.aligned`` rather than
read from the result only. The CLI-vs-API defaults are tested in tests/test_argspec.py.
"""

import functools

import numpy as np
import pytest
from scipy import signal

from apfdsp.align import align
from apfdsp.cascade import Allpass2, AllpassCascade, Delay, Polarity
from apfdsp.demo import demo_dry
from apfdsp.estimate import gcc_phat
from apfdsp.metrics import null_depth_db

FS = 48000
DURATION_S = 1.5
SLACK_DB = 0.01  # "never worse" tolerance


# ------------------------------------------------------------------------------------------------------
# round trip: delay + polarity + random 8-section warped cascade
# ------------------------------------------------------------------------------------------------------
# (dry seed = cascade seed, delay in samples, polarity): seeds fixed before measuring, never re-picked.
ROUND_TRIP = [(0, 37.3, -1), (1, 120.0, 1), (2, 37.3, 1)]
ROUND_TRIP_IDS = [f"seed{s}-d{d:g}-{'inv' if p < 0 else 'pos'}" for s, d, p in ROUND_TRIP]


def random_sections(rng, n_sections=8):
    """Random warped sections: R in [0.3, 0.95], fc log-uniform in 50 Hz - 15 kHz, warp in [-0.5, 0.5]."""
    return [
        Allpass2(rng.uniform(0.3, 0.95), float(np.exp(rng.uniform(np.log(50.0), np.log(15000.0)))),
                 rng.uniform(-0.5, 0.5))
        for _ in range(n_sections)
    ]


@functools.lru_cache(maxsize=None)
def round_trip(seed, delay, polarity):
    """(dry, wet, true cascade, its allpass part alone, AlignResult), computed once per case."""
    rng = np.random.default_rng(seed)
    sections = random_sections(rng)
    truth = AllpassCascade(sections + [Delay(delay)] + ([Polarity(-1)] if polarity < 0 else []), fs=FS)
    dry = demo_dry(fs=FS, duration_s=DURATION_S, seed=seed)
    wet = truth(dry)
    result = align(dry, wet, fs=FS, n_sections=8)
    return dry, wet, truth, AllpassCascade(sections, fs=FS), result


def dry_band(dry):
    """Welch grid (DC dropped, up to 20 kHz) and dry power spectrum: the weighting of "the delay the listener hears"."""
    f, p = signal.welch(dry, fs=FS, nperseg=4096)
    band = (f > 0) & (f <= 20000.0)  # the fit weights nothing above 0.95 fs/2 by design
    return f[band], p[band]


@pytest.mark.parametrize(("seed", "delay", "polarity"), ROUND_TRIP, ids=ROUND_TRIP_IDS)
def test_round_trip_no_residual_delay(seed, delay, polarity):
    dry, wet, _, _, result = round_trip(seed, delay, polarity)
    assert result.method == "allpass"
    assert abs(result.after["residual_delay_samples"]) <= 0.1
    # independent of the report: GCC-PHAT of the aligned dry against the wet
    assert abs(gcc_phat(result.aligned, wet, fs=FS, max_delay_s=0.01)[0]) <= 0.1


@pytest.mark.parametrize(("seed", "delay", "polarity"), ROUND_TRIP, ids=ROUND_TRIP_IDS)
def test_round_trip_total_delay_of_model(seed, delay, polarity):
    """The fitted model delays the dry as much as the truth does, allpass part included."""
    dry, _, truth, _, result = round_trip(seed, delay, polarity)
    f, p = dry_band(dry)
    fitted = np.sum(p * result.cascade.group_delay(f)) / p.sum()
    true = np.sum(p * truth.group_delay(f)) / p.sum()
    assert fitted == pytest.approx(true, abs=0.1)
    # ... and the same phase (mod 2 pi), polarity included, where the dry has energy
    error = np.angle(result.cascade.response(f) * np.conj(truth.response(f)))
    assert np.sqrt(np.sum(p * error**2) / p.sum()) < 0.05  # rad; 0.02 rad ~ -40 dB


@pytest.mark.parametrize(("seed", "delay", "polarity"), ROUND_TRIP, ids=ROUND_TRIP_IDS)
def test_round_trip_reported_delay_is_the_wets_bulk_delay(seed, delay, polarity):
    """`delay_samples` is d plus the bulk delay of the allpass part, a delay the wet really has."""
    dry, _, truth, sections, result = round_trip(seed, delay, polarity)
    f, p = dry_band(dry)
    band = f[p > 1e-6 * p.max()]
    gd = truth.group_delay(band)
    assert gd.min() - 0.1 <= result.delay_samples <= gd.max() + 0.1
    assert result.delay_samples >= delay - 1.0  # allpass sections only add delay (Thiran: <= 1 sample early at HF)
    if float(delay).is_integer():  # GCC is exactly shift-equivariant for integer shifts
        bulk_of_sections = gcc_phat(dry, sections(dry), fs=FS)[0]
        assert result.delay_samples - delay == pytest.approx(bulk_of_sections, abs=0.1)


@pytest.mark.parametrize(("seed", "delay", "polarity"), ROUND_TRIP, ids=ROUND_TRIP_IDS)
def test_round_trip_model_polarity(seed, delay, polarity):
    """An allpass cascade is +1 at DC, so the model's DC response is the polarity it found."""
    _, _, _, _, result = round_trip(seed, delay, polarity)
    assert result.cascade.response([0.0])[0] == pytest.approx(polarity, abs=1e-9)


@pytest.mark.parametrize(("seed", "delay", "polarity"), ROUND_TRIP, ids=ROUND_TRIP_IDS)
def test_round_trip_reported_polarity(seed, delay, polarity):
    """The reported polarity is the broadband judgement of the true effect (on the dry's spectrum)."""
    dry, _, truth, _, result = round_trip(seed, delay, polarity)
    f, p = dry_band(dry)
    m = np.sum(p * truth.response(f) * np.exp(2j * np.pi * f / FS * delay)) / np.sum(p)
    angle = np.degrees(abs(np.angle(m)))
    inverted, normal = m.real < 0, abs(m) >= 0.8 and angle <= 30
    assert result.polarity == (-1 if inverted else 1)
    assert result.polarity_label == ("inverted" if inverted else "normal" if normal else "phase rotated")
    assert result.phase_rotation_deg == pytest.approx(np.degrees(np.angle(m)), abs=20)  # other weights


@pytest.mark.parametrize(("seed", "delay", "polarity"), ROUND_TRIP, ids=ROUND_TRIP_IDS)
def test_round_trip_null_depth(seed, delay, polarity):
    _, wet, _, _, result = round_trip(seed, delay, polarity)
    null = null_depth_db(result.aligned, wet, fs=FS)
    assert null == pytest.approx(result.after["null_db"], abs=1e-6)
    assert null <= -40.0


# ------------------------------------------------------------------------------------------------------
# real effects (pedalboard) on three kinds of test signal
# ------------------------------------------------------------------------------------------------------
def effect(name):
    """A pedalboard chain by name, built on demand (only the effect tests need pedalboard)."""
    pb = pytest.importorskip("pedalboard")
    return {
        "highpass-200": lambda: [pb.HighpassFilter(cutoff_frequency_hz=200)],
        "lowpass-3k": lambda: [pb.LowpassFilter(cutoff_frequency_hz=3000)],
        "ladder-lpf12-800": lambda: [pb.LadderFilter(mode=pb.LadderFilter.Mode.LPF12, cutoff_hz=800,
                                                     resonance=0.3, drive=1.0)],
        "ladder-hpf12-300": lambda: [pb.LadderFilter(mode=pb.LadderFilter.Mode.HPF12, cutoff_hz=300,
                                                     resonance=0.3, drive=1.0)],
        "peak-1k+9dB": lambda: [pb.PeakFilter(cutoff_frequency_hz=1000, gain_db=9, q=1.0)],
        "distortion-lowpass": lambda: [pb.Distortion(drive_db=20), pb.LowpassFilter(cutoff_frequency_hz=5000)],
        "compressor": lambda: [pb.Compressor(threshold_db=-20, ratio=4, attack_ms=5, release_ms=100)],
    }[name]()


LINEAR = ["highpass-200", "lowpass-3k", "ladder-lpf12-800", "ladder-hpf12-300", "peak-1k+9dB"]
NONLINEAR = ["distortion-lowpass", "compressor"]
SIGNALS = ["music", "pink", "sweep"]


def test_signal(name, seed=7):
    """Music (demo_dry), pink noise or a 20 Hz - 20 kHz log sweep (with a little white noise)."""
    rng = np.random.default_rng(seed)
    n = int(DURATION_S * FS)
    if name == "music":
        return demo_dry(fs=FS, duration_s=DURATION_S, seed=seed)
    white = rng.standard_normal(n)
    if name == "pink":
        pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(np.arange(n // 2 + 1), 1)), n)
        return 0.3 * pink / np.std(pink)
    t = np.arange(n) / FS
    sweep = np.sin(2 * np.pi * 20 * (1000 ** (t / DURATION_S) - 1) * DURATION_S / np.log(1000))
    return 0.5 * sweep + 0.01 * white


test_signal.__test__ = False  # a helper, not a test


@functools.lru_cache(maxsize=None)
def effect_case(effect_name, signal_name):
    dry = test_signal(signal_name)
    board = pytest.importorskip("pedalboard").Pedalboard(effect(effect_name))
    wet = board(dry.astype(np.float32)[None, :], FS)[0].astype(np.float64)
    return dry, wet, align(dry, wet, fs=FS)  # the defaults, as a user gets them


def xcorr_delay_polarity(dry, wet):
    """Independent baseline: lag of the largest |cross-correlation|, parabolic sub-sample refinement,
    its sign, applied as an exact (FFT) fractional shift."""
    n = dry.size + wet.size
    nfft = int(2 ** np.ceil(np.log2(n)))
    r = np.fft.irfft(np.fft.rfft(wet, nfft) * np.conj(np.fft.rfft(dry, nfft)), nfft)
    lags = np.r_[0:2401, -2400:0]  # +-50 ms
    k = int(np.argmax(np.abs(r[lags])))
    lag, sign = int(lags[k]), np.sign(r[lags[k]])
    a, b, c = np.abs(r[[(lag - 1) % nfft, lag % nfft, (lag + 1) % nfft]])
    frac = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) < 0 else 0.0
    tau = lag + float(np.clip(frac, -0.5, 0.5))
    freqs = np.fft.rfftfreq(nfft)
    shifted = np.fft.irfft(np.fft.rfft(dry, nfft) * np.exp(-2j * np.pi * freqs * tau), nfft)[: dry.size]
    return sign * shifted


EFFECT_CASES = [(e, s) for e in LINEAR + NONLINEAR for s in SIGNALS]


@pytest.mark.parametrize(("effect_name", "signal_name"), EFFECT_CASES)
def test_effect_never_worse_than_delay_polarity(effect_name, signal_name):
    """The criterion as the library states it: against its own delay + polarity (GCC-PHAT) baseline."""
    dry, wet, result = effect_case(effect_name, signal_name)
    after = null_depth_db(result.aligned, wet, fs=FS)
    assert after == pytest.approx(result.after["null_db"], abs=1e-6)
    assert after <= result.delay_polarity["null_db"] + SLACK_DB


@pytest.mark.parametrize(("effect_name", "signal_name"), EFFECT_CASES)
def test_effect_never_worse_than_independent_xcorr_baseline(effect_name, signal_name):
    """The same criterion against a delay + polarity found without apfdsp (plain cross-correlation)."""
    dry, wet, result = effect_case(effect_name, signal_name)
    baseline = null_depth_db(xcorr_delay_polarity(dry, wet), wet, fs=FS)
    assert null_depth_db(result.aligned, wet, fs=FS) <= baseline + SLACK_DB


def perfect_phase_floor(effect_name, signal_name):
    """Null depth of the dry filtered by the exact phase of the effect (its impulse response's phase,
    applied as a zero-magnitude-change FFT filter): the best any phase-only correction can reach under
    the level-equalised STFT metric. Magnitude changes inside one STFT bin (a steep high-pass slope at
    low frequencies, where pink noise has most of its energy) and any nonlinearity (the ladder filter's
    saturation) keep this floor above -infinity."""
    dry = test_signal(signal_name)
    board = pytest.importorskip("pedalboard").Pedalboard(effect(effect_name))
    n, tail = dry.size, int(FS)
    padded = np.r_[dry, np.zeros(tail)]
    wet = board(padded.astype(np.float32)[None, :], FS)[0].astype(np.float64)[:n]
    impulse = np.zeros(padded.size)
    impulse[0] = 1.0
    response = np.fft.rfft(board(impulse.astype(np.float32)[None, :], FS)[0].astype(np.float64))
    perfect = np.fft.irfft(np.fft.rfft(padded) * np.exp(1j * np.angle(response)), padded.size)[:n]
    return null_depth_db(perfect, wet, fs=FS)


# Measured 2026-11-25 on these 1.5 s clips (default n_sections=8; null after align / perfect-phase floor,
# dB): highpass-200 music -36.1/-36.8, pink -22.1/-23.0, sweep -44.0/-42.9; lowpass-3k -48.5/-65.5,
# -46.1/-54.2, -55.8/-62.9; ladder-lpf12-800 -37.9/-39.1, -35.7/-35.8, -41.0/-36.3; ladder-hpf12-300
# -30.0/-30.6, -28.0/-28.2, -38.4/-39.0; peak-1k+9dB -42.3/-47.0, -42.9/-47.2, -45.9/-47.8.
# With causal=True (no anticausal sections) the high-pass and peak cases stay near -20 dB.
@pytest.mark.parametrize(("effect_name", "signal_name"), [(e, s) for e in LINEAR for s in SIGNALS])
def test_linear_effect_null_depth(effect_name, signal_name):
    _, wet, result = effect_case(effect_name, signal_name)
    floor = perfect_phase_floor(effect_name, signal_name)
    assert null_depth_db(result.aligned, wet, fs=FS) <= max(-35.0, floor + 1.5)


@pytest.mark.parametrize(("effect_name", "signal_name"), [("highpass-200", "music"), ("peak-1k+9dB", "music")])
def test_causal_allpass_cannot_follow_minimum_phase_filters(effect_name, signal_name):
    """Why the default allows anticausal sections: without them the same fits stay near -20 dB."""
    dry, wet, result = effect_case(effect_name, signal_name)
    causal = align(dry, wet, fs=FS, causal=True)
    assert causal.cascade.sos_anticausal.shape[0] == 0 and result.cascade.sos_anticausal.shape[0] > 0
    assert result.summary()["realtime_capable"] is False and result.causal is False
    assert null_depth_db(result.aligned, wet, fs=FS) < causal.after["null_db"] - 10.0


# ------------------------------------------------------------------------------------------------------
# layouts: stereo, per channel, mono vs stereo, lengths, a wet that leads
# ------------------------------------------------------------------------------------------------------
def simple_effect(delay=23.0, polarity=-1, fc=700.0):
    """Two warped sections, a delay and maybe a flip: exactly what align(n_sections=2) can model."""
    cells = [Allpass2(0.9, fc, 0.3), Allpass2(0.7, 4000.0, -0.2), Delay(delay)]
    return AllpassCascade(cells + ([Polarity(-1)] if polarity < 0 else []), fs=FS)


@functools.lru_cache(maxsize=None)
def layout_case(name):
    """(dry, wet, per_channel, effects applied per dry channel, AlignResult)."""
    stereo = demo_dry(fs=FS, duration_s=1.0, channels=2, seed=11)
    mono = stereo[0]
    fx = simple_effect()
    per_channel = False
    if name == "stereo-shared":
        dry, wet = stereo, fx(stereo)
    elif name == "stereo-per-channel":
        fx2 = simple_effect(delay=61.0, polarity=1, fc=250.0)
        dry, wet, per_channel = stereo, np.stack([fx(stereo[0]), fx2(stereo[1])]), True
    elif name == "mono-dry-stereo-wet":
        dry, wet = mono, np.stack([0.8 * fx(mono), 0.3 * fx(mono)])
    elif name == "wet-longer":  # the effect's tail is kept
        dry, wet = mono, fx(np.r_[mono, np.zeros(4800)])
    elif name == "wet-shorter":
        dry, wet = mono, fx(mono)[: mono.size - 7000]
    elif name in ("wet-leads", "wet-leads-causal"):  # the wet is 40 samples early: advance the dry
        dry, wet = mono, simple_effect(delay=-40.0)(mono)
    else:
        raise KeyError(name)
    options = {"causal": True} if name == "wet-leads-causal" else {}  # else the API's default
    return dry, wet, per_channel, align(dry, wet, fs=FS, n_sections=2, per_channel=per_channel, **options)


LAYOUTS = ["stereo-shared", "stereo-per-channel", "mono-dry-stereo-wet", "wet-longer", "wet-shorter", "wet-leads"]


@pytest.mark.parametrize("name", LAYOUTS + ["wet-leads-causal"])
def test_layout_aligned_has_dry_shape_and_deep_null(name):
    dry, wet, _, result = layout_case(name)
    assert result.aligned.shape == dry.shape
    assert result.aligned.dtype == np.float64
    assert null_depth_db(result.aligned, wet, fs=FS) <= -40.0
    if wet.ndim == 2 and dry.ndim == 2:  # every channel, not just the pooled number
        for d, w in zip(result.aligned, wet):
            assert null_depth_db(d, w, fs=FS) <= -40.0
    assert result.advanced is name.startswith("wet-leads")


def test_stereo_shared_model_is_one_filter_for_both_channels():
    dry, _, _, result = layout_case("stereo-shared")
    assert isinstance(result.cascade, AllpassCascade) and isinstance(result.method, str)
    np.testing.assert_allclose(result.aligned, result.cascade.apply(dry), rtol=0, atol=1e-12)
    assert abs(result.delay_samples - gcc_phat(dry, layout_case("stereo-shared")[1], fs=FS)[0]) < 1e-9


def test_per_channel_models_differ_and_each_fits_its_channel():
    dry, wet, _, result = layout_case("stereo-per-channel")
    assert isinstance(result.cascade, list) and len(result.cascade) == 2
    assert isinstance(result.method, list) and len(result.method) == 2
    for c, d, a in zip(result.cascade, dry, result.aligned):
        np.testing.assert_allclose(a, c.apply(d), rtol=0, atol=1e-12)
    # the two channels went through different delays and polarities: so must the models
    assert [c.polarity for c in result.cascade] == [-1, 1]
    f = np.array([100.0, 1000.0, 5000.0])
    truths = [simple_effect(), simple_effect(delay=61.0, polarity=1, fc=250.0)]
    for c, t in zip(result.cascade, truths):
        np.testing.assert_allclose(c.group_delay(f), t.group_delay(f), atol=0.1)


@pytest.mark.parametrize("name", ["wet-leads", "wet-leads-causal"])
def test_wet_leads_reports_a_negative_delay(name):
    dry, wet, _, result = layout_case(name)
    assert result.advanced
    assert result.cascade.integer_delay < 0
    # the truth's bulk delay is -40 plus the (positive) delay of its two sections
    assert -40.0 < result.delay_samples < 0.0
    assert abs(result.after["residual_delay_samples"]) <= 0.1


def test_per_channel_with_a_mono_wet_of_another_length(rng):
    """A mono wet serves every channel of a stereo dry also when the lengths differ."""
    dry = rng.standard_normal((2, 12000))
    effect = AllpassCascade([Allpass2(0.8, 1500.0), Delay(4.0)], fs=FS)
    wet = effect.apply(dry[0])[:10000]
    result = align(dry[:1].repeat(2, axis=0), wet, fs=FS, n_sections=2, per_channel=True)
    assert isinstance(result.cascade, list) and len(result.cascade) == 2
    assert all(report["null_db"] < -40 for report in [result.after])


@pytest.mark.parametrize(("fs", "n"), [(48000, 2000), (48000, 2047), (192000, 4000)])
def test_default_order_on_clips_too_short_for_a_time_domain_design(rng, fs, n):
    """The automatic order keeps the first fit where the audio is too short for the time-domain designs."""
    dry = rng.standard_normal(n)
    wet = AllpassCascade([Allpass2(0.9, 800.0), Delay(5.0)], fs=fs).apply(dry)
    result = align(dry, wet, fs=fs)
    assert result.method == "allpass" and result.after["null_db"] < -20


def test_a_dc_offset_far_above_the_signal_is_an_audio_error():
    """A pair whose shared energy is (nearly) all DC has no phase to fit: a clear AudioError, not a fit's
    argument check (this noise leaves fewer than two weighted bins)."""
    from apfdsp.exceptions import AudioError

    dry = 0.1 + 0.001 * np.random.default_rng(0).standard_normal(48000)
    wet = AllpassCascade([Allpass2(0.9, 800.0), Delay(5.0)], fs=FS).apply(dry)
    with pytest.raises(AudioError, match="fewer than two frequencies.*DC offset"):
        align(dry, wet, fs=FS, n_sections=2)


def test_the_work_beside_the_fit_gives_what_serial_work_gives(rng):
    """What `align` computes on its second thread while the fit runs (the wet's meter and the 'before'
    null, the pair statistics, the delay + polarity candidate, the order probe) equals the same work done
    in order, bit for bit."""
    from apfdsp.confidence import pair_statistics, verdict
    from apfdsp.estimate import estimate
    from apfdsp.fit_audio import more_sections, order_probe
    from apfdsp.metrics import MixMeter

    dry = demo_dry(fs=FS, duration_s=1.0, seed=3)
    wet = -AllpassCascade([Allpass2(0.85, 1200.0), Allpass2(0.5, 90.0), Delay(17.3)], fs=FS).apply(dry)
    result = align(dry, wet, fs=FS)
    assert result.before == MixMeter(wet, n=dry.size, fs=FS).report(dry)
    est = estimate(dry, wet, fs=FS)
    assert result.confidence == verdict(pair_statistics(dry, wet, fs=FS, integer_delay=est.integer_delay),
                                        null_db=result.after["null_db"], peak=est.gcc_peak)[0]
    assert result.delay_polarity == MixMeter(wet, n=dry.size, fs=FS).report(result.baseline.apply(dry))
    first = AllpassCascade([Allpass2(0.5, 90.0), Delay(17.0)], fs=FS)
    assert (more_sections(dry, wet, est, first, fs=FS, probe=order_probe(est, fs=FS)).to_dict()
            == more_sections(dry, wet, est, first, fs=FS).to_dict())


def test_an_error_in_the_fit_stops_the_work_beside_it():
    """An `AudioError` from the fit (automatic order: the probe was queued) reaches the caller; nothing hangs."""
    from apfdsp.exceptions import AudioError

    dry = 0.1 + 0.001 * np.random.default_rng(0).standard_normal(48000)
    wet = AllpassCascade([Allpass2(0.9, 800.0), Delay(5.0)], fs=FS).apply(dry)
    with pytest.raises(AudioError, match="fewer than two frequencies"):
        align(dry, wet, fs=FS)


def test_long_pairs_do_the_work_in_order_with_the_same_results(monkeypatch):
    """Above `BESIDE_MAX_SAMPLES` the work beside the fit runs in order (memory): the same result."""
    import sys

    align_module = sys.modules["apfdsp.align"]  # (the package's `align` is the function)
    dry = demo_dry(fs=FS, duration_s=1.0, seed=4)
    wet = AllpassCascade([Allpass2(0.8, 600.0), Delay(9.6)], fs=FS).apply(dry)
    beside = align(dry, wet, fs=FS)
    monkeypatch.setattr(align_module, "BESIDE_MAX_SAMPLES", 0)
    in_order = align(dry, wet, fs=FS)
    timeless = [{k: v for k, v in result.summary().items() if k != "elapsed_s"} for result in (in_order, beside)]
    assert timeless[0] == timeless[1] and in_order.cascade.to_dict() == beside.cascade.to_dict()
    assert np.array_equal(in_order.aligned, beside.aligned)


def test_a_callback_in_fit_options_does_not_stall_the_work_beside_the_fit():
    """A `fit_options` callback replaces the one `align` uses to learn that the fit is polishing; the work
    beside the fit (the order probe the automatic order waits for) must still run: no hang."""
    import threading

    dry = np.random.default_rng(5).standard_normal(8000)
    wet = AllpassCascade([Allpass2(0.8, 900.0), Delay(4.0)], fs=16000).apply(dry)
    calls, outcome = [], {}
    worker = threading.Thread(target=lambda: outcome.setdefault(
        "result", align(dry, wet, fs=16000, fit_options={"callback": lambda *args: calls.append(args)})), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert "result" in outcome and outcome["result"].after["null_db"] < -20 and calls
