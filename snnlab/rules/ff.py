r"""Forward-Forward (Hinton, arXiv 2212.13345): spiking (Ghader et al., arXiv 2502.20411) and at T = 1.

Each learning block l (a block with a neuron) is trained on its own input, detached, so no gradient crosses
blocks: high goodness for positive data (the sample with its label written as a one-hot into its first C
inputs), low for negative data (the same sample with a wrong label):

.. math::

    a_l = \tfrac{1}{T} \textstyle\sum_t h_l[t], \qquad
    G_l = \tfrac{1}{N_l} \textstyle\sum_j a_{l,j}^2 \ (\texttt{mean\_square}) \ \text{or} \ \textstyle\sum_j a_{l,j}^2

    L_l = \mathrm{softplus}\big(\alpha(\theta - G_l^+)\big) + \mathrm{softplus}\big(\alpha(G_l^- - \theta)\big)
    \ (\texttt{softplus}) \qquad L_l = \mathrm{swish}\big(\alpha(G_l^- - G_l^+)\big) \ (\texttt{swish})

h_l is the block's neuron output: spikes, so a is the spike count over T divided by T (METHODS.md 4b's choice),
or at T = 1 with ``nonspiking`` neurons the ReLU activity itself, so both versions run this file. alpha is
``scale``, theta ``threshold``; each term is a mean over the batch and the loss of a step is the sum over blocks.
The L2 normalisation between blocks is a network layer (``- norm: l2``), not part of the rule. With
``collaboration`` (Lorberbom et al., arXiv 2305.12393) block l's goodness is G_l + sum_{k != l} stopgrad(G_k)
against the sum of the blocks' thresholds.

Inference: ``goodness`` embeds each label in turn and predicts the one with the largest goodness summed over the
blocks (all but the first with ``skip_first_layer``); ``softmax`` embeds the neutral label (1/C in every label
input) once and reads a rule-owned linear softmax head on the blocks' L2-normalised rates, trained by its own
cross-entropy on detached activity. Negatives: a wrong label drawn uniformly, or (``hard``) drawn in proportion to
exp(scale * score) of the model's own scores over the wrong labels. Metrics: ``goodness_i``, block i's mean
positive minus mean negative goodness; ``head_loss`` and the batch's ``accuracy`` before the update when the
scores are at hand (softmax readout, hard negatives).

Example::

    >>> import torch
    >>> from snnlab.rules.ff import ff_loss
    >>> float(ff_loss(torch.tensor([3.0]), torch.tensor([1.0]), "softplus", threshold=2.0, scale=1.0))  # 2 softplus(-1)
    0.6265...
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from ..block_fusion import unfused
from ..errors import ConfigError, UnsupportedNetwork
from ..network import Network
from .base import Batch, GradientRule
from .local import feature_width, features, learning_blocks, refuse_residual
from .shared_draws import SharedDraws

Goodness = Literal["mean_square", "sum_square"]
LossForm = Literal["softplus", "swish"]


def goodness(activity: Tensor, kind: Goodness = "mean_square") -> Tensor:
    """G per sample ``[B]`` of a neuron output ``[T, B, ...]``: the mean (or sum) over neurons of the squared rate."""
    rate = activity.mean(0).flatten(1)
    return rate.square().mean(1) if kind == "mean_square" else rate.square().sum(1)


def ff_loss(g_pos: Tensor, g_neg: Tensor, form: LossForm, threshold: float, scale: float) -> Tensor:
    """A block's loss on positive and negative goodness ``[B]``, averaged over the batch (equations above)."""
    if form == "softplus":
        return (F.softplus(scale * (threshold - g_pos)) + F.softplus(scale * (g_neg - threshold))).mean()
    return F.silu(scale * (g_neg - g_pos)).mean()


def collaborative(goodness_of_blocks: list[Tensor]) -> list[Tensor]:
    """Each block's goodness plus the others' held constant: G_l + sum_{k != l} stopgrad(G_k)."""
    total = sum(g.detach() for g in goodness_of_blocks)
    return [g + (total - g.detach()) for g in goodness_of_blocks]


def embed_labels(x_seq: Tensor, pixels: Tensor) -> Tensor:
    """``x_seq`` ``[T, B, ...]`` with its first C inputs of every sample and step replaced by ``pixels`` ``[B, C]``."""
    flat = x_seq.flatten(2).clone()
    flat[..., : pixels.shape[1]] = pixels
    return flat.view_as(x_seq)


