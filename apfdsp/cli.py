"""The ``apfdsp`` command line: align | fit | apply | mix | plot | demo | pretrained.

`build_parser` builds the argparse parser; `main` runs one command and returns the exit code:
0 on success, 2 for any user error (one line ``apfdsp: error: ...`` on stderr, no traceback, no
partial output), 1 for an unexpected exception (a bug: the traceback is printed), 3 when the work
is done but stdout failed, 128 + N when stopped by signal N (SIGINT, SIGTERM, SIGHUP: temporary and
partial files are removed first). This is the only module of apfdsp that touches argparse or sys.

The defaults of the fit options are read from the signature of `apfdsp.align.align`, so the command
line and the Python API always agree (tests/test_argspec.py checks it).

Implements docs/architecture.md, section 3 (the run of ``apfdsp align``, and in section 3.3 the
translation of exceptions into exit codes); its place in the package is section 2.26 there.
"""

import argparse
import contextlib
import dataclasses
import datetime
import errno
import gc
import importlib
import inspect
import json
import math
import os
import re
import shutil
import signal as os_signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from fractions import Fraction

import numpy as np
from scipy import signal

from .align import align, broadband_polarity, fit_alignment, method_label
from .align_files import align_files
from .cascade import Allpass1, Allpass2, AllpassCascade, Delay
from .demo import demo_dry, demo_effect
from .exceptions import ApfdspError, AudioError, ModelFileError, OutputError, ParameterError
from .fit import STRUCTURES
from .audiofile import (TEMPORARY_PREFIX, audio_info, check_output_name, os_error_text, output_format, read_audio,
                        same_file, write_audio)
from .model_format import load_model, save_model
from .streaming import apply_file, read_audio_blocks
from .metrics import mix_report
from ._validate import LIMITS
from .version import __version__

__all__ = ["build_parser", "main", "console_main"]

#: Defaults of the fit options: those of the Python API, never copied literals.
API_DEFAULTS = {
    name: p.default for name, p in inspect.signature(align).parameters.items() if p.default is not p.empty
}
_DEMO_DEFAULTS = {
    name: p.default for name, p in inspect.signature(demo_dry).parameters.items() if p.default is not p.empty
}
DEMO_DIR = "apfdsp-demo"
_DEMO_MIN_S = 1.0  # shortest demo track: enough material for a fit
PRETRAINED_PREFIX = "pretrained:"
# Extensions matplotlib writes (checked before any work, so a typo does not waste a fit).
_FIGURE_EXTENSIONS = (".png", ".pdf", ".svg", ".svgz", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".eps", ".ps")


class _UsageError(Exception):
    """A command-line usage error (raised by the parser instead of exiting)."""


# -- argument types: one clear message per bad value ---------------------------------------------------
def _int_at_least(minimum, maximum=None):
    wanted = f">= {minimum}" + ("" if maximum is None else f" and <= {maximum}")

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number {wanted}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be a whole number {wanted}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _float_in(lo, hi, *, lo_open=False, what="number"):
    left = "(" if lo_open else "["

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        bad = not math.isfinite(value) or (value <= lo if lo_open else value < lo) or value > hi
        if bad:
            raise argparse.ArgumentTypeError(f"must be a {what} in {left}{lo:g}, {hi:g}], got {text!r}")
        return value

    parse.__name__ = what
    return parse


def _positive_float(what, maximum):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and 0 < value <= maximum):
            raise argparse.ArgumentTypeError(f"must be a positive {what} <= {maximum:g}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


# -- the parser ------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{message} (see '{self.prog} --help')")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        width = min(100, shutil.get_terminal_size().columns - 2)
        super().__init__(prog, max_help_position=30, width=width)


_MAIN_DESCRIPTION = """\
Line up a dry track with its processed (wet) twin, so that dry/wet mixes and parallel processing
sum without comb filtering.

An effect (plug-in, amp model, analog chain) delays the signal, may flip its polarity and shifts
the phase of every frequency differently. apfdsp measures all three and fits an allpass filter: a
filter that changes only the phase, never the tone or level. Run on the dry track, it gives the dry
the phase of the wet, so the two add up instead of cancelling.
"""

_MAIN_EPILOG = """\
start here:
  apfdsp demo                                  make example files in ./apfdsp-demo and align them
  apfdsp align dry.wav wet.wav -o dry_aligned.wav
  apfdsp align dry.wav wet.wav -o dry_aligned.wav --model-out amp.json --report report.png
  apfdsp apply amp.json other_dry.wav -o other_dry_aligned.wav

Run 'apfdsp COMMAND --help' for the options and an example of each command.
Exit codes: 0 success, 2 a problem with the input or options (nothing is written), 1 a bug,
3 the files are written but the summary could not be printed, 128+N stopped by signal N
(130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; no partial or temporary file is left).

""" + f"""
limits: sample rates {LIMITS['sample_rate_hz'][0]} Hz to {LIMITS['sample_rate_hz'][1] // 1000} kHz \
({LIMITS['analysis_rate_hz'][0] // 1000} kHz to {LIMITS['analysis_rate_hz'][1] // 1000} kHz for align, fit and mix), \
{LIMITS['channels'][0]} to {LIMITS['channels'][1]} channels.
align, fit and mix read each file whole, up to {LIMITS['analysis_samples']} samples (frames x channels, \
about {LIMITS['analysis_samples'] / 2 / 48000 / 60:.1f} min of
48 kHz stereo): fit on an excerpt and 'apfdsp apply' the model to longer files (it streams any length).
Model files: at most {LIMITS['model_bytes'] // 2**20} MB, {LIMITS['model_cells']} cells, stretch \
{LIMITS['model_stretch'][1]}, {LIMITS['model_delay_s']} s of delay.
"""

_NUMBERS_HELP = """\
what the numbers mean (shown before alignment -> after delay + polarity only -> after the allpass):
  broadband null   what a DAW shows when you flip the polarity of one track and sum, with the fader
                   set for the deepest null (one gain for the whole signal). It also counts every
                   change in tone (EQ, drive, noise), so it cannot get deeper than the effect changes
                   the sound: judge it by how much alignment improves it. A pure phase/delay effect
                   reaches -30 dB or below; through a filter, EQ or drive it stays shallow (about -3 to
                   -8 dB for a high-pass on music, -10 dB for a +9 dB peak EQ, after alignment).
  phase-only null  the same null with the levels matched in every band: phase (alignment) alone.
                   -20 dB is good, -30 dB or below very good, 0 dB means inverted.
  mix loss         level of dry + wet relative to a perfectly in-phase sum, levels matched per band:
                   0 dB = nothing lost to cancellation, -3 dB = random phase.
  polarity         'inverted' only when the effect flips the signal where it has its energy (the
                   polarity button brings it close); 'phase rotated' when the phase turns by frequency
                   instead (an EQ, a filter, a phaser): the allpass undoes that, a polarity button cannot.
  realtime         whether the model could run live: causal, never advancing the dry.
"""

_ALIGN_DESCRIPTION = """\
Align DRY with WET and write the aligned dry to OUT.

Measures the effect's latency (delay) and polarity, then fits an allpass filter to the phase
difference between the two. The aligned dry has the same length, sample rate, channels and sample
format (or --subtype) as DRY; mixed with WET it no longer comb-filters. If the allpass does not beat plain
delay + polarity on your audio, delay + polarity is used, so the result is never worse.

Use a few seconds of material that excites the whole spectrum (a full mix or a busy part).
WET may be longer or shorter than DRY, and a mono DRY may be aligned with a stereo WET.
"""

_ALIGN_EPILOG = """\
examples:
  apfdsp align dry.wav wet.wav -o dry_aligned.wav
  apfdsp align gtr_DI.wav gtr_amp.wav -o gtr_DI_aligned.wav --model-out amp.json --report amp.png
  apfdsp align dry.wav wet_44k.wav -o dry_aligned.wav --resample --json

Save the model (--model-out) to align other takes through the same effect with 'apfdsp apply'.

""" + _NUMBERS_HELP

_FIT_DESCRIPTION = """\
Fit the alignment model of DRY and WET and save it as a JSON model file, without writing audio.

The model (delay, polarity and allpass sections) describes the effect's phase. Apply it to any
other audio that goes through the same effect with 'apfdsp apply', or inspect it with 'apfdsp plot'.
The file is plain JSON and also holds the filter as second-order sections (scipy's 'sos').
"""

_FIT_EPILOG = """\
examples:
  apfdsp fit gtr_DI.wav gtr_amp.wav -o amp.json
  apfdsp fit gtr_DI.wav gtr_amp.wav -o amp.json --sections 12 --report amp.png
  apfdsp apply amp.json gtr_DI_take2.wav -o gtr_DI_take2_aligned.wav

""" + _NUMBERS_HELP

_APPLY_DESCRIPTION = """\
Filter IN through a saved model (from 'apfdsp fit' or 'apfdsp align --model-out') and write OUT.

The file is processed block by block, so any length works with little memory. OUT has the length,
sample rate, channels and sample format of IN (or --subtype). The model must have been fitted at IN's
sample rate.
MODEL may also be 'pretrained:NAME' (see 'apfdsp pretrained'). A model with sections that run
backwards in time (the default of 'apfdsp align' without --causal) takes a second pass over a
temporary file next to OUT (8 bytes per sample and channel).
"""

_APPLY_EPILOG = """\
examples:
  apfdsp apply amp.json gtr_DI_take2.wav -o gtr_DI_take2_aligned.wav
  apfdsp apply pretrained:NAME dry.wav -o dry_aligned.wav
"""

_MIX_DESCRIPTION = """\
Write a phase-aligned dry/wet mix: (1 - R) * aligned DRY + R * WET.

The dry is aligned with the model given by --model, or else aligned on the fly (as 'apfdsp align').
OUT has the length and sample format of DRY (or --subtype); a mono DRY with a stereo WET gives a stereo mix.
"""

_MIX_EPILOG = """\
examples:
  apfdsp mix dry.wav wet.wav --wet-ratio 0.3 -o mix.wav
  apfdsp mix dry.wav wet.wav --wet-ratio 0.5 --model amp.json -o mix.wav

R = 0 gives the aligned dry alone, R = 1 the wet alone, R = 0.5 equal parts.
"""

_PLOT_DESCRIPTION = """\
Draw a model's phase response and group delay (how much each frequency is delayed) into a figure.
"""

_PLOT_EPILOG = """\
examples:
  apfdsp plot amp.json -o amp.png
  apfdsp plot amp.json -o amp.pdf
"""

_DEMO_DESCRIPTION = """\
Run the whole workflow on built-in material, no files needed.

Makes a synthetic music track (dry.wav), runs it through a virtual-analog-style effect with
latency, a polarity flip and phase dispersion (wet.wav), aligns the two and writes into DIR:
  dry.wav, wet.wav               the pair (48 kHz, 24 bit)
  dry_aligned.wav                the aligned dry
  model.json                     the fitted model (try 'apfdsp apply' or 'apfdsp plot' on it)
  report.png                     a figure of the alignment
  mix_before.wav, mix_after.wav  50/50 dry/wet mixes before and after alignment: listen to both
"""

_DEMO_EPILOG = """\
examples:
  apfdsp demo
  apfdsp demo -o /tmp/apfdsp-demo --duration 10
"""

_PRETRAINED_DESCRIPTION = """\
List the pretrained models shipped with apfdsp, one per line. Use one with
'apfdsp apply pretrained:NAME IN -o OUT'.
"""

_PRETRAINED_EPILOG = """\
example:
  apfdsp pretrained
"""


def _add_output_options(p):
    p.add_argument("--json", action="store_true",
                   help="print one JSON object with the results on stdout instead of the summary")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors and warnings")


SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")
_REPORT_HELP = ("also write a report: a figure (.png, .pdf or .svg) or a page to read and listen to (.html: "
                "the figure, the numbers and what they mean, and players for the dry + wet mix and the "
                "null before and after, with an A/B switch)")


def _subtype(text):
    value = text.strip().upper()
    if value not in SUBTYPES:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(SUBTYPES)}, got {text!r}")
    return value


