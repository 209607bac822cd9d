"""Deprecated alias of :mod:`dimalib.world_model.dynamics` (the modules moved there in 0.2).

``import dimalib.diffusion.denoiser`` and the names below keep working; new code imports from
:mod:`dimalib.world_model.dynamics` or :mod:`dimalib.world_model`.
"""

from dimalib._compat import alias_modules
from dimalib.world_model.dynamics import *  # noqa: F403
from dimalib.world_model.dynamics import __all__ as __all__

alias_modules(
    __name__,
    {
        m: f"dimalib.world_model.dynamics.{m}"
        for m in ("conditioning", "denoiser", "edm", "optimal", "reveal", "sampler", "unet1d")
    },
)
