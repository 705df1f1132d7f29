"""Issue 12, item 10: the YAML keys are listed from the command line; the docs agree with the quickstart and point
to nothing a clone lacks."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from snnlab.cli import app
from snnlab.config import load_experiment
from snnlab.neurons import NEURONS

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_options_lists_the_registries_and_their_entries() -> None:
    result = runner.invoke(app, ["options"])
    assert result.exit_code == 0, result.output
    for line in ("neuron", "lif, if, li, nonspiking", "surrogate", "rule", "bptt", "dataset", "digits"):
        assert line in result.output


def test_options_of_an_entry_give_every_key_with_type_default_and_meaning() -> None:
    result = runner.invoke(app, ["options", "neuron", "lif"])
    assert result.exit_code == 0, result.output
    assert set(NEURONS.config("lif").model_fields) - {"model"} <= set(re.findall(r"^  (\w+) ", result.output, re.M))
    assert re.search(r"reset +soft \| hard +default 'soft' +``soft`` subtracts the threshold", result.output)
    assert re.search(r"tau +float > 0 +default 2.0 +membrane time constant", result.output)
    assert re.search(r"decay_input +bool +default true", result.output)
    rule = runner.invoke(app, ["options", "rule", "bptt"]).output
    assert re.search(r"grad_clip +float \| null > 0 +default null +max gradient norm", rule)
    data = runner.invoke(app, ["options", "dataset", "digits"]).output
    assert "batch_size" in data and "time_steps" in data  # the shared data options too
    assert "out_features  int >= 1    required" in runner.invoke(app, ["options", "synapse", "linear"]).output


def test_options_of_an_unknown_registry_or_entry_name_the_choices() -> None:
    result = runner.invoke(app, ["options", "neuron", "lf"])
    assert result.exit_code == 2 and "no neuron 'lf'; one of: lif, if, li, nonspiking" in result.output
    result = runner.invoke(app, ["options", "neurons"])
    assert result.exit_code == 2 and "no registry 'neurons'" in result.output


def test_readme_python_snippet_builds_the_quickstart_neurons() -> None:
    """The snippet built `LIF()` with decay_input=True while the quickstart says false."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## From Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(code, scope)
    config, _ = load_experiment(None)
    hidden, output = scope["net"].blocks[0].neuron, scope["net"].blocks[1].neuron
    assert hidden.decay_input == config.network.neuron.decay_input == output.decay_input
    assert hidden.leak.tau == config.network.neuron.tau and hidden.reset == config.network.neuron.reset
    assert hidden.surrogate == config.network.neuron.surrogate


def test_docs_point_to_no_file_outside_the_repository() -> None:
    texts = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "snnlab").rglob("*.py")]
    for path in texts:
        text = path.read_text()
        assert "DESIGN.md" not in text and "../shared" not in text, path
