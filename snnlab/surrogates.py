"""Surrogate gradients: the spike is a Heaviside step forward and a smooth pseudo-derivative backward.

Each surrogate is a small frozen pydantic model, so the same object is the YAML
option (``surrogate: {name: atan, alpha: 2.0}`` or just ``surrogate: atan``) and
the thing a neuron calls. ``alpha`` is the sharpness: larger means a narrower,
taller pseudo-derivative. Every surrogate below except ``fast_sigmoid``
integrates to 1 (so the total gradient mass does not depend on alpha);
``fast_sigmoid`` follows snnTorch's convention (peak 1).

Example::

    >>> import torch
    >>> from snnlab.surrogates import ATan
    >>> u = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
    >>> s = ATan(alpha=2.0).spike(u)          # forward: (u > 0)
    >>> s.tolist()
    [0.0, 0.0, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidatorFunctionWrapHandler, WrapValidator
from torch import Tensor

from .registry import Registry


class _Heaviside(torch.autograd.Function):
    """s = H(u) = 1[u > 0] forward; ds/du = g(u) (``surrogate.derivative``) in reverse mode (grad_u = grad_s g(u))
    and in forward mode (tangent_s = tangent_u g(u)). Written in the ``setup_context`` style with a generated vmap
    rule, so ``torch.func.grad``, ``jvp`` and ``vmap`` go through it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(u: Tensor, surrogate: Surrogate) -> Tensor:
        return (u > 0).to(u.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Surrogate], output: Tensor) -> None:
        u, surrogate = inputs
        ctx.surrogate = surrogate
        ctx.save_for_backward(u)
        ctx.save_for_forward(u)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (u,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(u), None

    @staticmethod
    def jvp(ctx: Any, tangent: Tensor, _: None) -> Tensor:
        (u,) = ctx.saved_tensors
        return tangent * ctx.surrogate.derivative(u)


class Surrogate(BaseModel):
    """A pseudo-derivative g(u) of the Heaviside step, used in place of its true derivative."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    name: str
    alpha: float = Field(gt=0)

    def derivative(self, u: Tensor) -> Tensor:
        """g(u), the value used for ds/du in backward."""
        raise NotImplementedError

    def spike(self, u: Tensor) -> Tensor:
        """Heaviside of ``u`` (spike when u > 0) with this surrogate's gradient."""
        return _Heaviside.apply(u, self)


class Sigmoid(Surrogate):
    """g(u) = alpha * sig(alpha u) * (1 - sig(alpha u)); SpikingJelly's Sigmoid, default alpha 4."""

    name: Literal["sigmoid"] = "sigmoid"
    alpha: float = Field(4.0, gt=0)

    def derivative(self, u: Tensor) -> Tensor:
        sg = torch.sigmoid(self.alpha * u)
        return self.alpha * sg * (1 - sg)


class ATan(Surrogate):
    """g(u) = (alpha / 2) / (1 + (pi alpha u / 2)^2); snnTorch's and SpikingJelly's ATan, default alpha 2."""

    name: Literal["atan"] = "atan"
    alpha: float = Field(2.0, gt=0)

    def derivative(self, u: Tensor) -> Tensor:
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * u) ** 2)


class FastSigmoid(Surrogate):
    """g(u) = 1 / (1 + alpha |u|)^2; SuperSpike as snnTorch's fast_sigmoid(slope=alpha), default 25."""

    name: Literal["fast_sigmoid"] = "fast_sigmoid"
    alpha: float = Field(25.0, gt=0)

    def derivative(self, u: Tensor) -> Tensor:
        return 1 / (1 + self.alpha * u.abs()) ** 2


class Triangle(Surrogate):
    """g(u) = max(0, alpha - alpha^2 |u|); SpikingJelly's PiecewiseQuadratic, default alpha 1."""

    name: Literal["triangle"] = "triangle"
    alpha: float = Field(1.0, gt=0)

    def derivative(self, u: Tensor) -> Tensor:
        return (self.alpha - self.alpha**2 * u.abs()).clamp_min(0)


class Rectangle(Surrogate):
    """g(u) = alpha for |u| < 1 / (2 alpha), else 0; STBP's rectangle with width a = 1/alpha, default alpha 1."""

    name: Literal["rectangle"] = "rectangle"
    alpha: float = Field(1.0, gt=0)

    def derivative(self, u: Tensor) -> Tensor:
        return (u.abs() < 0.5 / self.alpha).to(u.dtype) * self.alpha


SURROGATES: Registry[Surrogate] = Registry("surrogate", key="name")
for _cls in (Sigmoid, ATan, FastSigmoid, Triangle, Rectangle):
    SURROGATES.register(_cls.model_fields["name"].default, _cls, config=_cls)


class FunctionSurrogate(Surrogate):
    """A surrogate from any Python function ``g(u)`` of a tensor: what a neuron makes of ``surrogate=fn``.

    Such a surrogate runs on the torch backend (the fused kernels know the registered ones only). ``alpha`` is
    not used: give ``g`` its own sharpness.

    Example::

        >>> import torch
        >>> from snnlab.neurons import LIF
        >>> lif = LIF(surrogate=lambda u: torch.exp(-u.abs()))      # or FunctionSurrogate(function=...)
        >>> u = torch.tensor([0.0, 1.0], requires_grad=True)
        >>> lif.surrogate.spike(u).sum().backward()
        >>> u.grad
        tensor([1.0000, 0.3679])
    """

    name: Literal["function"] = "function"
    alpha: float = Field(1.0, gt=0)
    function: Callable[[Tensor], Tensor]

    def derivative(self, u: Tensor) -> Tensor:
        return self.function(u)


def _own_surrogate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Let a neuron take a surrogate of the user's own: an instance of a ``Surrogate`` subclass that is not
    registered (under a name of its own, since the fused kernels pick the registered ones by name), or a function
    ``g(u)``; anything else is validated as a registered surrogate's name or options."""
    if isinstance(value, Surrogate):
        if value.name in SURROGATES and type(value) is not SURROGATES.builder(value.name):
            raise ValueError(
                f"{type(value).__name__} uses the name {value.name!r} of a registered surrogate, whose kernel the "
                f"fused backends would run instead of its derivative; give it another name"
            )
        return value
    if callable(value) and not isinstance(value, type):
        return FunctionSurrogate(function=value)
    return handler(value)


SurrogateSpec = Annotated[SURROGATES.schema(), WrapValidator(_own_surrogate)]
"""The pydantic type of a surrogate option: a name or ``{name: ..., alpha: ...}`` (in YAML), and from Python also a
``Surrogate`` subclass's instance or a function ``g(u)`` (made a ``FunctionSurrogate``).

Example of a surrogate of one's own::

    >>> import torch
    >>> from snnlab.neurons import LIF
    >>> class Gaussian(Surrogate):
    ...     name: Literal["gaussian"] = "gaussian"
    ...     alpha: float = 1.0
    ...     def derivative(self, u):
    ...         return torch.exp(-(self.alpha * u) ** 2) * self.alpha / math.sqrt(math.pi)
    >>> LIF(surrogate=Gaussian(alpha=2.0)).surrogate.name
    'gaussian'
"""


def surrogate(spec: str | dict[str, Any] | Surrogate) -> Surrogate:
    """A surrogate from its name, its options or itself."""
    if isinstance(spec, Surrogate):
        return spec
    from pydantic import TypeAdapter

    return TypeAdapter(SurrogateSpec).validate_python(spec)
