"""Fuzz cases for the command line: mutated model files and random option sets.

Shared by tests/test_fuzz.py (hypothesis supplies the `random.Random`, few examples) and
benchmarks/fuzz_cli.py (a seeded `random.Random`, the acceptance-size run). Every case runs
``apfdsp.cli.main`` in-process and is judged by `judge`: exit 0, or exit 2 with exactly one
``apfdsp: error:`` line and no traceback; no file left beside the outputs, inputs unchanged.
"""

import contextlib
import copy
import hashlib
import io
import json
import os
import shutil

import numpy as np

from apfdsp.cascade import Allpass1, Allpass2, AllpassCascade, Delay, Polarity
from apfdsp.cli import main
from apfdsp.io import save_model, write_audio

FS = 8000
# Values a hostile or damaged file may hold where a number is expected.
ODD_VALUES = [0, -1, 1, 2, 63, 64, 65, 1000, 10**8, 2**31, 2**63, -(2**63), 1e30, -1e30, 1e-300, 0.5, 0.999999999,
              -0.999999999, 1.0, -1.0, 1e308, "1", "", None, True, False, [], {}, [1, 2], {"a": 1}, 48000, 4.8e4,
              96000.0, 2147483647]
CELL_KEYS = ["type", "pole_radius", "fc_hz", "warp", "stretch", "anticausal", "coef", "samples", "sign", "extra"]
DOC_KEYS = ["format", "format_version", "fs", "cascade", "sos", "sos_anticausal", "integer_delay", "polarity",
            "metadata"]


def make_inputs(directory, *, seconds=0.25, channels=1):
    """Write a short noise file and a valid model into `directory`; return their paths."""
    rng = np.random.default_rng(0)
    audio = os.path.join(directory, "in.wav")
    write_audio(audio, 0.1 * rng.standard_normal((channels, int(seconds * FS))).squeeze(), FS, subtype="PCM_16")
    model = os.path.join(directory, "model.json")
    cascade = AllpassCascade([Allpass2(0.8, 500.0, 0.2), Allpass1(-0.4, anticausal=True), Allpass2(0.5, 2000.0),
                              Delay(3.4), Polarity(-1)], fs=FS)
    save_model(model, cascade, metadata={"summary": {"delay_samples": 3.4}})
    return audio, model


def reseal(doc):
    """Recompute what a model file stores beside its cells (SOS, delay, polarity, fs), so that a mutated
    file passes the consistency check and reaches the filter. Returns False when the cells do not
    make a cascade of moderate size (such files stay as they are: the loader must refuse them)."""
    cells = doc.get("cascade", {}).get("cells") if isinstance(doc.get("cascade"), dict) else None
    if not isinstance(cells, list) or len(cells) > 64:
        return False
    if any(isinstance(c, dict) and not (isinstance(c.get("stretch", 1), int) and 1 <= c.get("stretch", 1) <= 8)
           for c in cells):
        return False
    try:
        cascade = AllpassCascade.from_dict(doc["cascade"])
        sos, anticausal = cascade.sos, cascade.sos_anticausal
    except (ValueError, TypeError, KeyError, OverflowError):
        return False
    if not (np.all(np.isfinite(sos)) and np.all(np.isfinite(anticausal))):
        return False
    doc.update(fs=cascade.fs, sos=sos.tolist(), integer_delay=cascade.integer_delay, polarity=cascade.polarity)
    doc["cascade"]["fs"] = cascade.fs
    if len(anticausal):
        doc.update(sos_anticausal=anticausal.tolist(), format_version=2)
    else:
        doc.pop("sos_anticausal", None)
    return True


def _odd(rnd):
    value = rnd.choice(ODD_VALUES)
    if rnd.random() < 0.4:  # a nearby value of the right kind
        value = rnd.choice([rnd.uniform(-2, 2), rnd.uniform(0, 30000), 10 ** rnd.uniform(-10, 12),
                            rnd.randint(-10**6, 10**6), -10 ** rnd.uniform(-10, 12)])
    return value


