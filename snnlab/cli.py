"""The ``snnlab`` command: run, resume, check and evaluate YAML experiments; list the datasets and the options."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from .errors import ConfigError, Interrupted, SnnlabError

if TYPE_CHECKING:
    from .runner import RunResult

app = typer.Typer(
    help="snnlab: train spiking neural networks from YAML experiments.\n\n"
    "Quick start: `snnlab run` trains the bundled quickstart (a spiking MLP on scikit-learn's digits).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigArg = Annotated[
    str | None,
    typer.Argument(
        help="Experiment YAML file, or the name of a bundled one (default: quickstart).", show_default=False
    ),
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Overrides KEY.PATH=VALUE, e.g. train.epochs=2 rule.name=bptt network.blocks.0.linear=256.",
        show_default=False,
    ),
]

T = TypeVar("T")


def _split(config: str | None, overrides: list[str] | None) -> tuple[str | None, list[str]]:
    """Let ``snnlab run train.epochs=2`` mean: the quickstart, with that override."""
    overrides = list(overrides or [])
    if config is not None and "=" in config and not Path(config).exists():
        return None, [config, *overrides]
    return config, overrides


def _main_process() -> bool:
    """Whether this process prints: always, except on ranks other than 0 under torchrun."""
    return os.environ.get("RANK", "0") == "0"


def _report_errors(action: Callable[[], T], source: str | None = None) -> T:
    """Run ``action``; print a ``SnnlabError`` as one message and exit with code 2 (130 for Ctrl-C, 143 for
    SIGTERM)."""
    try:
        return action()
    except Interrupted as exc:
        if _main_process():
            typer.echo(f"\n{exc}", err=True)
        raise typer.Exit(exc.code) from None
    except KeyboardInterrupt:
        if _main_process():
            typer.echo("\ninterrupted before a run folder was made; nothing was written", err=True)
        raise typer.Exit(130) from None
    except (MemoryError, RuntimeError) as exc:
        if "DataLoader timed out" in str(exc):
            if _main_process():
                typer.echo(f"error: reading the data stalled ({exc}); is a data file on a hung or slow disk?", err=True)
            raise typer.Exit(2) from None
        if not _out_of_memory(exc):
            raise
        if _main_process():
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            typer.echo(
                f"error: out of memory ({reason}); reduce data.batch_size, data.time_steps or the network's size",
                err=True,
            )
        raise typer.Exit(2) from None
    except SnnlabError as exc:
        if isinstance(exc, ConfigError) and exc.source is None and source is not None:
            exc = exc.with_source(source)
        if _main_process():
            typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def folder_label(overrides: list[str]) -> str:
    """What the command line changed, short enough for a folder name: ``train.epochs=5 optimizer.lr=0.01`` gives
    ``epochs5_lr0.01`` (output options left out)."""
    parts = []
    for item in overrides:
        key, _, value = item.partition("=")
        if key.startswith("output."):
            continue
        parts.append(re.sub(r"[^A-Za-z0-9_.-]", "", key.rsplit(".", 1)[-1] + value))
    return "_".join(p for p in parts if p)[:60]


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says that an allocation failed (host or GPU memory)."""
    import torch

    text = str(exc)
    return (
        isinstance(exc, (MemoryError, torch.OutOfMemoryError))
        or "can't allocate memory" in text
        or "out of memory" in text
    )


def _torchrun(nproc: int, argv: list[str]) -> None:
    """Start ``snnlab ARGV`` as ``nproc`` processes through torchrun and exit with its code."""
    from .distributed import launch

    raise typer.Exit(launch(nproc, argv))


def _report(result: RunResult) -> None:
    if not _main_process():
        return
    s = result.summary
    key = s["best_metric"]
    chosen = s[f"best_val_{key}"]
    on = f"best on validation, {_format(key, chosen)}" if chosen is not None else "no validation split: the last"
    typer.echo(
        f"test {key} {_format(key, s[f'test_{key}'])} at the last epoch, {_format(key, s[f'best_test_{key}'])} at "
        f"epoch {s['best_epoch']} ({on}); {s['wall_time_seconds']:.1f} s"
    )
    typer.echo(f"run folder: {result.run_dir}")


def _format(metric: str, value: float) -> str:
    return f"{value:.2%}" if metric == "accuracy" else f"{value:.4g}"


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
NprocOpt = Annotated[
    int,
    typer.Option(
        "--nproc",
        min=1,
        help="Train on N processes with DistributedDataParallel (torchrun on this machine; one per GPU, "
        "or gloo on the CPU). data.batch_size is per process.",
    ),
]


