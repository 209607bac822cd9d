"""EDM preconditioning (Karras et al. 2022), as DIMA uses it (paper App. B, eq. 10 and 14–18).

The denoiser is written ``D(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x; c_noise(σ))`` where ``F`` is the
network. The coefficients keep the network's input and training target at unit variance for data
of standard deviation ``σ_data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

__all__ = ["EDMCoefficients", "EDMConfig", "EDMPreconditioner"]


@dataclass(frozen=True)
class EDMConfig:
    """EDM constants. Defaults: paper App. B (σ_data, eq. 14–17) and eq. 18 (training σ law)."""

    sigma_data: float = 0.5  # App. B: "σ_data = 0.5 in our experiment hyperparameter setup"
    p_mean: float = -0.4  # eq. 18: ln σ ~ N(P_mean, P_std²)
    p_std: float = 1.2  # eq. 18

    def __post_init__(self) -> None:
        if not self.sigma_data > 0:
            raise ValueError(f"sigma_data: expected > 0, received {self.sigma_data}")
        if not self.p_std > 0:
            raise ValueError(f"p_std: expected > 0, received {self.p_std}")


class EDMCoefficients(NamedTuple):
    """The four preconditioning coefficients, each shaped like the σ they came from."""

    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


class EDMPreconditioner:
    """Coefficients, training noise levels and loss weights of EDM.

    Every method broadcasts over a batch: pass ``sigma`` of any shape, get tensors of that shape.

    Examples:
        >>> edm = EDMPreconditioner()
        >>> c = edm.coefficients(torch.tensor([0.5]))
        >>> round(float(c.c_skip), 3), round(float(c.c_out), 4)
        (0.5, 0.3536)
    """

    def __init__(self, config: EDMConfig | None = None) -> None:
        self.config = config or EDMConfig()

    @property
    def sigma_data(self) -> float:
        return self.config.sigma_data

    def coefficients(self, sigma: torch.Tensor) -> EDMCoefficients:
        """c_skip, c_out, c_in, c_noise of eq. 14–17 for noise level ``sigma`` (any shape, > 0)."""
        sd2 = self.sigma_data**2
        total = sigma.square() + sd2  # σ² + σ_data²
        c_skip = sd2 / total  # eq. 17
        c_out = sigma * self.sigma_data / total.sqrt()  # eq. 15
        c_in = 1.0 / total.sqrt()  # eq. 14
        c_noise = sigma.log() / 4.0  # eq. 16
        return EDMCoefficients(c_skip, c_out, c_in, c_noise)

    def sample_sigma(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``[batch_size]`` training noise levels with ln σ ~ N(P_mean, P_std²) (eq. 18)."""
        z = torch.randn(batch_size, device=device, dtype=dtype, generator=generator)
        return (self.config.p_mean + self.config.p_std * z).exp()

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """λ(σ) = (σ² + σ_data²) / (σ·σ_data)² = 1 / c_out², EDM's weighting of ||D − x₀||².

        Training ``F`` on the target ``(x₀ − c_skip·x)/c_out`` with a plain MSE is the same as
        minimising ``λ(σ)·||D(x; σ) − x₀||²`` — the form DIAMOND and DIMA's code use.
        """
        sd2 = self.sigma_data**2
        return (sigma.square() + sd2) / (sigma * self.sigma_data).square()

    def network_target(
        self, clean: torch.Tensor, noisy: torch.Tensor, coeffs: EDMCoefficients
    ) -> torch.Tensor:
        """``(x₀ − c_skip·x_σ) / c_out``: what ``F`` must output for ``D`` to return ``x₀``."""
        return (clean - coeffs.c_skip * noisy) / coeffs.c_out

    def denoised(
        self, noisy: torch.Tensor, network_output: torch.Tensor, coeffs: EDMCoefficients
    ) -> torch.Tensor:
        """``D = c_skip·x_σ + c_out·F`` (eq. 10)."""
        return coeffs.c_skip * noisy + coeffs.c_out * network_output
