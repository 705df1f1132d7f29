"""Optimizers and learning-rate schedules, chosen by name in ``train.optimizer`` and ``train.scheduler``."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from torch import nn

from .errors import ConfigError

FLOAT32_MAX = float(torch.finfo(torch.float32).max)
ADAMW_WEIGHT_DECAY = 0.01
"""``torch.optim.AdamW``'s default weight decay, the default of ``train.optimizer`` with ``name: adamw``."""


def _fits_float32(value: float) -> float:
    """Refuse a learning rate or weight decay beyond float32: torch casts it to the parameters' dtype in every
    update, and a larger one (``lr: 1e300``) fails there with an overflow, mid-run. Finite steps that still blow
    the weights up are left to the gradient step's non-finite check."""
    if value > FLOAT32_MAX:
        raise ValueError(f"must be at most {FLOAT32_MAX:.4g}, the largest float32 (the parameters' precision)")
    return value


StepSize = Annotated[float, AfterValidator(_fits_float32)]


class SchedulerConfig(BaseModel):
    """Per-epoch learning-rate schedule, from each group's ``lr``: ``none``; ``cosine`` (to ``min_lr`` over the
    run); ``step`` (times ``gamma`` every ``step_size`` epochs); ``one_cycle`` (PyTorch's ``OneCycleLR`` stepped
    per epoch, as the delays paper does: ``lr`` is the peak, reached after ``pct_start`` of the run from
    ``lr / div_factor``, then down to ``lr / div_factor / final_div_factor``, cosine-shaped)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    name: Literal["none", "cosine", "step", "one_cycle"] = "none"
    min_lr: StepSize = Field(0.0, ge=0)
    step_size: int = Field(30, ge=1)
    gamma: float = Field(0.1, gt=0)
    pct_start: float = Field(0.3, gt=0, lt=1, description="one_cycle: share of the run spent rising to lr")
    div_factor: float = Field(25.0, ge=1, description="one_cycle: it starts at lr / div_factor")
    final_div_factor: float = Field(1e4, ge=1, description="one_cycle: it ends at lr / div_factor / final_div_factor")


class ParamGroup(BaseModel):
    """Parameters whose name matches the glob ``params`` (``network.blocks.*.norm.*``, ``rule.*``), trained with
    their own ``lr``, ``weight_decay`` and ``scheduler`` (unset: the optimizer's, ``train.scheduler``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    params: str = Field(min_length=1)
    lr: StepSize | None = Field(None, gt=0)
    weight_decay: StepSize | None = Field(None, ge=0)
    scheduler: SchedulerConfig | None = None


class OptimizerConfig(BaseModel):
    """``{name: adam, lr: 1e-3}``; ``momentum`` and ``nesterov`` apply to SGD only. ``groups`` give parameters
    chosen by name their own settings; a parameter goes to the first group that matches it, else the default.

    ``weight_decay`` defaults to PyTorch's default for the optimizer: 0.01 for ``adamw`` (decoupled decay), 0 for
    ``adam`` and ``sgd``.

    Example::

        >>> OptimizerConfig(name="adamw").weight_decay, OptimizerConfig(name="adam").weight_decay
        (0.01, 0.0)
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: StepSize = Field(1e-3, gt=0)
    weight_decay: StepSize = Field(0.0, ge=0, description="default: 0.01 for adamw, 0 for adam and sgd")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    groups: list[ParamGroup] = []

    @model_validator(mode="before")
    @classmethod
    def _default_weight_decay(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") == "adamw" and "weight_decay" not in data:
            return {**data, "weight_decay": ADAMW_WEIGHT_DECAY}
        return data


def param_groups(named: Sequence[tuple[str, nn.Parameter]], cfg: OptimizerConfig) -> list[dict]:
    """``named`` parameters split into the groups of ``cfg`` (the default group first); a group that matches
    no parameter is an error naming it and the names there are."""
    groups: list[dict] = [{"params": []}] + [{"params": []} for _ in cfg.groups]
    for name, p in named:
        index = next((i for i, g in enumerate(cfg.groups) if fnmatch.fnmatchcase(name, g.params)), None)
        groups[0 if index is None else index + 1]["params"].append(p)
    for i, g in enumerate(cfg.groups):
        if not groups[i + 1]["params"]:
            names = ", ".join(n for n, _ in named[:4])
            raise ConfigError(
                [
                    (
                        f"train.optimizer.groups[{i}].params",
                        f"{g.params!r} matches no parameter (their names look like {names}, ...)",
                    )
                ]
            )
        groups[i + 1].update({k: v for k, v in (("lr", g.lr), ("weight_decay", g.weight_decay)) if v is not None})
    return [g for g in groups if g["params"]] or [{"params": []}]


def build_optimizer(named: Sequence[tuple[str, nn.Parameter]], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names, over the named parameters, in the groups ``cfg.groups`` chooses."""
    params = param_groups(named, cfg)
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
        )
    cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_at(cfg: SchedulerConfig, lr: float, epoch: int, epochs: int) -> float:
    """The learning rate after ``epoch`` of ``epochs`` epochs under ``cfg``, starting from ``lr``: a closed form,
    so that a schedule restored from a checkpoint, or extended to more epochs, needs nothing but the epoch."""
    if cfg.name == "cosine":
        return cfg.min_lr + (lr - cfg.min_lr) * (1 + math.cos(math.pi * min(epoch, epochs) / epochs)) / 2
    if cfg.name == "step":
        return lr * cfg.gamma ** (epoch // cfg.step_size)
    if cfg.name == "one_cycle":  # torch.optim.lr_scheduler.OneCycleLR's two phases, with total_steps = epochs
        start, peak, end = lr / cfg.div_factor, lr, lr / cfg.div_factor / cfg.final_div_factor
        top = cfg.pct_start * epochs - 1
        if epoch <= top:
            a, b, share = start, peak, epoch / top
        else:
            a, b, share = peak, end, min((epoch - top) / max(epochs - 1 - top, 1e-12), 1.0)
        return b + (a - b) * (1 + math.cos(math.pi * share)) / 2
    return lr


class EpochSchedule(torch.optim.lr_scheduler.LRScheduler):
    """Each parameter group's own schedule (``lr_at``), stepped once per epoch. Its state is the epoch alone:
    loading it sets every group's rate for that epoch of this run's length (a run extended on resume continues
    as if planned for its new length)."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedules: Sequence[SchedulerConfig], epochs: int) -> None:
        self.schedules, self.epochs = list(schedules), epochs
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        return [lr_at(s, lr, self.last_epoch, self.epochs) for s, lr in zip(self.schedules, self.base_lrs)]

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "_step_count": self._step_count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_epoch, self._step_count = int(state_dict["last_epoch"]), int(state_dict["_step_count"])
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, epochs: int, groups: Sequence[ParamGroup] = ()
) -> EpochSchedule | None:
    """The per-epoch schedule of every parameter group of ``optimizer`` (built by ``build_optimizer`` from the same
    ``groups``: the default group first, then the groups that matched, in order): a group's own ``scheduler``,
    else ``cfg``. None when no group is scheduled."""
    own = [g.scheduler or cfg for g in groups]
    schedules = ([cfg] if len(optimizer.param_groups) > len(own) else []) + own
    if all(s.name == "none" for s in schedules):
        return None
    return EpochSchedule(optimizer, schedules, epochs)


class TrainConfig(BaseModel):
    """The ``train`` section: how long, with which optimizer and schedule, and from which weights (``init``: a run
    folder, whose ``best.safetensors`` is taken, or a ``.safetensors`` file: fine-tuning a finished run)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    epochs: int = Field(20, ge=1)
    init: str | None = Field(None, description="start from these network weights: a run folder or a .safetensors file")
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    cuda_graphs: bool = Field(
        False,
        description="replay BPTT's forward and backward through the network as CUDA graphs, captured on the first "
        "batch (CUDA, rule bptt, data.drop_last: true)",
    )
