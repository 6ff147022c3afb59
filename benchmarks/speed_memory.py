"""Whole-process speed and peak memory of the command line: the README's "Speed and memory" table.

    python benchmarks/speed_memory.py            # writes benchmarks/results/speed_memory.json
    python benchmarks/speed_memory.py --hour     # also the one-hour align (2 x 1.38 GB of scratch files)
    python benchmarks/readme_tables.py           # then rewrites the README table from the results

Every figure is a fresh process, as a user runs it, with no environment variable set (the script
removes ``OPENBLAS_NUM_THREADS`` and friends, and ``PYTHONDONTWRITEBYTECODE``, from the children's
environment, so Python caches the compiled modules as it does after a pip install): wall time (best and
median of `--repeat` runs), CPU time, and the peak resident set size from ``getrusage`` of the child
(``ru_maxrss``: each child is started by a small launcher, since a child's high-water mark starts from
its parent's). Material: `apfdsp.demo.demo_dry` through `apfdsp.demo.demo_effect` (latency, polarity
flip, dispersive phase, EQ, soft clipping), 48 kHz, FLOAT WAV files in a temporary directory.

Rows:

* ``import`` -- ``python -c "import numpy, scipy.signal"``: the floor under any command.
* ``align 5 s mono``, ``align 60 s stereo`` -- ``apfdsp align DRY WET -o OUT`` (null depth after alignment
  recorded too; the README table also gives the best time minus the import row's, what apfdsp adds to the
  floor).
* ``align 3 min stereo``, ``align 60 min stereo`` -- the same, for peak memory (the hour with ``--hour``).
* ``apply 10 min stereo`` -- ``apfdsp apply MODEL IN -o OUT`` against a plain script that reads the file with
  soundfile, runs the same SOS passes and shift with `scipy.signal.sosfilt` and writes the result (the
  ratio of their best wall times; > 1: apfdsp is faster).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import soundfile as sf

import results_file
from apfdsp.demo import demo_dry, demo_effect

FS = 48000
SEED = 440
HERE = os.path.dirname(os.path.abspath(__file__))
# Variables a user's shell does not set: thread limits, and PYTHONDONTWRITEBYTECODE (set on some build
# machines), without which Python caches the compiled apfdsp modules as it does after a pip install.
_UNSET_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE",
                    "OPENBLAS_L2_SIZE", "PYTHONDONTWRITEBYTECODE")

# A launcher runs the command and prints its child's wall time, CPU time and peak RSS: the launcher's
# own footprint is small, so the child's ru_maxrss is its own.
_LAUNCHER = textwrap.dedent("""
    import json, resource, subprocess, sys, time
    start = time.perf_counter()
    code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"code": code, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "peak_rss_mb": usage.ru_maxrss / 1024}))
""")

# The plain-script baseline of `apfdsp apply`: soundfile + sosfilt, whole file in memory.
_PLAIN_APPLY = textwrap.dedent("""
    import json, sys
    import numpy as np, soundfile as sf
    from scipy import signal
    model = json.load(open(sys.argv[1]))
    x, fs = sf.read(sys.argv[2], dtype="float64", always_2d=True)
    y = signal.sosfilt(np.asarray(model["sos"]), x, axis=0)
    back = np.asarray(model.get("sos_anticausal", []))
    if len(back):
        y = signal.sosfilt(back, y[::-1], axis=0)[::-1]
    shift = int(model["integer_delay"])
    out = np.zeros_like(y)
    if shift >= 0:
        out[shift:] = y[: len(y) - shift]
    else:
        out[: len(y) + shift] = y[-shift:]
    sf.write(sys.argv[3], out, fs, subtype="FLOAT")
""")


def child_environment():
    env = {k: v for k, v in os.environ.items() if k not in _UNSET_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(HERE)] + env.get("PYTHONPATH", "").split(os.pathsep))
    return env


def measure(command, repeat):
    """Best and median wall time, CPU time of the best run, and the largest peak RSS over `repeat` runs."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", _LAUNCHER] + command, capture_output=True, text=True,
                             env=child_environment(), check=True)
        run = json.loads(out.stdout)
        if run["code"] != 0:
            raise RuntimeError(f"{command} exited with {run['code']}")
        runs.append(run)
    best = min(runs, key=lambda r: r["wall_s"])
    return {"wall_s": round(best["wall_s"], 3),
            "wall_median_s": round(float(np.median([r["wall_s"] for r in runs])), 3),
            "cpu_s": round(best["cpu_s"], 3),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1)}


def write_pair(directory, name, duration_s, channels, *, repeat_to_s=None):
    """dry/wet FLOAT WAV files of demo material; `repeat_to_s` tiles them (long memory cases)."""
    dry = demo_dry(fs=FS, duration_s=duration_s, channels=channels, seed=SEED)
    wet = demo_effect(dry, fs=FS)
    paths = []
    for kind, x in (("dry", dry), ("wet", wet)):
        path = os.path.join(directory, f"{name}_{kind}.wav")
        with sf.SoundFile(path, "w", FS, channels, "FLOAT") as f:
            for _ in range(int(round((repeat_to_s or duration_s) / duration_s))):
                f.write(np.atleast_2d(x).T.astype(np.float32))
        paths.append(path)
    return paths


