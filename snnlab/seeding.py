"""Random state: seeding a run, saving and restoring every generator, and per-sample generators for data.

Data randomness (Poisson encoding, augmentation) draws from a generator seeded by
``(seed, epoch, index)`` of the sample, not from the global stream. A sample is then
the same whichever process, worker or batch loads it, which is what makes a resumed
run and a run split over several processes repeat an uninterrupted single-process run.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so that a CPU run repeats bit for bit."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


EVALUATION_SEED = 0
"""The seed every evaluation draws its randomness from (stochastic neurons and synapses, ``snnlab.neurons.meta``):
the same weights then give the same metrics at every epoch, in ``snnlab eval`` and after a resume."""


@contextmanager
def fixed_randomness(seed: int = EVALUATION_SEED, device: torch.device | None = None) -> Iterator[None]:
    """Run the body on torch's global generators (CPU, and ``device``'s when it is a GPU) seeded with ``seed``, and
    put their states back afterwards: the body's draws are fixed, and the caller's stream is left untouched."""
    gpu = device is not None and device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if gpu else [], device_type="cuda"):
        torch.random.default_generator.manual_seed(seed)
        if gpu:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


_MASK = 2**64 - 1


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for one epoch of a run (its sample order); nearby pairs give unrelated streams (SplitMix64)."""
    return _splitmix64(_splitmix64(seed & _MASK) ^ epoch) >> 1


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample of one epoch (its encoding and augmentation)."""
    return _splitmix64(epoch_seed(seed, epoch) ^ index) >> 1


def rng_states() -> dict[str, Any]:
    """Every global generator's state (Python, NumPy, torch CPU and CUDA), as plain types and tensors."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Put back what ``rng_states`` returned."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
