"""Training rules, registered under the names used in YAML (``rule.name``)."""

from ..registry import Registry
from .base import Batch, GradientRule, Rule
from .bptt import BPTT
from .dfa import DFA
from .ff import ForwardForward
from .forward_gradient import ForwardGradient
from .rate_bp import RateBP
from .sltt import SLTT
from .stdp import STDP
from .tempotron import Tempotron

RULES: Registry[Rule] = Registry("rule", key="name")
RULES.register(BPTT.name, BPTT, config=BPTT.Config)
RULES.register(SLTT.name, SLTT, config=SLTT.Config)
RULES.register(RateBP.name, RateBP, config=RateBP.Config)
RULES.register(ForwardForward.name, ForwardForward, config=ForwardForward.Config)
RULES.register(DFA.name, DFA, config=DFA.Config)
RULES.register(ForwardGradient.name, ForwardGradient, config=ForwardGradient.Config)
RULES.register(STDP.name, STDP, config=STDP.Config)
RULES.register(Tempotron.name, Tempotron, config=Tempotron.Config)

__all__ = [
    "RULES",
    "BPTT",
    "DFA",
    "SLTT",
    "STDP",
    "Tempotron",
    "Batch",
    "ForwardForward",
    "ForwardGradient",
    "GradientRule",
    "RateBP",
    "Rule",
]
