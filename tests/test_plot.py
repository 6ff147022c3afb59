"""Tests of apfdsp.plot: the figures carry the expected artists and files are written atomically."""

import os
import subprocess
import sys

import numpy as np
import pytest

from apfdsp import Allpass1, Allpass2, AllpassCascade, Delay, Polarity
from apfdsp.exceptions import OutputError, ParameterError
from apfdsp.metrics import mix_ratio
from apfdsp.plot import (
    _mix_sums,
    _save,
    align_report,
    model_figure,
    plot_group_delay,
    plot_loss_curve,
    plot_mix_loss,
    plot_phase,
    plot_pole_zero,
)

FS = 48000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def cascade():
    return AllpassCascade([Allpass2(0.9, 500.0), Allpass1(0.3, warp=0.5), Delay(12.5), Polarity(-1)], fs=FS)


@pytest.fixture(scope="module")
def aligned_pair():
    from apfdsp.align import align

    dry = np.random.default_rng(440).standard_normal(FS)
    wet = AllpassCascade([Allpass2(0.9, 500.0), Delay(12.0)], fs=FS)(dry)
    return align(dry, wet, fs=FS, n_sections=2), dry, wet


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _tick_labels(ax):
    ax.figure.canvas.draw()
    return [t.get_text() for t in ax.get_xticklabels()]


def _assert_png(path):
    with open(path, "rb") as f:
        head = f.read(8)
    assert head == PNG_SIGNATURE
    assert os.path.getsize(path) > 10_000


def test_import_apfdsp_does_not_import_matplotlib():
    code = "import apfdsp, apfdsp.plot, sys; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_no_pyplot_state(cascade):
    plot_phase(cascade)
    assert "matplotlib.pyplot" not in sys.modules or not sys.modules["matplotlib.pyplot"].get_fignums()


def test_plot_phase_model_only(cascade):
    ax = plot_phase(cascade)
    (line,) = ax.get_lines()
    assert "Hz" in ax.get_xlabel() and "rad" in ax.get_ylabel()
    assert ax.get_xscale() == "log"
    assert ax.get_xlim() == pytest.approx((20.0, FS / 2))
    labels = _tick_labels(ax)
    assert {"100", "1k", "10k"} <= set(labels)
    assert _legend_texts(ax) == ["model"]
    f, y = line.get_data()
    np.testing.assert_allclose(y, cascade.phase(f), rtol=0, atol=1e-12)
    assert ax.get_title()


@pytest.mark.parametrize("complex_target", [False, True])
def test_plot_phase_target_is_unwrapped_relative_to_model(cascade, complex_target):
    freqs = np.geomspace(30.0, 20000.0, 200)
    true = cascade.phase(freqs)
    wrapped = np.angle(np.exp(1j * true))  # a measured phase is wrapped
    error = 0.1 * np.sin(freqs / 1000.0)
    target = np.exp(1j * (wrapped + error)) if complex_target else wrapped + error
    weights = np.linspace(0.0, 2.0, freqs.size)
    ax = plot_phase(cascade, freqs=freqs, target=target, weights=weights)
    (points,) = ax.collections
    np.testing.assert_allclose(points.get_offsets()[:, 1], true + error, atol=1e-9)
    alphas = points.get_facecolors()[:, 3]
    assert alphas[0] < 0.2 and alphas[-1] > 0.9  # opacity follows the weight
    assert _legend_texts(ax) == ["model", "fit weight (right axis)", "measured target (opacity = weight)"]
    twin = [a for a in ax.figure.axes if a is not ax]
    assert len(twin) == 1 and "weight" in twin[0].get_ylabel().lower()


