"""A 1-D U-Net over the time axis, conditioned through adaptive group normalisation.

Paper App. G.1 and Table 3: DIAMOND's U-Net made 1-D; residual blocks [2, 2, 2] of [64, 64, 64]
channels; the condition vector (noise level + action embedding, width 256) modulates every block's
group norms. The sequence axis holds the context states followed by the noisy next state; the
features of a state are the channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AdaGroupNorm", "FourierFeatures", "ResBlock1D", "UNet1D"]

GROUP_SIZE = 32  # channels per group in every group norm, as DIAMOND


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
        self.linear = nn.Linear(cond_dim, 2 * channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # x: (B, C, T), cond: (B, cond_dim)
        x = F.group_norm(x, self.num_groups, eps=1e-5)
        scale, shift = self.linear(cond)[:, :, None].chunk(2, dim=1)  # (B, C, 1) each
        return x * (1 + scale) + shift


class ResBlock1D(nn.Module):
    """Pre-norm residual block: (AdaGN → SiLU → conv3) × 2, plus a 1×1 skip if channels change."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int) -> None:
        super().__init__()
        self.norm1 = AdaGroupNorm(in_channels, cond_dim)
        self.conv1 = nn.Conv1d(in_channels, out_channels, 3, padding=1)
        self.norm2 = AdaGroupNorm(out_channels, cond_dim)
        self.conv2 = nn.Conv1d(out_channels, out_channels, 3, padding=1)
        self.skip = (
            nn.Conv1d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity (DIAMOND)
        nn.init.zeros_(self.conv2.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x, cond)))
        h = self.conv2(F.silu(self.norm2(h, cond)))
        return self.skip(x) + h


class UNet1D(nn.Module):
    """U-Net over a short sequence ``[B, C_in, T] -> [B, C_out, T]``.

    Down path: at each level ``depths[i]`` residual blocks of ``channels[i]`` channels, then a
    stride-2 convolution (not after the last level). Middle: two blocks. Up path: mirror of the
    down path; each level first upsamples (nearest) to its skip's length and concatenates it.
    """

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
        self.conv_in = nn.Conv1d(in_channels, channels[0], 3, padding=1)
        self.down: nn.ModuleList = nn.ModuleList()  # of ModuleList[ResBlock1D]
        self.downsample = nn.ModuleList()
        prev = channels[0]
        for i, (depth, ch) in enumerate(zip(depths, channels, strict=True)):
            blocks = [ResBlock1D(prev if j == 0 else ch, ch, cond_dim) for j in range(depth)]
            self.down.append(nn.ModuleList(blocks))
            prev = ch
            if i < len(depths) - 1:
                self.downsample.append(nn.Conv1d(ch, ch, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([ResBlock1D(prev, prev, cond_dim) for _ in range(2)])
        self.up = nn.ModuleList()
        for depth, ch in zip(reversed(depths), reversed(channels), strict=True):
            blocks = [ResBlock1D(prev + ch if j == 0 else ch, ch, cond_dim) for j in range(depth)]
            self.up.append(nn.ModuleList(blocks))
            prev = ch
        self.norm_out = nn.GroupNorm(max(1, prev // GROUP_SIZE), prev)
        self.conv_out = nn.Conv1d(prev, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # the network starts by predicting 0
        nn.init.zeros_(self.conv_out.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x: ``[B, C_in, T]``, cond: ``[B, cond_dim]`` → ``[B, C_out, T]``."""
        h = self.conv_in(x)  # (B, C, T)
        skips = []
        for i, blocks in enumerate(self.down):
            for block in blocks:  # type: ignore[attr-defined]
                h = block(h, cond)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)  # (B, C, ceil(T/2))
        for block in self.mid:
            h = block(h, cond)
        for blocks, skip in zip(self.up, reversed(skips), strict=True):
            if h.shape[-1] != skip.shape[-1]:
                h = F.interpolate(h, size=skip.shape[-1], mode="nearest")
            h = torch.cat([h, skip], dim=1)
            for block in blocks:  # type: ignore[attr-defined]
                h = block(h, cond)
        return self.conv_out(F.silu(self.norm_out(h)))
