"""The quickstart as a user runs it (``python -m snnlab run --quiet``, a fresh process each time) on a machine
shared with another CPU-bound process: the default backend against ``network.neuron.backend=torch``, runs
alternated so that both see the same load. Reports the median wall time of the whole command (start-up
included) and of training (the run's ``wall_time_seconds``).

    python benchmarks/quickstart_under_load.py --runs 5 --out under_load.json

``--source DIR`` runs another checkout's snnlab (e.g. the code before a change) with the same script.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {"default": [], "torch": ["network.neuron.backend=torch"]}
"""The overrides of each variant measured."""


def run_once(source: Path, overrides: list[str]) -> dict[str, float]:
    """One quickstart in a fresh process: its wall time, training time and test accuracy."""
    with tempfile.TemporaryDirectory() as root:
        command = [sys.executable, "-m", "snnlab", "run", "--quiet", f"output.root={root}", "output.plots=false"]
        env = {**os.environ, "PYTHONPATH": str(source)}
        start = time.perf_counter()
        done = subprocess.run(command + overrides, env=env, capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command + overrides)} failed:\n{done.stderr[-3000:]}")
        (summary_path,) = Path(root).glob("*/summary.json")
        summary = json.loads(summary_path.read_text())
    return {"wall_s": wall, "train_s": summary["wall_time_seconds"], "test_accuracy": summary["test_accuracy"]}


def busy() -> subprocess.Popen[bytes]:
    """Another CPU-bound process (one thread spinning), as a job sharing the machine would be."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per variant (after one warm-up run each)")
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout whose snnlab runs")
    parser.add_argument("--no-load", action="store_true", help="without the CPU-bound process beside it")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    load = None if args.no_load else busy()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in BACKENDS}
    try:
        for overrides in BACKENDS.values():  # warm-up: Numba's on-disk cache, the digits cache, the OS page cache
            run_once(args.source, overrides + ["train.epochs=1"])
        for i in range(args.runs):
            for name in BACKENDS if i % 2 == 0 else reversed(BACKENDS):
                runs[name].append(run_once(args.source, BACKENDS[name]))
                print(name, {k: round(v, 4) for k, v in runs[name][-1].items()}, flush=True)
    finally:
        if load is not None:
            load.kill()
            load.wait()
    summary = {
        name: {
            "wall_s_median": statistics.median(r["wall_s"] for r in rs),
            "train_s_median": statistics.median(r["train_s"] for r in rs),
            "wall_s_min": min(r["wall_s"] for r in rs),
            "wall_s_max": max(r["wall_s"] for r in rs),
            "test_accuracy": sorted({r["test_accuracy"] for r in rs}),
        }
        for name, rs in runs.items()
    }
    print("| backend | wall median s | training median s | wall min-max s | test accuracy |")
    print("|---|---|---|---|---|")
    for name, s in summary.items():
        accuracy = ", ".join(f"{a:.2%}" for a in s["test_accuracy"])
        row = f"{s['wall_s_median']:.1f} | {s['train_s_median']:.1f} | {s['wall_s_min']:.1f}-{s['wall_s_max']:.1f}"
        print(f"| {name} | {row} | {accuracy} |")
    if args.out is not None:
        report = {"load": not args.no_load, "source": str(args.source), "runs": runs, "summary": summary}
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
