"""Run an experiment: build data, network and rule from the config, train, evaluate, and fill the run folder.

A run can stop at any instant and continue (``snnlab resume``) to the same numbers: the
checkpoint holds every state the loop reads, and the data order and random draws are
fixed by the seed, the epoch and the sample (``snnlab.sampling``), not by history.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import __version__, checkpoint, lifecycle
from .builder import build_network, output_shape
from .checkpoint import Progress
from .config import ExperimentConfig
from .datasets import DATASETS, DatasetSplits
from .datasets.validation import with_validation
from .distributed import Context, average_buffers, broadcast, broadcast_module, gather, setup, sum_across, teardown
from .errors import ConfigError, Interrupted, SnnlabError, Terminated
from .health import NonFiniteError, first_non_finite, locate_non_finite
from .kernels.threads import set_threads
from .network import Network
from .objectives import OBJECTIVES, Objective
from .rules import RULES, Rule
from .rules.graphed import check_cuda_graphs
from .run_folder import RunFolder
from .sampling import EpochSampler, SeededSamples
from .seeding import fixed_randomness, rng_states, seed_everything, set_rng_states
from .stats import ActivityMonitor, parameter_count
from .stopping import interrupts_deferred, signals_as_interrupts


@dataclass
class RunResult:
    """Where the run went and what it measured."""

    run_dir: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]


def time_major(x: Tensor) -> Tensor:
    """A collated batch ``[B, T, ...]`` as ``[T, B, ...]``."""
    return x.transpose(0, 1)


def to_device(x: Tensor, y: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """A collated batch on ``device``, time-major: inputs always, targets when they have a time axis."""
    y = time_major(y) if y.dim() >= 2 else y
    return time_major(x).to(device, non_blocking=True), y.to(device, non_blocking=True)


class Experiment(NamedTuple):
    """What a config builds before training: the data, the network, the objective, and what the builder
    changed on the objective's behalf (shown by ``snnlab check``)."""

    splits: DatasetSplits
    network: Network
    objective: Objective
    notes: list[str]


def build_experiment(cfg: ExperimentConfig) -> Experiment:
    """The data, network and objective of ``cfg``, checked against each other and against the rule."""
    splits = with_validation(DATASETS.build(cfg.data), cfg.data.validation_fraction, cfg.data.validation_seed)
    objective = OBJECTIVES.build(cfg.objective)
    rule = RULES.builder(cfg.rule.name)
    notes: list[str] = []
    membrane_output = objective.membrane_output and rule.needs_output_layer
    network = build_network(cfg.network, splits.input_shape, membrane_output, notes)
    if rule.needs_output_layer:
        try:
            objective.check(output_shape(network, splits.input_shape), splits.num_classes)
        except ValueError as exc:
            raise ConfigError([(f"network.blocks[{len(cfg.network.blocks) - 1}]", str(exc))]) from None
    rule.supports(cfg.rule, network)
    return Experiment(splits, network, objective, notes)


def build_rule(cfg: ExperimentConfig, network: Network, objective: Objective) -> Rule:
    """The rule of ``cfg`` for ``network`` and ``objective``."""
    return RULES.builder(cfg.rule.name)(cfg.rule, network, objective, cfg.train)


class Loaders(NamedTuple):
    """This process's training batches (an ``EpochSampler``: call ``set_epoch`` first), and its share of the
    validation (None without one) and test batches."""

    train: DataLoader
    validation: DataLoader | None
    test: DataLoader


