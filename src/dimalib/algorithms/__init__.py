"""MARL learners that train in a world model's imagination (DIMA's MAPPO)."""

from dimalib.algorithms.mappo import (
    MAPPO,
    Actor,
    ActorOutput,
    Critic,
    ImaginationEnvLike,
    MAPPOConfig,
    ValueNorm,
    lambda_returns,
    ppo_losses,
)
from dimalib.algorithms.protocols import Learner

__all__ = [
    "MAPPO",
    "Actor",
    "ActorOutput",
    "Critic",
    "ImaginationEnvLike",
    "Learner",
    "MAPPOConfig",
    "ValueNorm",
    "lambda_returns",
    "ppo_losses",
]
