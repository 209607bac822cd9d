"""dimalib: composable world-model components for multi-agent RL (DIMA, arXiv 2505.20922)."""

from dimalib.spec import MultiAgentSpec

__version__ = "0.1.0.dev0"

__all__ = ["MultiAgentSpec", "__version__"]
