"""The platform's contracts one by one: block parts and their state, residual blocks, norm and recurrent
registries, objectives and regularisation terms, the three-part gradient step, parameter groups, and the
lifecycle hooks the runner visits."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from snnlab import lifecycle
from snnlab.builder import build_network
from snnlab.config import validate
from snnlab.distributed import Context
from snnlab.errors import ConfigError
from snnlab.network import Block, BlockState, Network, Residual
from snnlab.neurons import LI, LIF
from snnlab.objectives import Classification
from snnlab.rules import BPTT
from snnlab.runner import Training, run
from snnlab.stateful import Stateful, detach_state, find_field
from snnlab.stats import ActivityMonitor
from snnlab.synapses import L2Normalize, Linear


def steps(net: nn.Module, x_seq: Tensor) -> Tensor:
    state, outputs = None, []
    for x_t in x_seq:
        out, state = net.step(x_t, state)
        outputs.append(out)
    return torch.stack(outputs)


def test_every_block_kind_is_stateful_and_step_equals_forward() -> None:
    """Recurrent, residual and plain blocks all follow one contract; stepping gives the sequence's outputs."""
    torch.manual_seed(0)
    recurrent = Block(Linear(5, 6), neuron=LIF(backend="torch"), recurrent=nn.Linear(6, 6, bias=False))
    residual = Residual([Block(Linear(6, 6), neuron=LIF(backend="torch")), Block(Linear(6, 6), neuron=LI())])
    net = Network([recurrent, residual, Block(Linear(6, 3), neuron=LI())])
    for module in (recurrent, residual, net.blocks[2]):
        assert isinstance(module, Stateful)
    x = torch.rand(7, 4, 5) * 2
    out, states = net(x)
    torch.testing.assert_close(steps(net, x), out)
    assert states[0].recurrent.shape == (4, 6) and states[0].neuron.v.shape == (4, 6)
    assert len(states[1].blocks) == 2


def test_recurrent_block_adds_the_previous_output() -> None:
    """i[t] = W x[t] + w s[t-1] with a one-to-one weight: the hand-computed trace of an IF neuron."""
    block = Block(neuron=LIF(tau=math.inf, decay_input=False, backend="torch"), recurrent=nn.Identity())
    x = torch.tensor([1.5, 0.0, 0.0, 0.0]).view(4, 1, 1)
    trace = block.trace(x)
    # t0: v = 1.5 -> spike, v = 0.5; t1: i = 0 + 1 (recurrent), v = 1.5 -> spike ...: it keeps itself firing
    assert trace.spikes.flatten().tolist() == [1.0, 1.0, 1.0, 1.0]
    assert trace.current.flatten().tolist() == [1.5, 1.0, 1.0, 1.0]


def test_block_trace_exposes_its_intermediates() -> None:
    torch.manual_seed(1)
    block = Block(Linear(3, 4), neuron=LIF(backend="torch"), post=[nn.Dropout(0.0)])
    x = torch.rand(5, 2, 3)
    trace = block.trace(x)
    assert trace.input is x
    torch.testing.assert_close(trace.current, block.synapse(x))
    assert torch.equal(trace.output, trace.spikes)
    torch.testing.assert_close(trace.state.neuron.v, block(x)[1].neuron.v)


def test_norm_recurrent_and_residual_from_yaml() -> None:
    raw = {
        "network": {
            "blocks": [
                {"linear": 16, "norm": "layer", "recurrent": {"kind": "one_to_one", "init": 0.5}},
                {"norm": "l2"},
                {"residual": [{"linear": 16, "norm": "batch"}, {"linear": 16}]},
                {"linear": 10},
            ]
        }
    }
    net = build_network(validate(raw).network, (8,), membrane_output=True)
    assert isinstance(net.blocks[0].norm, nn.LayerNorm)
    assert torch.equal(net.blocks[0].recurrent.weight, torch.full((16,), 0.5))
    assert isinstance(net.blocks[1].norm, L2Normalize) and net.blocks[1].neuron is None
    assert isinstance(net.blocks[2], Residual) and isinstance(net.blocks[2].blocks[0].norm, nn.BatchNorm1d)
    out, _ = net(torch.rand(3, 2, 8))
    assert out.shape == (3, 2, 10)