def data_loaders(cfg: ExperimentConfig, splits: DatasetSplits, ctx: Context) -> Loaders:
    """The loaders of ``splits`` for this process.

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
            timeout=splits.loader_timeout_s if workers > 0 else 0,
        )

    def evaluation(dataset: Any) -> DataLoader:
        sampler = EpochSampler(len(dataset), cfg.seed, shuffle=False, rank=ctx.rank, world=ctx.world)
        return loader(dataset, sampler, data.test_batch_size or data.batch_size, False)

    train_sampler = EpochSampler(
        len(splits.train), cfg.seed, shuffle=True, rank=ctx.rank, world=ctx.world, drop_last=data.drop_last
    )
    return Loaders(
        loader(splits.train, train_sampler, data.batch_size, data.drop_last),
        evaluation(splits.validation) if splits.validation is not None else None,
        evaluation(splits.test),
    )


@torch.no_grad()
def evaluate(network: Network, rule: Rule, loader: DataLoader, ctx: Context) -> tuple[dict[str, float], dict[str, Any]]:
    """The objective's metrics over ``loader`` (all processes' shares together, each a mean over samples) and
    the activity statistics of the same passes. Random draws of the network (stochastic neurons) come from a
    fixed seed (``seeding.fixed_randomness``): the same weights give the same metrics, and the training stream is
    not advanced."""
    network.eval()
    sums: dict[str, float] = {}
    total = 0
    with fixed_randomness(device=ctx.device), ActivityMonitor(network) as monitor:
        for x, y in loader:
            x, y = to_device(x, y, ctx.device)
            n = x.shape[1]
            for key, value in rule.objective.metrics(rule.predict(network, x), y).items():
                sums[key] = sums.get(key, 0.0) + value * n
            total += n
            monitor.count(n)
    keys = sorted(sums)
    if ctx.world > 1:
        *values, total = sum_across([sums[k] for k in keys] + [total], ctx)
        sums = dict(zip(keys, values))
        monitor.combine(lambda values: sum_across(values, ctx))
    return {k: sums[k] / max(total, 1) for k in keys}, monitor.summary()


class TrainingBatches:
    """This process's training batches of one epoch, time-major on its device, for ``Rule.end_epoch``."""

    def __init__(self, loader: DataLoader, epoch: int, device: torch.device) -> None:
        self.loader, self.epoch, self.device = loader, epoch, device

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        self.loader.sampler.set_epoch(self.epoch)
        for x, y in self.loader:
            yield to_device(x, y, self.device)


def _what_training_depends_on(config: dict[str, Any]) -> dict[str, Any]:
    """A dumped config without what may change between sessions of one run: where its folder is, and the device."""
    output = {k: v for k, v in config.get("output", {}).items() if k not in ("dir", "root")}
    return {**{k: v for k, v in config.items() if k != "device"}, "output": output}


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """One epoch's metrics as a line: ``epoch 3/20: loss 0.4123, train_accuracy 0.9012, ... (0.18 s)``."""
    values = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "seconds") and v is not None)
    return f"epoch {row['epoch']}/{epochs}: {values} ({row['seconds']:.2f} s)"


def load_network_weights(path: Path, network: Network) -> None:
    """The network's tensors from ``path`` (a run folder's ``best.safetensors``, or a weights file), checked by
    name, shape and dtype; the rule's state in the file is not used."""
    from .storage import check_tensors, read_weights

    if path.is_dir():
        path = path / "best.safetensors"
    tensors = {k.removeprefix("network."): v for k, v in read_weights(path).items() if k.startswith("network.")}
    check_tensors(tensors, network.state_dict(), f"{path} (train.init)")
    with torch.no_grad():
        network.load_state_dict(tensors)


