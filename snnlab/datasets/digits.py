"""scikit-learn's bundled handwritten digits (1,797 images of 8 x 8, 10 classes): the default that works offline."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from .base import DatasetSplits
from .encoders import EncodedDataset, EncoderSpec


def digits(
    time_steps: Annotated[int, Field(ge=1)] = 8,
    encoder: EncoderSpec = "direct",
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.25,
    split_seed: int = 0,
    flatten: bool = True,
) -> DatasetSplits:
    """The digits with pixels scaled to [0, 1], split by a fixed stratified seed.

    Args:
        time_steps: T, the length of the encoded sequence.
        encoder: how a static image becomes a sequence (``direct``, ``poisson``, ``latency``).
        test_fraction: share of the 1,797 images held out for testing.
        split_seed: seed of the train/test split; fixed so that every run tests on the same images.
        flatten: serve ``[64]`` vectors (for MLPs) rather than ``[1, 8, 8]`` images (for convolutions).
    """
    from sklearn.datasets import load_digits  # here, not at import: scikit-learn takes a second to import
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(bunch.target, dtype=torch.long)
    shape = (64,) if flatten else (1, 8, 8)
    x = x.reshape(len(x), *shape)
    train_idx, test_idx = train_test_split(
        torch.arange(len(y)).numpy(), test_size=test_fraction, random_state=split_seed, stratify=y.numpy()
    )
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return DatasetSplits(
        train=EncodedDataset(x[train_idx], y[train_idx], encoder, time_steps),
        test=EncodedDataset(x[test_idx], y[test_idx], encoder, time_steps),
        input_shape=shape,
        num_classes=10,
    )
