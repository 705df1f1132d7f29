"""The quickstart experiment end to end with ``backend: torch`` and ``backend: auto`` (Numba on the CPU), runs
alternated so that both see the same machine load: whole-run wall time and the fastest and median epoch.

    python benchmarks/quickstart_backends.py --rounds 5 --threads 2 --out quickstart.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # snnlab from this source tree

from snnlab.config import load_experiment  # noqa: E402
from snnlab.runner import run  # noqa: E402


def run_once(backend: str, root: str, epochs: int | None = None) -> dict[str, float]:
    overrides = [f"network.neuron.backend={backend}", f"output.root={root}", "output.plots=false"]
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    cfg, source = load_experiment("quickstart", overrides)
    result = run(cfg, source, progress=False)
    epochs_s = [row["seconds"] for row in result.metrics]
    return {
        "wall_s": result.summary["wall_time_seconds"],
        "epoch_min_s": min(epochs_s),
        "epoch_median_s": statistics.median(epochs_s),
        "test_accuracy": result.summary["test_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backends = ["torch", "auto"]
    runs: dict[str, list[dict[str, float]]] = {b: [] for b in backends}
    with tempfile.TemporaryDirectory() as root:
        for backend in backends:  # warm-up: imports, kernel compilation (cached on disk)
            run_once(backend, root, epochs=1)
        for i in range(args.rounds):
            for backend in backends if i % 2 == 0 else backends[::-1]:
                runs[backend].append(run_once(backend, root))
                print(backend, runs[backend][-1], flush=True)
    summary = {
        b: {
            "wall_s_min": min(r["wall_s"] for r in rs),
            "wall_s_median": statistics.median(r["wall_s"] for r in rs),
            "epoch_s_min": min(r["epoch_min_s"] for r in rs),
            "epoch_s_median": statistics.median(r["epoch_median_s"] for r in rs),
            "test_accuracy": rs[-1]["test_accuracy"],
        }
        for b, rs in runs.items()
    }
    report = {"command": " ".join(["python", *sys.argv]), "threads": args.threads, "summary": summary, "runs": runs}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print(f"{'backend':<8} {'run min s':>10} {'run med s':>10} {'epoch min s':>12} {'epoch med s':>12} {'acc':>7}")
    for b, s in summary.items():
        print(
            f"{b:<8} {s['wall_s_min']:>10.2f} {s['wall_s_median']:>10.2f} {s['epoch_s_min']:>12.3f} "
            f"{s['epoch_s_median']:>12.3f} {s['test_accuracy']:>7.4f}"
        )


if __name__ == "__main__":
    main()
