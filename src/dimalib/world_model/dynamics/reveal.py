"""Reveal schedules: which agents' current actions each denoising step of the sampler sees.

A reveal schedule turns a team of ``n`` agents, a conditioning order and the sampler's ``N`` noise
levels into a boolean matrix ``[N, n]`` (or ``[B, N, n]`` with per-sample random orders): row ``i``
is the *set* ``R_i`` of agents whose current action ``a^j_t`` conditions denoising step ``i``.
The denoisers pool the action tokens of exactly that set (``AgentActionEncoder.pool``), so every
schedule costs one network evaluation per step.

Kinds (``RevealSchedule.kind``):

* ``"sequential"`` — DIMA's scheme (paper eq. 9, §3.1): one agent per step,
  ``R_i = {k_i}`` with ``k_i`` from the order (:func:`~dimalib.world_model.dynamics.sampler.agent_schedule`;
  for ``n = 2`` and 4 steps the descending order is ``{1}, {1}, {0}, {0}``). Exact as published.
* ``"cumulative"`` — the set grows: agents join in the order's sequence and stay revealed. The
  number revealed at step ``i`` is ``c_i = ceil((i + 1)·n / k)`` for ``i < k`` and ``n`` after, so
  every agent is revealed within the first ``k`` steps: ``k = reveal_all_by``, or
  ``k = 1 + #{i : σ_i > reveal_all_sigma}`` (every step at ``σ_i <= reveal_all_sigma`` sees the
  whole team), or by default ``k = ceil(N / 2)`` (the first half of the steps). For ``n = 2`` and
  the default 4 steps at σ = 5, 0.84, 0.077, 0.002 the descending order gives
  ``{1}, {0, 1}, {0, 1}, {0, 1}``. An explicit per-step agent sequence ``(1, 0, 0, 1)`` gives the
  running union ``{1}, {0, 1}, {0, 1}, {0, 1}``.
* ``"joint"`` — every agent at every step: the conventional model of paper Fig. 2
  (:class:`~dimalib.world_model.dynamics.JointActionDenoiser`).
* ``"explicit"`` — ``sets``: one non-empty set of agents (indices or names) per step, every agent
  in at least one set. The order is not used.

Why the paper's scheme loses agents' effects (docs/design.md has the numbers): eq. 9 trains
``D(s_σ; σ, a^k) ≈ E[s' | s_σ, a^k]``, the other agents' current actions marginalised. When the
conditioning passes from one agent to the next, what the first agent's action determined is only
kept in the sample to the extent it already stands out of the noise; at low σ the last agent
barely moves the sample. Even the closed-form optimal denoiser of a linear system keeps a large
error floor. Conditioning on the cumulative set, with the whole team revealed while σ is still
high, reaches the joint model's floor (exactly, with the optimal denoiser).

Training draws (:meth:`RevealSchedule.training_masks`), consistent with each kind:

* sequential: ``k ~ U{0..n−1}``, one agent (eq. 9);
* joint: all agents;
* cumulative and explicit, ``train_sizes="matched"`` (default): the set size the schedule uses at
  the sampler noise level nearest to the training σ (in log σ), then a uniform subset of that
  size. The agents are uniformly random at every size, which is what makes the predictions
  invariant to the agents' labels (every order of a cumulative schedule is trained), and the
  network's capacity goes to the (σ, size) pairs the sampler asks for: with the default schedule
  most training σ fall where the whole team is revealed.
* ``train_sizes="uniform"``: a size ``m ~ U{1..n}`` at every σ, then a uniform subset (the same law
  as a random-length prefix of a random permutation); every non-empty set is trained, so any
  schedule can be sampled afterwards, at a cost in accuracy (measured: 1.5–1.75× the joint
  model's one-step error on the n = 2 linear system at 3k steps, against 1.1× for "matched";
  docs/benchmarks.md "Reveal schedules").
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from dimalib.spec import MultiAgentSpec, contiguous_groups
from dimalib.utils.checks import check_int
from dimalib.utils.io import restore_fields

__all__ = [
    "ORDER_NAMES",
    "REVEAL_KINDS",
    "Order",
    "RevealKind",
    "RevealSchedule",
    "agent_schedule",
    "check_order",
    "contiguous_groups",
]

Order = Literal["descending", "ascending", "random"] | Sequence[int | str]
"""A conditioning order: a named order or an explicit sequence of agent indices or names."""


ORDER_NAMES = ("descending", "ascending", "random")


def check_order(order: object, argument: str = "order") -> None:
    """Raise ``ValueError`` unless ``order`` has the form of an :data:`Order` (a known name, or a
    non-empty sequence of agent indices or names). Which agents exist is checked when the order
    meets a team (:func:`agent_schedule`)."""
    if isinstance(order, str):
        if order not in ORDER_NAMES:
            raise ValueError(
                f"{argument}: expected one of {list(ORDER_NAMES)} or a sequence of agents, "
                f"received {order!r}"
            )
        return
    if not isinstance(order, Sequence) or len(order) == 0:
        raise ValueError(
            f"{argument}: expected one of {list(ORDER_NAMES)} or a non-empty sequence of agent "
            f"indices or names, received {order!r}"
        )
    for entry in order:
        if isinstance(entry, bool) or not isinstance(entry, (int, str)):
            raise ValueError(
                f"{argument}: expected agent indices or names, received {entry!r} in {order!r}"
            )


def _resolve_agent(
    entry: int | str, agent_names: Sequence[str] | None, n_agents: int, argument: str = "order"
) -> int:
    if isinstance(entry, str):
        if agent_names is None or entry not in agent_names:
            known = list(agent_names) if agent_names is not None else "indices only"
            raise ValueError(f"{argument}: unknown agent {entry!r}; expected one of {known}")
        return list(agent_names).index(entry)
    if isinstance(entry, bool) or not isinstance(entry, int) or not 0 <= entry < n_agents:
        raise ValueError(
            f"{argument}: unknown agent {entry!r}; expected an index in 0..{n_agents - 1} or a name"
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


RevealKind = Literal["sequential", "cumulative", "joint", "explicit"]
REVEAL_KINDS: tuple[RevealKind, ...] = ("sequential", "cumulative", "joint", "explicit")


def _agent_sets(
    name: str, value: Any, expected: str, where: str
) -> tuple[tuple[int | str, ...], ...]:
    """``value`` as a tuple of non-empty tuples of agents, else ``ValueError`` naming ``name``."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) == 0:
        raise ValueError(f"{name}: expected {expected}, received {value!r}")
    out = []
    for i, entry in enumerate(value):
        if isinstance(entry, (str, int)) or len(entry) == 0:
            raise ValueError(
                f"{name}: expected a non-empty sequence of agents {where} {i}, received {entry!r}"
            )
        out.append(tuple(entry))
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _membership(
    groups: tuple[tuple[int | str, ...], ...], n_agents: int, agent_names: tuple[str, ...] | None
) -> torch.Tensor:
    """``[G, n]`` bool membership of a partition, checked; built once per (groups, team): the
    training draws ask for it at every update. Callers must not modify the returned tensor."""
    owner: dict[int, int] = {}
    for g, members in enumerate(groups):
        for entry in members:
            j = _resolve_agent(entry, agent_names, n_agents, argument="groups")
            if j in owner:
                raise ValueError(f"groups: agent {entry!r} is in more than one group")
            owner[j] = g
    missing = [j for j in range(n_agents) if j not in owner]
    if missing:
        raise ValueError(
            f"groups: expected every agent in one group, agent(s) {missing} are in none"
        )
    out = torch.zeros(len(groups), n_agents, dtype=torch.bool)
    out[list(owner.values()), list(owner.keys())] = True
    return out


