"""Benchmarks of streaming `apfdsp.io.apply_file`: throughput against raw `scipy.signal.sosfilt`, and memory.

    python -m pytest benchmarks/bench_apply.py --benchmark-enable

* **Throughput** (target: at least 0.9x raw sosfilt). The same cascade (8 warped sections, a
  fractional delay and a polarity flip: 9 SOS rows plus an integer shift) and the same 60 s of stereo
  48 kHz audio: `scipy.signal.sosfilt(cascade.sos, x)` on the in-memory array, and `apply_file` from a
  FLOAT WAV to a new FLOAT WAV (reading, filtering block by block, writing, fsync, rename; the output
  of the previous round is deleted, untimed, before each round). The ratio of the two best-of-5 wall
  times is in ``extra_info["throughput_ratio"]`` of the apply_file case (recorded, not asserted),
  with the process CPU time of the best rounds, the load average, and the ratio when the output file
  already exists (``overwrite_ratio``: the rename then also frees the old file). The output is
  checked against `cascade.apply` (sosfilt of the whole array, then the shift): equal after rounding
  to float32, bit for bit.
* **Peak memory** (target: below 200 MB) of `apply_file` on a one-hour stereo 48 kHz FLOAT WAV
  (1.38 GB, written once, block by block, in a temporary directory and deleted afterwards), measured
  as the peak resident set size of a fresh subprocess that imports apfdsp, loads the model and runs
  `apply_file`. Why RSS of a subprocess and not tracemalloc: RSS counts every byte the process
  touches (numpy buffers, libsndfile's and scipy's C allocations, the interpreter), tracemalloc only
  allocations made through Python's and numpy's tracked allocators, and in-process it would share the
  heap with pytest and the other benchmarks. The number is conservative: it includes the interpreter
  + numpy/scipy/soundfile baseline, recorded separately (``baseline_rss_mb``, the peak before the call).

  Two readings, which must agree: the child's ``VmHWM`` (/proc/self/status: the high-water mark of
  its own address space), and ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` read in a small launcher
  process that starts the child. Not ``RUSAGE_CHILDREN`` in the pytest process itself: on Linux a
  child's ``ru_maxrss`` starts from its parent's high-water mark (it is carried across fork + exec),
  so a child of a pytest process holding 400 MB of benchmark audio reports >= 400 MB whatever it does.
  The launcher is small, so its child's reading is clean. The peak is asserted (< 200 MB): unlike
  time it does not depend on the machine's load.
* **Anticausal sections**: the same two measurements for the same 8 sections with every second one
  anticausal (run backwards in time; ``cascade.sos`` 5 rows with the Thiran section, ``cascade.sos_anticausal``
  4 rows). Raw: ``sosfilt(sos, x)`` then ``sosfilt(sos_anticausal, y[..., ::-1])`` on the in-memory array;
  ``apply_file``: a forward pass into a float64 scratch file and a backward pass that writes the WAV
  output at its places (``extra_info["throughput_ratio"]``), and, for comparison, the three-pass route
  that formats such as FLAC take (backward pass into the scratch file, then a copy pass;
  ``copied_ratio``, forced on the WAV output). The one-hour file gets the same memory measurement
  (the scratch file is 2.76 GB next to the output: page cache and disk, not resident memory).
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from apfdsp.cascade import Allpass2, AllpassCascade, Delay, Polarity
import apfdsp.streaming
from apfdsp.io import apply_file, save_model

FS = 48000
SEED = 440
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMORY_TARGET_MB = 200.0
THROUGHPUT_TARGET = 0.9


def make_cascade(anticausal=False):
    """8 warped sections, a fractional delay, a polarity flip; with `anticausal`, every second section
    runs backwards in time (the same filter work: 9 SOS rows)."""
    rng = np.random.default_rng(SEED)
    cells = [Allpass2(rng.uniform(0.3, 0.95), float(np.exp(rng.uniform(np.log(50.0), np.log(15000.0)))),
                      rng.uniform(-0.5, 0.5), anticausal=anticausal and i % 2 == 1) for i in range(8)]
    return AllpassCascade(cells + [Delay(37.3), Polarity(-1)], fs=FS)


@pytest.fixture(scope="module")
def cascade():
    return make_cascade()


@pytest.fixture(scope="module")
def anticausal_cascade():
    return make_cascade(anticausal=True)


def raw_both(cascade, x):
    """The whole-array reference of a cascade with anticausal sections, without the shift."""
    y = signal.sosfilt(cascade.sos, x, axis=-1)
    return signal.sosfilt(cascade.sos_anticausal, y[..., ::-1], axis=-1)


@pytest.fixture(scope="module")
def audio_60s(tmp_path_factory):
    """(x as float64 (2, n), the same audio as a FLOAT WAV path): float32 values, so both are identical."""
    rng = np.random.default_rng(SEED)
    x = (0.1 * rng.standard_normal((2, 60 * FS))).astype(np.float32).astype(np.float64)
    path = str(tmp_path_factory.mktemp("apply") / "in_60s.wav")
    sf.write(path, x.T, FS, subtype="FLOAT")
    return x, path


ROUNDS = 5


class Timed:
    """``func`` that records (wall s, process CPU s) of every call, for ``extra_info``."""

    def __init__(self, func):
        self.func, self.calls = func, []

    def __call__(self, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        out = self.func(*args, **kwargs)
        self.calls.append((time.perf_counter() - wall, time.process_time() - cpu))
        return out

    def best(self):
        """(wall, CPU) of the fastest call."""
        return min(self.calls)


def test_sosfilt_raw_60s_stereo(benchmark, cascade, audio_60s):
    x, _ = audio_60s
    sos = cascade.sos
    timed = Timed(signal.sosfilt)
    y = benchmark.pedantic(timed, args=(sos, x), kwargs={"axis": -1}, rounds=ROUNDS, iterations=1)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    benchmark.extra_info.update(frames=x.shape[-1], channels=2, sos_rows=sos.shape[0],
                                best_cpu_s=round(timed.best()[1], 4), loadavg_1min=round(os.getloadavg()[0], 2))


def test_apply_file_60s_stereo(benchmark, cascade, audio_60s, tmp_path):
    x, in_path = audio_60s
    out_path = str(tmp_path / "out.wav")
    rounds = 1 if benchmark.disabled else ROUNDS  # --benchmark-disable (the default): check results only
    raw = Timed(signal.sosfilt)
    for _ in range(rounds):
        raw(cascade.sos, x, axis=-1)
    load_before = os.getloadavg()[0]

    def remove_output():  # untimed: each round writes a new file
        if os.path.exists(out_path):
            os.remove(out_path)

    timed = Timed(apply_file)
    info = benchmark.pedantic(timed, args=(cascade, in_path, out_path), setup=remove_output, rounds=ROUNDS,
                              iterations=1)
    overwrite = Timed(apply_file)
    for _ in range(rounds):
        overwrite(cascade, in_path, out_path)  # out_path exists: the rename replaces it
    assert info["frames"] == x.shape[-1] and info["channels"] == 2 and info["subtype"] == "FLOAT"
    y, fs = sf.read(out_path, dtype="float64")
    assert fs == FS
    expected = cascade.apply(x)  # sosfilt of the whole array, then the integer shift
    np.testing.assert_array_equal(y.T, expected.astype(np.float32))
    (raw_s, raw_cpu), (file_s, file_cpu) = raw.best(), timed.best()
    benchmark.extra_info.update(
        raw_sosfilt_best_s=round(raw_s, 4), raw_sosfilt_cpu_s=round(raw_cpu, 4),
        apply_file_best_s=round(file_s, 4), apply_file_cpu_s=round(file_cpu, 4),
        throughput_ratio=round(raw_s / file_s, 3), target_ratio=THROUGHPUT_TARGET,
        overwrite_best_s=round(overwrite.best()[0], 4), overwrite_ratio=round(raw_s / overwrite.best()[0], 3),
        frames_per_s=round(x.shape[-1] / file_s),
        loadavg_1min=[round(load_before, 2), round(os.getloadavg()[0], 2)])


def test_apply_file_anticausal_60s_stereo(benchmark, anticausal_cascade, audio_60s, tmp_path, monkeypatch):
    cascade = anticausal_cascade
    x, in_path = audio_60s
    out_path = str(tmp_path / "out.wav")
    rounds = 1 if benchmark.disabled else ROUNDS
    raw = Timed(raw_both)
    for _ in range(rounds):
        raw(cascade, x)
    load_before = os.getloadavg()[0]

    def remove_output():
        if os.path.exists(out_path):
            os.remove(out_path)

    timed = Timed(apply_file)
    info = benchmark.pedantic(timed, args=(cascade, in_path, out_path), setup=remove_output, rounds=ROUNDS,
                              iterations=1)
    y, fs = sf.read(out_path, dtype="float64")
    expected = cascade.apply(x).astype(np.float32)
    np.testing.assert_array_equal(y.T, expected)
    copied = Timed(apply_file)  # the three-pass route of FLAC and other formats, on the same WAV output
    monkeypatch.setattr(apfdsp.streaming, "writes_anywhere", lambda format, subtype: False)
    for _ in range(rounds):
        remove_output()
        copied(cascade, in_path, out_path)
    monkeypatch.undo()
    y, fs = sf.read(out_path, dtype="float64")
    np.testing.assert_array_equal(y.T, expected)
    assert fs == FS and info["frames"] == x.shape[-1] and info["subtype"] == "FLOAT"
    (raw_s, raw_cpu), (file_s, file_cpu), (copied_s, copied_cpu) = raw.best(), timed.best(), copied.best()
    benchmark.extra_info.update(
        sos_rows=cascade.sos.shape[0], sos_anticausal_rows=cascade.sos_anticausal.shape[0],
        raw_sosfilt_best_s=round(raw_s, 4), raw_sosfilt_cpu_s=round(raw_cpu, 4),
        apply_file_best_s=round(file_s, 4), apply_file_cpu_s=round(file_cpu, 4),
        throughput_ratio=round(raw_s / file_s, 3), copied_best_s=round(copied_s, 4),
        copied_cpu_s=round(copied_cpu, 4), copied_ratio=round(raw_s / copied_s, 3),
        frames_per_s=round(x.shape[-1] / file_s),
        loadavg_1min=[round(load_before, 2), round(os.getloadavg()[0], 2)])


# -- one hour, peak memory ----------------------------------------------------------------------------------
HOUR_FRAMES = 3600 * FS
PERIOD_FRAMES = 10 * FS  # the file repeats one 10 s block of noise (cheap to write; memory does not care)

CHILD = textwrap.dedent("""
    import json, sys, time
    from apfdsp.io import apply_file, load_model

    def vm_hwm_kib():
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("VmHWM:")).split()[1])

    cascade, _ = load_model(sys.argv[1])
    before = vm_hwm_kib()
    start, cpu = time.perf_counter(), time.process_time()
    info = apply_file(cascade, sys.argv[2], sys.argv[3])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"info": info, "elapsed_s": elapsed, "cpu_s": cpu, "baseline_kib": before,
                      "peak_kib": vm_hwm_kib()}))
