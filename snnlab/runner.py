"""Run an experiment: build data, network and rule from the config, train, evaluate, and fill the run folder.

A run can stop at any instant and continue (``snnlab resume``) to the same numbers: the
checkpoint holds every state the loop reads, and the data order and random draws are
fixed by the seed, the epoch and the sample (``snnlab.sampling``), not by history.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import __version__, checkpoint
from .builder import build_network
from .checkpoint import Progress
from .config import ExperimentConfig
from .datasets import DATASETS, DatasetSplits
from .distributed import Context, broadcast, gather, setup, sum_across, teardown, wrap
from .errors import Interrupted, SnnlabError
from .health import NonFiniteError, locate_non_finite
from .network import Network
from .plots import plot_activity, plot_curves
from .rules import RULES, Rule
from .run_folder import RunFolder
from .sampling import EpochSampler, SeededSamples
from .seeding import rng_states, seed_everything, set_rng_states
from .stats import ActivityMonitor, parameter_count


@dataclass
class RunResult:
    """Where the run went and what it measured."""

    run_dir: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]


def time_major(x: Tensor) -> Tensor:
    """A collated batch ``[B, T, ...]`` as ``[T, B, ...]``."""
    return x.transpose(0, 1)


def build_experiment(cfg: ExperimentConfig) -> tuple[DatasetSplits, Network]:
    """The data and the network of ``cfg``, with the rule's check that it can train that network."""
    splits = DATASETS.build(cfg.data)
    network = build_network(cfg.network, splits.input_shape, splits.num_classes)
    RULES.builder(cfg.rule.name).supports(cfg.rule, network)
    return splits, network


def data_loaders(cfg: ExperimentConfig, splits: DatasetSplits, ctx: Context) -> tuple[DataLoader, DataLoader]:
    """This process's training batches (an ``EpochSampler``: call ``set_epoch`` first) and test batches.

    Each loader gets a generator of its own, so that making an iterator never draws from the global stream.
    Workers (``data.num_workers``, else the dataset's default) stay alive across epochs; batches are
    pinned for a fast copy when training on CUDA.
    """
    data = cfg.data
    workers = data.num_workers if data.num_workers is not None else splits.loader_workers

    def loader(dataset: Any, sampler: EpochSampler, batch_size: int, drop_last: bool) -> DataLoader:
        return DataLoader(
            SeededSamples(dataset, cfg.seed),
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=ctx.device.type == "cuda",
            generator=torch.Generator(),
        )

    train_sampler = EpochSampler(
        len(splits.train), cfg.seed, shuffle=True, rank=ctx.rank, world=ctx.world, drop_last=data.drop_last
    )
    test_sampler = EpochSampler(len(splits.test), cfg.seed, shuffle=False, rank=ctx.rank, world=ctx.world)
    return (
        loader(splits.train, train_sampler, data.batch_size, data.drop_last),
        loader(splits.test, test_sampler, data.test_batch_size or data.batch_size, False),
    )


@torch.no_grad()
def evaluate(network: Network, rule: Rule, loader: DataLoader, ctx: Context) -> tuple[float, dict[str, Any]]:
    """Accuracy over ``loader`` (all processes' shares together) and the activity statistics of the same passes."""
    network.eval()
    correct = total = 0
    with ActivityMonitor(network) as monitor:
        for x, y in loader:
            x, y = time_major(x).to(ctx.device), y.to(ctx.device)
            scores = rule.predict(network, x)
            correct += int((scores.argmax(1) == y).sum())
            total += len(y)
            monitor.count(len(y))
    if ctx.world > 1:
        correct, total = sum_across([correct, total], ctx)
        monitor.combine(lambda values: sum_across(values, ctx))
    return correct / max(total, 1), monitor.summary()


def _what_training_depends_on(config: dict[str, Any]) -> dict[str, Any]:
    """A dumped config without what may change between sessions of one run: where its folder is, and the device."""
    output = {k: v for k, v in config.get("output", {}).items() if k not in ("dir", "root")}
    return {**{k: v for k, v in config.items() if k != "device"}, "output": output}


