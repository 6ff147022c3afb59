"""Tests for apfdsp.io: audio read/write, streaming apply_file, model files."""

import contextlib
import json
import os
import threading
import warnings

import numpy as np
import pytest
import soundfile as sf

import apfdsp.io as apio
from apfdsp.cascade import Allpass1, Allpass2, AllpassCascade, Delay, Polarity
from apfdsp.exceptions import AudioError, ModelFileError, OutputError, ParameterError
from apfdsp.io import apply_file, load_model, read_audio, save_model, write_audio

FS = 48000
pytestmark = pytest.mark.filterwarnings("error::UserWarning")  # no clipping warning unless a test expects it


@pytest.fixture
def cascade():
    return AllpassCascade(
        [Allpass2(0.9, 1000.0, 0.3), Allpass1(-0.5), Delay(5), Delay(2.3), Polarity(-1)], fs=FS
    )


def noise(rng, channels, n, scale=0.15):
    x = scale * rng.standard_normal((channels, n))
    return x[0] if channels == 1 else x


def listing(directory):
    return sorted(os.listdir(directory))


def io_threads():
    """apply_file's I/O threads still alive (there must be none once it has returned or raised)."""
    return [t for t in threading.enumerate() if t.name.startswith("apfdsp-io")]


# -- read / write -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, subtype, atol",
    [
        ("a.wav", "PCM_16", 2.0**-15),
        ("a.wav", "PCM_24", 2.0**-23),
        ("a.wav", "FLOAT", 1e-7),
        ("a.wav", "DOUBLE", 0.0),
        ("a.flac", "PCM_16", 2.0**-15),
        ("a.flac", "PCM_24", 2.0**-23),
    ],
)
@pytest.mark.parametrize("channels", [1, 2])
def test_round_trip(tmp_path, rng, name, subtype, atol, channels):
    x = noise(rng, channels, 1001)
    path = tmp_path / name
    write_audio(path, x, 44100, subtype=subtype)
    y, fs, info = read_audio(path)
    assert fs == 44100
    assert y.dtype == np.float64 and y.shape == x.shape
    assert info == {
        "subtype": subtype,
        "format": "FLAC" if name.endswith("flac") else "WAV",
        "channels": channels,
        "samplerate": 44100,
        "frames": 1001,
    }
    np.testing.assert_allclose(y, x, rtol=0, atol=atol)
    if atol:  # quantisation really happened, so the tolerance is meaningful
        assert not np.array_equal(y, x)
    if channels == 2:
        assert not np.allclose(y[0], y[1])
    assert listing(tmp_path) == [name]


def test_read_always_2d_and_default_subtype(tmp_path, rng):
    x = noise(rng, 1, 100)
    write_audio(tmp_path / "m.wav", x, FS)
    y, _, info = read_audio(tmp_path / "m.wav", always_2d=True)
    assert y.shape == (1, 100) and info["subtype"] == "PCM_16"


def test_read_matches_soundfile_layout(tmp_path, rng):
    data = rng.uniform(-0.5, 0.5, (300, 3))  # soundfile layout: (frames, channels)
    sf.write(tmp_path / "s.wav", data, FS, subtype="DOUBLE")
    y, _, _ = read_audio(tmp_path / "s.wav")
    assert y.shape == (3, 300) and y.flags.c_contiguous
    np.testing.assert_array_equal(y, data.T)


