"""Property-based: no malformed config makes the validator fail with anything but a ``ConfigError``.

Random values are put at random places of a valid experiment (and random YAML text and
overrides are read); every outcome must be a validated config or the documented error,
whose message names a file or key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnlab.config import ExperimentConfig, apply_overrides, read_yaml, resolve_experiment, validate
from snnlab.errors import ConfigError

BASE = yaml.safe_load(resolve_experiment(None).read_text())

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["lif", "linear", "conv", "bptt", "digits", "soft", "atan", "auto", "1e-3", "-1", "nan"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=4)
    ),
    max_leaves=12,
)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path inside a nested config, to aim mutations at."""
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += paths(v, (*prefix, i))
    return found


PATHS = paths(BASE)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def validates_or_explains(raw: Any) -> None:
    try:
        result = validate(raw, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml"), str(exc)
    else:
        assert isinstance(result, ExperimentConfig)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(PATHS), values, st.booleans()), min_size=1, max_size=4))
def test_values_anywhere_in_a_valid_config(mutations: list[tuple[tuple, Any, bool]]) -> None:
    """Replace a value, or add an unknown key beside it."""
    raw = copy.deepcopy(BASE)
    for path, value, add_key in mutations:
        if not path:
            raw = value if not add_key else {**raw, "extra": value}
            break
        node = raw
        try:
            for part in path[:-1]:
                node = node[part]
            if add_key and isinstance(node, dict):
                node[f"{path[-1]}_x"] = value
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    if not isinstance(raw, dict):
        raw = {"value": raw}
    validates_or_explains(raw)


@SETTINGS
@given(st.dictionaries(st.text(max_size=10), values, max_size=6))
def test_arbitrary_mappings(raw: dict) -> None:
    validates_or_explains(raw)


@SETTINGS
@given(st.lists(st.text(max_size=30), max_size=4))
def test_arbitrary_overrides(overrides: list[str]) -> None:
    try:
        raw = apply_overrides(BASE, overrides)
    except ConfigError:
        return
    validates_or_explains(raw)


BASE_TEXT = resolve_experiment(None).read_text()
yaml_texts = st.one_of(
    st.text(max_size=200),
    st.builds(  # the real file with a piece cut out and something typed in its place
        lambda cut, length, typed: BASE_TEXT[:cut] + typed + BASE_TEXT[cut + length :],
        st.integers(0, len(BASE_TEXT)),
        st.integers(0, 40),
        st.text(alphabet=st.sampled_from(list(":-[]{}!&*#|>'\" \n\t0123456789abc")), max_size=12),
    ),
)


@SETTINGS
@given(yaml_texts)
def test_arbitrary_yaml_text(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(text)
        try:
            raw = read_yaml(path)
        except ConfigError as exc:
            assert "fuzz.yaml" in str(exc)
            return
    validates_or_explains(raw)
