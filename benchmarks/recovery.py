"""Recovery of random ground-truth allpass cascades from their exact phase (issue: core acceptance).

    python benchmarks/recovery.py --n 100          # full run: benchmarks/results/recovery.json

Targets: fs = 48 kHz, traditional and warped second-order sections (2 to 8), R in [0.3, 0.97],
fc log-uniform 30 Hz - 18 kHz; one in four targets also has a first-order section and a polarity
flip. Grid: 2048 log-spaced frequencies 20 Hz - 20 kHz. Metric: weighted RMS wrapped phase error.
"""

import argparse
import json
import time

import numpy as np

import results_file
from apfdsp import Allpass1, Allpass2, AllpassCascade, Polarity, fit_phase

FS = 48000.0


def random_target(rng):
    """A random ground-truth cascade as described in the module docstring."""
    n = int(rng.integers(2, 9))
    cells = []
    warped = rng.random() < 0.5
    for _ in range(n):
        radius = rng.uniform(0.3, 0.97)
        fc = float(np.exp(rng.uniform(np.log(30.0), np.log(18000.0))))
        warp = float(rng.uniform(-0.7, 0.7)) if warped else 0.0
        cells.append(Allpass2(radius, fc, warp))
    if rng.random() < 0.25:
        cells.append(Allpass1(float(rng.uniform(-0.99, 0.5))))
        cells.append(Polarity(-1))
    return AllpassCascade(cells, fs=FS)


def run(n_targets, seed=0, **fit_options):
    rng = np.random.default_rng(seed)
    freqs = np.geomspace(20.0, 20000.0, 2048)
    rows = []
    for i in range(n_targets):
        truth = random_target(rng)
        result = fit_phase(freqs, truth.phase(freqs), fs=FS, seed=i, **fit_options)
        rows.append({"target": i, "n_cells": len(truth), "error_rad": result.phase_error_rad,
                     "seconds": result.elapsed_s, "start": result.start, "fitted_cells": len(result.cascade)})
    return rows


def summary(rows, threshold=0.02):
    errors = np.array([r["error_rad"] for r in rows])
    seconds = np.array([r["seconds"] for r in rows])
    return {
        "n": len(rows),
        "below_threshold": int(np.sum(errors < threshold)),
        "error_percentiles_rad": {p: float(np.percentile(errors, p)) for p in (50, 90, 95, 99, 100)},
        "seconds_median": float(np.median(seconds)),
        "seconds_max": float(seconds.max()),
    }


def table(results):
    """The README's Markdown table of a recovery results dict."""
    summ = summary(results["rows"])
    p = summ["error_percentiles_rad"]
    p = {int(k): v for k, v in p.items()}
    return ("| targets | error < 0.02 rad | median error | 99th percentile | worst | median s per fit | whole run |\n"
            "|---:|---:|---:|---:|---:|---:|---:|\n"
            f"| {summ['n']} | {summ['below_threshold']} | {p[50]:.1e} rad | {p[99]:.1e} rad | {p[100]:.1e} rad | "
            f"{summ['seconds_median']:.2f} | {results['total_s']:.0f} s |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--structure", default="warped")
    args = parser.parse_args()
    load_before = results_file.start()
    t0 = time.perf_counter()
    rows = run(args.n, args.seed, structure=args.structure)
    for r in rows:
        if r["error_rad"] >= 0.02:
            print("miss:", r)
    results = results_file.save("recovery", "benchmarks/recovery.py", rows, load_before=load_before,
                                settings=vars(args), total_s=round(time.perf_counter() - t0, 1))
    print(json.dumps(summary(rows), indent=2))
    print(table(results))
