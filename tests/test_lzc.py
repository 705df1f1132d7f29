"""Lempel-Ziv (LZ76) complexity on hand-parsed and published strings and against the definition, its batched and
normalised forms, the prototype classifier, and the SNN-LZC classifier of inputs, networks and run folders."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from snnlab.lzc import (
    PrototypeClassifier,
    lz76_complexity,
    lzc_classifier_accuracy,
    lzc_features,
    lzc_run_accuracy,
    normalized_lz76,
)


def by_definition(s: str) -> int:
    """LZ76 straight from the definition: a phrase starting at i grows while it is a substring of s[:end - 1]."""
    i = c = 0
    while i < len(s):
        length = 1
        while i + length <= len(s) and s[i : i + length] in s[: i + length - 1]:
            length += 1
        c, i = c + 1, i + length
    return c


@pytest.mark.parametrize(
    ("string", "phrases"),
    [
        ("", 0),
        ("0", 1),
        ("01", 2),
        ("0000000", 2),  # 0 | 000000 (a copy that overlaps itself; the unfinished last phrase counts)
        ("0101010101", 3),  # 0 | 1 | 01010101
        ("0001101001000101", 6),  # Lempel & Ziv's and Kaspar & Schuster's example: 0 | 001 | 10 | 100 | 1000 | 101
        ("1001111011000010", 6),  # 1 | 0 | 01 | 1110 | 1100 | 0010
    ],
)
def test_known_strings(string: str, phrases: int) -> None:
    assert int(lz76_complexity(string)) == phrases == by_definition(string)


def test_matches_the_definition_on_random_strings() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        n = int(torch.randint(1, 48, (1,), generator=generator))
        p = float(torch.rand(1, generator=generator))
        s = "".join("1" if u < p else "0" for u in torch.rand(n, generator=generator).tolist())
        assert int(lz76_complexity(s)) == by_definition(s), s


def test_batched_over_any_axis_and_normalised() -> None:
    spikes = (torch.rand(40, 3, 5, generator=torch.Generator().manual_seed(1)) < 0.3).float()  # [T, B, N]
    c = lz76_complexity(spikes)
    assert c.shape == (3, 5) and c.dtype == torch.int64
    for b in range(3):
        for n in range(5):
            assert int(c[b, n]) == by_definition("".join(str(int(v)) for v in spikes[:, b, n]))
    assert torch.equal(lz76_complexity(spikes.permute(1, 2, 0), dim=-1), c)
    assert torch.allclose(normalized_lz76(spikes), c.float() * math.log2(40) / 40)
    assert float(normalized_lz76("0")) == 0.0


def test_normalised_complexity_of_random_and_regular_trains() -> None:
    """C is near 1 for fair coin flips and near 0 for a periodic train."""
    coin = torch.rand(8192, generator=torch.Generator().manual_seed(2)) < 0.5
    assert float(normalized_lz76(coin)) == pytest.approx(1.0, abs=0.1)
    assert float(normalized_lz76(torch.arange(8192) % 4 == 0)) < 0.01


def test_features_are_complexity_then_rate() -> None:
    spikes = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]]).unsqueeze(1)  # [T=4, B=1, N=2]
    features = lzc_features(spikes)
    # neuron 0: 1101 -> 1 | 10 | 1 = 3 phrases; neuron 1: 0100 -> 0 | 1 | 00 = 3; C = 3 * 2 / 4 = 1.5
    assert features.tolist() == [[1.5, 1.5, 0.75, 0.25]]


def test_prototype_classifier() -> None:
    """Nearest class mean on standardised features; a constant feature is not divided by 0; a class without training
    samples never wins."""
    features = torch.tensor([[0.0, 5.0, 1.0], [0.2, 5.0, 1.0], [1.0, 5.0, 3.0], [1.2, 5.0, 3.0]])
    labels = torch.tensor([0, 0, 1, 1])
    classifier = PrototypeClassifier(3, num_classes=3).fit(features, labels)
    scores = classifier(torch.tensor([[0.1, 5.0, 1.2], [1.1, 7.0, 2.9]]))
    assert scores.argmax(1).tolist() == [0, 1]
    assert torch.isfinite(scores[:, :2]).all() and (scores[:, 2] == -math.inf).all()
    assert classifier.scale[1] == 1.0


def small_splits() -> object:
    from snnlab.datasets import poisson_trains
    from snnlab.datasets.validation import with_validation

    return with_validation(poisson_trains(channels=8, time_steps=50, samples_per_class=40), 0.1, 0)


def test_classifier_of_the_input_trains() -> None:
    """LZC and rates of the inputs alone separate the default classes well above chance (1/5), deterministically."""
    splits = small_splits()
    accuracy = lzc_classifier_accuracy(None, splits)
    assert accuracy > 0.5
    assert lzc_classifier_accuracy(None, splits) == accuracy


def test_classifier_of_a_stochastic_network_is_a_fixed_function_of_its_weights() -> None:
    from snnlab.network import Block, Network
    from snnlab.neurons import LI, Meta
    from snnlab.synapses import Linear, MetaLinear

    torch.manual_seed(0)
    network = Network(
        [Block(MetaLinear(8, 16), neuron=Meta(threshold=0.1, temperature=0.05)), Block(Linear(16, 5), neuron=LI())]
    )
    splits = small_splits()
    torch.manual_seed(3)
    first = lzc_classifier_accuracy(network, splits)
    after = torch.rand(2)
    torch.manual_seed(3)
    assert lzc_classifier_accuracy(network, splits, block=0) == first  # block 0: the last spiking one
    assert torch.equal(torch.rand(2), after)  # the caller's random stream is untouched
    assert 0 <= first <= 1


def test_classifier_of_a_run_folder(tmp_path: Path) -> None:
    """A short run of experiments/poisson_meta.yaml, then the SNN-LZC classifier on its best weights."""
    from snnlab.config import load_experiment
    from snnlab.runner import run

    overrides = [
        "train.epochs=1",
        "data.samples_per_class=24",
        "data.time_steps=30",
        f"output.root={tmp_path}",
        "output.plots=false",
    ]
    cfg, source = load_experiment(Path(__file__).parents[1] / "experiments" / "poisson_meta.yaml", overrides)
    result = run(cfg, source, progress=False)
    accuracy = lzc_run_accuracy(result.run_dir)
    assert 0 <= accuracy <= 1
    assert lzc_run_accuracy(result.run_dir) == accuracy
