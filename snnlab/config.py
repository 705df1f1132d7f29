"""The experiment schema, and reading it from YAML with command-line overrides.

An experiment has the sections ``name``, ``seed``, ``device``, ``data``,
``network``, ``objective``, ``rule``, ``train`` and ``output``. Every option is validated
before anything runs; a mistake is reported as a ``ConfigError`` that names
the file, the key path and what was expected.
"""

from __future__ import annotations

import difflib
import math
import re
import typing
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model, model_validator

from . import registry
from .datasets import DATASETS
from .errors import ConfigError
from .neurons import NEURONS
from .objectives import OBJECTIVES
from .optim import TrainConfig
from .plugins import load_plugins
from .rules import RULES
from .surrogates import Surrogate
from .synapses import NORMS, POST, RECURRENT, SYNAPSES


def _shorthand(field: str | None) -> BeforeValidator:
    """Accept a bare number as ``{field: number}`` (``linear: 128``, ``pool: 2``), ``true`` as ``{}`` and
    ``false`` as absent (``flatten: true``)."""

    def expand(value: Any) -> Any:
        if isinstance(value, bool):
            return {} if value else None
        if field is not None and isinstance(value, (int, float)):
            return {field: value}
        return value

    return BeforeValidator(expand)


def _keyed_fields(reg: registry.Registry) -> dict[str, Any]:
    """One optional block key per entry of ``reg``; its first option is the shorthand."""
    fields = {}
    for kind in reg.in_order():
        options = reg.config(kind)
        first = next((f for f in options.model_fields if f != reg.key), None)
        fields[kind] = (typing.Annotated[options | None, _shorthand(first)], None)
    return fields


class BlockConfig(BaseModel):
    """One entry of ``network.blocks``: a synapse (``linear``, ``conv``, ...) with its ``norm``, ``neuron``,
    ``recurrent`` and post layers (``pool``, ``dropout``, ``flatten``); or post layers or a norm alone; or
    ``residual``: a list of blocks whose output is added to their input. (The synapse and post keys come
    from their registries.)"""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def synapse_kind(self) -> str | None:
        """The synapse key this block sets, if any."""
        return next((k for k in SYNAPSES.names() if getattr(self, k, None) is not None), None)

    def post_kinds(self) -> list[str]:
        """The post-layer keys this block sets, in the order they run."""
        return [k for k in POST.in_order() if getattr(self, k, None) is not None]

    @model_validator(mode="after")
    def _one_role(self) -> BlockConfig:
        kinds = [k for k in SYNAPSES.names() if getattr(self, k, None) is not None]
        if len(kinds) > 1:
            raise ValueError(f"a block has one synapse, got {kinds}")
        others = [k for k in ("norm", "neuron", "recurrent", *kinds, *POST.names()) if getattr(self, k, None)]
        if self.residual is not None and others:
            raise ValueError(f"`residual` is a block of its own; move {others} into its list")
        if self.residual is not None:
            return self
        if self.recurrent is not None and not kinds and self.neuron is None:
            raise ValueError(
                "`recurrent` needs a neuron: a synapse in the same block (which gets the default neuron) or `neuron`"
            )
        if not others:
            raise ValueError(
                f"a block needs one of: {', '.join(SYNAPSES.names())}, norm, neuron, {', '.join(POST.names())}, residual"
            )
        return self


def _yaml_switch(value: Any) -> Any:
    """YAML 1.1 reads a bare ``off`` as false (and ``on`` as true): take them as the words ``off`` and ``auto``."""
    return ("auto" if value else "off") if isinstance(value, bool) else value