_subtype.__name__ = "sample format"


def _add_subtype_option(p, default=None):
    where = "the input's" if default is None else default
    p.add_argument("--subtype", metavar="TYPE", type=_subtype, default=default,
                   help=f"sample format of the audio written: {', '.join(SUBTYPES)} (default: {where}); "
                        "FLOAT or DOUBLE never clip")


def _add_shift_option(p, *, wet_out):
    wet_text = ("the wet, delayed, is written to --wet-out (WET's length plus the shift, in the sample "
                "format OUT gets), and OUT is the dry through the model minus its advance (DRY's length); "
                "the files are then read into memory" if wet_out else
                "the mix then starts with the dry's first sample and is longer than DRY by the shift")
    p.add_argument("--shift", choices=("dry", "wet"), default="dry",
                   help="what moves when the wet leads the dry: 'dry' advances the dry (its first samples "
                        "are dropped; default), 'wet' delays the wet by whole samples instead, so no dry "
                        f"sample is lost: {wet_text}. Nothing changes when the wet does not lead")
    if wet_out:
        p.add_argument("--wet-out", metavar="W.wav", help="with --shift wet: the delayed wet file to write")


def _add_fit_options(p, *, resample=True):
    g = p.add_argument_group("fit options")
    g.add_argument("--sections", dest="n_sections", metavar="N", type=_int_at_least(*LIMITS["sections"]),
                   default=API_DEFAULTS["n_sections"],
                   help="most second-order allpass sections the fit may use; more follow a more complex "
                        "phase response, but take longer (default: chosen from the audio: up to 8, and up "
                        "to 32 where more sections null the mix deeper by at least 1 dB)")
    g.add_argument("--structure", choices=STRUCTURES, default=API_DEFAULTS["structure"],
                   help="type of allpass section (default: %(default)s)")
    g.add_argument("--seed", metavar="N", type=_int_at_least(0), default=API_DEFAULTS["seed"],
                   help="seed of the fit's random starts; the same seed gives the same result "
                        "(default: %(default)s)")
    g.add_argument("--max-delay-ms", metavar="MS", type=_positive_float("number of milliseconds", LIMITS["max_delay_ms"][1]),
                   default=1e3 * API_DEFAULTS["max_delay_s"],
                   help="largest latency searched, either way, in milliseconds (default: %(default)g)")
    g.add_argument("--per-channel", action="store_true", default=API_DEFAULTS["per_channel"],
                   help="fit each channel separately instead of one model for all channels "
                        "(only for multichannel DRY; such models cannot be saved)")
    g.add_argument("--causal", dest="causal", action="store_true", default=API_DEFAULTS["causal"],
                   help="keep the model causal (never advance the dry, no sections run backwards in time), so "
                        "that it could also run in real time; by default the fit may do both, which gives much "
                        "deeper nulls on filters and EQs")
    g.add_argument("--strict", action="store_true",
                   help="refuse (exit code 2, nothing written) when WET is unrelated to DRY")
    if resample:
        g.add_argument("--resample", action="store_true",
                       help="if WET's sample rate differs from DRY's, resample WET to DRY's rate")


