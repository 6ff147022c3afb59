"""Benchmarks of `apfdsp.align.align` and of ``apfdsp align`` on files (the whole user path).

    python -m pytest benchmarks/bench_align.py --benchmark-enable

Material: `apfdsp.demo.demo_dry` through `apfdsp.demo.demo_effect` (67 samples of latency, a polarity
flip, phaser-like dispersion, EQ and mild soft clipping), 48 kHz, seeded, built outside the timed call.
Each case runs once (``benchmark.pedantic(..., rounds=1, iterations=1)``): an alignment takes seconds.

Targets (recorded in ``extra_info``, not asserted: wall time depends on the machine and its load):
60 s of stereo audio in 5 s, a 5 s mono clip in 2 s, and the CLI on that clip (files in, file out).
What is asserted is the result: the output's shape, "never worse than delay + polarity", a null depth
(-30 dB; the demo effect is mildly nonlinear) and a bulk delay of at least the effect's latency. (Not
the model's DC polarity: the effect's 40 Hz 2nd-order high-pass turns its own inversion back to +1 at
DC, so only the in-band polarity is defined, and the null depth covers it.) ``extra_info`` also holds the
process CPU time of the call and the load average, since a shared machine inflates wall time.
"""

import contextlib
import io
import os
import time

import numpy as np
import pytest
import soundfile as sf

from apfdsp import cli
from apfdsp.align import align
from apfdsp.demo import DEMO_EFFECT_LATENCY, demo_dry, demo_effect
from apfdsp.metrics import null_depth_db

FS = 48000
SEED = 440
NULL_GOAL_DB = -30.0  # demo_effect is allpass-explainable up to its soft clipper


@pytest.fixture(scope="module")
def stereo_60s():
    dry = demo_dry(fs=FS, duration_s=60.0, channels=2, seed=SEED)
    return dry, demo_effect(dry, fs=FS)


@pytest.fixture(scope="module")
def mono_5s():
    dry = demo_dry(fs=FS, duration_s=5.0, seed=SEED)
    return dry, demo_effect(dry, fs=FS)


def timed_cpu(func, info):
    """`func` wrapped to store its process CPU time in ``info["cpu_s"]``."""
    def run(*args, **kwargs):
        start = time.process_time()
        try:
            return func(*args, **kwargs)
        finally:
            info["cpu_s"] = round(time.process_time() - start, 3)
    return run


def record(benchmark, *, target_s, audio_s, channels):
    benchmark.extra_info.update(target_s=target_s, audio_s=audio_s, channels=channels,
                                loadavg_1min=round(os.getloadavg()[0], 2), nproc=os.cpu_count())


def check_alignment(result, dry, wet):
    assert result.aligned.shape == dry.shape
    after = null_depth_db(result.aligned, wet, fs=FS)
    assert after <= result.delay_polarity["null_db"] + 0.01
    assert after <= NULL_GOAL_DB
    # its bulk delay is the latency plus the (positive) delay of its dispersion
    assert DEMO_EFFECT_LATENCY <= result.delay_samples < DEMO_EFFECT_LATENCY + 30
    return after


def test_align_60s_stereo(benchmark, stereo_60s):
    dry, wet = stereo_60s
    record(benchmark, target_s=5.0, audio_s=60.0, channels=2)
    result = benchmark.pedantic(timed_cpu(align, benchmark.extra_info), args=(dry, wet), kwargs={"fs": FS},
                                rounds=1, iterations=1)
    benchmark.extra_info["null_db_after"] = round(check_alignment(result, dry, wet), 2)
    benchmark.extra_info["null_db_delay_polarity"] = round(result.delay_polarity["null_db"], 2)


def test_align_5s_mono(benchmark, mono_5s):
    dry, wet = mono_5s
    record(benchmark, target_s=2.0, audio_s=5.0, channels=1)
    result = benchmark.pedantic(timed_cpu(align, benchmark.extra_info), args=(dry, wet), kwargs={"fs": FS},
                                rounds=1, iterations=1)
    benchmark.extra_info["null_db_after"] = round(check_alignment(result, dry, wet), 2)
    benchmark.extra_info["null_db_delay_polarity"] = round(result.delay_polarity["null_db"], 2)


def test_cli_align_5s_mono(benchmark, mono_5s, tmp_path):
    dry, wet = mono_5s
    dry_path, wet_path, out_path = (str(tmp_path / name) for name in ("dry.wav", "wet.wav", "aligned.wav"))
    sf.write(dry_path, dry, FS, subtype="FLOAT")
    sf.write(wet_path, wet, FS, subtype="FLOAT")
    record(benchmark, target_s=2.0, audio_s=5.0, channels=1)

    def run():
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            code = cli.main(["align", dry_path, wet_path, "-o", out_path, "-q"])
        return code, err.getvalue()

    code, stderr = benchmark.pedantic(timed_cpu(run, benchmark.extra_info), rounds=1, iterations=1)
    assert code == 0, stderr
    aligned, fs = sf.read(out_path)
    assert fs == FS and aligned.shape == dry.shape
    dry32, wet32 = dry.astype(np.float32).astype(float), wet.astype(np.float32).astype(float)
    after = null_depth_db(aligned, wet32, fs=FS)
    assert after <= null_depth_db(dry32, wet32, fs=FS)
    assert after <= NULL_GOAL_DB
    benchmark.extra_info["null_db_after"] = round(after, 2)
