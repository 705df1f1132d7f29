"""What the accuracy benchmarks share: train one experiment over several seeds through the runner (model selection
on the validation split, as ``snnlab run`` does), summarise mean and spread, and write a benchmark's section of
``benchmarks/RESULTS.md`` in place, so that re-running a script replaces its own section and nothing else.

Each training epoch is also measured (``epoch_meter``): its wall time (the runner's own ``seconds``: training
only, not evaluation) and its peak memory above what was in use when it began. On CUDA that is
``torch.cuda.max_memory_allocated``; on the CPU the peak resident set size (``VmHWM`` of ``/proc/self/status``,
reset through ``/proc/self/clear_refs`` at the epoch's start) minus the resident size then, with glibc told to
return freed blocks of 64 KiB and more to the system at once, so that the resident set follows the live tensors.
A row reports the median over its epochs and seeds (the first epoch also pays one-time costs: kernels loaded,
forward-mode decompositions compiled).
"""

from __future__ import annotations

import ctypes
import datetime
import gc
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # snnlab from this source tree

from snnlab.config import load_experiment  # noqa: E402
from snnlab.runner import RunResult, Training, run  # noqa: E402

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
    """A row's runs: test accuracy at the epoch chosen on validation, firing rate and wall time, one per seed; time
    and peak memory (MiB) of every training epoch of every seed."""

    row: Row
    accuracies: tuple[float, ...]
    firing_rates: tuple[float, ...]
    seconds: tuple[float, ...]
    epoch_seconds: tuple[float, ...] = ()
    epoch_peak_mib: tuple[float, ...] = ()

    def accuracy(self) -> str:
        """Mean ± standard deviation over seeds, in percent."""
        return mean_std([100 * a for a in self.accuracies])


def mean_std(values: Sequence[float], digits: int = 2) -> str:
    """``mean ± std`` (sample standard deviation; just the value for one)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _return_freed_memory() -> None:
    """glibc keeps freed blocks below its dynamic mmap threshold in the heap, which would hide the next epoch's peak
    from the resident set: fix the threshold (and the trim threshold) at 64 KiB."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD (fixing it turns the dynamic threshold off)
        libc.mallopt(-1, 64 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: the CPU peak may include memory the allocator kept


def _status_bytes(field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) * 1024 if match else 0


@contextmanager
def epoch_meter() -> Iterator[list[tuple[float, float]]]:
    """While open, every ``Training.train_epoch`` appends (seconds, peak MiB above its start) to the yielded list."""
    _return_freed_memory()
    records: list[tuple[float, float]] = []
    original = Training.train_epoch

    def measured(self: Training, epoch: int, bar: Any) -> None:
        gc.collect()
        cuda = self.ctx.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.ctx.device)
            torch.cuda.reset_peak_memory_stats(self.ctx.device)
            before = torch.cuda.memory_allocated(self.ctx.device)
        else:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
            before = _status_bytes("VmRSS")
        start = time.perf_counter()
        original(self, epoch, bar)
        if cuda:
            torch.cuda.synchronize(self.ctx.device)
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(self.ctx.device) if cuda else _status_bytes("VmHWM")
        records.append((seconds, (peak - before) / 2**20))

    Training.train_epoch = measured  # type: ignore[method-assign]
    try:
        yield records
    finally:
        Training.train_epoch = original  # type: ignore[method-assign]


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
            summaries, epochs = [], []
            for seed in seeds:
                with epoch_meter() as measured:
                    summaries.append(train(row.experiment, row.overrides, seed, root).summary)
                epochs += measured
            outcome = Outcome(
                row,
                tuple(s["best_test_accuracy"] for s in summaries),
                tuple(s.get("firing_rate", float("nan")) for s in summaries),
                tuple(s["wall_time_seconds"] for s in summaries),
                tuple(seconds for seconds, _ in epochs),
                tuple(peak for _, peak in epochs),
            )
            if log:
                print(f"{row.label}: {outcome.accuracy()} %", flush=True)
            outcomes.append(outcome)
    return outcomes


def table(outcomes: Sequence[Outcome], claim_header: str = "paper's claim") -> str:
    """A markdown table of outcomes: accuracy (mean ± std), firing rate, the median time and peak memory of a
    training epoch, seconds per run, and the claim."""
    lines = [
        f"| configuration | test accuracy % | firing rate | s per epoch | peak MiB per epoch | s per run | {claim_header} |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        known = all(isinstance(r, float) and r == r for r in o.firing_rates)  # None or NaN: no binary spikes
        rate = mean_std(o.firing_rates, 3) if known else "n/a"
        epoch = f"{statistics.median(o.epoch_seconds):.2f}" if o.epoch_seconds else "n/a"
        peak = f"{statistics.median(o.epoch_peak_mib):.1f}" if o.epoch_peak_mib else "n/a"
        lines.append(
            f"| {o.row.label} | {o.accuracy()} | {rate} | {epoch} | {peak} | {statistics.fmean(o.seconds):.1f} "
            f"| {o.row.claim} |"
        )
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
