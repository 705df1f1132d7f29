"""The experiment schema: every class of mistake gets one clear message naming the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from snnlab.cli import app
from snnlab.config import apply_overrides, load_experiment, validate
from snnlab.errors import ConfigError

runner = CliRunner()


def write(tmp_path: Path, raw: Any, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return path


def check_error(tmp_path: Path, raw: Any, *expected: str) -> str:
    """`snnlab check` on ``raw`` exits with 2 and prints one message holding the file and ``expected``."""
    path = write(tmp_path, raw)
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2, result.output
    message = result.output
    assert "Traceback" not in message
    assert str(path) in message
    for text in expected:
        assert text in message, message
    return message


def test_quickstart_is_valid() -> None:
    """The bundled quickstart validates and resolves by name as well as by path."""
    cfg, source = load_experiment(None)
    assert cfg.name == "quickstart" and Path(source).name == "quickstart.yaml"
    assert load_experiment(Path(__file__).parents[1] / "experiments" / "quickstart.yaml")[0] == cfg


def test_unknown_key(tmp_path: Path, quick_raw: dict) -> None:
    """A misspelt key is named with its path and the closest valid key."""
    quick_raw["network"]["neuron"]["tua"] = 2.0
    check_error(tmp_path, quick_raw, "network.neuron.tua", "did you mean 'tau'")


def test_unknown_top_level_section(tmp_path: Path, quick_raw: dict) -> None:
    quick_raw["trian"] = {"epochs": 1}
    check_error(tmp_path, quick_raw, "trian", "did you mean 'train'")


def test_wrong_type(tmp_path: Path, quick_raw: dict) -> None:
    """A value of the wrong type names the key, the expectation and the value given."""
    quick_raw["train"]["epochs"] = "many"
    check_error(tmp_path, quick_raw, "train.epochs", "valid integer", "'many'")


def test_out_of_range(tmp_path: Path, quick_raw: dict) -> None:
    quick_raw["network"]["neuron"]["surrogate"]["alpha"] = -1
    check_error(tmp_path, quick_raw, "network.neuron.surrogate.alpha", "greater than 0")


@pytest.mark.parametrize(
    ("section", "value", "path", "expected"),
    [
        ("neuron", {"model": "lifx"}, "network.neuron.model", "'lif'"),
        ("rule", {"name": "bpt"}, "rule.name", "'bptt'"),
        ("data", {"name": "mnist-digits"}, "data.name", "'digits'"),
    ],
)
def test_unknown_name(tmp_path: Path, quick_raw: dict, section: str, value: dict, path: str, expected: str) -> None:
    """An unknown neuron, rule or dataset lists the names that exist."""
    if section == "neuron":
        quick_raw["network"]["neuron"] = value
    else:
        quick_raw[section] = value
    check_error(tmp_path, quick_raw, path, "unknown value", expected)


def test_sizes_do_not_chain(tmp_path: Path, quick_raw: dict) -> None:
    """A Linear after a convolution without flatten names the block and says what to add."""
    quick_raw["data"]["flatten"] = False
    quick_raw["network"]["blocks"] = [{"conv": {"out_channels": 4, "kernel_size": 3}}, {"linear": 10}]
    check_error(tmp_path, quick_raw, "network.blocks[1].linear", "flatten")


def test_declared_in_features_must_match(tmp_path: Path, quick_raw: dict) -> None:
    quick_raw["network"]["blocks"][1] = {"linear": {"out_features": 10, "in_features": 100}}
    check_error(tmp_path, quick_raw, "network.blocks[1].linear", "in_features is 100", "produces 128")


def test_output_size_must_match_classes(tmp_path: Path, quick_raw: dict) -> None:
    quick_raw["network"]["blocks"][1] = {"linear": 12}
    check_error(tmp_path, quick_raw, "network.blocks[1]", "10 classes")


def test_block_override_is_validated_in_place(tmp_path: Path, quick_raw: dict) -> None:
    """A per-block neuron override is merged into the default and checked at its own path."""
    quick_raw["network"]["blocks"][0]["neuron"] = {"threshold": "high"}
    check_error(tmp_path, quick_raw, "network.blocks[0].neuron.threshold")


def test_block_neuron_override_merges(quick_raw: dict) -> None:
    quick_raw["network"]["blocks"][0]["neuron"] = {"threshold": 0.5}
    cfg = validate(quick_raw)
    assert cfg.network.blocks[0].neuron.threshold == 0.5
    assert cfg.network.blocks[0].neuron.tau == quick_raw["network"]["neuron"]["tau"]


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    check_error(tmp_path, "name: x\nnetwork: {blocks: [\n", "not valid YAML", "line")


def test_yaml_cannot_build_python_objects(tmp_path: Path) -> None:
    """Safe loading only: a tag that would construct a Python object is refused."""
    check_error(tmp_path, "name: !!python/object/apply:os.system ['echo hacked']\n", "not valid YAML")


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    check_error(tmp_path, "- a\n- b\n", "mapping")


def test_missing_file_lists_bundled_experiments(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml" in result.output and "quickstart" in result.output


def test_overrides_set_nested_and_list_keys(quick_raw: dict) -> None:
    raw = apply_overrides(quick_raw, ["train.epochs=7", "network.blocks.0.linear=32", "rule.name=bptt", "seed=3"])
    cfg = validate(raw)
    assert cfg.train.epochs == 7 and cfg.seed == 3
    assert cfg.network.blocks[0].linear.out_features == 32


def test_override_turns_shorthand_into_mapping(quick_raw: dict) -> None:
    """``data.encoder.gain=0.5`` on ``encoder: poisson`` keeps the name and adds the option."""
    quick_raw["data"]["encoder"] = "poisson"
    cfg = validate(apply_overrides(quick_raw, ["data.encoder.gain=0.5"]))
    assert cfg.data.encoder.name == "poisson" and cfg.data.encoder.gain == 0.5


@pytest.mark.parametrize("override", ["train.epochs", "=3", "network.blocks.9.linear=3"])
def test_bad_override(tmp_path: Path, quick_raw: dict, override: str) -> None:
    path = write(tmp_path, quick_raw)
    with pytest.raises(ConfigError) as info:
        load_experiment(path, [override])
    assert str(path) in str(info.value)


def test_run_help_explains_options() -> None:
    for args in (["--help"], ["run", "--help"], ["check", "--help"], ["eval", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert "KEY.PATH=VALUE" in runner.invoke(app, ["run", "--help"]).output


def test_neuron_parameters_that_cannot_work(tmp_path: Path, quick_raw: dict) -> None:
    """tau < dt under Euler gives a negative decay: refused at the neuron's key, not deep in torch."""
    quick_raw["network"]["neuron"].update(discretization="euler", tau=0.5)
    check_error(tmp_path, quick_raw, "network.neuron", "beta=-1.0")
