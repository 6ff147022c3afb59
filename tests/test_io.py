"""Tests for apfdsp.io: audio read/write, streaming apply_file, model files."""

import dataclasses
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


@pytest.mark.parametrize("delay", [999.0, 1000.0, 5000.5, -999.0, -1000.0, -5000.0])
def test_apply_file_shift_as_long_as_the_file(tmp_path, rng, delay):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    write_audio(src, noise(rng, 2, 1000), FS, subtype="DOUBLE")
    x = read_audio(src)[0]
    shifted = AllpassCascade([Allpass1(0.3), Delay(delay)], fs=FS)
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


def test_apply_file_refuses_anticausal_sections(tmp_path, rng):
    if "anticausal" not in {f.name for f in dataclasses.fields(Allpass1)}:
        pytest.skip("this AllpassCascade has no anticausal sections")
    src = tmp_path / "in.wav"
    write_audio(src, noise(rng, 1, 100), FS)
    cascade = AllpassCascade([Allpass1(0.5), Allpass1(-0.3, anticausal=True)], fs=FS)
    with pytest.raises(ParameterError, match="anticausal"):
        apply_file(cascade, src, tmp_path / "o.wav")
    assert listing(tmp_path) == ["in.wav"]


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
        (_set("format_version", 2), "format_version 2, newer than .* upgrade apfdsp"),
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