def _plausible(key, rnd):
    """A value of `key` inside or at the edge of its valid range (so that resealed files reach the filter)."""
    edge = rnd.random() < 0.3
    return {
        "pole_radius": lambda: rnd.choice([0.0, 0.999, 0.9999999, 1 - 1e-12]) if edge else rnd.uniform(0, 0.99),
        "fc_hz": lambda: rnd.choice([0.0, FS / 2, 1e-9, FS / 2 - 1e-9]) if edge else rnd.uniform(0, FS / 2),
        "warp": lambda: rnd.choice([0.999999999, -0.999999999, 0.99, -0.99]) if edge else rnd.uniform(-0.95, 0.95),
        "coef": lambda: rnd.choice([0.999999999, -0.999999999, 0.0]) if edge else rnd.uniform(-0.99, 0.99),
        "samples": lambda: rnd.choice([0.5, -0.5, 1999.0, -1999.0, 1e6, 0.0]) if edge else rnd.uniform(-300, 300),
        "stretch": lambda: rnd.choice([1, 8, 64]) if edge else rnd.randint(1, 8),
        "anticausal": lambda: rnd.random() < 0.5,
        "sign": lambda: rnd.choice([1, -1]),
    }.get(key, lambda: _odd(rnd))()


def mutate_model(doc, rnd, n_mutations=None):
    """Apply 1-4 random mutations to a model document (in place); return a description."""
    done = []
    for _ in range(n_mutations or rnd.randint(1, 4)):
        cells = doc.get("cascade", {}).get("cells") if isinstance(doc.get("cascade"), dict) else None
        kind = rnd.choice(["cell nudge"] * 8 + ["cell value", "cell value", "cell key", "drop cell", "copy cells",
                                                "doc value", "drop key", "nest", "cell type"])
        if kind.startswith("cell") and isinstance(cells, list) and cells and isinstance(cells[0], dict):
            cell = cells[rnd.randrange(len(cells))]
            if not isinstance(cell, dict):
                continue
            if kind == "cell nudge":
                key = rnd.choice([k for k in cell if k != "type"] or ["type"])
                cell[key] = _plausible(key, rnd)
            elif kind == "cell type":
                cell["type"] = rnd.choice(["allpass1", "allpass2", "delay", "polarity", "thing", 3])
            elif kind == "cell key":
                cell.pop(rnd.choice(CELL_KEYS), None) if rnd.random() < 0.5 else cell.update(
                    {rnd.choice(CELL_KEYS): _odd(rnd)})
            else:
                keys = [k for k in cell if k != "type"] or ["type"]
                cell[rnd.choice(keys)] = _odd(rnd)
        elif kind == "drop cell" and isinstance(cells, list) and cells:
            del cells[rnd.randrange(len(cells))]
        elif kind == "copy cells" and isinstance(cells, list) and cells:
            cells.extend(copy.deepcopy(cells) * rnd.choice([1, 3, 300]))
        elif kind == "doc value":
            doc[rnd.choice(DOC_KEYS)] = _odd(rnd)
        elif kind == "drop key":
            doc.pop(rnd.choice(DOC_KEYS), None)
        elif kind == "nest":  # written out by `model_text` (json cannot build or dump it this deep)
            doc["metadata"] = NEST.format(rnd.choice([5, 40, 5000, 200000]))
        done.append(kind)
    return done


NEST = "<nested {} deep>"


