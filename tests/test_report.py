"""Tests of apfdsp.report: the HTML report to read and to hear, checked in a real headless browser."""

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
import soundfile as sf

from apfdsp import Allpass2, AllpassCascade, Delay, Polarity
from apfdsp.align import align
from apfdsp.demo import demo_dry
from apfdsp.exceptions import OutputError
from apfdsp.metrics import broadband_null_db
from apfdsp.report import html_report, listening_clips

FS = 48000
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def aligned():
    dry = demo_dry(fs=FS, duration_s=1.5, seed=5)
    wet = AllpassCascade([Allpass2(0.9, 700.0), Delay(30.0), Polarity(-1)], fs=FS)(dry)
    return align(dry, wet, fs=FS, n_sections=2), dry, wet


@pytest.fixture(scope="module")
def page(aligned, tmp_path_factory):
    result, dry, wet = aligned
    path = tmp_path_factory.mktemp("report") / "report.html"
    html_report(result, dry, wet, path, fs=FS, title="test <report>", excerpt_s=1.2)
    return path


def _audio_sources(text):
    return re.findall(r"<audio[^>]*src='data:audio/wav;base64,([^']*)'", text)


def test_page_is_self_contained(page):
    text = page.read_text(encoding="utf-8")
    assert "test &lt;report&gt;" in text  # the title is escaped
    assert "data:image/png;base64," in text
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", text)  # nothing loaded from elsewhere
    for key in ("broadband null", "phase-only null", "mix loss", "A/B", "polarity"):
        assert key in text


def test_audio_sources_decode_with_the_excerpt_duration(page):
    """Second route to the browser: libsndfile decodes every embedded WAV, 16-bit, 1.2 s."""
    sources = _audio_sources(page.read_text(encoding="utf-8"))
    assert len(sources) == 4
    for src in sources:
        data, fs = sf.read(io.BytesIO(base64.b64decode(src)))
        info = sf.info(io.BytesIO(base64.b64decode(src)))
        assert fs == FS and info.subtype == "PCM_16" and data.shape[0] == int(1.2 * FS)
        assert 0 < np.max(np.abs(data)) <= 10 ** (-1 / 20) + 1e-4


def test_listening_clips_null_is_the_broadband_null(aligned):
    """The nulls are wet - g dry at the broadband null's gain, at one common gain: the level of the null
    after relative to the null before is the change of the broadband null (metrics.broadband_null_db)."""
    result, dry, wet = aligned
    n = FS
    clips = listening_clips(dry, wet, result.aligned, fs=FS, excerpt_s=1.0)
    assert all(c.shape == (n,) for c in clips.values())
    assert max(np.max(np.abs(c)) for c in clips.values()) == pytest.approx(10 ** (-1 / 20))
    change = 10 * np.log10(np.sum(clips["null_after"] ** 2) / np.sum(clips["null_before"] ** 2))
    expected = broadband_null_db(result.aligned[:n], wet[:n]) - broadband_null_db(dry[:n], wet[:n])
    assert change == pytest.approx(expected, abs=1e-6)
    assert expected < -10  # the alignment is heard


def test_listening_clips_of_identical_signals():
    x = np.random.default_rng(0).standard_normal(4800)
    clips = listening_clips(x, x, x, fs=FS)
    assert not np.any(clips["null_after"]) and np.allclose(clips["mix_after"], clips["mix_before"])


def test_html_report_refuses_other_extensions(aligned, tmp_path):
    result, dry, wet = aligned
    with pytest.raises(OutputError, match=".html"):
        html_report(result, dry, wet, tmp_path / "r.htm", fs=FS)


def _chromium(*args, user_dir):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={user_dir}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_report_in_a_real_browser(page, tmp_path_factory):
    """Chromium loads the page with no console message, decodes every player to the excerpt's duration,
    and a screenshot is kept (its path is printed)."""
    url = page.resolve().as_uri()
    with tempfile.TemporaryDirectory() as user_dir:
        proc = _chromium("--virtual-time-budget=10000", "--dump-dom", url, user_dir=user_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CONSOLE" not in proc.stderr, [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    dom = proc.stdout
    assert 'data-ready="1"' in dom  # the page's script ran to the end
    players = re.findall(r"<audio([^>]*)>", dom)
    assert len(players) == 4
    for attrs in players:
        assert "data-error" not in attrs
        duration = re.search(r'data-duration="([0-9.]+)"', attrs)
        assert duration is not None, "a player did not decode its source"
        assert float(duration.group(1)) == pytest.approx(1.2, abs=0.01)
    shot = tmp_path_factory.mktemp("screenshot") / "report.png"
    with tempfile.TemporaryDirectory() as user_dir:
        proc = _chromium(f"--screenshot={shot}", "--window-size=1200,2600", "--virtual-time-budget=5000", url,
                         user_dir=user_dir)
    assert proc.returncode == 0 and shot.stat().st_size > 20_000, proc.stderr[-2000:]
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot of the HTML report: {shot}")
    keep = os.environ.get("APFDSP_ARTEFACTS")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(shot, os.path.join(keep, "report_screenshot.png"))


# Clicks the mix pair's A/B switch twice from a script: A starts, then B takes over at A's position.
_AB_PROBE = """<script>
window.addEventListener("load", function () {
  var button = document.querySelector("button[data-ab='mix']");
  var pair = document.querySelectorAll("audio[data-pair='mix']");
  button.click();
  var first = [pair[0].paused, pair[1].paused];
  pair[0].currentTime = 0.5;
  button.click();
  document.body.dataset.ab = JSON.stringify([first, [pair[0].paused, pair[1].paused, pair[1].currentTime]]);
});
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_ab_switch_in_a_real_browser(page, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _AB_PROBE), encoding="utf-8")
    with tempfile.TemporaryDirectory() as user_dir:
        proc = _chromium("--autoplay-policy=no-user-gesture-required", "--virtual-time-budget=5000", "--dump-dom",
                         probe.as_uri(), user_dir=user_dir)
    assert proc.returncode == 0 and "CONSOLE" not in proc.stderr, proc.stderr[-2000:]
    found = re.search(r'data-ab="([^"]*)"', proc.stdout)
    assert found is not None, "the probe did not run"
    first, second = json.loads(html.unescape(found.group(1)))
    assert first == [False, True]  # A plays
    assert second[:2] == [True, False] and second[2] == pytest.approx(0.5, abs=0.05)  # B took over at 0.5 s
