"""Tests for apfdsp.audiofile: reading and writing audio, atomic outputs, output-path checks."""

import os
import warnings

import numpy as np
import pytest
import soundfile as sf

from apfdsp.audiofile import read_audio, write_audio
from apfdsp.exceptions import AudioError, OutputError, ParameterError
from io_helpers import FS, listing, noise

pytestmark = pytest.mark.filterwarnings("error::UserWarning")  # no clipping warning unless a test expects it


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


