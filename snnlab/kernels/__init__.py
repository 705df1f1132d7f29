"""Backends for the LIF family (LIF, IF, PLIF) behind one dispatch: ``torch`` (the reference loop, always there),
``triton`` (fused GPU kernels) and ``numba`` (fused CPU kernels).

A neuron's ``backend`` option chooses per network (``network.neuron.backend``) or per block. ``auto`` runs Triton on
CUDA tensors and Numba on CPU tensors when they are installed and can run the input, else the reference loop. A
backend named explicitly that cannot run the input (not installed, wrong device or dtype, a surrogate without a
kernel) falls back to ``torch`` with one warning. Every fused kernel is a ``torch.library`` custom op (``ops.py``).

Example::

    >>> import torch
    >>> from snnlab.kernels import lif_sequence
    >>> from snnlab.surrogates import ATan
    >>> x = torch.randn(8, 4, 10)
    >>> s, v = lif_sequence(x, None, 0.5, 1.0, decay_input=False, reset="soft", v_reset=0.0,
    ...                     detach_reset=False, surrogate=ATan(), backend="auto")
    >>> s.shape, v.shape
    (torch.Size([8, 4, 10]), torch.Size([4, 10]))
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Literal

import torch
from torch import Tensor

from ..surrogates import Surrogate
from .ops import SURROGATE_IDS

Backend = Literal["auto", "torch", "triton", "numba"]
"""The values of a neuron's ``backend`` option."""

_MODULES = {"triton": "triton_lif", "numba": "numba_lif"}
_warned: set[str] = set()
_loaded: dict[str, ModuleType | str] = {}


def _load(name: str) -> ModuleType | str:
    """The backend's module (importing it registers its ops), or why it cannot be imported."""
    if name not in _loaded:
        try:
            _loaded[name] = importlib.import_module(f".{_MODULES[name]}", __name__)
        except ImportError as exc:
            _loaded[name] = f"{name} is not installed ({exc})"
    return _loaded[name]


def unsupported(backend: str, device: torch.device | str, dtype: torch.dtype, surrogate: str) -> str | None:
    """Why ``backend`` cannot run a LIF layer on ``device`` and ``dtype`` with this surrogate, or None when it can."""
    if backend == "torch":
        return None
    module = _load(backend)
    if isinstance(module, str):
        return module
    if surrogate not in SURROGATE_IDS:
        return f"the surrogate {surrogate!r} has no {backend} kernel"
    return module.unsupported(torch.device(device).type, dtype)


@torch.compiler.assume_constant_result  # run at trace time, outside the graph: imports and warnings
def _pick(backend: str, device: str, dtype: torch.dtype, surrogate: str) -> str:
    if backend == "auto":
        preferred = "triton" if device == "cuda" else "numba"
        return preferred if unsupported(preferred, device, dtype, surrogate) is None else "torch"
    reason = unsupported(backend, device, dtype, surrogate)
    if reason is None:
        return backend
    message = f"snnlab: backend {backend!r} falls back to torch: {reason}"
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, stacklevel=4)
    return "torch"


def choose(backend: Backend, x: Tensor, surrogate: Surrogate) -> str:
    """The backend that will run: ``backend`` itself, ``auto``'s pick, or ``torch`` after a one-time warning."""
    return _pick(backend, x.device.type, x.dtype, surrogate.name)


def _scalar(value: Tensor | float, like: Tensor) -> Tensor:
    """A 0-d float32 tensor on ``like``'s device: a parameter keeps its autograd path."""
    if isinstance(value, Tensor):
        return value.to(torch.float32)
    return torch.full((), value, dtype=torch.float32, device=like.device)


def lif_sequence(
    x_seq: Tensor,
    v: Tensor | None,
    beta: Tensor | float,
    threshold: Tensor | float,
    *,
    decay_input: bool,
    reset: Literal["soft", "hard"],
    v_reset: float,
    detach_reset: bool,
    surrogate: Surrogate,
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """A LIF layer over the sequence ``x_seq`` ``[T, ...]`` from membrane ``v`` ``[...]`` (None: at rest, 0): spikes
    and the final membrane.

    The arguments are those of ``reference.lif_reference``, which every backend matches spike for spike.
    """
    name = choose(backend, x_seq, surrogate)
    if name == "torch":
        from .reference import lif_reference

        return lif_reference(
            x_seq, v, beta, threshold, decay_input=decay_input, reset=reset, v_reset=v_reset,
            detach_reset=detach_reset, surrogate=surrogate,
        )  # fmt: skip
    op = getattr(torch.ops.snnlab, f"lif_{name}")
    # gain is (1 - beta) computed exactly as leak.charge computes it, so the kernels' float32 products match.
    params = [_scalar(p, x_seq) for p in (beta, (1 - beta) if decay_input else 1.0, threshold)]
    x = x_seq.reshape(x_seq.shape[0], -1).contiguous()
    v0 = x.new_empty(0) if v is None else v.expand(x_seq.shape[1:]).reshape(-1).contiguous()
    save = torch.is_grad_enabled() and any(t.requires_grad for t in (x, v0, *params))
    spikes, v_last, _ = op(
        x, v0, *params, float(v_reset), reset == "soft", detach_reset, SURROGATE_IDS[surrogate.name],
        float(surrogate.alpha), save,
    )  # fmt: skip
    return spikes.view(x_seq.shape), v_last.view(x_seq.shape[1:])


__all__ = ["Backend", "choose", "lif_sequence", "unsupported"]
