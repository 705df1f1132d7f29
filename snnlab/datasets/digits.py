"""scikit-learn's bundled handwritten digits (1,797 images of 8 x 8, 10 classes): the default that works offline."""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field

from ..errors import ConfigError
from .base import DatasetSplits, check_sample_size
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

    shape = (64,) if flatten else (1, 8, 8)
    check_sample_size("data.time_steps", time_steps, shape)
    bunch = load_digits()
    x = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(bunch.target, dtype=torch.long)
    x = x.reshape(len(x), *shape)
    _check_split(test_fraction, len(y), 10)
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


def _check_split(test_fraction: float, n: int, classes: int) -> None:
    """A stratified split needs one sample per class on each side: refuse a ``test_fraction`` that leaves fewer
    (scikit-learn's own error would not name the key), saying the range that works for ``n`` samples."""
    n_test = math.ceil(test_fraction * n)  # as train_test_split counts
    if n_test < classes or n - n_test < classes:
        low, high = classes / n, (n - classes) / n
        raise ConfigError(
            [
                (
                    "data.test_fraction",
                    f"{test_fraction} holds out {n_test} of the {n} images and trains on {n - n_test}; the "
                    f"stratified split needs at least one per class ({classes}) in each: use a value from "
                    f"{math.ceil(low * 1e4) / 1e4} to {math.floor(high * 1e4) / 1e4}",
                )
            ]
        )