class ForwardForwardConfig(BaseModel):
    """``rule: {name: forward_forward, ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["forward_forward"] = "forward_forward"
    classes: int = Field(10, ge=2, description="number of classes: a one-hot of this size replaces the first inputs")
    label_value: float = Field(1.0, gt=0, description="the value written into the input of the label")
    goodness: Goodness = Field("mean_square", description="G: mean_square or sum_square of each neuron's rate")
    loss: LossForm = Field("softplus", description="softplus (Hinton's logistic) or swish (spiking FF)")
    threshold: float = Field(2.0, description="theta of the softplus form (not used by swish)")
    scale: float = Field(1.0, gt=0, description="alpha: sharpness of the loss in the goodness")
    negatives: Literal["random", "hard"] = Field(
        "random", description="wrong label: uniform, or drawn from the model's own scores"
    )
    collaboration: bool = Field(False, description="each block's goodness adds the others', held constant")
    readout: Literal["goodness", "softmax"] = Field(
        "goodness", description="predict by goodness over every label, or a softmax head on the neutral label"
    )
    skip_first_layer: bool = Field(True, description="leave the first learning block out of the readout")
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm; null: no clipping")


class ForwardForward(GradientRule):
    """Forward-Forward on a headless network (blocks of neurons with ``- norm: l2`` between them).

    Example (T = 1, two ReLU blocks with the L2 normalisation between them)::

        >>> import torch
        >>> from snnlab.network import Block, Network
        >>> from snnlab.neurons import NonSpiking
        >>> from snnlab.objectives import Classification
        >>> from snnlab.optim import TrainConfig
        >>> from snnlab.synapses import L2Normalize, Linear
        >>> net = Network([Block(Linear(64, 32), neuron=NonSpiking()), Block(norm=L2Normalize()),
        ...                Block(Linear(32, 32), neuron=NonSpiking())])
        >>> rule = ForwardForward(ForwardForwardConfig(), net, Classification(), TrainConfig())
        >>> x, y = torch.rand(1, 8, 64), torch.randint(0, 10, (8,))
        >>> sorted(rule.train_step(net, (x, y)))
        ['goodness_0', 'goodness_2', 'loss']
        >>> rule.predict(net, x).shape
        torch.Size([8, 10])
    """

    name = "forward_forward"
    Config = ForwardForwardConfig
    config: ForwardForwardConfig
    needs_output_layer = False

    @classmethod
    def supports(cls, config: ForwardForwardConfig, network: Network) -> None:  # type: ignore[override]
        refuse_residual(network, cls.name)
        layers = learning_blocks(network)
        if not layers:
            raise UnsupportedNetwork("network.blocks: forward_forward needs a block with a synapse and a neuron")
        read = layers[1:] if config.skip_first_layer else layers
        if not read:
            raise UnsupportedNetwork(
                f"network.blocks: forward_forward reads the blocks after the first (rule.skip_first_layer) and "
                f"network.blocks[{layers[0]}] is the only one that learns; add a block or set "
                f"rule.skip_first_layer=false"
            )
        if config.readout == "softmax":
            for i in read:
                if feature_width(network.blocks[i]) is None:
                    raise UnsupportedNetwork(
                        f"network.blocks[{i}]: the softmax readout needs a linear or convolution synapse (its width)"
                    )

    def setup(self, network: Network) -> None:
        self.layers = learning_blocks(network)
        self.read = self.layers[1:] if self.config.skip_first_layer else self.layers
        self.draws = SharedDraws()
        if self.config.readout == "softmax":
            width = sum(feature_width(network.blocks[i]) or 0 for i in self.read)
            self.head = nn.Linear(width, self.config.classes)

    def gradients(self, network: Network, x_seq: Tensor, y: Tensor) -> tuple[dict[str, float], list[Tensor]]:
        """Accumulate every block's FF gradient (and the softmax head's); returns the batch's metrics and the
        blocks' final states."""
        self._check(x_seq, y)
        c, n = self.config, len(y)
        neutral = self._features(network, x_seq) if c.readout == "softmax" else None
        scores = self.head(neutral).detach() if neutral is not None else None
        if scores is None and c.negatives == "hard":
            scores = self.predict(network, x_seq)
        wrong = self._wrong_labels(y, scores if c.negatives == "hard" else None)
        h = torch.cat([self._embed(x_seq, y), self._embed(x_seq, wrong)], 1)
        metrics, losses, states, blocks_goodness = {}, [], [], []
        for i, block in enumerate(network.blocks):
            with unfused():  # goodness reads every block's spikes
                trace = block.trace(h.detach())
            h = trace.output
            states.append(trace.state)
            if i in self.layers:
                g = goodness(trace.spikes, c.goodness)
                metrics[f"goodness_{i}"] = (g[:n].mean() - g[n:].mean()).item()
                if c.collaboration:
                    blocks_goodness.append(g)
                else:  # one block's graph at a time
                    losses.append(ff_loss(g[:n], g[n:], c.loss, c.threshold, c.scale))
                    self.backward(losses[-1])
        if c.collaboration:
            theta = c.threshold * len(self.layers)
            losses = [ff_loss(g[:n], g[n:], c.loss, theta, c.scale) for g in collaborative(blocks_goodness)]
            self.backward(sum(losses))
        if neutral is not None:
            head_loss = F.cross_entropy(self.head(neutral), y)
            self.backward(head_loss)
            metrics["head_loss"] = head_loss.item()
        if scores is not None:
            metrics.update(self.objective.metrics(scores, y))
        return {"loss": float(sum(loss.item() for loss in losses)), **metrics}, states

    def train_step(self, network: Network, batch: Batch) -> dict[str, float]:
        x_seq, y = batch
        self.zero_grad()
        metrics, states = self.gradients(network, x_seq, y)
        self.step(network, states, self.config.grad_clip)
        return metrics

    @torch.no_grad()
    def predict(self, network: Network, x_seq: Tensor) -> Tensor:
        """Class scores ``[B, C]``: goodness summed over the read blocks for each label, or the softmax head."""
        self._check(x_seq)
        if self.config.readout == "softmax":
            return self.head(self._features(network, x_seq))
        classes, n = self.config.classes, x_seq.shape[1]
        labels = torch.arange(classes, device=x_seq.device).repeat_interleave(n)
        with unfused():
            trace = network.trace(self._embed(x_seq.repeat(1, classes, *[1] * (x_seq.dim() - 2)), labels))
        total = sum(goodness(trace.blocks[i].spikes, self.config.goodness) for i in self.read)
        return total.view(classes, n).T

    def _embed(self, x_seq: Tensor, labels: Tensor | None) -> Tensor:
        """``x_seq`` with ``labels`` written in (None: the neutral label, 1/C in every label input)."""
        c = self.config
        if labels is None:
            pixels = torch.full((x_seq.shape[1], c.classes), c.label_value / c.classes, device=x_seq.device)
        else:
            pixels = F.one_hot(labels, c.classes).to(x_seq.dtype) * c.label_value
        return embed_labels(x_seq, pixels.to(x_seq.dtype))

    def _wrong_labels(self, y: Tensor, scores: Tensor | None) -> Tensor:
        """A wrong label per sample: uniform, or by exp(scale * score) over the wrong labels (``scores`` given)."""
        u = self.draws.per_sample(torch.rand, (len(y),), 0, y.device)
        classes = self.config.classes
        if scores is None:
            return (y + 1 + (u * (classes - 1)).long().clamp_max(classes - 2)) % classes
        logits = (self.config.scale * scores.float()).scatter(1, y[:, None], -torch.inf)
        cdf = torch.softmax(logits, 1).cumsum(1)
        return torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True).squeeze(1).clamp_max(classes - 1)

    def _features(self, network: Network, x_seq: Tensor) -> Tensor:
        """The read blocks' L2-normalised rates on the neutral label, side by side, without gradient."""
        with torch.no_grad(), unfused():
            trace = network.trace(self._embed(x_seq, None))
            return torch.cat([F.normalize(features(trace.blocks[i].spikes), dim=1) for i in self.read], 1)

    def _check(self, x_seq: Tensor, y: Tensor | None = None) -> None:
        inputs = x_seq[0, 0].numel()
        if inputs < self.config.classes:
            raise ConfigError(
                [("rule.classes", f"{self.config.classes} labels cannot be written into samples of {inputs} inputs")]
            )
        if y is not None and len(y) and int(y.max()) >= self.config.classes:
            raise ConfigError(
                [
                    (
                        "rule.classes",
                        f"is {self.config.classes} but the data has label {int(y.max())}; set it to the number "
                        "of classes of the dataset",
                    )
                ]
            )
