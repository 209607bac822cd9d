"""A 1-D U-Net over the time axis, conditioned through adaptive group normalisation.

Paper App. G.1 and Table 3: DIAMOND's U-Net made 1-D; residual blocks [2, 2, 2] of [64, 64, 64]
channels; the condition vector (noise level + action embedding, width 256) modulates every block's
group norms. The sequence axis holds the context states followed by the noisy next state; the
features of a state are the channels.

Speed (dimalib, same function and parameters): the sequence is short (``L + 1 = 4`` steps at
App. G.1's context), where a convolution library spends more time on set-up than on arithmetic.
On the CPU :class:`SeqConv1d` computes such a convolution as one matrix product with a banded
weight matrix built from the kernel, and :class:`UNet1D` projects the condition for all its group
norms in one matrix product per forward (docs/benchmarks.md "Denoiser U-Net on short sequences").
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from dimalib.utils.linear import Linear, linear

__all__ = ["AdaGroupNorm", "FourierFeatures", "ResBlock1D", "SeqConv1d", "UNet1D"]

GROUP_SIZE = 32  # channels per group in every group norm, as DIAMOND
#: Longest input sequence :class:`SeqConv1d` computes as one matrix product on the CPU. Measured
#: (2-core AMD EPYC, AVX2, 1 thread, batches 64-600, 32-64 channels): 1.5-4.8x faster than
#: ``F.conv1d`` (oneDNN) at 2 and 4 steps, forward and backward; slower from 8 steps on, where
#: the banded matrix's zeros cost more than the set-up they save.
DENSE_MAX_LEN = 4


class SeqConv1d(nn.Conv1d):
    """``nn.Conv1d`` (same parameters, state dict and result) that computes short sequences as one
    matrix product: ``[B, C·T] @ [O·T', C·T]ᵀ -> [B, O, T']`` (a linear layer, through
    :func:`dimalib.utils.linear.linear` while ``onednn`` is True).

    The ``[O·T', C·T]`` matrix holds kernel tap ``W[o, c, j]`` at row ``(o, t')`` and column
    ``(c, t)`` where ``t = t'·stride − padding + j``, and 0 elsewhere (zero padding). It is
    gathered from the kernel on every call, so gradients reach ``weight`` and ``bias`` as through
    ``F.conv1d``; inside :meth:`UNet1D.frozen` (the sampler's steps, where the parameters do not
    change) it is gathered once. Used on the CPU for inputs of at most :data:`DENSE_MAX_LEN`
    steps; otherwise, and on other devices, this is ``nn.Conv1d``.
    """

    onednn: bool = True  # the banded product through dimalib.utils.linear

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._dense_index: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor, int]] = {}
        # filled only inside UNet1D.frozen(): length -> (banded matrix, repeated bias)
        self._banded: dict[int, tuple[torch.Tensor, torch.Tensor | None]] | None = None

    def _dense(self) -> bool:
        """Whether the banded form applies: one group, no dilation, numeric zero padding (a
        ``padding="same"``/``"valid"`` layer keeps ``F.conv1d``)."""
        return (
            self.groups == 1
            and self.dilation == (1,)
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
        )

    def _index(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Gather indices of the banded matrix (into the kernel padded by one zero tap) and of the
        repeated bias, for an input of ``length`` steps; built once per length and device."""
        key = (length, str(device))
        if key not in self._dense_index:
            # plain tensors even when first called under inference_mode, so training can use them
            with torch.inference_mode(False):
                self._dense_index[key] = self._build_index(length, device)
        return self._dense_index[key]

    def _build_index(
        self, length: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        (k,), (stride,) = self.kernel_size, self.stride
        pad = cast(tuple[int], self.padding)[0]  # numeric: _dense() refuses string paddings
        out_len = (length + 2 * pad - k) // stride + 1
        t_in = torch.arange(length)[:, None]  # (T, 1)
        t_out = torch.arange(out_len)[None, :]  # (1, T')
        tap = t_in - (t_out * stride - pad)  # (T, T'): the kernel tap joining t and t'
        tap = torch.where((tap >= 0) & (tap < k), tap, k)  # k: the zero tap
        c = torch.arange(self.in_channels)[:, None, None, None]
        o = torch.arange(self.out_channels)[None, None, :, None]
        flat = (o * self.in_channels + c) * (k + 1) + tap[None, :, None, :]  # (C, T, O, T')
        flat = flat.permute(2, 3, 0, 1)  # (O, T', C, T): rows are outputs, as a linear weight
        bias_index = torch.arange(self.out_channels).repeat_interleave(out_len)  # (O·T',)
        return (
            flat.reshape(self.out_channels * out_len, -1).to(device),
            bias_index.to(device),
            out_len,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[B, C, T]`` → ``[B, O, T']``."""
        dense = x.device.type == "cpu" and x.dim() == 3 and x.shape[-1] <= DENSE_MAX_LEN
        if not (dense and self._dense()):
            return super().forward(x)
        return self._dense_forward(x)

    def _dense_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The banded-matrix convolution of ``[B, C, T]``, whatever ``T``."""
        banded, bias, out_len = self._matrices(x.shape[-1], x.device)
        flat = x.reshape(x.shape[0], -1)  # (B, C·T)
        out = linear(flat, banded, bias, onednn=self.onednn)  # (B, O·T')
        return out.view(x.shape[0], self.out_channels, out_len)  # (B, O, T')

    def _matrices(
        self, length: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """The banded ``[O·T', C·T]`` matrix and the ``[O·T']`` bias for ``length`` steps."""
        index, bias_index, out_len = self._index(length, device)
        cached = None if self._banded is None else self._banded.get(length)
        if cached is not None:
            return cached[0], cached[1], out_len
        banded = torch.take(F.pad(self.weight, (0, 1)), index)  # (O·T', C·T)
        bias = None if self.bias is None else torch.take(self.bias, bias_index)  # (O·T',)
        if self._banded is not None:
            self._banded[length] = (banded, bias)
        return banded, bias, out_len

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        return {**state, "_dense_index": {}, "_banded": None}  # caches are rebuilt on use

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_dense_index", {})
        self.__dict__.setdefault("_banded", None)


class FourierFeatures(nn.Module):
    """Random Fourier features of a scalar: ``[B] -> [B, dim]`` (DIAMOND's noise embedding)."""

    weight: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"dim: expected an even size, received {dim}")
        self.register_buffer("weight", torch.randn(1, dim // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * x[:, None] @ self.weight  # (B, dim/2)
        return torch.cat([f.cos(), f.sin()], dim=-1)


class AdaGroupNorm(nn.Module):
    """Group norm whose scale and shift come from a condition vector: ``x·(1 + γ(c)) + β(c)``."""

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.num_groups = max(1, channels // GROUP_SIZE)
        self.linear = Linear(cond_dim, 2 * channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # x: (B, C, T), cond: (B, cond_dim)
        return self.modulate(x, self.linear(cond))

    def modulate(self, x: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
        """The norm given ``projected = self.linear(cond)`` ``[B, 2C]`` (scale, then shift)."""
        x = F.group_norm(x, self.num_groups, eps=1e-5)  # (B, C, T)
        scale, shift = projected[:, :, None].chunk(2, dim=1)  # (B, C, 1) each
        return torch.addcmul(shift, x, 1 + scale)  # x·(1 + γ) + β


class ResBlock1D(nn.Module):
    """Pre-norm residual block: (AdaGN → SiLU → conv3) × 2, plus a 1×1 skip if channels change."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int) -> None:
        super().__init__()
        self.norm1 = AdaGroupNorm(in_channels, cond_dim)
        self.conv1 = SeqConv1d(in_channels, out_channels, 3, padding=1)
        self.norm2 = AdaGroupNorm(out_channels, cond_dim)
        self.conv2 = SeqConv1d(out_channels, out_channels, 3, padding=1)
        self.skip = (
            SeqConv1d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity (DIAMOND)
        nn.init.zeros_(self.conv2.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x: ``[B, C_in, T]``, cond: ``[B, cond_dim]`` → ``[B, C_out, T]``."""
        return self.modulated(x, self.norm1.linear(cond), self.norm2.linear(cond))

    def modulated(self, x: torch.Tensor, proj1: torch.Tensor, proj2: torch.Tensor) -> torch.Tensor:
        """The block given its norms' condition projections ``proj1``, ``proj2`` (``[B, 2C]``)."""
        h = self.conv1(F.silu(self.norm1.modulate(x, proj1)))
        h = self.conv2(F.silu(self.norm2.modulate(h, proj2)))
        return self.skip(x) + h


class UNet1D(nn.Module):
    """U-Net over a short sequence ``[B, C_in, T] -> [B, C_out, T]``.

    Down path: at each level ``depths[i]`` residual blocks of ``channels[i]`` channels, then a
    stride-2 convolution (not after the last level). Middle: two blocks. Up path: mirror of the
    down path; each level first upsamples (nearest) to its skip's length and concatenates it.
    """

    onednn: bool = True  # the stacked condition projection through dimalib.utils.linear

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        cond_dim: int,
        depths: Sequence[int] = (2, 2, 2),
        channels: Sequence[int] = (64, 64, 64),
    ) -> None:
        super().__init__()
        if len(depths) != len(channels) or not depths:
            raise ValueError(
                f"depths/channels: expected equal non-empty lengths, received {list(depths)} "
                f"and {list(channels)}"
            )
        self.conv_in = SeqConv1d(in_channels, channels[0], 3, padding=1)
        self.down: nn.ModuleList = nn.ModuleList()  # of ModuleList[ResBlock1D]
        self.downsample = nn.ModuleList()
        prev = channels[0]
        for i, (depth, ch) in enumerate(zip(depths, channels, strict=True)):
            blocks = [ResBlock1D(prev if j == 0 else ch, ch, cond_dim) for j in range(depth)]
            self.down.append(nn.ModuleList(blocks))
            prev = ch
            if i < len(depths) - 1:
                self.downsample.append(SeqConv1d(ch, ch, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([ResBlock1D(prev, prev, cond_dim) for _ in range(2)])
        self.up = nn.ModuleList()
        for depth, ch in zip(reversed(depths), reversed(channels), strict=True):
            blocks = [ResBlock1D(prev + ch if j == 0 else ch, ch, cond_dim) for j in range(depth)]
            self.up.append(nn.ModuleList(blocks))
            prev = ch
        self.norm_out = nn.GroupNorm(max(1, prev // GROUP_SIZE), prev)
        self.conv_out = SeqConv1d(prev, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # the network starts by predicting 0
        nn.init.zeros_(self.conv_out.bias)  # type: ignore[arg-type]
        # set only inside frozen(): the stacked condition projections (_stack_projections)
        self._stacked: tuple[torch.Tensor, torch.Tensor, list[int]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_stacked": None}  # a copy starts outside frozen()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_stacked", None)  # pickled before the frozen() cache

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Within this block the parameters are promised not to change and no gradient is
        recorded (several forwards of one sampling loop): the convolutions' matrices are built
        once and reused. On leaving, they are dropped.

        Raises:
            RuntimeError: entered while gradients are enabled.
        """
        if torch.is_grad_enabled():
            raise RuntimeError("UNet1D.frozen: expected no gradient recording (inference_mode)")
        if self._stacked is not None:  # nested: the outer block's matrices hold
            yield
            return
        convs = [m for m in self.modules() if isinstance(m, SeqConv1d)]
        for conv in convs:
            conv._banded = {}
        self._stacked = self._stack_projections()
        try:
            yield
        finally:
            for conv in convs:
                conv._banded = None
            self._stacked = None

    def _stack_projections(self) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Every norm's condition projection stacked in forward order: ``[Σ2C, cond_dim]``
        weight, ``[Σ2C]`` bias and the per-norm sizes."""
        norms = self._norms()
        weight = torch.cat([n.linear.weight for n in norms])  # (Σ2C, cond_dim)
        bias = torch.cat([cast(torch.Tensor, n.linear.bias) for n in norms])
        return weight, bias, [n.linear.out_features for n in norms]

    def _norms(self) -> list[AdaGroupNorm]:
        """Every block's two group norms in forward order (the order of the stacked projection)."""
        return [n for b in self._blocks() for n in (b.norm1, b.norm2)]

    def _blocks(self) -> list[ResBlock1D]:
        """Every residual block in forward order (down, middle, up)."""
        levels = [*self.down, self.mid, *self.up]
        return [cast(ResBlock1D, b) for level in levels for b in cast(nn.ModuleList, level)]

    def condition_weights(self) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Every group norm's condition projection stacked in forward order: the ``[Σ2C,
        cond_dim]`` weight, the ``[Σ2C]`` bias and the per-norm sizes (built once inside
        :meth:`frozen`). ``linear(cond, weight, bias)`` is what :meth:`forward_projected` takes."""
        return self._stack_projections() if self._stacked is None else self._stacked

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x: ``[B, C_in, T]``, cond: ``[B, cond_dim]`` → ``[B, C_out, T]``."""
        # every norm's (scale, shift) from one product with the stacked projection weights;
        # the same numbers as each norm's own linear layer
        weight, bias, sizes = self.condition_weights()
        return self._run(x, linear(cond, weight, bias, onednn=self.onednn), sizes)

    def forward_projected(self, x: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
        """The U-Net given every norm's condition projection: x ``[B, C_in, T]``, projected
        ``[B, Σ2C]`` (``linear(cond, *condition_weights()[:2])``) → ``[B, C_out, T]``."""
        if self._stacked is not None:
            sizes = self._stacked[2]
        else:  # the sizes only: no stacked copy of the weights
            sizes = [n.linear.out_features for n in self._norms()]
        if projected.dim() != 2 or projected.shape[1] != sum(sizes):
            raise ValueError(
                f"projected: expected [B, {sum(sizes)}], received {list(projected.shape)}"
            )
        return self._run(x, projected, sizes)

    def _run(self, x: torch.Tensor, projected: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """x ``[B, C_in, T]``, projected ``[B, Σ2C]`` split by ``sizes`` → ``[B, C_out, T]``."""
        parts = iter(projected.split(sizes, dim=1))  # (B, 2C) each

        def run(block: nn.Module, h: torch.Tensor) -> torch.Tensor:
            return cast(ResBlock1D, block).modulated(h, next(parts), next(parts))

        h = self.conv_in(x)  # (B, C, T)
        skips = []
        for i, blocks in enumerate(self.down):
            for block in blocks:  # type: ignore[attr-defined]
                h = run(block, h)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)  # (B, C, ceil(T/2))
        for block in self.mid:
            h = run(block, h)
        for blocks, skip in zip(self.up, reversed(skips), strict=True):
            if h.shape[-1] != skip.shape[-1]:
                h = F.interpolate(h, size=skip.shape[-1], mode="nearest")
            h = torch.cat([h, skip], dim=1)
            for block in blocks:  # type: ignore[attr-defined]
                h = run(block, h)
        return self.conv_out(F.silu(self.norm_out(h)))
