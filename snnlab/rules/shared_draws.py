"""Random draws of a rule that every process makes alike and a checkpoint carries: FF's negative labels, the
forward gradient's directions.

Draw k comes from a generator seeded by ``(seed, k)`` (SplitMix64, ``seeding.epoch_seed``), both buffers of the
rule, so a resumed run draws what the uninterrupted one drew. ``seed`` is taken from the global generator when
the rule is built, which every process seeds alike. A per-sample draw is made for the batch of all processes
together and each keeps its own samples (positions rank, rank + world, ..., as ``EpochSampler`` deals them), so
N processes with batch b draw what one process with batch N b does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..seeding import epoch_seed
from .base import world_size


class SharedDraws(nn.Module):
    """A counter-based random stream: the same numbers on every process, resumable from its two buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("seed", torch.randint(0, 2**62, (), dtype=torch.int64))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    def generator(self, device: torch.device) -> torch.Generator:
        """The next draw's generator on ``device``."""
        generator = torch.Generator(device=device).manual_seed(epoch_seed(int(self.seed), int(self.count)))
        self.count += 1
        return generator

    def per_sample(
        self, draw: Callable[..., Tensor], shape: Sequence[int], batch_dim: int, device: torch.device
    ) -> Tensor:
        """``draw(shape, generator=...)`` (``torch.rand``, ``torch.randn``) for this process's samples: drawn for
        the batch of all processes (``shape[batch_dim]`` times their number), this process's share kept."""
        world = world_size()
        full = list(shape)
        full[batch_dim] *= world
        values = draw(full, generator=self.generator(device), device=device)
        if world == 1:
            return values
        return values.movedim(batch_dim, 0)[dist.get_rank() :: world].movedim(0, batch_dim)
