"""A report to read and to hear: one self-contained HTML page of an alignment (`html_report`).

The page holds the report figure (`apfdsp.plot.align_report`, embedded as a PNG data URI), the
numbers with what they mean, and audio players (16-bit WAV data URIs of a short excerpt) for the
dry + wet mix and for the null (wet minus dry) before and after alignment, each pair with an A/B
switch that keeps the play position. Nothing is loaded from elsewhere: the file can be mailed.

The numbers it explains are those of docs/maths.md, section 10 (null depth, mix loss, broadband null) and
section 7.1 (the verdict); the module's place in the package is docs/architecture.md, section 2.23.
"""

import base64
import html
import io
import os
import tempfile

import numpy as np
import soundfile as sf

from ._validate import valid_audio, valid_fs, valid_range
from .align import AlignResult, method_label
from .exceptions import OutputError
from .audiofile import write_text
from .metrics import energy_sums

__all__ = ["html_report", "listening_clips", "EXCERPT_S"]

#: Longest audio excerpt in the page, in seconds (16-bit WAV: about 1.9 MB per channel, base64 included).
EXCERPT_S = 10.0

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { padding: .25em .8em; border-bottom: 1px solid #ddd; text-align: right; }
td.what, th.what { text-align: left; color: #555; max-width: 30em; }
td.name, th.name { text-align: left; }
.pair { display: grid; grid-template-columns: 9em 1fr 1fr; gap: .5em 1em; align-items: center; margin: .6em 0; }
.pair button { font-size: 1em; padding: .3em .6em; }
.playing { outline: 3px solid #2a7; border-radius: 6px; }
audio { width: 100%; }
img { max-width: 100%; border: 1px solid #ddd; }
"""

# Marks every player with its decoded duration (data-duration) or its error (data-error), and runs the
# A/B switches: the other player of the pair takes over at the same position.
_SCRIPT = """
document.querySelectorAll("audio").forEach(function (a) {
  function mark() {
    if (a.error) { a.dataset.error = String(a.error.code); }
    else if (a.readyState >= 1) { a.dataset.duration = a.duration.toFixed(3); }
  }
  a.addEventListener("loadedmetadata", mark);
  a.addEventListener("error", mark);
  mark();
  a.addEventListener("play", function () {
    document.querySelectorAll("audio").forEach(function (b) {
      if (b !== a) { b.pause(); }
      b.parentElement.classList.toggle("playing", b === a);
    });
  });
});
document.querySelectorAll("button[data-ab]").forEach(function (button) {
  button.addEventListener("click", function () {
    var pair = document.querySelectorAll("audio[data-pair='" + button.dataset.ab + "']");
    var from = pair[0].paused && !pair[1].paused ? pair[1] : pair[0];
    if (!from.paused || from.currentTime > 0) {
      var to = from === pair[0] ? pair[1] : pair[0];
      to.currentTime = from.currentTime;
      from.pause();
      to.play().catch(function () {});
    } else {
      pair[0].play().catch(function () {});
    }
  });
});
document.body.dataset.ready = "1";
"""


def _wav_uri(x, fs):
    """A 16-bit WAV data URI of `x` (channels, n) or (n,)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(x).T, int(round(fs)), subtype="PCM_16", format="WAV")
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _png_uri(result, dry, wet, fs, title):
    from .plot import align_report

    with tempfile.TemporaryDirectory() as tmp:
        path = align_report(result, dry, wet, os.path.join(tmp, "report.png"), fs=fs, title=title)
        with open(path, "rb") as f:
            return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def _common(a, b, n):
    """`a` and `b` cut or zero-padded to `n` samples, broadcast to one channel layout."""
    def fit(x):
        x = x[..., :n]
        return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])])
    return np.broadcast_arrays(fit(a), fit(b))


