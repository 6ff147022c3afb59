"""Tests of apfdsp.pretrained and the shipped model files."""

import configparser
import fnmatch
import os

import numpy as np
import pytest
from scipy import signal

from apfdsp import Allpass1, Allpass2, AllpassCascade, Delay, Polarity, pretrained
from apfdsp.demo import demo_dry
from apfdsp.estimate import estimate
from apfdsp.io import apply_file, load_model, read_audio, write_audio
from apfdsp.metrics import null_depth_db

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = [m["name"] for m in pretrained.list_models()]
PEDALBOARD_NAMES = [n for n in NAMES if n != "surveyor-192k"]

# The notebook's printed coefficients of the pretrained "surveyor" model (fs = 192 kHz).
SURVEYOR_FS = 192000.0
SURVEYOR_C = np.array([0.998039, 0.002789, 0.998465])
SURVEYOR_D = np.array([-1.653425, 0.101380, -1.695402])
SURVEYOR_A = np.array([-0.864498, -0.307401, -0.865795])
SURVEYOR_FIRST = (-0.972990, -0.964903)


def surveyor_from_numbers(warp_sign=1):
    radius = np.sqrt(SURVEYOR_C)
    fc_hz = SURVEYOR_FS / (2 * np.pi) * np.arccos(-SURVEYOR_D / (2 * radius))
    cells = [Allpass2(float(r), float(f), warp_sign * float(a)) for r, f, a in zip(radius, fc_hz, SURVEYOR_A)]
    coef, warp = SURVEYOR_FIRST
    return AllpassCascade(cells + [Allpass1(coef, warp_sign * warp)], fs=SURVEYOR_FS)


def test_expected_models_are_listed():
    assert NAMES == sorted(NAMES)
    assert set(NAMES) == {"surveyor-192k", "ladder-lpf12-48k", "ladder-hpf12-48k", "highpass-48k",
                          "lowpass-48k", "distortion-lowpass-48k", "peak-48k"}
    for model in pretrained.list_models():
        assert set(model) == {"name", "description", "fs"}
        assert model["description"] and "\n" not in model["description"]


# -- surveyor ---------------------------------------------------------------------------------------------
def test_surveyor_is_the_printed_coefficients():
    shipped = pretrained.load("surveyor-192k")
    f = np.geomspace(20.0, SURVEYOR_FS / 2, 512)
    np.testing.assert_allclose(shipped.phase(f), surveyor_from_numbers().phase(f), atol=1e-9)
    den = [cell.den(SURVEYOR_FS) for cell in shipped if isinstance(cell, Allpass2)]
    np.testing.assert_allclose([d for d, _ in den], SURVEYOR_D, rtol=1e-12)  # d = -2 R cos(2 pi fc / fs)
    np.testing.assert_allclose([c for _, c in den], SURVEYOR_C, rtol=1e-12)  # c = R^2


def test_surveyor_phase_matches_the_paper():
    cascade = pretrained.load("surveyor-192k")
    # About -pi between 500 Hz and 1 kHz: the first-order section has turned by pi, the two
    # resonances near 1.3 kHz have not started (the curve drifts by 0.1 rad over the octave).
    band = np.geomspace(500.0, 1000.0, 16)
    np.testing.assert_allclose(cascade.phase(band), -np.pi, atol=0.12)
    assert abs(cascade.phase(500.0)[0] + 3.14) < 0.01
    # About -15.9 rad from 2 kHz: both resonances (-4 pi) and the first-order section (-pi) done,
    # plus the lag of section 2 (R = 0.053: nearly a warped two-sample delay) ...
    assert abs(cascade.phase(2000.0)[0] + 15.9) < 0.01
    # ... which keeps growing with frequency; without it the phase stays at -5 pi.
    high = np.geomspace(2000.0, 40000.0, 32)
    rest = cascade.phase(high) - AllpassCascade([cascade[1]], fs=SURVEYOR_FS).phase(high)
    np.testing.assert_allclose(rest, -5 * np.pi, atol=0.03)


def test_surveyor_group_delay_matches_the_paper_and_scipy():
    cascade = pretrained.load("surveyor-192k")
    gd = cascade.group_delay([20.0])[0]
    assert abs(gd - 1469) < 1.0
    # Independent reference: scipy's group delay of each SOS row, summed.
    rows = [signal.group_delay((row[:3], row[3:]), w=[20.0], fs=SURVEYOR_FS)[1][0] for row in cascade.sos]
    assert abs(sum(rows) - gd) < 1e-6 * gd


