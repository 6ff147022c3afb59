"""Results files of the benchmark scripts: ``benchmarks/results/NAME.json``, the source of the README's tables.

Each script calls `save` with its rows; the file records where the numbers come from: the script, the
commit (``+dirty`` when apfdsp/ had uncommitted changes), the date, the machine's core count and load, and
the versions of Python, numpy, scipy, autograd, soundfile and threadpoolctl. `provenance` turns that into
the line printed under the README table (``benchmarks/readme_tables.py``).
"""

import json
import os
import platform
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")


def commit():
    """Short hash of HEAD, with ``+dirty`` when apfdsp/ has uncommitted changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "apfdsp"], capture_output=True, text=True,
                               cwd=HERE, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions():
    from importlib import metadata

    import numpy
    import scipy
    import soundfile
    import threadpoolctl

    return {"python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__,
            "autograd": metadata.version("autograd"), "soundfile": soundfile.__version__,
            "threadpoolctl": threadpoolctl.__version__}


def start():
    """The machine's 1-minute load before a run (pass it to `save`)."""
    return round(os.getloadavg()[0], 2)


def save(name, script, rows, *, load_before, **extra):
    """Write ``benchmarks/results/NAME.json`` and return the results dict."""
    results = {"script": script, "commit": commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "versions": versions(),
               "machine": {"nproc": os.cpu_count(), "loadavg_1min_before": load_before,
                           "loadavg_1min_after": round(os.getloadavg()[0], 2)},
               **extra, "rows": rows}
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, f"{name}.json"), "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    return results


def load(name):
    with open(os.path.join(RESULTS_DIR, f"{name}.json")) as f:
        return json.load(f)


def provenance(results):
    """One Markdown line: script, commit, date, load and versions of a results file."""
    v, machine = results["versions"], results["machine"]
    return (f"*Made by `python {results['script']}` at commit `{results['commit']}`, {results['date']}; "
            f"{machine['nproc']} cores, 1-minute load {machine['loadavg_1min_before']} before and "
            f"{machine['loadavg_1min_after']} after the run; Python {v['python']}, numpy {v['numpy']}, "
            f"scipy {v['scipy']}, autograd {v['autograd']}.*")
