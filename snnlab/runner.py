"""Run an experiment: build data, network and rule from the config, train, evaluate, and fill the run folder."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import __version__
from .builder import build_network
from .config import ExperimentConfig
from .datasets import DATASETS, DatasetSplits
from .errors import SnnlabError
from .network import Network
from .plots import plot_activity, plot_curves
from .rules import RULES, Rule
from .run_folder import RunFolder
from .stats import ActivityMonitor, parameter_count


@dataclass
class RunResult:
    """Where the run went and what it measured."""

    run_dir: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so that a CPU run repeats bit for bit."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SnnlabError(f"device: {name!r} was asked for but CUDA is not available; use device=cpu or auto")
    return torch.device(name)


def time_major(x: Tensor) -> Tensor:
    """A collated batch ``[B, T, ...]`` as ``[T, B, ...]``."""
    return x.transpose(0, 1)


def build_experiment(cfg: ExperimentConfig) -> tuple[DatasetSplits, Network]:
    """The data and the network of ``cfg``, with the rule's check that it can train that network."""
    splits = DATASETS.build(cfg.data)
    network = build_network(cfg.network, splits.input_shape, splits.num_classes)
    RULES.builder(cfg.rule.name).supports(cfg.rule, network)
    return splits, network


def data_loaders(cfg: ExperimentConfig, splits: DatasetSplits, device: torch.device) -> tuple[DataLoader, DataLoader]:
    """Shuffled training batches (order fixed by the seed) and test batches in a fixed order.

    Workers (``data.num_workers``, else the dataset's default) stay alive across epochs; batches are
    pinned for a fast copy when training on CUDA.
    """
    data = cfg.data
    workers = data.num_workers if data.num_workers is not None else splits.loader_workers
    options = {"num_workers": workers, "pin_memory": device.type == "cuda", "persistent_workers": workers > 0}
    generator = torch.Generator().manual_seed(cfg.seed)
    train = DataLoader(splits.train, batch_size=data.batch_size, shuffle=True, generator=generator, **options)
    test = DataLoader(splits.test, batch_size=data.test_batch_size or data.batch_size, **options)
    return train, test


def train_epoch(
    rule: Rule, network: Network, loader: DataLoader, device: torch.device, bar: tqdm, epoch: int, run_dir: Path
) -> tuple[float, float]:
    """One pass over the training data; returns the sample-weighted mean loss and accuracy.

    A non-finite loss stops the run, naming the epoch and step, before the next checkpoint could be written.
    """
    network.train()
    loss_sum = accuracy_sum = 0.0
    seen = 0
    for step, (x, y) in enumerate(loader):
        x, y = time_major(x).to(device, non_blocking=True), y.to(device, non_blocking=True)
        metrics = rule.train_step(network, (x, y))
        if not math.isfinite(metrics["loss"]):
            raise SnnlabError(
                f"the loss became {metrics['loss']} at epoch {epoch}, step {step}; "
                f"the last good checkpoint is in {run_dir}"
            )
        loss_sum += metrics["loss"] * len(y)
        accuracy_sum += metrics["accuracy"] * len(y)
        seen += len(y)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{accuracy_sum / seen:.3f}")
    return loss_sum / seen, accuracy_sum / seen


@torch.no_grad()
def evaluate(network: Network, rule: Rule, loader: DataLoader, device: torch.device) -> tuple[float, dict[str, Any]]:
    """Accuracy over ``loader`` and the activity statistics of the same passes."""
    network.eval()
    correct = total = 0
    with ActivityMonitor(network) as monitor:
        for x, y in loader:
            x, y = time_major(x).to(device), y.to(device)
            scores = rule.predict(network, x)
            correct += int((scores.argmax(1) == y).sum())
            total += len(y)
            monitor.count(len(y))
    return correct / max(total, 1), monitor.summary()


def run(cfg: ExperimentConfig, source: str, progress: bool = True) -> RunResult:
    """Train and evaluate the experiment ``cfg`` (read from ``source``) and write its run folder."""
    started = time.perf_counter()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    splits, network = build_experiment(cfg)
    network.to(device)
    train_loader, test_loader = data_loaders(cfg, splits, device)
    rule = RULES.builder(cfg.rule.name)(cfg.rule, network, cfg.train).to(device)

    folder = RunFolder.create(cfg)
    folder.write_config(cfg, source)

    rows: list[dict[str, Any]] = []
    best = (-1.0, 0)
    epochs = cfg.train.epochs
    bar = tqdm(
        total=epochs * len(train_loader), disable=not progress, unit="batch", dynamic_ncols=True, mininterval=0.5
    )
    activity: dict[str, Any] = {}
    for epoch in range(1, epochs + 1):
        epoch_start = time.perf_counter()
        bar.set_description(f"epoch {epoch}/{epochs}")
        loss, train_accuracy = train_epoch(rule, network, train_loader, device, bar, epoch, folder.path)
        rule.end_epoch()
        test_accuracy, activity = evaluate(network, rule, test_loader, device)
        row = {
            "epoch": epoch,
            "loss": loss,
            "train_accuracy": train_accuracy,
            "test_accuracy": test_accuracy,
            "firing_rate": activity["firing_rate"],
            "seconds": round(time.perf_counter() - epoch_start, 3),
        }
        rows.append(row)
        folder.append_metrics(row)
        folder.save_checkpoint("last", network, epoch, test_accuracy)
        if test_accuracy > best[0]:
            best = (test_accuracy, epoch)
            folder.save_checkpoint("best", network, epoch, test_accuracy)
        bar.set_postfix(loss=f"{row['loss']:.4f}", acc=f"{row['train_accuracy']:.3f}", test=f"{test_accuracy:.3f}")
    bar.close()

    if cfg.output.plots:
        plot_curves(rows, folder.path / "curves.png")
        x, _ = splits.test[0]
        plot_activity(network, x.unsqueeze(1).to(device), folder.path / "raster.png", folder.path / "membrane.png")

    summary = {
        "experiment": cfg.name,
        "config": source,
        "test_accuracy": rows[-1]["test_accuracy"],
        "best_test_accuracy": best[0],
        "best_epoch": best[1],
        "epochs": epochs,
        **activity,
        "parameters": parameter_count(network),
        "wall_time_seconds": round(time.perf_counter() - started, 3),
        "device": str(device),
        "seed": cfg.seed,
        "versions": {"snnlab": __version__, "torch": torch.__version__},
    }
    folder.write_summary(summary)
    return RunResult(folder.path, summary, rows)
