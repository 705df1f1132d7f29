r"""Lempel-Ziv complexity (LZ76) of spike trains, and the SNN-LZC classifier built on it (METHODS.md Part A 5).

c(n) is the number of phrases of the Lempel-Ziv (1976) parsing of a binary sequence of length n: each phrase is
the shortest string, starting where the previous one ended, that is not a substring of everything before its own
last symbol; an unfinished last phrase counts. For example 0 | 001 | 10 | 100 | 1000 | 101 gives c = 6. It is
counted by the Kaspar-Schuster algorithm (Phys. Rev. A 36, 842, 1987), O(n^2) steps at worst per sequence,
compiled with Numba (on first use, then cached on disk) and run over every sequence of a batch. The normalised complexity

.. math::

    C = c(n) \, \frac{\log_2 n}{n}

is near 1 for a random (fair coin) sequence and near 0 for a regular one (C = 0 for n = 1, where log2 n = 0).

The SNN-LZC classifier (choices: the paper's code is not public): features of a block's spike trains, per neuron
the normalised LZC and the firing rate, each standardised with the training set's mean and spread, then the
nearest class mean (a prototype per class). ``lzc_classifier_accuracy`` measures it for a trained network, or for
the input trains themselves with ``network=None`` (LZC as an encoding of the inputs); ``lzc_run_accuracy`` for a
run folder. It is a function rather than a rule: the prototypes are a readout fitted once to a trained network,
whichever rule trained it (the paper compares BP, STDP and Tempotron), not something to train per epoch.

Example::

    >>> int(lz76_complexity("0001101001000101"))
    6
    >>> spikes = (torch.rand(100, 4, 3) < 0.5).float()           # [T, B, N]
    >>> lzc_features(spikes).shape                                  # C and rate per neuron
    torch.Size([4, 6])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numba
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .block_fusion import unfused
from .datasets import DatasetSplits
from .network import Network
from .seeding import EVALUATION_SEED, fixed_randomness


@numba.njit(cache=True)
def _phrases(s: np.ndarray) -> int:
    """c(n) of one 0/1 sequence (uint8): Kaspar and Schuster's algorithm. ``i`` scans the start of a copy in the
    history, ``k`` the length matched so far, ``k_max`` the longest copy found for the phrase starting at ``ell``."""
    n = s.shape[0]
    if n <= 1:
        return n
    c, ell, i, k, k_max = 1, 1, 0, 1, 1
    while True:
        if s[i + k - 1] == s[ell + k - 1]:
            k += 1
            if ell + k > n:
                return c + 1
        else:
            k_max = max(k, k_max)
            i += 1
            if i == ell:  # no copy extends further: a new phrase of length k_max ends here
                c += 1
                ell += k_max
                if ell + 1 > n:
                    return c
                i, k, k_max = 0, 1, 1
            else:
                k = 1


@numba.njit(cache=True)
def _phrases_of_rows(sequences: np.ndarray) -> np.ndarray:
    """``_phrases`` of every row of a ``[M, n]`` array."""
    out = np.empty(sequences.shape[0], dtype=np.int64)
    for m in range(sequences.shape[0]):
        out[m] = _phrases(sequences[m])
    return out


def _as_binary(sequences: Tensor | np.ndarray | str | Iterable[Any], dim: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """The sequences as a C-contiguous uint8 ``[M, n]`` array (non-zero counts as 1), and the shape of the rest."""
    if isinstance(sequences, str):
        if set(sequences) - {"0", "1"}:
            raise ValueError(f"a binary string holds only '0' and '1', got {sequences!r}")
        sequences = [int(ch) for ch in sequences]
    array = sequences.detach().cpu().numpy() if isinstance(sequences, Tensor) else np.asarray(sequences)
    if array.ndim == 0:
        raise ValueError("lz76_complexity needs a sequence, got a scalar")
    array = np.moveaxis(array != 0, dim, -1)
    rest = array.shape[:-1]
    return np.ascontiguousarray(array.reshape(math.prod(rest), array.shape[-1]), dtype=np.uint8), rest


def _phrase_counts(sequences: Tensor | np.ndarray | str | Iterable[Any], dim: int) -> tuple[Tensor, int]:
    array, rest = _as_binary(sequences, dim)
    counts = _phrases_of_rows(array) if array.shape[0] else np.zeros(0, dtype=np.int64)
    return torch.from_numpy(counts).reshape(rest), array.shape[1]


def lz76_complexity(sequences: Tensor | np.ndarray | str | Iterable[Any], dim: int = 0) -> Tensor:
    """c(n), the number of LZ76 phrases, of every binary sequence along ``dim`` (time-major spikes ``[T, B, N]``
    give ``[B, N]``); a string of '0' and '1' or a list is one sequence. Any non-zero value counts as 1."""
    return _phrase_counts(sequences, dim)[0]


def normalized_lz76(sequences: Tensor | np.ndarray | str | Iterable[Any], dim: int = 0) -> Tensor:
    """C = c(n) log2(n) / n along ``dim`` (float32; 0 for n <= 1)."""
    c, n = _phrase_counts(sequences, dim)
    return c.to(torch.float32) * (math.log2(n) / n if n > 1 else 0.0)


def lzc_features(spikes: Tensor, dim: int = 0) -> Tensor:
    """Per sample, the normalised LZC and the firing rate (spikes per step) of each train along ``dim``:
    ``[T, B, ...]`` gives ``[B, 2 F]`` with F the trains per sample (complexities first, then rates)."""
    complexity = normalized_lz76(spikes, dim).flatten(1)
    rate = (spikes != 0).to(torch.float32).mean(dim).flatten(1).cpu()
    return torch.cat([complexity, rate], dim=1)


class PrototypeClassifier(nn.Module):
    """Nearest class mean on standardised features: scores are minus the squared distance to each class's mean.

    ``fit`` sets the buffers (feature mean and spread over the training set, one prototype per class); a feature
    constant over the training set is left unscaled. A class without training samples never wins.
    """

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("center", torch.zeros(num_features))
        self.register_buffer("scale", torch.ones(num_features))
        self.register_buffer("prototypes", torch.zeros(num_classes, num_features))
        self.register_buffer("present", torch.zeros(num_classes, dtype=torch.bool))

    def fit(self, features: Tensor, labels: Tensor) -> PrototypeClassifier:
        self.center = features.mean(0)
        spread = features.std(0, unbiased=False)
        self.scale = torch.where(spread > 0, spread, torch.ones_like(spread))
        z = (features - self.center) / self.scale
        for k in range(self.prototypes.shape[0]):
            members = labels == k
            self.present[k] = bool(members.any())
            if self.present[k]:
                self.prototypes[k] = z[members].mean(0)
        return self

    def forward(self, features: Tensor) -> Tensor:
        z = (features - self.center) / self.scale
        scores = -torch.cdist(z, self.prototypes).square()
        return scores.masked_fill(~self.present, -math.inf)


def spiking_block(network: Network) -> int:
    """The index of the network's last block whose neuron fires (its trains are what the classifier reads)."""
    for i in reversed(range(len(network.blocks))):
        if getattr(getattr(network.blocks[i], "neuron", None), "spiking", False):
            return i
    raise ValueError("the network has no block with a spiking neuron")