def apfdsp_command(*args):
    return [sys.executable, "-m", "apfdsp", *args]


def null_after(directory, dry, wet):
    out = os.path.join(directory, "null.wav")
    result = subprocess.run(apfdsp_command("align", dry, wet, "-o", out, "--json"), capture_output=True,
                            text=True, env=child_environment(), check=True)
    os.remove(out)
    record = json.loads(result.stdout)
    return round(record["null_db_after"], 2), round(record["null_db_delay_polarity"], 2)


def align_rows(directory, repeat, hour):
    cases = [("align 5 s mono", 5.0, 1, None, 1.2, None), ("align 60 s stereo", 60.0, 2, None, 3.0, None),
             ("align 3 min stereo", 60.0, 2, 180.0, None, 300.0)]
    if hour:
        cases.append(("align 60 min stereo", 60.0, 2, 3600.0, None, 500.0))
    rows = []
    for name, duration, channels, tiled, target_s, target_mb in cases:
        dry, wet = write_pair(directory, name.replace(" ", "_"), duration, channels, repeat_to_s=tiled)
        out = os.path.join(directory, "aligned.wav")
        row = {"case": name, **measure(apfdsp_command("align", dry, wet, "-o", out, "-q"),
                                       repeat if tiled is None else 1),
               "target_s": target_s, "target_mb": target_mb}
        if tiled is None:
            row["null_db_after"], row["null_db_delay_polarity"] = null_after(directory, dry, wet)
        rows.append(row)
        for path in (dry, wet, out):
            os.remove(path)
    return rows


def apply_rows(directory, repeat):
    dry, wet = write_pair(directory, "apply", 60.0, 2, repeat_to_s=600.0)
    model = os.path.join(directory, "model.json")
    short_dry, short_wet = write_pair(directory, "model", 5.0, 2)
    subprocess.run(apfdsp_command("fit", short_dry, short_wet, "-o", model, "-q"),
                   env=child_environment(), check=True)
    out = os.path.join(directory, "applied.wav")
    script = os.path.join(directory, "plain_apply.py")
    with open(script, "w") as f:
        f.write(_PLAIN_APPLY)
    ours = measure(apfdsp_command("apply", model, dry, "-o", out, "-q"), repeat)
    plain = measure([sys.executable, script, model, dry, out], repeat)
    return [{"case": "apply 10 min stereo", **ours, "plain_wall_s": plain["wall_s"],
             "plain_peak_rss_mb": plain["peak_rss_mb"], "speed_vs_plain": round(plain["wall_s"] / ours["wall_s"], 2)}]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per timed case (default 5)")
    parser.add_argument("--hour", action="store_true", help="also align a one-hour stereo pair (memory)")
    args = parser.parse_args(argv)
    load_before = results_file.start()
    with tempfile.TemporaryDirectory(prefix="apfdsp-bench-") as directory:
        rows = [{"case": "import numpy + scipy.signal",
                 **measure([sys.executable, "-c", "import numpy, scipy.signal"], args.repeat)}]
        rows += align_rows(directory, args.repeat, args.hour)
        rows += apply_rows(directory, args.repeat)
    results = results_file.save("speed_memory", "benchmarks/speed_memory.py", rows, load_before=load_before,
                                repeat=args.repeat)
    print(json.dumps(results, indent=1))


def table(results):
    """The README's Markdown table of a speed_memory results dict."""
    lines = ["| case | wall, best (median) | CPU | peak memory | target | notes |",
             "|---|---:|---:|---:|---|---|"]
    floor = next((row["wall_s"] for row in results["rows"] if row["case"].startswith("import")), None)
    for row in results["rows"]:
        targets = [f"<= {row['target_s']:g} s" for _ in [0] if row.get("target_s") is not None]
        targets += [f"< {row['target_mb']:g} MB" for _ in [0] if row.get("target_mb") is not None]
        notes = []
        if row.get("target_s") is not None and floor is not None:
            notes.append(f"{row['wall_s'] - floor:.2f} s above the import floor")
        if "null_db_after" in row:
            notes.append(f"null {row['null_db_after']:.1f} dB (delay + polarity {row['null_db_delay_polarity']:.1f} dB)")
        if "speed_vs_plain" in row:
            notes.append(f"{row['speed_vs_plain']:.2f}x the speed of a plain soundfile + sosfilt script "
                         f"({row['plain_wall_s']:.2f} s, {row['plain_peak_rss_mb']:.0f} MB)")
        lines.append(f"| {row['case']} | {row['wall_s']:.2f} s ({row['wall_median_s']:.2f} s) | {row['cpu_s']:.2f} s "
                     f"| {row['peak_rss_mb']:.0f} MB | {', '.join(targets)} | {'; '.join(notes)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
