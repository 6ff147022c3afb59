"""The command line's options for sample format, shift direction, JSON everywhere and the HTML report,
each through `apfdsp.cli.main`, with its bad values (exit 2, one line, nothing written)."""

import json

import numpy as np
import pytest
import soundfile as sf

from apfdsp import AllpassCascade, Allpass2, Delay
from apfdsp.demo import demo_dry
from apfdsp.io import save_model
from apfdsp.metrics import broadband_null_db, null_depth_db

from test_cli import FAST, assert_user_error, run, signals, work, write  # noqa: F401 (fixtures)

FS = 48000
LEAD = 25  # the wet leads the dry by this many samples


@pytest.fixture(scope="module")
def leading(tmp_path_factory):
    """A pair whose wet leads its dry by LEAD samples (an allpass effect)."""
    d = tmp_path_factory.mktemp("leading")
    source = demo_dry(fs=FS, duration_s=1.5, seed=7)
    wet = AllpassCascade([Allpass2(0.8, 900.0)], fs=FS)(source)[LEAD:]
    return write(d / "dry.wav", source[:-LEAD]), write(d / "wet.wav", wet)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.json"
    save_model(path, AllpassCascade([Allpass2(0.8, 900.0), Delay(3.0)], fs=FS))
    return str(path)


@pytest.mark.parametrize("subtype, expected", [("PCM_16", "PCM_16"), ("pcm_32", "PCM_32"), ("FLOAT", "FLOAT"),
                                                ("DOUBLE", "DOUBLE")])
def test_apply_subtype(tmp_path, model, leading, subtype, expected):
    out = tmp_path / "out.wav"
    code, stdout, err = run(["apply", model, leading[0], "-o", out, "--subtype", subtype, "--json"])
    assert code == 0, err
    assert sf.info(str(out)).subtype == expected == json.loads(stdout)["subtype"]
    assert json.loads(stdout)["realtime_capable"] is True  # never null


def test_align_and_mix_subtype(tmp_path, leading):
    code, _, err = run(["align", *leading, "-o", tmp_path / "a.wav", "--subtype", "PCM_16", "-q", *FAST])
    assert code == 0, err
    assert sf.info(str(tmp_path / "a.wav")).subtype == "PCM_16"
    code, _, err = run(["mix", *leading, "--wet-ratio", "0.5", "-o", tmp_path / "m.wav", "--subtype", "FLOAT",
                        "-q", *FAST])
    assert code == 0, err
    assert sf.info(str(tmp_path / "m.wav")).subtype == "FLOAT"


def test_demo_subtype(tmp_path):
    code, _, err = run(["demo", "-o", tmp_path, "--duration", "1", "--subtype", "PCM_16", "-q"])
    assert code == 0, err
    assert {sf.info(str(tmp_path / f"{n}.wav")).subtype for n in ("dry", "wet", "dry_aligned", "mix_after")} == {
        "PCM_16"}


def test_clipping_warning_names_the_option(tmp_path):
    loud = write(tmp_path / "loud.wav", 0.99 * np.sign(np.sin(np.arange(FS) / 3.0)), subtype="FLOAT")
    path = tmp_path / "m.json"
    save_model(path, AllpassCascade([Allpass2(0.5, 3000.0)], fs=FS))
    code, _, err = run(["apply", path, loud, "-o", tmp_path / "o.wav", "--subtype", "PCM_16"])
    assert code == 0 and "clips" in err and "--subtype FLOAT" in err, err
    code, _, err = run(["apply", path, loud, "-o", tmp_path / "o2.wav", "--subtype", "FLOAT"])
    assert code == 0 and "clips" not in err


@pytest.mark.parametrize("argv, phrase", [
    (["apply", "{model}", "{dry}", "-o", "{dir}/o.wav", "--subtype", "PCM_12"], "--subtype: must be one of"),
    (["apply", "{model}", "{dry}", "-o", "{dir}/o.flac", "--subtype", "FLOAT"], "does not store that sample format"),
    (["align", "{dry}", "{wet}", "-o", "{dir}/o.wav", "--subtype", ""], "--subtype"),
    (["mix", "{dry}", "{wet}", "--wet-ratio", "0.5", "-o", "{dir}/o.wav", "--subtype", "ulaw"], "--subtype"),
    (["demo", "-o", "{dir}/demo", "--subtype", "PCM_8"], "--subtype"),
    (["align", "{dry}", "{wet}", "-o", "{dir}/o.wav", "--shift", "both"], "--shift: invalid choice"),
    (["align", "{dry}", "{wet}", "-o", "{dir}/o.wav", "--shift", "wet"], "needs --wet-out"),
    (["align", "{dry}", "{wet}", "-o", "{dir}/o.wav", "--wet-out", "{dir}/w.wav"], "add --shift wet"),
    (["align", "{dry}", "{wet}", "-o", "{dir}/o.wav", "--shift", "wet", "--wet-out", "{dir}/o.wav"], "both name"),
    (["align", "{dry}", "{wet}", "-o", "{dir}/o.wav", "--shift", "wet", "--wet-out", "{wet}"], "input file"),
    (["align", "{dry}", "{wet}", "-o", "{dir}/o.wav", "--report", "{dir}/r.htm"], "end the name with"),
    (["pretrained", "--json", "extra"], "unrecognized arguments"),
])
def test_bad_option_values(work, argv, phrase):
    argv = [a.format(model=work.model, dry=work.dry, wet=work.wet, dir=work.dir) for a in argv]
    assert_user_error(argv, phrase, work.dir)


