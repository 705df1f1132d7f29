"""Optimizers and learning-rate schedules, chosen by name in ``train.optimizer`` and ``train.scheduler``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class OptimizerConfig(BaseModel):
    """``{name: adam, lr: 1e-3}``; ``momentum`` and ``nesterov`` apply to SGD only."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False


class SchedulerConfig(BaseModel):
    """Per-epoch learning-rate schedule: ``none``, ``cosine`` (to ``min_lr`` over the run) or ``step``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["none", "cosine", "step"] = "none"
    min_lr: float = Field(0.0, ge=0)
    step_size: int = Field(30, ge=1)
    gamma: float = Field(0.1, gt=0)


def build_optimizer(params: Iterable[nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names, over ``params``."""
    params = list(params)
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
        )
    cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-epoch schedule ``cfg`` names, or None."""
    if cfg.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=cfg.min_lr)
    if cfg.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    return None


class TrainConfig(BaseModel):
    """The ``train`` section: how long, and with which optimizer and schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    epochs: int = Field(20, ge=1)
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