class NetworkConfig(BaseModel):
    """``network``: the default neuron of every block with a synapse, and the blocks in order.

    A block's ``neuron`` overrides the default: without ``model`` its keys are
    merged into the default neuron's options, with another ``model`` it replaces it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    fuse_blocks: typing.Annotated[Literal["auto", "off"], BeforeValidator(_yaml_switch)] = Field(
        "auto",
        description="auto: a block of batch norm, LIF and pooling runs them as one fused kernel where a backend has "
        "one (Triton on CUDA; snnlab.block_fusion); off: every block runs its parts one by one",
    )
    memory_format: Literal["contiguous", "channels_last"] = Field(
        "contiguous",
        description="how [C, H, W] maps are stored: contiguous (NCHW, as the data comes) or channels_last (NHWC: "
        "inputs, convolution weights and every layer's output, the fused neurons' included)",
    )

    @model_validator(mode="before")
    @classmethod
    def _merge_block_neurons(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "readout" in data:
            raise ValueError(
                "`network.readout` is now `objective.readout` (objective: {name: classification, readout: ...})"
            )
        default = _as_mapping(data.get("neuron", "lif"), NEURONS.key)
        if isinstance(data.get("blocks"), list):
            data = {**data, "blocks": _merge_neurons(data["blocks"], default)}
        return data


def _as_mapping(value: Any, key: str) -> Any:
    return {key: value} if isinstance(value, str) else value


def _merge_neurons(blocks: list[Any], default: Any) -> list[Any]:
    merged = []
    for block in blocks:
        if isinstance(block, dict) and isinstance(block.get("residual"), list):
            block = {**block, "residual": _merge_neurons(block["residual"], default)}
        override = _as_mapping(block.get("neuron"), NEURONS.key) if isinstance(block, dict) else None
        if isinstance(override, dict) and isinstance(default, dict):
            same_model = override.get(NEURONS.key, default.get(NEURONS.key)) == default.get(NEURONS.key)
            block = {**block, "neuron": {**default, **override} if same_model else override}
        merged.append(block)
    return merged


class OutputConfig(BaseModel):
    """``output``: where the run folder goes and what it holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dir: str | None = Field(None, description="null: <root>/<experiment name>-<date-time>")
    root: str = "runs"
    plots: bool = True
    checkpoint_every: int | None = Field(
        None, ge=1, description="also checkpoint every N batches within an epoch; null: at the end of each epoch only"
    )


