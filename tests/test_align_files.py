"""Long files in bounded memory: `apfdsp.align_files` and `apfdsp.metrics.StreamingMixMeter`."""

import os

import numpy as np
import pytest
import soundfile as sf

from apfdsp import Allpass1, Allpass2, AllpassCascade, Delay, Polarity
from apfdsp.align import fit_alignment
from apfdsp.align_files import ANALYSIS_MAX_SAMPLES, align_files, analysis_excerpt
from apfdsp.exceptions import AudioError, ParameterError
from apfdsp.metrics import StreamingMixMeter, mix_report

FS = 16000


def streamed(x, y, block, candidates=None):
    candidates = [x] if candidates is None else candidates
    meter = StreamingMixMeter(y.shape[-1], fs=FS, n_candidates=len(candidates))
    for start in range(0, y.shape[-1], block):
        meter.add(y[..., start : start + block], [c[..., start : start + block] for c in candidates])
    return meter


def assert_reports_equal(got, expected):
    for key in ("mix_ratio", "ncc"):
        assert got[key] == pytest.approx(expected[key], rel=1e-10, abs=1e-13), key
    for key in ("mix_loss_db", "null_db"):
        # below -100 dB (an exact model) the float32 rounding of a written file (about -140 dB) shows
        assert got[key] == pytest.approx(expected[key], abs=1e-8 if expected[key] > -100 else 1e-3), key
    # 1 - rho**2 from sums added in another order: rounding of ~1e-16 relative to a -105 dB null
    assert got["broadband_null_db"] == pytest.approx(expected["broadband_null_db"], abs=1e-3)
    # the residual delay comes from the same per-bin sums
    if expected["residual_delay_samples"] is None:
        assert got["residual_delay_samples"] is None
    else:
        assert got["residual_delay_samples"] == pytest.approx(expected["residual_delay_samples"], abs=1e-6)


@pytest.mark.parametrize("block", [1, 300, 1024, 4097, 50000])
@pytest.mark.parametrize("shape", ["mono", "stereo", "mono wet, stereo dry"])
def test_streamed_sums_equal_the_in_memory_metrics(rng, block, shape):
    n = 20011
    channels_x = 1 if shape == "mono" else 2
    channels_y = 2 if shape == "stereo" else 1
    x = rng.standard_normal((channels_x, n))[0 if channels_x == 1 else slice(None)]
    y = 0.3 * np.roll(x, 3, axis=-1) + 0.1 * rng.standard_normal((channels_y, n))[0 if channels_y == 1 else slice(None)]
    assert_reports_equal(streamed(x, y, block).report(0), mix_report(x, y, fs=FS))


@pytest.mark.parametrize("n", [5, 100, 700])
def test_streamed_sums_of_signals_shorter_than_a_frame(rng, n):
    x, y = rng.standard_normal(n), rng.standard_normal(n)
    assert_reports_equal(streamed(x, y, 64).report(0), mix_report(x, y, fs=FS))


def test_several_candidates_share_one_wet(rng):
    x = rng.standard_normal(9000)
    y = np.roll(x, 2)
    meter = streamed(x, y, 1000, candidates=[x, np.roll(x, 2), -x])
    for k, candidate in enumerate([x, np.roll(x, 2), -x]):
        assert_reports_equal(meter.report(k), mix_report(candidate, y, fs=FS))


def test_streamed_meter_refuses_missing_or_mismatched_blocks(rng):
    meter = StreamingMixMeter(1000, fs=FS, n_candidates=1)
    meter.add(rng.standard_normal(500), [rng.standard_normal(500)])
    with pytest.raises(ParameterError, match="500 of the announced 1000"):
        meter.report(0)
    with pytest.raises(ParameterError, match="same length"):
        meter.add(rng.standard_normal(10), [rng.standard_normal(11)])
    with pytest.raises(ParameterError, match="positive"):
        StreamingMixMeter(0, fs=FS, n_candidates=1)


# -- align_files ---------------------------------------------------------------------------------------------
EFFECT = AllpassCascade([Allpass2(0.85, 900.0, 0.1), Allpass1(-0.4), Delay(23.0), Polarity(-1)], fs=FS)


