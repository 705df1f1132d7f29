"""The generated spike-train task: determinism per seed, shapes and splits, each process's statistics, option
errors, and the two experiments that use it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from snnlab.config import load_experiment, validate
from snnlab.datasets import DATASETS, poisson_trains
from snnlab.errors import ConfigError

EXPERIMENTS = Path(__file__).parents[1] / "experiments"


def test_deterministic_per_seed() -> None:
    a, b = poisson_trains(samples_per_class=20), poisson_trains(samples_per_class=20)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    c = poisson_trains(samples_per_class=20, data_seed=1)
    assert not torch.equal(a.train.x, c.train.x)
    assert not torch.equal(a.train.x[: len(a.test)], a.test.x)  # train and test come from separate streams


def test_shapes_labels_and_splits() -> None:
    splits = poisson_trains(channels=7, time_steps=30, samples_per_class=10, test_fraction=0.3)
    assert splits.input_shape == (7,) and splits.num_classes == 5
    x, y = splits.train[0]
    assert x.shape == (30, 7) and x.dtype == torch.float32 and set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.bincount(splits.train.y).tolist() == [7] * 5  # 10 per class, 3 of them for testing
    assert torch.bincount(splits.test.y).tolist() == [3] * 5
    assert DATASETS.builder("poisson_trains") is poisson_trains


def test_class_statistics() -> None:
    """Each class fires at its rate; at 40 Hz the spike counts of regular trains vary far less than Poisson ones
    (Fano factor about 1), bursty ones far more (about the burst size), and bursty trains repeat at the burst
    interval."""
    splits = poisson_trains(samples_per_class=120, test_fraction=0.5)
    x, y = splits.train.x.float(), splits.train.y
    rates = torch.stack([x[y == k].mean() * 1000 for k in range(5)])  # Hz, 1 ms bins
    assert torch.allclose(rates, torch.tensor([20.0, 40.0, 40.0, 40.0, 60.0]), rtol=0.06)

    def fano(k: int) -> float:
        counts = x[y == k].sum(1)  # [n, channels]
        return float((counts.var(0) / counts.mean(0)).mean())

    assert fano(1) == pytest.approx(1.0, abs=0.15)
    assert fano(2) < 0.4
    assert fano(3) > 2.5

    def lag_coincidence(k: int, lag: int) -> float:
        trains = x[y == k]
        return float((trains[:, lag:] * trains[:, :-lag]).mean() / trains.mean() ** 2)

    assert lag_coincidence(3, 2) > 10 and lag_coincidence(1, 2) == pytest.approx(1.0, abs=0.2)


def test_options_are_validated() -> None:
    def build(**data: object) -> object:
        cfg = validate({"data": {"name": "poisson_trains", **data}, "network": {"blocks": [{"linear": 5}]}})
        return DATASETS.build(cfg.data)

    with pytest.raises(ConfigError, match=r"data\.classes\[0\]\.rate"):
        build(classes=[{"rate": 1500}, {"rate": 10}])
    with pytest.raises(ConfigError, match=r"data\.classes.*process"):
        build(classes=[{"process": "gamma", "rate": 10}, {"rate": 10}])
    with pytest.raises(ConfigError, match=r"data\.classes"):
        build(classes=[{"rate": 10}])
    with pytest.raises(ConfigError, match=r"data\.test_fraction"):
        build(samples_per_class=2, test_fraction=0.6)
    splits = build(classes=[{"process": "regular", "rate": 30}, {"process": "bursty", "rate": 30}], samples_per_class=4)
    assert splits.num_classes == 2


@pytest.mark.parametrize("name", ["poisson_meta.yaml", "poisson_lif.yaml"])
def test_experiments_validate(name: str) -> None:
    from snnlab.runner import build_experiment

    cfg, _ = load_experiment(EXPERIMENTS / name)
    experiment = build_experiment(cfg)
    assert experiment.splits.validation is not None and len(experiment.splits.validation) == 112
