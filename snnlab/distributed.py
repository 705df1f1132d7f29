"""Which process this is and on which device it runs: one process, or one of several under torchrun.

Training on several processes is started by ``torchrun`` (``snnlab run CONFIG --nproc N`` is a
thin wrapper over it) and runs on PyTorch's distributed engine (gloo on the CPU, nccl on GPUs). Each
process trains on its share of every batch (``data.batch_size`` is per process); the gradient rule
base averages the gradients in its ``step`` (``rules.base``), whichever way the rule ran the network;
metrics are summed across processes, and only rank 0 writes files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .errors import SnnlabError


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SnnlabError(f"device: {name!r} was asked for but CUDA is not available; use device=cpu or auto")
    return torch.device(name)


@dataclass(frozen=True)
class Context:
    """This process's place in the run: rank among ``world`` processes, and its device."""

    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes the run folder and prints."""
        return self.rank == 0


def setup(device: str) -> Context:
    """The context of this process; under torchrun (``WORLD_SIZE`` > 1) joins the process group first."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    resolved = resolve_device(device)
    if world == 1:
        return Context(resolved)
    if resolved.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise SnnlabError(
                f"process {local_rank} of this machine has no GPU of its own ({torch.cuda.device_count()} here): "
                f"start at most that many processes per machine, or train on the CPU with device=cpu"
            )
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    return Context(resolved, dist.get_rank(), dist.get_world_size())


def teardown(ctx: Context) -> None:
    """Leave the process group, if this process joined one."""
    if ctx.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


@torch.no_grad()
def broadcast_module(module: nn.Module, ctx: Context) -> None:
    """Rank 0's parameters and buffers on every process (after a data-dependent initialisation)."""
    if ctx.world == 1:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


@torch.no_grad()
def average_buffers(module: nn.Module, ctx: Context) -> None:
    """Floating-point buffers (batch-norm statistics) averaged over processes, so that every process
    evaluates and saves one model."""
    if ctx.world == 1:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= ctx.world


def sum_across(values: Sequence[float], ctx: Context) -> list[float]:
    """Element-wise sums of ``values`` over all processes."""
    if ctx.world == 1:
        return list(values)
    backend_device = ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")
    total = torch.tensor(list(values), dtype=torch.float64, device=backend_device)
    dist.all_reduce(total)
    return total.tolist()


def broadcast(obj: Any, ctx: Context) -> Any:
    """Rank 0's ``obj`` on every process."""
    if ctx.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any, ctx: Context) -> list[Any]:
    """Every process's ``obj``, by rank, on every process."""
    if ctx.world == 1:
        return [obj]
    out: list[Any] = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``snnlab ARGV`` as ``nproc`` processes on this machine through torchrun's launcher; returns 0, or the
    exit code of the failed run (2 after snnlab's one-line message).

    Only process 0 speaks: the others' output goes to log files, since what they would print when process 0
    stops is only that their peer went away; a process other than 0 that fails alone has the end of its log
    printed. torchrun's own report of a failed child is not printed.
    """
    import logging
    import shutil
    import tempfile
    import uuid

    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as torchrun does: N processes share the cores
    logs = tempfile.mkdtemp(prefix="snnlab-processes-")
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        logs_specs=DefaultLogsSpecs(log_dir=logs, redirects={rank: Std.ALL for rank in range(1, nproc)}),
    )
    try:
        elastic_launch(config, sys.executable)("-m", "snnlab", *argv)
    except ChildFailedError as exc:
        failures = dict(exc.failures)
        rank, failure = (0, failures[0]) if 0 in failures else min(failures.items())
        if rank != 0:
            for log in sorted(Path(logs).rglob(f"{rank}/stderr.log")):
                tail = log.read_text(errors="replace").strip().splitlines()[-20:]
                print(f"error: process {rank} failed; the end of its output:", *tail, sep="\n", file=sys.stderr)
        code = failure.exitcode
        return 128 - code if code < 0 else code
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    return 0
