"""Registries: the map from the names used in YAML to the classes that implement them.

Adding a neuron, a surrogate, a rule or a dataset means writing one file and
adding one ``register`` line; the experiment schema is built from the registries,
so the new name is accepted in YAML with its own options validated.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, create_model

T = TypeVar("T")

OPTIONS_CONFIG = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)
"""The pydantic settings of every options model: unknown keys refused, and no infinite or NaN number unless the
field says so (``Field(allow_inf_nan=True)``, e.g. a leaky integrator's ``tau``): a non-finite option would
otherwise reach the run as NaN weights or a config that never equals itself on resume."""

_version = 0


def version() -> int:
    """A number that changes whenever any registry gains an entry (the experiment schema is rebuilt then)."""
    return _version


class Registry(Generic[T]):
    """Names to builders, plus the pydantic schema of each builder's options.

    ``kind`` names what is registered (for messages), ``key`` is the YAML field
    that selects it (``model`` for neurons, ``name`` elsewhere), and ``base`` a
    model whose fields every entry's options share (consumed by the caller, not
    passed to the builder).
    """

    def __init__(self, kind: str, key: str = "name", base: type[BaseModel] | None = None) -> None:
        self.kind = kind
        self.key = key
        self.base = base
        self._entries: dict[str, tuple[Callable[..., T], type[BaseModel]]] = {}

    def register(
        self,
        name: str,
        builder: Callable[..., T],
        config: type[BaseModel] | None = None,
        exclude: tuple[str, ...] = (),
    ) -> None:
        """Register ``builder`` under ``name``.

        Without ``config`` the schema is derived from the builder's signature
        (its annotated keyword parameters and their defaults), so the Python
        constructor and the YAML options can never drift apart. ``exclude``
        names constructor parameters that are not options (sizes inferred at
        build time).
        """
        global _version
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if config is None:
            config = model_from_signature(builder, self.key, name, exclude, self.base)
        self._entries[name] = (builder, config)
        _version += 1

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def in_order(self) -> list[str]:
        """The registered names in the order they were registered."""
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def builder(self, name: str) -> Callable[..., T]:
        return self._entries[name][0]

    def config(self, name: str) -> type[BaseModel]:
        return self._entries[name][1]

    def schema(self, default: str | None = None) -> Any:
        """A pydantic type that accepts any registered entry's options, chosen by ``key``.

        A bare string is accepted as shorthand for ``{key: string}``; with ``default``, a mapping without
        ``key`` selects that entry.
        """
        configs = tuple(c for _, c in self._entries.values())
        union = configs[0] if len(configs) == 1 else Union[configs]  # type: ignore[valid-type]
        key = self.key

        def from_string(value: Any) -> Any:
            if isinstance(value, str):
                return {key: value}
            if default is not None and isinstance(value, dict) and key not in value:
                return {key: default, **value}
            return value

        return typing.Annotated[union, Discriminator(key), BeforeValidator(from_string)]

    def build(self, config: BaseModel, **extra: Any) -> T:
        """Instantiate the entry that ``config`` selects, with ``extra`` arguments added."""
        name = getattr(config, self.key)
        shared = set(self.base.model_fields) if self.base else set()
        options = {k: getattr(config, k) for k in type(config).model_fields if k != self.key and k not in shared}
        return self.builder(name)(**options, **extra)


def model_from_signature(
    builder: Callable[..., Any],
    key: str,
    name: str,
    exclude: tuple[str, ...] = (),
    base: type[BaseModel] | None = None,
) -> type[BaseModel]:
    """A strict pydantic model (``OPTIONS_CONFIG``, or ``base``'s settings) of ``builder``'s keyword options plus
    the tag field ``key``."""
    target = builder.__init__ if inspect.isclass(builder) else builder
    hints = typing.get_type_hints(target, include_extras=True)
    fields: dict[str, Any] = {key: (Literal[name], name)}  # type: ignore[valid-type]
    for param in inspect.signature(target).parameters.values():
        if param.name in ("self", *exclude) or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    model_name = "".join(part.capitalize() for part in name.split("_")) + "Options"
    if base is not None:
        return create_model(model_name, __base__=base, **fields)  # type: ignore[call-overload]
    return create_model(  # type: ignore[call-overload]
        model_name, __config__=OPTIONS_CONFIG, **fields
    )
