"""The ``apfdsp`` command line, run in-process through `apfdsp.cli.main`.

The expensive alignments run once per module (fixtures); every bad-input test fails before any fit
and checks the exit code, the message, the absence of a traceback, that the inputs are unchanged
byte for byte and that no output (partial or temporary) was left behind.
"""

import contextlib
import hashlib
import io
import json
import os
import sys
import types

import numpy as np
import pytest
import soundfile as sf

from apfdsp import cli
from apfdsp.cascade import AllpassCascade, Delay
from apfdsp.demo import demo_dry, demo_effect
from apfdsp.io import load_model, save_model
from apfdsp.version import __version__

FS = 48000
DURATION_S = 1.5
FAST = ["--sections", "3"]  # the fit's quality is tested elsewhere; keep the CLI tests quick
JSON_KEYS = {"delay_samples", "polarity", "mix_loss_db_before", "mix_loss_db_after", "null_db_before",
             "null_db_after", "elapsed_s", "model_path", "output_path"}


# -- helpers -------------------------------------------------------------------------------------------------
def run(argv):
    """main(argv) with stdout and stderr captured: (code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def snapshot(directory):
    """{file name: sha256} of every file in `directory` (temporary files included)."""
    result = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                result[name] = hashlib.sha256(f.read()).hexdigest()
    return result


def write(path, x, fs=FS, subtype="PCM_24"):
    sf.write(str(path), np.asarray(x).T, fs, subtype=subtype)
    return str(path)


@pytest.fixture(scope="module")
def signals():
    dry = demo_dry(fs=FS, duration_s=DURATION_S)
    wet = demo_effect(dry, fs=FS)
    return dry, np.stack([wet, 0.8 * wet])  # mono dry, stereo wet


@pytest.fixture(scope="module")
def pair(tmp_path_factory, signals):
    """dry.wav (mono PCM_24) and wet.wav (stereo FLOAT) at 48 kHz, in their own directory."""
    d = tmp_path_factory.mktemp("pair")
    dry, wet = signals
    return write(d / "dry.wav", dry), write(d / "wet.wav", wet, subtype="FLOAT")


@pytest.fixture(scope="module")
def aligned(tmp_path_factory, pair):
    """One `apfdsp align --json` run with every output, shared by several tests."""
    d = tmp_path_factory.mktemp("aligned")
    paths = {"out": str(d / "dry_aligned.wav"), "model": str(d / "model.json"), "report": str(d / "report.png")}
    before = {p: snapshot(os.path.dirname(p)) for p in pair}
    code, out, err = run(["align", *pair, "-o", paths["out"], "--model-out", paths["model"],
                          "--report", paths["report"], "--json", *FAST])
    after = {p: snapshot(os.path.dirname(p)) for p in pair}
    return dict(paths, code=code, stdout=out, stderr=err, inputs_unchanged=before == after)


@pytest.fixture
def work(tmp_path, signals):
    """A fresh directory with a valid dry/wet pair and a valid model (for the error tests)."""
    dry, wet = signals
    short = slice(0, FS // 2)
    paths = types.SimpleNamespace(
        dir=tmp_path,
        dry=write(tmp_path / "dry.wav", dry[short]),
        wet=write(tmp_path / "wet.wav", wet[:, short], subtype="FLOAT"),
        model=str(tmp_path / "model.json"),
    )
    save_model(paths.model, AllpassCascade([Delay(3.0)], fs=FS))
    return paths


def assert_user_error(argv, phrase, directory, *, code=2):
    """Run a failing command: exit code 2, one clear message, no traceback, nothing changed."""
    before = snapshot(directory)
    got, out, err = run(argv)
    assert got == code, (got, out, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("apfdsp: error:")]
    assert len(lines) == 1, err
    assert phrase.lower() in lines[0].lower(), err
    assert snapshot(directory) == before, "inputs changed or output left behind"
    return err


# -- the happy paths -----------------------------------------------------------------------------------------
def test_align_end_to_end(aligned, pair):
    assert aligned["code"] == 0, aligned["stderr"]
    assert aligned["inputs_unchanged"]
    assert "Traceback" not in aligned["stderr"]
    record = json.loads(aligned["stdout"])  # exactly one JSON object
    assert JSON_KEYS <= set(record)
    assert record["output_path"] == aligned["out"] and record["model_path"] == aligned["model"]
    assert record["null_db_after"] <= record["null_db_before"]
    assert record["null_db_after"] < -15
    assert record["polarity"] in (1, -1)
    model = load_model(aligned["model"])[0]
    assert record["realtime_capable"] is model.causal
    dry_info, out_info = sf.info(pair[0]), sf.info(aligned["out"])
    assert (out_info.samplerate, out_info.channels, out_info.subtype, out_info.frames) == (
        dry_info.samplerate, dry_info.channels, dry_info.subtype, dry_info.frames)
    with open(aligned["report"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    cascade, meta = load_model(aligned["model"])
    assert cascade.fs == FS
    assert meta["inputs"] == {"dry": "dry.wav", "wet": "wet.wav"}
    assert meta["apfdsp_version"] == __version__
    assert meta["settings"]["n_sections"] == 3
    assert {"before", "delay_polarity", "after"} <= set(meta["metrics"])
    assert meta["method"] in ("allpass", "delay+polarity")


def test_fit_then_apply_equals_align(aligned, pair, tmp_path):
    model, out = tmp_path / "fit.json", tmp_path / "applied.wav"
    code, stdout, err = run(["fit", *pair, "-o", model, *FAST])
    assert code == 0, err
    for phrase in ("delay", "polarity", "method", "mix loss", "phase-only null", "broadband null", "delay+polarity", "time", "wrote"):
        assert phrase in stdout
    assert str(model) in stdout
    assert load_model(model)[0] == load_model(aligned["model"])[0]  # same settings, same model
    code, stdout, err = run(["apply", model, pair[0], "-o", out])
    assert code == 0, err
    assert "apply" in stdout
    y_apply, fs_apply = sf.read(str(out))
    y_align, fs_align = sf.read(aligned["out"])
    assert fs_apply == fs_align and sf.info(str(out)).subtype == "PCM_24"
    np.testing.assert_allclose(y_apply, y_align, atol=2.0**-22)  # 24-bit: at most one LSB apart


def test_mix_with_model(aligned, pair, tmp_path):
    out = tmp_path / "mix.wav"
    code, stdout, err = run(["mix", *pair, "--wet-ratio", 0.3, "--model", aligned["model"], "-o", out, "--json"])
    assert code == 0, err
    record = json.loads(stdout)
    assert JSON_KEYS <= set(record)
    assert record["null_db_after"] <= record["null_db_before"]
    dry, _ = sf.read(pair[0])
    wet, _ = sf.read(pair[1], always_2d=True)
    cascade, _ = load_model(aligned["model"])
    expected = 0.7 * cascade.apply(dry)[None, :] + 0.3 * wet.T[:, : dry.size]
    mix, fs = sf.read(str(out), always_2d=True)
    assert fs == FS and mix.shape == (dry.size, 2)  # mono dry + stereo wet -> stereo, length of dry
    assert sf.info(str(out)).subtype == "PCM_24"
    np.testing.assert_allclose(mix.T, expected, atol=2.0**-22)


def test_mix_on_the_fly(pair, tmp_path):
    out = tmp_path / "mix.wav"
    code, stdout, err = run(["mix", *pair, "--wet-ratio", 0.5, "-o", out, "--sections", 3])
    assert code == 0, err
    assert "phase-only null" in stdout and str(out) in stdout
    mix, fs = sf.read(str(out), always_2d=True)
    assert fs == FS and mix.shape == (sf.info(pair[0]).frames, 2)


def test_mix_resamples_wet(aligned, pair, signals, tmp_path):
    from scipy import signal

    wet32 = write(tmp_path / "wet32.wav", signal.resample_poly(signals[1], 2, 3, axis=-1), fs=32000)
    out = tmp_path / "mix.wav"
    code, stdout, err = run(["mix", pair[0], wet32, "--wet-ratio", 0.5, "--model", aligned["model"],
                             "-o", out, "--resample", "--json"])
    assert code == 0, err
    record = json.loads(stdout)
    assert record["wet_resampled_from_hz"] == 32000
    assert record["null_db_after"] < record["null_db_before"]
    assert sf.info(str(out)).samplerate == FS


def test_plot(aligned, tmp_path):
    fig = tmp_path / "model.png"
    code, stdout, err = run(["plot", aligned["model"], "-o", fig])
    assert code == 0, err
    assert str(fig) in stdout
    with open(fig, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_demo(tmp_path):
    out_dir = tmp_path / "demo"
    code, stdout, err = run(["demo", "-o", out_dir, "--duration", 2])  # the README's first command
    assert code == 0, err
    assert "Traceback" not in err
    names = {"dry.wav", "wet.wav", "dry_aligned.wav", "model.json", "report.png", "mix_before.wav", "mix_after.wav"}
    assert set(os.listdir(out_dir)) == names
    for name in ("dry.wav", "wet.wav"):
        info = sf.info(str(out_dir / name))
        assert (info.samplerate, info.subtype, info.frames) == (FS, "PCM_24", 2 * FS)
    assert "phase-only null" in stdout and "->" in stdout
    assert "mix_after.wav" in stdout


def test_pretrained_listing_and_resolution(monkeypatch, work, tmp_path):
    monkeypatch.setattr(cli, "_pretrained_module", lambda: None)
    code, stdout, err = run(["pretrained"])
    assert code == 0 and "no pretrained models" in stdout.lower()
    assert_user_error(["apply", "pretrained:amp", work.dry, "-o", work.dir / "out.wav"],
                      "no pretrained models are installed", work.dir)

    def load_path(name):
        if name != "amp":
            raise KeyError(name)
        return work.model

    fake = types.SimpleNamespace(list_models=lambda: [{"name": "amp", "description": "an amp", "fs": FS}, "plain"],
                                 load_path=load_path)
    monkeypatch.setattr(cli, "_pretrained_module", lambda: fake)
    code, stdout, err = run(["pretrained"])
    assert code == 0, err
    assert stdout.splitlines() == ["pretrained:amp  an amp - 48000 Hz", "pretrained:plain"]
    out = tmp_path / "out.wav"
    code, _, err = run(["apply", "pretrained:amp", work.dry, "-o", out])
    assert code == 0, err
    np.testing.assert_allclose(sf.read(str(out))[0][3:], sf.read(work.dry)[0][:-3])
    assert_user_error(["apply", "pretrained:nope", work.dry, "-o", tmp_path / "x.wav"],
                      "unknown pretrained model 'nope'", tmp_path)


def test_pretrained_real_module():
    code, stdout, err = run(["pretrained"])
    assert code == 0, err
    assert stdout.strip()


def test_version_and_help(capsys):
    code, stdout, _ = run(["--version"])
    assert code == 0 and __version__ in stdout
    for command in ("align", "fit", "apply", "mix", "plot", "demo", "pretrained"):
        code, stdout, _ = run([command, "--help"])
        assert code == 0
        assert "example" in stdout and f"apfdsp {command}" in stdout
    code, stdout, err = run([])
    assert code == 2 and "choose a command" in err


def test_progress_display(capsys):
    progress = cli._Progress(True, "apfdsp align")
    progress.stage("reading audio")
    progress.fit_callback("polish", 3, 7)
    progress.file_callback(100, 100)
    progress.close()
    err = capsys.readouterr().err
    assert "reading audio" in err and "3/7" in err and "100%" in err and err.endswith("\r")
    quiet = cli._Progress(False, "x")
    quiet.fit_callback("polish", 1, 2)
    quiet.close()
    assert capsys.readouterr().err == ""


# -- every bad input: exit 2, a clear message, nothing changed -------------------------------------------------
def test_missing_input(work):
    assert_user_error(["align", work.dir / "nope.wav", work.wet, "-o", work.dir / "out.wav"],
                      "does not exist", work.dir)


def test_corrupt_input(work):
    bad = work.dir / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)))
    assert_user_error(["align", work.dry, bad, "-o", work.dir / "out.wav"], "cannot read audio file", work.dir)


def test_empty_input_zero_bytes(work):
    (work.dir / "empty.wav").write_bytes(b"")
    assert_user_error(["align", work.dir / "empty.wav", work.wet, "-o", work.dir / "out.wav"],
                      "empty.wav", work.dir)


def test_empty_input_zero_frames(work):
    sf.write(str(work.dir / "empty.wav"), np.zeros((0, 1)), FS, subtype="PCM_16")
    assert_user_error(["align", work.dir / "empty.wav", work.wet, "-o", work.dir / "out.wav"],
                      "empty", work.dir)


def test_unreadable_input(work):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root can read any file")
    os.chmod(work.dry, 0)
    try:
        assert_user_error(["align", work.dry, work.wet, "-o", work.dir / "out.wav"], "cannot read", work.dir)
    finally:
        os.chmod(work.dry, 0o644)


@pytest.mark.parametrize("value, phrase", [(0.0, "silent"), (np.nan, "NaN or Inf"), (np.inf, "NaN or Inf")])
def test_unusable_samples(work, value, phrase):
    x = np.full(FS // 2, value)
    if value == 0.0:
        bad = write(work.dir / "bad.wav", x)
    else:
        x = sf.read(work.dry)[0]
        x[100] = value
        bad = write(work.dir / "bad.wav", x, subtype="FLOAT")
    assert_user_error(["align", bad, work.wet, "-o", work.dir / "out.wav"], phrase, work.dir)
    assert_user_error(["align", work.dry, bad, "-o", work.dir / "out.wav"], phrase, work.dir)


def test_different_sample_rates(work, signals):
    wet = write(work.dir / "wet44.wav", signals[1][:, :22050], fs=44100)
    err = assert_user_error(["align", work.dry, wet, "-o", work.dir / "out.wav"], "--resample", work.dir)
    assert "48000 Hz" in err and "44100 Hz" in err
    assert_user_error(["mix", work.dry, wet, "--wet-ratio", "0.5", "--model", work.model, "-o",
                       work.dir / "out.wav"], "44100 Hz", work.dir)


def test_audio_too_short(work, rng):
    dry = write(work.dir / "short_dry.wav", 0.1 * rng.standard_normal(40))
    wet = write(work.dir / "short_wet.wav", 0.1 * rng.standard_normal(40))
    assert_user_error(["align", dry, wet, "-o", work.dir / "out.wav"], "too short", work.dir)


@pytest.mark.parametrize("argv, phrase", [
    (["align", "{dry}", "{wet}", "-o", "{out}", "--sections", "0"], "--sections: must be a whole number >= 1"),
    (["align", "{dry}", "{wet}", "-o", "{out}", "--sections", "two"], "--sections: must be a whole number"),
    (["fit", "{dry}", "{wet}", "-o", "{out}", "--seed", "-1"], "--seed: must be a whole number >= 0"),
    (["align", "{dry}", "{wet}", "-o", "{out}", "--max-delay-ms", "0"], "--max-delay-ms: must be a positive"),
    (["align", "{dry}", "{wet}", "-o", "{out}", "--max-delay-ms", "inf"], "--max-delay-ms: must be a positive"),
    (["align", "{dry}", "{wet}", "-o", "{out}", "--structure", "fancy"], "invalid choice: 'fancy'"),
    (["align", "{dry}", "{wet}"], "required: -o/--output"),
    (["align", "{dry}", "{wet}", "-o", "{out}", "--bogus"], "unrecognized arguments: --bogus"),
    (["mix", "{dry}", "{wet}", "-o", "{out}", "--wet-ratio", "1.5"], "--wet-ratio: must be a number in [0, 1]"),
    (["mix", "{dry}", "{wet}", "-o", "{out}", "--wet-ratio", "-0.1"], "--wet-ratio: must be a number in [0, 1]"),
    (["mix", "{dry}", "{wet}", "-o", "{out}", "--wet-ratio", "nan"], "--wet-ratio: must be a number in [0, 1]"),
    (["mix", "{dry}", "{wet}", "-o", "{out}"], "required: --wet-ratio"),
    (["demo", "-o", "{dir}/demo", "--duration", "0"], "--duration: must be a number of seconds in [1, 600]"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_option_values(work, argv, phrase):
    names = dict(dry=work.dry, wet=work.wet, out=work.dir / "out.wav", dir=work.dir)
    assert_user_error([a.format(**names) for a in argv], phrase, work.dir)


@pytest.mark.parametrize("command", ["align", "fit", "mix"])
def test_output_is_input(work, command):
    extra = ["--wet-ratio", "0.5"] if command == "mix" else []
    same_dry = os.path.join(work.dir, "sub", "..", "dry.wav")
    os.mkdir(work.dir / "sub")
    assert_user_error([command, work.dry, work.wet, "-o", same_dry] + extra, "it is the input file", work.dir)
    assert_user_error([command, work.dry, work.wet, "-o", work.wet] + extra, "it is the input file", work.dir)


def test_output_is_input_apply_and_plot(work):
    assert_user_error(["apply", work.model, work.dry, "-o", work.dry], "it is the input file", work.dir)
    assert_user_error(["apply", work.model, work.dry, "-o", work.model], "it is the input file", work.dir)
    assert_user_error(["align", work.dry, work.wet, "-o", work.dir / "o.wav", "--model-out", work.dry],
                      "it is the input file", work.dir)


def test_outputs_clash(work):
    out = work.dir / "out.wav"
    assert_user_error(["align", work.dry, work.wet, "-o", out, "--model-out", out], "both name", work.dir)


@pytest.mark.parametrize("target, phrase", [("missing/out.wav", "does not exist"), (".", "is a directory")])
def test_unwritable_output(work, target, phrase):
    assert_user_error(["align", work.dry, work.wet, "-o", work.dir / target], phrase, work.dir)
    assert_user_error(["apply", work.model, work.dry, "-o", work.dir / target], phrase, work.dir)


def test_read_only_output_directory(work):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    ro = work.dir / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        assert_user_error(["align", work.dry, work.wet, "-o", ro / "out.wav"], "not writable", work.dir)
    finally:
        os.chmod(ro, 0o755)


def test_oserror_on_write_is_a_user_error(work, monkeypatch):
    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cli, "write_audio", refuse)
    assert_user_error(["mix", work.dry, work.wet, "--wet-ratio", "0.5", "--model", work.model, "-o",
                       work.dir / "out.wav"], "Permission denied", work.dir)


@pytest.mark.parametrize("name", ["out.mp9", "out"])
def test_unknown_audio_extension(work, name):
    assert_user_error(["align", work.dry, work.wet, "-o", work.dir / name], "unknown audio file type", work.dir)
    assert_user_error(["apply", work.model, work.dry, "-o", work.dir / name], "unknown audio file type", work.dir)


def test_api_names_become_option_names(work):
    assert_user_error(["align", work.dry, work.wet, "-o", work.dir / "out.wav", "--sections", "1000"],
                      "--sections: must be a whole number >= 1 and <= 64", work.dir)


def test_bad_report_extension(work):
    assert_user_error(["align", work.dry, work.wet, "-o", work.dir / "out.wav", "--report", work.dir / "r.xyz"],
                      "unknown report type", work.dir)
    assert_user_error(["plot", work.model, "-o", work.dir / "m.txt"], "unknown figure type", work.dir)


def test_per_channel_model_refused(work, signals):
    stereo = write(work.dir / "stereo.wav", np.stack([signals[0], -signals[0]])[:, : FS // 2])
    assert_user_error(["fit", stereo, work.wet, "-o", work.dir / "m.json", "--per-channel"],
                      "one model per channel", work.dir)


@pytest.mark.parametrize("content, phrase", [
    ("this is not json", "is not JSON"),
    ('{"format": "something-else"}', "not an apfdsp model file"),
    ('{"format": "apfdsp-model", "format_version": 99}', "newer than this apfdsp"),
    ('{"format": "apfdsp-model", "format_version": 1, "fs": 48000}', "missing the key"),
])
def test_corrupt_model(work, content, phrase):
    bad = work.dir / "bad.json"
    bad.write_text(content)
    assert_user_error(["apply", bad, work.dry, "-o", work.dir / "out.wav"], phrase, work.dir)
    assert_user_error(["plot", bad, "-o", work.dir / "out.png"], phrase, work.dir)
    assert_user_error(["mix", work.dry, work.wet, "--wet-ratio", "0.5", "--model", bad, "-o",
                       work.dir / "out.wav"], phrase, work.dir)


def test_missing_model(work):
    assert_user_error(["apply", work.dir / "nope.json", work.dry, "-o", work.dir / "out.wav"],
                      "does not exist", work.dir)


def test_model_sample_rate_differs(work):
    model = work.dir / "m44.json"
    save_model(model, AllpassCascade([Delay(2.0)], fs=44100))
    err = assert_user_error(["apply", model, work.dry, "-o", work.dir / "out.wav"], "48000 Hz", work.dir)
    assert "44100 Hz" in err
    assert_user_error(["mix", work.dry, work.wet, "--wet-ratio", "0.5", "--model", model, "-o",
                       work.dir / "out.wav"], "fitted at 44100 Hz", work.dir)


def test_advancing_model_applies_offline_equivalent(work):
    model = work.dir / "adv.json"
    cascade = AllpassCascade([Delay(-5.0)], fs=FS)
    save_model(model, cascade)
    out = work.dir / "out.wav"
    assert cli.main(["apply", str(model), str(work.dry), "-o", str(out), "--quiet"]) == 0
    y, _ = sf.read(out, always_2d=True)
    x, _ = sf.read(work.dry, always_2d=True)
    np.testing.assert_allclose(y.T, cascade.apply(x.T), atol=1e-4)


def test_channel_mismatch(work, signals):
    three = write(work.dir / "three.wav", np.stack([signals[0]] * 3)[:, : FS // 2])
    assert_user_error(["mix", three, work.wet, "--wet-ratio", "0.5", "--model", work.model, "-o",
                       work.dir / "out.wav"], "channels", work.dir)


def test_unexpected_exception_is_a_bug_with_traceback(work, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(cli, "align_files", boom)
    code, _, err = run(["align", work.dry, work.wet, "-o", work.dir / "out.wav"])
    assert code == 1
    assert "Traceback" in err and "kaboom" in err and "bug" in err
    assert not os.path.exists(work.dir / "out.wav")


def test_main_reads_sys_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["apfdsp", "--version"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main() == 0
    assert __version__ in out.getvalue()
