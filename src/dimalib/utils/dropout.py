"""Dropout with a cheaper mask on the CPU (a speed choice; the same distribution as ``F.dropout``).

On the CPU ``F.dropout`` draws its mask with ``Tensor.bernoulli_``, about 5 ns per element on
the development VMs: in the paper GPT's bfloat16 training step the 19 dropout masks took 76 of
348 ms (an Intel Xeon VM with AMX, 2026-12-03, ``TorchDispatchMode`` timing of every ATen call).
:func:`dropout` draws 31 uniform random bits per element instead (``int32`` ``random_()``, values
in ``[0, 2**31)``) and keeps an element where they are at least ``round(p * 2**31)``, so an
element is kept with probability ``1 - p`` to within ``2**-32``; kept elements are multiplied by
``F.dropout``'s factor (a mask in the input's dtype divided by ``1 - p``), bit for bit. The mask costs about a third of
``bernoulli_``'s (1.75 against 5.2 ms for ``[128, 30, 256]``, 2 threads).

The random stream is not ``F.dropout``'s: a seeded run draws other masks than it would with
``F.dropout`` (the same distribution). Anything other than a strided floating-point CPU tensor,
and ``torch.compile`` (the compiler fuses its own dropout), ``torch.func`` transforms and
forward-mode AD, goes to ``F.dropout`` itself; so does ``p`` of 0, of 1 or within ``2**-32`` of 1. :class:`Dropout` is
``nn.Dropout`` with that forward and a ``fast_mask`` attribute (True by default) to switch it off
per layer; :func:`set_fast_mask` switches every module of a model that has one (e.g. to compare
against ``F.dropout``, ``benchmarks/bench_reward_decoder.py --compare-dropout``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Dropout", "dropout", "set_fast_mask", "uses_fast_mask"]

_BITS = 31  # int32 ``random_()`` draws uniformly from [0, 2**31)
_compiling = getattr(torch.compiler, "is_compiling", lambda: False)  # torch < 2.3: no compiler
_WRAPPED = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
_INTERPRETERS = getattr(torch._C._functorch, "peek_interpreter_stack", None)


def uses_fast_mask(x: Tensor, p: float) -> bool:
    """Whether :func:`dropout` draws its own mask for ``x`` (else it calls ``F.dropout``)."""
    if _compiling() or not 0.0 < p < 1.0 or round(p * 2**_BITS) >= 2**_BITS:
        return False  # (p within 2**-32 of 1: the threshold would not fit an int32)
    if x.device.type != "cpu" or x.layout != torch.strided or not x.is_floating_point():
        return False
    if _WRAPPED is not None and bool(_WRAPPED(x)):
        return False
    if _INTERPRETERS is not None and _INTERPRETERS() is not None:
        return False  # inside a torch.func transform, also for tensors it does not wrap
    return int(getattr(torch.autograd.forward_ad, "_current_level", -1)) < 0


def dropout(x: Tensor, p: float = 0.5, training: bool = True, *, fast: bool = True) -> Tensor:
    """``F.dropout(x, p, training)`` with the cheaper CPU mask of the module docstring.

    Args:
        x: any shape; the output has its shape and dtype.
        p: probability of zeroing an element, in ``[0, 1]``.
        training: ``False`` returns ``x`` unchanged.
        fast: ``False`` always calls ``F.dropout`` (the layers pass their ``fast_mask`` here).

    Raises:
        ValueError: ``p`` outside ``[0, 1]``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p: expected a probability in [0, 1], received {p}")
    if not training or p == 0.0:
        return x
    if not (fast and uses_fast_mask(x, p)):
        return F.dropout(x, p, training=True)
    bits = torch.empty(x.shape, dtype=torch.int32, device=x.device).random_()  # [0, 2**31)
    keep = bits >= round(p * 2**_BITS)  # True with probability 1 - p
    scale = keep.to(x.dtype).div_(1.0 - p)  # 0 or 1/(1-p) in x's dtype, as F.dropout divides
    return x * scale  # autograd saves ``scale``: the gradient is ``grad * scale``


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose forward is :func:`dropout` (``inplace=True`` keeps ``F.dropout``).

    ``state_dict`` and ``repr`` are ``nn.Dropout``'s; ``fast_mask = False`` switches the layer
    back to ``F.dropout``.
    """

    fast_mask: bool = True

    def forward(self, input: Tensor) -> Tensor:
        if self.inplace:
            return F.dropout(input, self.p, self.training, inplace=True)
        return dropout(input, self.p, self.training, fast=self.fast_mask)


def set_fast_mask(model: nn.Module, enabled: bool) -> int:
    """Set ``fast_mask`` on every submodule of ``model`` that has the attribute (the
    :class:`Dropout` layers and modules that call :func:`dropout`); returns how many."""
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled: expected a bool, received {type(enabled).__name__}")
    count = 0
    for module in model.modules():
        if hasattr(module, "fast_mask"):
            module.fast_mask = enabled  # type: ignore[assignment]  # hasattr-checked
            count += 1
    return count
