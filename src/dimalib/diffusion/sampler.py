"""Sampling the next state: Karras σ schedule, Euler (or Heun) steps, one agent revealed per step.

DIMA's sampler (paper §3.1, App. B, E.2, Table 4) integrates the probability-flow ODE from
``σ_max`` down to 0. At every denoising step the denoiser sees exactly **one** agent's current
action; the *conditioning order* says which agent at which step:

* ``"descending"`` (paper default, Assumption 1): agent n first, agent 1 on the last step;
* ``"ascending"``: agent 1 first;
* ``"random"``: a fresh random permutation on every call (``per_sample=True``: one per sample);
* an explicit sequence of agent indices (0-based) or names: either a permutation of all agents, or
  a sequence with one entry per denoising step that names every agent at least once (App. E.2's
  random order ``(2, 1, 1, 2)`` is written ``(1, 0, 0, 1)`` here).

With more steps than agents, each agent of a permutation takes ``steps // n`` consecutive steps:
for n = 2 and 4 steps the descending order is agents ``(1, 1, 0, 0)`` — the paper's ``(2, 2, 1, 1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = [
    "DenoiseFn",
    "EulerSampler",
    "Order",
    "SamplerConfig",
    "agent_schedule",
    "default_num_steps",
    "karras_sigmas",
]

Order = Literal["descending", "ascending", "random"] | Sequence[int | str]
"""A conditioning order: a named order or an explicit sequence of agent indices or names."""

DenoiseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``denoise(x [B, ...], sigma [B], agent [B] long) -> D(x; sigma | agent's action) [B, ...]``."""


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


def _resolve_agent(entry: int | str, agent_names: Sequence[str] | None, n_agents: int) -> int:
    if isinstance(entry, str):
        if agent_names is None or entry not in agent_names:
            known = list(agent_names) if agent_names is not None else "indices only"
            raise ValueError(f"order: unknown agent {entry!r}; expected one of {known}")
        return list(agent_names).index(entry)
    if isinstance(entry, bool) or not isinstance(entry, int) or not 0 <= entry < n_agents:
        raise ValueError(
            f"order: unknown agent {entry!r}; expected an index in 0..{n_agents - 1} or a name"
        )
    return entry


