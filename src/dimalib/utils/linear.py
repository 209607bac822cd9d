"""Float32 linear layers through oneDNN on the CPU (a speed choice; the result is float32 math).

PyTorch sends a CPU float32 ``F.linear`` to MKL's ``sgemm``. On AMD CPUs MKL runs its AVX2 code
even where the core has AVX-512, while oneDNN (bundled with PyTorch, ``torch.backends.mkldnn``)
uses AVX-512. Measured on the 2-core Zen 5 development VM (2026-12-02, nothing else running,
``benchmarks/bench_linear.py``): float32 products of the world model's shapes ran 1.6–2.3× faster
through ``torch.ops.mkldnn._linear_pointwise`` than through ``F.linear`` at 1 thread, forward
and backward (``[3840, 256] × [256, 768]``: 95 → 209 GFLOP/s forward, 87 → 154 forward +
backward), 1.1–2.1× at 2 threads, with float32 accuracy (max error against float64 5e-5 on sums
of 256 unit-variance products, ``F.linear`` 3e-5). On CPUs where MKL uses AVX-512 the two are
expected to be close; :func:`set_onednn` switches it off.

:func:`linear` is ``F.linear`` with that routing: a float32 CPU product goes through oneDNN,
forward and backward (an autograd function whose three products, input gradient and weight
gradient included, are oneDNN products; a gradient of a gradient uses differentiable ATen
products). Anything else is ``F.linear`` itself: CUDA and other devices, other dtypes and
layouts, autocast, ``torch.compile`` (the compiler picks its own kernels), ``torch.func``
transforms and forward-mode AD, a bias that is not a 1-D ``[N]`` tensor, oneDNN switched off
(``torch.backends.mkldnn.flags(enabled=False)``) or missing, and products too small to gain
(:data:`MIN_MACS`, :data:`MIN_MACS_GRAD`). :class:`Linear` is ``nn.Linear`` with that forward
and an ``onednn`` attribute (True by default) to switch it off per layer; :func:`set_onednn`
switches every :class:`Linear` of a model (e.g. to compare against MKL,
``benchmarks/bench_linear.py``). The parameters, their names, init and ``state_dict`` are
``nn.Linear``'s, so checkpoints are the same. Results equal ``F.linear``'s to float32 rounding,
not bit for bit (another summation order). ``torch.jit.script``/``trace`` and
``torch.fx.symbolic_trace`` do not take the routing: use ``set_onednn(model, False)`` first.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx

__all__ = [
    "MIN_MACS",
    "MIN_MACS_GRAD",
    "Linear",
    "linear",
    "onednn_available",
    "set_onednn",
    "uses_onednn",
]

_OP: Any = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def onednn_available() -> bool:
    """True where PyTorch was built with oneDNN and exposes its pointwise linear operator."""
    if _OP is None or not torch.backends.mkldnn.is_available():
        return False
    try:  # the overload registry resolves lazily: a missing kernel shows up here
        _ = _OP.default
    except (AttributeError, RuntimeError):
        return False
    return True


_AVAILABLE = onednn_available()

#: Smallest product (multiply-adds, ``M·K·N``) sent to oneDNN without gradients: below it the
#: fixed cost of a oneDNN call (about 15 µs) exceeds what it saves. Measured on the Zen 5 VM
#: (quiet, 1 and 2 threads): forward break-even at 1-2 million multiply-adds (``[600, 64] ×
#: [64, 64]``, 2.5 M: 1.08× at 2 threads, 1.46× at 1; ``[64, 64] × [64, 256]``, 1 M: 0.87×).
MIN_MACS = 1 << 21
#: The same when gradients are recorded: the autograd function's backward adds two more oneDNN
#: calls and Python overhead (about 60 µs), so forward + backward breaks even near 5 million
#: multiply-adds (``[1200, 64] × [64, 64]``: 1.02×; ``[512, 128] × [128, 128]``, 8.4 M: 1.18× at
#: 2 threads, 1.54× at 1; ``[256, 128] × [128, 128]``, 4.2 M: 0.92× at 2 threads).
MIN_MACS_GRAD = 1 << 23


def _product(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x @ weight.T + bias`` by oneDNN (float32 CPU tensors)."""
    out: Tensor = _OP(x, weight, bias, "none", [], "")
    return out


def _dense(x: Tensor) -> Tensor:
    """``x`` in row-major order: oneDNN is several times slower on other strides (measured: a
    cpu-preset GPT update 4× slower when its gradients arrived strided)."""
    return x if x.is_contiguous() else x.contiguous()


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear`` whose forward and backward products run in oneDNN."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None  # type: ignore[attr-defined]
        return _product(x, weight, bias)  # (..., N)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        n_out, n_in = weight.shape
        g = _dense(grad).reshape(-1, n_out)  # (M, N)
        x2 = x.reshape(-1, n_in)  # (M, K)
        # create_graph=True (a gradient of a gradient): differentiable ATen products instead
        tracked = torch.is_grad_enabled()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            # (M, N) @ (N, K): oneDNN multiplies by the transpose of its second argument
            grad_x = g @ weight if tracked else _product(g, weight.t().contiguous(), None)
            grad_x = grad_x.reshape(x.shape)  # (..., K)
        if ctx.needs_input_grad[1]:
            # (N, M) @ (M, K), on transposed views (measured faster than on transposed copies)
            grad_w = g.t() @ x2 if tracked else _product(g.t(), x2.t(), None)  # (N, K)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)  # (N,)
        return grad_x, grad_w, grad_b