def test_surveyor_warp_sign_convention():
    # apfdsp's warping allpass is (a + z^-1) / (1 + a z^-1), as in the original code; with the opposite
    # sign of a the printed numbers give a completely different filter, far from the paper's checks.
    flipped = surveyor_from_numbers(warp_sign=-1)
    assert flipped.group_delay([20.0])[0] < 10
    assert abs(flipped.phase(2000.0)[0] + 15.9) > 10


# -- every model ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_model_loads_is_stable_and_streamable(name):
    cascade, metadata = pretrained.load_with_metadata(name)
    listed = {m["name"]: m for m in pretrained.list_models()}[name]
    expected_fs = 192000.0 if name.endswith("-192k") else 48000.0
    assert cascade.fs == listed["fs"] == expected_fs
    assert metadata["name"] == name and metadata["description"] == listed["description"]
    assert pretrained.load(name) == cascade
    assert load_model(pretrained.load_path(name))[0] == cascade
    assert np.max(np.abs(cascade.poles())) < 1  # stable
    assert cascade.integer_delay >= 0  # `apfdsp apply` can stream it
    f = np.geomspace(20.0, 0.45 * cascade.fs, 64)
    np.testing.assert_allclose(np.abs(signal.sosfreqz(cascade.sos, worN=f, fs=cascade.fs)[1]), 1.0, atol=1e-9)


def test_streaming_a_pretrained_model_through_a_file(tmp_path):
    cascade = pretrained.load("highpass-48k")
    x = demo_dry(fs=48000, duration_s=0.5, seed=3)
    src, dst = tmp_path / "dry.wav", tmp_path / "aligned.wav"
    write_audio(src, x, 48000, subtype="DOUBLE")
    apply_file(cascade, src, dst, block_size=4096)
    np.testing.assert_allclose(read_audio(dst)[0], cascade(x), atol=1e-12)


# -- the pedalboard models ---------------------------------------------------------------------------------
def render(chain, x, *, fs):
    """`x` through the effect chain described by a model's metadata."""
    pedalboard = pytest.importorskip("pedalboard")
    plugins = []
    for step in chain:
        params = dict(step["params"])
        if step["plugin"] == "LadderFilter":
            params["mode"] = getattr(pedalboard.LadderFilter.Mode, params["mode"])
        plugins.append(getattr(pedalboard, step["plugin"])(**params))
    return pedalboard.Pedalboard(plugins)(x.astype(np.float32), fs, reset=True).astype(np.float64)


@pytest.mark.parametrize("name", PEDALBOARD_NAMES)
def test_pedalboard_model_beats_delay_and_polarity_on_new_audio(name):
    cascade, metadata = pretrained.load_with_metadata(name)
    fs = cascade.fs
    dry = demo_dry(fs=fs, duration_s=1.5, seed=2)  # neither the training (0) nor the held-out (1) seed
    wet = render(metadata["effect"]["chain"], dry, fs=fs)
    est = estimate(dry, wet, fs=fs)
    baseline = AllpassCascade([Delay(est.delay_samples)] + ([Polarity(-1)] if est.polarity < 0 else []), fs=fs)
    null_baseline = null_depth_db(baseline(dry), wet, fs=fs)
    null_model = null_depth_db(cascade(dry), wet, fs=fs)
    assert null_model < null_baseline - 1.0, (null_model, null_baseline)  # at least 1 dB deeper


@pytest.mark.parametrize("name", PEDALBOARD_NAMES)
def test_pedalboard_model_metadata(name):
    metadata = pretrained.load_with_metadata(name)[1]
    assert metadata["effect"]["pedalboard_version"] and metadata["effect"]["chain"]
    assert metadata["excitation"]["training"] != metadata["excitation"]["held_out"]
    for part in ("training", "held_out"):
        null_db = metadata["null_db"][part]
        assert null_db["after"] < null_db["delay_polarity"] and null_db["after"] < null_db["before"]
    assert metadata["command"] == "python scripts/make_pretrained.py"


# -- errors and packaging ----------------------------------------------------------------------------------
@pytest.mark.parametrize("function", [pretrained.load, pretrained.load_with_metadata, pretrained.load_path])
def test_unknown_name_lists_the_models(function):
    with pytest.raises(KeyError, match="unknown pretrained model 'nope'") as info:
        function("nope")
    assert all(name in str(info.value) for name in NAMES)
    with pytest.raises(KeyError):
        function("../pretrained/surveyor-192k")  # names are looked up, never joined into a path
    with pytest.raises(TypeError, match="name must be a str"):
        function(None)


def test_model_files_are_package_data():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    patterns = config["options.package_data"]["apfdsp"].split()
    for name in NAMES:
        assert any(fnmatch.fnmatch(f"pretrained/{name}.json", pattern) for pattern in patterns)