def test_plot_phase_remove_delay():
    ax = plot_phase(AllpassCascade([Delay(12.0)], fs=FS), remove_delay_samples=12)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), 0.0, atol=1e-9)
    assert "12-sample delay removed" in ax.get_ylabel()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(target=np.zeros(10)), "pass freqs"),
        (dict(freqs=np.linspace(100, 1000, 10), target=np.zeros(9)), "shape of freqs"),
        (dict(freqs=np.linspace(100, 1000, 10), weights=-np.ones(10)), "non-negative"),
        (dict(freqs=[100.0, 30000.0]), r"\[0, fs/2\]"),
    ],
)
def test_plot_phase_errors(cascade, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        plot_phase(cascade, **kwargs)


def test_plot_phase_type_error():
    with pytest.raises(TypeError, match="AllpassCascade"):
        plot_phase([Allpass2(0.9, 500.0)])


def test_plot_group_delay_samples_and_ms(cascade):
    ax = plot_group_delay(cascade)
    (line,) = ax.get_lines()
    f, gd = line.get_data()
    np.testing.assert_allclose(gd, cascade.group_delay(f))
    assert "Hz" in ax.get_xlabel() and "samples" in ax.get_ylabel()
    (secondary,) = ax.child_axes
    assert "ms" in secondary.get_ylabel()
    # the ms axis maps samples to milliseconds at fs
    to_ms = secondary._functions[0]
    assert to_ms(48.0) == pytest.approx(1.0)


def test_plot_pole_zero(cascade):
    ax = plot_pole_zero(cascade)
    assert ax.get_aspect() == 1.0
    poles = cascade.poles()
    assert _legend_texts(ax) == ["unit circle", f"poles ({poles.size})", f"zeros ({poles.size})"]
    pole_line = ax.get_lines()[1]
    drawn = np.sort_complex(pole_line.get_xdata() + 1j * pole_line.get_ydata())
    np.testing.assert_allclose(drawn, np.sort_complex(poles), atol=1e-12)
    assert np.all(np.abs(poles) < 1)
    notes = " ".join(t.get_text() for t in ax.texts)
    assert "11-sample shift" in notes and "polarity inversion" in notes
    assert "off the chart" in notes  # the warped first-order zero lies at z = 5


def test_mix_sums_match_metrics(rng):
    x = rng.standard_normal((2, 12000))
    y = np.roll(x[0], 7) + 0.1 * rng.standard_normal(12000)  # mono wet against a stereo dry: pooled
    _, A, B = _mix_sums(x, y, fs=FS, block_frames=5)  # several blocks of frames
    assert (A.sum() + B.sum()) / (2 * A.sum()) == pytest.approx(mix_ratio(x, y, fs=FS), rel=1e-10)


def test_plot_mix_loss(rng):
    dry = rng.standard_normal(FS // 2)
    wet = AllpassCascade([Allpass2(0.9, 500.0), Delay(12.0)], fs=FS)(dry)
    half = AllpassCascade([Delay(12.0)], fs=FS)(dry)
    ax = plot_mix_loss(dry, wet, wet, fs=FS, delay_polarity=half)
    lines = ax.get_lines()
    assert len(lines) == 4  # dry, delay + polarity, aligned, the -3 dB reference
    texts = _legend_texts(ax)
    assert texts[0].startswith("dry as given") and texts[2] == "aligned (0.00 dB)"
    assert texts[1].startswith("delay + polarity only") and texts[3].startswith("random phase")
    assert "Hz" in ax.get_xlabel() and "dB" in ax.get_ylabel()
    np.testing.assert_allclose(lines[2].get_ydata(), 0.0, atol=1e-6)  # aligned == wet: nothing lost
    before = lines[0].get_ydata()
    assert np.nanmin(before) < -10  # the 12-sample latency comb-filters the mix
    assert np.all(np.diff(lines[0].get_xdata()) > 0)


def test_plot_loss_curve():
    history = np.array([1.0, 0.1, 0.0, 0.01])

    class Fit:
        loss_history = history

    for arg in (history, Fit()):
        ax = plot_loss_curve(arg)
        assert ax.get_yscale() == "log" and ax.get_xlabel() == "Iteration"
        y = ax.get_lines()[0].get_ydata()
        assert np.all(y > 0) and y[2] == 0.01  # a zero loss is drawn at the smallest positive one
        assert _legend_texts(ax) == ["loss", "lowest: 0.01 (iteration 2)"]
    with pytest.raises(ParameterError, match="non-empty"):
        plot_loss_curve([])


def test_model_figure_png(tmp_path, cascade):
    freqs = np.geomspace(50, 20000, 64)
    path = tmp_path / "model.png"
    out = model_figure(cascade, path, freqs=freqs, target=cascade.response(freqs), weights=np.ones(64),
                       title="test cascade")
    assert out == str(path)
    _assert_png(path)
    assert os.listdir(tmp_path) == ["model.png"]  # no temporary file left behind


@pytest.mark.parametrize("ext, magic", [("svg", b"<svg"), ("pdf", b"%PDF")])
def test_save_format_follows_extension(tmp_path, ext, magic):
    ax = plot_loss_curve([1.0, 0.5])
    path = tmp_path / f"figure.{ext}"
    path.write_bytes(b"old")  # an existing file is replaced
    assert _save(ax.figure, path) == str(path)
    with open(path, "rb") as f:
        assert magic in f.read(4000)
    assert os.listdir(tmp_path) == [f"figure.{ext}"]


def test_model_figure_bad_paths(tmp_path, cascade):
    with pytest.raises(OutputError, match=r"\.png"):
        model_figure(cascade, tmp_path / "model.jpg")
    with pytest.raises(OutputError, match="does not exist"):
        model_figure(cascade, tmp_path / "missing" / "model.png")
    assert os.listdir(tmp_path) == []


def test_align_report(tmp_path, aligned_pair):
    result, dry, wet = aligned_pair
    path = tmp_path / "report.png"
    assert align_report(result, dry, wet, path, fs=FS) == str(path)
    _assert_png(path)
    assert os.listdir(tmp_path) == ["report.png"]


def test_align_report_type_error(tmp_path):
    with pytest.raises(TypeError, match="AlignResult"):
        align_report({}, np.ones(10), np.ones(10), tmp_path / "r.png", fs=FS)


def test_plot_pole_zero_draws_anticausal_poles_outside():
    cascade = AllpassCascade([Allpass2(0.9, 500.0), Allpass2(0.8, 3000.0, anticausal=True)], fs=FS)
    ax = plot_pole_zero(cascade)
    assert "anticausal poles (2, run backwards)" in _legend_texts(ax)
    anti_line = [line for line in ax.get_lines() if line.get_label().startswith("anticausal")][0]
    drawn = np.sort_complex(anti_line.get_xdata() + 1j * anti_line.get_ydata())
    p = 0.8 * np.exp(2j * np.pi * 3000.0 / FS)
    np.testing.assert_allclose(drawn, np.sort_complex(1 / np.conj([p, np.conj(p)])), atol=1e-12)
    assert np.all(np.abs(drawn) > 1)


def test_cells_text_marks_anticausal_sections():
    from apfdsp.plot import _cells_text

    text = _cells_text(AllpassCascade([Allpass2(0.5, 100.0, anticausal=True), Allpass1(0.3)], fs=FS))
    first, second = text.splitlines()
    assert first.endswith("(backwards)") and "backwards" not in second


def test_plot_pole_zero_notes_anticausal_poles_off_the_chart():
    ax = plot_pole_zero(AllpassCascade([Allpass1(0.2, anticausal=True)], fs=FS))  # pole at z = -5
    notes = " ".join(t.get_text() for t in ax.texts)
    assert "1 anticausal pole(s) off the chart" in notes
