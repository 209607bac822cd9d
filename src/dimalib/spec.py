"""`MultiAgentSpec`: the one description of a team of agents, shared by every component.

Layout conventions used throughout dimalib:

* a **joint action** is the concatenation of the agents' actions in agent order, ``[..., A]`` with
  ``A = sum(action_dims)``; a **joint observation** likewise ``[..., O]`` with ``O = sum(obs_dims)``;
* a **padded per-agent** tensor is ``[..., n_agents, max_dim]`` where entries past an agent's own
  size are zero; :meth:`MultiAgentSpec.action_mask` says which entries are real.

Agents may have different observation and action sizes.

**Agent groups** (``groups``) name sets of agents that models may treat as one unit: a reveal
schedule over groups (``RevealSchedule(groups="spec")``) reveals a whole group per denoising step,
and agents of a group with equal action sizes may share one action encoder
(``DenoiserConfig.share_action_encoder``). The default is one group per agent, named after it.
Groups describe how models treat the team, not the data layout: specs that differ only in their
groups compare equal.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from dimalib.utils.checks import check_int, check_tensor

__all__ = ["AgentGroups", "MultiAgentSpec", "contiguous_groups"]

AgentGroups = Mapping[str, Sequence[int | str]] | Sequence[tuple[str, Sequence[int | str]]]
"""Named agent groups: ``{"group name": (agent names or indices, ...)}`` or the same as pairs."""


def _pad_layout(dims: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Flat index of every slot of ``[len(dims), max(dims)]`` padded rows (0 in padding)."""
    offsets = [0]
    for d in dims:
        offsets.append(offsets[-1] + d)
    m = max(dims)
    return tuple(
        tuple(offsets[i] + j if j < d else 0 for j in range(m)) for i, d in enumerate(dims)
    )


def _pad(
    flat: torch.Tensor, index: tuple[tuple[int, ...], ...], mask: torch.Tensor
) -> torch.Tensor:
    padded = flat[..., torch.tensor(index, device=flat.device)]  # (..., n, m)
    return padded * mask.to(padded.dtype)


def _as_float_tuple(name: str, value: float | Sequence[float], size: int) -> tuple[float, ...]:
    if isinstance(value, (int, float)):
        return (float(value),) * size
    out = tuple(float(v) for v in value)
    if len(out) != size:
        raise ValueError(f"{name}: expected a scalar or {size} values, received {len(out)} values")
    return out


def contiguous_groups(n_agents: int, n_groups: int) -> tuple[tuple[int, ...], ...]:
    """``n_groups`` groups of consecutive agents, as equal as possible (the first ones one larger).

    Examples:
        >>> contiguous_groups(5, 2)
        ((0, 1, 2), (3, 4))
    """
    check_int("n_agents", n_agents)
    check_int("n_groups", n_groups)
    if n_groups > n_agents:
        raise ValueError(f"n_groups: expected at most n_agents={n_agents}, received {n_groups}")
    base, extra = divmod(n_agents, n_groups)
    bounds = [0]
    for g in range(n_groups):
        bounds.append(bounds[-1] + base + (1 if g < extra else 0))
    return tuple(tuple(range(bounds[g], bounds[g + 1])) for g in range(n_groups))


