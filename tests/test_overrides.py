"""Issue 12, item 4: command-line overrides that change a registry entry, and errors that name the override."""

from __future__ import annotations

import pytest

from snnlab.config import apply_overrides, load_experiment
from snnlab.errors import ConfigError
from snnlab.optim import OptimizerConfig


def test_changing_the_neuron_model_drops_the_options_it_does_not_take() -> None:
    """The README's `network.neuron.model=if` failed with "unknown key 'tau'" blaming quickstart.yaml."""
    for model in ("if", "li", "nonspiking"):
        config, _ = load_experiment(None, ["train.epochs=5", f"network.neuron.model={model}"])
        assert config.network.neuron.model == model
    config, _ = load_experiment(None, ["network.neuron.model=if"])
    assert config.network.neuron.reset == "soft" and config.network.neuron.surrogate.alpha == 2.0  # kept: IF takes them


def test_changing_the_surrogate_resets_its_options_to_the_new_defaults() -> None:
    """`alpha` means something else for each surrogate: sigmoid's default is 4, not the quickstart's atan 2."""
    config, _ = load_experiment(None, ["network.neuron.surrogate.name=sigmoid"])
    assert (config.network.neuron.surrogate.name, config.network.neuron.surrogate.alpha) == ("sigmoid", 4.0)
    for overrides in (
        ["network.neuron.surrogate.name=sigmoid", "network.neuron.surrogate.alpha=3"],
        ["network.neuron.surrogate.alpha=3", "network.neuron.surrogate.name=sigmoid"],
    ):
        config, _ = load_experiment(None, overrides)
        assert config.network.neuron.surrogate.alpha == 3.0, overrides


def test_options_given_with_the_new_model_are_kept_and_others_dropped() -> None:
    raw = {"network": {"neuron": {"model": "lif", "tau": 3.0, "threshold": 0.5}, "blocks": [{"linear": 4}]}}
    neuron = apply_overrides(raw, ["network.neuron.model=li", "network.neuron.decay_input=false"])["network"]["neuron"]
    assert neuron == {"model": "li", "tau": 3.0, "decay_input": False}
    neuron = apply_overrides(raw, ["network.neuron.tau=4", "network.neuron.model=if"])["network"]["neuron"]
    assert neuron == {"model": "if", "tau": 4, "threshold": 0.5}  # tau given on the command line: kept, then refused


def test_shorthand_neuron_becomes_a_mapping_under_its_own_key() -> None:
    """`neuron: lif` plus `network.neuron.tau=3` gives {model: lif, tau: 3}, not {name: lif, ...}."""
    raw = {"network": {"neuron": "lif", "blocks": [{"linear": 4}]}}
    assert apply_overrides(raw, ["network.neuron.tau=3"])["network"]["neuron"] == {"model": "lif", "tau": 3}


def test_an_error_from_an_override_names_the_override_not_the_file() -> None:
    with pytest.raises(ConfigError) as caught:
        load_experiment(None, ["network.neuron.model=if", "network.neuron.tau=3"])
    message = str(caught.value)
    assert "'network.neuron.tau=3'" in message and "unknown key 'tau'" in message
    assert "quickstart.yaml" not in message


def test_adamw_decays_by_default_like_pytorch_while_adam_and_sgd_do_not() -> None:
    assert OptimizerConfig(name="adamw").weight_decay == 0.01
    assert OptimizerConfig(name="adamw", weight_decay=0.0).weight_decay == 0.0
    assert OptimizerConfig(name="adam").weight_decay == 0.0 and OptimizerConfig(name="sgd").weight_decay == 0.0
    config, _ = load_experiment(None, [])
    assert config.train.optimizer.name == "adam" and config.train.optimizer.weight_decay == 0.0  # quickstart as before
