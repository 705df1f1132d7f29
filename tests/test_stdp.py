"""STDP (snnlab/rules/stdp.py): each update against its equation on hand-made spike trains, winner-take-all through
lateral inhibition, homeostasis, normalisation, label assignment, and what the rule refuses."""

from __future__ import annotations

import pytest
import torch

from snnlab.config import validate
from snnlab.distributed import Context
from snnlab.errors import SnnlabError, UnsupportedNetwork
from snnlab.network import Block, Network
from snnlab.neurons import LIF, PSP
from snnlab.objectives import Classification
from snnlab.optim import TrainConfig
from snnlab.rules.stdp import STDP, STDPConfig, adapt_threshold, assign_labels, normalize_rows, stdp_step, vote
from snnlab.runner import Training
from snnlab.synapses import LateralInhibition, Linear

TAU = 4.0  # both traces decay by 1 - 1/4 = 0.75 per step
A_PLUS, A_MINUS, W_MAX, W = 0.1, 0.05, 1.0, 0.25


def run_pair(pre_step: int, post_step: int, dependence: str, trace: str = "all_to_all") -> float:
    """The total weight change of one synapse whose input spikes at ``pre_step`` and output at ``post_step``."""
    cfg = STDPConfig(
        a_plus=A_PLUS, a_minus=A_MINUS, tau_plus=TAU, tau_minus=TAU, weight_dependence=dependence, w_max=W_MAX,
        trace=trace,
    )  # fmt: skip
    weight, traces, total = torch.full((1, 1), W), None, 0.0
    for t in range(8):
        pre, post = torch.tensor([[float(t == pre_step)]]), torch.tensor([[float(t == post_step)]])
        change, traces = stdp_step(weight, traces, pre, post, cfg)
        total += float(change)
    return total


@pytest.mark.parametrize("dependence, f_plus, f_minus", [("additive", 1.0, 1.0), ("multiplicative", W_MAX - W, W)])
def test_pre_before_post_potentiates_and_post_before_pre_depresses_exactly(
    dependence: str, f_plus: float, f_minus: float
) -> None:
    """Lag 3: LTP A+ f+(W) 0.75^3 at the post spike; the reverse order LTD A- f-(W) 0.75^3 at the pre spike."""
    assert run_pair(1, 4, dependence) == pytest.approx(A_PLUS * f_plus * 0.75**3, rel=1e-6)
    assert run_pair(4, 1, dependence) == pytest.approx(-A_MINUS * f_minus * 0.75**3, rel=1e-6)
    # at the same step both traces hold the step's own spike: the pair counts both ways
    assert run_pair(2, 2, dependence) == pytest.approx(A_PLUS * f_plus - A_MINUS * f_minus, rel=1e-6)


def test_traces_add_or_take_the_nearest_spike() -> None:
    """Two pre spikes before a post spike: all-to-all sums both pairs, nearest only the later one."""
    cfg = STDPConfig(a_plus=1.0, a_minus=0.0, tau_plus=TAU)
    for trace, expected in (("all_to_all", 0.75**3 + 0.75), ("nearest", 0.75)):
        cfg = cfg.model_copy(update={"trace": trace})
        traces, total = None, 0.0
        for pre, post in ((1, 0), (0, 0), (1, 0), (0, 1)):
            change, traces = stdp_step(
                torch.zeros(1, 1), traces, torch.tensor([[pre * 1.0]]), torch.tensor([[post * 1.0]]), cfg
            )
            total += float(change)
        assert total == pytest.approx(expected, rel=1e-6), trace


def test_updates_sum_over_the_batch() -> None:
    """Two samples with the same pair change the weight twice as much as one."""
    cfg = STDPConfig(a_plus=0.1, a_minus=0.0)
    one, _ = stdp_step(torch.zeros(1, 1), None, torch.ones(1, 1), torch.ones(1, 1), cfg)
    two, _ = stdp_step(torch.zeros(1, 1), None, torch.ones(2, 1), torch.ones(2, 1), cfg)
    assert float(two) == pytest.approx(2 * float(one))


def wta_network(strength: float) -> Network:
    """Three neurons on one input, driven by 0.6, 0.3 and 0.2 per step (IF neurons, threshold 1, hard reset)."""
    synapse = Linear(1, 3, bias=False)
    synapse.weight.data = torch.tensor([[0.6], [0.3], [0.2]])
    neuron = LIF(tau=float("inf"), decay_input=False, reset="hard")
    return Network([Block(synapse, neuron=neuron, recurrent=LateralInhibition(strength))])


def test_lateral_inhibition_lets_only_the_winner_fire() -> None:
    """Alone, each neuron fires; with inhibition, the first to reach the threshold keeps the others below it."""
    x = torch.ones(20, 1, 1)
    free, _ = wta_network(0.0)(x)
    assert (free.sum(0) > 0).all()
    spikes, _ = wta_network(1.0)(x)
    assert spikes.sum(0).tolist() == [[spikes.sum().item(), 0.0, 0.0]] and spikes.sum() >= 5
    assert LateralInhibition(2.0)(torch.tensor([[1.0, 0.0, 1.0]])).tolist() == [[-2.0, -4.0, -2.0]]


