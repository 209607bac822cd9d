"""Old module paths of moved modules, kept importable (pickled configs name them).

dimalib 0.2 moved the dynamics model (``dimalib.diffusion``), the reward model, decoder and
ensemble (``dimalib.models``) and the normaliser (``dimalib.data.normalizer``) into
:mod:`dimalib.world_model`. Checkpoints written before pickle their configs under the old paths
(``dimalib.diffusion.denoiser.DenoiserConfig``, ...). :func:`alias_modules` makes each old path
name the *same* module object as the new one, so unpickling, ``import`` and attribute patches
behave exactly as before.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping

__all__ = ["alias_modules"]


def alias_modules(package: str, moved: Mapping[str, str]) -> None:
    """Register ``f"{package}.{old}"`` as another name of module ``new`` for each item."""
    for old, new in moved.items():
        sys.modules.setdefault(f"{package}.{old}", importlib.import_module(new))
