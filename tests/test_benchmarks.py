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


def test_delays_benchmark_smoke(tmp_path: Path) -> None:
    """delays.py measures every case of one layer (dcls when installed) and writes its JSON."""
    out = tmp_path / "delays.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "delays.py"), "speed", "--max-delay", "3", "--T", "6"]
    command += ["--batch", "2", "--features", "8", "--reps", "1", "--threads", "1", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["case"]: r for r in json.loads(out.read_text())["results"]}
    expected = {"snnlab learned", "snnlab eval", "snnlab step loop", "autograd gaussian", "dense conv", "gather"}
    assert expected <= set(rows) and all(r["ms_min"] > 0 and r["peak_mib"] >= 0 for r in rows.values())
    assert rows["snnlab learned"]["kept_mib"] > 0 and "| 3 | snnlab learned | fwd+bwd |" in result.stdout


def test_rules_memory_time_benchmark_smoke(tmp_path: Path) -> None:
    """rules_memory_time.py trains each rule on a tiny conv network and writes its rows."""
    out = tmp_path / "rules.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "rules_memory_time.py"), "--device", "cpu", "--T", "2"]
    command += ["--networks", "dvs_conv", "--hw", "32", "--batch", "2", "--reps", "1", "--warmup", "0", "--rules"]
    command += ["bptt", "sltt", "sltt-k4", "rate_bp"]
    result = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["rule"] for r in rows] == ["bptt", "sltt", "sltt-k4", "rate_bp"]
    assert all("error" not in r and r["ms"] > 0 for r in rows), rows


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


def test_rules_accuracy_benchmark_smoke(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """rules_accuracy.py trains its rows through the runner, measures each epoch, and skips an absent rule."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import rules_accuracy
    from seeded_runs import Row

    rows = [("dfa", Row("DFA", "digits_dfa", ("data.batch_size=256",), "claim")), ("no_such_rule", Row("X", "x"))]
    monkeypatch.setattr(rules_accuracy, "ROWS", rows)
    body = rules_accuracy.main(["--seeds", "0", "--override", "train.epochs=1", "--no-write"])
    assert "X: rule 'no_such_rule' is absent" in capsys.readouterr().out
    line = next(row for row in body.splitlines() if row.startswith("| DFA |"))
    seconds, peak = (float(cell) for cell in line.split("|")[4:6])
    assert seconds > 0 and peak >= 0


def test_network_step_benchmark_smoke(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """network_step.py trains one step of both networks with every library at smoke sizes on the CPU (no block fuses
    there), writes its JSON and its RESULTS.md section between its markers."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import network_step

    out, results = tmp_path / "steps.json", tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n<!-- network_step:start -->\nold\n<!-- network_step:end -->\n")
    argv = ["network_step.py", "--device", "cpu", "--small", "--reps", "1", "--warmup", "0", "--precisions", "fp32"]
    argv += ["--layouts", "channels_last", "--out", str(out), "--results", str(results)]
    monkeypatch.setattr(sys, "argv", argv)
    network_step.main()
    rows = json.loads(out.read_text())["rows"]
    cases = {(r["network"], r["library"], r["variant"]) for r in rows if "error" not in r}
    for network in ("dvs", "mlp"):
        assert {(network, "snnlab", "unfused"), (network, "snnlab", "fused"), (network, "snntorch", "loop")} <= cases
        assert (network, "spikingjelly", "torch") in cases
    assert all(r["ms"] > 0 and r["fused_blocks"] in (0, None) for r in rows)
    text = results.read_text()
    assert "old" not in text and text.count("network_step:start") == 1 and "| snnlab | fused |" in text