def test_shift_wet_align(tmp_path, leading):
    """The wet leads: --shift wet keeps every dry sample and writes the wet delayed instead; the two
    line up as well as the advanced dry does with the wet as given."""
    dry, wet = (sf.read(p)[0] for p in leading)
    out, wet_out = tmp_path / "a.wav", tmp_path / "w.wav"
    code, stdout, err = run(["align", *leading, "-o", out, "--shift", "wet", "--wet-out", wet_out, "--json",
                             "--subtype", "DOUBLE", *FAST])
    assert code == 0, err
    record = json.loads(stdout)
    shift = record["wet_delay_samples"]
    assert LEAD - 2 <= shift <= LEAD + 2 and record["realtime_capable"] is not None
    assert record["advanced"] is False and record["wet_output_path"] == str(wet_out)
    aligned, delayed = sf.read(str(out))[0], sf.read(str(wet_out))[0]
    assert aligned.size == dry.size and delayed.size == wet.size + shift
    np.testing.assert_array_equal(delayed[shift:], wet)
    np.testing.assert_array_equal(delayed[:shift], 0.0)
    assert np.any(aligned[: shift]), "the dry's first samples are kept"
    code, stdout, err = run(["align", *leading, "-o", tmp_path / "b.wav", "--json", "--subtype", "DOUBLE", *FAST])
    advanced = sf.read(str(tmp_path / "b.wav"))[0]
    assert json.loads(stdout)["advanced"] is True
    # The same model: the delayed-wet version is the advanced one, `shift` samples later (ends aside).
    middle = slice(FS // 10, dry.size - shift - FS // 10)
    np.testing.assert_allclose(aligned[shift:][middle], advanced[middle], atol=1e-9)
    assert null_depth_db(aligned[shift:], delayed[shift : shift + aligned.size - shift], fs=FS) < -25


def test_shift_wet_mix(tmp_path, leading):
    dry, wet = (sf.read(p)[0] for p in leading)
    code, stdout, err = run(["mix", *leading, "--wet-ratio", "0.5", "-o", tmp_path / "m.wav", "--shift", "wet",
                             "--json", "--subtype", "DOUBLE", *FAST])
    assert code == 0, err
    shift = json.loads(stdout)["wet_delay_samples"]
    mixed = sf.read(str(tmp_path / "m.wav"))[0]
    assert shift >= LEAD - 2 and mixed.size == dry.size + shift
    # the mix of aligned dry and delayed wet: the wet half nulls against the aligned dry half
    assert broadband_null_db(mixed, np.r_[np.zeros(shift), wet][: mixed.size]) < -3


def test_json_everywhere(tmp_path, work, model):
    code, stdout, _ = run(["pretrained", "--json"])
    assert code == 0 and isinstance(json.loads(stdout)["models"], list)
    code, stdout, _ = run(["apply", model, work.dry, "-o", tmp_path / "o.wav", "--json"])
    record = json.loads(stdout)
    assert record["realtime_capable"] is True and record["method_label"] == "allpass (1 section)"
    assert record["polarity"] == 1 and record["polarity_label"] in ("normal", "phase rotated")
    code, stdout, _ = run(["mix", work.dry, work.wet, "--wet-ratio", "0.3", "--model", model, "-o",
                           tmp_path / "m.wav", "--json"])
    record = json.loads(stdout)
    assert {"broadband_null_db_before", "broadband_null_db_after", "null_db_before", "null_db_after"} <= set(record)
    assert record["broadband_null_db_after"] is not None


def test_align_json_and_summary_say_which_null(tmp_path, leading):
    code, stdout, err = run(["align", *leading, "-o", tmp_path / "a.wav", "--json", *FAST])
    record = json.loads(stdout)
    for key in ("broadband_null_db_before", "broadband_null_db_delay_polarity", "broadband_null_db_after",
                "null_db_before", "null_db_after", "method_label", "polarity_label"):
        assert record[key] is not None, key
    assert record["method_label"] in ("delay+polarity", f"allpass ({record['n_sections']} section"
                                      f"{'s' if record['n_sections'] != 1 else ''})")
    code, stdout, err = run(["align", *leading, "-o", tmp_path / "b.wav", *FAST])
    assert "broadband null" in stdout and "phase-only null" in stdout and "realtime" in stdout
    assert "inverted" not in stdout  # an allpass effect, no inversion
    code, stdout, _ = run(["align", "--help"])
    assert "broadband null" in stdout and "phase-only null" in stdout and "--subtype" in stdout


def test_html_report_from_the_cli(tmp_path, leading):
    report = tmp_path / "r.html"
    code, stdout, err = run(["align", *leading, "-o", tmp_path / "a.wav", "--report", report, "-q", *FAST])
    assert code == 0, err
    text = report.read_text(encoding="utf-8")
    assert text.count("<audio") == 4 and "data:image/png;base64," in text
