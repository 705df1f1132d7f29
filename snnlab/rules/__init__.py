"""Training rules, registered under the names used in YAML (``rule.name``)."""

from ..registry import Registry
from .base import Batch, GradientRule, Rule
from .bptt import BPTT

RULES: Registry[Rule] = Registry("rule", key="name")
RULES.register(BPTT.name, BPTT, config=BPTT.Config)

__all__ = ["RULES", "BPTT", "Batch", "GradientRule", "Rule"]