@app.command()
def run(config: ConfigArg = None, overrides: OverridesArg = None, quiet: QuietOpt = False, nproc: NprocOpt = 1) -> None:
    """Train and evaluate an experiment, writing a run folder (metrics, checkpoints, summary, plots).

    The run folder is output.dir, or runs/<name>-<date-time>; its path is printed at the end.
    A run stopped at any point continues with `snnlab resume RUN_FOLDER`.
    """
    from .config import load_experiment
    from .runner import run as run_experiment

    config, overrides = _split(config, overrides)
    cfg, source = _report_errors(lambda: load_experiment(config, overrides))
    if nproc > 1:
        _torchrun(nproc, ["run", *([config] if config else []), *overrides, *(["--quiet"] if quiet else [])])
    label = folder_label(overrides)
    _report(_report_errors(lambda: run_experiment(cfg, source, progress=not quiet, label=label), source))


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `snnlab run`.")],
    quiet: QuietOpt = False,
    nproc: NprocOpt = 1,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Train on to this many epochs in all (more than the run has).")
    ] = None,
) -> None:
    """Continue a stopped run from its last checkpoint, with the config in its folder; or, with --epochs, extend a
    finished (or stopped) run to more epochs.

    The finished run has the same metrics as one that was never stopped (on the CPU: bit for bit).
    A run trained on N processes resumes with --nproc N.
    """
    from .config import read_yaml, validate
    from .run_folder import CONFIG, RunFolder
    from .runner import run as run_experiment

    folder = _report_errors(lambda: RunFolder.existing(run_dir))
    source = str(folder.path / CONFIG)
    cfg = _report_errors(lambda: validate(read_yaml(Path(source)), source))
    if epochs is not None:
        if epochs <= cfg.train.epochs:
            typer.echo(f"error: --epochs {epochs}: the run already has {cfg.train.epochs}; give more", err=True)
            raise typer.Exit(2)
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": epochs})})
        _report_errors(lambda: folder.write_config(cfg, source))
    if nproc > 1:
        _torchrun(nproc, ["resume", str(run_dir), *(["--quiet"] if quiet else [])])
    _report(_report_errors(lambda: run_experiment(cfg, source, progress=not quiet, resume=folder.path), source))


@app.command()
def check(config: ConfigArg = None, overrides: OverridesArg = None) -> None:
    """Validate an experiment and build its network without training; print the network."""
    from .config import load_experiment
    from .runner import build_experiment
    from .stats import parameter_count

    config, overrides = _split(config, overrides)
    cfg, source = _report_errors(lambda: load_experiment(config, overrides))

    def build() -> None:
        splits, network, objective, notes = build_experiment(cfg)
        typer.echo(network)
        typer.echo(objective)
        for note in notes:
            typer.echo(f"note: {note}")
        typer.echo(
            f"{source}: valid; input {list(splits.input_shape)}, {splits.num_classes} classes, "
            f"{parameter_count(network):,} parameters, rule {cfg.rule.name}"
        )

    _report_errors(build, source)


@app.command(name="eval")
def evaluate_run(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `snnlab run`.")],
    checkpoint: Annotated[str, typer.Option(help="Which checkpoint: best or last.")] = "best",
) -> None:
    """Evaluate a run's checkpoint (the network's and the rule's saved state) on the test set; print the
    objective's metrics and the activity."""
    if checkpoint not in ("best", "last"):
        typer.echo("error: --checkpoint must be best or last", err=True)
        raise typer.Exit(2)
    _report_errors(lambda: _evaluate_checkpoint(run_dir, checkpoint))


def _evaluate_checkpoint(run_dir: Path, checkpoint: str) -> None:
    """Print the test metrics and activity of a run folder's checkpoint (``snnlab eval``)."""
    import json

    from .config import read_yaml, validate
    from .distributed import Context, resolve_device
    from .run_folder import CONFIG, RunFolder
    from .runner import build_experiment, build_rule, data_loaders, evaluate
    from .storage import load_weights

    config_file = RunFolder.existing(run_dir).path / CONFIG
    cfg = validate(read_yaml(config_file), str(config_file))
    ctx = Context(resolve_device(cfg.device))
    splits, network, objective, _ = build_experiment(cfg)
    rule = build_rule(cfg, network, objective)
    load_weights(run_dir / f"{checkpoint}.safetensors", {"network": network, "rule": rule})
    network.to(ctx.device)
    rule.to(ctx.device)
    metrics, activity = evaluate(network, rule, data_loaders(cfg, splits, ctx).test, ctx)
    test = {f"test_{k}": v for k, v in metrics.items()}
    typer.echo(json.dumps({"checkpoint": checkpoint, **test, **activity}, indent=2))


