"""The contract of a training rule, and the shared base of the rules that learn by gradient descent.

A rule owns the training step, not the network and not the loss: it is built once for a network and an
objective (creating its optimizers and its own state), then called on batch after batch. What must survive a
checkpoint, and is saved beside the weights in ``best``/``last`` and loaded by ``snnlab eval``, is the rule's
``state_dict``: its buffers (traces, thresholds, label assignments), its own parameters (heads, feedback
matrices) and its objective's; optimizers and schedules are named in ``optimizers`` and ``schedulers``.

docs/architecture.md shows how each planned rule is written against this contract.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from pydantic import BaseModel
from torch import Tensor, nn

from .. import lifecycle
from ..health import NonFiniteError, all_finite, first_non_finite, tensors_of
from ..network import Network
from ..objectives import Objective
from ..optim import TrainConfig, build_optimizer, build_scheduler

Batch = tuple[Tensor, Tensor]
"""``(x [T, B, ...], target)``, time-major (a target with a time axis too), already on the rule's device."""


def world_size() -> int:
    """How many processes train together (1 without torchrun)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class Rule(nn.Module):
    """Base of all training rules.

    Subclasses set ``name``, ``Config`` (a pydantic model whose ``name`` field is the YAML tag),
    ``distributable`` and ``needs_output_layer``, and implement ``train_step``.
    """

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    distributable: ClassVar[bool] = False
    """Whether it may train on several processes: its updates are averaged gradients (``GradientRule.step``)."""
    needs_output_layer: ClassVar[bool] = True
    """Whether the network must end in the objective's output (False: headless networks, as STDP and FF train)."""

    def __init__(self, config: BaseModel, network: Network, objective: Objective, train: TrainConfig) -> None:
        super().__init__()
        self.config = config
        self.train_config = train
        self.objective = objective
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.setup(network)

    def setup(self, network: Network) -> None:
        """Create the rule's own parameters and buffers (a head, feedback matrices, traces) for ``network``;
        called by ``__init__`` before any optimizer exists, so a gradient rule's optimizer includes them."""

    @classmethod
    def supports(cls, config: BaseModel, network: Network) -> None:
        """Raise ``UnsupportedNetwork`` naming the block and the reason if this rule, so configured, cannot train ``network``."""

    def train_step(self, network: Network, batch: Batch) -> dict[str, float]:
        """Update ``network`` on one batch; return that batch's metrics (``loss`` and any others, as means over
        the batch: the runner averages them over the epoch and writes each as a ``train_`` column)."""
        raise NotImplementedError

    def end_epoch(self, network: Network, data: Iterable[Batch]) -> None:
        """After each epoch, before evaluation: steps the learning-rate schedules. ``data`` iterates over this
        process's training batches (label assignment with plasticity off); it costs nothing unless iterated."""
        for scheduler in self.schedulers.values():
            scheduler.step()

    @torch.no_grad()
    def predict(self, network: Network, x_seq: Tensor) -> Tensor:
        """Scores for ``x_seq`` (rules with their own inference, such as FF or STDP, override it)."""
        out, _ = network(x_seq)
        return self.objective.scores(out)

    @staticmethod
    def sum_across_processes(tensor: Tensor) -> Tensor:
        """``tensor`` summed over all processes (itself on one), for rule statistics gathered per process."""
        if world_size() > 1:
            tensor = tensor.clone()
            dist.all_reduce(tensor)
        return tensor


