"""Lifecycle hooks: methods a module of the network may define, which the runner and the rule base visit over
``network.modules()`` (never each rule on its own).

* ``initialize(*inputs)``: once, on the first training batch of a fresh run (not on resume), with the inputs
  the module's forward receives then: a data-dependent initialisation (E-I Init, LSUV). Modules run in the
  network's order, so each sees the input the already initialised modules before it produce.
* ``after_update()``: after every update of the weights (Dale's law, delay clamps).
* ``end_epoch(epoch, epochs)``: after each training epoch, before evaluation (an annealed delay sigma). What
  it changes must live in buffers or parameters, so that a checkpoint holds it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _with(network: nn.Module, hook: str) -> list[nn.Module]:
    return [m for m in network.modules() if callable(getattr(m, hook, None)) and m is not network]


def has_initializers(network: nn.Module) -> bool:
    """Whether any module of ``network`` defines ``initialize``."""
    return bool(_with(network, "initialize"))


@torch.no_grad()
def initialize(network: nn.Module, x_seq: Tensor) -> None:
    """Run ``network`` once on ``x_seq`` (in eval mode: no dropout draws, no batch-norm statistics), calling each
    module's ``initialize`` with its own inputs just before its first forward."""
    modules = _with(network, "initialize")
    if not modules:
        return
    pending = {id(m) for m in modules}

    def hook(module: nn.Module, inputs: tuple) -> None:
        if id(module) in pending:
            pending.discard(id(module))
            module.initialize(*inputs)

    handles = [m.register_forward_pre_hook(hook) for m in modules]
    was_training = network.training
    network.eval()
    try:
        network(x_seq)
    finally:
        network.train(was_training)
        for h in handles:
            h.remove()


def after_update(network: nn.Module) -> None:
    """Every module's ``after_update()``, after the weights changed."""
    for module in _with(network, "after_update"):
        module.after_update()


def end_epoch(network: nn.Module, epoch: int, epochs: int) -> None:
    """Every module's ``end_epoch(epoch, epochs)``."""
    for module in _with(network, "end_epoch"):
        module.end_epoch(epoch, epochs)
