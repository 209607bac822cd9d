"""Running mean/std normaliser for global states (paper §3.1, "practical techniques" (i))."""

from __future__ import annotations

import torch
from torch import nn

from dimalib.utils.checks import check_int, check_tensor

__all__ = ["RunningNormalizer"]


class RunningNormalizer(nn.Module):
    """Feature-wise running mean and variance, kept in the module's ``state_dict``.

    Statistics are merged with the parallel (Chan et al.) update, so feeding the data in one batch or
    in many gives the same result. ``normalize(x) = (x - mean) / max(std, min_std)``.

    Args:
        dim: feature size ``D``.
        min_std: floor on the standard deviation, so constant features do not blow up.
    """

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, dim: int, min_std: float = 1e-2) -> None:
        super().__init__()
        self.dim = dim = check_int("dim", dim)
        self.min_std = min_std
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge the statistics of ``x`` (``[..., D]``, finite) into the running ones."""
        check_tensor("x", x, last_dim=self.dim, floating=True, finite=True)
        x = x.reshape(-1, self.dim).to(torch.float64)
        n = x.shape[0]
        if n == 0:
            return
        batch_mean = x.mean(0)
        batch_var = x.var(0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        new_mean = self.mean + delta * (n / total)
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    @property
    def std(self) -> torch.Tensor:
        """``[D]`` standard deviation, floored at ``min_std`` (float64)."""
        return self.var.sqrt().clamp_min(self.min_std)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., D]`` → ``(x - mean) / std`` in ``x``'s dtype."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`."""
        return x * self.std.to(x.dtype) + self.mean.to(x.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, min_std={self.min_std}"