def model_text(doc):
    """JSON text of a (mutated) model document, with the nesting `mutate_model` asked for."""
    text = json.dumps(doc, allow_nan=True)
    metadata = doc.get("metadata")
    if isinstance(metadata, str) and metadata.startswith("<nested "):
        depth = int(metadata.split()[1])
        text = text.replace(json.dumps(metadata), "[" * depth + "]" * depth)
    return text


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_cli(argv):
    """Run ``apfdsp.cli.main(argv)`` in-process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([os.fspath(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def judge(code, err, directory, before, inputs, outputs):
    """The problems of one run (an empty list when it behaved): see the module docstring."""
    problems = []
    if code not in (0, 2):
        problems.append(f"exit {code}")
    if "Traceback" in err or "internal error" in err:
        problems.append("traceback")
    error_lines = [line for line in err.splitlines() if line.startswith("apfdsp: error:")]
    if code == 2 and (len(error_lines) != 1 or any(not line.startswith("apfdsp: ") for line in err.splitlines())):
        problems.append("not one error line")
    expected = set(before) | ({os.path.basename(o) for o in outputs} if code == 0 else set())
    left = set(os.listdir(directory)) - expected
    if left:
        problems.append(f"leftovers {sorted(left)}")
    if code == 2 and set(os.listdir(directory)) != set(before):
        problems.append("files changed on failure")
    for path, sha in inputs.items():
        if digest(path) != sha:
            problems.append(f"input changed: {os.path.basename(path)}")
    return problems


def model_case(directory, audio, model, rnd, command):
    """Mutate `model` into a new file, run `command` ("apply" or "plot") on it; return (code, problems, doc)."""
    with open(model) as f:
        doc = json.load(f)
    mutate_model(doc, rnd)
    if rnd.random() < 0.8:
        reseal(doc)
    crafted = os.path.join(directory, "crafted.json")
    with open(crafted, "w") as f:
        f.write(model_text(doc))
    for name in ("out.wav", "out.png"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(directory, name))
    before = sorted(os.listdir(directory))
    inputs = {p: digest(p) for p in (audio, model, crafted)}
    output = os.path.join(directory, "out.wav" if command == "apply" else "out.png")
    argv = ["apply", crafted, audio, "-o", output, "-q"] if command == "apply" else ["plot", crafted, "-o", output, "-q"]
    code, _, err = run_cli(argv)
    return code, judge(code, err, directory, before, inputs, [output]), err


# Option values: the ordinary, the edges, and the hostile.
OPTION_VALUES = ["0", "1", "-1", "2", "64", "65", "1000", "1e9", "nan", "inf", "-inf", "0.5", "1e-300", "abc", "",
                 "0x10", "3.5", "600", "601", "0.01", "60000", "60001", "traditional", "stretched", "warped", "--quiet"]


def option_case(directory, audio, model, rnd):
    """Run one command with random option values; return (code, problems, stderr)."""
    command = rnd.choice(["align", "fit", "mix", "apply", "plot", "demo"])
    out = {"align": "out.wav", "fit": "out.json", "mix": "out.wav", "apply": "out.wav", "plot": "out.png",
           "demo": "demo"}[command]
    out_path = os.path.join(directory, rnd.choice([out, out, "out.mp3", "out.xyz", "in.wav", "sub/" + out]))
    argv = {"align": [command, audio, audio, "-o", out_path], "fit": [command, audio, audio, "-o", out_path],
            "mix": [command, audio, audio, "-o", out_path], "apply": [command, model, audio, "-o", out_path],
            "plot": [command, model, "-o", out_path], "demo": [command, "-o", out_path]}[command]
    options = {"align": ["--sections", "--structure", "--seed", "--max-delay-ms"],
               "fit": ["--sections", "--structure", "--seed", "--max-delay-ms"],
               "mix": ["--wet-ratio", "--sections", "--seed", "--max-delay-ms"],
               "apply": [], "plot": ["--title"], "demo": ["--duration"]}[command]
    if command == "mix":
        argv += ["--wet-ratio", rnd.choice(OPTION_VALUES + ["0.3"] * 5)]
    if command == "demo":
        argv += ["--duration", rnd.choice(OPTION_VALUES + ["1"] * 10)]
    for option in options:
        if rnd.random() < 0.4:
            argv += [option, rnd.choice(OPTION_VALUES)]
    if command in ("align", "fit") and rnd.random() < 0.3:
        argv += [rnd.choice(["--causal", "--per-channel", "--resample", "--json"])]
    if rnd.random() < 0.1:
        argv.insert(rnd.randrange(1, len(argv) + 1), rnd.choice(["--bogus", "-x", "--sections"]))
    argv.append("-q")
    before = sorted(os.listdir(directory))
    inputs = {p: digest(p) for p in (audio, model)}
    code, _, err = run_cli(argv)
    top = os.path.join(directory, os.path.relpath(out_path, directory).split(os.sep)[0])  # sub/out.wav: sub
    problems = judge(code, err, directory, before, inputs, [top])
    for name in set(os.listdir(directory)) - set(before):  # a successful run's output: not kept for the next case
        path = os.path.join(directory, name)
        (os.remove if os.path.isfile(path) else shutil.rmtree)(path)
    return code, problems, err