def _features(
    network: Network | None, data: Dataset, block: int | None, batch_size: int, device: torch.device
) -> Iterator[tuple[Tensor, Tensor]]:
    """LZC features and labels, batch by batch, of ``block``'s trains (the inputs' without a network)."""
    for x, y in DataLoader(data, batch_size=batch_size, shuffle=False):
        x = x.transpose(0, 1).to(device)  # [B, T, ...] -> [T, B, ...]
        with unfused():
            trains = x if network is None else network.trace(x).blocks[block].spikes
        yield lzc_features(trains), y


@torch.no_grad()
def lzc_classifier_accuracy(
    network: Network | None,
    splits: DatasetSplits,
    block: int | None = None,
    batch_size: int = 256,
    seed: int = EVALUATION_SEED,
    split: Literal["test", "validation"] = "test",
) -> float:
    """The SNN-LZC classifier's accuracy: prototypes fitted to the LZC and rate features of ``block``'s spike
    trains (default: the last spiking block) on ``splits.train``, scored on ``splits.test`` (or the validation
    split). ``network=None`` classifies the input trains themselves. The network runs in eval mode on its own
    device, its random draws (stochastic neurons) from ``seed``, so the result is a fixed function of the weights."""
    device = torch.device("cpu") if network is None else next(network.parameters()).device
    if network is not None:
        network.eval()
        block = spiking_block(network) if block is None else block
    evaluated = splits.test if split == "test" else splits.validation
    if evaluated is None:
        raise ValueError("the splits have no validation set")
    with fixed_randomness(seed, device):
        train = [*_features(network, splits.train, block, batch_size, device)]
        classifier = PrototypeClassifier(train[0][0].shape[1], splits.num_classes)
        classifier.fit(torch.cat([f for f, _ in train]), torch.cat([y for _, y in train]))
        correct = total = 0
        for features, y in _features(network, evaluated, block, batch_size, device):
            correct += int((classifier(features).argmax(1) == y).sum())
            total += len(y)
    return correct / total


def lzc_run_accuracy(
    run_dir: str | Path, checkpoint: Literal["best", "last"] = "best", block: int | None = None
) -> float:
    """``lzc_classifier_accuracy`` of a run folder's network (``best`` or ``last`` weights) on its own data.

    Example::

        >>> lzc_run_accuracy("runs/poisson_meta-20260101-120000")                   # doctest: +SKIP
        0.93
    """
    from .api import load_run

    run = load_run(run_dir, checkpoint)
    return lzc_classifier_accuracy(run.network, run.data, block)
