"""Data: the replay buffer and its incremental checkpoint store.

``RunningNormalizer`` moved to :mod:`dimalib.world_model.normalizer` in 0.2; the old names
(``dimalib.data.RunningNormalizer``, ``dimalib.data.normalizer``) keep working.
"""

from dimalib._compat import alias_modules
from dimalib.data.buffer import DEFAULT_CAPACITY, ReplayBuffer
from dimalib.world_model.normalizer import RunningNormalizer

__all__ = ["DEFAULT_CAPACITY", "ReplayBuffer", "RunningNormalizer"]

alias_modules(__name__, {"normalizer": "dimalib.world_model.normalizer"})
