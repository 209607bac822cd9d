"""Imagination: the world model as a batched environment, and views for common MARL APIs.

The TorchRL view lives in :mod:`dimalib.imagination.torchrl_env` (optional extra ``torchrl``).
"""

from dimalib.imagination.adapters import (
    HARLImaginationEnv,
    PettingZooImaginationEnv,
    VectorImaginationEnv,
)
from dimalib.imagination.env import ImaginationConfig, ImaginationEnv, ImaginedStep, StartContext

__all__ = [
    "HARLImaginationEnv",
    "ImaginationConfig",
    "ImaginationEnv",
    "ImaginedStep",
    "PettingZooImaginationEnv",
    "StartContext",
    "VectorImaginationEnv",
]