_compiling = getattr(torch.compiler, "is_compiling", lambda: False)  # torch < 2.3: no compiler
_WRAPPED = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)


def _wrapped(t: Tensor) -> bool:
    """A tensor of a ``torch.func`` transform (vmap, grad, jvp), which custom functions without
    ``setup_context`` cannot take."""
    return _WRAPPED is not None and bool(_WRAPPED(t))


def _autocast_on() -> bool:
    try:
        return bool(torch.is_autocast_enabled("cpu"))
    except TypeError:  # torch < 2.4: no device argument
        return bool(torch.is_autocast_cpu_enabled())


def _needs_grad(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, weight, bias)
    )


def _forward_ad() -> bool:
    """Inside ``torch.autograd.forward_ad.dual_level()`` (the custom function has no ``jvp``)."""
    return int(getattr(torch.autograd.forward_ad, "_current_level", -1)) >= 0


def _route(x: Tensor, weight: Tensor, bias: Tensor | None, grad: bool) -> bool:
    """The checks of :func:`uses_onednn`, given whether a gradient will be recorded."""
    if _compiling():  # first: the checks below are not all traceable
        return False
    if not (_AVAILABLE and torch.backends.mkldnn.enabled):
        return False
    if x.dim() < 2 or weight.dim() != 2:
        return False
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != weight.shape[0]):
        return False  # F.linear broadcasts other biases; oneDNN would misread them
    tensors = (x, weight) if bias is None else (x, weight, bias)
    if not all(
        t.device.type == "cpu" and t.dtype == torch.float32 and t.layout == torch.strided
        for t in tensors
    ):
        return False
    if any(_wrapped(t) for t in tensors) or _forward_ad() or _autocast_on():
        return False
    return x.numel() * weight.shape[0] >= (MIN_MACS_GRAD if grad else MIN_MACS)


def uses_onednn(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> bool:
    """Whether :func:`linear` sends this product to oneDNN: float32 strided CPU tensors, ``x`` of
    two or more dimensions, ``weight [N, K]``, ``bias`` None or ``[N]``, at least
    :data:`MIN_MACS` multiply-adds (:data:`MIN_MACS_GRAD` when a gradient will be computed),
    outside ``torch.compile``, autocast, ``torch.func`` transforms and forward-mode AD, with
    oneDNN available and enabled."""
    return _route(x, weight, bias, _needs_grad(x, weight, bias))


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, *, onednn: bool = True) -> Tensor:
    """``F.linear(x, weight, bias)``: ``x [..., K]``, ``weight [N, K]``, ``bias [N]`` ->
    ``[..., N]``, through oneDNN where :func:`uses_onednn` says so (never with
    ``onednn=False``: the layers pass their ``onednn`` flag here).

    Raises:
        ValueError: ``x``'s last dimension is not ``weight``'s second (whichever path runs).
    """
    if weight.dim() == 2 and x.dim() >= 1 and x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"x: expected last dimension {weight.shape[1]} (weight {tuple(weight.shape)}), "
            f"received shape {tuple(x.shape)}"
        )
    grad = _needs_grad(x, weight, bias)
    if not (onednn and _route(x, weight, bias, grad)):
        return F.linear(x, weight, bias)
    b = None if bias is None else _dense(bias)
    if grad:
        out: Tensor = _OneDNNLinear.apply(_dense(x), _dense(weight), b)
        return out
    return _product(_dense(x), _dense(weight), b)


class Linear(nn.Linear):
    """``nn.Linear`` whose float32 CPU product runs in oneDNN (see the module docstring).

    ``onednn = False`` on an instance gives ``F.linear`` exactly.

    Examples:
        >>> layer = Linear(256, 128)
        >>> x = torch.ones(512, 256)  # 16.8 M multiply-adds: oneDNN where available
        >>> torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-5)
        True
    """

    onednn: bool = True

    def forward(self, x: Tensor) -> Tensor:  # (..., in) -> (..., out)
        return linear(x, self.weight, self.bias, onednn=self.onednn)


def set_onednn(module: nn.Module, enabled: bool) -> int:
    """Set ``onednn`` on every submodule of ``module`` whose class declares it with a bool default
    (``onednn: bool = True``: :class:`Linear`, and modules that route their own products through
    :func:`linear`); returns how many."""
    count = 0
    for m in module.modules():
        if isinstance(getattr(type(m), "onednn", None), bool):
            setattr(m, "onednn", enabled)  # noqa: B010  (any module class declaring the flag)
            count += 1
    return count
