"""The contract of a training rule, and the shared base of the rules that learn by gradient descent.

A rule owns the training step, not the network: it is built once for a
network (creating its optimizers and its own state), then called on batch after
batch. What a checkpoint must keep of it is declared in two places only:

* rule state (traces, adaptive thresholds, feedback matrices, label
  assignments) as buffers (``register_buffer``), so ``state_dict()`` carries it;
* optimizers and learning-rate schedules in the ``optimizers`` and
  ``schedulers`` dicts, by name (one per block for block-local rules).

docs/architecture.md shows how each planned rule is written against this contract.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel
from torch import Tensor, nn

from ..health import NonFiniteError, all_finite, tensors_of
from ..network import Network
from ..optim import TrainConfig, build_optimizer, build_scheduler

Batch = tuple[Tensor, Tensor]
"""``(x [T, B, ...], labels [B])``, time-major, already on the rule's device."""


class Rule(nn.Module):
    """Base of all training rules.

    Subclasses set ``name``, ``Config`` (a pydantic model whose ``name`` field is
    the YAML tag) and ``distributable``, and implement ``train_step``.
    """

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    distributable: ClassVar[bool] = False
    """Whether it may run under DistributedDataParallel (gradient rules: yes; local rules must say)."""

    def __init__(self, config: BaseModel, network: Network, train: TrainConfig) -> None:
        super().__init__()
        self.config = config
        self.train_config = train
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}

    @classmethod
    def supports(cls, config: BaseModel, network: Network) -> None:
        """Raise ``UnsupportedNetwork`` naming the block and the reason if this rule, so configured, cannot train ``network``."""

    def train_step(self, network: Network, batch: Batch) -> dict[str, float]:
        """Update ``network`` on one batch; return metrics of that batch (at least ``loss`` and ``accuracy``)."""
        raise NotImplementedError

    def end_epoch(self) -> None:
        """Called after each epoch: steps the learning-rate schedules (rules may also anneal their own parameters)."""
        for scheduler in self.schedulers.values():
            scheduler.step()

    @torch.no_grad()
    def predict(self, network: Network, x_seq: Tensor) -> Tensor:
        """Class scores ``[B, C]`` for ``x_seq`` (rules with their own inference, such as FF, override it)."""
        out, _ = network(x_seq)
        return network.readout(out)


class GradientRule(Rule):
    """A rule that computes a loss and steps one optimizer over all of the network's parameters."""

    distributable = True

    def __init__(self, config: BaseModel, network: Network, train: TrainConfig) -> None:
        super().__init__(config, network, train)
        self.optimizer = build_optimizer(network.parameters(), train.optimizer)
        self.optimizers["network"] = self.optimizer
        scheduler = build_scheduler(self.optimizer, train.scheduler, train.epochs)
        if scheduler is not None:
            self.schedulers["network"] = scheduler

    def apply_gradients(self, loss: Tensor, network: Network, grad_clip: float | None, states: object = ()) -> None:
        """Backpropagate ``loss`` and take one optimizer step, unless the loss, the gradients or the blocks'
        final ``states`` hold NaN or Inf: then raise ``NonFiniteError`` and leave the weights as they were."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in network.parameters() if p.grad is not None]
        norm = nn.utils.get_total_norm(grads)
        if not bool(all_finite([loss.detach(), norm, *tensors_of(states)])):
            raise NonFiniteError(f"the loss was {loss.item():.4g} and the gradient norm {norm.item():.4g}")
        if grad_clip is not None:
            nn.utils.clip_grads_with_norm_(grads, grad_clip, norm)
        self.optimizer.step()
