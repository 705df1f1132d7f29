"""Training rules, registered under the names used in YAML (``rule.name``)."""

from ..registry import Registry
from .base import Batch, GradientRule, Rule
from .bptt import BPTT
from .rate_bp import RateBP
from .sltt import SLTT

RULES: Registry[Rule] = Registry("rule", key="name")
RULES.register(BPTT.name, BPTT, config=BPTT.Config)
RULES.register(SLTT.name, SLTT, config=SLTT.Config)
RULES.register(RateBP.name, RateBP, config=RateBP.Config)

__all__ = ["RULES", "BPTT", "SLTT", "Batch", "GradientRule", "RateBP", "Rule"]