def build_parser():
    """Build the argparse parser of the ``apfdsp`` command.

    Returns
    -------
    parser : argparse.ArgumentParser
        Its ``parse_args`` returns a namespace whose ``func`` attribute runs the chosen command.
        Usage errors raise an internal exception instead of exiting (`main` turns it into exit code 2).

    Examples
    --------
    >>> parser = build_parser()
    >>> args = parser.parse_args(["align", "dry.wav", "wet.wav", "-o", "aligned.wav", "--sections", "4"])
    >>> args.command, args.output, args.n_sections, callable(args.func)
    ('align', 'aligned.wav', 4, True)
    """
    # One function on purpose (64 lines): the commands and their options read top to bottom, in the
    # order `apfdsp --help` lists them.
    parser = _Parser(prog="apfdsp", description=_MAIN_DESCRIPTION, epilog=_MAIN_EPILOG,
                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"apfdsp {__version__}")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")

    def command(name, help, description, epilog):
        return sub.add_parser(name, help=help, description=description, epilog=epilog,
                              formatter_class=_Formatter)

    p = command("align", "align a dry track with its processed (wet) version", _ALIGN_DESCRIPTION, _ALIGN_EPILOG)
    p.add_argument("dry", metavar="DRY", help="the unprocessed audio file")
    p.add_argument("wet", metavar="WET", help="the same audio after the effect")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="aligned dry audio file to write")
    p.add_argument("--model-out", metavar="M.json", help="also save the fitted model (for 'apfdsp apply')")
    p.add_argument("--report", metavar="R.png", help=_REPORT_HELP)
    _add_shift_option(p, wet_out=True)
    _add_subtype_option(p)
    _add_fit_options(p)
    _add_output_options(p)
    p.set_defaults(func=_cmd_align)

    p = command("fit", "fit and save the alignment model only (no audio written)", _FIT_DESCRIPTION, _FIT_EPILOG)
    p.add_argument("dry", metavar="DRY", help="the unprocessed audio file")
    p.add_argument("wet", metavar="WET", help="the same audio after the effect")
    p.add_argument("-o", "--output", metavar="M.json", required=True, help="model file to write")
    p.add_argument("--report", metavar="R.png", help=_REPORT_HELP)
    _add_fit_options(p)
    _add_output_options(p)
    p.set_defaults(func=_cmd_fit)

    p = command("apply", "filter an audio file through a saved model", _APPLY_DESCRIPTION, _APPLY_EPILOG)
    p.add_argument("model", metavar="MODEL", help="model file (.json) or pretrained:NAME")
    p.add_argument("input", metavar="IN", help="audio file to filter")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="audio file to write")
    _add_subtype_option(p)
    _add_output_options(p)
    p.set_defaults(func=_cmd_apply)

    p = command("mix", "write a phase-aligned dry/wet mix", _MIX_DESCRIPTION, _MIX_EPILOG)
    p.add_argument("dry", metavar="DRY", help="the unprocessed audio file")
    p.add_argument("wet", metavar="WET", help="the same audio after the effect")
    p.add_argument("--wet-ratio", metavar="R", required=True, type=_float_in(0.0, 1.0, what="number"),
                   help="share of the wet in the mix, from 0 (dry only) to 1 (wet only)")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="mix audio file to write")
    p.add_argument("--model", metavar="M.json",
                   help="align the dry with this saved model (or pretrained:NAME) instead of fitting one")
    _add_shift_option(p, wet_out=False)
    _add_subtype_option(p)
    _add_fit_options(p)
    _add_output_options(p)
    p.set_defaults(func=_cmd_mix)

    p = command("plot", "draw a model's phase response into a figure", _PLOT_DESCRIPTION, _PLOT_EPILOG)
    p.add_argument("model", metavar="MODEL", help="model file (.json) or pretrained:NAME")
    p.add_argument("-o", "--output", metavar="FIG.png", required=True, help="figure to write (.png, .pdf or .svg)")
    p.add_argument("--title", help="figure title (default: the model's file name)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors and warnings")
    p.set_defaults(func=_cmd_plot, json=False)

    p = command("demo", "try apfdsp on built-in example material", _DEMO_DESCRIPTION, _DEMO_EPILOG)
    p.add_argument("-o", "--output-dir", metavar="DIR", default=os.path.join(".", DEMO_DIR),
                   help="directory to write the files into; created if missing (default: %(default)s)")
    p.add_argument("--duration", metavar="S", type=_float_in(_DEMO_MIN_S, 600.0, what="number of seconds"),
                   default=_DEMO_DEFAULTS["duration_s"], help="length of the demo track in seconds (default: %(default)g)")
    _add_subtype_option(p, default="PCM_24")
    _add_output_options(p)
    p.set_defaults(func=_cmd_demo)

    p = command("pretrained", "list the pretrained models", _PRETRAINED_DESCRIPTION, _PRETRAINED_EPILOG)
    p.add_argument("--json", action="store_true", help="print one JSON object with the list instead")
    p.set_defaults(func=_cmd_pretrained, quiet=False)
    return parser


# -- progress display (stderr, TTY only) --------------------------------------------------------------------
class _Progress:
    """A one-line progress display on stderr, driven by the library's callbacks.

    While enabled, a background thread keeps the spinner and the elapsed time moving between
    callbacks (a fit can be silent for seconds).
    """

    _SPIN = "|/-\\"

    def __init__(self, enabled, label):
        self.enabled = enabled
        self.label = label
        self._text = ""
        self._tick = 0
        self._width = 0
        self._last = 0.0
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if enabled:
            self._thread = threading.Thread(target=self._run, name="apfdsp-progress", daemon=True)
            self._thread.start()

    def _run(self):
        while not self._stop.wait(0.25):
            self._draw()

    def _draw(self):
        with self._lock:
            if self._stop.is_set() or not self._text:
                return
            self._tick += 1
            elapsed = time.monotonic() - self._start
            line = f"{self.label}: {self._SPIN[self._tick % 4]} {self._text}  {elapsed:.0f} s"
            sys.stderr.write("\r" + line.ljust(self._width))
            sys.stderr.flush()
            self._width = len(line)

    def _set(self, text, *, force=True):
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        self._text = text
        self._draw()

    @staticmethod
    def _bar(done, total, width=24):
        frac = min(max(done / total, 0.0), 1.0) if total else 0.0
        filled = int(round(frac * width))
        return "[" + "#" * filled + "." * (width - filled) + "]"

    def stage(self, text):
        self._set(text)

    def fit_callback(self, stage, done, total):
        """``callback(stage, done, total)`` of `apfdsp.align.align`."""
        self._set(f"fitting the allpass {self._bar(done, total)} {done}/{total}")

    def file_callback(self, done, total):
        """``progress(done, total)`` of `apfdsp.io.apply_file`."""
        pct = 100.0 * done / total if total else 100.0
        self._set(f"filtering {self._bar(done, total)} {pct:3.0f}%", force=done >= total)

    def close(self):
        if not self.enabled:
            return
        with self._lock:
            self._stop.set()
            if self._width:
                sys.stderr.write("\r" + " " * self._width + "\r")
                sys.stderr.flush()
            self._width = 0
        if self._thread is not None:
            self._thread.join()


def _progress(args, label):
    enabled = not (args.quiet or args.json) and sys.stderr.isatty()
    return _Progress(enabled, label)


