"""Small shared helpers: input checks and crash-safe files."""

from dimalib.utils.checks import check_finite, check_tensor
from dimalib.utils.io import atomic_save, load_versioned

__all__ = ["atomic_save", "check_finite", "check_tensor", "load_versioned"]