@pytest.fixture
def pair(tmp_path, rng):
    """A 6 s stereo pair (noise bursts of changing level) through an allpass effect, as FLOAT files."""
    n = 6 * FS
    envelope = np.repeat(rng.uniform(0.05, 0.5, n // 2000 + 1), 2000)[:n]
    dry = rng.standard_normal((2, n)) * envelope
    wet = 0.7 * EFFECT.apply(dry)
    paths = {name: str(tmp_path / f"{name}.wav") for name in ("dry", "wet", "out")}
    sf.write(paths["dry"], dry.T, FS, subtype="FLOAT")
    sf.write(paths["wet"], wet.T, FS, subtype="FLOAT")
    dry32, wet32 = (a.astype(np.float32).astype(float) for a in (dry, wet))
    return paths, dry32, wet32


def test_excerpt_route_streams_the_output_and_measures_the_whole_files(pair, tmp_path):
    paths, dry, wet = pair
    result, dry_excerpt, wet_excerpt = align_files(paths["dry"], paths["wet"], paths["out"], subtype="FLOAT",
                                                   max_analysis_samples=2 * 2 * FS)
    analysis = result.settings["analysis"]
    assert analysis["whole_files"] is False and analysis["duration_s"] == 2.0 and analysis["files_s"] == 6.0
    assert dry_excerpt.shape == wet_excerpt.shape == (2, 2 * FS)
    assert result.aligned is None and result.method == "allpass"
    out, fs = sf.read(paths["out"], always_2d=True)
    aligned = result.cascade.apply(dry)
    np.testing.assert_allclose(out.T, aligned, atol=1e-6)  # FLOAT output of the model on the whole file
    # the metrics are those of the whole files, not of the excerpt
    assert_reports_equal({k: result.after[k] for k in ("mix_ratio", "ncc", "mix_loss_db", "null_db",
                                                             "broadband_null_db", "residual_delay_samples")},
                         mix_report(out.T, wet, fs=FS))
    assert_reports_equal(result.before, mix_report(dry, wet, fs=FS))
    assert_reports_equal(result.delay_polarity, mix_report(result.baseline.apply(dry), wet, fs=FS))
    assert result.after["null_db"] < -60
    assert sorted(os.listdir(tmp_path)) == ["dry.wav", "out.wav", "wet.wav"]  # no scratch left


def test_excerpt_route_measures_delay_and_polarity_when_the_wet_leads(tmp_path, rng):
    """An advance cannot stream: the delay + polarity candidate then goes through a scratch file."""
    n = 4 * FS
    dry = rng.standard_normal(n) * np.repeat(rng.uniform(0.05, 0.5, n // 2000 + 1), 2000)[:n]
    wet = 0.7 * EFFECT.apply(np.r_[dry[40:], np.zeros(40)])  # the wet leads the dry by 17 samples
    paths = [str(tmp_path / name) for name in ("d.wav", "w.wav")]
    sf.write(paths[0], dry, FS, subtype="FLOAT")
    sf.write(paths[1], wet, FS, subtype="FLOAT")
    dry, wet = (a.astype(np.float32).astype(float) for a in (dry, wet))
    result, _, _ = align_files(*paths, max_analysis_samples=FS)
    assert not result.baseline.causal and result.method == "allpass"
    assert_reports_equal(result.delay_polarity, mix_report(result.baseline.apply(dry), wet, fs=FS))
    assert_reports_equal(result.before, mix_report(dry, wet, fs=FS))
    assert sorted(os.listdir(tmp_path)) == ["d.wav", "w.wav"]


def test_excerpt_model_matches_the_whole_file_model(pair):
    paths, dry, wet = pair
    excerpt, _, _ = align_files(paths["dry"], paths["wet"], max_analysis_samples=2 * FS)
    whole = fit_alignment(dry, wet, fs=FS)
    f = np.geomspace(40, 7000, 256)
    error = np.angle(np.exp(1j * (excerpt.cascade.phase(f) - whole.cascade.phase(f))))
    assert np.sqrt(np.mean(error**2)) < 0.01
    assert excerpt.after["null_db"] < max(whole.after["null_db"] + 3.0, -60.0)


def test_files_within_the_budget_are_analysed_whole(pair):
    paths, dry, wet = pair
    result, got_dry, _ = align_files(paths["dry"], paths["wet"], paths["out"], subtype="FLOAT")
    assert 2 * dry.shape[-1] <= ANALYSIS_MAX_SAMPLES
    assert result.settings["analysis"] == {"whole_files": True}
    np.testing.assert_array_equal(got_dry, dry)
    expected = fit_alignment(dry, wet, fs=FS)
    assert result.after == expected.after and result.method == expected.method


def test_model_only_leaves_no_scratch_files(pair, tmp_path):
    paths, _, _ = pair
    result, _, _ = align_files(paths["dry"], paths["wet"], max_analysis_samples=FS)
    assert result.after["null_db"] < -40
    assert sorted(os.listdir(tmp_path)) == ["dry.wav", "wet.wav"]


def test_align_files_refuses_bad_input(pair, tmp_path):
    paths, dry, _ = pair
    other = str(tmp_path / "other_rate.wav")
    sf.write(other, dry.T, FS // 2, subtype="FLOAT")
    with pytest.raises(AudioError, match="sampled at"):
        align_files(paths["dry"], other)
    with pytest.raises(ParameterError, match="max_analysis_samples"):
        align_files(paths["dry"], paths["wet"], max_analysis_samples=10)


def test_analysis_excerpt_prefers_where_both_signals_play(tmp_path, rng):
    n = 10 * FS
    dry, wet = np.zeros(n), np.zeros(n)
    dry[FS : 3 * FS] = rng.standard_normal(2 * FS)       # only the dry plays here
    dry[6 * FS : 8 * FS] = rng.standard_normal(2 * FS)   # both play here
    wet[6 * FS : 8 * FS] = dry[6 * FS : 8 * FS]
    for name, x in (("d.wav", dry), ("w.wav", wet)):
        sf.write(str(tmp_path / name), x, FS, subtype="FLOAT")
    start = analysis_excerpt(str(tmp_path / "d.wav"), str(tmp_path / "w.wav"), frames=n, length=2 * FS)
    assert start == 6 * FS


def test_analysis_excerpt_centres_a_short_passage(tmp_path, rng):
    n = 30 * FS
    x = np.zeros(n)
    x[20 * FS : 21 * FS] = rng.standard_normal(FS)  # one second of sound in thirty
    for name in ("d.wav", "w.wav"):
        sf.write(str(tmp_path / name), x, FS, subtype="FLOAT")
    start = analysis_excerpt(str(tmp_path / "d.wav"), str(tmp_path / "w.wav"), frames=n, length=12 * FS)
    assert abs((start + 6 * FS) - 20.5 * FS) <= FS // 4  # the passage sits in the middle of the excerpt


def test_mostly_silent_long_files_are_aligned(tmp_path, rng):
    n = 30 * FS
    dry = np.zeros(n)
    dry[2 * FS : 3 * FS] = rng.standard_normal(FS)
    wet = EFFECT.apply(dry)
    for name, x in (("d.wav", dry), ("w.wav", wet)):
        sf.write(str(tmp_path / name), x, FS, subtype="FLOAT")
    result, _, _ = align_files(str(tmp_path / "d.wav"), str(tmp_path / "w.wav"), max_analysis_samples=12 * FS)
    assert result.settings["analysis"]["whole_files"] is False
    assert result.after["null_db"] < -40


def test_report_of_a_pair_silent_in_the_middle_measures_its_residual_delay_where_it_sounds(rng):
    x = np.zeros(30 * FS)
    x[: 2 * FS] = rng.standard_normal(2 * FS)  # the residual delay covers the whole signals
    report = mix_report(x, 0.5 * np.roll(x, 2), fs=FS)
    assert report["residual_delay_samples"] == pytest.approx(2.0, abs=1e-3)