def test_read_missing(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav' does not exist"):
        read_audio(tmp_path / "nope.wav")


def test_read_corrupt(tmp_path, rng):
    path = tmp_path / "bad.wav"
    path.write_bytes(b"\x00junk" + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match=r"cannot read audio file .*bad\.wav") as info:
        read_audio(path)
    assert "\n" not in str(info.value)


def test_read_empty(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0), FS)
    with pytest.raises(AudioError, match=r"empty\.wav' is empty"):
        read_audio(tmp_path / "empty.wav")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_read_non_finite(tmp_path, rng, bad):
    x = noise(rng, 1, 100)
    x[50] = bad
    sf.write(tmp_path / "nan.wav", x, FS, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or Inf"):
        read_audio(tmp_path / "nan.wav")


def test_read_silent(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros(100), FS)
    with pytest.raises(AudioError, match="silent"):
        read_audio(tmp_path / "zero.wav")
    y, _, _ = read_audio(tmp_path / "zero.wav", allow_silent=True)
    assert y.shape == (100,) and not np.any(y)


def test_write_refuses_non_finite(tmp_path, rng):
    x = noise(rng, 2, 100)
    x[1, 3] = np.nan
    with pytest.raises(AudioError, match="NaN or Inf"):
        write_audio(tmp_path / "o.wav", x, FS)
    assert listing(tmp_path) == []


def test_write_refuses_time_first(tmp_path, rng):
    with pytest.raises(ParameterError, match=r"x\.T"):
        write_audio(tmp_path / "o.wav", noise(rng, 2, 100).T, FS)


def test_write_clip_warning(tmp_path):
    x = np.array([0.0, 1.5, -0.5, 0.25])
    with pytest.warns(UserWarning, match="clips"):
        write_audio(tmp_path / "c.wav", x, FS, subtype="PCM_16")
    y, _, _ = read_audio(tmp_path / "c.wav")
    assert y[1] == pytest.approx(1.0, abs=2.0**-15)  # clipped, not scaled
    assert y[2] == pytest.approx(-0.5, abs=2.0**-15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_audio(tmp_path / "f.wav", x, FS, subtype="FLOAT")
    y, _, _ = read_audio(tmp_path / "f.wav")
    assert y[1] == 1.5


def test_write_bad_extension_and_subtype(tmp_path, rng):
    x = noise(rng, 1, 100)
    with pytest.raises(OutputError, match="unknown audio file extension '.xyz'"):
        write_audio(tmp_path / "o.xyz", x, FS)
    with pytest.raises(OutputError, match="subtype 'FLOAT' is not available for FLAC"):
        write_audio(tmp_path / "o.flac", x, FS, subtype="FLOAT")
    write_audio(tmp_path / "o.xyz", x, FS, format="WAV", subtype="pcm_24")
    assert read_audio(tmp_path / "o.xyz")[2]["subtype"] == "PCM_24"


def test_write_missing_directory(tmp_path, rng):
    with pytest.raises(OutputError, match="does not exist"):
        write_audio(tmp_path / "no" / "o.wav", noise(rng, 1, 10), FS)


def test_write_unwritable_directory(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(OutputError, match=r"is not writable"):
        write_audio(tmp_path / "o.wav", noise(rng, 1, 10), FS)
    assert listing(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere")
def test_write_read_only_directory(tmp_path, rng):
    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            write_audio(directory / "o.wav", noise(rng, 1, 10), FS)
    finally:
        directory.chmod(0o700)


def test_write_refuses_to_overwrite_input(tmp_path, rng):
    src = tmp_path / "in.wav"
    write_audio(src, noise(rng, 2, 500), FS)
    before = src.read_bytes()
    (tmp_path / "link.wav").symlink_to(src)
    (tmp_path / "sub").mkdir()
    for out in (src, str(src), tmp_path / "link.wav", tmp_path / "sub" / ".." / "in.wav"):
        with pytest.raises(OutputError, match="it is the input file"):
            write_audio(out, noise(rng, 2, 500), FS, inputs=[src])
    with pytest.raises(OutputError, match="it is the input file"):
        write_audio(src, noise(rng, 2, 500), FS, inputs=str(tmp_path / "link.wav"))
    assert src.read_bytes() == before
    assert listing(tmp_path) == ["in.wav", "link.wav", "sub"]


def test_write_is_atomic(tmp_path, rng, monkeypatch):
    path = tmp_path / "o.wav"
    write_audio(path, noise(rng, 1, 100), FS)
    before = path.read_bytes()

    def fail(self, data):
        raise OSError("No space left on device")

    monkeypatch.setattr(sf.SoundFile, "write", fail)
    with pytest.raises(OutputError, match="No space left on device"):
        write_audio(path, noise(rng, 1, 200), FS)
    with pytest.raises(OutputError):
        write_audio(tmp_path / "new.wav", noise(rng, 1, 200), FS)
    assert path.read_bytes() == before  # the old file survives untouched
    assert listing(tmp_path) == ["o.wav"]  # no partial output, no temporary file


def test_write_keeps_permissions(tmp_path, rng):
    path = tmp_path / "o.wav"
    write_audio(path, noise(rng, 1, 100), FS)
    path.chmod(0o640)
    write_audio(path, noise(rng, 1, 100), FS)
    assert path.stat().st_mode & 0o777 == 0o640


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
        monkeypatch.setattr(apio, "_writes_anywhere", lambda format, subtype: way == "placed")
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
        monkeypatch.setattr(apio, "_writes_anywhere", lambda format, subtype: False)
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
    real = apio._Scratch.read_forward
    monkeypatch.setattr(apio._Scratch, "read_forward", lambda self: calls.append(1) or real(self))
    src = tmp_path / "in.wav"
    write_audio(src, noise(rng, 1, 3000), FS, subtype="PCM_24")
    apply_file(anticausal_cascade(), src, tmp_path / "out.wav", block_size=1000)
    assert calls == []  # WAV: no third pass
    apply_file(anticausal_cascade(), src, tmp_path / "out.flac", block_size=1000)
    assert len(calls) == 4  # FLAC: the third pass read 3 blocks, then the end
    assert apio._writes_anywhere("WAV", "PCM_24") and not apio._writes_anywhere("FLAC", "PCM_24")


def test_apply_file_anticausal_scratch_next_to_output(tmp_path, rng, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    src, dst = tmp_path / "a" / "in.wav", tmp_path / "b" / "out.wav"
    write_audio(src, noise(rng, 2, 3000), FS)
    real, made = apio.tempfile.TemporaryFile, []

    def recording(*args, **kwargs):
        made.append(kwargs["dir"])
        return real(*args, **kwargs)

    monkeypatch.setattr(apio.tempfile, "TemporaryFile", recording)
    apply_file(anticausal_cascade(), src, dst, block_size=1000)
    assert made == [str(tmp_path / "b")]
    assert listing(tmp_path / "a") == ["in.wav"] and listing(tmp_path / "b") == ["out.wav"]


def test_apply_file_anticausal_refuses_without_scratch_space(tmp_path, rng, monkeypatch):
    src = tmp_path / "in.wav"
    write_audio(src, noise(rng, 2, 3000), FS)
    usage = apio.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(apio.shutil, "disk_usage", lambda path: usage._replace(free=47_000))
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
        "scratch write": (apio, "_write_at", 3 if way == "placed" else 7),  # 5 blocks in pass 1, then pass 2
        "scratch read": (apio, "_read_at", 3 if way == "placed" else 8),  # pass 2 reads 5 blocks + the end
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


# -- model files ---------------------------------------------------------------------------------------------
def test_model_round_trip_bit_exact(tmp_path, rng):
    cells = [
        Allpass2(rng.uniform(0, 0.99), rng.uniform(20, 20000), rng.uniform(-0.9, 0.9), 2),
        Allpass2(0.1 + 0.2, 1000.0 / 3),
        Allpass1(rng.uniform(-0.99, 0.99), rng.uniform(-0.9, 0.9)),
        Delay(rng.uniform(1, 40)),
        Delay(7),
        Polarity(-1),
    ]
    cascade = AllpassCascade(cells, fs=44100.0)
    metadata = {"loss": np.float64(1 / 3), "n_iter": np.int64(500), "history": np.linspace(1, 0, 4),
                "source": ("dry.wav", "wet.wav"), "converged": np.bool_(True), "note": None}
    path = tmp_path / "model.json"
    save_model(path, cascade, metadata=metadata)
    loaded, meta = load_model(path)
    assert loaded == cascade
    assert np.array_equal(loaded.sos, cascade.sos)
    doc = json.loads(path.read_text())
    assert np.array_equal(np.array(doc["sos"]), cascade.sos)  # the stored SOS is bit-exact too
    assert doc["format"] == "apfdsp-model" and doc["format_version"] == 1
    assert doc["integer_delay"] == cascade.integer_delay and doc["polarity"] == -1
    assert meta == {"loss": 1 / 3, "n_iter": 500, "history": np.linspace(1, 0, 4).tolist(),
                    "source": ["dry.wav", "wet.wav"], "converged": True, "note": None}
    assert type(meta["n_iter"]) is int
    assert listing(tmp_path) == ["model.json"]
    assert path.read_text().startswith('{\n  "format"')  # indent=2


def test_model_round_trip_anticausal(tmp_path, rng):
    cells = [Allpass2(0.9, 1000.0, 0.3),
             Allpass2(rng.uniform(0, 0.99), rng.uniform(20, 20000), 0.2, 2, anticausal=True),
             Allpass1(1 / 3, anticausal=True), Allpass1(-0.5), Delay(-7.3), Polarity(-1)]
    cascade = AllpassCascade(cells, fs=FS)
    path = tmp_path / "model.json"
    save_model(path, cascade, metadata={"how": "test"})
    loaded, meta = load_model(path)
    assert loaded == cascade and not loaded.causal and meta == {"how": "test"}
    assert np.array_equal(loaded.sos, cascade.sos) and np.array_equal(loaded.sos_anticausal, cascade.sos_anticausal)
    doc = json.loads(path.read_text())
    assert doc["format_version"] == 2  # a version-1 reader (sos + integer_delay only) refuses it
    assert list(doc)[:7] == ["format", "format_version", "apfdsp_version", "fs", "cascade", "sos", "sos_anticausal"]
    assert np.array_equal(np.array(doc["sos_anticausal"]), cascade.sos_anticausal)  # bit-exact
    assert [cell.get("anticausal", False) for cell in doc["cascade"]["cells"]] == [False, True, True, False, False,
                                                                                     False]
    # what the Notes of save_model tell readers in other languages to do
    from scipy import signal
    x = rng.standard_normal(3000)
    y = signal.sosfilt(doc["sos"], x)
    y = signal.sosfilt(doc["sos_anticausal"], y[::-1])[::-1]
    y = np.concatenate([y[-doc["integer_delay"]:], np.zeros(-doc["integer_delay"])])
    np.testing.assert_array_equal(y, cascade.apply(x))


def test_causal_model_files_unchanged(tmp_path, monkeypatch):
    """Causal cascades are saved as before anticausal sections existed: version 1, no new key, and the
    shipped pretrained files are re-created byte for byte."""
    import glob

    paths = sorted(glob.glob(os.path.join(os.path.dirname(apio.__file__), "pretrained", "*.json")))
    assert len(paths) >= 7
    for path in paths:
        cascade, metadata = load_model(path)
        doc = json.loads(open(path, encoding="utf-8").read())
        assert doc["format_version"] == 1 and "sos_anticausal" not in doc and cascade.causal
        monkeypatch.setattr(apio, "__version__", doc["apfdsp_version"])
        save_model(tmp_path / "again.json", cascade, metadata=metadata)
        assert (tmp_path / "again.json").read_bytes() == open(path, "rb").read(), path


def test_save_model_refuses_unsafe_metadata(tmp_path, cascade):
    with pytest.raises(ParameterError, match=r"metadata\['loss'\].*NaN"):
        save_model(tmp_path / "m.json", cascade, metadata={"loss": float("nan")})
    with pytest.raises(TypeError, match=r"metadata\['x'\] has type complex"):
        save_model(tmp_path / "m.json", cascade, metadata={"x": 1j})
    with pytest.raises(TypeError, match="keys must be strings"):
        save_model(tmp_path / "m.json", cascade, metadata={1: 2})
    assert listing(tmp_path) == []


@pytest.fixture
def model_doc(tmp_path):
    """A valid saved model: returns (path, doc) with doc the parsed JSON to edit."""
    cascade = AllpassCascade([Allpass2(0.9, 1000.0, 0.3), Allpass1(-0.5), Delay(2.3), Polarity(-1)], fs=FS)
    path = tmp_path / "model.json"
    save_model(path, cascade, metadata={"how": "test"})
    return path, json.loads(path.read_text())


def _edit(path, doc, change):
    change(doc)
    path.write_text(json.dumps(doc))


def _del(key):
    return lambda d: d.pop(key)


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def _set_cell(field, value):
    return lambda d: d["cascade"]["cells"][0].__setitem__(field, value)


def _nudge_sos(d):
    d["sos"][0][1] *= 1 + 1e-6


@pytest.mark.parametrize(
    "change, match",
    [
        (_set("format", "something-else"), "not an apfdsp model file"),
        (_del("format"), "not an apfdsp model file"),
        (_set("format_version", 3), "format_version 3, newer than .* upgrade apfdsp"),
        (_set("format_version", "1"), "format_version must be a positive integer"),
        (_del("sos"), "missing the key.*'sos'"),
        (_del("cascade"), "missing the key.*'cascade'"),
        (_set_cell("pole_radius", 1.5), r"model\.json'.*bad cascade: .*pole_radius"),
        (_set_cell("type", "allpass9"), "bad cascade: cell 0: 'type'"),
        (_set_cell("colour", "red"), r"bad cascade: cell 0: unknown field"),
        (lambda d: d["cascade"].__setitem__("cells", 5), "bad cascade"),
        (lambda d: d["cascade"].__setitem__("fs", -1), "bad cascade: fs"),
        (_nudge_sos, "corrupt or was edited: stored sos disagrees"),
        (lambda d: d["sos"].pop(), r"stored sos has shape \(2, 6\)"),
        (_set("sos", [[1, 2], [3]]), "'sos' must be a list of rows"),
        (_set("integer_delay", 3), "stored integer_delay 3 disagrees"),
        (_set("polarity", 1), "stored polarity 1 disagrees"),
        (_set("fs", 44100.0), "stored fs 44100.0 disagrees"),
        (_set("metadata", [1, 2]), "'metadata' must be an object"),
    ],
)
def test_load_model_errors(model_doc, change, match):
    path, doc = model_doc
    _edit(path, doc, change)
    with pytest.raises(ModelFileError, match=match):
        load_model(path)


@pytest.fixture
def anticausal_model_doc(tmp_path):
    cascade = AllpassCascade([Allpass2(0.9, 1000.0, 0.3), Allpass1(-0.5, anticausal=True),
                              Allpass2(0.8, 300.0, anticausal=True), Delay(-2.3)], fs=FS)
    path = tmp_path / "model.json"
    save_model(path, cascade)
    return path, json.loads(path.read_text())


def _nudge(key):
    def change(d):
        d[key][0][4] *= 1 + 1e-6
    return change


@pytest.mark.parametrize(
    "change, match",
    [
        (_del("sos_anticausal"), r"model\.json' is corrupt or was edited: its cells include anticausal sections "
                                 r"\(run backwards in time, 2 SOS row\(s\)\) but it lacks the key 'sos_anticausal'"),
        (_nudge("sos_anticausal"), r"stored sos_anticausal disagrees with the cells \(max difference"),
        (lambda d: d["sos_anticausal"].pop(), r"stored sos_anticausal has shape \(1, 6\), the cells give \(2, 6\)"),
        (_set("sos_anticausal", []), r"stored sos_anticausal has shape \(0, 6\), the cells give \(2, 6\)"),
        (_set("sos_anticausal", [[1, 2], [3]]), "'sos_anticausal' must be a list of rows of 6 numbers"),
        (_set("sos_anticausal", "none"), "'sos_anticausal' must be a list of rows of 6 numbers"),
        (_set("sos_anticausal", [[0.5] * 5] * 2), "'sos_anticausal' must be a list of rows of 6 numbers"),
        (lambda d: d["sos_anticausal"][1].__setitem__(0, None), "stored sos_anticausal disagrees"),  # null: NaN
        (lambda d: d["sos_anticausal"][1].__setitem__(3, float("nan")), "stored sos_anticausal disagrees"),
        # the rows of the two parts swapped, or an anticausal flag dropped: the stored rows no longer fit
        (lambda d: d.update(sos=d["sos_anticausal"], sos_anticausal=d["sos"]), "stored sos disagrees"),
        (lambda d: d["cascade"]["cells"][1].pop("anticausal"),
         r"stored sos has shape \(2, 6\), the cells give \(3, 6\)"),
        (lambda d: d["cascade"]["cells"][0].__setitem__("anticausal", True), r"stored sos has shape \(2, 6\), "
                                                                            r"the cells give \(1, 6\)"),
        (_set("format_version", 3), "format_version 3, newer"),
    ],
)
def test_load_model_anticausal_errors(anticausal_model_doc, change, match):
    path, doc = anticausal_model_doc
    _edit(path, doc, change)
    with pytest.raises(ModelFileError, match=match):
        load_model(path)


def test_load_model_sos_anticausal_on_a_causal_model(model_doc):
    path, doc = model_doc
    _edit(path, doc, _set("sos_anticausal", []))  # empty: agrees with the cells
    assert load_model(path)[0].causal
    _edit(path, doc, _set("sos_anticausal", [[1.0, 0.5, 0, 1.0, 0.5, 0]]))
    with pytest.raises(ModelFileError, match=r"stored sos_anticausal has shape \(1, 6\), the cells give \(0, 6\)"):
        load_model(path)


def test_load_model_anticausal_flag_added_by_hand(model_doc):
    path, doc = model_doc
    _edit(path, doc, _set_cell("anticausal", True))  # the stored rows are all causal
    with pytest.raises(ModelFileError, match="lacks the key 'sos_anticausal'"):
        load_model(path)
    _edit(path, doc, _set_cell("anticausal", "yes"))
    with pytest.raises(ModelFileError, match="bad cascade: .*anticausal must be True or False"):
        load_model(path)


def test_load_model_accepts_tiny_sos_noise(model_doc):
    path, doc = model_doc
    _edit(path, doc, lambda d: d["sos"][0].__setitem__(1, d["sos"][0][1] * (1 + 1e-12)))
    cascade, meta = load_model(path)
    assert meta == {"how": "test"} and len(cascade) == 4


def test_load_model_missing(tmp_path):
    with pytest.raises(ModelFileError, match=r"nope\.json' does not exist"):
        load_model(tmp_path / "nope.json")


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe\x00garbage"])
def test_load_model_not_json(tmp_path, content):
    (tmp_path / "m.json").write_bytes(content)
    with pytest.raises(ModelFileError, match=r"m\.json' is not JSON"):
        load_model(tmp_path / "m.json")


@pytest.mark.parametrize("content", ["[1, 2]", '"apfdsp-model"', "{}"])
def test_load_model_not_a_model(tmp_path, content):
    (tmp_path / "m.json").write_text(content)
    with pytest.raises(ModelFileError, match="not an apfdsp model file"):
        load_model(tmp_path / "m.json")


def test_load_model_unstable(model_doc, monkeypatch):
    # Cell validation keeps every pole inside the unit circle, so fake an unstable result.
    path, _ = model_doc
    monkeypatch.setattr(AllpassCascade, "poles", lambda self: np.array([0.5, 1.0001 + 0j]))
    with pytest.raises(ModelFileError, match=r"unstable filter \(pole radius 1.0001"):
        load_model(path)


def test_public_names():
    assert set(apio.__all__) >= {"read_audio", "write_audio", "apply_file", "save_model", "load_model"}
    for name in apio.__all__:
        assert hasattr(apio, name)
