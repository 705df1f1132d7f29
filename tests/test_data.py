"""Datasets and encoders: the digits split is fixed, and each encoder produces what it promises."""

from __future__ import annotations

import torch

from snnlab.config import validate
from snnlab.datasets import DATASETS, ENCODERS
from snnlab.datasets.encoders import Direct, Latency, Poisson


def digits(**options):
    cfg = validate({"data": {"name": "digits", **options}, "network": {"blocks": [{"linear": 10}]}}).data
    return DATASETS.build(cfg)


def test_digits_split_is_fixed_and_stratified() -> None:
    """The same split every time, disjoint, 75/25, every class in both parts."""
    a, b = digits(), digits()
    assert len(a.train) == 1347 and len(a.test) == 450
    torch.testing.assert_close(a.test.x, b.test.x)
    assert set(a.test.y.tolist()) == set(range(10)) == set(a.train.y.tolist())
    assert 0.0 <= float(a.train.x.min()) and float(a.train.x.max()) <= 1.0


def test_digits_shapes() -> None:
    flat, image = digits(time_steps=5), digits(time_steps=3, flatten=False)
    assert flat.input_shape == (64,) and flat.train[0][0].shape == (5, 64)
    assert image.input_shape == (1, 8, 8) and image.train[0][0].shape == (3, 1, 8, 8)
    assert flat.num_classes == 10


def test_direct_repeats_the_input() -> None:
    x = torch.rand(3, 4)
    seq = Direct()(x, 6)
    assert seq.shape == (6, 3, 4)
    assert all(torch.equal(s, x) for s in seq)


def test_poisson_rate_matches_gain() -> None:
    """Spikes are binary and their rate is clip(gain x, 0, 1)."""
    torch.manual_seed(0)
    x = torch.tensor([0.0, 0.2, 0.5, 1.0])
    seq = Poisson(gain=0.5)(x.expand(2000, 4), 10)
    assert set(seq.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(seq.mean((0, 1)), 0.5 * x, atol=0.01, rtol=0)


def test_latency_one_spike_brighter_first() -> None:
    """Each input above threshold spikes exactly once; larger values spike earlier; zeros never spike."""
    x = torch.tensor([1.0, 0.75, 0.5, 0.0])
    for encoder in (Latency(), Latency(mode="rc")):
        seq = encoder(x, 9)
        assert seq.sum(0).tolist() == [1.0, 1.0, 1.0, 0.0]
        times = seq[:, :3].argmax(0).tolist()
        assert times == sorted(times) and times[0] < times[2]
    assert Latency()(x, 9)[:, 0].argmax() == 0 and Latency()(x, 9)[:, 2].argmax() == 4


def test_encoder_registry() -> None:
    assert ENCODERS.names() == ["direct", "latency", "poisson"]
