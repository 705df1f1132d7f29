"""The delay synapse (y_i[t] = sum_j w_ij s_j[t - d_ij]), its DCLS training form, its lifecycle hooks, the
per-group learning-rate schedules it trains with, and the generated timing task."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from snnlab import checkpoint, lifecycle
from snnlab.config import validate
from snnlab.errors import ConfigError
from snnlab.optim import EpochSchedule, SchedulerConfig, lr_at
from snnlab.runner import build_experiment, build_rule
from snnlab.synapses.delay import DelaySynapse, gaussian_kernel, sigma_at

REPO = Path(__file__).resolve().parents[1]
TIMING = REPO / "experiments" / "timing_delays.yaml"


def spikes(*shape: int, seed: int = 0, p: float = 0.3) -> torch.Tensor:
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < p).float()


def direct_sum(x: torch.Tensor, weight: torch.Tensor, delays: torch.Tensor) -> torch.Tensor:
    """y[t, b, i] = sum_j w_ij x[t - d_ij, b, j], written as the loops of the definition."""
    T, B, n_in = x.shape
    y = torch.zeros(T, B, weight.shape[0], dtype=x.dtype)
    for i in range(weight.shape[0]):
        for j in range(n_in):
            d = int(delays[i, j])
            if d < T:
                y[d:, :, i] += weight[i, j] * x[: T - d, :, j]
    return y


def test_integer_delays_are_the_direct_sum() -> None:
    torch.manual_seed(0)
    delays = torch.randint(0, 7, (5, 4))
    syn = DelaySynapse(4, 5, max_delay=7, mode="fixed", delays=delays.tolist(), bias=True)
    x = spikes(12, 3, 4)
    expected = direct_sum(x, syn.weight.detach(), delays) + syn.bias.detach()
    for training in (True, False):  # fixed delays have one tap in both modes
        torch.testing.assert_close(syn.train(training)(x)[0], expected)


def test_step_agrees_with_forward_and_sequences_continue() -> None:
    """``step`` from rest, ``forward`` of the whole sequence, and ``forward`` in two pieces (one shorter than the
    buffer) give the same outputs and final state, in the Gaussian (train) and rounded (eval) forms."""
    torch.manual_seed(1)
    syn = DelaySynapse(6, 3, max_delay=9)
    x = spikes(14, 2, 6, seed=1)
    for training in (True, False):
        syn.train(training)
        y, state = syn(x)
        stepped, s = [], syn.initial_state(x[0])
        for x_t in x:
            y_t, s = syn.step(x_t, s)
            stepped.append(y_t)
        torch.testing.assert_close(torch.stack(stepped), y)
        first, mid = syn(x[:3])
        second, end = syn(x[3:], mid)
        torch.testing.assert_close(torch.cat([first, second]), y)
        assert torch.equal(s.past, state.past) and torch.equal(end.past, state.past)


def plain_gaussian(weight: torch.Tensor, positions: torch.Tensor, sigma: torch.Tensor, max_delay: int) -> torch.Tensor:
    """K_ij[d] = w_ij g(d - p_ij) / sum_d' g(d' - p_ij), in conv1d order (tap k holds delay D - 1 - k)."""
    d = torch.arange(max_delay - 1, -1, -1, dtype=weight.dtype)
    g = torch.exp(-((d - positions.unsqueeze(-1)) ** 2) / (2 * sigma**2))
    return weight.unsqueeze(-1) * g / g.sum(-1, keepdim=True)


def test_gaussian_kernel_is_the_equation_and_its_gradient_checks() -> None:
    torch.manual_seed(2)
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    p = (torch.rand(3, 4, dtype=torch.float64) * 7).requires_grad_()
    sigma = torch.tensor(1.3, dtype=torch.float64)
    torch.testing.assert_close(gaussian_kernel(w, p, sigma, 8), plain_gaussian(w, p, sigma, 8))
    assert torch.autograd.gradcheck(lambda w, p: gaussian_kernel(w, p, sigma, 8), (w, p))
    # through the whole layer: the output has a gradient in the delays
    syn = DelaySynapse(3, 2, max_delay=6).double().train()
    x = spikes(8, 2, 3, seed=2).double()
    p = syn.positions.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda p: torch.func.functional_call(syn, {"positions": p}, (x,))[0], (p,))


def test_evaluation_rounds_to_the_integer_delay_synapse() -> None:
    torch.manual_seed(3)
    learned = DelaySynapse(5, 4, max_delay=10).eval()
    fixed = DelaySynapse(5, 4, max_delay=10, mode="fixed", delays=learned.positions.round().long().tolist())
    fixed.load_state_dict({**learned.state_dict(), "positions": fixed.positions, "sigma": fixed.sigma})
    x = spikes(15, 3, 5, seed=3)
    torch.testing.assert_close(learned(x)[0], fixed(x)[0])
    torch.testing.assert_close(learned(x)[0], direct_sum(x, learned.weight.detach(), learned.delays()))


def test_sigma_reaches_its_floor_at_a_quarter_and_is_restored_on_resume() -> None:
    sigmas = [sigma_at(e, 40, 12.0, 0.23) for e in range(12)]
    assert sigmas[0] == 12.0 and all(a > b for a, b in zip(sigmas[:10], sigmas[1:10]))
    assert sigmas[9] > 0.23 and sigmas[10] == sigmas[11] == 0.23
    assert sigmas[1] == pytest.approx(12.0 * (0.23 / 12.0) ** (1 / 10))
    cfg = validate(yaml.safe_load(TIMING.read_text()) | {"device": "cpu"})
    network, objective = build_experiment(cfg)[1:3]
    rule = build_rule(cfg, network, objective)
    synapse = network.blocks[0].synapse
    assert float(synapse.sigma) == 8.0  # max_delay // 2
    lifecycle.end_epoch(network, 2, 20)  # 20 epochs: the floor after 5
    assert float(synapse.sigma) == pytest.approx(8.0 * (0.23 / 8.0) ** (2 / 5))
    state = checkpoint.capture(cfg.model_dump(mode="json"), network, rule, checkpoint.Progress(), [])
    restored, restored_objective = build_experiment(cfg)[1:3]
    checkpoint.restore(state, Path("checkpoint.pt"), restored, build_rule(cfg, restored, restored_objective))
    assert torch.equal(restored.blocks[0].synapse.sigma, synapse.sigma)
    floor = torch.tensor(0.23)  # in the buffer's float32
    lifecycle.end_epoch(network, 5, 20)
    assert torch.equal(synapse.sigma, floor)
    lifecycle.end_epoch(network, 6, 80)  # an extended run never widens it again
    assert torch.equal(synapse.sigma, floor)


def test_after_update_clamps_learned_positions_only() -> None:
    learned, rand = DelaySynapse(3, 2, max_delay=5), DelaySynapse(3, 2, max_delay=5, mode="random")
    with torch.no_grad():
        learned.positions.copy_(torch.tensor([[-1.0, 2.5, 9.0], [4.2, 0.0, -0.1]]))
    before = rand.positions.clone()
    for module in (learned, rand):
        lifecycle.after_update(torch.nn.Sequential(module))
    assert learned.positions.tolist() == [[0.0, 2.5, 4.0], [4.0, 0.0, 0.0]]
    assert torch.equal(rand.positions, before) and not rand.positions.requires_grad
    assert set(rand.positions.unique().tolist()) <= set(range(5))


def test_positions_train_in_their_own_group_with_their_own_schedule() -> None:
    """timing_delays: weights by one-cycle (peak 5e-3), positions at lr 0.1 with a cosine, in one optimizer."""
    cfg = validate(yaml.safe_load(TIMING.read_text()) | {"device": "cpu"})
    network, objective = build_experiment(cfg)[1:3]
    rule = build_rule(cfg, network, objective)
    weights, positions = rule.optimizer.param_groups
    assert {id(p) for p in positions["params"]} == {id(b.synapse.positions) for b in network.blocks}
    assert not {id(p) for p in weights["params"]} & {id(p) for p in positions["params"]}
    one_cycle, cosine = SchedulerConfig(name="one_cycle"), SchedulerConfig(name="cosine")
    scheduler = rule.schedulers["network"]
    for epoch in range(4):
        assert weights["lr"] == pytest.approx(lr_at(one_cycle, 5e-3, epoch, cfg.train.epochs))
        assert positions["lr"] == pytest.approx(lr_at(cosine, 0.1, epoch, cfg.train.epochs))
        scheduler.step()
    # restored into a rule for a longer run, the schedule continues as if planned for it
    longer = EpochSchedule(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), [cosine], 40)  # not 15
    longer.load_state_dict(scheduler.state_dict())
    assert longer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * (1 + math.cos(math.pi * 4 / 40)) / 2)


@pytest.mark.filterwarnings("ignore:Detected call of")
@pytest.mark.parametrize("epochs", [1, 4, 150])
def test_schedules_follow_pytorchs(epochs: int) -> None:
    p = torch.zeros(1, requires_grad=True)
    cases = [
        (SchedulerConfig(name="one_cycle"), lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 5e-3, total_steps=epochs)),
        (SchedulerConfig(name="cosine"), lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, epochs)),
        (SchedulerConfig(name="step", step_size=2), lambda o: torch.optim.lr_scheduler.StepLR(o, 2)),
    ]
    for cfg, torch_schedule in cases:
        theirs, ours = torch.optim.SGD([p], lr=5e-3), torch.optim.SGD([p], lr=5e-3)
        reference, schedule = torch_schedule(theirs), EpochSchedule(ours, [cfg], epochs)
        for epoch in range(epochs):
            assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"], rel=1e-9), (cfg, epoch)
            if epoch < epochs - 1:
                reference.step()
            schedule.step()


@pytest.mark.parametrize(
    ("delay", "message"),
    [
        ({"out_features": 4, "mode": "fixed"}, "mode fixed needs delays"),
        ({"out_features": 4, "mode": "fixed", "delays": 25}, "each must be in 0 .. max_delay - 1 = 24"),
        ({"out_features": 4, "mode": "fixed", "delays": [[1, 2]]}, "expected [out, in] = [4, 16]"),
        ({"out_features": 4, "delays": 3}, "given for mode learned"),
        ({"out_features": 4, "max_delay": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_delay_options_name_the_key(delay: dict, message: str) -> None:
    raw = yaml.safe_load(TIMING.read_text()) | {"device": "cpu"}
    raw["network"]["blocks"][0] = {"delay": delay}
    raw["train"]["optimizer"]["groups"] = []
    with pytest.raises(ConfigError) as error:
        build_experiment(validate(raw))
    assert "network.blocks[0].delay" in str(error.value) and message in str(error.value)


def test_timing_task_differs_only_in_timing() -> None:
    """Every sample has every channel firing once; classes share channels and rates but not the order."""
    from snnlab.datasets import timing

    splits = timing(classes=3, channels=6, span=8, time_steps=14, train_size=60, test_size=10, seed=4)
    x = torch.stack([splits.train[i][0] for i in range(60)])
    y = torch.stack([splits.train[i][1] for i in range(60)])
    assert x.shape == (60, 14, 6) and torch.equal(x.sum(1), torch.ones(60, 6))
    assert x.sum(2).max() == 1  # one channel at a time: no coincidence gives the class away
    order = x.argmax(1).argsort(1)  # the channels in firing order
    for k in range(3):
        assert (order[y == k] == order[y == k][0]).all()
    assert len({tuple(order[y == k][0].tolist()) for k in range(3)}) == 3
    with pytest.raises(ConfigError, match="data.span"):
        timing(channels=8, span=6)


def test_softmax_sum_readout() -> None:
    from snnlab.objectives.readouts import SoftmaxSum

    v = torch.randn(5, 2, 3)
    torch.testing.assert_close(SoftmaxSum()(v), torch.softmax(v, -1).sum(0))


def test_a_stopped_run_resumes_to_the_same_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Learned delays through the runner: stopped mid-epoch after sigma has shrunk, resumed, the same numbers as a
    run never stopped (sigma, positions and both groups' schedules come back from the checkpoint)."""
    from safetensors.torch import load_file

    from snnlab.errors import Interrupted
    from snnlab.rules import BPTT
    from snnlab.runner import run

    def config(folder: Path) -> dict:
        raw = yaml.safe_load(TIMING.read_text()) | {"device": "cpu"}
        raw["data"].update(train_size=96, test_size=32)
        raw["network"]["neuron"]["backend"] = "torch"  # no kernel to compile for a few tiny batches
        raw["train"]["epochs"] = 3
        raw["output"] = {"dir": str(folder), "plots": False}
        return raw

    whole = run(validate(config(tmp_path / "whole")), "test", progress=False)
    calls = {"n": 0}
    train_step = BPTT.train_step

    def stops(self, network, batch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 5:  # in the third epoch: resumed from the end of the second, sigma at its floor
            raise KeyboardInterrupt
        return train_step(self, network, batch)

    cfg = validate(config(tmp_path / "stopped"))
    with monkeypatch.context() as m:
        m.setattr(BPTT, "train_step", stops)
        with pytest.raises(Interrupted):
            run(cfg, "test", progress=False)
    resumed = run(cfg, "test", progress=False, resume=tmp_path / "stopped")

    def rows(result):  # type: ignore[no-untyped-def]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in result.metrics]

    assert rows(resumed) == rows(whole)
    a, b = load_file(tmp_path / "stopped" / "last.safetensors"), load_file(tmp_path / "whole" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert float(b["network.blocks.0.synapse.sigma"]) == pytest.approx(0.23)