class ExperimentConfig(BaseModel):
    """A whole experiment, as read from YAML. The sections that depend on the registries (``data``,
    ``network``, ``objective``, ``rule``) are added by ``experiment_schema``."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    name: str = Field("experiment", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=-(2**63), lt=2**63, description="any 64-bit signed integer (what torch's seeding takes)")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    threads: int | None = Field(
        None, ge=1, description="CPU threads (torch, Numba); null: $OMP_NUM_THREADS, else half the cores, at least 1"
    )
    train: TrainConfig = TrainConfig()
    output: OutputConfig = OutputConfig()


_schema: tuple[int, type[ExperimentConfig]] | None = None


def experiment_schema() -> type[ExperimentConfig]:
    """The experiment model for the registries as they are now (plugins loaded first); rebuilt after any
    registration, so an entry registered from outside the package is accepted in YAML like a built-in one."""
    global _schema
    load_plugins()
    if _schema is None or _schema[0] != registry.version():
        _schema = (registry.version(), _build_schema())
    return _schema[1]


def _build_schema() -> type[ExperimentConfig]:
    neuron = NEURONS.schema()
    block = create_model(  # type: ignore[call-overload]
        "BlockConfig",
        __base__=BlockConfig,
        norm=(typing.Annotated[NORMS.schema() | None, _shorthand(None)], None),
        neuron=(neuron | None, None),
        recurrent=(typing.Annotated[RECURRENT.schema() | None, _shorthand(None)], None),
        residual=(Optional[list["BlockConfig"]], Field(None, min_length=1)),  # noqa: UP045 (a forward reference)
        **_keyed_fields(SYNAPSES),
        **_keyed_fields(POST),
    )
    block.model_rebuild(_types_namespace={"BlockConfig": block})
    network = create_model(  # type: ignore[call-overload]
        "NetworkConfig",
        __base__=NetworkConfig,
        neuron=(neuron, "lif"),
        blocks=(list[block], Field(min_length=1)),  # type: ignore[valid-type]
    )
    return create_model(  # type: ignore[call-overload]
        "ExperimentConfig",
        __base__=ExperimentConfig,
        data=(DATASETS.schema(), "digits"),
        network=(network, ...),
        objective=(OBJECTIVES.schema(default="classification"), "classification"),
        rule=(RULES.schema(), "bptt"),
    )


# --- reading -----------------------------------------------------------------------------------


def packaged_experiments() -> list[str]:
    """Names of the experiments that ship with snnlab (``snnlab run NAME``)."""
    folder = resources.files("snnlab.experiments")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_experiment(spec: str | Path | None) -> Path:
    """The YAML file for a path, or for the name of a packaged experiment (None: quickstart)."""
    if spec is None:
        spec = "quickstart"
    path = Path(spec)
    if path.is_file():
        return path
    packaged = resources.files("snnlab.experiments") / f"{spec}.yaml"
    if path.suffix == "" and packaged.is_file():
        return Path(str(packaged))
    raise ConfigError(
        [("", f"no experiment file {str(spec)!r}; give a YAML path or one of: {', '.join(packaged_experiments())}")]
    )


def parse_overrides(overrides: Sequence[str]) -> list[tuple[list[str], Any]]:
    """``key.path=value`` strings to (path, value) pairs; values are read as YAML scalars/lists."""
    parsed = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][\w]*(\.[\w]+)*", key):
            raise ConfigError([("", f"override {item!r} must look like key.path=value, e.g. train.epochs=2")])
        try:
            parsed.append((key.split("."), yaml.safe_load(value) if value else None))
        except yaml.YAMLError as exc:
            raise ConfigError([(key, f"cannot read the value {value!r}: {exc}")]) from None
        except RecursionError:
            raise ConfigError([(key, f"the value is nested too deeply (YAML lists or mappings {_TOO_DEEP})")]) from None
    return parsed


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``raw`` with each ``key.path=value`` set (list entries by index: ``network.blocks.0.linear=64``).

    Setting the key that selects a registry entry (``network.neuron.model=if``, ``rule.name=...``) to another
    entry drops the options the new entry does not accept; for an entry whose options mean something else in
    each entry (a surrogate's ``alpha``) every option is dropped, so the new one starts from its own defaults.
    Options set by the same command line are kept either way.

    Example::

        >>> raw = {"network": {"neuron": {"model": "lif", "tau": 2.0, "threshold": 0.5}, "blocks": [{"linear": 4}]}}
        >>> apply_overrides(raw, ["network.neuron.model=if"])["network"]["neuron"]
        {'model': 'if', 'threshold': 0.5}
    """
    import copy

    raw = copy.deepcopy(raw)
    given: list[list[str]] = []
    for path, value in parse_overrides(overrides):
        node: Any = raw
        schema: Any = experiment_schema()
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            where = ".".join(path[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError([(where, f"is a list of {len(node)} entries; use an index 0..{len(node) - 1}")])
                index: Any = int(part)
            elif isinstance(node, dict):
                index = part
            else:
                raise ConfigError([(where, f"cannot set a key inside {type(node).__name__} value {node!r}")])
            if last:
                if isinstance(node, dict) and node.get(index) != value:
                    _drop_foreign_options(node, index, value, schema, path[:-1], given)
                node[index] = value
            else:
                inner = (
                    _field_type(_entry_model(schema, node), index)
                    if isinstance(node, dict)
                    else _field_type(schema, index)
                )
                if isinstance(node, dict) and not isinstance(node.get(index), (dict, list)):
                    node[index] = {} if node.get(index) is None else {_tag_key(inner): node[index]}
                node, schema = node[index], inner
        given.append(path)
    return raw


def _entry_model(tp: Any, node: dict[str, Any]) -> Any:
    """The model of a raw mapping ``node`` of type ``tp``: for a tagged union, the member that ``node`` selects."""
    key = _tag_key(tp)
    return _member(tp, node.get(key)) or tp if key in node else tp


def _tag_key(tp: Any) -> str:
    """The key that selects an entry of the tagged union ``tp`` (``model`` for neurons), else ``name``."""
    for member in typing.get_args(_strip(tp)) or (_strip(tp),):
        model = _as_model(member)
        if model is not None:
            for key in _TAG_KEYS:
                field = model.model_fields.get(key)
                if field is not None and typing.get_origin(field.annotation) is Literal:
                    return key
    return "name"


def _drop_foreign_options(
    node: dict[str, Any], key: str, value: Any, tp: Any, at: list[str], given: list[list[str]]
) -> None:
    """``node[key] = value`` is about to select another entry of the tagged union ``tp``: remove the options of
    the previous entry that the new one does not accept (all of them for a surrogate), except those set by an
    earlier override of the same command line (paths in ``given``)."""
    if key != _tag_key(tp) or key not in node:
        return
    model = _as_model(_member(tp, value))
    if model is None:
        return  # an unknown name: validation reports it
    keep = set() if issubclass(model, Surrogate) else set(model.model_fields)
    for option in [k for k in node if k != key and k not in keep]:
        if not any(p[: len(at) + 1] == [*at, option] for p in given):
            del node[option]


_TOO_DEEP = "more than a few hundred levels deep; an experiment needs a handful"


def read_yaml(path: Path) -> dict[str, Any]:
    """Safely load a YAML mapping; anything else (not UTF-8 text, not YAML, nested beyond Python's recursion limit)
    is a ``ConfigError`` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("", f"cannot read the file: {exc.strerror}")], str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [("", f"not a text file: byte {exc.start} is not UTF-8; expected a YAML experiment file")], str(path)
        ) from None
    try:
        raw = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError([("", f"nested too deeply (YAML lists or mappings {_TOO_DEEP})")], str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([("", f"{where}not valid YAML ({problem})")], str(path)) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([("", f"expected a mapping of sections at the top, got {type(raw).__name__}")], str(path))
    return raw


def validate(raw: dict[str, Any], source: str | None = None) -> ExperimentConfig:
    """Validate a raw mapping against the schema, turning pydantic's errors into a ``ConfigError``."""
    try:
        config = experiment_schema().model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_describe(e, raw) for e in exc.errors()], source) from None
    except RecursionError:
        raise ConfigError([("", f"nested too deeply (lists or mappings {_TOO_DEEP})")], source) from None
    issues = list(_non_finite(config, "", allowed=False))
    if issues:
        raise ConfigError(issues, source)
    return config


