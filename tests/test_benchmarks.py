"""The benchmark scripts run end to end on a tiny CPU case and write what they promise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_lif_kernels_benchmark_smoke(tmp_path: Path) -> None:
    """lif_kernels.py measures every requested library, agrees on the spike rate, and summarises its JSON."""
    out = tmp_path / "cpu.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "lif_kernels.py"), "--device", "cpu", "--T", "4"]
    command += ["--N", "1024", "--reps", "2", "--libraries", "snnlab-torch", "snnlab-fast", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r["library"]: r for r in report["results"]}
    assert set(rows) == {"snnlab-torch", "snnlab-numba"} and not report["errors"]
    assert rows["snnlab-torch"]["rate"] == rows["snnlab-numba"]["rate"] > 0
    summary = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "lif_kernels.py"), "--summarize", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert summary.returncode == 0 and "snnlab-numba" in summary.stdout


def test_alif_cuba_kernels_benchmark_smoke(tmp_path: Path) -> None:
    """alif_cuba_kernels.py measures both models on the torch loop and Numba (the same spike rates) and CUBA-LIF in
    snnTorch and SpikingJelly, and summarises its JSON one table per model."""
    out = tmp_path / "cpu.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "alif_cuba_kernels.py"), "--device", "cpu", "--T", "4"]
    command += ["--N", "1024", "--reps", "1", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {(r["model"], r["library"]): r for r in report["results"]}
    assert {("alif", "snnlab-torch"), ("alif", "snnlab-numba"), ("cuba", "snnlab-numba")} <= set(rows)
    assert not report["errors"]
    for model in ("alif", "cuba"):
        assert rows[model, "snnlab-torch"]["rate"] == rows[model, "snnlab-numba"]["rate"] > 0
    summary = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "alif_cuba_kernels.py"), "--summarize", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert summary.returncode == 0 and "== alif ==" in summary.stdout and "== cuba ==" in summary.stdout