class GradientRule(Rule):
    """A rule that learns by gradient descent: one optimizer over the network's and the rule's own parameters
    (in the parameter groups ``train.optimizer.groups`` names), and a gradient step in three parts.

    ``zero_grad()``; ``backward(loss)`` or ``backward(outputs, grads)`` as often as the rule needs (gradients
    accumulate; a rule may also write ``.grad`` itself); ``step(network, check)``: averages the gradients over processes (so every way of running the
    network trains one model under ``--nproc``), checks every loss, gradient and state for NaN/Inf (raising
    ``NonFiniteError`` before any weight changes), clips, steps the optimizer and runs the modules'
    ``after_update`` hooks.
    """

    distributable = True

    def __init__(self, config: BaseModel, network: Network, objective: Objective, train: TrainConfig) -> None:
        super().__init__(config, network, objective, train)
        named = [(n, p) for n, p in self._named_parameters(network) if p.requires_grad]
        self.optimizer = build_optimizer(named, train.optimizer)
        self.optimizers["network"] = self.optimizer
        scheduler = build_scheduler(self.optimizer, train.scheduler, train.epochs, train.optimizer.groups)
        if scheduler is not None:
            self.schedulers["network"] = scheduler
        self._losses: list[Tensor] = []

    def trained_parameters(self) -> list[nn.Parameter]:
        """Every parameter some optimizer of this rule updates, in a fixed order."""
        return [p for o in self.optimizers.values() for g in o.param_groups for p in g["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:  # type: ignore[override]
        """Clear the gradients of every trained parameter."""
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=set_to_none)
        self._losses.clear()

    def backward(
        self, loss_or_outputs: Tensor | tuple[Tensor, ...], grads: Tensor | tuple[Tensor, ...] | None = None
    ) -> None:
        """Accumulate gradients: of a scalar loss, or of ``outputs`` given their gradients ``grads`` (feedback
        alignment injects ``B e`` at each block's output this way)."""
        if grads is None:
            self._losses.append(loss_or_outputs.detach())  # type: ignore[union-attr]
            loss_or_outputs.backward()  # type: ignore[union-attr]
        else:
            torch.autograd.backward(loss_or_outputs, grads)

    def step(self, network: Network, check: Any = (), grad_clip: float | None = None) -> None:
        """Average, check, clip and apply the accumulated gradients, then run the ``after_update`` hooks.

        ``check``: more tensors that must be finite (the blocks' final states, a loss not passed to ``backward``),
        besides every loss given to ``backward`` and the gradients.
        """
        params = self.trained_parameters()
        local_ok = all_finite([*self._losses, *tensors_of(check)])
        grads = _average_gradients(params, local_ok)
        norm = nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        if not bool(local_ok & torch.isfinite(norm)):
            losses = ", ".join(f"{float(x):.4g}" for x in self._losses) or "none"
            raise NonFiniteError(f"the loss was {losses} and the gradient norm {norm.item():.4g}")
        if grad_clip is not None:
            nn.utils.clip_grads_with_norm_(grads, grad_clip, norm)
        for optimizer in self.optimizers.values():
            optimizer.step()
        self._losses.clear()
        lifecycle.after_update(network)
        broken = first_non_finite(self._named_parameters(network))
        if broken is not None:
            raise NonFiniteError(f"the update made {broken} NaN or Inf", updated=True)

    def _named_parameters(self, network: Network) -> list[tuple[str, Tensor]]:
        named = [(f"network.{n}", p) for n, p in network.named_parameters()]
        return named + [(f"rule.{n}", p) for n, p in self.named_parameters()]


def _average_gradients(params: list[nn.Parameter], local_ok: Tensor) -> list[Tensor]:
    """Average ``.grad`` over processes in one all-reduce (a parameter without a gradient on some process
    counts zero there); a non-finite flag of any process travels with it and turns ``local_ok`` false on all.
    Returns the gradients that exist."""
    world = world_size()
    if world > 1:
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
        flags = torch.cat([has, (~local_ok.cpu()).float().view(1)])
        device = params[0].device if params and dist.get_backend() == "nccl" else torch.device("cpu")
        flags = flags.to(device)
        dist.all_reduce(flags)
        for p, present in zip(params, flags[:-1].tolist()):
            if present and p.grad is None:
                p.grad = torch.zeros_like(p)
        synced = [p.grad for p in params if p.grad is not None]
        if synced:
            flat = torch._utils._flatten_dense_tensors(synced)
            dist.all_reduce(flat)
            flat /= world
            for g, avg in zip(synced, torch._utils._unflatten_dense_tensors(flat, synced)):
                g.copy_(avg)
        local_ok.copy_(local_ok & (flags[-1] == 0).to(local_ok.device))
    return [p.grad for p in params if p.grad is not None]
