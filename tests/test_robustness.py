"""Hostile users and flaky machines: signals, crafted files under resource limits, OS errors, odd names,
special outputs, a closed stdout, truncated and implausible inputs, library errors in CLI terms.

Processes that must be signalled, limited or given a broken stdout run as ``python -m apfdsp``;
the rest run in-process through `apfdsp.cli.main`.
"""

import contextlib
import errno
import io
import json
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from apfdsp import cli
from apfdsp._validate import LIMITS
from apfdsp.cascade import Allpass1, Allpass2, AllpassCascade, Delay, Polarity
from apfdsp.exceptions import ApfdspError, AudioError, ModelFileError
from apfdsp.fit import fit_phase
from apfdsp.io import apply_file, load_model, os_error_text, read_audio, save_model, write_audio

FS = 48000
POSIX = os.name == "posix"


# -- helpers -------------------------------------------------------------------------------------------------
def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([os.fspath(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_one_error(code, err, *phrases, absent=()):
    """Exit 2, one ``apfdsp: error:`` line holding every phrase, no traceback, none of the `absent` words."""
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("apfdsp: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    for word in absent:
        assert word not in lines[0], lines[0]


def python_apfdsp(*args):
    return [sys.executable, "-m", "apfdsp", *[os.fsencode(a) if isinstance(a, bytes) else os.fspath(a) for a in args]]


def noise(n, channels=1, seed=0):
    x = 0.1 * np.random.default_rng(seed).standard_normal((channels, n))
    return x[0] if channels == 1 else x


def model_file(path, cells, fs=FS):
    save_model(path, AllpassCascade(cells, fs=fs))
    return os.fspath(path)


def model_doc(path, cells, fs=FS):
    """A model file's document, from valid cells (edited by the tests before being written)."""
    model_file(path, cells, fs)
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    """Inputs in their own directory: 1 s of noise, a 60 s stereo file for the signal tests, a model."""
    directory = tmp_path_factory.mktemp("inputs")
    short = os.fspath(directory / "short.wav")
    write_audio(short, noise(FS), FS, subtype="PCM_24")
    wet = os.fspath(directory / "wet.wav")
    write_audio(wet, -np.roll(noise(FS), 20), FS, subtype="PCM_24")
    big = os.fspath(directory / "big.wav")
    write_audio(big, noise(60 * FS, channels=2, seed=1), FS, subtype="PCM_24")
    big_wet = os.fspath(directory / "big_wet.wav")
    write_audio(big_wet, -np.roll(noise(60 * FS, channels=2, seed=1), 30, axis=-1), FS, subtype="PCM_24")
    model = model_file(directory / "model.json", [Allpass2(0.9, 1000.0, 0.3), Allpass1(-0.5, anticausal=True),
                                                   Delay(20.4), Polarity(-1)])
    return {"dir": directory, "short": short, "wet": wet, "big": big, "big_wet": big_wet, "model": model}


# -- limits ---------------------------------------------------------------------------------------------------
def test_the_limits_table_shows_the_limits():
    """The table in apfdsp._validate's docstring holds exactly the values of LIMITS."""
    import apfdsp._validate as v

    rows = dict(re.findall(r"^``(\w+)``\s+(\S+(?: \.\. \S+)?)\s", v.__doc__, flags=re.MULTILINE))
    assert set(rows) == set(LIMITS)
    for name, value in LIMITS.items():
        shown = f"{value[0]} .. {value[1]}" if isinstance(value, tuple) else str(value)
        assert rows[name] == shown, name


# -- signals --------------------------------------------------------------------------------------------------
def wait_for(predicate, process, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, f"the process ended before {what}: {process.communicate()}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.005)


@pytest.mark.skipif(not POSIX, reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM), signal.SIGINT])
def test_signal_during_apply_leaves_nothing(material, tmp_path, signum):
    """A signal while `apply` is writing (its temporary file exists): no file at all remains, exit 128 + N."""
    process = subprocess.Popen(python_apfdsp("apply", material["model"], material["big"], "-o", tmp_path / "out.wav"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: os.listdir(tmp_path), process, "a temporary file")
    assert all(name.startswith(".apfdsp-") for name in os.listdir(tmp_path))
    time.sleep(0.02)  # into the writing
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err
    assert os.listdir(tmp_path) == []
    assert err.decode().count("apfdsp: error:") == 1 and b"Traceback" not in err
    assert b"no partial file was left" in err


@pytest.mark.skipif(not POSIX, reason="POSIX signals")
@pytest.mark.parametrize("command, moment", [("align", 1.0), ("align", 3.0), ("mix", 1.0), ("mix", 3.0),
                                             ("align-long", 4.0), ("align-long", 7.0), ("demo", None)])
def test_signal_during_other_commands_leaves_nothing(material, tmp_path, command, moment):
    """SIGTERM at some moment of align or mix, or once demo is staging its files: nothing partial remains."""
    out = tmp_path / "out"
    argv = {"align": ["align", material["short"], material["wet"], "-o", out / "a.wav", "--model-out", out / "m.json"],
            "mix": ["mix", material["short"], material["wet"], "--wet-ratio", "0.5", "-o", out / "mix.wav"],
            "align-long": ["align", material["big"], material["big_wet"], "-o", out / "a.wav", "--sections", "2"],
            "demo": ["demo", "-o", out / "new" / "demo", "--duration", "2"]}[command]
    out.mkdir()
    process = subprocess.Popen(python_apfdsp(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if command == "demo":
        staged = out / "new" / "demo"
        wait_for(lambda: os.path.isdir(staged) and os.listdir(staged), process, "a staging directory")
    else:
        time.sleep(moment)  # some moment of starting, reading, fitting or writing
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    # -SIGTERM: stopped while Python was still importing, before apfdsp ran (and could write anything)
    assert process.returncode in (0, 128 + signal.SIGTERM, -signal.SIGTERM), err
    assert_complete_outputs(out)
    if command == "demo" and process.returncode != 0:
        assert os.listdir(out) == []  # the demo's directory goes as a whole, with the parent it made


def test_long_demo_is_streamed_and_complete(tmp_path):
    """A demo longer than what align analyses whole (its output is streamed): every file complete."""
    code, _, err = run(["demo", "-o", tmp_path / "demo", "--duration", "25", "-q"])
    assert code == 0, err
    for name in ("dry", "wet", "dry_aligned", "mix_before", "mix_after"):
        assert read_audio(tmp_path / "demo" / f"{name}.wav")[0].shape == (25 * FS,)
    assert not any(name.startswith(".") for name in os.listdir(tmp_path / "demo"))


def assert_complete_outputs(directory):
    """No hidden (temporary) file, and every file there complete: audio of full length, loadable models."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        assert not name.startswith("."), name
        if os.path.isdir(path):
            assert_complete_outputs(path)
        elif name.endswith(".wav"):
            assert read_audio(path, allow_silent=True)[0].shape[-1] in (FS, 2 * FS, 60 * FS)
        elif name.endswith(".json"):
            load_model(path)


class Stop(BaseException):
    """What the command line's signal handler raises, raised here at a chosen block."""


@pytest.mark.parametrize("anticausal", [False, True])
@pytest.mark.parametrize("ext", ["wav", "flac"])
@pytest.mark.parametrize("at", [1, 2, 5, 9, 13])
def test_apply_file_stopped_at_any_block_leaves_nothing(tmp_path, anticausal, ext, at):
    src = tmp_path / "in.wav"
    write_audio(src, noise(4000, channels=2), FS, subtype="PCM_16")
    cascade = AllpassCascade([Allpass2(0.9, 1000.0), Allpass1(0.3, anticausal=anticausal), Delay(7)], fs=FS)
    calls = []

    def progress(done, total):
        calls.append(done)
        if len(calls) == at:
            raise Stop

    with pytest.raises(Stop) if at <= (8 if not anticausal else 16) else contextlib.nullcontext():
        apply_file(cascade, src, tmp_path / f"out.{ext}", block_size=500, progress=progress)
    assert sorted(os.listdir(tmp_path)) in (["in.wav"], ["in.wav", f"out.{ext}"])
    if len(calls) >= at:
        assert os.listdir(tmp_path) == ["in.wav"]


# -- crafted inputs under a memory and a time limit -------------------------------------------------------------
def crafted_inputs(directory, material):
    """(name, argv) of commands on crafted files that must each be refused (exit 2) quickly and frugally."""
    d = os.fspath(directory)
    rate = os.path.join(d, "rate.wav")  # a WAV header claiming 2147483647 Hz
    data = bytearray(open(material["short"], "rb").read())
    at = data.find(b"fmt ") + 12
    data[at:at + 4] = (2147483647).to_bytes(4, "little")
    open(rate, "wb").write(data)
    flac = os.path.join(d, "lie.flac")  # a FLAC header announcing 2**35 frames
    sf.write(flac, noise(FS), FS, subtype="PCM_16")
    data = bytearray(open(flac, "rb").read())
    field = int.from_bytes(data[18:26], "big")
    data[18:26] = ((field & ~(2**36 - 1)) | 2**35).to_bytes(8, "big")
    open(flac, "wb").write(data)
    silence = os.path.join(d, "silence.flac")  # 0.3 MB that decode to 6 million samples
    sf.write(silence, np.r_[np.zeros(6_000_000), noise(FS)], FS, subtype="PCM_16")
    models = {}
    good = model_doc(os.path.join(d, "good.json"), [Allpass2(0.9, 1000.0, 0.3), Delay(3.0)])
    for name, edit in {
        "stretch1e8": lambda doc: doc["cascade"]["cells"][0].update(stretch=100_000_000),
        "stretch1e30": lambda doc: doc["cascade"]["cells"][0].update(stretch=1e30),
        "cells": lambda doc: doc["cascade"].update(cells=doc["cascade"]["cells"] * 3000),
        "delay": lambda doc: doc["cascade"]["cells"][1].update(samples=1e15),
        "fs": lambda doc: (doc.update(fs=1e12), doc["cascade"].update(fs=1e12)),
    }.items():
        doc = json.loads(json.dumps(good))
        edit(doc)
        models[name] = os.path.join(d, f"{name}.json")
        with open(models[name], "w") as f:
            json.dump(doc, f)
    models["deep"] = os.path.join(d, "deep.json")
    with open(models["deep"], "w") as f:
        f.write('{"format": "apfdsp-model", "format_version": 1, "metadata": ' + "[" * 200_000 + "]" * 200_000 + "}")
    models["big"] = os.path.join(d, "big.json")
    with open(models["big"], "w") as f:
        json.dump(dict(good, metadata={"pad": "x" * (LIMITS["model_bytes"] + 10)}), f)
    out = os.path.join(d, "out.wav")
    cases = [("rate/align", ["align", rate, rate, "-o", out]), ("rate/apply", ["apply", models["fs"], rate, "-o", out]),
             ("flac/align", ["align", flac, flac, "-o", out]), ("flac/mix", ["mix", flac, flac, "--wet-ratio", ".5",
                                                                             "-o", out]),
             ("silence/align", ["align", silence, silence, "-o", out, "-q"])]
    cases += [(f"{name}/apply", ["apply", path, material["short"], "-o", out]) for name, path in models.items()]
    cases += [(f"{name}/plot", ["plot", path, "-o", os.path.join(d, "out.png")]) for name, path in models.items()]
    return cases


_LIMITED_RUNNER = """
import json, resource, sys, time
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from apfdsp.cli import main
import apfdsp.plot
for name, argv in json.loads(sys.argv[2]):
    start = time.perf_counter()
    code = main(argv)
    print(json.dumps([name, code, time.perf_counter() - start]), flush=True)
"""


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_AS") or sys.platform == "darwin", reason="needs RLIMIT_AS")
def test_crafted_inputs_under_memory_and_time_limits(material, tmp_path):
    """Each crafted file is refused (exit 2, one line) within 30 s, in a process limited to 1 GiB of memory;
    the silence bomb (6 million samples in 0.3 MB) is not refused by align, which streams it: it must
    then succeed within the same limits."""
    cases = crafted_inputs(tmp_path, material)
    for _, argv in cases:
        assert all(os.path.getsize(a) < 2**20 or a.endswith("big.json") for a in argv if os.path.isfile(a))
    result = subprocess.run([sys.executable, "-c", _LIMITED_RUNNER, str(2**30), json.dumps(cases)],
                            capture_output=True, text=True, timeout=30 * len(cases))
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [name for name, _, _ in reports] == [name for name, _ in cases], result.stderr
    streamed = {"silence/align"}
    errors = [line for line in result.stderr.splitlines() if line.startswith("apfdsp: error:")]
    assert "Traceback" not in result.stderr and len(errors) == len(cases) - len(streamed), result.stderr
    for name, code, seconds in reports:
        assert code == (0 if name in streamed else 2) and seconds < 30, (name, code, seconds)


def test_crafted_model_refused_before_allocating(tmp_path):
    doc = model_doc(tmp_path / "m.json", [Allpass2(0.9, 1000.0, 0.3)])
    doc["cascade"]["cells"][0]["stretch"] = 100_000_000
    (tmp_path / "m.json").write_text(json.dumps(doc))
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=r"stretch must be an integer in \[1, 64\]"):
            load_model(tmp_path / "m.json")
        assert tracemalloc.get_traced_memory()[1] < 10 * 2**20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("edit, phrase", [
    (lambda doc: doc["cascade"]["cells"][0].update(stretch=65), "stretch must be an integer in [1, 64]"),
    (lambda doc: doc["cascade"]["cells"][0].update(stretch=-3), "stretch must be an integer in [1, 64]"),
    (lambda doc: doc["cascade"].update(cells=doc["cascade"]["cells"] * 1025), "more than the 1024"),
    (lambda doc: doc["cascade"].update(cells=[dict(doc["cascade"]["cells"][0], stretch=64)] * 40),
     "second-order sections"),
    (lambda doc: doc["cascade"]["cells"][1].update(samples=61.0 * FS), "more than the 60 s"),
    (lambda doc: doc["cascade"]["cells"][1].update(samples=-61.0 * FS), "more than the 60 s"),
    (lambda doc: doc["cascade"].update(fs=800_000), "fs must be a sample rate in [1, 768000] Hz"),
    (lambda doc: doc.update(metadata=json.loads("[" * 40 + "]" * 40)), "nested more than 32 levels"),
])
def test_model_bounds(tmp_path, edit, phrase):
    doc = model_doc(tmp_path / "m.json", [Allpass2(0.9, 1000.0, 0.3), Delay(3.0)])
    edit(doc)
    (tmp_path / "m.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFileError) as info:
        load_model(tmp_path / "m.json")
    assert phrase in str(info.value)


def test_model_at_the_bounds_loads(tmp_path):
    """The bounds are inclusive: a model at every one of them is accepted."""
    cells = [Allpass2(0.5, 1000.0, 0.1, stretch=64), Delay(60.0 * 8000 - 1)]
    path = model_file(tmp_path / "m.json", cells, fs=8000)
    cascade, _ = load_model(path)
    assert cascade.integer_delay == 60 * 8000 - 1 and cascade[0].stretch == 64


def test_deep_json_is_a_model_error_not_a_recursion_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ModelFileError, match="nested more than 32 levels"):
        load_model(path)


def test_model_on_the_edge_of_stability_is_refused(material, tmp_path):
    """A first-order cell warped to 0.999999999 (a pole 3e-10 from the unit circle): refused, also by plot."""
    path = model_file(tmp_path / "m.json", [Allpass1(0.5, warp=0.999999999)])
    code, _, err = run(["plot", path, "-o", tmp_path / "m.png"])
    assert_one_error(code, err, "edge of stability")
    assert sorted(os.listdir(tmp_path)) == ["m.json"]


def test_header_claims_refused_quickly(tmp_path):
    path = tmp_path / "rate.wav"
    write_audio(path, noise(1000), FS, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.find(b"fmt ") + 12
    data[at:at + 4] = (2147483647).to_bytes(4, "little")
    path.write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(AudioError, match="claims a sample rate of 2147483647 Hz"):
        read_audio(path)
    assert time.perf_counter() - start < 5


def test_implausible_expansion_refused(tmp_path):
    path = tmp_path / "silence.flac"
    sf.write(path, np.r_[np.zeros(5_000_000), noise(1000)], FS, subtype="PCM_16")
    with pytest.raises(AudioError, match="per byte"):
        read_audio(path)


# -- truncated and inconsistent inputs ------------------------------------------------------------------------------
def test_truncated_wav_is_warned_about(material, tmp_path):
    """A WAV whose header announces 30 s but whose data stop after 0.5 s: a warning, in the API and the CLI."""
    full = tmp_path / "full.wav"
    write_audio(full, noise(30 * FS), FS, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + FS])
    with pytest.warns(UserWarning, match=r"is truncated: its header announces 2880000 bytes"):
        x, _, _ = read_audio(cut)
    assert x.shape == (FS // 2,)
    code, _, err = run(["apply", material["model"], cut, "-o", tmp_path / "out.wav", "-q"])
    assert code == 0 and "apfdsp: warning:" in err and "truncated" in err


def test_flac_with_fewer_frames_than_announced_is_refused(tmp_path):
    path = tmp_path / "lie.flac"
    sf.write(path, noise(FS), FS, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    field = int.from_bytes(data[18:26], "big")
    data[18:26] = ((field & ~(2**36 - 1)) | 2 * FS).to_bytes(8, "big")
    path.write_bytes(data)
    with pytest.raises(AudioError, match="cannot read|truncated"):
        read_audio(path)


def test_delay_longer_than_the_file_is_warned_and_reported(material, tmp_path):
    """A model delaying by more than the file: a warning that the output is silence; the summary prints the
    delay the model holds, whatever its metadata says."""
    doc = model_doc(tmp_path / "m.json", [Allpass2(0.9, 1000.0), Delay(2 * FS + 0.5)])
    doc["metadata"] = {"summary": {"delay_samples": 12.0}}
    (tmp_path / "m.json").write_text(json.dumps(doc))
    code, out, err = run(["apply", tmp_path / "m.json", material["short"], "-o", tmp_path / "out.wav"])
    assert code == 0 and "the output is silence" in err
    assert f"delay       {2 * FS + 0.5:.2f} samples" in out


# -- OS errors, names, special files, stdout --------------------------------------------------------------------------
def test_os_error_text():
    assert os_error_text(OSError(errno.ENOSPC, "x")).startswith(os.strerror(errno.ENOSPC) + " (free some space")
    assert os_error_text(OSError(errno.EROFS, "x")).startswith(os.strerror(errno.EROFS))
    assert os_error_text(OSError("plain text")) == "plain text"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", ["apply", "fit", "plot"])
def test_full_disk_says_so(material, tmp_path, command):
    """Output through a link to /dev/full: "No space left on device", the link kept, nothing else left."""
    name = {"apply": "out.wav", "fit": "out.json", "plot": "out.png"}[command]
    os.symlink("/dev/full", tmp_path / name)
    argv = {"apply": ["apply", material["model"], material["short"]],
            "fit": ["fit", material["short"], material["wet"], "--sections", "2"],
            "plot": ["plot", material["model"]]}[command]
    code, _, err = run(argv + ["-o", tmp_path / name])
    assert_one_error(code, err, os.strerror(errno.ENOSPC), "free some space")
    assert os.listdir(tmp_path) == [name] and os.readlink(tmp_path / name) == "/dev/full"


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_output_through_a_link_to_dev_null(material, tmp_path):
    """Written sensibly: the link stays a link, /dev/null keeps its mode, no temporary file is left."""
    mode = os.stat("/dev/null").st_mode
    for name, argv in [("out.wav", ["apply", material["model"], material["big"]]), ("out.png", ["plot", material["model"]]),
                       ("out.json", ["fit", material["short"], material["wet"], "--sections", "2"])]:
        os.symlink("/dev/null", tmp_path / name)
        code, _, err = run(argv + ["-o", tmp_path / name, "-q"])
        assert code == 0, err
        assert os.path.islink(tmp_path / name) and os.stat("/dev/null").st_mode == mode
    assert sorted(os.listdir(tmp_path)) == ["out.json", "out.png", "out.wav"]


def test_link_to_a_regular_file_is_followed(material, tmp_path):
    target = tmp_path / "target.wav"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    os.symlink(target, tmp_path / "link.wav")
    code, _, err = run(["apply", material["model"], material["short"], "-o", tmp_path / "link.wav", "-q"])
    assert code == 0, err
    assert os.path.islink(tmp_path / "link.wav") and stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert read_audio(target)[0].shape == (FS,)


@pytest.mark.parametrize("command", ["apply", "plot", "fit", "align"])
def test_longest_output_names_work(material, tmp_path, command):
    """A 245-byte output name (the temporary names are short, so any valid name works); 300 bytes: one error."""
    ext = {"apply": ".wav", "plot": ".png", "fit": ".json", "align": ".wav"}[command]
    argv = {"apply": ["apply", material["model"], material["short"]], "plot": ["plot", material["model"]],
            "fit": ["fit", material["short"], material["wet"], "--sections", "2"],
            "align": ["align", material["short"], material["wet"], "--sections", "2"]}[command]
    name = "n" * (245 - len(ext)) + ext
    code, _, err = run(argv + ["-o", tmp_path / name, "-q"])
    assert code == 0, err
    assert os.listdir(tmp_path) == [name]
    code, _, err = run(argv + ["-o", tmp_path / ("n" * 300 + ext), "-q"])
    assert_one_error(code, err, "choose a shorter name")
    assert os.listdir(tmp_path) == [name]


@pytest.mark.skipif(not POSIX or sys.platform == "darwin", reason="file names of any bytes")
def test_non_utf8_file_names(material, tmp_path):
    """Names with bytes that are not UTF-8: processed and printed (escaped), in a real process, no traceback."""
    directory = os.fsencode(tmp_path)
    src = directory + b"/dry\xff.wav"
    shutil.copy(material["short"], src)
    env = dict(os.environ, LC_ALL="C.UTF-8", PYTHONIOENCODING="utf-8")
    for argv in (["apply", os.fsencode(material["model"]), src, "-o", directory + b"/out\xfe.wav"],
                 ["plot", os.fsencode(material["model"]), "-o", directory + b"/fig\xfe.png", "--title", b"t\xff"],
                 ["align", src, os.fsencode(material["wet"]), "-o", directory + b"/al\xfe.wav", "--sections", b"2",
                  "--report", directory + b"/r\xfe.png"],
                 ["apply", os.fsencode(material["model"]), directory + b"/missing\xff.wav", "-o", directory + b"/x.wav"]):
        result = subprocess.run([sys.executable, "-m", "apfdsp", *argv], capture_output=True, env=env, timeout=120)
        assert b"Traceback" not in result.stderr, result.stderr
        missing = any(b"missing" in a for a in argv if isinstance(a, bytes))
        assert result.returncode == (2 if missing else 0), result.stderr
    assert sorted(os.listdir(directory)) == sorted([b"al\xfe.wav", b"dry\xff.wav", b"fig\xfe.png", b"out\xfe.wav",
                                                    b"r\xfe.png"])


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_stdout_full_or_closed_after_the_work(material, tmp_path):
    """The files are written, stdout fails: exit 3 and a message that says the files are written."""
    out = tmp_path / "out.wav"
    argv = python_apfdsp("apply", material["model"], material["short"], "-o", out)
    with open("/dev/full", "w") as full:
        result = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert result.returncode == 3 and "its files are written" in result.stderr and "Traceback" not in result.stderr
    assert read_audio(out)[0].shape == (FS,)
    os.remove(out)
    process = subprocess.Popen(argv + ["--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader goes away
    err = process.stderr.read()
    assert process.wait(timeout=120) == 3 and "its files are written" in err and "Traceback" not in err
    assert read_audio(out)[0].shape == (FS,)
    assert sorted(os.listdir(tmp_path)) == ["out.wav"]


def mount_tmpfs(path, size):
    """Mount a small tmpfs at `path` (root on Linux only); False when that is not possible here."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", os.fspath(path)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "2m"):
        pytest.skip("cannot mount a small tmpfs here (needs root on Linux)")
    yield disk
    subprocess.run(["umount", os.fspath(disk)], check=True)


def test_disk_full_during_apply_and_demo(material, small_disk):
    """A real full disk (a 2 MB tmpfs): "No space left on device", and nothing partial is left."""
    causal = model_file(small_disk.parent / "causal.json", [Allpass2(0.9, 1000.0), Delay(3.0)])
    code, _, err = run(["apply", causal, material["big"], "-o", small_disk / "out.wav"])
    assert_one_error(code, err, os.strerror(errno.ENOSPC))
    assert os.listdir(small_disk) == []
    code, _, err = run(["demo", "-o", small_disk / "demo", "--duration", "30", "-q"])
    assert_one_error(code, err, os.strerror(errno.ENOSPC))
    assert os.listdir(small_disk) == []


# -- library errors in CLI terms ------------------------------------------------------------------------------------
API_WORDS = ("freqs", "fs/2", "pass subtype=", "duration_s", "n_sections", "pole frequency", "max_delay_s", "x is")


@pytest.mark.parametrize("case", ["dc", "rate1", "tiny", "duration", "mp3", "sections", "max-delay", "silent-start"])
def test_messages_in_cli_terms(material, tmp_path, case):
    def wav(name, x, fs=FS, subtype="FLOAT"):
        sf.write(tmp_path / name, np.asarray(x).T, fs, subtype=subtype)
        return tmp_path / name

    argv, phrase = {
        "dc": (lambda: ["align", wav("dc.wav", np.full(FS, 0.5)), material["wet"], "-o", tmp_path / "o.wav"],
               "constant (DC) level"),
        "rate1": (lambda: ["align", wav("r.wav", noise(100), fs=1), wav("r2.wav", noise(100), fs=1), "-o",
                           tmp_path / "o.wav"], "align, fit and mix analyse 8000 to 768000 Hz"),
        "tiny": (lambda: ["fit", wav("t.wav", 1e-300 * noise(FS), subtype="DOUBLE"), material["wet"], "-o",
                          tmp_path / "o.json"], "practically silent"),
        "duration": (lambda: ["demo", "-o", tmp_path / "d", "--duration", "0.01"], "--duration"),
        "mp3": (lambda: ["apply", material["model"], material["short"], "-o", tmp_path / "o.mp3"],
                "does not exist in MP3 files"),
        "sections": (lambda: ["align", material["short"], material["wet"], "-o", tmp_path / "o.wav", "--sections",
                              "1000"], "--sections"),
        "max-delay": (lambda: ["align", material["short"], material["wet"], "-o", tmp_path / "o.wav",
                               "--max-delay-ms", "1e9"], "--max-delay-ms"),
        "silent-start": (lambda: ["mix", wav("s.wav", np.r_[np.zeros(40 * FS), noise(FS)], subtype="PCM_16"),
                                  wav("s2.wav", np.r_[np.zeros(40 * FS), noise(FS)], subtype="PCM_16"),
                                  "--wet-ratio", "0.5", "-o", tmp_path / "o.wav", "--sections", "2"],
                         "silent over the part apfdsp measures"),
    }[case]
    argv = argv()
    before = sorted(os.listdir(tmp_path))
    code, _, err = run(argv)
    if case == "silent-start" and code == 0:  # the same file twice: a clean result, the mix is the file
        mixed, original = sf.read(tmp_path / "o.wav")[0], sf.read(tmp_path / "s.wav")[0]
        np.testing.assert_allclose(mixed, original, atol=2**-15)
        assert "error" not in err
        return
    assert_one_error(code, err, phrase, absent=API_WORDS)
    assert sorted(os.listdir(tmp_path)) == before


# -- the API raises its own error types -----------------------------------------------------------------------------
def test_fit_phase_stretched_without_random_starts():
    """structure="stretched", n_random=0: a fit (from one seeded random start), not an internal TypeError."""
    freqs = np.geomspace(50, 20000, 200)
    target = -2 * np.pi * freqs * 3 / FS - np.pi / 4
    first = fit_phase(freqs, target, fs=FS, structure="stretched", n_random=0, n_sections=2, max_iter=30)
    again = fit_phase(freqs, target, fs=FS, structure="stretched", n_random=0, n_sections=2, max_iter=30)
    assert np.isfinite(first.loss) and first.cascade == again.cascade
    assert np.all(np.abs(first.cascade.poles()) < 1)


@pytest.mark.parametrize("call", [
    lambda: read_audio(123),
    lambda: read_audio("/nonexistent/x.wav"),
    lambda: write_audio("/nonexistent/x.wav", noise(10), FS),
    lambda: write_audio("x.wav", noise(10), -1),
    lambda: write_audio("x.wav", noise(10), FS, subtype="NOPE"),
    lambda: load_model("/nonexistent.json"),
    lambda: apply_file("not a cascade", "a.wav", "b.wav"),
    lambda: fit_phase([1.0], [0.0], fs=FS),
    lambda: fit_phase(np.geomspace(20, 2e4, 10), np.zeros(10), fs=FS, structure="nope"),
    lambda: fit_phase(np.geomspace(20, 2e4, 10), np.zeros(10), fs=FS, n_random=-1),
])
def test_bad_arguments_raise_the_library_errors(call):
    with pytest.raises((ApfdspError, TypeError)) as info:
        call()
    assert isinstance(info.value, (ApfdspError, TypeError)) and not isinstance(info.value, (AttributeError,))
