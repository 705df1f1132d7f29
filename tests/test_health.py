"""Non-finite values stop a run, naming the epoch, the step and where the value first appears; nothing good is lost."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from snnlab import checkpoint
from snnlab.builder import build_network
from snnlab.config import validate
from snnlab.datasets.encoders import EncodedDataset
from snnlab.errors import SnnlabError
from snnlab.health import NonFiniteError, locate_non_finite
from snnlab.objectives import Classification
from snnlab.rules import BPTT
from snnlab.runner import run


def network(raw: dict):
    torch.manual_seed(0)
    return build_network(validate(raw).network, (64,), membrane_output=True)


def test_locates_the_block_and_time_step(quick_raw: dict) -> None:
    """A current that overflows float32 at step 3 is traced to the first block's membrane at that step."""
    net = network(quick_raw)
    x = torch.rand(6, 4, 64)
    x[3] = 3e38
    assert locate_non_finite(net, x) == "network.blocks.0 (LIF: output or v) at time step 3"


def test_locates_a_parameter_and_a_gradient(quick_raw: dict) -> None:
    net = network(quick_raw)
    x = torch.rand(6, 4, 64)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    net.blocks[1].synapse.bias.grad[2] = float("inf")
    assert locate_non_finite(net, x) == "the gradient of network.blocks.1.synapse.bias (the forward pass was finite)"
    with torch.no_grad():
        net.blocks[1].synapse.weight[0, 0] = float("nan")
    assert locate_non_finite(net, x) == "parameter network.blocks.1.synapse.weight"


def test_gradient_rule_refuses_to_step_on_non_finite_values(quick_raw: dict) -> None:
    """The loss, the gradient norm and the final states are checked before the optimizer step."""
    cfg = validate(quick_raw)
    net = network(quick_raw)
    rule = BPTT(cfg.rule, net, Classification(), cfg.train)
    before = [p.clone() for p in net.parameters()]
    x = torch.rand(6, 4, 64)
    x[2, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError):
        rule.train_step(net, (x, torch.zeros(4, dtype=torch.long)))
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_nan_input_stops_the_run_and_keeps_the_checkpoint(
    quick_raw: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Epoch, step and cause are named; the checkpoint of the previous epoch stays whole and resumable."""
    sample = EncodedDataset.sample
    calls = {"n": 0}

    def poisoned(self, i, generator):
        calls["n"] += 1
        x, y = sample(self, i, generator)
        return (x * float("nan"), y) if calls["n"] > 1347 + 450 + 64 * 3 else (x, y)

    monkeypatch.setattr(EncodedDataset, "sample", poisoned)
    quick_raw["output"]["dir"] = str(tmp_path / "run")
    with pytest.raises(SnnlabError) as info:
        run(validate(quick_raw), "test", progress=False)
    message = str(info.value)
    assert "at epoch 2, step 3; it first appears in the input batch itself" in message
    assert "the last good checkpoint (end of epoch 1) is in" in message
    state = checkpoint.load(tmp_path / "run" / "checkpoint.pt")
    assert state["progress"]["epoch"] == 2 and len(state["progress"]["rows"]) == 1
