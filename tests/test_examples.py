"""Every script in examples/ runs with tiny settings (``--quick``) and writes the files it promises."""

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))
TIMEOUT_S = 60  # per example; all of them together take well under a minute with --quick
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Files each example writes into --out. A new example must be added here (test_every_example_is_listed).
OUTPUTS = {
    "align_pedalboard_effect": ["dry_aligned.wav", "wet.wav", "align_report.png"],
    "allpass_structures": ["allpass_structures.png"],
    "causal_vs_anticausal": ["causal_vs_anticausal.png"],
    "export_sos": ["model.json", "export_sos_model.png"],
    "fit_phase_response": ["fit_phase_response.png"],
    "parallel_compression": ["mix_plain.wav", "mix_aligned.wav", "parallel_compression.png"],
    "surveyor_phase": ["surveyor_phase.png"],
}


def _needs(script, module):
    return f"import {module}" in script.read_text(encoding="utf-8")


def test_every_example_is_listed():
    assert sorted(p.stem for p in EXAMPLES) == sorted(OUTPUTS)


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_quick(script, tmp_path):
    if _needs(script, "pedalboard") and importlib.util.find_spec("pedalboard") is None:
        pytest.skip("needs pedalboard (pip install pedalboard)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               MPLBACKEND="Agg")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.strip(), f"{script.name} printed nothing"
    for name in OUTPUTS[script.stem]:
        path = tmp_path / name
        assert path.is_file(), f"{script.name} did not write {name}; it printed:\n{proc.stdout}"
        assert str(path) in proc.stdout, f"{script.name} did not report writing {name}"
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_SIGNATURE
            assert path.stat().st_size > 10_000, f"{name} is only {path.stat().st_size} bytes"
        else:
            assert path.stat().st_size > 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "a temporary file was left behind"
    print(f"{script.name}: {elapsed:.1f} s")
