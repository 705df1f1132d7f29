"""Losses on class scores, shared by the gradient rules."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def accuracy(scores: Tensor, labels: Tensor) -> float:
    """Share of rows whose highest score is the label."""
    return (scores.argmax(1) == labels).float().mean().item()


def cross_entropy(scores: Tensor, labels: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy of the readout's scores."""
    return F.cross_entropy(scores, labels, label_smoothing=label_smoothing)