def test_homeostasis_raises_the_threshold_of_a_neuron_that_fires() -> None:
    """theta += theta_plus per spike during training (and decays back with tau_theta); frozen in predict."""
    net = Network(
        [
            Block(
                Linear(4, 2, bias=False), neuron=LIF(tau=float("inf"), decay_input=False, reset="hard", backend="torch")
            )
        ]
    )
    rule = STDP(STDPConfig(a_plus=0.0, a_minus=0.0, theta_plus=0.1, w_init=1.0), net, Classification(), TrainConfig())
    with torch.no_grad():
        net.blocks[0].synapse.weight.copy_(torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    x = torch.tensor([1.0, 1.0, 0.0, 0.0]).expand(6, 1, 4)
    spikes, _ = net(x)
    rule.train_step(net, (x, torch.tensor([0])))
    threshold = net.blocks[0].neuron.threshold
    fired = int(spikes[:, 0, 0].sum())  # 2 > 1 at every step, until the threshold has risen
    assert 0 < fired and threshold[1] == 1.0 and threshold[0] > 1.0
    assert "network.blocks.0.neuron.threshold" in {f"network.{k}" for k in net.state_dict()}
    before = threshold.clone()
    rule.predict(net, x)
    assert torch.equal(threshold, before)
    cfg = STDPConfig(theta_plus=0.5, tau_theta=4.0)
    assert adapt_threshold(torch.tensor([3.0, 1.0]), 1.0, torch.tensor([[1.0, 0.0], [1.0, 0.0]]), cfg).tolist() == [
        1.0 + 0.75**2 * 2.0 + 1.0,
        1.0,
    ]


def test_normalisation_scales_each_neuron_to_the_sum_or_the_length() -> None:
    w = torch.tensor([[1.0, 3.0], [0.0, 0.0], [0.5, 0.5]])
    assert normalize_rows(w, 2.0).tolist() == [[0.5, 1.5], [0.0, 0.0], [1.0, 1.0]]
    w = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert torch.allclose(normalize_rows(w, 10.0, "l2"), torch.tensor([[6.0, 8.0], [0.0, 0.0]]))


def test_label_assignment_and_vote_on_a_hand_case() -> None:
    """Neuron 0 answers class 1 most (on average, whatever the class sizes), neuron 1 class 0, neuron 2 never fires;
    a sample is scored by the mean count of each class's neurons."""
    sums = torch.tensor([[4.0, 9.0, 0.0], [3.0, 1.0, 0.0]])  # [C, N]: spike counts summed per class
    samples = torch.tensor([4.0, 1.0])  # mean rates: class 0 (1, 2.25, 0), class 1 (3, 1, 0)
    assignments = assign_labels(sums, samples)
    assert assignments.tolist() == [1, 0, -1]
    counts = torch.tensor([[2.0, 5.0, 7.0], [6.0, 1.0, 0.0]])
    assert vote(counts, assignments, 3).tolist() == [[5.0, 2.0, 0.0], [1.0, 6.0, 0.0]]


def test_end_epoch_assigns_labels_with_plasticity_off() -> None:
    """Neuron k sees only input k; class k shows input k: each neuron gets its class, and the weights stay."""
    net = Network(
        [
            Block(
                Linear(2, 2, bias=False), neuron=LIF(tau=float("inf"), decay_input=False, reset="hard", backend="torch")
            )
        ]
    )
    rule = STDP(STDPConfig(theta_plus=0.1), net, Classification(), TrainConfig())
    with torch.no_grad():
        net.blocks[0].synapse.weight.copy_(torch.tensor([[0.0, 1.5], [1.5, 0.0]]))
    weights, threshold = net.state_dict()["blocks.0.synapse.weight"].clone(), net.blocks[0].neuron.threshold.clone()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]).expand(4, 3, 2)
    rule.end_epoch(net, [(x, torch.tensor([0, 1, 1]))])
    assert rule.assignments.tolist() == [1, 0] and int(rule.classes) == 2
    assert torch.equal(net.blocks[0].synapse.weight, weights) and torch.equal(net.blocks[0].neuron.threshold, threshold)
    assert rule.predict(net, x).argmax(1).tolist() == [0, 1, 1]


def test_weights_start_non_negative_and_normalised() -> None:
    net = Network([Block(Linear(64, 5, bias=False), neuron=LIF())])
    STDP(STDPConfig(normalize=3.0, w_init=0.3), net, Classification(), TrainConfig())
    w = net.blocks[0].synapse.weight
    assert (w >= 0).all() and torch.allclose(w.sum(1), torch.full((5,), 3.0))


@pytest.mark.parametrize(
    "block, message",
    [
        (Block(Linear(4, 2), neuron=LIF()), "bias: false"),
        (Block(Linear(4, 2, bias=False), neuron=PSP()), "needs a spiking neuron"),
    ],
)
def test_networks_stdp_cannot_train_are_refused(block: Block, message: str) -> None:
    with pytest.raises(UnsupportedNetwork, match=message):
        STDP.supports(STDPConfig(), Network([block]))


def test_refused_on_several_processes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    raw = {
        "data": {"name": "digits", "encoder": "poisson", "time_steps": 4},
        "network": {"blocks": [{"linear": {"out_features": 8, "bias": False}}]},
        "rule": "stdp",
        "output": {"root": str(tmp_path)},
    }
    with pytest.raises(SnnlabError, match="rule 'stdp' cannot train on several processes.*without --nproc"):
        Training(validate(raw), "test", Context(torch.device("cpu"), rank=0, world=2), None)
    assert not any(tmp_path.iterdir())