# -- helpers ---------------------------------------------------------------------------------------------
def _check_outputs(outputs, inputs, subtype=None):
    """Refuse, before any work, outputs that are inputs, clash with each other or cannot be written.

    `outputs` is a list of ``(option, path, kind)``: path None means not requested; kind "audio" or
    "figure" also checks that the extension is a type that can be written. `inputs` is a list of paths.
    """
    seen = []
    for option, path, kind in outputs:
        if path is None:
            continue
        for src in inputs:
            if same_file(path, src):
                raise OutputError(
                    f"refusing to write {option} {path!r}: it is the input file {src!r}; choose another output path"
                )
        for other_option, other in seen:
            if same_file(path, other):
                raise OutputError(f"{other_option} and {option} both name {path!r}; give them different paths")
        if os.path.isdir(path):
            raise OutputError(f"cannot write {option} {path!r}: it is a directory; give a file name")
        if kind == "audio":
            _check_audio_extension(path, subtype)
        if kind == "figure" and os.path.splitext(path)[1].lower() not in _FIGURE_EXTENSIONS:
            raise OutputError(
                f"cannot draw {option} {path!r}: unknown figure type; end the name with .png, .pdf or .svg"
            )
        if kind == "report" and os.path.splitext(path)[1].lower() not in _FIGURE_EXTENSIONS + (".html",):
            raise OutputError(
                f"cannot write {option} {path!r}: unknown report type; end the name with .png, .pdf, .svg or .html"
            )
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise OutputError(f"cannot write {option} {path!r}: directory {directory!r} does not exist; create it first")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write {option} {path!r}: directory {directory!r} is not writable")
        check_output_name(path)
        seen.append((option, path))


def _check_audio_extension(path, subtype=None):
    """Refuse an audio file name whose extension libsndfile cannot write (before any work).

    Uses `apfdsp.audiofile.output_format`, so the rule is exactly the one `write_audio` applies.
    """
    resolve = output_format
    try:
        resolve(path, None, None)
    except OutputError:
        ext = os.path.splitext(path)[1]
        raise OutputError(
            f"cannot write {path!r}: unknown audio file type {ext or '(no extension)'!r}; "
            "end the name with .wav, .flac or .aiff"
        ) from None
    try:
        if subtype is not None:
            resolve(path, None, subtype)
    except OutputError:
        raise OutputError(
            f"cannot write {path!r} as --subtype {subtype}: its file type does not store that sample "
            "format; choose another --subtype or write a .wav"
        ) from None


def _same_type(out_path, in_path):
    return os.path.splitext(out_path)[1].lower() == os.path.splitext(in_path)[1].lower()


def _write_like(path, x, fs, like_path, like_info, inputs, subtype=None):
    """Write audio as `subtype`, else with the sample format of `like_path` when the file type is the same."""
    if subtype is None:
        subtype = like_info["subtype"] if _same_type(path, like_path) else None
    write_audio(path, x, fs, subtype=subtype, inputs=inputs)


def _match_rates(wet, fs_dry, fs_wet, *, resample, dry_path, wet_path):
    """Return (wet, original wet rate or None): resampled to `fs_dry` if asked, else refuse a mismatch."""
    if fs_dry == fs_wet:
        return wet, None
    if not resample:
        raise AudioError(
            f"DRY {dry_path!r} is sampled at {fs_dry} Hz but WET {wet_path!r} at {fs_wet} Hz; "
            f"pass --resample to resample WET to {fs_dry} Hz (or convert one of the files)"
        )
    ratio = Fraction(int(fs_dry), int(fs_wet))
    return signal.resample_poly(wet, ratio.numerator, ratio.denominator, axis=-1), fs_wet


def _check_rate(fs, role, path):
    """Refuse a sample rate outside what align, fit and mix analyse."""
    lo, hi = LIMITS["analysis_rate_hz"]
    if not lo <= fs <= hi:
        raise AudioError(f"{role} {path!r} is sampled at {fs} Hz; align, fit and mix analyse {lo} to {hi} Hz audio")


_FLOOR = 1e-10  # -200 dBFS: far below the quietest step of a 24-bit file


def _check_levels(peak, swing, role, path):
    """Refuse audio whose largest change (`swing`, max - min of a channel) is practically nothing."""
    if swing < _FLOOR:
        if peak >= _FLOOR:
            raise AudioError(f"{role} {path!r} holds only a constant (DC) level: there is no sound to align")
        raise AudioError(f"{role} {path!r} is practically silent (peak below -200 dBFS): there is nothing to align")


def _check_material(x, fs, role, path):
    """Refuse audio that cannot be analysed, in a user's terms: its rate, DC only, practically silent."""
    _check_rate(fs, role, path)
    _check_levels(np.max(np.abs(x)), np.max(np.ptp(np.atleast_2d(x), axis=-1)), role, path)


def _check_material_file(path, role):
    """`_check_material`'s level checks on a file of any length, block by block (after a failed fit)."""
    peak, low, high = 0.0, np.inf, -np.inf
    for block in read_audio_blocks(path, 2**16):
        peak = max(peak, float(np.max(np.abs(block))))
        low, high = np.minimum(low, block.min(axis=-1)), np.maximum(high, block.max(axis=-1))
    _check_levels(peak, float(np.max(high - low)), role, path)


def _fit_kwargs(args):
    return dict(n_sections=args.n_sections, structure=args.structure, seed=args.seed,
                max_delay_s=args.max_delay_ms / 1e3, per_channel=args.per_channel, causal=args.causal)


def _refuse_per_channel_model(args, channels, option):
    if args.per_channel and channels > 1:
        raise ParameterError(
            f"--per-channel fits one model per channel, and a model file holds one model: "
            f"drop {option} or drop --per-channel"
        )


def _resolve_model(spec):
    """A model path, or the path of the pretrained model named by ``pretrained:NAME``."""
    if not spec.startswith(PRETRAINED_PREFIX):
        return spec
    name = spec[len(PRETRAINED_PREFIX):]
    module = _pretrained_module()
    if module is None:
        raise ModelFileError(
            f"cannot load {spec!r}: no pretrained models are installed with this apfdsp; pass a model file instead"
        )
    try:
        return os.fspath(module.load_path(name))
    except (LookupError, FileNotFoundError):
        raise ModelFileError(
            f"unknown pretrained model {name!r}; run 'apfdsp pretrained' to list them"
        ) from None


def _pretrained_module():
    try:
        return importlib.import_module(".pretrained", __package__)
    except ModuleNotFoundError as err:
        if err.name == f"{__package__}.pretrained":
            return None
        raise


def _plot_module():
    return importlib.import_module(".plot", __package__)


def _model_summary(cascade, metadata):
    """Delay, polarity, method and sections of a loaded model, as in `AlignResult.summary`.

    The delay is the one the model holds (its delay cells), never a number from its metadata, which
    an edited file may contradict; the polarity verdict is the stored one when there is one.
    """
    stored = metadata.get("summary") if isinstance(metadata, dict) else None
    delay = sum(c.samples for c in cascade if isinstance(c, Delay))
    sections = sum(1 for c in cascade if isinstance(c, (Allpass1, Allpass2)))
    method = "allpass" if sections else "delay+polarity"
    out = {"delay_samples": float(delay), "delay_ms": 1e3 * float(delay) / cascade.fs, "method": method,
           "method_label": method_label(method, sections), "n_sections": sections,
           "realtime_capable": bool(cascade.causal)}
    if isinstance(stored, dict) and stored.get("polarity_label") in ("normal", "inverted", "phase rotated"):
        out.update({k: stored.get(k) for k in ("polarity", "polarity_label", "phase_rotation_deg")})
    else:  # judged on a pink spectrum (20 Hz - 20 kHz): no audio at hand
        freqs = np.geomspace(20.0, min(20000.0, 0.49 * cascade.fs), 512)
        polarity, label, rotation = broadband_polarity(cascade, freqs, 1.0 / freqs * np.gradient(freqs), delay)
        out.update(polarity=polarity, polarity_label=label, phase_rotation_deg=rotation)
    return out