def _non_finite(value: Any, path: str, allowed: bool) -> Iterator[tuple[str, str]]:
    """(key path, message) for each infinite or NaN number in a validated config whose field does not allow it
    (``Field(allow_inf_nan=True)``): the finite-numbers rule of ``registry.OPTIONS_CONFIG`` applied to option
    models that do not use those settings (a rule's or a plugin's own model)."""
    if isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            ok = any(getattr(m, "allow_inf_nan", False) for m in field.metadata)
            yield from _non_finite(getattr(value, name), f"{path}.{name}" if path else name, ok)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _non_finite(item, f"{path}[{i}]", allowed)
    elif isinstance(value, float) and not math.isfinite(value) and not allowed:
        yield path, f"Input should be a finite number (got {value!r})"


def load_experiment(spec: str | Path | None = None, overrides: Sequence[str] = ()) -> tuple[ExperimentConfig, str]:
    """Read, override and validate an experiment; returns the config and the file it came from."""
    path = resolve_experiment(spec)
    raw = read_yaml(path)
    try:
        raw = apply_overrides(raw, overrides)
    except ConfigError as exc:
        raise exc.with_source(f"{path} (command-line override)") from None
    try:
        return validate(raw, str(path)), str(path)
    except ConfigError as exc:
        raise _blame_overrides(exc, overrides) from None


