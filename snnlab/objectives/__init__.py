"""Objectives, registered under the names used in YAML (``objective.name``; default ``classification``)."""

from ..registry import Registry
from .base import Objective
from .classification import Classification
from .readouts import READOUTS, MaxMembrane, MeanMembrane, Readout, SpikeCount

OBJECTIVES: Registry[Objective] = Registry("objective", key="name")
OBJECTIVES.register("classification", Classification)

__all__ = [
    "OBJECTIVES",
    "READOUTS",
    "Classification",
    "MaxMembrane",
    "MeanMembrane",
    "Objective",
    "Readout",
    "SpikeCount",
]
