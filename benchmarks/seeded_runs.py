"""What the accuracy benchmarks share: train one experiment over several seeds through the runner (model selection
on the validation split, as ``snnlab run`` does), summarise mean and spread, and write a benchmark's section of
``benchmarks/RESULTS.md`` in place, so that re-running a script replaces its own section and nothing else.
"""

from __future__ import annotations

import datetime
import platform
import re
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # snnlab from this source tree

from snnlab.config import load_experiment  # noqa: E402
from snnlab.runner import RunResult, run  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"


@dataclass(frozen=True)
class Row:
    """One configuration of a benchmark table: an experiment, the overrides that make it this row, and the paper's
    claim it is set beside (text, or empty)."""

    label: str
    experiment: str
    overrides: tuple[str, ...] = ()
    claim: str = ""


@dataclass(frozen=True)
class Outcome:
    """A row's runs: test accuracy at the epoch chosen on validation, firing rate and wall time, one per seed."""

    row: Row
    accuracies: tuple[float, ...]
    firing_rates: tuple[float, ...]
    seconds: tuple[float, ...]

    def accuracy(self) -> str:
        """Mean ± standard deviation over seeds, in percent."""
        return mean_std([100 * a for a in self.accuracies])


def mean_std(values: Sequence[float], digits: int = 2) -> str:
    """``mean ± std`` (sample standard deviation; just the value for one)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def train(experiment: str, overrides: Sequence[str], seed: int, root: str) -> RunResult:
    """One run of ``experiment`` with ``overrides`` and ``seed``, written under ``root``."""
    extra = [f"seed={seed}", f"output.root={root}", "output.plots=false"]
    path = ROOT / "experiments" / f"{experiment}.yaml"  # this tree's, not an installed copy's
    cfg, source = load_experiment(str(path) if path.is_file() else experiment, [*overrides, *extra])
    return run(cfg, source, progress=False)


def run_rows(rows: Sequence[Row], seeds: Sequence[int], log: bool = True) -> list[Outcome]:
    """Every row over every seed (in a scratch folder that is deleted afterwards)."""
    outcomes = []
    with tempfile.TemporaryDirectory() as root:
        for row in rows:
            summaries = [train(row.experiment, row.overrides, seed, root).summary for seed in seeds]
            outcome = Outcome(
                row,
                tuple(s["best_test_accuracy"] for s in summaries),
                tuple(s.get("firing_rate", float("nan")) for s in summaries),
                tuple(s["wall_time_seconds"] for s in summaries),
            )
            if log:
                print(f"{row.label}: {outcome.accuracy()} %", flush=True)
            outcomes.append(outcome)
    return outcomes


def table(outcomes: Sequence[Outcome], claim_header: str = "paper's claim") -> str:
    """A markdown table of outcomes: accuracy (mean ± std), firing rate, seconds per run, and the claim."""
    lines = [
        f"| configuration | test accuracy % | firing rate | s per run | {claim_header} |",
        "|---|---|---|---|---|",
    ]
    for o in outcomes:
        known = all(isinstance(r, float) and r == r for r in o.firing_rates)  # None or NaN: no binary spikes
        rate = mean_std(o.firing_rates, 3) if known else "n/a"
        lines.append(f"| {o.row.label} | {o.accuracy()} | {rate} | {statistics.fmean(o.seconds):.1f} | {o.row.claim} |")
    return "\n".join(lines)


def machine() -> str:
    """The device line of a RESULTS.md entry."""
    names = (
        [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        if Path("/proc/cpuinfo").exists()
        else []
    )
    cpu = f"{names[0]} ({len(names)} cores)" if names else platform.machine()
    return f"{cpu}, {torch.get_num_threads()} threads, Python {platform.python_version()}, torch {torch.__version__}"


def header(command: Sequence[str], seeds: Sequence[int]) -> str:
    """Command, date, device and seeds: the lines every entry starts with."""
    return (
        f"Command: `{' '.join(['python', *command])}`. Date: {datetime.date.today().isoformat()}. "
        f"Device: {machine()}. Seeds: {', '.join(map(str, seeds))}; test accuracy at the epoch chosen on the "
        "validation split."
    )


def write_section(key: str, title: str, body: str, path: Path = RESULTS) -> None:
    """Put ``## title`` + ``body`` between this benchmark's markers in RESULTS.md: replaced when present, else
    appended."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    section = f"{start}\n## {title}\n\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
