"""The experiment schema, and reading it from YAML with command-line overrides.

An experiment has the sections ``name``, ``seed``, ``device``, ``data``,
``network``, ``rule``, ``train`` and ``output``. Every option is validated
before anything runs; a mistake is reported as a ``ConfigError`` that names
the file, the key path and what was expected.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model, model_validator

from .datasets import DATASETS
from .errors import ConfigError
from .neurons import NEURONS
from .optim import TrainConfig
from .readouts import ReadoutSpec
from .rules import RULES
from .synapses import SYNAPSES, PoolOptions

NeuronSpec = NEURONS.schema()


def _shorthand(field: str) -> BeforeValidator:
    """Accept a bare number as ``{field: number}`` (``linear: 128``, ``pool: 2``)."""

    def expand(value: Any) -> Any:
        return {field: value} if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    return BeforeValidator(expand)


def _synapse_fields() -> dict[str, Any]:
    """One optional block key per registered synapse; its first option is the shorthand."""
    fields = {}
    for kind in SYNAPSES.names():
        options = SYNAPSES.config(kind)
        first = next(f for f in options.model_fields if f != SYNAPSES.key)
        fields[kind] = (typing.Annotated[options | None, _shorthand(first)], None)
    return fields


class _BlockBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    flatten: bool = False
    norm: Literal["batch"] | None = None
    neuron: NeuronSpec | None = None  # type: ignore[valid-type]
    pool: typing.Annotated[PoolOptions | None, _shorthand("size")] = None
    dropout: float | None = Field(None, ge=0, lt=1)

    def synapse_kind(self) -> str | None:
        """The synapse key this block sets, if any."""
        return next((k for k in SYNAPSES.names() if getattr(self, k) is not None), None)

    @model_validator(mode="after")
    def _one_role(self) -> _BlockBase:
        kinds = [k for k in SYNAPSES.names() if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(f"a block has one synapse, got {kinds}")
        if self.flatten and kinds:
            raise ValueError("`flatten` is a block of its own; put it in a separate list entry")
        if not kinds:
            if self.neuron is not None or self.norm is not None:
                raise ValueError(
                    f"`neuron` and `norm` need a synapse ({', '.join(SYNAPSES.names())}) in the same block"
                )
            if not (self.flatten or self.pool or self.dropout is not None):
                raise ValueError(f"a block needs one of: {', '.join(SYNAPSES.names())}, flatten, pool, dropout")
        return self


BlockConfig = create_model("BlockConfig", __base__=_BlockBase, **_synapse_fields())  # type: ignore[call-overload]
"""One entry of ``network.blocks``: a synapse with its norm/neuron/pool/dropout, or flatten/pool/dropout alone."""


def _as_mapping(value: Any, key: str) -> Any:
    return {key: value} if isinstance(value, str) else value


class NetworkConfig(BaseModel):
    """``network``: the default neuron of every block, the blocks in order, and the readout.

    A block's ``neuron`` overrides the default: without ``model`` its keys are
    merged into the default neuron's options, with another ``model`` it replaces it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    neuron: NeuronSpec = "lif"  # type: ignore[valid-type]
    blocks: list[BlockConfig] = Field(min_length=1)  # type: ignore[valid-type]
    readout: ReadoutSpec = "mean_membrane"  # type: ignore[valid-type]

    @model_validator(mode="before")
    @classmethod
    def _merge_block_neurons(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("blocks"), list):
            return data
        default = _as_mapping(data.get("neuron", "lif"), NEURONS.key)
        blocks = []
        for block in data["blocks"]:
            override = block.get("neuron") if isinstance(block, dict) else None
            override = _as_mapping(override, NEURONS.key)
            if isinstance(override, dict) and isinstance(default, dict):
                same_model = override.get(NEURONS.key, default.get(NEURONS.key)) == default.get(NEURONS.key)
                block = {**block, "neuron": {**default, **override} if same_model else override}
            blocks.append(block)
        return {**data, "blocks": blocks}


class OutputConfig(BaseModel):
    """``output``: where the run folder goes and what it holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dir: str | None = Field(None, description="null: <root>/<experiment name>-<date-time>")
    root: str = "runs"
    plots: bool = True
    checkpoint_every: int | None = Field(
        None, ge=1, description="also checkpoint every N batches within an epoch; null: at the end of each epoch only"
    )


DataSpec = DATASETS.schema()
RuleSpec = RULES.schema()


class ExperimentConfig(BaseModel):
    """A whole experiment, as read from YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    name: str = Field("experiment", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    data: DataSpec = "digits"  # type: ignore[valid-type]
    network: NetworkConfig
    rule: RuleSpec = "bptt"  # type: ignore[valid-type]
    train: TrainConfig = TrainConfig()
    output: OutputConfig = OutputConfig()


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
    return parsed


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``raw`` with each ``key.path=value`` set (list entries by index: ``network.blocks.0.linear=64``)."""
    import copy

    raw = copy.deepcopy(raw)
    for path, value in parse_overrides(overrides):
        node: Any = raw
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
                node[index] = value
            else:
                if isinstance(node, dict) and not isinstance(node.get(index), (dict, list)):
                    node[index] = {} if node.get(index) is None else {"name": node[index]}
                node = node[index]
    return raw


def read_yaml(path: Path) -> dict[str, Any]:
    """Safely load a YAML mapping; anything else is a ``ConfigError`` naming the file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([("", f"cannot read the file: {exc.strerror}")], str(path)) from None
    try:
        raw = yaml.safe_load(text)
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
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_describe(e, raw) for e in exc.errors()], source) from None


def load_experiment(spec: str | Path | None = None, overrides: Sequence[str] = ()) -> tuple[ExperimentConfig, str]:
    """Read, override and validate an experiment; returns the config and the file it came from."""
    path = resolve_experiment(spec)
    raw = read_yaml(path)
    try:
        raw = apply_overrides(raw, overrides)
    except ConfigError as exc:
        raise exc.with_source(f"{path} (command-line override)") from None
    return validate(raw, str(path)), str(path)


# --- turning pydantic's errors into messages about the user's keys ------------------------------

_TAG_KEYS = (NEURONS.key, "name", SYNAPSES.key)


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
    model: Any = ExperimentConfig
    holder: type[BaseModel] | None = ExperimentConfig
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
