"""Sampling the next state: Karras σ schedule, Euler (or Heun) steps, a reveal schedule.

DIMA's sampler (paper §3.1, App. B, E.2, Table 4) integrates the probability-flow ODE from
``σ_max`` down to 0, one denoiser evaluation per step (two with Heun). The *reveal schedule*
(:class:`~dimalib.world_model.dynamics.reveal.RevealSchedule`) says which agents' current actions each step
sees, and the *conditioning order* in which agents come:

* ``"descending"`` (paper default, Assumption 1): agent n first, agent 1 last;
* ``"ascending"``: agent 1 first;
* ``"random"``: a fresh random permutation on every call (``per_sample=True``: one per sample);
* an explicit sequence of agent indices (0-based) or names: either a permutation of all agents, or
  a sequence with one entry per denoising step that names every agent at least once (App. E.2's
  random order ``(2, 1, 1, 2)`` is written ``(1, 0, 0, 1)`` here).

With the paper's ``"sequential"`` schedule each step sees one agent, and with more steps than
agents each agent of a permutation takes ``steps // n`` consecutive steps: for n = 2 and 4 steps
the descending order is agents ``(1, 1, 0, 0)`` — the paper's ``(2, 2, 1, 1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from dimalib.utils.io import restore_fields
from dimalib.world_model.dynamics.reveal import Order, RevealSchedule, agent_schedule, check_order

__all__ = [
    "DenoiseFn",
    "EulerSampler",
    "Order",
    "SamplerConfig",
    "agent_schedule",
    "default_num_steps",
    "karras_sigmas",
]

DenoiseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``denoise(x [B, ...], sigma [B], revealed [B, n] bool) -> D(x; sigma | a^revealed) [B, ...]``."""


def default_num_steps(n_agents: int) -> int:
    """Denoising steps of Table 4: ``2n`` if ``n <= 2`` else ``n``."""
    if n_agents < 1:
        raise ValueError(f"n_agents: expected >= 1, received {n_agents}")
    return 2 * n_agents if n_agents <= 2 else n_agents


