"""The ``snnlab`` command: run, check and evaluate YAML experiments; list the datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from .errors import ConfigError, SnnlabError

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


def _report_errors(action: Callable[[], T], source: str | None = None) -> T:
    """Run ``action``; print a ``SnnlabError`` as one message and exit with code 2."""
    try:
        return action()
    except ConfigError as exc:
        if exc.source is None and source is not None:
            exc = exc.with_source(source)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except SnnlabError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def run(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train and evaluate an experiment, writing a run folder (metrics, checkpoints, summary, plots).

    The run folder is output.dir, or runs/<name>-<date-time>; its path is printed at the end.
    """
    from .config import load_experiment
    from .runner import run as run_experiment

    config, overrides = _split(config, overrides)
    cfg, source = _report_errors(lambda: load_experiment(config, overrides))
    result = _report_errors(lambda: run_experiment(cfg, source, progress=not quiet), source)
    s = result.summary
    typer.echo(
        f"test accuracy {s['test_accuracy']:.2%} (best {s['best_test_accuracy']:.2%} at epoch {s['best_epoch']}), "
        f"{s['wall_time_seconds']:.1f} s"
    )
    typer.echo(f"run folder: {result.run_dir}")


@app.command()
def check(config: ConfigArg = None, overrides: OverridesArg = None) -> None:
    """Validate an experiment and build its network without training; print the network."""
    from .config import load_experiment
    from .runner import build_experiment
    from .stats import parameter_count

    config, overrides = _split(config, overrides)
    cfg, source = _report_errors(lambda: load_experiment(config, overrides))

    def build() -> None:
        splits, network = build_experiment(cfg)
        typer.echo(network)
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
    """Evaluate a run's checkpoint on the test set and print accuracy and activity."""
    import json

    from .config import read_yaml, validate
    from .rules import RULES
    from .runner import build_experiment, data_loaders, evaluate, resolve_device
    from .storage import load_weights

    def evaluate_checkpoint() -> None:
        config_file = run_dir / "config.yaml"
        cfg = validate(read_yaml(config_file), str(config_file))
        device = resolve_device(cfg.device)
        splits, network = build_experiment(cfg)
        load_weights(run_dir / f"{checkpoint}.safetensors", network)
        network.to(device)
        rule = RULES.builder(cfg.rule.name)(cfg.rule, network, cfg.train).to(device)
        _, test_loader = data_loaders(cfg, splits, device)
        accuracy, activity = evaluate(network, rule, test_loader, device)
        typer.echo(json.dumps({"checkpoint": checkpoint, "test_accuracy": accuracy, **activity}, indent=2))

    if checkpoint not in ("best", "last"):
        typer.echo("error: --checkpoint must be best or last", err=True)
        raise typer.Exit(2)
    _report_errors(evaluate_checkpoint)


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