class Training:
    """One run in progress: its network, rule, data and folder, where it stands, and the loop that advances it."""

    def __init__(self, cfg: ExperimentConfig, source: str, ctx: Context, resume: Path | None) -> None:
        self.cfg, self.source, self.ctx = cfg, source, ctx
        seed_everything(cfg.seed)
        self.splits, self.network = build_experiment(cfg)
        self.network.to(ctx.device)
        self.rule = RULES.builder(cfg.rule.name)(cfg.rule, self.network, cfg.train).to(ctx.device)
        if ctx.world > 1 and not self.rule.distributable:
            raise SnnlabError(
                f"rule {cfg.rule.name!r} cannot train on several processes (its updates are local, not "
                f"gradients that DDP could average); run it on one process, without --nproc"
            )
        self.folder = self._folder(resume)
        self.started = time.perf_counter()
        self.progress = Progress()
        self.saved_at = "none was written yet"
        if resume is not None and self.folder.checkpoint.exists():
            self._restore()
        elif ctx.world > 1:
            seed_everything(cfg.seed + ctx.rank)  # independent dropout on each process; data draws are per sample
        self.model = wrap(self.network, ctx)
        self.train_loader, self.test_loader = data_loaders(cfg, self.splits, ctx)
        self.train_loader.sampler.set_epoch(1)
        self.steps_per_epoch = len(self.train_loader)

    def _folder(self, resume: Path | None) -> RunFolder:
        if resume is not None:
            folder = RunFolder.existing(resume)
            if self.ctx.main:
                folder.discard_temporaries()
            return folder
        path = None
        if self.ctx.main:
            folder = RunFolder.create(self.cfg)
            weights = checkpoint.tensor_bytes(self.network.state_dict())
            folder.check_space(8 * weights + 2**20)  # checkpoint with optimizer state, last, best, one temporary
            folder.write_config(self.cfg, self.source)
            path = folder.path
        return RunFolder(broadcast(path, self.ctx))

    def _restore(self) -> None:
        path = self.folder.checkpoint
        state = checkpoint.load(path)
        changed = checkpoint.first_difference(
            _what_training_depends_on(state["config"]), _what_training_depends_on(self.cfg.model_dump(mode="json"))
        )
        if changed is not None:
            raise SnnlabError(
                f"{self.folder.path / 'config.yaml'}: {changed} differs from the config the checkpoint was trained "
                f"with; resume with the config unchanged, or start a new run"
            )
        if len(state["rng"]) != self.ctx.world:
            raise SnnlabError(
                f"{path}: written by a run on {len(state['rng'])} process(es); resume it with --nproc {len(state['rng'])}"
            )
        self.progress = checkpoint.restore(state, path, self.network, self.rule)
        set_rng_states(state["rng"][self.ctx.rank])
        self.saved_at = self._position()
        self.started -= self.progress.seconds  # wall time counts earlier sessions too

    def _position(self) -> str:
        p = self.progress
        return f"epoch {p.epoch}, after step {p.step}" if p.step else f"end of epoch {p.epoch - 1}"

    def save_checkpoint(self) -> None:
        """Every process's generators, gathered; rank 0 writes the file."""
        rng = gather(rng_states(), self.ctx)
        self.progress.seconds = time.perf_counter() - self.started
        if self.ctx.main:
            config = self.cfg.model_dump(mode="json")
            self.folder.save_checkpoint(checkpoint.capture(config, self.network, self.rule, self.progress, rng))
        self.saved_at = self._position()

    def non_finite(self, what: str, epoch: int, step: int, x: Tensor) -> SnnlabError:
        """The error that stops the run, naming where the value first appears."""
        where = locate_non_finite(self.network, x)
        return SnnlabError(
            f"{what} at epoch {epoch}, step {step}; it first appears in {where}. The weights were not updated "
            f"with it; the last good checkpoint ({self.saved_at}) is in {self.folder.path}"
        )

    def train_epoch(self, epoch: int, bar: tqdm) -> None:
        """Train from the current position to the end of ``epoch``, checkpointing every ``checkpoint_every`` batches."""
        p, every = self.progress, self.cfg.output.checkpoint_every
        self.train_loader.sampler.set_epoch(epoch, p.step * self.cfg.data.batch_size)
        self.network.train()
        for step, (x, y) in enumerate(self.train_loader, start=p.step):
            x, y = time_major(x).to(self.ctx.device, non_blocking=True), y.to(self.ctx.device, non_blocking=True)
            try:
                metrics = self.rule.train_step(self.model, (x, y))
            except NonFiniteError as exc:
                raise self.non_finite(exc.what, epoch, step, x) from None
            if not math.isfinite(metrics["loss"]):
                raise self.non_finite(f"the loss became {metrics['loss']}", epoch, step, x)
            loss, correct, seen = sum_across([metrics["loss"] * len(y), metrics["accuracy"] * len(y), len(y)], self.ctx)
            p.loss_sum, p.accuracy_sum, p.seen, p.step = (
                p.loss_sum + loss,
                p.accuracy_sum + correct,
                p.seen + seen,
                step + 1,
            )
            bar.update(1)
            bar.set_postfix(loss=f"{p.loss_sum / p.seen:.4f}", acc=f"{p.accuracy_sum / p.seen:.3f}")
            if every is not None and p.step % every == 0 and p.step < self.steps_per_epoch:
                self.save_checkpoint()

    def end_epoch(self, epoch: int, seconds: float) -> dict[str, Any]:
        """Evaluate, record the epoch's metrics, write weights and then the checkpoint that makes the epoch count."""
        p = self.progress
        self.rule.end_epoch()
        test_accuracy, activity = evaluate(self.network, self.rule, self.test_loader, self.ctx)
        row = {
            "epoch": epoch,
            "loss": p.loss_sum / max(p.seen, 1),
            "train_accuracy": p.accuracy_sum / max(p.seen, 1),
            "test_accuracy": test_accuracy,
            "firing_rate": activity["firing_rate"],
            "seconds": round(seconds, 3),
        }
        improved = test_accuracy > p.best_accuracy
        p.rows.append(row)
        p.activity = activity
        if improved:
            p.best_accuracy, p.best_epoch = test_accuracy, epoch
        p.epoch, p.step, p.loss_sum, p.accuracy_sum, p.seen = epoch + 1, 0, 0.0, 0.0, 0
        if self.ctx.main:
            self.folder.write_metrics(p.rows)
            self.folder.save_weights("last", self.network, epoch, test_accuracy)
            if improved:
                self.folder.save_weights("best", self.network, epoch, test_accuracy)
        self.save_checkpoint()
        return row

    def fit(self, show_progress: bool) -> RunResult:
        """Train the remaining epochs, then write plots and the summary."""
        epochs, p = self.cfg.train.epochs, self.progress
        bar = tqdm(
            total=epochs * self.steps_per_epoch,
            initial=min(p.epoch - 1, epochs) * self.steps_per_epoch + p.step,
            disable=not (show_progress and self.ctx.main),
            unit="batch",
            dynamic_ncols=True,
            mininterval=0.5,
        )
        for epoch in range(p.epoch, epochs + 1):
            epoch_start = time.perf_counter()
            bar.set_description(f"epoch {epoch}/{epochs}")
            self.train_epoch(epoch, bar)
            row = self.end_epoch(epoch, time.perf_counter() - epoch_start)
            bar.set_postfix(
                loss=f"{row['loss']:.4f}", acc=f"{row['train_accuracy']:.3f}", test=f"{row['test_accuracy']:.3f}"
            )
        bar.close()
        summary = self.summary(time.perf_counter() - self.started)
        if self.ctx.main:
            self.finish(summary)
        return RunResult(self.folder.path, summary, p.rows)

    def summary(self, seconds: float) -> dict[str, Any]:
        p = self.progress
        return {
            "experiment": self.cfg.name,
            "config": self.source,
            "test_accuracy": p.rows[-1]["test_accuracy"],
            "best_test_accuracy": p.best_accuracy,
            "best_epoch": p.best_epoch,
            "epochs": self.cfg.train.epochs,
            **p.activity,
            "parameters": parameter_count(self.network),
            "wall_time_seconds": round(seconds, 3),
            "device": str(self.ctx.device),
            "processes": self.ctx.world,
            "seed": self.cfg.seed,
            "versions": {"snnlab": __version__, "torch": torch.__version__},
        }

    def finish(self, summary: dict[str, Any]) -> None:
        """Plots and ``summary.json``; rank 0 only."""
        if self.cfg.output.plots:
            plot_curves(self.progress.rows, self.folder.path / "curves.png")
            x, _ = self.splits.test[0]
            path = self.folder.path
            plot_activity(self.network, x.unsqueeze(1).to(self.ctx.device), path / "raster.png", path / "membrane.png")
        self.folder.write_summary(summary)


def run(cfg: ExperimentConfig, source: str, progress: bool = True, resume: Path | None = None) -> RunResult:
    """Train and evaluate the experiment ``cfg`` (read from ``source``) and write its run folder.

    With ``resume``, continue the run in that folder from its last checkpoint instead. Under
    torchrun, each process calls this; they train together and rank 0 writes the folder.
    """
    ctx = setup(cfg.device)
    try:
        training = Training(cfg, source, ctx, resume)
        try:
            return training.fit(progress)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted; the last checkpoint ({training.saved_at}) is in {training.folder.path}, and "
                f"`snnlab resume {training.folder.path}` continues from it"
            ) from None
    finally:
        teardown(ctx)
