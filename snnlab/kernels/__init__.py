"""Backends for a neuron's ``forward`` over a sequence behind one dispatch: ``torch`` (the neuron's own loop over
``step``: the reference, always there), ``triton`` (fused GPU kernels) and ``numba`` (fused CPU kernels).

The fused kernels live one folder per neuron model (``lif/``: ``numba.py``, ``triton.py``), each backend's op built
by the generic factory in ``scan_op.py``. A backend's module (and numba, triton, and the op registration with them)
is imported when a neuron first runs on it, not when this package is imported.

A neuron's ``backend`` option chooses per network (``network.neuron.backend``) or per block. ``auto`` runs Triton on
CUDA tensors and Numba on CPU tensors when they are installed and can run the input, else the torch loop. A
backend named explicitly that cannot run the input (not installed, wrong device or dtype, a surrogate without a
kernel) falls back to ``torch`` with one warning. Inputs that a fused kernel would get wrong also run the torch loop:
a state or per-neuron parameter of another dtype than the input (the loop promotes, the kernels would not), except
float32 ones beside a bfloat16 or float16 input (the kernels compute in float32 and keep the input's dtype for the
output, as autocast means them to), and forward-mode AD or a ``torch.func`` transform (the loop gives exact tangents,
the kernels none).

Example::

    >>> import torch
    >>> from snnlab.kernels import choose
    >>> from snnlab.surrogates import ATan
    >>> choose("auto", torch.randn(8, 4, 10, dtype=torch.float64), ATan())
    'torch'
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Literal

import torch
from torch import Tensor

from ..surrogates import Surrogate
from .scan_op import SURROGATE_IDS, ScanOp, forward_mode_active

Backend = Literal["auto", "torch", "triton", "numba"]
"""The values of a neuron's ``backend`` option."""

_warned: set[str] = set()
_loaded: dict[tuple[str, str], ModuleType | str] = {}


def _load(model: str, backend: str) -> ModuleType | str:
    """The module of ``model``'s ``backend`` kernels (importing it registers their op), or why it cannot be imported."""
    if (model, backend) not in _loaded:
        try:
            _loaded[model, backend] = importlib.import_module(f".{model}.{backend}", __name__)
        except ImportError as exc:
            _loaded[model, backend] = f"{backend} is not installed ({exc})"
    return _loaded[model, backend]


def unsupported(
    backend: str, device: torch.device | str, dtype: torch.dtype, surrogate: str | None = None, model: str = "lif"
) -> str | None:
    """Why ``backend`` cannot run ``model`` on ``device`` and ``dtype`` with this surrogate (None: a model without
    one), or None when it can."""
    if backend == "torch":
        return None
    module = _load(model, backend)
    if isinstance(module, str):
        return module
    if surrogate is not None and surrogate not in SURROGATE_IDS:
        return f"the surrogate {surrogate!r} has no {backend} kernel"
    return module.unsupported(torch.device(device).type, dtype)


def fused_op(model: str, backend: str) -> ScanOp:
    """``model``'s op on the fused ``backend`` (loaded, and registered, on first use)."""
    module = _load(model, backend)
    if isinstance(module, str):
        raise RuntimeError(module)
    return module.op


def _pick(backend: str, model: str, device: str, dtype: torch.dtype, surrogate: str | None, reason: str | None) -> str:
    if backend == "torch":
        return backend
    if backend == "auto":
        preferred = "triton" if device == "cuda" else "numba"
        runs = reason is None and unsupported(preferred, device, dtype, surrogate, model) is None
        return preferred if runs else "torch"
    reason = reason or unsupported(backend, device, dtype, surrogate, model)
    if reason is None:
        return backend
    message = f"snnlab: backend {backend!r} falls back to torch: {reason}"
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, stacklevel=4)
    return "torch"


# Under torch.compile, _pick runs once at trace time, outside the graph (imports, warnings), and its result is a
# constant: what torch.compiler.assume_constant_result marks, set here without importing torch._dynamo (~2 s).
_pick._dynamo_marked_constant = True  # type: ignore[attr-defined]


LOW_PRECISION = (torch.bfloat16, torch.float16)
"""Input dtypes whose float32 states and per-neuron parameters the kernels read as they are (their membrane is
float32); the loop would promote its output to float32."""


def _loop_only(x: Tensor, inputs: Sequence[Tensor | float | None]) -> str | None:
    """Why these inputs must run the neuron's own loop, or None."""
    for t in inputs:
        if not isinstance(t, Tensor) or t.dim() == 0 or t.dtype == x.dtype:
            continue
        if not (t.dtype == torch.float32 and x.dtype in LOW_PRECISION):
            return f"a state or per-neuron parameter is {t.dtype}, the input {x.dtype}"
    if not torch.compiler.is_compiling() and forward_mode_active(x, *inputs):
        return "forward-mode AD and torch.func transforms run the neuron's own loop"
    return None


def choose(
    backend: Backend,
    x: Tensor,
    surrogate: Surrogate | None = None,
    *,
    model: str = "lif",
    inputs: Sequence[Tensor | float | None] = (),
) -> str:
    """The backend that runs ``model`` on input ``x``: ``backend`` itself, ``auto``'s pick, or ``torch`` (after a
    one-time warning for a backend named explicitly). ``inputs`` are the states and parameters the kernel would read
    with ``x``."""
    reason = _loop_only(x, inputs)
    return _pick(backend, model, x.device.type, x.dtype, None if surrogate is None else surrogate.name, reason)


__all__ = ["Backend", "choose", "fused_op", "unsupported"]
