"""A generated temporal task that only delays (or memory) can solve: classes differ in the relative timing of
spikes across input channels, never in which channels fire or how often.

Each class has a template: every one of the ``channels`` inputs fires exactly once, at its own step within a
window of ``span`` steps, and no two channels of a template share a step. A sample is its class's template moved
to a random onset, each spike shifted by up to ``jitter`` steps, plus background spikes at rate ``noise``. So every
sample has the same channels firing the same number of times, and (without jitter) one channel at a time: a
network whose neurons forget between steps and whose connections have no delays sees the same multiset of inputs
for every class and is at chance, whereas delays that bring a template's spikes together make it a coincidence.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor
from torch.utils.data import TensorDataset

from ..errors import ConfigError
from .base import DatasetSplits, check_sample_size


def timing_templates(classes: int, channels: int, span: int, seed: int) -> Tensor:
    """Each class's spike step per channel ``[classes, channels]``: distinct steps in 0 .. span - 1 per class."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(span, generator=generator)[:channels] for _ in range(classes)])


def timing_samples(
    templates: Tensor, labels: Tensor, time_steps: int, jitter: int, noise: float, generator: torch.Generator
) -> Tensor:
    """Spike trains ``[N, T, channels]`` (0/1) for ``labels``: each template at a random onset, each spike moved
    by a uniform shift in -jitter .. jitter (kept inside 0 .. T - 1), and Bernoulli(``noise``) background."""
    n, channels = len(labels), templates.shape[1]
    latest_onset = time_steps - 1 - int(templates.max()) - jitter
    onset = torch.randint(jitter, latest_onset + 1, (n, 1), generator=generator)
    shift = torch.randint(-jitter, jitter + 1, (n, channels), generator=generator)
    steps = (templates[labels] + onset + shift).clamp(0, time_steps - 1)
    x = (torch.rand(n, time_steps, channels, generator=generator) < noise).float()
    x.scatter_(1, steps.unsqueeze(1), 1.0)
    return x


def timing(
    classes: Annotated[int, Field(ge=2)] = 10,
    channels: Annotated[int, Field(ge=2)] = 16,
    span: Annotated[int, Field(ge=2)] = 16,
    time_steps: Annotated[int, Field(ge=2)] = 32,
    jitter: Annotated[int, Field(ge=0)] = 0,
    noise: Annotated[float, Field(ge=0, lt=1)] = 0.0,
    train_size: Annotated[int, Field(ge=1)] = 1024,
    test_size: Annotated[int, Field(ge=1)] = 512,
    seed: int = 0,
) -> DatasetSplits:
    """The timing task: ``classes`` spike patterns over ``channels`` inputs, each channel once within ``span``
    steps, at a random onset in a sequence of ``time_steps``; samples ``[T, channels]`` of 0/1.

    Args:
        classes: how many templates (one per class).
        channels: input channels; each fires once per sample (plus noise), in every class.
        span: the steps a template spans; at least ``channels`` (no two channels share a step).
        time_steps: T; at least ``span + 2 * jitter`` (room for the onset to vary).
        jitter: each spike moves by up to this many steps, independently.
        noise: probability of a background spike per channel and step.
        train_size, test_size: samples per split, classes drawn uniformly.
        seed: fixes the templates and the samples (the templates are the task: the same seed, the same task).

    Example::

        >>> from snnlab.datasets import timing
        >>> splits = timing(classes=3, channels=4, span=6, time_steps=10, train_size=8, test_size=4)
        >>> x, label = splits.train[0]
        >>> x.shape, x.sum(0).tolist()      # every channel fires exactly once
        (torch.Size([10, 4]), [1.0, 1.0, 1.0, 1.0])
    """
    if span < channels:
        raise ConfigError(
            [("data.span", f"{span} steps cannot hold {channels} channels at distinct steps; use at least {channels}")]
        )
    if time_steps < span + 2 * jitter:
        raise ConfigError(
            [
                (
                    "data.time_steps",
                    f"{time_steps} leaves no room for a template of {span} steps jittered by {jitter}; use at least {span + 2 * jitter}",
                )
            ]
        )
    check_sample_size("data.time_steps", time_steps, (channels,))
    templates = timing_templates(classes, channels, span, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    splits = []
    for size in (train_size, test_size):
        labels = torch.randint(0, classes, (size,), generator=generator)
        splits.append(TensorDataset(timing_samples(templates, labels, time_steps, jitter, noise, generator), labels))
    return DatasetSplits(train=splits[0], test=splits[1], input_shape=(channels,), num_classes=classes)