def _normalise_groups(
    groups: object, names: tuple[str, ...]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``groups`` as ``((group name, (agent name, ...)), ...)``, checked to be a partition."""
    if groups is None:
        return tuple((name, (name,)) for name in names)
    expected = "a mapping {group name: agents} or (name, agents) pairs"
    if isinstance(groups, Mapping):
        pairs = list(groups.items())
    elif isinstance(groups, Sequence) and not isinstance(groups, str):
        pairs = list(groups)
        if not all(
            isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2 for p in pairs
        ):
            raise ValueError(f"groups: expected {expected}, received {groups!r}")
    else:
        raise ValueError(f"groups: expected {expected}, received {type(groups).__name__}")
    if not pairs:
        raise ValueError("groups: expected at least one group, received none")
    out, seen = [], set()
    group_names = [p[0] for p in pairs]
    if any(not isinstance(g, str) or not g for g in group_names):
        raise ValueError(f"groups: expected non-empty string group names, received {group_names!r}")
    if len(set(group_names)) != len(group_names):
        raise ValueError(f"groups: expected unique group names, received {group_names!r}")
    for gname, members in pairs:
        if isinstance(members, str) or not isinstance(members, Sequence) or not members:
            raise ValueError(
                f"groups: expected a non-empty sequence of agents for group {gname!r}, "
                f"received {members!r}"
            )
        resolved = []
        for m in members:
            if isinstance(m, str) and m in names:
                agent = m
            elif isinstance(m, int) and not isinstance(m, bool) and 0 <= m < len(names):
                agent = names[m]
            else:
                raise ValueError(
                    f"groups: unknown agent {m!r} in group {gname!r}; expected one of "
                    f"{list(names)} or an index in 0..{len(names) - 1}"
                )
            if agent in seen:
                raise ValueError(f"groups: agent {agent!r} is in more than one group")
            seen.add(agent)
            resolved.append(agent)
        out.append((gname, tuple(resolved)))
    missing = [n for n in names if n not in seen]
    if missing:
        raise ValueError(f"groups: expected every agent in one group, {missing} are in none")
    return tuple(out)


@dataclass(frozen=True)
class MultiAgentSpec:
    """Names and sizes of the agents, the global state size and the action bounds.

    Args:
        agent_names: one unique name per agent, in agent order (agent ``i`` is ``agent_names[i]``).
        obs_dims: per-agent observation size.
        action_dims: per-agent action size.
        state_dim: size of the global state ``s_t``.
        action_low: lower action bound, a scalar or one value per joint-action entry.
        action_high: upper action bound, a scalar or one value per joint-action entry.
        groups: named agent groups, a partition of the team (``{"legs": ("a", "b"), ...}``, agents
            by name or index); default one group per agent, named after it. Not part of equality.

    Examples:
        >>> spec = MultiAgentSpec(("a", "b"), obs_dims=(4, 6), action_dims=(2, 3), state_dim=8)
        >>> spec.joint_action_dim, spec.max_action_dim
        (5, 3)
        >>> team = MultiAgentSpec(("a", "b", "c"), (1, 1, 1), (1, 1, 1), 3, groups={"x": ("a", "c"), "y": ("b",)})
        >>> team.group_names, team.group_members, team.group_of
        (('x', 'y'), ((0, 2), (1,)), (0, 1, 0))
    """

    agent_names: tuple[str, ...]
    obs_dims: tuple[int, ...]
    action_dims: tuple[int, ...]
    state_dim: int
    action_low: tuple[float, ...] | float = -1.0
    action_high: tuple[float, ...] | float = 1.0
    groups: Any = field(
        default=None, compare=False
    )  # AgentGroups | None in, normalised pairs after
    _pad_index: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)
    _obs_pad_index: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.agent_names, str) or not isinstance(self.agent_names, Sequence):
            raise ValueError(
                f"agent_names: expected a sequence of names (e.g. a tuple of strings), received "
                f"{type(self.agent_names).__name__} {self.agent_names!r}"
            )
        names = tuple(self.agent_names)
        if len(names) == 0:
            raise ValueError("agent_names: expected at least one agent, received none")
        if any(not isinstance(n, str) or not n for n in names):
            raise ValueError(f"agent_names: expected non-empty strings, received {names!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"agent_names: expected unique names, received {names!r}")
        n = len(names)
        for arg in ("obs_dims", "action_dims"):
            dims = tuple(check_int(arg, d, what="positive integers") for d in getattr(self, arg))
            if len(dims) != n:
                raise ValueError(
                    f"{arg}: expected {n} values (one per agent), received {len(dims)}"
                )
            object.__setattr__(self, arg, dims)
        object.__setattr__(self, "state_dim", check_int("state_dim", self.state_dim))
        object.__setattr__(self, "agent_names", names)
        a = sum(self.action_dims)
        low = _as_float_tuple("action_low", self.action_low, a)
        high = _as_float_tuple("action_high", self.action_high, a)
        if not all(math.isfinite(v) for v in low + high):
            raise ValueError("action_low/action_high: expected finite bounds")
        bad = [i for i, (lo, hi) in enumerate(zip(low, high, strict=True)) if not lo < hi]
        if bad:
            raise ValueError(
                f"action_low/action_high: expected low < high, received low={low[bad[0]]} "
                f">= high={high[bad[0]]} at joint-action index {bad[0]}"
            )
        object.__setattr__(self, "action_low", low)
        object.__setattr__(self, "action_high", high)
        object.__setattr__(self, "groups", _normalise_groups(self.groups, names))
        # flat joint index of every padded slot (0 for padding slots, masked later)
        object.__setattr__(self, "_pad_index", _pad_layout(self.action_dims))
        object.__setattr__(self, "_obs_pad_index", _pad_layout(self.obs_dims))

    def __setstate__(self, state: dict[str, Any]) -> None:
        # specs pickled before ``groups`` existed: one group per agent
        state = dict(state)
        state["groups"] = _normalise_groups(state.get("groups"), tuple(state["agent_names"]))
        self.__dict__.update(state)

    # ------------------------------------------------------------------ sizes
    @property
    def n_agents(self) -> int:
        return len(self.agent_names)

    @property
    def joint_action_dim(self) -> int:
        return sum(self.action_dims)

    @property
    def joint_obs_dim(self) -> int:
        return sum(self.obs_dims)

    @property
    def max_action_dim(self) -> int:
        return max(self.action_dims)

    @property
    def max_obs_dim(self) -> int:
        return max(self.obs_dims)

    @property
    def is_homogeneous(self) -> bool:
        """True when every agent has the same observation and action sizes."""
        return len(set(self.action_dims)) == 1 and len(set(self.obs_dims)) == 1

    # ----------------------------------------------------------------- groups
    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def group_names(self) -> tuple[str, ...]:
        """The groups' names, in group order."""
        return tuple(name for name, _ in self.groups)

    @property
    def group_members(self) -> tuple[tuple[int, ...], ...]:
        """Agent indices of each group (ascending), in group order: a partition of the agents."""
        return tuple(
            tuple(sorted(self.agent_names.index(a) for a in members)) for _, members in self.groups
        )

    @property
    def group_of(self) -> tuple[int, ...]:
        """The group index of every agent, in agent order."""
        out = [0] * self.n_agents
        for g, members in enumerate(self.group_members):
            for i in members:
                out[i] = g
        return tuple(out)

    @property
    def has_groups(self) -> bool:
        """True when some group holds more than one agent (the default is one per agent)."""
        return self.n_groups < self.n_agents

    def with_groups(self, groups: AgentGroups | int | None) -> MultiAgentSpec:
        """The same team with other groups: named groups, ``k`` (an int: ``k`` groups of
        consecutive agents, as equal as possible, the first ones one larger, named ``"group0"``,
        ...), or None (one group per agent)."""
        if isinstance(groups, numbers.Integral) and not isinstance(groups, bool):
            k = check_int("groups", groups)
            if k > self.n_agents:
                raise ValueError(f"groups: expected at most n_agents={self.n_agents}, received {k}")
            groups = {f"group{g}": m for g, m in enumerate(contiguous_groups(self.n_agents, k))}
        return dataclasses.replace(self, groups=groups)

    @staticmethod
    def _slices(dims: tuple[int, ...]) -> tuple[slice, ...]:
        out, start = [], 0
        for d in dims:
            out.append(slice(start, start + d))
            start += d
        return tuple(out)

    @property
    def action_slices(self) -> tuple[slice, ...]:
        """Slice of each agent's action inside the joint action."""
        return self._slices(self.action_dims)

    @property
    def obs_slices(self) -> tuple[slice, ...]:
        """Slice of each agent's observation inside the joint observation."""
        return self._slices(self.obs_dims)

    def agent_index(self, name: str) -> int:
        """Index of the agent called ``name``."""
        try:
            return self.agent_names.index(name)
        except ValueError:
            raise ValueError(
                f"name: expected one of {list(self.agent_names)}, received {name!r}"
            ) from None

    # ------------------------------------------------------------- tensors
    def action_bounds(
        self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(low, high)`` as ``[A]`` tensors."""
        return (
            torch.tensor(self.action_low, device=device, dtype=dtype),
            torch.tensor(self.action_high, device=device, dtype=dtype),
        )

    def action_mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``[n_agents, max_action_dim]`` bool, True where a padded action slot is real."""
        dims = torch.tensor(self.action_dims, device=device)
        return torch.arange(self.max_action_dim, device=device)[None, :] < dims[:, None]

    def obs_mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``[n_agents, max_obs_dim]`` bool, True where a padded observation slot is real."""
        dims = torch.tensor(self.obs_dims, device=device)
        return torch.arange(self.max_obs_dim, device=device)[None, :] < dims[:, None]

    @property
    def action_pad_index(self) -> tuple[tuple[int, ...], ...]:
        """``[n_agents][max_action_dim]``: the joint-action index of every padded slot (0 in
        padding slots, which :meth:`action_mask` marks False). Precomputed once."""
        return self._pad_index

    @property
    def obs_pad_index(self) -> tuple[tuple[int, ...], ...]:
        """``[n_agents][max_obs_dim]``: the joint-observation index of every padded slot."""
        return self._obs_pad_index

    def pad_actions(self, joint_action: torch.Tensor) -> torch.Tensor:
        """``[..., A]`` joint action → ``[..., n_agents, max_action_dim]``, zero padded."""
        check_tensor("joint_action", joint_action, last_dim=self.joint_action_dim)
        return _pad(joint_action, self._pad_index, self.action_mask(joint_action.device))

    def pad_obs(self, joint_obs: torch.Tensor) -> torch.Tensor:
        """``[..., O]`` joint observation → ``[..., n_agents, max_obs_dim]``, zero padded."""
        check_tensor("joint_obs", joint_obs, last_dim=self.joint_obs_dim)
        return _pad(joint_obs, self._obs_pad_index, self.obs_mask(joint_obs.device))

    def unpad_actions(self, padded: torch.Tensor) -> torch.Tensor:
        """``[..., n_agents, max_action_dim]`` → ``[..., A]`` joint action (inverse of pad)."""
        expected = (self.n_agents, self.max_action_dim)
        if padded.dim() < 2 or tuple(padded.shape[-2:]) != expected:
            raise ValueError(
                f"padded: expected trailing shape {expected}, received {tuple(padded.shape)}"
            )
        return padded[..., self.action_mask(padded.device)]

    def split_obs(self, joint_obs: torch.Tensor) -> list[torch.Tensor]:
        """``[..., O]`` joint observation → one ``[..., obs_dims[i]]`` view per agent."""
        check_tensor("joint_obs", joint_obs, last_dim=self.joint_obs_dim)
        return list(torch.split(joint_obs, list(self.obs_dims), dim=-1))

    def split_actions(self, joint_action: torch.Tensor) -> list[torch.Tensor]:
        """``[..., A]`` joint action → one ``[..., action_dims[i]]`` view per agent."""
        check_tensor("joint_action", joint_action, last_dim=self.joint_action_dim)
        return list(torch.split(joint_action, list(self.action_dims), dim=-1))

    # ----------------------------------------------------------- transforms
    def permuted(self, order: Sequence[int]) -> MultiAgentSpec:
        """The same team with agents relabelled: new agent ``j`` is old agent ``order[j]``."""
        order = tuple(order)
        if sorted(order) != list(range(self.n_agents)):
            raise ValueError(
                f"order: expected a permutation of 0..{self.n_agents - 1}, received {order}"
            )
        assert isinstance(self.action_low, tuple) and isinstance(self.action_high, tuple)
        low = [self.action_low[self.action_slices[i]] for i in order]
        high = [self.action_high[self.action_slices[i]] for i in order]
        return MultiAgentSpec(
            agent_names=tuple(self.agent_names[i] for i in order),
            obs_dims=tuple(self.obs_dims[i] for i in order),
            action_dims=tuple(self.action_dims[i] for i in order),
            state_dim=self.state_dim,
            action_low=tuple(v for part in low for v in part),
            action_high=tuple(v for part in high for v in part),
            groups=self.groups,  # by agent name: each group keeps its agents
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form, for checkpoints."""
        return {
            "agent_names": list(self.agent_names),
            "obs_dims": list(self.obs_dims),
            "action_dims": list(self.action_dims),
            "state_dim": self.state_dim,
            "action_low": list(self.action_low)
            if isinstance(self.action_low, tuple)
            else self.action_low,
            "action_high": list(self.action_high)
            if isinstance(self.action_high, tuple)
            else self.action_high,
            "groups": [[name, list(members)] for name, members in self.groups],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MultiAgentSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            agent_names=tuple(data["agent_names"]),
            obs_dims=tuple(data["obs_dims"]),
            action_dims=tuple(data["action_dims"]),
            state_dim=int(data["state_dim"]),
            action_low=tuple(data["action_low"]),
            action_high=tuple(data["action_high"]),
            groups=[(name, tuple(m)) for name, m in data["groups"]] if "groups" in data else None,
        )