def _clean(value):
    """JSON-safe copy: numpy types to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _model_metadata(command, args, result, fs, wet_rate):
    return _clean({
        "created_by": f"apfdsp {__version__} ({command})",
        "apfdsp_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "inputs": {"dry": os.path.basename(args.dry), "wet": os.path.basename(args.wet)},
        "fs": fs,
        "wet_resampled_from_hz": wet_rate,
        "method": result.method,
        "settings": result.settings,
        "metrics": {"before": result.before, "delay_polarity": result.delay_polarity, "after": result.after},
        "summary": result.summary(),
    })


def _draw_report(path, result, dry, wet, fs, title):
    """Report of an alignment: a figure, or an HTML page (the aligned dry is computed if the result has none)."""
    if result.aligned is None:
        result = dataclasses.replace(result, aligned=_apply_models(result.cascade, dry))
    if path.lower().endswith(".html"):
        importlib.import_module(".report", __package__).html_report(result, dry, wet, path, fs=fs, title=title)
    else:
        _plot_module().align_report(result, dry, wet, path, fs=fs, title=title)


def _record(result=None, *, elapsed_s, model_path=None, output_path=None, **extra):
    """The JSON record printed by --json: the alignment numbers (None when unknown) and the files."""
    keys = ("delay_samples", "delay_ms", "polarity", "polarity_label", "phase_rotation_deg", "method",
            "method_label", "n_sections", "realtime_capable",
            "mix_loss_db_before", "mix_loss_db_delay_polarity", "mix_loss_db_after",
            "null_db_before", "null_db_delay_polarity", "null_db_after",
            "broadband_null_db_before", "broadband_null_db_delay_polarity", "broadband_null_db_after")
    record = dict.fromkeys(keys)
    if result is not None:
        record.update(result)
    record.update(elapsed_s=float(elapsed_s), model_path=model_path, output_path=output_path)
    record.update(extra)
    return _clean(record)


def _fmt_db(value):
    if value is None:
        return "n/a"
    value = round(float(value), 1)
    return f"{value + 0.0:.1f} dB"  # + 0.0: no "-0.0"


def _polarity_text(record):
    label = record.get("polarity_label") or ("inverted" if record["polarity"] < 0 else "normal")
    rotation = record.get("phase_rotation_deg")
    if label == "phase rotated" and rotation is not None:
        return f"not inverted; phase rotated (by {abs(rotation):.0f} degrees on average where the signal has its energy)"
    if label == "inverted" and rotation is not None and abs(rotation) < 150:
        return f"inverted, and phase rotated (the mean phase is {abs(rotation):.0f} degrees, not 180)"
    return label


def _summary_lines(record, title):
    """The human summary of an alignment record."""
    lines = [title]
    if record.get("delay_samples") is not None:
        lines.append(f"  delay       {record['delay_samples']:.2f} samples ({record['delay_ms']:.3f} ms)")
        lines.append(f"  polarity    {_polarity_text(record)}")
    label = record.get("method_label")
    if label is not None:
        text = "; ".join(f"ch{i + 1}: {m}" for i, m in enumerate(label)) if isinstance(label, list) else label
        lines.append(f"  method      {text}")
    if record.get("realtime_capable") is not None:
        lines.append("  realtime    " + ("yes (causal, never advances the dry)" if record["realtime_capable"]
                                         else "no (files only: see the note)"))
    if record.get("null_db_before") is not None:
        stages = ["before"] + (["delay+polarity"] if record.get("null_db_delay_polarity") is not None else [])
        stages.append("after")
        keys = {"before": "_before", "delay+polarity": "_delay_polarity", "after": "_after"}
        widths = [max(len(s), 9) for s in stages]
        lines.append(" " * 18 + "    ".join(s.rjust(w) for s, w in zip(stages, widths)))
        for label, key in (("broadband null", "broadband_null_db"), ("phase-only null", "null_db"),
                           ("mix loss", "mix_loss_db")):
            if record.get(key + "_before") is None:
                continue
            cells = [_fmt_db(record[key + keys[s]]).rjust(w) for s, w in zip(stages, widths)]
            lines.append(f"  {label:<16}" + " -> ".join(cells))
    lines.append(f"  time        {record['elapsed_s']:.1f} s")
    files = record.get("files_written") or []
    if files:
        lines.append(f"  wrote       {files[0]}")
        lines.extend(f"              {f}" for f in files[1:])
    return lines


def _print_out(text):
    """Print the result of a finished command on stdout; a failure there is `_StdoutLost`, not a user error."""
    try:
        if sys.stdout is None:  # started with stdout closed
            raise OSError(errno.EBADF, "stdout is closed")
        _say(sys.stdout, text)
        sys.stdout.flush()
    except OSError as err:  # the work is done: say so, and do not claim that nothing was written
        raise _StdoutLost(_stdout_lost_message(err)) from None


def _emit(args, record, title, notes=()):
    if args.json:
        _print_out(json.dumps(record, allow_nan=False))
    elif not args.quiet:
        _print_out("\n".join(_summary_lines(record, title) + list(notes)))


def _advanced_note(result):
    if result.advanced:
        return ("note: the model advances the dry (the wet leads it, or the fit chose to): fine for files, "
                "but it cannot run in real time (use --causal for that)")
    if not result.causal:
        return ("note: the model has anticausal sections (run backwards in time), which follow the phase of "
                "filters and EQs closely: fine for files, but it cannot run in real time (use --causal for that)")
    return None


def _excerpt_note(result):
    analysis = result.settings.get("analysis", {})
    if analysis.get("whole_files", True):
        return None
    return (f"note: the files are long, so the model was fitted on {analysis['duration_s']:.1f} s of their "
            f"{analysis['files_s']:.1f} s (from {analysis['start_s']:.1f} s, where dry and wet are loudest "
            f"together); the null depths and mix losses cover the whole files")


def _check_verdict(args, result):
    """Refuse an unrelated pair under --strict (before anything is written); else warn as the verdict says."""
    if getattr(args, "strict", False) and result.confidence == "unrelated":
        raise AudioError(f"--strict: WET {args.wet!r} is unrelated to DRY {args.dry!r} "
                         f"({result.warnings[0]}); nothing was written")
    for text in result.warnings:
        warnings.warn(text, UserWarning)


# -- the commands ------------------------------------------------------------------------------------------
def _read_pair(args, progress):
    progress.stage("reading audio")
    dry, fs, dry_info = read_audio(args.dry)
    wet, fs_wet, _ = read_audio(args.wet)
    _check_material(dry, fs, "DRY", args.dry)
    _check_material(wet, fs_wet, "WET", args.wet)
    wet, wet_rate = _match_rates(wet, fs, fs_wet, resample=args.resample, dry_path=args.dry, wet_path=args.wet)
    return dry, wet, fs, dry_info, wet_rate


def _analyse(args, progress, audio_out, wet_out, dry_info, wet_info):
    """Fit the pair of `_run_align`: the bounded-memory file route, or in memory (resampling, --shift wet).

    Returns (result, dry, wet, fs, wet_rate, subtype, dry_info); with the file route and `audio_out`,
    the aligned audio is already written.
    """
    subtype = getattr(args, "subtype", None)
    if dry_info["samplerate"] == wet_info["samplerate"] and wet_out is None:
        # Bounded memory: long files are analysed on an excerpt, output and metrics are streamed.
        fs, wet_rate = dry_info["samplerate"], None
        if subtype is None and audio_out is not None and _same_type(audio_out, args.dry):
            subtype = dry_info["subtype"]
        for role, path, info in (("DRY", args.dry, dry_info), ("WET", args.wet, wet_info)):
            _check_rate(info["samplerate"], role, path)
        try:
            result, dry, wet = align_files(args.dry, args.wet, audio_out, subtype=subtype, stage=progress.stage,
                                           callback=progress.fit_callback, strict=getattr(args, "strict", False),
                                           **_fit_kwargs(args))
        except ApfdspError:  # say what is wrong with the audio, if that is it
            _check_material_file(args.dry, "DRY")
            _check_material_file(args.wet, "WET")
            raise
        _check_verdict(args, result)
    else:  # resampling, or --shift wet: in memory
        dry, wet, fs, dry_info, wet_rate = _read_pair(args, progress)
        progress.stage("measuring delay, polarity and phase")
        fit = align if audio_out is not None else fit_alignment
        result = fit(dry, wet, fs=fs, **_fit_kwargs(args), callback=progress.fit_callback)
        _check_verdict(args, result)
    return result, dry, wet, fs, wet_rate, subtype, dry_info


def _run_align(args, *, command, audio_out, model_out, report, label):
    """Shared body of align / fit / demo. Returns (record, notes, result, dry, wet, fs)."""
    start = time.perf_counter()
    wet_out = _wet_out_option(args)
    _check_outputs([("-o", audio_out, "audio"), ("--model-out" if command == "align" else "-o", model_out, "model"),
                    ("--report", report, "report"), ("--wet-out", wet_out, "audio")], [args.dry, args.wet],
                   subtype=getattr(args, "subtype", None))
    progress = _progress(args, label)
    try:
        dry_info, wet_info = audio_info(args.dry), audio_info(args.wet)
        if model_out is not None:
            _refuse_per_channel_model(args, dry_info["channels"], "--model-out" if command == "align" else "fit")
        written = []
        result, dry, wet, fs, wet_rate, subtype, dry_info = _analyse(args, progress, audio_out, wet_out, dry_info,
                                                                     wet_info)
        drawn, wet_shift = result, _wet_shift(result.cascade) if wet_out is not None else 0
        if wet_shift:  # delay the wet instead of advancing the dry
            cascade = _without_advance(result.cascade, wet_shift)
            result = dataclasses.replace(result, cascade=cascade, aligned=_apply_models(cascade, dry))
        if audio_out is not None and (wet_rate is not None or wet_out is not None):
            progress.stage("writing audio")
            _write_like(audio_out, result.aligned, fs, args.dry, dry_info, [args.dry, args.wet], subtype)
        if audio_out is not None:
            written.append(audio_out)
        if wet_out is not None:
            _write_like(wet_out, _delay_wet(wet, wet_shift), fs, args.dry, dry_info, [args.dry, args.wet],
                        args.subtype)
            written.append(wet_out)
        if model_out is not None:
            save_model(model_out, result.cascade, metadata=_model_metadata(command, args, result, fs, wet_rate))
            written.append(model_out)
        if report is not None:
            progress.stage("drawing the report")
            _draw_report(report, drawn, dry, wet, fs, title=_displayable(f"{os.path.basename(args.dry)} vs "
                                                                         f"{os.path.basename(args.wet)}"))
            written.append(report)
    finally:
        progress.close()
    record = _record(result.summary(), elapsed_s=time.perf_counter() - start, model_path=model_out,
                     output_path=audio_out, fs=fs, dry_path=args.dry, wet_path=args.wet,
                     wet_resampled_from_hz=wet_rate, advanced=bool(result.advanced), files_written=written,
                     analysis=result.settings.get("analysis", {"whole_files": True}),
                     **({"wet_delay_samples": wet_shift, "wet_output_path": wet_out} if wet_out else {}))
    notes = [n for n in (_advanced_note(result), _excerpt_note(result)) if n]
    if wet_rate is not None:
        notes.insert(0, f"note: WET was resampled from {wet_rate} Hz to {fs} Hz")
    return record, notes, result, dry, wet, fs


def _wet_out_option(args):
    """The --wet-out path (None for commands without it); --shift wet and --wet-out go together."""
    wet_out, shift = getattr(args, "wet_out", None), getattr(args, "shift", "dry")
    if wet_out is None and shift == "wet" and hasattr(args, "wet_out"):
        raise ParameterError("--shift wet delays the wet, so it needs --wet-out W.wav to write the delayed wet to")
    if wet_out is not None and shift != "wet":
        raise ParameterError("--wet-out writes the delayed wet of --shift wet; add --shift wet or drop --wet-out")
    return wet_out


def _wet_shift(cascade):
    """Whole samples by which the model(s) advance the dry: what the wet is delayed by instead."""
    cascades = cascade if isinstance(cascade, list) else [cascade]
    return max(0, -min(c.integer_delay for c in cascades))


def _without_advance(cascade, shift):
    """The model(s) with `shift` whole samples of delay added (their advance taken out)."""
    def delayed(c):
        return AllpassCascade(list(c) + [Delay(float(shift))], fs=c.fs)
    return [delayed(c) for c in cascade] if isinstance(cascade, list) else delayed(cascade)


def _apply_models(cascade, dry):
    if isinstance(cascade, list):
        return np.stack([c.apply(d) for c, d in zip(cascade, dry)])
    return cascade.apply(dry)


def _delay_wet(wet, shift):
    """`wet` delayed by `shift` samples; nothing is dropped (it gets longer by `shift`)."""
    return np.pad(wet, [(0, 0)] * (wet.ndim - 1) + [(int(shift), 0)])


def _cmd_align(args):
    record, notes, *_ = _run_align(args, command="align", audio_out=args.output, model_out=args.model_out,
                                   report=args.report, label="apfdsp align")
    _emit(args, record, f"apfdsp align: {args.dry} aligned with {args.wet} ({record['fs']} Hz)", notes)
    return 0


def _cmd_fit(args):
    record, notes, *_ = _run_align(args, command="fit", audio_out=None, model_out=args.output,
                                   report=args.report, label="apfdsp fit")
    _emit(args, record, f"apfdsp fit: model of {args.dry} -> {args.wet} ({record['fs']} Hz)", notes)
    return 0


def _cmd_apply(args):
    start = time.perf_counter()
    model_path = _resolve_model(args.model)
    _check_outputs([("-o", args.output, "audio")], [args.input, model_path], subtype=args.subtype)
    cascade, metadata = load_model(model_path)
    progress = _progress(args, "apfdsp apply")
    try:
        info = apply_file(cascade, args.input, args.output, subtype=args.subtype, progress=progress.file_callback)
    finally:
        progress.close()
    record = _record(_model_summary(cascade, metadata), elapsed_s=time.perf_counter() - start, model_path=model_path, output_path=args.output,
                     fs=info["samplerate"], input_path=args.input, frames=info["frames"],
                     channels=info["channels"], subtype=info["subtype"], files_written=[args.output])
    title = (f"apfdsp apply: {args.input} through {args.model} "
             f"({info['frames']} frames, {info['channels']} ch, {info['samplerate']} Hz, {info['subtype']})")
    _emit(args, record, title)
    return 0


def _mix(aligned, wet, ratio):
    """(1 - ratio) * aligned + ratio * wet, with the length of `aligned`; channels broadcast."""
    n = aligned.shape[-1]
    wet = wet[..., :n]
    if wet.shape[-1] < n:
        wet = np.pad(wet, [(0, 0)] * (wet.ndim - 1) + [(0, n - wet.shape[-1])])
    a2, w2 = np.atleast_2d(aligned), np.atleast_2d(wet)
    if a2.shape[0] != w2.shape[0] and 1 not in (a2.shape[0], w2.shape[0]):
        raise ParameterError(
            f"DRY has {a2.shape[0]} channels and WET {w2.shape[0]}: they must match, or one must be mono"
        )
    out = (1.0 - ratio) * a2 + ratio * w2
    return out[0] if out.shape[0] == 1 else out


def _cmd_mix(args):
    start = time.perf_counter()
    model_path = None if args.model is None else _resolve_model(args.model)
    inputs = [args.dry, args.wet] + ([model_path] if model_path else [])
    _check_outputs([("-o", args.output, "audio")], inputs, subtype=args.subtype)
    cascade, metadata = (None, None) if model_path is None else load_model(model_path)
    progress = _progress(args, "apfdsp mix")
    try:
        dry, wet, fs, dry_info, wet_rate = _read_pair(args, progress)
        if cascade is not None:
            if cascade.fs != fs:
                raise AudioError(
                    f"the model {model_path!r} was fitted at {cascade.fs:g} Hz but DRY {args.dry!r} is "
                    f"sampled at {fs} Hz; fit a model at {fs} Hz (apfdsp fit) or drop --model"
                )
            _mix(dry, wet, args.wet_ratio)  # check the channel layout before filtering
            aligned = cascade.apply(dry)
            before, after = mix_report(dry, wet, fs=fs), mix_report(aligned, wet, fs=fs)
            summary = dict(_model_summary(cascade, metadata),
                           mix_loss_db_before=before["mix_loss_db"], mix_loss_db_after=after["mix_loss_db"],
                           null_db_before=before["null_db"], null_db_after=after["null_db"],
                           broadband_null_db_before=before["broadband_null_db"],
                           broadband_null_db_after=after["broadband_null_db"])
        else:
            progress.stage("measuring delay, polarity and phase")
            result = align(dry, wet, fs=fs, **_fit_kwargs(args), callback=progress.fit_callback)
            _check_verdict(args, result)
            aligned, summary, cascade = result.aligned, result.summary(), result.cascade
        wet_shift = _wet_shift(cascade) if args.shift == "wet" else 0
        if wet_shift:  # delay the wet instead of advancing the dry: the mix gets longer by wet_shift
            dry_padded = np.pad(dry, [(0, 0)] * (dry.ndim - 1) + [(0, wet_shift)])
            aligned, wet = _apply_models(_without_advance(cascade, wet_shift), dry_padded), _delay_wet(wet, wet_shift)
        mixed = _mix(aligned, wet, args.wet_ratio)
        progress.stage("writing audio")
        _write_like(args.output, mixed, fs, args.dry, dry_info, inputs, args.subtype)
    finally:
        progress.close()
    record = _record(summary, elapsed_s=time.perf_counter() - start, model_path=model_path,
                     output_path=args.output, fs=fs, wet_ratio=args.wet_ratio, wet_resampled_from_hz=wet_rate,
                     wet_delay_samples=wet_shift, files_written=[args.output])
    title = f"apfdsp mix: {1 - args.wet_ratio:.0%} aligned {args.dry} + {args.wet_ratio:.0%} {args.wet} ({fs} Hz)"
    _emit(args, record, title)
    return 0


def _cmd_plot(args):
    model_path = _resolve_model(args.model)
    _check_outputs([("-o", args.output, "figure")], [model_path])
    cascade, _ = load_model(model_path)
    title = _displayable(args.title if args.title is not None else os.path.basename(args.model))
    _plot_module().model_figure(cascade, args.output, title=title)
    if not args.quiet:
        _print_out(f"apfdsp plot: wrote {args.output}")
    return 0


def _cmd_demo(args):
    """The demo writes into a hidden staging directory inside DIR and moves the files into DIR at the
    end, so that a failure or a signal leaves DIR as it was (and removes DIR if the demo created it)."""
    start = time.perf_counter()
    out_dir = args.output_dir
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputError(f"cannot use -o {out_dir!r}: it is a file, not a directory")
    created = _missing_directories(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the directory {out_dir!r}: {os_error_text(err)}") from None
    staging = None
    try:
        staging = tempfile.mkdtemp(prefix=TEMPORARY_PREFIX, dir=out_dir)
        record, notes = _demo_files(args, staging)
        with _signals_deferred():
            for name in sorted(os.listdir(staging)):
                os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
    except BaseException:
        with _signals_deferred():
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            for directory in created:  # innermost first; only the (empty) ones the demo made
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
        raise
    os.rmdir(staging)

    def final(path):
        return os.path.join(out_dir, os.path.relpath(path, staging)) if isinstance(path, str) else path

    record.update({key: final(record.get(key)) for key in ("dry_path", "wet_path", "output_path", "model_path")})
    record.update(elapsed_s=time.perf_counter() - start, files_written=[final(f) for f in record["files_written"]],
                  output_dir=out_dir)
    _emit(args, record, f"apfdsp demo: a {args.duration:g} s synthetic track through a virtual-analog-style "
                        f"effect, aligned ({record['fs']} Hz)", notes)
    return 0


def _missing_directories(path):
    """The directories `os.makedirs(path)` would create, innermost first."""
    missing, path = [], os.path.abspath(path)
    while not os.path.isdir(path) and path != os.path.dirname(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


@contextlib.contextmanager
def _signals_deferred():
    """Hold back SIGINT / SIGTERM / SIGHUP (where the OS allows) until the block is done."""
    mask = getattr(os_signal, "pthread_sigmask", None)
    if mask is None:
        yield
        return
    old = mask(os_signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        mask(os_signal.SIG_SETMASK, old)


def _demo_files(args, out_dir):
    """Write the demo's files into `out_dir`; return (record, notes)."""
    paths = {name: os.path.join(out_dir, f"{name}.{ext}") for name, ext in (
        ("dry", "wav"), ("wet", "wav"), ("dry_aligned", "wav"), ("model", "json"), ("report", "png"),
        ("mix_before", "wav"), ("mix_after", "wav"))}
    fs = _DEMO_DEFAULTS["fs"]
    progress = _progress(args, "apfdsp demo")
    progress.stage("making the demo material")
    try:
        dry = demo_dry(fs=fs, duration_s=args.duration)
        wet = demo_effect(dry, fs=fs)
        write_audio(paths["dry"], dry, fs, subtype=args.subtype)
        write_audio(paths["wet"], wet, fs, subtype=args.subtype)
    finally:
        progress.close()
    fit_args = argparse.Namespace(dry=paths["dry"], wet=paths["wet"], resample=False, quiet=args.quiet, json=args.json,
                                  n_sections=API_DEFAULTS["n_sections"], structure=API_DEFAULTS["structure"],
                                  seed=API_DEFAULTS["seed"], max_delay_ms=1e3 * API_DEFAULTS["max_delay_s"],
                                  per_channel=API_DEFAULTS["per_channel"], causal=API_DEFAULTS["causal"],
                                  subtype=args.subtype)
    record, notes, result, *_ = _run_align(
        fit_args, command="demo", audio_out=paths["dry_aligned"], model_out=paths["model"], report=paths["report"],
        label="apfdsp demo")
    # A long demo is aligned by streaming (result.aligned is None then): the mixes use the file written.
    aligned = result.aligned if result.aligned is not None else read_audio(paths["dry_aligned"])[0]
    write_audio(paths["mix_before"], _mix(dry, wet, 0.5), fs, subtype=args.subtype)
    write_audio(paths["mix_after"], _mix(aligned, wet, 0.5), fs, subtype=args.subtype)
    files = [paths["dry"], paths["wet"]] + record["files_written"] + [paths["mix_before"], paths["mix_after"]]
    record.update(files_written=files)
    notes += [
        "",
        "Listen to mix_before.wav, then mix_after.wav: the same 50/50 dry/wet mix before and after",
        "alignment (the comb filtering is gone). Then try your own files:",
        "  apfdsp align DRY.wav WET.wav -o DRY_aligned.wav --model-out model.json",
    ]
    return record, notes


