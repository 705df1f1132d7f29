"""Run folders to NIR files and back: what ``snnlab export`` and ``snnlab import`` do.

Export writes the network of a run's checkpoint with the run's YAML in the graph's metadata. Import writes a folder
that ``snnlab eval`` and ``snnlab.load_run`` read like a run's: ``config.yaml`` (the imported ``network`` section
in the experiment the file came from, or another one given) and ``best``/``last.safetensors`` (the same tensors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import yaml

from ..errors import SnnlabError
from ..storage import atomic_write
from .api import DEFAULT_DT, ImportedNetwork, from_nir, read_nir, to_nir, write_nir
from .registry import Discretization


def run_and_checkpoint(source: Path, checkpoint: str) -> tuple[Path, str]:
    """A run folder and which checkpoint from ``source``: the folder itself, or its ``best``/``last.safetensors``."""
    if source.suffix == ".safetensors":
        if source.stem not in ("best", "last"):
            raise SnnlabError(f"{source}: give a run folder or its best.safetensors or last.safetensors")
        return source.parent, source.stem
    return source, checkpoint


def export_run(source: Path, out: Path, dt: float | None = None, checkpoint: str = "best") -> Any:
    """Write the network of a run (``source``: its folder, or a checkpoint in it) to the NIR file ``out``, one step
    lasting ``dt`` seconds (default ``DEFAULT_DT``); returns the graph."""
    from ..api import load_run

    run_dir, which = run_and_checkpoint(source, checkpoint)
    run = load_run(run_dir, which)  # type: ignore[arg-type]
    text = yaml.safe_dump(run.config.model_dump(mode="json", exclude_none=True), sort_keys=False)
    graph = to_nir(run.network, run.data.input_shape, DEFAULT_DT if dt is None else dt, config=text)
    atomic_write(out, lambda tmp: write_nir(tmp, graph))
    return graph


class ImportedRun(NamedTuple):
    """What ``import_run`` wrote: the folder, the imported network, the experiment's config, and where its
    sections other than ``network`` came from."""

    folder: Path
    imported: ImportedNetwork
    config: Any
    base: str


def import_run(
    nir_file: Path,
    out: Path | None = None,
    dt: float | None = None,
    discretization: Discretization | None = None,
    experiment: str | None = None,
) -> ImportedRun:
    """Read ``nir_file`` into the folder ``out`` (default: ``runs/<experiment>-import-<date-time>``): ``config.yaml`` (the ``experiment`` given, a run folder or a
    YAML; else the one the file records; else the quickstart, with the file's network) and the weights as
    ``best``/``last.safetensors``, so that ``snnlab eval out`` evaluates it on that experiment's data."""
    from ..config import read_yaml, resolve_experiment, validate
    from ..errors import ConfigError
    from ..run_folder import CONFIG, RunFolder
    from ..runner import build_experiment, build_rule

    graph = read_nir(nir_file)
    imported = from_nir(graph, dt, discretization)
    if experiment is not None:
        path = Path(experiment)
        base = str(path / CONFIG) if path.is_dir() else str(resolve_experiment(experiment))
        raw = read_yaml(Path(base))
    elif "snnlab_config" in graph.metadata:
        base, raw = f"{nir_file} (the exported run's experiment)", yaml.safe_load(graph.metadata["snnlab_config"])
    else:
        base, raw = "quickstart", read_yaml(resolve_experiment(None))
    output = {k: v for k, v in raw.get("output", {}).items() if k != "dir"}
    raw = {**raw, "network": imported.config, "output": output if out is None else {**output, "dir": str(out)}}
    config = validate(raw, base)
    splits, network, objective, _ = build_experiment(config)
    if tuple(splits.input_shape) != imported.input_shape:
        raise ConfigError(
            [
                (
                    "data",
                    f"gives inputs {list(splits.input_shape)}; the NIR file's network reads {list(imported.input_shape)}",
                )
            ],
            base,
        )
    network.load_state_dict(imported.network.state_dict())
    rule = build_rule(config, network, objective)
    folder = RunFolder.create(config, label="import")
    try:
        folder.write_config(config, f"snnlab import {nir_file} (dt {imported.dt:g} s; the rest from {base})")
        for which in ("best", "last"):
            folder.save_weights(which, network, rule, 0, {})
    except BaseException:
        folder.undo()
        raise
    finally:
        folder.release()
    return ImportedRun(folder.path, imported, config, base)
