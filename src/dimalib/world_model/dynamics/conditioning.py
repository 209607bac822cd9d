"""Action conditioning: per-agent action tokens, pooled into the denoiser's condition vector.

Every agent ``i`` has its own linear action encoder (so agents may have different action sizes),
or, with ``share_groups``, the agents of a group whose action sizes match share one (the number of
encoder weights then follows the number of groups, issue "scale"); a learned agent-id embedding and the token of step ``j`` of the context gets a learned time-slot
embedding. A shared MLP turns each sum into a token; the valid tokens are averaged (a DeepSets
pool, invariant to the agents' labels) and projected to the condition width.

The pool always holds every agent's actions at the past steps ``t−L+1 … t−1`` and, at the current
step ``t``, the tokens of the **revealed** agents of the denoising step (a ``[B, n]`` boolean set
from the reveal schedule, :mod:`dimalib.world_model.dynamics.reveal`): one agent for DIMA's eq. 9, a growing
set for the cumulative schedule, every agent for the joint model of paper Fig. 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from dimalib.spec import MultiAgentSpec
from dimalib.utils.linear import Linear

__all__ = ["ActionContext", "AgentActionEncoder"]


class ActionContext(NamedTuple):
    """Action tokens that do not change across denoising steps, computed once per prediction."""

    past_sum: torch.Tensor  # (B, D) sum of the valid past-step tokens
    past_count: torch.Tensor  # (B,) how many past tokens are valid
    current: torch.Tensor  # (B, n, D) each agent's token at the current step


def _encoder_slots(
    action_dims: Sequence[int], share_groups: Sequence[Sequence[int]] | None
) -> list[int]:
    """The encoder index of every agent: shared within a group of equal action sizes."""
    n = len(action_dims)
    if share_groups is None:
        return list(range(n))
    slots = [-1] * n
    members = [list(g) for g in share_groups]
    if sorted(i for g in members for i in g) != list(range(n)):
        raise ValueError(
            f"share_groups: expected a partition of the agents 0..{n - 1}, received {share_groups!r}"
        )
    next_slot = 0
    for group in sorted(members, key=min):  # slots in agent order
        if len({action_dims[i] for i in group}) == 1:
            for i in group:
                slots[i] = next_slot
            next_slot += 1
        else:
            for i in group:
                slots[i] = next_slot
                next_slot += 1
    return slots


class AgentActionEncoder(nn.Module):
    """Joint-action history ``[B, L, A]`` (+ revealed agents) → condition ``[B, out_dim]``.

    Args:
        spec: the team.
        context: number of steps ``L`` in the action history (the last one is the current step).
        token_dim: width of a per-agent action token.
        out_dim: width of the condition vector (Table 3: 256).
        share_groups: a partition of the agents (index tuples); the agents of a group with equal
            action sizes share one linear encoder (a group with mixed sizes keeps one per agent).
            None: one encoder per agent (DIMA). Agents stay distinguishable by their id embedding.
    """

    pad_index: torch.Tensor
    slot_index: torch.Tensor
    pad_mask: torch.Tensor
    action_low: torch.Tensor
    action_high: torch.Tensor

    def __init__(
        self,
        spec: MultiAgentSpec,
        context: int,
        token_dim: int = 128,
        out_dim: int = 256,
        share_groups: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.context = context
        n, m = spec.n_agents, spec.max_action_dim
        slots = _encoder_slots(spec.action_dims, share_groups)  # agent -> its encoder
        n_slots = max(slots) + 1
        dims = [spec.action_dims[slots.index(k)] for k in range(n_slots)]
        # Linear maps stored padded: agent i uses rows 0..action_dims[i]-1 of weight[slot(i)].
        weight = torch.zeros(n_slots, m, token_dim)
        for k, d in enumerate(dims):
            bound = 1 / math.sqrt(d)  # nn.Linear's default init, per encoder
            weight[k, :d].uniform_(-bound, bound)
        self.weight = nn.Parameter(weight)
        # saved: which encoder each agent uses (a relabelled model's mapping is not its spec's)
        self.register_buffer("slot_index", torch.tensor(slots))
        self.agent_embedding = nn.Parameter(torch.randn(n, token_dim) * 0.02)
        self.time_embedding = nn.Parameter(torch.randn(context, token_dim) * 0.02)
        self.token_mlp = nn.Sequential(
            nn.SiLU(), Linear(token_dim, token_dim), nn.SiLU(), Linear(token_dim, token_dim)
        )
        self.out = nn.Sequential(nn.SiLU(), Linear(token_dim, out_dim))
        low, high = spec.action_bounds()
        self.register_buffer("pad_index", torch.tensor(spec.action_pad_index), persistent=False)
        self.register_buffer("pad_mask", spec.action_mask(), persistent=False)
        self.register_buffer("action_low", low, persistent=False)
        self.register_buffer("action_high", high, persistent=False)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        key = prefix + "slot_index"
        if key not in state_dict:  # saved before the mapping was: one encoder per agent
            state_dict[key] = torch.arange(self.spec.n_agents)
        saved = state_dict[key]
        if saved.shape == self.slot_index.shape and int(saved.max()) + 1 != self.weight.shape[0]:
            error_msgs.append(
                f"{key}: the saved mapping uses {int(saved.max()) + 1} action encoders, this "
                f"model has {self.weight.shape[0]} (share_action_encoder or the groups differ)"
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    @property
    def shared(self) -> bool:
        """True when some agents share an encoder (fewer encoders than agents)."""
        return self.weight.shape[0] < self.spec.n_agents

    def _tokens(self, actions: torch.Tensor) -> torch.Tensor:
        """``[B, L, A]`` raw joint actions → ``[B, L, n, D]`` tokens."""
        scaled = 2 * (actions - self.action_low) / (self.action_high - self.action_low) - 1
        padded = scaled[..., self.pad_index] * self.pad_mask  # (B, L, n, m)
        weight = self.weight[self.slot_index] if self.shared else self.weight  # (n, m, D)
        h = torch.einsum("blnm,nmd->blnd", padded, weight)
        h = h + self.agent_embedding + self.time_embedding[:, None, :]  # (B, L, n, D)
        return self.token_mlp(h)

    def encode_context(self, actions: torch.Tensor, mask: torch.Tensor) -> ActionContext:
        """Tokens of an action history.

        Args:
            actions: ``[B, L, A]`` joint actions ``a_{t−L+1..t}``; the last step is current.
            mask: ``[B, L]`` bool, False for padded steps before an episode start.
        """
        tokens = self._tokens(actions)  # (B, L, n, D)
        past_valid = mask[:, :-1, None, None].to(tokens.dtype)  # (B, L-1, 1, 1)
        past_sum = (tokens[:, :-1] * past_valid).sum(dim=(1, 2))  # (B, D)
        past_count = past_valid.sum(dim=(1, 2, 3)) * self.spec.n_agents  # (B,)
        return ActionContext(past_sum, past_count, tokens[:, -1])

    def pool(self, ctx: ActionContext, revealed: torch.Tensor) -> torch.Tensor:
        """Condition vector ``[B, out_dim]`` revealing the agents of ``revealed`` (``[B, n]``
        bool) at the current step: the mean of the valid past tokens and the revealed current
        ones, through ``out`` (SiLU, then a linear layer)."""
        return self.out(self.mean_token(ctx, revealed))

    def mean_token(self, ctx: ActionContext, revealed: torch.Tensor) -> torch.Tensor:
        """``[B, D]``: the mean of the valid past tokens and the revealed current ones (the
        pool before ``out``)."""
        weights = revealed.to(ctx.current.dtype)  # (B, n)
        cur_sum = (ctx.current * weights[..., None]).sum(dim=1)  # (B, D)
        count = (ctx.past_count + weights.sum(dim=1)).clamp(min=1)  # (B,)
        return (ctx.past_sum + cur_sum) / count[:, None]

    def forward(
        self, actions: torch.Tensor, mask: torch.Tensor, revealed: torch.Tensor
    ) -> torch.Tensor:
        """``[B, L, A]``, ``[B, L]``, ``[B, n]`` → ``[B, out_dim]``."""
        return self.pool(self.encode_context(actions, mask), revealed)

    @torch.no_grad()
    def permute_agents_(self, order: Sequence[int], spec: MultiAgentSpec) -> None:
        """Relabel agents in place: new agent ``j`` is old agent ``order[j]`` (``spec`` is the new one)."""
        idx = torch.as_tensor(list(order), device=self.weight.device)
        if self.shared:
            self.slot_index.copy_(self.slot_index[idx])
        else:
            self.weight.copy_(self.weight[idx])
        self.agent_embedding.copy_(self.agent_embedding[idx])
        self.spec = spec
        low, high = spec.action_bounds(device=self.weight.device)
        self.pad_index.copy_(torch.tensor(spec.action_pad_index, device=self.weight.device))
        self.pad_mask.copy_(spec.action_mask(self.weight.device))
        self.action_low.copy_(low)
        self.action_high.copy_(high)
