"""Training rules, registered under the names used in YAML (``rule.name``)."""

from ..registry import Registry
from .base import Batch, GradientRule, Rule
from .bptt import BPTT
from .stdp import STDP
from .tempotron import Tempotron

RULES: Registry[Rule] = Registry("rule", key="name")
RULES.register(BPTT.name, BPTT, config=BPTT.Config)
RULES.register(STDP.name, STDP, config=STDP.Config)
RULES.register(Tempotron.name, Tempotron, config=Tempotron.Config)

__all__ = ["RULES", "BPTT", "STDP", "Batch", "Tempotron", "GradientRule", "Rule"]