def listening_clips(dry, wet, aligned, *, fs, excerpt_s=EXCERPT_S):
    """The four clips of the page: mix and null, before and after, on the first `excerpt_s` seconds.

    Parameters
    ----------
    dry, wet, aligned : array_like, shape (n,) or (channels, n)
        The dry as given, the wet, the aligned dry.
    fs : float
        Sample rate in Hz.
    excerpt_s : float
        Longest excerpt in seconds.

    Returns
    -------
    clips : dict
        ``mix_before``, ``mix_after`` (``(dry + wet) / 2``), ``null_before``, ``null_after``
        (``wet - g dry``, `g` the broadband null's gain, see `apfdsp.metrics.broadband_null_from_sums`),
        all scaled by one common gain so that the loudest peak is at -1 dBFS: the nulls keep their
        level relative to the mixes.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(4800)
    >>> clips = listening_clips(x, 0.5 * x, x, fs=48000)
    >>> sorted(clips), float(np.max(np.abs(clips["null_after"])))
    (['mix_after', 'mix_before', 'null_after', 'null_before'], 0.0)
    """
    fs = valid_fs(fs)
    excerpt_s = valid_range(excerpt_s, "excerpt_s", 0.0, np.inf, lo_open=True)
    dry, wet, aligned = (valid_audio(v, name=n) for v, n in ((dry, "dry"), (wet, "wet"), (aligned, "aligned")))
    n = min(dry.shape[-1], int(round(excerpt_s * fs)))
    clips = {}
    for stage, x in (("before", dry), ("after", aligned)):
        x, y = _common(x, wet, n)
        s_yy, s_xy, s_xx = energy_sums(x, y)
        gain = max(s_xy / s_xx, 0.0) if s_xx > 0 else 0.0
        clips[f"mix_{stage}"] = 0.5 * (x + y)
        clips[f"null_{stage}"] = y - gain * x
    peak = max(float(np.max(np.abs(c))) for c in clips.values())
    scale = 10 ** (-1 / 20) / peak if peak > 0 else 1.0
    return {k: v * scale for k, v in clips.items()}