@pytest.mark.parametrize(
    ("blocks", "where", "message"),
    [
        ([{"residual": [{"linear": 12}]}, {"linear": 10}], "network.blocks[0].residual", "must keep the shape"),
        (
            [{"linear": 16, "recurrent": "dense"}, {"flatten": True, "recurrent": "dense"}],
            "network.blocks[1]",
            "needs a neuron",
        ),
        ([{"linear": 16, "norm": "group"}], "norm.name", "unknown value 'group'"),
    ],
)
def test_block_mistakes_are_named(blocks: list, where: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"{re.escape(where)}.*{message}"):
        build_network(validate({"network": {"blocks": blocks}}).network, (8,))


def test_network_readout_moved_to_the_objective_is_explained() -> None:
    with pytest.raises(ConfigError, match=r"network\.readout` is now `objective\.readout"):
        validate({"network": {"blocks": [{"linear": 10}], "readout": "spike_count"}})


class SparsityLIF(LIF):
    """A LIF whose output adds lambda * mean(s) to the loss."""

    def regularization(self, spikes: Tensor) -> Tensor:
        return 0.5 * spikes.mean()


def test_regularization_terms_reach_the_loss_whole_and_per_step() -> None:
    """The objective adds the modules' terms; per step, their shares add up to the sequence's."""
    torch.manual_seed(2)
    net = Network([Block(Linear(4, 6), neuron=SparsityLIF(backend="torch")), Block(Linear(6, 3), neuron=LI())])
    objective = Classification()
    x, y = torch.rand(5, 2, 4) * 3, torch.tensor([0, 2])
    trace = net.trace(x)
    plain = nn.functional.cross_entropy(objective.scores(trace.output), y)
    torch.testing.assert_close(objective.loss(trace, y), plain + 0.5 * trace.blocks[0].spikes.mean())
    states, per_step = None, []
    for x_t in x:
        trace_t = net.trace_step(x_t, states)
        states = trace_t.states
        per_step.append(trace_t.regularization / len(x))
    torch.testing.assert_close(sum(per_step), 0.5 * trace.blocks[0].spikes.mean())


def test_per_step_readout_scores_one_step_not_the_batch() -> None:
    """Scores of one step [B, C] keep the batch axis (the old readouts averaged over it)."""
    objective = Classification()
    trace_out = torch.randn(32, 10)
    assert objective.scores(trace_out.unsqueeze(0)).shape == (32, 10)


def test_gradient_step_accumulates_several_backward_passes(quick_raw: dict) -> None:
    """zero_grad, two backward calls (one with output gradients), one step: the update uses the sum."""
    cfg = validate(quick_raw)
    torch.manual_seed(3)
    net = build_network(cfg.network, (64,), membrane_output=True)
    rule = BPTT(cfg.rule, net, Classification(), cfg.train)
    x = torch.rand(4, 8, 64)
    rule.zero_grad()
    out, _ = net(x)
    rule.backward(out.sum())
    out2, _ = net(x)
    rule.backward(out2, torch.ones_like(out2))
    accumulated = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    (2 * net(x)[0].sum()).backward()
    for a, b in zip(accumulated, net.parameters()):
        torch.testing.assert_close(a, b.grad)
    rule.step(net)


def test_parameter_groups_by_name(quick_raw: dict) -> None:
    quick_raw["train"]["optimizer"]["groups"] = [
        {"params": "network.blocks.1.*", "lr": 0.1},
        {"params": "network.*.bias", "weight_decay": 0.5},
    ]
    cfg = validate(quick_raw)
    net = build_network(cfg.network, (64,), membrane_output=True)
    groups = BPTT(cfg.rule, net, Classification(), cfg.train).optimizer.param_groups
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert by_id[id(net.blocks[1].synapse.weight)]["lr"] == 0.1
    assert by_id[id(net.blocks[1].synapse.bias)]["lr"] == 0.1  # the first matching group wins
    assert by_id[id(net.blocks[0].synapse.bias)]["weight_decay"] == 0.5
    assert by_id[id(net.blocks[0].synapse.weight)]["lr"] == 5e-3
    quick_raw["train"]["optimizer"]["groups"] = [{"params": "network.*.delay"}]
    cfg = validate(quick_raw)
    with pytest.raises(ConfigError, match=r"groups\[0\]\.params: 'network\.\*\.delay' matches no parameter"):
        BPTT(cfg.rule, net, Classification(), cfg.train)