def karras_sigmas(
    num_steps: int,
    sigma_min: float = 2e-3,
    sigma_max: float = 5.0,
    rho: float = 7.0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``[num_steps + 1]`` noise levels of Karras et al. (2022, eq. 5), decreasing, ending in 0.

    ``σ_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ`` for ``i = 0..N−1``, then ``σ_N = 0``.
    With one step the schedule is ``[σ_max, 0]``.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps: expected >= 1, received {num_steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(
            f"sigma_min/sigma_max: expected 0 < sigma_min < sigma_max, "
            f"received {sigma_min} and {sigma_max}"
        )
    ramp = torch.linspace(0, 1, num_steps, device=device, dtype=torch.float64)
    if num_steps == 1:
        ramp = torch.zeros(1, device=device, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(dtype)


@dataclass(frozen=True)
class SamplerConfig:
    """Sampler settings. Defaults: Table 4 (Euler, steps 2n if n <= 2 else n) and DIAMOND/EDM σs.

    ``reveal`` is the reveal schedule: dimalib's default is the cumulative one (every agent's
    action reaches the next state; docs/design.md), ``RevealSchedule("sequential")`` is the
    paper's one agent per step (eq. 9). A denoiser trains with the draws of its config's
    schedule, so choose it before training.
    """

    num_steps: int | None = None  # None: default_num_steps(n_agents), Table 4
    sigma_min: float = 2e-3
    sigma_max: float = 5.0
    rho: float = 7.0
    order: Order = "descending"  # §3.1, Assumption 1
    per_sample_order: bool = False  # with order="random": one permutation per sample
    solver: Literal["euler", "heun"] = "euler"  # Table 4: Euler
    reveal: RevealSchedule = field(default_factory=RevealSchedule)  # cumulative (paper: eq. 9)

    def __post_init__(self) -> None:
        if self.solver not in ("euler", "heun"):
            raise ValueError(f"solver: expected 'euler' or 'heun', received {self.solver!r}")
        if self.num_steps is not None and self.num_steps < 1:
            raise ValueError(f"num_steps: expected >= 1 or None, received {self.num_steps}")
        check_order(self.order)
        if not isinstance(self.reveal, RevealSchedule):
            raise ValueError(
                f"reveal: expected a RevealSchedule, received {type(self.reveal).__name__}"
            )

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a config saved before reveal schedules existed sampled one agent per step (eq. 9)
        restore_fields(self, state, {"reveal": RevealSchedule("sequential")})


class EulerSampler:
    """Deterministic probability-flow ODE sampler whose steps see the revealed agents' actions.

    ``sample`` starts from ``randn·σ_max`` and, for each step ``i`` with revealed set ``R_i``,
    computes ``d = (x − D(x; σ_i | a^{R_i})) / σ_i`` and moves ``x ← x + (σ_{i+1} − σ_i)·d``. With
    ``solver="heun"`` a second evaluation at ``σ_{i+1}`` — with the same set ``R_i`` — corrects
    the step (skipped on the last step, where ``σ_{i+1} = 0``).
    """

    def __init__(self, config: SamplerConfig | None = None) -> None:
        self.config = config or SamplerConfig()
        self._cache: dict[object, torch.Tensor] = {}  # reveal masks of fixed orders

    def num_steps(self, n_agents: int, reveal: RevealSchedule | None = None) -> int:
        """The configured steps, else Table 4's for the schedule's units (agents or groups)."""
        reveal = self.config.reveal if reveal is None else reveal
        return self.config.num_steps or default_num_steps(reveal.units(n_agents))

    def sigmas(
        self,
        n_agents: int,
        *,
        reveal: RevealSchedule | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """``[steps + 1]`` schedule for a team of ``n_agents`` (revealed as ``reveal`` says)."""
        c = self.config
        return karras_sigmas(
            self.num_steps(n_agents, reveal),
            c.sigma_min,
            c.sigma_max,
            c.rho,
            device=device,
            dtype=dtype,
        )

    def schedule(
        self,
        n_agents: int,
        batch_size: int,
        *,
        order: Order | None = None,
        reveal: RevealSchedule | None = None,
        agent_names: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``[batch_size, steps, n_agents]`` bool: the revealed agents of every sample and step.

        ``order`` and ``reveal`` default to the config's. Schedules without a random order are
        built once per (schedule, order, team size, device) and reused, so the hot loop does
        not rebuild them.
        """
        reveal = self.config.reveal if reveal is None else reveal
        order = self.config.order if order is None else order
        names = None if agent_names is None else tuple(agent_names)
        key = None
        if order != "random":
            fixed = order if isinstance(order, str) else tuple(order)
            where = str(torch.device("cpu" if device is None else device))
            key = (reveal, fixed, n_agents, names, where)
        masks = self._cache.get(key) if key is not None else None
        if masks is None:
            masks = reveal.masks(
                n_agents,
                self.sigmas(n_agents, reveal=reveal),
                order=order,
                batch_size=batch_size,
                per_sample=self.config.per_sample_order,
                agent_names=agent_names,
                generator=generator,
                device=device,
            )
            if key is not None:
                self._cache[key] = masks
        return masks.expand(batch_size, -1, -1) if masks.dim() == 2 else masks

    def sample(
        self,
        denoise: DenoiseFn,
        shape: Sequence[int],
        n_agents: int,
        *,
        order: Order | None = None,
        reveal: RevealSchedule | None = None,
        agent_names: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Integrate from noise to a clean sample.

        Args:
            denoise: ``D(x [B, ...], sigma [B], revealed [B, n] bool) -> [B, ...]``.
            shape: sample shape ``(B, ...)``.
            n_agents: team size (sets the default step count and the schedule).
            order: conditioning order; default from the config.
            reveal: reveal schedule; default from the config.
            generator: makes the start noise (and a random order) reproducible.

        Returns:
            ``[B, ...]`` the sample at σ = 0.
        """
        shape = tuple(shape)
        batch = shape[0]
        revealed = self.schedule(
            n_agents,
            batch,
            order=order,
            reveal=reveal,
            agent_names=agent_names,
            generator=generator,
            device=device,
        )  # (B, N, n)
        sigmas = self.sigmas(
            n_agents,
            reveal=self.config.reveal if reveal is None else reveal,
            device=device,
            dtype=dtype,
        )
        x = torch.randn(shape, generator=generator, device=device, dtype=dtype) * sigmas[0]
        heun = self.config.solver == "heun"
        n_steps = sigmas.numel() - 1
        for i in range(n_steps):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            step_set = revealed[:, i]
            d = (x - denoise(x, sigma.expand(batch), step_set)) / sigma
            x_next = x + (sigma_next - sigma) * d
            if heun and i < n_steps - 1:  # σ_{i+1} > 0: second-order correction, same set
                d2 = (x_next - denoise(x_next, sigma_next.expand(batch), step_set)) / sigma_next
                x_next = x + (sigma_next - sigma) * (d + d2) / 2
            x = x_next
        return x
