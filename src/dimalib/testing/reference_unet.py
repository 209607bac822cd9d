"""The denoiser's U-Net computed the plain way: the reference of its equivalence tests and of
``benchmarks/bench_unet.py``.

:class:`~dimalib.world_model.dynamics.unet1d.UNet1D` computes short-sequence convolutions as
banded matrix products and projects the condition for all its norms at once (issue "speed").
:func:`reference_unet_forward` computes the same function from the same parameters as the U-Net
was written before: ``F.conv1d`` for every convolution, each norm's own linear layer, and
``x·(1 + γ) + β`` as two operations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dimalib.world_model.dynamics.unet1d import AdaGroupNorm, ResBlock1D, UNet1D

__all__ = ["reference_unet_forward"]


def _conv(m: nn.Module, h: torch.Tensor) -> torch.Tensor:
    assert isinstance(m, nn.Conv1d)
    return F.conv1d(h, m.weight, m.bias, stride=m.stride, padding=m.padding)


def _norm(m: AdaGroupNorm, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    h = F.group_norm(h, m.num_groups, eps=1e-5)
    scale, shift = m.linear(cond)[:, :, None].chunk(2, dim=1)  # (B, C, 1) each
    return h * (1 + scale) + shift


def _block(b: nn.Module, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    assert isinstance(b, ResBlock1D)
    out = _conv(b.conv1, F.silu(_norm(b.norm1, h, cond)))
    out = _conv(b.conv2, F.silu(_norm(b.norm2, out, cond)))
    skip = h if isinstance(b.skip, nn.Identity) else _conv(b.skip, h)
    return skip + out


def reference_unet_forward(unet: UNet1D, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """``unet(x, cond)`` computed with ``F.conv1d`` and one linear layer per norm.

    Args:
        unet: the network whose parameters are used.
        x: ``[B, C_in, T]``.
        cond: ``[B, cond_dim]``.

    Returns:
        ``[B, C_out, T]``, equal to ``unet(x, cond)`` up to float round-off.
    """
    h = _conv(unet.conv_in, x)  # (B, C, T)
    skips = []
    for i, blocks in enumerate(unet.down):
        for b in blocks:  # type: ignore[attr-defined]
            h = _block(b, h, cond)
        skips.append(h)
        if i < len(unet.downsample):
            h = _conv(unet.downsample[i], h)
    for b in unet.mid:
        h = _block(b, h, cond)
    for blocks, skip in zip(unet.up, reversed(skips), strict=True):
        if h.shape[-1] != skip.shape[-1]:
            h = F.interpolate(h, size=skip.shape[-1], mode="nearest")
        h = torch.cat([h, skip], dim=1)
        for b in blocks:  # type: ignore[attr-defined]
            h = _block(b, h, cond)
    return _conv(unet.conv_out, F.silu(unet.norm_out(h)))