class Hooked(nn.Module):
    """A layer with every lifecycle hook; what the hooks did lives in buffers, so checkpoints hold it."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(features))
        self.register_buffer("calls", torch.zeros(3))  # initialize, after_update, end_epoch

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale

    def initialize(self, x: Tensor) -> None:
        self.calls[0] += 1
        self.scale.data = 1 / (x.std(0) + 1)  # data-dependent

    def after_update(self) -> None:
        self.calls[1] += 1
        self.scale.data.clamp_(min=0)  # a constraint kept after every update

    def end_epoch(self, epoch: int, epochs: int) -> None:
        self.calls[2] += 1


def hooked_network(cfg) -> Network:  # type: ignore[no-untyped-def]
    net = build_network(cfg.network, (64,), membrane_output=True)
    net.blocks[0].norm = Hooked(128)
    return net


def test_lifecycle_hooks_run_at_their_moments(quick_raw: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """initialize once on the first batch of a fresh run (not on resume), after_update after every step,
    end_epoch after every epoch."""
    import snnlab.runner as runner

    real = runner.build_network

    def with_hooks(*args, **kwargs):  # type: ignore[no-untyped-def]
        net = real(*args, **kwargs)
        net.blocks[0].norm = Hooked(128)
        return net

    monkeypatch.setattr(runner, "build_network", with_hooks)
    quick_raw["output"]["dir"] = str(tmp_path / "run")
    result = run(validate(quick_raw), "test", progress=False)
    state = torch.load(result.run_dir / "checkpoint.pt", weights_only=True)["network"]
    steps_per_epoch = math.ceil(1212 / 64)  # 1347 training images less the 10% validation hold-out
    assert state["blocks.0.norm.calls"].tolist() == [1, 2 * steps_per_epoch, 2]
    assert (state["blocks.0.norm.scale"] >= 0).all()
    quick_raw["train"]["epochs"] = 3  # extended on resume: initialize is not run again
    config = result.run_dir / "config.yaml"
    config.write_text(config.read_text().replace("epochs: 2", "epochs: 3"))
    resumed = run(validate(quick_raw), "test", progress=False, resume=result.run_dir)
    state = torch.load(resumed.run_dir / "checkpoint.pt", weights_only=True)["network"]
    assert state["blocks.0.norm.calls"].tolist() == [1, 3 * steps_per_epoch, 3]


def test_initialize_sees_each_module_its_own_input() -> None:
    torch.manual_seed(4)
    net = Network([Block(Linear(4, 6), norm=Hooked(6), neuron=LIF(backend="torch"))])
    x = torch.rand(3, 5, 4)
    expected = 1 / (net.blocks[0].synapse(x.flatten(0, 1)).std(0) + 1)
    lifecycle.initialize(net, x)
    torch.testing.assert_close(net.blocks[0].norm.scale.data, expected)
    assert net.blocks[0].norm.calls.tolist() == [1, 0, 0]


def test_activity_monitor_finds_neurons_inside_residual_and_stepped_blocks() -> None:
    """Spikes are counted whether a neuron runs a sequence or is stepped (recurrent blocks, per-step rules)."""
    lif = LIF(tau=1e9, decay_input=False, threshold=0.5, backend="torch")
    inner = Block(Linear(4, 4), neuron=lif)
    net = Network([Residual([inner]), Block(Linear(4, 2), neuron=LI())])
    with torch.no_grad():
        inner.synapse.weight.copy_(torch.eye(4))
        inner.synapse.bias.zero_()
    x = torch.ones(3, 2, 4)
    for run_it in (lambda: net(x), lambda: steps(net, x)):
        with ActivityMonitor(net) as monitor, torch.no_grad():
            run_it()
            monitor.count(2)
        assert monitor.summary()["blocks"][0]["firing_rate"] == 1.0
    assert "step" not in vars(lif)  # the monitor put the class's step back


def test_nested_states_detach_and_expose_the_membrane() -> None:
    v = torch.ones(2, requires_grad=True) * 2
    state = [BlockState(None, LIF().initial_state(v)._replace(v=v), v), None]
    cut = detach_state(state)
    assert not cut[0].neuron.v.requires_grad and not cut[0].recurrent.requires_grad
    assert find_field(state, "v") is v


def test_training_builds_rule_with_objective_and_headless_check(quick_raw: dict) -> None:
    """A network not ending in the classes is refused for a rule that needs an output layer, by block."""
    quick_raw["network"]["blocks"] = [{"linear": 32}]
    with pytest.raises(
        ConfigError, match=r"network.blocks\[0\]: the network ends with shape \[32\] but the data has 10"
    ):
        Training(validate(quick_raw), "test", Context(torch.device("cpu")), None)