def _cmd_pretrained(args):
    module = _pretrained_module()
    models = [] if module is None else module.list_models()
    if isinstance(models, dict):
        models = [{"name": name, **(info if isinstance(info, dict) else {"description": info})}
                  for name, info in models.items()]
    if args.json:
        print(json.dumps({"models": [_clean(m if isinstance(m, dict) else {"name": m if isinstance(m, str) else m[0]})
                                     for m in models]}, allow_nan=False))
        return 0
    if not models:
        print("No pretrained models are installed with this apfdsp. "
              "Fit your own with 'apfdsp fit DRY WET -o model.json'.")
        return 0
    for item in models:
        if isinstance(item, dict):
            name = item.get("name", "?")
            rest = [str(item[k]) for k in ("description", "fs") if item.get(k) is not None]
            if "fs" in item and item["fs"] is not None:
                rest[-1] = f"{float(item['fs']):g} Hz"
            print(f"pretrained:{name}" + (f"  {' - '.join(rest)}" if rest else ""))
        elif isinstance(item, (tuple, list)):
            print(f"pretrained:{item[0]}" + ("  " + " - ".join(map(str, item[1:])) if len(item) > 1 else ""))
        else:
            print(f"pretrained:{item}")
    return 0


# -- entry point ------------------------------------------------------------------------------------------
# API parameter names that appear in library messages -> the option a CLI user typed.
_OPTION_NAMES = {"n_sections": "--sections", "structure": "--structure", "seed": "--seed"}