def _blame_overrides(error: ConfigError, overrides: Sequence[str]) -> ConfigError:
    """``error`` with each issue at (or under) a key set on the command line attributed to that override rather
    than to the file; the file stays the source only while some issue is the file's own."""
    keys = [(item, item.partition("=")[0].split(".")) for item in overrides]
    issues, own = [], False
    for where, message in error.issues:
        parts = re.sub(r"\[(\d+)\]", r".\1", where).split(".")
        item = next((i for i, k in reversed(keys) if parts[: len(k)] == k or k[: len(parts)] == parts), None)
        own = own or item is None
        issues.append((where, message if item is None else f"{message} (from the command-line override {item!r})"))
    return ConfigError(issues, error.source if own else "command line")


# --- turning pydantic's errors into messages about the user's keys ------------------------------

_TAG_KEYS = (NEURONS.key, "name", SYNAPSES.key, POST.key)


def _describe(error: Any, raw: Any) -> tuple[str, str]:
    """(key path in the user's terms, message) for one pydantic error."""
    path, model = _user_path(error["loc"], raw)
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "extra_forbidden":
        key = path.rsplit(".", 1)[-1]
        allowed = sorted(model.model_fields) if model is not None else []
        hint = difflib.get_close_matches(key, allowed, n=1)
        message = f"unknown key {key!r}"
        if hint:
            message += f"; did you mean {hint[0]!r}?"
        if allowed:
            message += f" (expected one of: {', '.join(allowed)})"
        return path, message
    if kind == "union_tag_invalid":
        discriminator = ctx.get("discriminator", "").strip("'")
        tag, expected = ctx.get("tag"), ctx.get("expected_tags", "")
        hint = difflib.get_close_matches(str(tag), [t.strip(" '") for t in expected.split(",")], n=1)
        message = f"unknown value {tag!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
        return f"{path}.{discriminator}" if path else discriminator, f"{message} (expected one of: {expected})"
    if kind == "union_tag_not_found":
        return path, f"missing the key {ctx.get('discriminator', '')} that says which one to use"
    if kind == "missing":
        return path, "required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    got = error.get("input")
    if not isinstance(got, (dict, list)):
        message += f" (got {got!r})"
    return path, message


def _user_path(loc: Sequence[Any], raw: Any) -> tuple[str, type[BaseModel] | None]:
    """Drop pydantic's union-member labels from ``loc``; also return the model that holds the last key."""
    parts: list[str] = []
    node: Any = raw
    model: Any = experiment_schema()
    holder: type[BaseModel] | None = model
    for item in loc:
        if isinstance(node, str) and item == node:  # shorthand ``neuron: lif`` labelled 'lif'
            model = _member(model, item)
            node = {}
            continue
        if isinstance(node, dict) and item not in node and any(node.get(k) == item for k in _TAG_KEYS):
            model = _member(model, item)
            continue
        if isinstance(item, str) and not (isinstance(node, dict) and item in node) and not isinstance(model, type):
            model = _member(model, item)
            if model is not None and isinstance(model, type) and issubclass(model, BaseModel):
                continue
        holder = _as_model(model)
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
        node = node[item] if isinstance(node, (dict, list)) and _has(node, item) else None
        model = _field_type(model, item)
    return ".".join(parts), holder


def _has(node: Any, item: Any) -> bool:
    return item in node if isinstance(node, dict) else isinstance(item, int) and 0 <= item < len(node)


def _strip(tp: Any) -> Any:
    """Remove Annotated and Optional wrappers."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin is Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
            else:
                return tp
        else:
            return tp


def _as_model(tp: Any) -> type[BaseModel] | None:
    tp = _strip(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _field_type(tp: Any, item: Any) -> Any:
    tp = _strip(tp)
    if isinstance(item, int):
        args = typing.get_args(tp)
        return args[0] if args else None
    model = _as_model(tp)
    if model is not None and item in model.model_fields:
        return model.model_fields[item].annotation
    return None


def _member(tp: Any, tag: Any) -> Any:
    """The member of a tagged union (or the single model) whose tag is ``tag``."""
    stripped = _strip(tp)
    for member in typing.get_args(stripped) or (stripped,):
        model = _as_model(member)
        if model is not None and any(
            typing.get_args(f.annotation) == (tag,) for name, f in model.model_fields.items() if name in _TAG_KEYS
        ):
            return model
    return None