""")

# A small process that runs CHILD and reports RUSAGE_CHILDREN (clean: the launcher itself is small).
LAUNCHER = textwrap.dedent("""
    import json, resource, subprocess, sys
    proc = subprocess.run([sys.executable, "-c", sys.argv[1]] + sys.argv[2:], capture_output=True, text=True)
    sys.stderr.write(proc.stderr)
    if proc.returncode:
        sys.exit(proc.returncode)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["rusage_children_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def hour_file(tmp_path_factory, cascade, anticausal_cascade):
    """A one-hour stereo 48 kHz FLOAT WAV written block by block, and the two models; deleted after the module."""
    directory = tmp_path_factory.mktemp("hour")
    path = str(directory / "in_1h.wav")
    block = (0.1 * np.random.default_rng(SEED).standard_normal((PERIOD_FRAMES, 2))).astype(np.float32)
    with sf.SoundFile(path, "w", FS, 2, "FLOAT") as f:
        for _ in range(HOUR_FRAMES // PERIOD_FRAMES):
            f.write(block)
    models = {}
    for name, model in (("causal", cascade), ("anticausal", anticausal_cascade)):
        models[name] = str(directory / f"model_{name}.json")
        save_model(models[name], model)
    yield path, models, block
    shutil.rmtree(directory, ignore_errors=True)


def run_one_hour(benchmark, cascade, model, in_path, block):
    """Run `apply_file` on the hour in a fresh subprocess; record and check its peak RSS and output."""
    out_path = os.path.join(os.path.dirname(in_path), "out_1h.wav")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def run_child():
        return subprocess.run([sys.executable, "-c", LAUNCHER, CHILD, model, in_path, out_path], cwd=REPO,
                              env=env, capture_output=True, text=True, check=False)

    proc = benchmark.pedantic(run_child, rounds=1, iterations=1)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    peak_mb, baseline_mb = report["peak_kib"] / 1024, report["baseline_kib"] / 1024  # KiB on Linux
    rusage_mb = report["rusage_children_kib"] / 1024
    benchmark.extra_info.update(
        peak_rss_mb=round(peak_mb, 1), rusage_children_mb=round(rusage_mb, 1), baseline_rss_mb=round(baseline_mb, 1),
        apply_file_increment_mb=round(peak_mb - baseline_mb, 1), target_mb=MEMORY_TARGET_MB,
        apply_file_s=round(report["elapsed_s"], 2), apply_file_cpu_s=round(report["cpu_s"], 2),
        frames_per_s=round(HOUR_FRAMES / report["elapsed_s"]), input_bytes=os.path.getsize(in_path),
        loadavg_1min=round(os.getloadavg()[0], 2))
    assert report["info"]["frames"] == HOUR_FRAMES
    assert rusage_mb == pytest.approx(peak_mb, rel=0.05)  # the two readings agree
    assert peak_mb < MEMORY_TARGET_MB
    # streamed state: the first and last 10 s equal those of the whole-array filter of 30 s of the same audio
    # (the causal part is in its periodic steady state after 10 s, and so is the backward part 10 s before the end)
    steady = cascade.apply(np.tile(block.astype(np.float64).T, 3))
    with sf.SoundFile(out_path) as f:
        assert f.frames == HOUR_FRAMES
        head = f.read(PERIOD_FRAMES, dtype="float64")
        f.seek(HOUR_FRAMES - PERIOD_FRAMES)
        tail = f.read(PERIOD_FRAMES, dtype="float64")
    np.testing.assert_allclose(head.T, steady[:, :PERIOD_FRAMES].astype(np.float32), rtol=0, atol=1e-6)
    np.testing.assert_allclose(tail.T, steady[:, -PERIOD_FRAMES:].astype(np.float32), rtol=0, atol=1e-6)
    os.remove(out_path)


def test_apply_file_one_hour_peak_memory(benchmark, cascade, hour_file):
    in_path, models, block = hour_file
    run_one_hour(benchmark, cascade, models["causal"], in_path, block)


def test_apply_file_anticausal_one_hour_peak_memory(benchmark, anticausal_cascade, hour_file):
    in_path, models, block = hour_file
    free = shutil.disk_usage(os.path.dirname(in_path)).free
    if free < 5e9:
        pytest.skip(f"needs 4.2 GB free for the output and the scratch file, {free / 1e9:.1f} GB free")
    run_one_hour(benchmark, anticausal_cascade, models["anticausal"], in_path, block)
