"""Data: the replay buffer and running normalisation."""

from dimalib.data.buffer import DEFAULT_CAPACITY, ReplayBuffer
from dimalib.data.normalizer import RunningNormalizer

__all__ = ["DEFAULT_CAPACITY", "ReplayBuffer", "RunningNormalizer"]
