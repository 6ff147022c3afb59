"""Frequency-domain fit vs time-domain training vs both, on three dry/wet pairs.

    python benchmarks/compare_routes.py            # prints a Markdown table (several minutes)
    python benchmarks/compare_routes.py --quick    # shorter audio and fewer steps

Cases:

(a) white noise (2 s, 48 kHz) through a known random cascade of 6 second-order sections plus a delay
    of 7.3 samples;
(b) paper-style sweep data of the Surveyor model: a log sweep 20 Hz - 20 kHz at 192 kHz through a cascade
    like the paper's Surveyor (three warped second-order sections and a warped first-order section, built
    from the coefficients below, or ``apfdsp.pretrained.load("surveyor-192k")`` when that exists);
(c) music-like demo audio (2 s, 48 kHz) through one pedalboard effect (HighpassFilter 200 Hz).

Routes (null depth = `apfdsp.metrics.null_depth_db` of ``cascade.apply(dry)`` vs wet; seconds = wall time):

* delay + polarity: GCC-PHAT only (`apfdsp.estimate.estimate`), for reference;
* frequency-domain fit: `apfdsp.align.fit_alignment` with its defaults;
* phase-fit start alone: `fit_audio(init="phase-fit", n_iter=0)`, the frequency-domain fit as
  `fit_audio` runs it (the total delay and a wider delay search);
* default start alone: `fit_audio(n_iter=0)`, the time-domain equation-error start (or the log-spaced
  start where that has the lower loss);
* time-domain training from the log-spaced start: `fit_audio(init="log-spaced")`, sections spread over
  the band (the default start before the equation-error start);
* time-domain training: `fit_audio` from the default start;
* time-domain training, anticausal: `fit_audio(anticausal=True)`: the same with sections that may
  run backwards in time (offline only); its default start also scores the frequency-domain fit with
  anticausal sections, and the equation-error start keeps roots outside the unit circle;
* both: `fit_audio(init="phase-fit")`, the phase-fit start refined on the audio.

Each row also names the start `fit_audio` used (`AudioFitResult.init`). Every route runs with the
defaults (number of sections, parameter ranges) except for what its name says.
"""

import argparse
import time

import numpy as np

import results_file
from apfdsp import Allpass1, Allpass2, AllpassCascade, Delay, Polarity
from apfdsp.align import fit_alignment
from apfdsp.demo import demo_dry
from apfdsp.estimate import estimate
from apfdsp.fit_audio import fit_audio
from apfdsp.metrics import null_depth_db

SURVEYOR_FS = 192000
SURVEYOR = {  # c = R^2, d = -2 R cos(2 pi fc / fs), a = warp (three warped second-order sections)
    "c": [0.998039, 0.002789, 0.998465],
    "d": [-1.653425, 0.101380, -1.695402],
    "a": [-0.864498, -0.307401, -0.865795],
    "first_order": (-0.972990, -0.964903),  # coefficient, warp
}


def surveyor_cascade():
    """The Surveyor-like cascade at 192 kHz (from apfdsp.pretrained when available)."""
    try:
        from apfdsp import pretrained  # another engineer's module, if it exists by now

        return pretrained.load("surveyor-192k")
    except (ImportError, AttributeError, LookupError, ValueError, OSError):
        pass
    cells = []
    for c, d, a in zip(SURVEYOR["c"], SURVEYOR["d"], SURVEYOR["a"]):
        radius = np.sqrt(c)
        fc = np.arccos(-d / (2 * radius)) * SURVEYOR_FS / (2 * np.pi)
        cells.append(Allpass2(float(radius), float(fc), a))
    coef, warp = SURVEYOR["first_order"]
    cells.append(Allpass1(coef, warp))
    return AllpassCascade(cells, fs=SURVEYOR_FS)