DtOpt = Annotated[
    float | None,
    typer.Option(
        help="Seconds one time step lasts. Export: default 1e-4 (what snnTorch's and SpikingJelly's importers "
        "assume), written into the file. Import: default the file's own; files of other libraries record none "
        "(snnTorch and SpikingJelly export with 1e-4, Norse 1e-3, Sinabs and Rockpool 1).",
        show_default=False,
    ),
]


@app.command(name="export")
def export_network(
    source: Annotated[Path, typer.Argument(help="A run folder, or its best.safetensors or last.safetensors.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write, e.g. net.nir.")],
    format: Annotated[str, typer.Option("--format", help="The format: nir (the only one).")] = "nir",
    dt: DtOpt = None,
    checkpoint: Annotated[str, typer.Option(help="For a run folder: best or last.")] = "best",
) -> None:
    """Write a trained network to a NIR file (the Neuromorphic Intermediate Representation), for Loihi 2 (Lava),
    Speck, Xylo, SpiNNaker2, BrainScaleS-2, snnTorch, SpikingJelly, Norse, Sinabs and Rockpool.

    The time step and each neuron's discretisation and reset are written into the file; a block NIR cannot express
    (a soft reset, max pooling, an E-I circuit's division) is refused, naming it and why.
    """
    from .export.run import export_run

    if format != "nir" or checkpoint not in ("best", "last"):
        typer.echo("error: --format must be nir and --checkpoint best or last", err=True)
        raise typer.Exit(2)
    graph = _report_errors(lambda: export_run(source, output, dt, checkpoint))
    typer.echo(f"wrote {output}: {len(graph.nodes) - 2} nodes, dt {graph.metadata['dt']:g} s per step")


@app.command(name="import")
def import_network(
    file: Annotated[Path, typer.Argument(help="A NIR file (snnlab's, or another library's).")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The folder to write (default: runs/<experiment>-import-<date-time>)."),
    ] = None,
    dt: DtOpt = None,
    discretization: Annotated[
        str,
        typer.Option(help="How to step nodes that do not record it (other libraries' files): euler (theirs) or exp."),
    ] = "euler",
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="The experiment to evaluate it in (data, objective): a run folder, a YAML file or a bundled "
            "experiment's name. Default: the one the file records (snnlab's exports), else the quickstart.",
        ),
    ] = None,
    evaluate: Annotated[bool, typer.Option(help="Evaluate the imported network on the test set.")] = True,
) -> None:
    """Read a NIR file into a folder that `snnlab eval` and `snnlab.load_run` read like a run's (config.yaml with
    the imported network, best/last.safetensors), and evaluate it on the experiment's test set."""
    from .export.run import import_run

    if discretization not in ("euler", "exp"):
        typer.echo("error: --discretization must be euler or exp", err=True)
        raise typer.Exit(2)
    result = _report_errors(lambda: import_run(file, output, dt, discretization, config))  # type: ignore[arg-type]
    for note in result.imported.notes:
        typer.echo(f"note: {note}")
    typer.echo(
        f"imported {file} (dt {result.imported.dt:g} s) into {result.folder}: {len(result.config.network.blocks)} "
        f"blocks, the experiment from {result.base}"
    )
    if evaluate:
        _report_errors(lambda: _evaluate_checkpoint(result.folder, "best"))


@app.command(name="options")
def list_options(
    registry: Annotated[
        str | None, typer.Argument(help="A registry: neuron, surrogate, rule, dataset, ...; none: list them all.")
    ] = None,
    name: Annotated[str | None, typer.Argument(help="An entry of the registry, e.g. lif; none: every entry.")] = None,
) -> None:
    """List the YAML keys of a registry entry with their types, defaults and meaning, e.g. `snnlab options neuron
    lif`; without arguments, the registries and their entries."""
    from .options import describe, overview

    try:
        typer.echo(overview() if registry is None else describe(registry, name))
    except KeyError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(2) from None


@app.command(name="datasets")
def list_datasets(
    root: Annotated[
        str | None, typer.Option(help="Data root to look in (default: $SNNLAB_DATA, else ~/.cache/snnlab/data).")
    ] = None,
) -> None:
    """List the datasets: the input shape of one time step and the classes (default options), and whether
    each one's files are under the data root. Nothing is downloaded; README.md says where to get the files."""
    from .datasets.catalog import dataset_table
    from .datasets.data_root import data_root

    located = data_root(root)
    typer.echo(f"data root: {located.path} (chosen by {located.chosen_by})")
    rows = _report_errors(lambda: dataset_table(root))
    typer.echo(f"{'name':<13} {'input (one step)':<17} {'classes':>7}  data")
    for row in rows:
        shape = str(list(row.input_shape)) if row.input_shape else "-"
        typer.echo(f"{row.name:<13} {shape:<17} {row.num_classes or '-':>7}  {row.status}")