# Library messages about what the audio lacks -> what it means to a CLI user (the API's names mean nothing there).
_CLI_TERMS = (
    (r"^(freqs|f) must be .*", "the audio has too little usable content across the spectrum to fit a filter: use a "
                               "few seconds of broadband material (a full mix, drums, noise)"),
    (r"^pole frequency range .*", "the sample rate is too low to fit an allpass filter"),
    (r"^all fitting weights are zero.*", "DRY and WET share no coherent sound at any frequency: are they the same "
                                          "take before and after the effect?"),
    (r"^cannot write (.*): subtype '(\w+)' is not available for (\w+) files; pass subtype=.*",
     r"cannot write \1: the input's sample format (\2) does not exist in \3 files; write the input's file type "
     r"(e.g. .wav), and convert it with another tool if you need \3"),
    (r"^(x|y|x or y) is silent.*", "DRY or WET is silent over the part apfdsp measures (a long silence at the "
                                   "start?): trim the silence and try again"),
    (r"^duration_s must lie in \[([^,]+), .*", r"--duration must be at least \1 seconds"),
)


def _option_names(message):
    for pattern, text in _CLI_TERMS:
        if re.match(pattern, message):
            return re.sub(pattern, text, message, flags=re.DOTALL)
    return re.sub(r"\b(" + "|".join(_OPTION_NAMES) + r")\b(?= must)", lambda m: _OPTION_NAMES[m.group(1)], message)