class Training:
    """One run in progress: its network, rule, data and folder, where it stands, and the loop that advances it."""

    def __init__(self, cfg: ExperimentConfig, source: str, ctx: Context, resume: Path | None, label: str = "") -> None:
        self.cfg, self.source, self.ctx = cfg, source, ctx
        check_cuda_graphs(cfg, ctx.device)
        set_threads(cfg.threads)
        seed_everything(cfg.seed)
        self.splits, self.network, objective, _ = build_experiment(cfg)
        self.network.to(ctx.device)
        self.rule = build_rule(cfg, self.network, objective).to(ctx.device)
        if ctx.world > 1 and not self.rule.distributable:
            raise SnnlabError(
                f"rule {cfg.rule.name!r} cannot train on several processes (its updates are local, not "
                f"gradients that can be averaged); run it on one process, without --nproc"
            )
        self.label = label
        self.folder = self._folder(resume)
        try:
            self._start(resume)
        except KeyboardInterrupt as exc:
            raise self.interrupted(exc) from None
        except Exception:
            if resume is None and self.ctx.main:  # failed before training: leave no folder holding only a config
                self.folder.undo()
            raise

    def _start(self, resume: Path | None) -> None:
        """Everything after the folder exists: restore or initialise, and the data loaders."""
        cfg, ctx = self.cfg, self.ctx
        self.started = time.perf_counter()
        self.progress = Progress()
        self.saved_at: str | None = None
        fresh = not (resume is not None and self.folder.checkpoint.exists())
        if not fresh:
            self._restore()
        elif ctx.world > 1:
            seed_everything(cfg.seed + ctx.rank)  # independent dropout on each process; data draws are per sample
        self.train_loader, self.validation_loader, self.test_loader = data_loaders(cfg, self.splits, ctx)
        self.train_loader.sampler.set_epoch(1)
        self.steps_per_epoch = len(self.train_loader)
        if fresh and cfg.train.init is not None:
            load_network_weights(Path(cfg.train.init), self.network)
        elif fresh and lifecycle.has_initializers(self.network):
            x, y = to_device(*next(iter(self.train_loader)), ctx.device)
            lifecycle.initialize(self.network, x)
        if fresh:
            broadcast_module(self.network, ctx)

    def _folder(self, resume: Path | None) -> RunFolder:
        if resume is not None:
            folder = RunFolder.existing(resume)
            if self.ctx.main:
                folder.lock()
                folder.discard_temporaries()
                kept = folder.holds_results()
                if not folder.checkpoint.exists() and kept:
                    folder.release()
                    raise SnnlabError(
                        f"{folder.path}: no {folder.checkpoint.name} to resume from, but the folder holds results "
                        f"({', '.join(kept)}) that a new start would overwrite; they are left as they are. Start a "
                        f"new run (`snnlab run {folder.path / 'config.yaml'}`), or put the checkpoint back"
                    )
            return folder
        if self.ctx.main:
            folder = RunFolder.create(self.cfg, self.label)
            try:
                weights = checkpoint.tensor_bytes(self.network.state_dict()) + checkpoint.tensor_bytes(
                    self.rule.state_dict()
                )
                folder.check_space(8 * weights + 2**20)  # checkpoint with optimizer state, last, best, one temporary
                folder.write_config(self.cfg, self.source)
            except KeyboardInterrupt as exc:
                self.folder = folder
                raise self.interrupted(exc) from None
            except BaseException:
                folder.release()
                raise
        path = broadcast(folder.path if self.ctx.main else None, self.ctx)
        return folder if self.ctx.main else RunFolder(path)

    def _restore(self) -> None:
        path = self.folder.checkpoint
        state = checkpoint.load(path)
        before, now = state["config"], self.cfg.model_dump(mode="json")
        extended = now["train"]["epochs"] > before["train"]["epochs"]
        if extended:  # more epochs is the one change a run may take: it goes on past where it ended
            before = {**before, "train": {**before["train"], "epochs": now["train"]["epochs"]}}
        changed = checkpoint.first_difference(_what_training_depends_on(before), _what_training_depends_on(now))
        if changed is not None:
            raise SnnlabError(
                f"{self.folder.path / 'config.yaml'}: {changed} differs from the config the checkpoint was trained "
                f"with; resume with the config unchanged, or start a new run"
            )
        if len(state["rng"]) != self.ctx.world:
            raise SnnlabError(
                f"{path}: written by a run on {len(state['rng'])} process(es); resume it with --nproc {len(state['rng'])}"
            )
        # the schedules are closed forms of the epoch (optim.EpochSchedule): restored into a rule built for the
        # extended length, they continue as if the run had been planned for it
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
        with interrupts_deferred():  # the file and saved_at change together, whenever Ctrl-C comes
            if self.ctx.main:
                config = self.cfg.model_dump(mode="json")
                self.folder.save_checkpoint(checkpoint.capture(config, self.network, self.rule, self.progress, rng))
            self.saved_at = self._position()

    def interrupted(self, signal: KeyboardInterrupt) -> Interrupted:
        """The error that ends a stopped run: where its last checkpoint is and how to go on. Gives the folder's
        lock back."""
        self.folder.release()
        what, code = ("terminated (SIGTERM)", 143) if isinstance(signal, Terminated) else ("interrupted", 130)
        path = self.folder.path
        if not (path / "config.yaml").exists():
            return Interrupted(f"{what} while making the run folder {path}; nothing was trained: run it again", code)
        if getattr(self, "saved_at", None) is None:
            return Interrupted(
                f"{what} before the first checkpoint; `snnlab resume {path}` starts the run in {path} again", code
            )
        return Interrupted(
            f"{what}; the last checkpoint ({self.saved_at}) is in {path}, and `snnlab resume {path}` continues from it",
            code,
        )

    def non_finite(self, error: NonFiniteError, epoch: int, step: int, x: Tensor) -> SnnlabError:
        """The error that stops the run, naming where the value first appears."""
        last = f"the last good checkpoint ({self.saved_at or 'none was written yet'}) is in {self.folder.path}"
        if error.updated:
            return SnnlabError(
                f"{error.what} at epoch {epoch}, step {step} (is the learning rate or weight decay far too large?); "
                f"nothing from that update was saved: {last}"
            )
        where = locate_non_finite(self.network, x)
        return SnnlabError(
            f"{error.what} at epoch {epoch}, step {step}; it first appears in {where}. The weights were not "
            f"updated with it; {last}"
        )

    def train_epoch(self, epoch: int, bar: tqdm) -> None:
        """Train from the current position to the end of ``epoch``, checkpointing every ``checkpoint_every`` batches."""
        p, every = self.progress, self.cfg.output.checkpoint_every
        self.train_loader.sampler.set_epoch(epoch, p.step * self.cfg.data.batch_size)
        self.network.train()
        for step, (x, y) in enumerate(self.train_loader, start=p.step):
            x, y = to_device(x, y, self.ctx.device)
            try:
                metrics = self.rule.train_step(self.network, (x, y))
            except NonFiniteError as exc:
                raise self.non_finite(exc, epoch, step, x) from None
            if not math.isfinite(metrics["loss"]):
                raise self.non_finite(NonFiniteError(f"the loss became {metrics['loss']}"), epoch, step, x)
            n, keys = x.shape[1], list(metrics)
            *sums, seen = sum_across([metrics[k] * n for k in keys] + [n], self.ctx)
            p.sums = {k: p.sums.get(k, 0.0) + v for k, v in zip(keys, sums)}
            p.seen, p.step = p.seen + int(seen), step + 1
            bar.update(1)
            bar.set_postfix({k if k == "loss" else k[:3]: f"{v / p.seen:.4f}" for k, v in p.sums.items()})
            if every is not None and p.step % every == 0 and p.step < self.steps_per_epoch:
                self.save_checkpoint()

    def end_epoch(self, epoch: int, seconds: float) -> dict[str, Any]:
        """Evaluate, record the epoch's metrics, write weights and then the checkpoint that makes the epoch count."""
        p = self.progress
        self.rule.end_epoch(self.network, TrainingBatches(self.train_loader, epoch, self.ctx.device))
        lifecycle.end_epoch(self.network, epoch, self.cfg.train.epochs)
        average_buffers(self.network, self.ctx)
        validation = {}
        if self.validation_loader is not None:
            validation, _ = evaluate(self.network, self.rule, self.validation_loader, self.ctx)
        test, activity = evaluate(self.network, self.rule, self.test_loader, self.ctx)
        train = {k if k == "loss" else f"train_{k}": v / max(p.seen, 1) for k, v in p.sums.items()}
        row = {
            "epoch": epoch,
            **train,
            **{f"val_{k}": v for k, v in validation.items()},
            **{f"test_{k}": v for k, v in test.items()},
            "firing_rate": activity["firing_rate"],
            "seconds": round(seconds, 3),
        }
        key, mode = self.rule.objective.best
        if validation:  # the best epoch is chosen on validation, never on test
            value = validation[key]
            improved = p.best_value is None or (value > p.best_value if mode == "max" else value < p.best_value)
        else:  # nothing to choose on: the last epoch is the one kept
            value, improved = None, True
        p.rows.append(row)
        p.activity = activity
        if improved:
            p.best_value, p.best_epoch = value, epoch
        p.epoch, p.step, p.sums, p.seen = epoch + 1, 0, {}, 0
        broken = first_non_finite(
            (f"{owner}.{k}", t)
            for owner, module in (("network", self.network), ("rule", self.rule))
            for k, t in module.state_dict().items()
            if t.is_floating_point()
        )
        if broken is not None:
            raise SnnlabError(
                f"{broken} is NaN or Inf at the end of epoch {epoch}; nothing of this epoch was saved: the last good "
                f"checkpoint ({self.saved_at or 'none was written yet'}) is in {self.folder.path}"
            )
        if self.ctx.main:
            self.folder.write_metrics(p.rows)
            self.folder.save_weights("last", self.network, self.rule, epoch, test)
            if improved:
                self.folder.save_weights("best", self.network, self.rule, epoch, test)
        self.save_checkpoint()
        return row

    def fit(self, show_progress: bool) -> RunResult:
        """Train the remaining epochs, then write plots and the summary. With ``show_progress`` (on process 0) each
        epoch ends with one line of its metrics on stderr, and a terminal also gets a progress bar (a file or pipe,
        as on a cluster, gets the lines alone)."""
        epochs, p = self.cfg.train.epochs, self.progress
        speak = show_progress and self.ctx.main
        bar = tqdm(
            total=epochs * self.steps_per_epoch,
            initial=min(p.epoch - 1, epochs) * self.steps_per_epoch + p.step,
            disable=not (speak and sys.stderr.isatty()),
            unit="batch",
            dynamic_ncols=True,
            mininterval=0.5,
        )
        for epoch in range(p.epoch, epochs + 1):
            epoch_start = time.perf_counter()
            bar.set_description(f"epoch {epoch}/{epochs}")
            self.train_epoch(epoch, bar)
            row = self.end_epoch(epoch, time.perf_counter() - epoch_start)
            if speak:
                tqdm.write(epoch_line(row, epochs), file=sys.stderr)
        bar.close()
        summary = self.summary(time.perf_counter() - self.started)
        if self.ctx.main:
            self.finish(summary)
        return RunResult(self.folder.path, summary, p.rows)

    def summary(self, seconds: float) -> dict[str, Any]:
        p = self.progress
        key = self.rule.objective.best[0]
        best = p.rows[p.best_epoch - 1]
        return {
            "experiment": self.cfg.name,
            "config": self.source,
            **{k: v for k, v in p.rows[-1].items() if k.startswith("test_")},
            "best_metric": key,
            "best_epoch": p.best_epoch,
            "best_chosen_on": "validation"
            if self.validation_loader is not None
            else "last epoch (no validation split)",
            f"best_val_{key}": best.get(f"val_{key}"),
            f"best_test_{key}": best[f"test_{key}"],
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
            from .plots import plot_activity, plot_curves

            plot_curves(self.progress.rows, self.folder.path / "curves.png", self.rule.objective.best[0])
            x, y = self.splits.test[0]
            path = self.folder.path
            sample = x.unsqueeze(1).to(self.ctx.device)
            plot_activity(self.network, sample, path / "raster.png", path / "membrane.png", label=int(y))
        self.folder.write_summary(summary)


def run(
    cfg: ExperimentConfig, source: str, progress: bool = True, resume: Path | None = None, label: str = ""
) -> RunResult:
    """Train and evaluate the experiment ``cfg`` (read from ``source``) and write its run folder.

    With ``resume``, continue the run in that folder from its last checkpoint instead. ``label`` goes into a new
    folder's name (what the command line changed). Under
    torchrun, each process calls this; they train together and rank 0 writes the folder.
    Ctrl-C and SIGTERM stop it as ``Interrupted`` (naming the last checkpoint); a second Ctrl-C while it
    stops is ignored, so that the folder is left whole.
    """
    with signals_as_interrupts():
        ctx = setup(cfg.device)
        try:
            training = Training(cfg, source, ctx, resume, label)
            try:
                return training.fit(progress)
            except KeyboardInterrupt as exc:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                raise training.interrupted(exc) from None
            finally:
                training.folder.release()
        except Interrupted:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            raise
        finally:
            teardown(ctx)
