"""Fused optimiser kernels where torch has them, and loading optimiser states across kernels.

torch's for-loop Adam/AdamW (its CPU default) runs a dozen ops per parameter tensor and reads the
step count back to the host for each; ``fused=True`` runs one kernel per step. CUDA has fused
Adam/AdamW in every torch dimalib supports, the CPU from torch 2.4 on.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["fused_available", "load_optimizer_state"]

_FLAGS = ("fused", "foreach")
_CPU_FUSED = tuple(int(n) for n in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 4)


def fused_available(device: torch.device | str) -> bool:
    """Whether ``torch.optim.Adam``/``AdamW`` accept ``fused=True`` for parameters on ``device``.

    Examples:
        >>> fused_available("cuda")
        True
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return True
    if kind == "cpu":
        return _CPU_FUSED
    return False


def load_optimizer_state(optim: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """``optim.load_state_dict`` of a copy of ``state`` that keeps ``optim``'s own ``fused`` and
    ``foreach`` flags, so a state saved with another kernel (an older checkpoint, another device)
    is placed for this one: torch moves the ``step`` counts according to the *saved* flags.

    The copy also keeps two optimisers from sharing moment tensors.

    Raises:
        ValueError: ``state`` has another number of parameter groups than ``optim``.
    """
    saved = copy.deepcopy(dict(state))
    groups = saved.get("param_groups", [])
    if len(groups) != len(optim.param_groups):
        raise ValueError(
            f"state: expected {len(optim.param_groups)} parameter group(s), received {len(groups)}"
        )
    for mine, theirs in zip(optim.param_groups, groups, strict=True):
        for flag in _FLAGS:
            if flag in mine:
                theirs[flag] = mine[flag]
    optim.load_state_dict(saved)