def _say(stream, text):
    """Print `text` on `stream`; characters it cannot encode (non-UTF-8 file names) are escaped."""
    try:
        print(text, file=stream)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "utf-8"
        print(text.encode(encoding, "backslashreplace").decode(encoding), file=stream)


def _displayable(text):
    """`text` with the undecodable bytes of file names (surrogate escapes) shown as U+FFFD, for figures."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _error(message):
    _say(sys.stderr, f"apfdsp: error: {' '.join(str(message).split())}")


# The terminating signals the command line cleans up after (temporary and partial files are removed).
_SIGNALS = tuple(getattr(os_signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(os_signal, name))


class _Terminated(BaseException):
    """Raised by the handler of SIGTERM / SIGHUP, so that every ``finally`` and clean-up runs (as for Ctrl-C)."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    for sig in _SIGNALS:  # one clean-up, not interrupted by the next signal
        os_signal.signal(sig, os_signal.SIG_IGN)
    if signum == os_signal.SIGINT:
        raise KeyboardInterrupt
    raise _Terminated(signum)


class _SignalHandlers:
    """Install `_on_signal` for `_SIGNALS` (main thread only) and restore the previous handlers on exit."""

    def __enter__(self):
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self.previous[sig] = os_signal.signal(sig, _on_signal)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            os_signal.signal(sig, handler if handler is not None else os_signal.SIG_DFL)


class _StdoutLost(Exception):
    """The results were written, but printing them on stdout failed (a closed pipe, a full disk)."""


def _stdout_lost_message(err):
    return f"the command finished (its files are written), but printing on stdout failed: {os_error_text(err)}"


def _silence_stdout():
    """Point stdout at /dev/null, so that Python's final flush does not fail again at exit."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _run(args):
    """Run the command; return ``(code, message)``: the exit code and the one-line error (or None)."""
    try:
        with _SignalHandlers():
            return args.func(args), None
    except ApfdspError as err:
        return 2, _option_names(str(err))
    except _StdoutLost as err:
        return 3, str(err)
    except OSError as err:
        where = f"{err.filename!r}: " if err.filename else ""
        return 2, f"{where}{os_error_text(err)}"
    except MemoryError:
        return 2, ("out of memory: this input needs more memory than the machine has; "
                   "use a shorter excerpt (see 'apfdsp --help' for the limits)")
    except KeyboardInterrupt:
        return 128 + int(os_signal.SIGINT), "interrupted (Ctrl-C): stopped; no partial file was left"
    except _Terminated as stop:
        name = os_signal.Signals(stop.signum).name
        return 128 + stop.signum, f"terminated by {name}: stopped; no partial file was left"
    except Exception:  # a bug: show it
        traceback.print_exc()
        _say(sys.stderr, "apfdsp: internal error: this is a bug; please report it with the traceback above")
        return 1, None


def main(argv=None):
    """Run the ``apfdsp`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    code : int
        0 on success, 2 for a user error (bad options, unusable input, unwritable output), 1 for an
        unexpected error (a bug; the traceback is printed), 3 when the files were written but the
        summary could not be printed on stdout (a closed pipe, a full disk), 128 + N when stopped
        by signal N (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP; no partial or temporary file
        is left).

    Examples
    --------
    A user error is one line on stderr and exit code 2 (docs/architecture.md, section 3.3):

    >>> import contextlib, io
    >>> stderr = io.StringIO()
    >>> with contextlib.redirect_stderr(stderr):
    ...     code = main(["apply", "no-such-model.json", "in.wav", "-o", "out.wav"])
    >>> code, stderr.getvalue().startswith("apfdsp: error: "), len(stderr.getvalue().splitlines())
    (2, True, 1)
    >>> main(["--version"])  # doctest: +ELLIPSIS
    apfdsp ...
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except _UsageError as err:
        _error(err)
        return 2
    except SystemExit as exit_:  # --help and --version
        return exit_.code if isinstance(exit_.code, int) else 0
    if args.command is None:
        parser.print_help()
        _error("choose a command, e.g. 'apfdsp demo' or 'apfdsp align DRY WET -o OUT'")
        return 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        code, message = _run(args)
    if code == 3:
        _silence_stdout()
    with contextlib.suppress(OSError):
        for w in caught:
            text = str(w.message).replace("write subtype='FLOAT'", "pass --subtype FLOAT")
            _say(sys.stderr, f"apfdsp: warning: {' '.join(text.split())}")
        if message is not None:
            _error(message)
    return code


def console_main():
    """The ``apfdsp`` executable (and ``python -m apfdsp``): `main` on ``sys.argv``, for a process that ends next.

    Returns
    -------
    code : int
        The exit code of `main`.

    Notes
    -----
    Before returning, the objects alive are moved out of the garbage collector's reach (`gc.freeze`): the
    process ends next, and the collections Python runs while shutting down would otherwise walk every
    object scipy created at import (about 0.08 s of a 1.2 s alignment, measured in
    ``benchmarks/speed_memory.py``). Files are closed and outputs written before this point.

    Examples
    --------
    >>> import gc, sys
    >>> saved, sys.argv = sys.argv, ["apfdsp", "--version"]
    >>> console_main()  # doctest: +ELLIPSIS
    apfdsp ...
    0
    >>> sys.argv = saved
    >>> gc.unfreeze()
    """
    code = main()
    gc.freeze()
    return code