def agent_schedule(
    order: Order,
    n_agents: int,
    num_steps: int,
    *,
    batch_size: int | None = None,
    per_sample: bool = False,
    agent_names: Sequence[str] | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Which agent's current action conditions each denoising step.

    Returns:
        ``[num_steps]`` long tensor of agent indices, or ``[batch_size, num_steps]`` when
        ``order="random"`` and ``per_sample=True``.

    Raises:
        ValueError: unknown order name, unknown or repeated agent, or a step count the order cannot
        fill (fewer steps than agents, or steps not a multiple of n for a permutation).
    """
    if n_agents < 1:
        raise ValueError(f"n_agents: expected >= 1, received {n_agents}")
    if num_steps < n_agents:
        raise ValueError(
            f"num_steps: expected at least one step per agent (>= {n_agents}), received {num_steps}"
        )

    def expand(perm: torch.Tensor) -> torch.Tensor:  # (..., n) -> (..., num_steps)
        if num_steps % n_agents != 0:
            raise ValueError(
                f"num_steps: a permutation of {n_agents} agents fills a multiple of {n_agents} "
                f"steps, received {num_steps}; pass an explicit sequence of {num_steps} agents"
            )
        return perm.repeat_interleave(num_steps // n_agents, dim=-1)

    if isinstance(order, str):
        if order == "descending":
            return expand(torch.arange(n_agents - 1, -1, -1, device=device))
        if order == "ascending":
            return expand(torch.arange(n_agents, device=device))
        if order == "random":
            if per_sample:
                if batch_size is None:
                    raise ValueError("batch_size: required with order='random', per_sample=True")
                keys = torch.rand(batch_size, n_agents, generator=generator, device=device)
                return expand(keys.argsort(dim=-1))
            return expand(torch.randperm(n_agents, generator=generator, device=device))
        raise ValueError(
            f"order: expected 'descending', 'ascending', 'random' or a sequence of agents, "
            f"received {order!r}"
        )

    agents = [_resolve_agent(e, agent_names, n_agents) for e in order]
    if len(agents) == n_agents:
        if len(set(agents)) != n_agents:
            repeated = sorted({a for a in agents if agents.count(a) > 1})
            raise ValueError(f"order: repeated agent(s) {repeated} in {list(order)}")
        return expand(torch.tensor(agents, device=device))
    if len(agents) == num_steps:
        missing = sorted(set(range(n_agents)) - set(agents))
        if missing:
            raise ValueError(f"order: agent(s) {missing} never revealed in {list(order)}")
        return torch.tensor(agents, device=device)
    raise ValueError(
        f"order: expected {n_agents} agents (a permutation) or {num_steps} entries (one per step), "
        f"received {len(agents)}"
    )


@dataclass(frozen=True)
class SamplerConfig:
    """Sampler settings. Defaults: Table 4 (Euler, steps 2n if n <= 2 else n) and DIAMOND/EDM σs."""

    num_steps: int | None = None  # None: default_num_steps(n_agents), Table 4
    sigma_min: float = 2e-3
    sigma_max: float = 5.0
    rho: float = 7.0
    order: Order = "descending"  # §3.1, Assumption 1
    per_sample_order: bool = False  # with order="random": one permutation per sample
    solver: Literal["euler", "heun"] = "euler"  # Table 4: Euler

    def __post_init__(self) -> None:
        if self.solver not in ("euler", "heun"):
            raise ValueError(f"solver: expected 'euler' or 'heun', received {self.solver!r}")
        if self.num_steps is not None and self.num_steps < 1:
            raise ValueError(f"num_steps: expected >= 1 or None, received {self.num_steps}")


class EulerSampler:
    """Deterministic probability-flow ODE sampler with one agent revealed per denoising step.

    ``sample`` starts from ``randn·σ_max`` and, for each step ``i`` with agent ``k_i``, computes
    ``d = (x − D(x; σ_i | a^{k_i})) / σ_i`` and moves ``x ← x + (σ_{i+1} − σ_i)·d``. With
    ``solver="heun"`` a second evaluation at ``σ_{i+1}`` — with the same agent ``k_i`` — corrects
    the step (skipped on the last step, where ``σ_{i+1} = 0``).
    """

    def __init__(self, config: SamplerConfig | None = None) -> None:
        self.config = config or SamplerConfig()

    def num_steps(self, n_agents: int) -> int:
        return self.config.num_steps or default_num_steps(n_agents)

    def sigmas(
        self,
        n_agents: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """``[steps + 1]`` schedule for a team of ``n_agents``."""
        c = self.config
        return karras_sigmas(
            self.num_steps(n_agents), c.sigma_min, c.sigma_max, c.rho, device=device, dtype=dtype
        )

    def schedule(
        self,
        n_agents: int,
        batch_size: int,
        *,
        order: Order | None = None,
        agent_names: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``[batch_size, steps]`` agent index per sample and step for ``order`` (default: config)."""
        agents = agent_schedule(
            self.config.order if order is None else order,
            n_agents,
            self.num_steps(n_agents),
            batch_size=batch_size,
            per_sample=self.config.per_sample_order,
            agent_names=agent_names,
            generator=generator,
            device=device,
        )
        if agents.dim() == 1:
            agents = agents.expand(batch_size, -1)
        return agents

    def sample(
        self,
        denoise: DenoiseFn,
        shape: Sequence[int],
        n_agents: int,
        *,
        order: Order | None = None,
        agent_names: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Integrate from noise to a clean sample.

        Args:
            denoise: ``D(x [B, ...], sigma [B], agent [B]) -> [B, ...]``.
            shape: sample shape ``(B, ...)``.
            n_agents: team size (sets the default step count and the order).
            order: conditioning order; default from the config.
            generator: makes the start noise (and a random order) reproducible.

        Returns:
            ``[B, ...]`` the sample at σ = 0.
        """
        shape = tuple(shape)
        batch = shape[0]
        agents = self.schedule(
            n_agents,
            batch,
            order=order,
            agent_names=agent_names,
            generator=generator,
            device=device,
        )
        sigmas = self.sigmas(n_agents, device=device, dtype=dtype)
        x = torch.randn(shape, generator=generator, device=device, dtype=dtype) * sigmas[0]
        heun = self.config.solver == "heun"
        n_steps = sigmas.numel() - 1
        for i in range(n_steps):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            agent = agents[:, i]
            d = (x - denoise(x, sigma.expand(batch), agent)) / sigma
            x_next = x + (sigma_next - sigma) * d
            if heun and i < n_steps - 1:  # σ_{i+1} > 0: second-order correction, same agent
                d2 = (x_next - denoise(x_next, sigma_next.expand(batch), agent)) / sigma_next
                x_next = x + (sigma_next - sigma) * (d + d2) / 2
            x = x_next
        return x
