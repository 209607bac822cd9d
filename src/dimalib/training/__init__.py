"""Training loops: the world model's three update phases (Algorithm 1, Table 4)."""

from dimalib.training.world_model_trainer import WorldModelTrainer, WorldModelTrainingConfig

__all__ = ["WorldModelTrainer", "WorldModelTrainingConfig"]