def log_sweep(fs, duration_s, f0=20.0, f1=20000.0):
    t = np.arange(int(duration_s * fs)) / fs
    rate = np.log(f1 / f0)
    sweep = np.sin(2 * np.pi * f0 * duration_s / rate * (np.exp(t * rate / duration_s) - 1))
    fade = min(len(t) // 20, int(0.01 * fs))
    sweep[-fade:] *= np.hanning(2 * fade)[fade:]
    return 0.5 * sweep


def cases(duration_s, seed=0):
    """Name -> (dry, wet, fs, options shared by every route)."""
    rng = np.random.default_rng(seed)
    fs = 48000
    cells = [Allpass2(rng.uniform(0.3, 0.9), float(np.exp(rng.uniform(np.log(50.0), np.log(0.4 * fs)))))
             for _ in range(6)]
    truth = AllpassCascade(cells + [Delay(7.3)], fs=fs)
    noise = rng.standard_normal(int(duration_s * fs))
    out = {"(a) random 6-section cascade + 7.3-sample delay": (noise, truth(noise), fs, {})}

    surveyor = surveyor_cascade()
    sweep = log_sweep(SURVEYOR_FS, duration_s)
    out["(b) Surveyor-like model, 192 kHz log sweep"] = (
        sweep, surveyor(sweep), SURVEYOR_FS, {})  # the default ranges hold it (0.144 s decay limit)

    try:
        import pedalboard as pb
    except ImportError:
        return out
    music = demo_dry(fs=fs, duration_s=duration_s, seed=seed)
    board = pb.Pedalboard([pb.HighpassFilter(cutoff_frequency_hz=200)])
    wet = board(music.astype(np.float32)[None, :], fs)[0].astype(np.float64)
    out["(c) pedalboard HighpassFilter 200 Hz"] = (music, wet, fs, {})
    return out


def routes(n_iter):
    """Route name -> function(dry, wet, fs, options) -> (AllpassCascade, start name)."""

    def baseline(dry, wet, fs, options):
        est = estimate(dry, wet, fs=fs)
        cells = [Delay(est.delay_samples)] + ([Polarity(-1)] if est.polarity < 0 else [])
        return AllpassCascade(cells, fs=fs), "-"

    def frequency(dry, wet, fs, options):
        result = fit_alignment(dry, wet, fs=fs, **options)
        return result.cascade, "-"

    def audio(init, steps, anticausal=False):
        def run(dry, wet, fs, options):
            extra = {"n_first_order": 1} if init != "phase-fit" else {}
            result = fit_audio(dry, wet, fs=fs, init=init, n_iter=steps, anticausal=anticausal, **extra, **options)
            return result.cascade, result.init
        return run

    return {
        "delay + polarity (GCC-PHAT)": baseline,
        "frequency-domain fit (align)": frequency,
        "phase-fit start alone": audio("phase-fit", 0),
        "default start alone": audio("default", 0),
        "time-domain training (log-spaced start)": audio("log-spaced", n_iter),
        "time-domain training (default start)": audio("default", n_iter),
        "time-domain training, anticausal": audio("default", n_iter, anticausal=True),
        "both (phase-fit start + time-domain refine)": audio("phase-fit", n_iter),
    }


def run(duration_s=2.0, n_iter=300, seed=0, only=None):
    rows = []
    for case, (dry, wet, fs, options) in cases(duration_s, seed).items():
        if only and not case.startswith(f"({only})"):
            continue
        for route, fit in routes(n_iter).items():
            start = time.perf_counter()
            cascade, start_name = fit(dry, wet, fs, options)
            seconds = time.perf_counter() - start
            rows.append({"case": case, "route": route, "null_db": null_depth_db(cascade.apply(dry), wet, fs=fs),
                         "seconds": seconds, "cells": len(cascade), "start": start_name})
            print(f"{case} | {route}: {rows[-1]['null_db']:.1f} dB, {seconds:.1f} s", flush=True)
    return rows


def table(results):
    """The README's Markdown table of a compare_routes results dict: one row per case, null depth (seconds)."""
    rows = results["rows"]
    cases, route_names = list(dict.fromkeys(r["case"] for r in rows)), list(dict.fromkeys(r["route"] for r in rows))
    cell = {(r["case"], r["route"]): f"{r['null_db']:.1f} ({r['seconds']:.1f} s)" for r in rows}
    lines = ["| case | " + " | ".join(route_names) + " |", "|---|" + "---:|" * len(route_names)]
    for case in cases:
        lines.append(f"| {case} | " + " | ".join(cell.get((case, route), "") for route in route_names) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=2.0, help="audio length in seconds (default 2)")
    parser.add_argument("--n-iter", type=int, default=300, dest="n_iter", help="Adam steps (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="1 s of audio and 60 steps (no results file)")
    parser.add_argument("--case", choices=("a", "b", "c"), help="run one case only (no results file)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.n_iter = 1.0, 60
    load_before = results_file.start()
    t0 = time.perf_counter()
    rows = run(args.duration, args.n_iter, args.seed, args.case)
    results = {"rows": rows}
    if not args.quick and args.case is None:
        results = results_file.save("compare_routes", "benchmarks/compare_routes.py", rows, load_before=load_before,
                                    settings=vars(args), total_s=round(time.perf_counter() - t0, 1))
    print(table(results))
