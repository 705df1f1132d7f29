"""What the YAML accepts, read from the registries: each registry's entries, and each entry's keys with their type,
default and description (``snnlab options``).

The descriptions come from the entry's pydantic field descriptions and the ``Args:`` section of its docstring, so
they cannot drift from the code.

Example::

    >>> print(describe("surrogate", "atan"))          # doctest: +NORMALIZE_WHITESPACE
    surrogate 'atan' (network.neuron.surrogate: {name: atan, ...})
      g(u) = (alpha / 2) / (1 + (pi alpha u / 2)^2); snnTorch's and SpikingJelly's ATan, default alpha 2.
    <BLANKLINE>
      alpha  float > 0  default 2.0
"""

from __future__ import annotations

import inspect
import re
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .registry import Registry

_MISSING = object()


def registries() -> dict[str, tuple[Registry[Any], str]]:
    """Each registry by the name ``snnlab options`` takes, with where its entries go in YAML."""
    from .datasets import DATASETS, ENCODERS
    from .neurons import NEURONS
    from .objectives import OBJECTIVES, READOUTS
    from .plugins import load_plugins
    from .rules import RULES
    from .surrogates import SURROGATES
    from .synapses import NORMS, POST, RECURRENT, SYNAPSES

    load_plugins()
    return {
        "dataset": (DATASETS, "data"),
        "encoder": (ENCODERS, "data.encoder"),
        "neuron": (NEURONS, "network.neuron, network.blocks[i].neuron"),
        "surrogate": (SURROGATES, "network.neuron.surrogate"),
        "synapse": (SYNAPSES, "network.blocks[i].<name>"),
        "norm": (NORMS, "network.blocks[i].norm"),
        "recurrent": (RECURRENT, "network.blocks[i].recurrent"),
        "post": (POST, "network.blocks[i].<name>"),
        "objective": (OBJECTIVES, "objective"),
        "readout": (READOUTS, "objective.readout"),
        "rule": (RULES, "rule"),
    }


def overview() -> str:
    """Every registry with its entries: what ``snnlab options`` prints without arguments."""
    lines = ["Registries (`snnlab options REGISTRY NAME` lists an entry's keys):", ""]
    for kind, (reg, where) in registries().items():
        lines.append(f"  {kind:<10} {', '.join(reg.in_order())}   [{where}]")
    return "\n".join(lines)


def describe(kind: str, name: str | None = None) -> str:
    """The keys of entry ``name`` of registry ``kind`` (all entries' keys without ``name``), one a line with type,
    default and description; a ``KeyError`` with the names there are for an unknown one."""
    table = registries()
    if kind not in table:
        raise KeyError(f"no registry {kind!r}; one of: {', '.join(table)}")
    reg, where = table[kind]
    if name is None:
        return "\n\n".join(describe(kind, n) for n in reg.in_order())
    if name not in reg:
        raise KeyError(f"no {reg.kind} {name!r}; one of: {', '.join(reg.in_order())}")
    config, builder = reg.config(name), reg.builder(name)
    doc = inspect.getdoc(builder) or inspect.getdoc(config) or ""
    summary, args = _docstring(doc)
    at = where.split(",")[0]
    usage = f"{at.replace('<name>', name)}: {{...}}" if "<name>" in at else f"{at}: {{{reg.key}: {name}, ...}}"
    head = [f"{reg.kind} {name!r} ({usage})"]
    if summary:
        head.append(f"  {summary}")
    rows = [(field, _type_name(info), _default(info), info.description or args.get(field, ""))
            for field, info in _fields(config, reg)]  # fmt: skip
    if not rows:
        return "\n".join([*head, "", "  (no options)"])
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    body = [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + (f"  {row[3]}" if row[3] else "")
        for row in rows
    ]
    return "\n".join([*head, "", *(line.rstrip() for line in body)])


def _fields(config: type[BaseModel], reg: Registry[Any]) -> list[tuple[str, FieldInfo]]:
    """The options of ``config``: its own first, then those every entry shares (``reg.base``); not the selector."""
    shared = set(reg.base.model_fields) if reg.base else set()
    own = [(k, f) for k, f in config.model_fields.items() if k != reg.key and k not in shared]
    return own + [(k, f) for k, f in config.model_fields.items() if k in shared]


def _docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph of ``doc`` on one line, and its ``Args:`` entries (name to text, on one line)."""
    summary = " ".join(doc.split("\n\n", 1)[0].split())
    args: dict[str, str] = {}
    match = re.search(r"^Args:\n((?:[ \t]+.*\n?|\n)*)", doc, re.MULTILINE)
    if match:
        current = None
        for line in match.group(1).splitlines():
            entry = re.match(r"^ {4}(\w+)(?: \(.*?\))?: (.*)", line)
            if entry:
                current = entry.group(1)
                args[current] = entry.group(2).strip()
            elif current and line.strip():
                args[current] += " " + line.strip()
    return summary, args


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        value = getattr(value, "name", type(value).__name__)
    if value is None or isinstance(value, bool):
        return f"default {'null' if value is None else str(value).lower()}"  # as written in YAML
    return f"default {value!r}" if isinstance(value, str) else f"default {value}"


def _type_name(info: FieldInfo) -> str:
    """The annotation in YAML terms (``soft | hard``, ``float > 0``, ``int | null``)."""
    text = _annotation(info.annotation)
    bounds = [
        f"{symbol} {getattr(m, attr)}"
        for m in info.metadata
        for attr, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
        if getattr(m, attr, None) is not None
    ]
    return " ".join([text, *bounds])


def _annotation(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _annotation(args[0])
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if tp is type(None):
        return "null"
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        members = [_annotation(a) for a in args]
        return " | ".join(dict.fromkeys(members))
    if origin in (list, tuple):
        return f"list[{', '.join(_annotation(a) for a in args if a is not Ellipsis)}]"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return getattr(tp.model_fields.get("name"), "default", None) or tp.__name__
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))