def _numbers_table(summary):
    def db(value):
        return "n/a" if value is None else f"{round(value, 1) + 0.0:.1f} dB"  # + 0.0: no "-0.0"

    rows = [
        ("broadband null", "broadband_null_db",
         "What a DAW shows when you flip the polarity of one track and sum, with the fader set for the deepest "
         "null. It also counts every change in tone (EQ, drive, noise), so judge it by how much alignment "
         "improves it: a pure phase/delay effect reaches -30 dB or below; through a filter, EQ or drive it stays "
         "shallow (about -3 to -8 dB for a high-pass on music, -10 dB for a +9 dB peak EQ, after alignment)."),
        ("phase-only null", "null_db",
         "The same null with the levels matched in every band: phase (alignment) alone. -20 dB is good, -30 dB "
         "or below very good; 0 dB means inverted."),
        ("mix loss", "mix_loss_db",
         "Level of dry + wet relative to a perfectly in-phase sum (levels matched per band): 0 dB loses nothing "
         "to cancellation, -3 dB is random phase."),
    ]
    out = ["<table><tr><th class=name></th><th>before</th><th>delay + polarity</th><th>after</th>"
           "<th class=what>what it means</th></tr>"]
    for name, key, what in rows:
        cells = "".join(f"<td>{db(summary.get(f'{key}_{stage}'))}</td>" for stage in ("before", "delay_polarity", "after"))
        out.append(f"<tr><td class=name>{name}</td>{cells}<td class=what>{html.escape(what)}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _facts(summary, fs):
    label = summary["method_label"]
    label = "; ".join(label) if isinstance(label, list) else label
    polarity = summary["polarity_label"]
    if polarity == "phase rotated":
        polarity = (f"not inverted; phase rotated by {abs(summary['phase_rotation_deg']):.0f} degrees on average "
                    "where the signal has its energy (the allpass undoes it; a polarity button cannot)")
    realtime = ("yes: causal, never advances the dry" if summary["realtime_capable"] else
                "no: the model advances the dry or runs sections backwards in time (fine for files)")
    items = [("delay", f"{summary['delay_samples']:.2f} samples ({summary['delay_ms']:.3f} ms at {fs:g} Hz)"),
             ("polarity", polarity), ("method", label), ("could run in real time", realtime)]
    return "<ul>" + "".join(f"<li><b>{k}</b>: {html.escape(str(v))}</li>" for k, v in items) + "</ul>"


def _players(clips, fs, seconds):
    pairs = [("mix", "dry + wet mix", "Listen for the comb filtering (hollow, phasey sound) before, and a full sum after."),
             ("null", "null (wet - dry)", "What is left when the two cancel: the quieter after, the better the alignment.")]
    out = [f"<p>The first {seconds:.1f} s, 16-bit, all clips at one gain (so the nulls keep their level "
           "relative to the mixes). Press A/B while playing to switch at the same position.</p>"]
    for key, title, what in pairs:
        out.append(f"<h3>{title}</h3><p>{what}</p><div class=pair>"
                   f"<button data-ab='{key}'>A/B</button>")
        for stage in ("before", "after"):
            out.append(f"<div><div>{'A: before' if stage == 'before' else 'B: after'} alignment</div>"
                       f"<audio controls preload=auto data-pair='{key}' data-stage='{stage}' "
                       f"src='{_wav_uri(clips[f'{key}_{stage}'], fs)}'></audio></div>")
        out.append("</div>")
    return "\n".join(out)


def html_report(result, dry, wet, path, *, fs, title=None, excerpt_s=EXCERPT_S):
    """Write a self-contained HTML report of an alignment: figure, numbers, players with A/B switches.

    Parameters
    ----------
    result : AlignResult
        From `apfdsp.align.align` (its ``aligned`` must be set).
    dry, wet : array_like
        The signals the result was computed from.
    path : str or os.PathLike
        The ``.html`` file to write (atomically; an input is never overwritten).
    fs : float
        Sample rate in Hz.
    title : str, optional
        Page title.
    excerpt_s : float
        Longest audio excerpt in seconds (default `EXCERPT_S`).

    Returns
    -------
    path : str

    Raises
    ------
    TypeError
        If `result` is not an AlignResult with aligned audio.
    OutputError
        If the file cannot be written.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from apfdsp import AllpassCascade, Allpass2, Delay
    >>> from apfdsp.align import align
    >>> dry = np.random.default_rng(0).standard_normal(24000)
    >>> wet = AllpassCascade([Allpass2(0.9, 500.0), Delay(12.0)], fs=48000)(dry)
    >>> result = align(dry, wet, fs=48000, n_sections=2)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     page = open(html_report(result, dry, wet, os.path.join(d, "r.html"), fs=48000)).read()
    >>> page.count("<audio"), "data:image/png;base64," in page
    (4, True)
    """
    if not isinstance(result, AlignResult) or result.aligned is None:
        raise TypeError("result must be an AlignResult from apfdsp.align.align, with its aligned audio")
    fs = valid_fs(fs)
    path = os.fspath(path)
    if not path.lower().endswith(".html"):
        raise OutputError(f"cannot write {path!r}: an HTML report's name ends with .html")
    summary = result.summary()
    if "method_label" not in summary:
        summary["method_label"] = method_label(result.method, 0)
    clips = listening_clips(dry, wet, result.aligned, fs=fs, excerpt_s=excerpt_s)
    seconds = next(iter(clips.values())).shape[-1] / fs
    title = title or "apfdsp alignment report"
    page = "\n".join([
        "<!DOCTYPE html>",
        "<html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _facts(summary, fs),
        "<h2>Listen</h2>",
        _players(clips, fs, seconds),
        "<h2>The numbers</h2>",
        _numbers_table(summary),
        "<h2>The figure</h2>",
        f"<img alt='alignment report figure' src='{_png_uri(result, dry, wet, fs, title)}'>",
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
    ])
    write_text(path, page)
    return path
