"""Training: the world model's update phases and the whole DIMA + MAPPO loop (Algorithm 1)."""

from dimalib.training.config import PRESETS, TrainerConfig, trainer_config
from dimalib.training.trainer import MetricsLogger, Trainer, evaluate_policy, make_vector_env
from dimalib.training.world_model_trainer import (
    NonFiniteTrainingError,
    WorldModelTrainer,
    WorldModelTrainingConfig,
)

__all__ = [
    "PRESETS",
    "MetricsLogger",
    "NonFiniteTrainingError",
    "Trainer",
    "TrainerConfig",
    "WorldModelTrainer",
    "WorldModelTrainingConfig",
    "evaluate_policy",
    "make_vector_env",
    "trainer_config",
]
