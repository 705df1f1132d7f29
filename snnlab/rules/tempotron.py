r"""The tempotron (Gütig & Sompolinsky 2006): a neuron that learns to fire, or not, from the timing of its inputs.

The network is one linear block with a non-firing neuron, normally ``psp`` (the kernel K), so its output is
V(t) = sum_i w_i sum_{t_i < t} K(t - t_i). Each output neuron is a tempotron deciding "+" iff
:math:`\max_t V(t) \ge V_{thr}`. Only on an error it learns, at :math:`t_{max} = \mathrm{argmax}_t V(t)`:

.. math::

    \Delta w_i = \pm \lambda \sum_{t_i < t_{max}} K(t_{max} - t_i)

(+ when a "+" pattern did not fire, - when a "-" pattern fired). This is the gradient step on the tempotron's
cost :math:`E = \sum_{\text{errors}} |V_{thr} - V(t_{max})|`, whose derivative by :math:`w_i` is that PSP sum (the
max is taken at t_max, and V is linear in w): the rule computes E and lets autograd evaluate the sum through the
neuron, so ``train.optimizer: {name: sgd, lr: lambda, momentum: ...}`` applies exactly the update above (the paper
adds momentum). E is averaged over the batch (**choice**: so that ``--nproc``'s averaged gradients give the
update of one process with the whole batch; lambda is then per pattern at batch size 1), and summed over the
output neurons. A bias, if the synapse has one, learns as an input that spikes at every step. V is never shunted
after a crossing (as SpikingJelly's ``Tempotron``): t_max is the maximum of the whole trace.

Output neurons: one is a binary tempotron (labels 0 = "-" and 1 = "+"); C of them, for C classes, are one-vs-rest
(neuron c's "+" patterns are class c). Prediction: the binary decision; one-vs-rest, the class whose tempotron
fires, ties broken by the largest V_max (**choice**), that is the largest V_max. ``loss`` is E.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from ..errors import SnnlabError, UnsupportedNetwork
from ..network import Block, Network
from .base import Batch, GradientRule


class TempotronConfig(BaseModel):
    """``rule: {name: tempotron, threshold: 1.0}``; the learning rate lambda is ``train.optimizer.lr`` (sgd)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    name: Literal["tempotron"] = "tempotron"
    threshold: float = Field(1.0, description="V_thr: a tempotron says '+' iff its V reaches it")


def tempotron_cost(v_seq: Tensor, plus: Tensor, threshold: float) -> Tensor:
    """E per sample ``[B]``: sum over the tempotrons ``v_seq [T, B, N]`` that decide wrongly (``plus [B, N]``: the
    pattern is "+" for that tempotron) of |V_thr - V(t_max)|. Its gradient by the weights is minus the update."""
    v_max = v_seq.max(0).values
    fires = v_max >= threshold
    sign = plus.to(v_max.dtype) * 2 - 1
    return ((threshold - v_max) * sign * (fires != plus)).sum(1)


def one_vs_rest(target: Tensor, outputs: int) -> Tensor:
    """``plus [B, N]``: a single tempotron's "+" patterns are label 1; of N > 1, tempotron c's are label c."""
    if outputs == 1:
        return (target == 1).unsqueeze(1)
    return F.one_hot(target, outputs).bool()


def decide(v_seq: Tensor, threshold: float) -> Tensor:
    """Class scores ``[B, C]``: a single tempotron's decision (columns "-", "+"), or each tempotron's V_max."""
    v_max = v_seq.max(0).values
    if v_max.shape[1] == 1:
        fires = (v_max >= threshold).to(v_max.dtype)
        return torch.cat([1 - fires, fires], 1)
    return v_max


class Tempotron(GradientRule):
    """Tempotron learning on a single linear block with a non-firing neuron: each output decides "+" iff its V(t)
    reaches the threshold, and learns on its errors at the time V peaks (Gütig & Sompolinsky 2006).

    Example::

        >>> import torch
        >>> from snnlab.network import Block, Network
        >>> from snnlab.neurons import PSP
        >>> from snnlab.objectives import Classification
        >>> from snnlab.optim import TrainConfig
        >>> from snnlab.synapses import Linear
        >>> net = Network([Block(Linear(64, 10, bias=False), neuron=PSP(tau=8.0))])
        >>> rule = Tempotron(TempotronConfig(), net, Classification(), TrainConfig(optimizer={"name": "sgd", "lr": 0.1}))
        >>> x, y = (torch.rand(32, 16, 64) < 0.05).float(), torch.randint(0, 10, (16,))
        >>> sorted(rule.train_step(net, (x, y)))
        ['accuracy', 'loss']
        >>> rule.predict(net, x).shape
        torch.Size([16, 10])
    """

    name = "tempotron"
    Config = TempotronConfig
    config: TempotronConfig
    needs_output_layer = False  # one output neuron serves two classes

    @classmethod
    def supports(cls, config: TempotronConfig, network: Network) -> None:  # type: ignore[override]
        block = network.blocks[0]
        if len(network.blocks) != 1 or not isinstance(block, Block) or not isinstance(block.synapse, nn.Linear):
            raise UnsupportedNetwork(
                "network.blocks: the tempotron is a single block of a linear synapse and a non-firing neuron"
            )
        if block.neuron is None or block.neuron.spiking:
            raise UnsupportedNetwork(
                "network.blocks[0]: the tempotron needs a non-firing neuron whose output is V(t) (neuron: psp)"
            )
        if block.norm is not None or block.recurrent is not None or len(block.post):
            raise UnsupportedNetwork(
                "network.blocks[0]: the tempotron's V(t) is its inputs' PSPs alone: no norm, recurrent or post layers"
            )

    def train_step(self, network: Network, batch: Batch) -> dict[str, float]:
        x_seq, target = batch
        self.zero_grad()
        v_seq, states = network(x_seq)
        loss = tempotron_cost(v_seq, self._plus(target, v_seq.shape[-1]), self.config.threshold).mean()
        self.backward(loss)
        self.step(network, states)
        return {"loss": loss.item(), **self.objective.metrics(decide(v_seq.detach(), self.config.threshold), target)}

    @torch.no_grad()
    def predict(self, network: Network, x_seq: Tensor) -> Tensor:
        return decide(network(x_seq)[0], self.config.threshold)

    @staticmethod
    def _plus(target: Tensor, outputs: int) -> Tensor:
        classes = 2 if outputs == 1 else outputs
        if target.dim() != 1 or int(target.max()) >= classes:
            raise SnnlabError(
                f"network.blocks[0]: {outputs} tempotron(s) decide {classes} classes (one: a binary tempotron, "
                f"labels 0 and 1; C: one-vs-rest), but the data has label {int(target.max())}; give the linear "
                f"block one output per class"
            )
        return one_vs_rest(target, outputs)
