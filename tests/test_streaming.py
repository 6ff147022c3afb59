"""Tests for apfdsp.streaming: `apply_file` (causal and anticausal sections) against offline filtering."""

import contextlib
import os
import threading

import numpy as np
import pytest
import soundfile as sf

import apfdsp.streaming as streaming
from apfdsp.audiofile import read_audio, write_audio
from apfdsp.cascade import Allpass1, Allpass2, AllpassCascade, Delay, Polarity
from apfdsp.exceptions import AudioError, OutputError, ParameterError
from apfdsp.streaming import apply_file
from io_helpers import FS, example_cascade, listing, noise

pytestmark = pytest.mark.filterwarnings("error::UserWarning")  # no clipping warning unless a test expects it


@pytest.fixture
def cascade():
    return example_cascade()


def io_threads():
    """apply_file's I/O threads still alive (there must be none once it has returned or raised)."""
    return [t for t in threading.enumerate() if t.name.startswith("apfdsp-io")]


# -- apply_file -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("block_size", [1, 3, 6, 7, 1000, 4096, 5003, 131072])  # the cascade delays by 6
@pytest.mark.parametrize("channels", [1, 2])
def test_apply_file_equals_offline(tmp_path, rng, cascade, block_size, channels):
    n = 5003  # prime: no block size from 2 to n - 1 divides it
    x = noise(rng, channels, n)
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    write_audio(src, x, FS, subtype="FLOAT")
    x_file, _, _ = read_audio(src)
    calls = []
    info = apply_file(cascade, src, dst, block_size=block_size, subtype="DOUBLE",
                      progress=lambda done, total: calls.append((done, total)))
    y, fs, out_info = read_audio(dst)
    assert fs == FS and y.shape == x.shape
    assert info == out_info and info["subtype"] == "DOUBLE" and info["frames"] == n
    expected = cascade.apply(x_file)
    np.testing.assert_array_equal(y, expected)  # bit for bit: the same sosfilt, its state carried
    assert not np.allclose(y, x_file, atol=1e-3)  # the filter really did something
    assert calls[-1] == (n, n) and len(calls) == -(-n // block_size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_apply_file_keeps_input_properties(tmp_path, rng, cascade):
    x = noise(rng, 2, 3001)
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    write_audio(src, x, FS, subtype="FLOAT")
    x_file, _, _ = read_audio(src)
    apply_file(cascade, src, dst, block_size=777)
    y, fs, info = read_audio(dst)
    assert (fs, info["channels"], info["subtype"], info["format"]) == (FS, 2, "FLOAT", "WAV")
    expected = cascade.apply(x_file)
    np.testing.assert_array_equal(y, expected.astype(np.float32))  # rounded to float32 once, like libsndfile


def test_apply_file_pcm_flac(tmp_path, rng, cascade):
    x = noise(rng, 2, 2000, scale=0.1)
    src, dst = tmp_path / "in.flac", tmp_path / "out.flac"
    write_audio(src, x, FS, subtype="PCM_24")
    apply_file(cascade, src, dst, block_size=512)
    y, _, info = read_audio(dst)
    assert (info["format"], info["subtype"]) == ("FLAC", "PCM_24")
    np.testing.assert_allclose(y, cascade.apply(read_audio(src)[0]), rtol=0, atol=2.0**-23)


def test_apply_file_subtype_unfit_for_output_format(tmp_path, rng, cascade):
    src = tmp_path / "in.wav"
    write_audio(src, noise(rng, 1, 100), FS, subtype="FLOAT")
    with pytest.raises(OutputError, match="pass subtype="):
        apply_file(cascade, src, tmp_path / "out.flac")
    apply_file(cascade, src, tmp_path / "out.flac", subtype="PCM_24")
    assert read_audio(tmp_path / "out.flac")[2]["subtype"] == "PCM_24"


def test_apply_file_sample_rate_mismatch(tmp_path, rng, cascade):
    src = tmp_path / "in.wav"
    write_audio(src, noise(rng, 1, 100), 44100)
    with pytest.raises(AudioError, match=r"44100 Hz.*48000 Hz; resample"):
        apply_file(cascade, src, tmp_path / "out.wav")
    assert listing(tmp_path) == ["in.wav"]


@pytest.mark.parametrize("delay", [-3.0, -7.3, -250.0])
@pytest.mark.parametrize("block_size", [2, 64, 1000])
def test_apply_file_advance_equals_offline_apply(tmp_path, rng, delay, block_size):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    x = noise(rng, 2, 1000)
    write_audio(src, x, FS, subtype="DOUBLE")
    advance = AllpassCascade([Allpass1(0.3), Delay(delay)], fs=FS)
    apply_file(advance, src, dst, block_size=block_size)
    y, _, _ = read_audio(dst)
    np.testing.assert_array_equal(y, advance.apply(x))
    assert np.all(y[:, -int(np.ceil(-delay)) + 1 :] == 0)


def silence_warned(cascade, frames):
    """`pytest.warns` the warning of a shift as long as the file (its output is silence), else nothing."""
    if abs(cascade.integer_delay) >= frames:
        return pytest.warns(UserWarning, match="the output is silence")
    return contextlib.nullcontext()


@pytest.mark.parametrize("delay", [999.0, 1000.0, 5000.5, -999.0, -1000.0, -5000.0])
def test_apply_file_shift_as_long_as_the_file(tmp_path, rng, delay):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    write_audio(src, noise(rng, 2, 1000), FS, subtype="DOUBLE")
    x = read_audio(src)[0]
    shifted = AllpassCascade([Allpass1(0.3), Delay(delay)], fs=FS)
    with silence_warned(shifted, 1000):
        info = apply_file(shifted, src, dst, block_size=300)
    y, _, _ = read_audio(dst, allow_silent=True)
    assert info["frames"] == 1000 and y.shape == x.shape
    np.testing.assert_array_equal(y, shifted.apply(x))
    assert np.count_nonzero(y) == (2 if abs(delay) == 999 else 0)  # one sample per channel, or none


def test_apply_file_refuses_to_overwrite_input(tmp_path, rng, cascade):
    src = tmp_path / "in.wav"
    write_audio(src, noise(rng, 1, 1000), FS)
    before = src.read_bytes()
    with pytest.raises(OutputError, match="it is the input file"):
        apply_file(cascade, src, src)
    with pytest.raises(OutputError, match="it is the input file"):
        apply_file(cascade, src, str(tmp_path / "." / "in.wav"))
    assert src.read_bytes() == before and listing(tmp_path) == ["in.wav"]


def test_apply_file_atomic_on_failure(tmp_path, rng, cascade, monkeypatch):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    write_audio(src, noise(rng, 2, 5000), FS)
    real_write, calls = sf.SoundFile.write, []

    def fail_at_second_block(self, data):  # runs on apply_file's I/O thread
        calls.append(len(data))
        if len(calls) > 2:
            raise RuntimeError("simulated failure")
        return real_write(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", fail_at_second_block)
    with pytest.raises(RuntimeError, match="simulated failure"):
        apply_file(cascade, src, dst, block_size=1000)
    assert calls == [6, 1000, 1000]  # the 6 leading zeros of the integer delay, 2 blocks, nothing after
    assert listing(tmp_path) == ["in.wav"] and io_threads() == []


def test_apply_file_read_error_mid_file(tmp_path, rng, cascade, monkeypatch):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    write_audio(src, noise(rng, 2, 5000), FS)
    real_read, calls = sf.SoundFile.read, []

    def fail_at_third_block(self, *args, **kwargs):  # runs on apply_file's I/O thread
        calls.append(args)
        if len(calls) > 2:
            raise RuntimeError("simulated read failure")
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", fail_at_third_block)
    with pytest.raises(AudioError, match=r"cannot read audio file .*in\.wav'.*simulated read failure"):
        apply_file(cascade, src, dst, block_size=1000)
    assert len(calls) == 3
    assert listing(tmp_path) == ["in.wav"] and io_threads() == []


def test_apply_file_fewer_frames_than_announced(tmp_path, rng, cascade, monkeypatch):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    write_audio(src, noise(rng, 1, 5000), FS)
    monkeypatch.setattr(sf.SoundFile, "frames", property(lambda self: 5010))
    with pytest.raises(AudioError, match=r"in\.wav'.*5010 frames announced, 5000 read"):
        apply_file(cascade, src, dst, block_size=1000)
    assert listing(tmp_path) == ["in.wav"]


def test_apply_file_interrupted_by_progress(tmp_path, rng, cascade):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    write_audio(src, noise(rng, 1, 5000), FS)

    def stop(done, total):
        if done >= 2000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        apply_file(cascade, src, dst, block_size=1000, progress=stop)
    assert listing(tmp_path) == ["in.wav"] and io_threads() == []


def test_apply_file_non_finite_block(tmp_path, rng, cascade):
    x = noise(rng, 1, 3000)
    x[2500] = np.inf
    sf.write(tmp_path / "in.wav", x, FS, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"NaN or Inf samples \(in frames 2000-2999\)"):
        apply_file(cascade, tmp_path / "in.wav", tmp_path / "out.wav", block_size=1000)
    assert listing(tmp_path) == ["in.wav"] and io_threads() == []


def test_apply_file_clip_warning(tmp_path, cascade):
    x = 0.9 * np.sign(np.sin(2 * np.pi * 200 * np.arange(2000) / FS))  # allpassed, a square wave overshoots
    write_audio(tmp_path / "in.wav", x, FS, subtype="PCM_16")
    assert np.max(np.abs(cascade.apply(read_audio(tmp_path / "in.wav")[0]))) > 1
    with pytest.warns(UserWarning, match="clips"):
        apply_file(cascade, tmp_path / "in.wav", tmp_path / "out.wav")
    assert np.max(np.abs(read_audio(tmp_path / "out.wav")[0])) <= 1


# -- apply_file: anticausal sections (a backward pass over a scratch file) ---------------------------------
def anticausal_cascade(delay=5.0):
    """Causal and anticausal sections of both orders, a polarity flip and a (fractional) delay."""
    cells = [Allpass2(0.9, 1000.0, 0.3), Allpass1(-0.5, anticausal=True), Allpass2(0.97, 150.0, 0.1, anticausal=True),
             Allpass2(0.6, 6000.0, anticausal=True), Polarity(-1)]
    cascade = AllpassCascade(cells + ([Delay(delay)] if delay else []), fs=FS)
    assert not cascade.causal and cascade.sos_anticausal.shape == (3, 6)
    return cascade


@pytest.fixture
def two_ways(monkeypatch):
    """Set how the backward pass reaches the output: "placed" (written at its places, as WAV is) or
    "copied" (through a third pass, as FLAC is). Returns the number of passes."""
    def choose(way):
        monkeypatch.setattr(streaming, "writes_anywhere", lambda format, subtype: way == "placed")
        return 2 if way == "placed" else 3
    return choose


def open_fds():
    """This process's open file descriptors (Linux), to check that the scratch file is closed."""
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


@pytest.mark.parametrize("way", ["placed", "copied"])
@pytest.mark.parametrize("block_size", [1, 7, 1000, 2003, 131072])
@pytest.mark.parametrize("channels", [1, 2])
def test_apply_file_anticausal_equals_offline(tmp_path, rng, two_ways, way, block_size, channels):
    n = 2003  # prime: no block size from 2 to n - 1 divides it
    passes = two_ways(way)
    cascade = anticausal_cascade(12.6)
    x = noise(rng, channels, n)
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    write_audio(src, x, FS, subtype="FLOAT")
    x_file, _, _ = read_audio(src)
    calls, fds = [], open_fds()
    info = apply_file(cascade, src, dst, block_size=block_size, subtype="DOUBLE",
                      progress=lambda done, total: calls.append((done, total)))
    y, fs, out_info = read_audio(dst)
    assert fs == FS and y.shape == x.shape and info == out_info and info["frames"] == n
    expected = cascade.apply(x_file)
    np.testing.assert_array_equal(y, expected)  # bit for bit: the same two sosfilt, their states carried
    causal_only = AllpassCascade([c for c in cascade if not getattr(c, "anticausal", False)], fs=FS)
    assert not np.allclose(y, causal_only.apply(x_file), atol=1e-3)  # the backward pass did something
    assert calls[-1] == (passes * n, passes * n) and len(calls) == passes * -(-n // block_size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and {t for _, t in calls} == {passes * n}
    assert listing(tmp_path) == ["in.wav", "out.wav"] and io_threads() == [] and open_fds() == fds


@pytest.mark.parametrize("way", ["placed", "copied"])
@pytest.mark.parametrize("delay", [-3.0, -7.3, -250.0, 999.0, 1000.0, 5000.5, -999.0, -1000.0, -5000.0])
def test_apply_file_anticausal_shifts(tmp_path, rng, two_ways, way, delay):
    two_ways(way)
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    write_audio(src, noise(rng, 2, 1000), FS, subtype="DOUBLE")
    x = read_audio(src)[0]
    cascade = anticausal_cascade(delay)
    with silence_warned(cascade, 1000):
        apply_file(cascade, src, dst, block_size=300)
    y, _, info = read_audio(dst, allow_silent=True)
    assert info["frames"] == 1000 and y.shape == x.shape
    np.testing.assert_array_equal(y, cascade.apply(x))
    assert np.any(y) == (abs(cascade.integer_delay) < 1000)  # a shift by the file's length leaves silence


@pytest.mark.parametrize(
    "name, subtype, way",
    [("out.wav", "PCM_16", "placed"), ("out.wav", "PCM_24", "placed"), ("out.wav", "FLOAT", "placed"),
     ("out.wav", "PCM_16", "copied"), ("out.wav", "FLOAT", "copied"), ("out.aiff", "PCM_24", "placed"),
     ("out.flac", "PCM_16", "copied"), ("out.flac", "PCM_24", "copied")],
)
def test_apply_file_anticausal_output_subtypes(tmp_path, rng, monkeypatch, name, subtype, way):
    """The output equals `cascade.apply` on the whole signal, rounded to the output subtype by
    `write_audio`: the same samples (and for WAV and AIFF the same bytes), whichever way it is written."""
    if way == "copied" and not name.endswith(".flac"):
        monkeypatch.setattr(streaming, "writes_anywhere", lambda format, subtype: False)
    cascade = anticausal_cascade(-4.2)
    src, dst, ref = tmp_path / "in.wav", tmp_path / name, tmp_path / ("ref" + os.path.splitext(name)[1])
    write_audio(src, noise(rng, 2, 7001, scale=0.1), FS, subtype="PCM_24")
    x = read_audio(src)[0]
    info = apply_file(cascade, src, dst, block_size=1024, subtype=subtype)
    write_audio(ref, cascade.apply(x), FS, subtype=subtype)
    assert info["subtype"] == subtype and info["format"] == sf.info(str(ref)).format
    y, y_ref = read_audio(dst)[0], read_audio(ref)[0]
    np.testing.assert_array_equal(y, y_ref)
    if not name.endswith(".flac"):
        assert dst.read_bytes() == ref.read_bytes()
    quantum = {"PCM_16": 2.0**-15, "PCM_24": 2.0**-23, "FLOAT": 1e-7}[subtype]
    np.testing.assert_allclose(y, cascade.apply(x), rtol=0, atol=quantum)


def test_apply_file_anticausal_placed_for_wav_copied_for_flac(tmp_path, rng, monkeypatch):
    calls = []
    real = streaming._Scratch.read_forward
    monkeypatch.setattr(streaming._Scratch, "read_forward", lambda self: calls.append(1) or real(self))
    src = tmp_path / "in.wav"
    write_audio(src, noise(rng, 1, 3000), FS, subtype="PCM_24")
    apply_file(anticausal_cascade(), src, tmp_path / "out.wav", block_size=1000)
    assert calls == []  # WAV: no third pass
    apply_file(anticausal_cascade(), src, tmp_path / "out.flac", block_size=1000)
    assert len(calls) == 4  # FLAC: the third pass read 3 blocks, then the end
    assert streaming.writes_anywhere("WAV", "PCM_24") and not streaming.writes_anywhere("FLAC", "PCM_24")


def test_apply_file_anticausal_scratch_next_to_output(tmp_path, rng, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    src, dst = tmp_path / "a" / "in.wav", tmp_path / "b" / "out.wav"
    write_audio(src, noise(rng, 2, 3000), FS)
    real, made = streaming.tempfile.TemporaryFile, []

    def recording(*args, **kwargs):
        made.append(kwargs["dir"])
        return real(*args, **kwargs)

    monkeypatch.setattr(streaming.tempfile, "TemporaryFile", recording)
    apply_file(anticausal_cascade(), src, dst, block_size=1000)
    assert made == [str(tmp_path / "b")]
    assert listing(tmp_path / "a") == ["in.wav"] and listing(tmp_path / "b") == ["out.wav"]


def test_apply_file_anticausal_refuses_without_scratch_space(tmp_path, rng, monkeypatch):
    src = tmp_path / "in.wav"
    write_audio(src, noise(rng, 2, 3000), FS)
    usage = streaming.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(streaming.shutil, "disk_usage", lambda path: usage._replace(free=47_000))
    with pytest.raises(OutputError, match=r"out\.wav'.*anticausal sections need a 0 MB scratch file .* 0 MB free"):
        apply_file(anticausal_cascade(), src, tmp_path / "out.wav")  # needs 48 000 bytes
    assert listing(tmp_path) == ["in.wav"]
    apply_file(AllpassCascade([Allpass1(0.5)], fs=FS), src, tmp_path / "out.wav")  # causal: no scratch file


def _fail_on_call(monkeypatch, owner, name, after, error):
    """Make ``owner.name`` raise `error` from its (after + 1)-th call on; returns the list of calls."""
    real, calls = getattr(owner, name), []

    def failing(*args, **kwargs):
        calls.append(args)
        if len(calls) > after:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)
    return calls


@pytest.mark.parametrize(
    "way, where, error, raised",
    [
        ("placed", "read input", RuntimeError("simulated read failure"), AudioError),
        ("placed", "scratch write", OSError(28, "No space left on device"), OutputError),
        ("copied", "scratch write", OSError(28, "No space left on device"), OutputError),
        ("placed", "scratch read", OSError(5, "Input/output error"), OutputError),
        ("copied", "scratch read", OSError(5, "Input/output error"), OutputError),  # in pass 3
        ("placed", "output write", RuntimeError("simulated write failure"), RuntimeError),
        ("copied", "output write", RuntimeError("simulated write failure"), RuntimeError),
    ],
)
def test_apply_file_anticausal_failure_leaves_nothing(tmp_path, rng, monkeypatch, two_ways, way, where, error,
                                                       raised):
    two_ways(way)
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    write_audio(src, noise(rng, 2, 5000), FS)
    dst.write_bytes(b"old output")
    owner, name, after = {
        "read input": (sf.SoundFile, "read", 2),
        "scratch write": (streaming, "_write_at", 3 if way == "placed" else 7),  # 5 blocks in pass 1, then pass 2
        "scratch read": (streaming, "_read_at", 3 if way == "placed" else 8),  # pass 2 reads 5 blocks + the end
        "output write": (sf.SoundFile, "write", 2),
    }[where]
    calls = _fail_on_call(monkeypatch, owner, name, after, error)
    fds = open_fds()
    with pytest.raises(raised, match=str(error.args[-1])):
        apply_file(anticausal_cascade(), src, dst, block_size=1000)
    assert len(calls) == after + 1
    assert listing(tmp_path) == ["in.wav", "out.wav"] and dst.read_bytes() == b"old output"
    assert io_threads() == [] and open_fds() == fds


@pytest.mark.parametrize("way, stop_at", [("placed", 1000), ("placed", 6000), ("copied", 1000), ("copied", 6000),
                                          ("copied", 12000)])  # 5000 frames: in pass 1, 2, 3
def test_apply_file_anticausal_interrupted(tmp_path, rng, two_ways, way, stop_at):
    two_ways(way)
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    write_audio(src, noise(rng, 1, 5000), FS)
    seen = []

    def stop(done, total):
        seen.append(done)
        if done >= stop_at:
            raise KeyboardInterrupt

    fds = open_fds()
    with pytest.raises(KeyboardInterrupt):
        apply_file(anticausal_cascade(), src, dst, block_size=1000, progress=stop)
    assert seen[-1] == stop_at
    assert listing(tmp_path) == ["in.wav"] and io_threads() == [] and open_fds() == fds


def test_apply_file_anticausal_non_finite_and_short_input(tmp_path, rng, monkeypatch):
    x = noise(rng, 1, 3000)
    x[2500] = np.nan
    sf.write(tmp_path / "nan.wav", x, FS, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"NaN or Inf samples \(in frames 2000-2999\)"):
        apply_file(anticausal_cascade(), tmp_path / "nan.wav", tmp_path / "out.wav", block_size=1000)
    write_audio(tmp_path / "in.wav", noise(rng, 1, 5000), FS)
    monkeypatch.setattr(sf.SoundFile, "frames", property(lambda self: 5010))
    with pytest.raises(AudioError, match=r"in\.wav'.*5010 frames announced, 5000 read"):
        apply_file(anticausal_cascade(), tmp_path / "in.wav", tmp_path / "out.wav", block_size=1000)
    monkeypatch.undo()
    real_read, calls = sf.SoundFile.read, []

    def short_second_read(self, frames, **kwargs):  # the scratch file's block grid needs full blocks
        calls.append(frames)
        return real_read(self, frames // 2 if len(calls) == 2 else frames, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", short_second_read)
    with pytest.raises(AudioError, match=r"in\.wav': 500 frames read where 1000 were expected \(5000 frames announced"):
        apply_file(anticausal_cascade(), tmp_path / "in.wav", tmp_path / "out.wav", block_size=1000)
    assert listing(tmp_path) == ["in.wav", "nan.wav"] and io_threads() == []


def test_apply_file_anticausal_refuses_to_overwrite_input(tmp_path, rng):
    src = tmp_path / "in.wav"
    write_audio(src, noise(rng, 1, 1000), FS)
    before = src.read_bytes()
    with pytest.raises(OutputError, match="it is the input file"):
        apply_file(anticausal_cascade(), src, src)
    assert src.read_bytes() == before and listing(tmp_path) == ["in.wav"]


@pytest.mark.parametrize("way", ["placed", "copied"])
def test_apply_file_anticausal_clip_warning(tmp_path, two_ways, way):
    two_ways(way)
    x = 0.9 * np.sign(np.sin(2 * np.pi * 200 * np.arange(4000) / FS))
    write_audio(tmp_path / "in.wav", x, FS, subtype="PCM_16")
    cascade = anticausal_cascade()
    expected = cascade.apply(read_audio(tmp_path / "in.wav")[0])
    assert np.max(np.abs(expected)) > 1
    with pytest.warns(UserWarning, match=f"clips: peak .x. = {np.max(np.abs(expected)):.4g} > 1"):
        apply_file(cascade, tmp_path / "in.wav", tmp_path / "out.wav", block_size=1000)
    y = read_audio(tmp_path / "out.wav")[0]
    np.testing.assert_allclose(y, np.clip(expected, -1, 1), rtol=0, atol=2.0**-15)


def test_apply_file_bad_arguments(tmp_path, rng, cascade):
    src = tmp_path / "in.wav"
    write_audio(src, noise(rng, 1, 100), FS)
    with pytest.raises(TypeError, match="AllpassCascade"):
        apply_file(cascade.sos, src, tmp_path / "o.wav")
    with pytest.raises(ParameterError, match="block_size"):
        apply_file(cascade, src, tmp_path / "o.wav", block_size=0)
    with pytest.raises(AudioError, match="does not exist"):
        apply_file(cascade, tmp_path / "missing.wav", tmp_path / "o.wav")
    assert listing(tmp_path) == ["in.wav"]


