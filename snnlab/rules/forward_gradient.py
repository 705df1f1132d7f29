r"""Forward gradient: gradients estimated by forward-mode AD along random directions, without a backward pass
through the network.

``weights`` (Baydin et al., arXiv 2202.08587): one direction v ~ N(0, I) over all the network's parameters,

.. math:: d = \nabla_\theta L \cdot v \ (\text{one jvp}), \qquad g = d\, v, \qquad \mathbb{E}[g] = \nabla_\theta L

``activities`` (Ren et al., arXiv 2210.03310): each learning block k, on its input detached, perturbs its current
a_k (after synapse and norm) by u ~ N(0, I), drawn per sample, and takes the jvp of its own per-sample loss:

.. math:: d_b = \nabla_{a_{k,b}} \ell_{k,b} \cdot u_b, \qquad g_{a_k} = d\, u, \qquad g_{W_k} = g_{a_k} h_{k-1}^\top

(the last step by autograd inside the block's synapse). The local loss of a hidden block is the cross-entropy of a
rule-owned linear head on its time-averaged output (averaged over positions for feature maps), trained by its
exact gradient (it is one layer, local to the block); the output block's is the cross-entropy of the objective's
scores. The jvps run through the neurons' own loop (the kernels' dispatch sends forward mode there), so the
tangents through spikes use the surrogate derivative, over all T steps; ``directions`` > 1 averages that many
directions per step (vectorised with ``vmap``). Directions come from the rule's ``SharedDraws``, alike on every
process, so N processes average their d into the estimate one process makes on their whole batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.func import functional_call, jvp, vmap
from torch.utils._pytree import tree_map

from ..errors import UnsupportedNetwork
from ..network import Block, Network
from ..objectives import Objective
from .base import Batch, GradientRule
from .local import feature_width, features, learning_blocks, refuse_residual
from .shared_draws import SharedDraws


def directional(
    fn: Callable[[Any], tuple[Tensor, Any]], primal: Any, tangents: Any, batched: bool
) -> tuple[Tensor, Any]:
    """``(jvp of fn at primal along tangents, fn's aux)``; with ``batched`` the tangents carry a leading axis of
    directions and the jvps are vectorised over it (the aux of the first direction is returned)."""
    if not batched:
        _, tangent, aux = jvp(fn, (primal,), (tangents,), has_aux=True)
        return tangent, aux
    tangent, aux = vmap(lambda t: jvp(fn, (primal,), (t,), has_aux=True)[1:], randomness="same")(tangents)
    return tangent, tree_map(lambda leaf: leaf[0], aux)


class _Loss(nn.Module):
    """The objective's loss of the network as a module, for ``functional_call`` over the network's parameters."""

    def __init__(self, network: Network, objective: Objective) -> None:
        super().__init__()
        self.network, self.objective = network, objective

    def forward(self, x_seq: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        trace = self.network.trace(x_seq)
        return self.objective.loss(trace, y), self.objective.scores(trace.output)


class ForwardGradientConfig(BaseModel):
    """``rule: {name: forward_gradient, perturb: activities, directions: 1, grad_clip: null}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["forward_gradient"] = "forward_gradient"
    perturb: Literal["weights", "activities"] = Field(
        "activities", description="weights: one global direction; activities: each block's current, local losses"
    )
    directions: int = Field(1, ge=1, le=4096, description="random directions averaged per step")
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm; null: no clipping")


class ForwardGradient(GradientRule):
    """Forward-gradient descent, weight- or activity-perturbed, at T = 1 or over T.

    Example (weight-perturbed, T = 1)::

        >>> import torch
        >>> from snnlab.network import Block, Network
        >>> from snnlab.neurons import NonSpiking
        >>> from snnlab.objectives import Classification
        >>> from snnlab.optim import TrainConfig
        >>> from snnlab.synapses import Linear
        >>> net = Network([Block(Linear(64, 32), neuron=NonSpiking()), Block(Linear(32, 10), neuron=NonSpiking("identity"))])
        >>> rule = ForwardGradient(ForwardGradientConfig(perturb="weights"), net, Classification(), TrainConfig())
        >>> sorted(rule.train_step(net, (torch.rand(1, 8, 64), torch.randint(0, 10, (8,)))))
        ['accuracy', 'loss']
    """

    name = "forward_gradient"
    Config = ForwardGradientConfig
    config: ForwardGradientConfig

    @classmethod
    def supports(cls, config: ForwardGradientConfig, network: Network) -> None:  # type: ignore[override]
        for i, module in enumerate(network.blocks):
            if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
                raise UnsupportedNetwork(
                    f"network.blocks[{i}].norm: forward_gradient cannot update batch-norm statistics under "
                    "forward-mode AD; use norm: layer"
                )
        if config.perturb == "weights":
            return
        refuse_residual(network, f"{cls.name} (perturb: activities)")
        layers = learning_blocks(network)
        if not layers or layers[-1] != len(network.blocks) - 1:
            raise UnsupportedNetwork(
                f"network.blocks[{len(network.blocks) - 1}]: forward_gradient (perturb: activities) needs the output "
                "block to have a synapse and a neuron (its local loss is the objective's)"
            )
        for i in layers:
            block = network.blocks[i]
            if block.recurrent is not None or block.synapse is None:
                raise UnsupportedNetwork(
                    f"network.blocks[{i}]: forward_gradient (perturb: activities) perturbs a block's synapse current; "
                    "this block has no synapse or a recurrent connection, which the perturbation would skip"
                )
            if i != layers[-1] and feature_width(block) is None:
                raise UnsupportedNetwork(
                    f"network.blocks[{i}]: the local head needs a linear or convolution synapse (its width)"
                )

    def setup(self, network: Network) -> None:
        self.draws = SharedDraws()
        if self.config.perturb == "activities":
            self.layers = learning_blocks(network)
            classes = feature_width(network.blocks[self.layers[-1]]) or 1
            self.heads = nn.ModuleDict(
                {str(i): nn.Linear(feature_width(network.blocks[i]) or 1, classes) for i in self.layers[:-1]}
            )

    def gradients(self, network: Network, x_seq: Tensor, y: Tensor) -> dict[str, Any]:
        """Write the estimate into ``.grad`` (accumulating); returns ``loss``, the output ``scores``, each hidden
        block's ``local_loss_i`` and ``states`` (tensors to check for NaN: the blocks' outputs)."""
        if self.config.perturb == "weights":
            return self._perturb_weights(network, x_seq, y)
        return self._perturb_activities(network, x_seq, y)

    def train_step(self, network: Network, batch: Batch) -> dict[str, float]:
        x_seq, y = batch
        self.zero_grad()
        out = self.gradients(network, x_seq, y)
        locals_ = {k: v for k, v in out.items() if k.startswith("local_loss")}
        self.step(network, [out["loss"], *locals_.values(), out["states"]], self.config.grad_clip)
        metrics = {k: v.item() for k, v in locals_.items()}
        return {"loss": out["loss"].item(), **self.objective.metrics(out["scores"], y), **metrics}

    def _directions(self, shapes: dict[str, torch.Size], device: torch.device) -> dict[str, Tensor]:
        """One N(0, I) tensor per parameter (with a leading axis of directions when there are several)."""
        generator, k = self.draws.generator(device), self.config.directions
        lead = (k,) if k > 1 else ()
        return {n: torch.randn((*lead, *s), generator=generator, device=device) for n, s in shapes.items()}

    def _perturb_weights(self, network: Network, x_seq: Tensor, y: Tensor) -> dict[str, Any]:
        named = {n: p for n, p in network.named_parameters() if p.requires_grad}
        params = {f"network.{n}": p.detach() for n, p in named.items()}
        tangents = self._directions({n: p.shape for n, p in params.items()}, x_seq.device)
        module = _Loss(network, self.objective)

        def loss(p: dict[str, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
            value, scores = functional_call(module, p, (x_seq, y))
            return value, (value.detach(), scores.detach())

        d, (value, scores) = directional(loss, params, tangents, self.config.directions > 1)
        for n, p in named.items():
            v = tangents[f"network.{n}"]
            estimate = (d.view(-1, *[1] * p.dim()) * v).mean(0) if self.config.directions > 1 else d * v
            p.grad = estimate if p.grad is None else p.grad + estimate
        return {"loss": value, "scores": scores, "states": []}

    def _perturb_activities(self, network: Network, x_seq: Tensor, y: Tensor) -> dict[str, Any]:
        out: dict[str, Any] = {"states": []}
        h, k = x_seq, self.config.directions
        for i, block in enumerate(network.blocks):
            if i not in self.layers:
                with torch.no_grad():
                    h = block.trace(h).output
                continue
            current = Block(block.synapse, block.norm).trace(h.detach()).output
            tail = Block(neuron=block.neuron, post=list(block.post))
            u = self.draws.per_sample(torch.randn, (k, *current.shape), 2, current.device)
            u = u if k > 1 else u[0]

            def local(a: Tensor, i: int = i, tail: Block = tail) -> tuple[Tensor, tuple[Tensor, Tensor]]:
                trace = tail.trace(a)
                scores = self._scores(i, trace.output, trace.spikes)
                return F.cross_entropy(scores, y, reduction="none"), (trace.output.detach(), trace.spikes.detach())

            d, (h, spikes) = directional(local, current.detach(), u, k > 1)
            view = (-1, 1, len(y), *[1] * (current.dim() - 2))
            estimate = (d.view(view) * u).mean(0) if k > 1 else d.view(view[1:]) * u
            self.backward(current, estimate / len(y))
            out["states"].append(spikes)
            if i == self.layers[-1]:
                scores = self.objective.scores(h)
                out["loss"], out["scores"] = F.cross_entropy(scores, y), scores
            else:
                head_loss = F.cross_entropy(self.heads[str(i)](features(spikes)), y)
                self.backward(head_loss)
                out[f"local_loss_{i}"] = head_loss.detach()
        return out

    def _scores(self, i: int, output: Tensor, spikes: Tensor) -> Tensor:
        """Class scores of block ``i``'s local loss: its head on its features, or the objective's for the output."""
        if i == self.layers[-1]:
            return self.objective.scores(output)
        return self.heads[str(i)](features(spikes))
