"""Data: running normalisation and (see `buffer`) the replay buffer."""

from dimalib.data.normalizer import RunningNormalizer

__all__ = ["RunningNormalizer"]
