"""scikit-learn's bundled handwritten digits (1,797 images of 8 x 8, 10 classes): the default that works offline."""

from __future__ import annotations

import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated

import numpy as np
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
    shape = (64,) if flatten else (1, 8, 8)
    check_sample_size("data.time_steps", time_steps, shape)
    _check_split(test_fraction, 1797, 10)
    images, targets, train_idx, test_idx = (torch.from_numpy(a) for a in _arrays(test_fraction, split_seed))
    x = (images.float() / 16.0).reshape(len(images), *shape)
    y = targets.long()
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


CACHE_VERSION = 1
"""Bumped when what the cache file holds changes, so that an old file is not read."""


def _cache_file(test_fraction: float, split_seed: int) -> Path:
    """Where the arrays of one split are cached: under ``$XDG_CACHE_HOME/snnlab`` (``~/.cache/snnlab``)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "snnlab" / "digits" / f"v{CACHE_VERSION}-test{test_fraction!r}-seed{split_seed}.npz"


def _arrays(test_fraction: float, split_seed: int) -> tuple[np.ndarray, ...]:
    """The images (uint8 0..16, ``[1797, 8, 8]``), targets, and train and test indices of the stratified split.

    Read from a small cache file when there is one, so that a run need not import scikit-learn (1.5 s); else
    computed with scikit-learn and cached, written atomically (a temporary file renamed into place), so that
    processes started together never read half a file. A cache that cannot be read or written is skipped."""
    path = _cache_file(test_fraction, split_seed)
    try:
        with np.load(path) as f:
            return f["images"], f["targets"], f["train"], f["test"]
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):
        pass
    from sklearn.datasets import load_digits  # here, not at import: scikit-learn takes a second to import
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images, targets = bunch.images.astype(np.uint8), bunch.target.astype(np.uint8)
    train, test = train_test_split(
        np.arange(len(targets)), test_size=test_fraction, random_state=split_seed, stratify=targets
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
            try:
                np.savez(tmp, images=images, targets=targets, train=train, test=test)
                tmp.close()
                os.replace(tmp.name, path)
            except BaseException:
                os.unlink(tmp.name)
                raise
    except OSError:
        pass  # a read-only or full cache only costs the next run the import again
    return images, targets, train, test