@dataclass(frozen=True)
class RevealSchedule:
    """Which agents' current actions each denoising step sees (see the module docstring).

    Args:
        kind: ``"sequential"`` (paper eq. 9), ``"cumulative"`` (dimalib's default: every agent's
            action reaches the next state, docs/design.md), ``"joint"`` or ``"explicit"``.
        reveal_all_by: cumulative only: every agent revealed within the first ``k`` steps.
        reveal_all_sigma: cumulative only: every step with ``σ_i <= reveal_all_sigma`` sees every
            agent (not with ``reveal_all_by``).
        sets: explicit only: one set of agents (indices or names) per denoising step.
        train_sizes: cumulative and explicit: the set size the schedule uses at the nearest
            sampler σ (``"matched"``, default) or uniform sizes at every σ (``"uniform"``).
        groups: a partition of the team into agent groups (agent indices or names, every agent
            in exactly one group). The schedule then runs over the groups as if each were one
            agent — orders and explicit sets name group *indices*, a step reveals whole groups,
            training draws unions of whole groups — and the sampler's default number of
            denoising steps follows the number of groups (``default_num_steps(G)``), so the
            cost of an imagined step no longer grows with the number of agents (issue "scale";
            the paper's §6 names grouping as future work). An int ``k``: ``k`` groups of
            consecutive agents (:func:`contiguous_groups`). ``"spec"``: the team's named groups
            (``MultiAgentSpec.groups``), taken when the schedule meets its team
            (:meth:`for_team`; the denoisers do it). None: one group per agent.

    Examples:
        >>> RevealSchedule("cumulative").masks(2, torch.tensor([5.0, 0.84, 0.08, 0.002, 0.0]))
        tensor([[False,  True],
                [ True,  True],
                [ True,  True],
                [ True,  True]])
    """

    kind: RevealKind = "cumulative"
    reveal_all_by: int | None = None
    reveal_all_sigma: float | None = None
    sets: tuple[tuple[int | str, ...], ...] | None = None
    train_sizes: Literal["matched", "uniform"] = "matched"
    groups: tuple[tuple[int | str, ...], ...] | int | Literal["spec"] | None = None

    def __post_init__(self) -> None:
        expected = "a partition of the agents, a positive number of groups, 'spec' or None"
        if isinstance(self.groups, (str, bool)):
            if self.groups != "spec":
                raise ValueError(f"groups: expected {expected}, received {self.groups!r}")
        elif isinstance(self.groups, numbers.Integral):  # numpy integers too
            object.__setattr__(self, "groups", check_int("groups", self.groups, what=expected))
        elif self.groups is not None:
            groups = _agent_sets("groups", self.groups, expected, "for group")
            object.__setattr__(self, "groups", groups)
        if self.kind not in REVEAL_KINDS:
            raise ValueError(f"kind: expected one of {list(REVEAL_KINDS)}, received {self.kind!r}")
        if self.kind != "cumulative" and (
            self.reveal_all_by is not None or self.reveal_all_sigma is not None
        ):
            raise ValueError(
                f"reveal_all_by/reveal_all_sigma: only for kind='cumulative', received kind "
                f"{self.kind!r} with reveal_all_by={self.reveal_all_by!r}, "
                f"reveal_all_sigma={self.reveal_all_sigma!r}"
            )
        if self.reveal_all_by is not None and self.reveal_all_sigma is not None:
            raise ValueError(
                "reveal_all_by/reveal_all_sigma: expected at most one of them, received both"
            )
        k = self.reveal_all_by
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise ValueError(f"reveal_all_by: expected an integer >= 1 or None, received {k!r}")
        s = self.reveal_all_sigma
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, float)) or not s > 0):
            raise ValueError(f"reveal_all_sigma: expected a number > 0 or None, received {s!r}")
        if self.train_sizes not in ("matched", "uniform"):
            raise ValueError(
                f"train_sizes: expected 'matched' or 'uniform', received {self.train_sizes!r}"
            )
        if self.kind == "explicit":
            what = "one set of agents per denoising step with kind='explicit'"
            object.__setattr__(self, "sets", _agent_sets("sets", self.sets, what, "at step"))
        elif self.sets is not None:
            raise ValueError(f"sets: only for kind='explicit', received kind {self.kind!r}")

    def __setstate__(self, state: dict[str, Any]) -> None:
        restore_fields(self, state)  # schedules pickled before ``groups`` existed: None

    # ---------------------------------------------------------------- groups
    def for_team(self, spec: MultiAgentSpec) -> RevealSchedule:
        """This schedule with ``groups="spec"`` replaced by the team's groups, by agent name (so
        relabelling the agents keeps them; None when the team has one group per agent); any
        other schedule unchanged."""
        if self.groups != "spec":
            return self
        named = tuple(members for _, members in spec.groups) if spec.has_groups else None
        return dataclasses.replace(self, groups=named)

    def by_name(self, spec: MultiAgentSpec) -> RevealSchedule:
        """This schedule with its groups (indices, a number of groups or ``"spec"``) written as
        agent names of ``spec``: the same sets, and they survive a relabelling of the agents."""
        reveal = self.for_team(spec)
        groups = reveal.partition(spec.n_agents)
        if groups is None:
            return reveal
        names = spec.agent_names
        named = tuple(tuple(a if isinstance(a, str) else names[a] for a in g) for g in groups)
        return dataclasses.replace(reveal, groups=named)

    def partition(self, n_agents: int) -> tuple[tuple[int | str, ...], ...] | None:
        """The groups as agent sets for a team of ``n_agents`` (None: one group per agent)."""
        if self.groups == "spec":
            raise ValueError(
                "groups: 'spec' names the team's groups; resolve the schedule against the team "
                "first with RevealSchedule.for_team(spec) (the denoisers do it)"
            )
        if isinstance(self.groups, int):
            if self.groups > n_agents:
                raise ValueError(
                    f"groups: expected at most n_agents={n_agents} groups, received {self.groups}"
                )
            return contiguous_groups(n_agents, self.groups)
        return self.groups

    def units(self, n_agents: int) -> int:
        """How many units the schedule reveals: the number of groups, else ``n_agents``."""
        groups = self.partition(n_agents)
        return n_agents if groups is None else len(groups)

    def membership(
        self,
        n_agents: int,
        agent_names: Sequence[str] | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``[G, n]`` bool, ``True`` where agent ``j`` belongs to group ``g`` (``groups`` must be
        a partition of the ``n`` agents); the identity without groups."""
        groups = self.partition(n_agents)
        if groups is None:
            return torch.eye(n_agents, dtype=torch.bool, device=device)
        names = None if agent_names is None else tuple(agent_names)
        return _membership(groups, n_agents, names).to(device)

    def _per_unit(self) -> RevealSchedule:
        return dataclasses.replace(self, groups=None)

    # ----------------------------------------------------------------- masks
    def revealed_counts(self, n_agents: int, sigmas: torch.Tensor) -> list[int]:
        """Cumulative kind: how many agents step ``i`` sees, ``c_i`` (see the module docstring).

        Args:
            n_agents: team size ``n``.
            sigmas: ``[N + 1]`` the sampler's noise levels (the last is 0).
        """
        num_steps = sigmas.numel() - 1
        if self.reveal_all_by is not None:
            k = self.reveal_all_by
            if k > num_steps:
                raise ValueError(
                    f"reveal_all_by: expected at most the {num_steps} denoising steps, received {k}"
                )
        elif self.reveal_all_sigma is not None:
            above = int((sigmas[:num_steps] > self.reveal_all_sigma).sum())
            k = min(num_steps, 1 + above)
        else:
            k = math.ceil(num_steps / 2)
        return [min(n_agents, math.ceil((i + 1) * n_agents / k)) for i in range(num_steps)]

    def masks(
        self,
        n_agents: int,
        sigmas: torch.Tensor,
        *,
        order: Order = "descending",
        batch_size: int | None = None,
        per_sample: bool = False,
        agent_names: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """The revealed set of every denoising step.

        Args:
            n_agents: team size ``n``.
            sigmas: ``[N + 1]`` the sampler's noise levels (the cumulative kind reads them).
            order: the conditioning order (sequential and cumulative kinds).
            batch_size: the number of samples (one random order each with ``per_sample``).
            per_sample: with ``order="random"``, draw one random order per sample.
            agent_names: lets orders and sets name agents.
            generator: draws a random order.

        Returns:
            ``[N, n]`` bool, or ``[batch_size, N, n]`` with per-sample random orders.

        Raises:
            ValueError: an order or set the schedule cannot use, naming the argument.
        """
        if self.groups is not None:
            member = self.membership(n_agents, agent_names, device)  # (G, n)
            unit = self._per_unit().masks(
                self.units(n_agents),
                sigmas,
                order=order,
                batch_size=batch_size,
                per_sample=per_sample,
                generator=generator,
                device=device,
            )  # (..., N, G)
            return (unit[..., :, None] & member).any(dim=-2)  # (..., N, n)
        num_steps = sigmas.numel() - 1
        if self.kind == "joint":
            return torch.ones(num_steps, n_agents, dtype=torch.bool, device=device)
        if self.kind == "explicit":
            return self._explicit_masks(n_agents, num_steps, agent_names, device)
        if self.kind == "sequential":
            agents = agent_schedule(
                order,
                n_agents,
                num_steps,
                batch_size=batch_size,
                per_sample=per_sample,
                agent_names=agent_names,
                generator=generator,
                device=device,
            )
            return torch.nn.functional.one_hot(agents, n_agents).bool()
        return self._cumulative_masks(
            n_agents, sigmas, order, batch_size, per_sample, agent_names, generator, device
        )

    def _cumulative_masks(
        self,
        n: int,
        sigmas: torch.Tensor,
        order: Order,
        batch_size: int | None,
        per_sample: bool,
        agent_names: Sequence[str] | None,
        generator: torch.Generator | None,
        device: torch.device | str | None,
    ) -> torch.Tensor:
        num_steps = sigmas.numel() - 1
        if not isinstance(order, str) and len(order) == num_steps and len(order) != n:
            # an explicit per-step agent sequence: the running union of its entries
            if self.reveal_all_by is not None or self.reveal_all_sigma is not None:
                raise ValueError(
                    "order: a per-step agent sequence fixes when each agent is revealed; "
                    "it cannot be combined with reveal_all_by/reveal_all_sigma"
                )
            steps = agent_schedule(order, n, num_steps, agent_names=agent_names, device=device)
            return torch.nn.functional.one_hot(steps, n).cummax(dim=0).values.bool()
        if not isinstance(order, str) and len(order) != n:
            raise ValueError(
                f"order: expected {n} agents (a permutation) or {num_steps} entries (one per "
                f"step), received {len(order)}"
            )
        # a permutation (or one per sample): its agents join one by one, c_i revealed at step i
        perm = agent_schedule(
            order,
            n,
            n,
            batch_size=batch_size,
            per_sample=per_sample,
            agent_names=agent_names,
            generator=generator,
            device=device,
        )
        rank = perm.argsort(dim=-1)  # (..., n) position of every agent in the order
        counts = torch.tensor(self.revealed_counts(n, sigmas), device=device)  # (N,)
        return rank[..., None, :] < counts[:, None]  # (..., N, n)

    def _explicit_masks(
        self,
        n: int,
        num_steps: int,
        agent_names: Sequence[str] | None,
        device: torch.device | str | None,
    ) -> torch.Tensor:
        assert self.sets is not None
        if len(self.sets) != num_steps:
            raise ValueError(
                f"sets: expected one set per denoising step ({num_steps}), "
                f"received {len(self.sets)}"
            )
        out = torch.zeros(num_steps, n, dtype=torch.bool)
        for i, entry in enumerate(self.sets):
            agents = [_resolve_agent(e, agent_names, n, argument="sets") for e in entry]
            if len(set(agents)) != len(agents):
                raise ValueError(f"sets: repeated agent in step {i}: {list(entry)}")
            out[i, agents] = True
        missing = (~out.any(dim=0)).nonzero().flatten().tolist()
        if missing:
            raise ValueError(f"sets: agent(s) {missing} never revealed in {list(self.sets)}")
        return out.to(device)

    # -------------------------------------------------------------- training
    def training_masks(
        self,
        n_agents: int,
        sigma: torch.Tensor,
        sampler_sigmas: torch.Tensor,
        *,
        agent_names: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``[B, n]`` bool: the revealed set of each training sample (see the module docstring).

        Args:
            n_agents: team size ``n``.
            sigma: ``[B]`` the training noise levels (read with ``train_sizes="matched"``).
            sampler_sigmas: ``[N + 1]`` the sampler's noise levels (likewise; pass them on the
                CPU to avoid a device sync).
            agent_names: lets explicit sets name agents.
            generator: makes the draw reproducible.
        """
        B, device = sigma.shape[0], sigma.device
        if self.groups is not None:
            member = self.membership(n_agents, agent_names, device)  # (G, n)
            unit = self._per_unit().training_masks(
                self.units(n_agents), sigma, sampler_sigmas, generator=generator
            )  # (B, G)
            return (unit[:, :, None] & member).any(dim=1)  # (B, n): unions of whole groups
        if self.kind == "joint":
            return torch.ones(B, n_agents, dtype=torch.bool, device=device)
        if self.kind == "sequential":
            agent = torch.randint(0, n_agents, (B,), device=device, generator=generator)
            return torch.nn.functional.one_hot(agent, n_agents).bool()
        if self.train_sizes == "matched":
            sampler_sigmas = sampler_sigmas.cpu()  # a schedule is built on the host
            step_sizes = self._step_sizes(n_agents, sampler_sigmas, agent_names).to(device)
            levels = sampler_sigmas[:-1].to(device=device, dtype=sigma.dtype)
            nearest = (sigma.log()[:, None] - levels.log()[None, :]).abs().argmin(dim=1)
            size = step_sizes[nearest]  # (B,)
        else:
            size = torch.randint(1, n_agents + 1, (B,), device=device, generator=generator)
        keys = torch.rand(B, n_agents, device=device, generator=generator)
        rank = keys.argsort(dim=-1).argsort(dim=-1)  # (B, n) a uniformly random ranking
        return rank < size[:, None]

    def _step_sizes(
        self, n: int, sampler_sigmas: torch.Tensor, agent_names: Sequence[str] | None
    ) -> torch.Tensor:
        """``[N]`` how many agents each denoising step of this schedule reveals."""
        if self.kind == "explicit":
            num_steps = sampler_sigmas.numel() - 1
            return self._explicit_masks(n, num_steps, agent_names, None).sum(dim=1)
        return torch.tensor(self.revealed_counts(n, sampler_sigmas))
