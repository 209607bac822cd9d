"""`WorldModelParts`: the :class:`~dimalib.world_model.protocols.WorldModel` methods, written once
over four parts — a dynamics model, a reward/termination GPT, a state decoder and the running
state statistics the last two read their inputs through.

:class:`~dimalib.world_model.aggregate.DIMAWorldModel` (an ``nn.Module`` owning its parts) and
:class:`~dimalib.world_model.composed.ComposedWorldModel` (any dynamics model with given parts)
both inherit them, so imagination sees the same semantics from either.
"""

from __future__ import annotations

from typing import Any

import torch

from dimalib.spec import MultiAgentSpec
from dimalib.world_model.decoder import FSQStateDecoder
from dimalib.world_model.normalizer import RunningNormalizer
from dimalib.world_model.protocols import DynamicsModel
from dimalib.world_model.reward_termination import KVCache, RewardTerminationGPT

__all__ = ["WorldModelParts"]


class WorldModelParts:
    """Mixin: environment-unit world-model methods over ``dynamics``, ``reward_model``,
    ``decoder`` and ``normalizer`` (set by the subclass)."""

    spec: MultiAgentSpec
    dynamics: DynamicsModel
    reward_model: RewardTerminationGPT
    decoder: FSQStateDecoder

    @property
    def normalizer(self) -> RunningNormalizer:
        """The running state statistics of the reward model's and the decoder's inputs."""
        raise NotImplementedError

    @property
    def context(self) -> int:
        """Number of past states the dynamics model conditions on (``L``)."""
        return self.dynamics.context

    @property
    def max_rollout_steps(self) -> int:
        """Steps the reward model's KV cache holds (``RewardTerminationConfig.max_steps``)."""
        return self.reward_model.config.max_steps

    @property
    def device(self) -> torch.device:
        """Where the reward model's parameters live (and imagination runs)."""
        return self.reward_model.pos_emb.device

    @property
    def state_std(self) -> torch.Tensor:
        """``(S,)`` the running state standard deviation (environment units)."""
        return self.normalizer.std

    def normalize_state(self, state: torch.Tensor) -> torch.Tensor:
        """``[..., S]`` environment units → zero mean, unit variance (running statistics)."""
        return self.normalizer.normalize(state)

    def predict_next_state(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        order: Any = None,
        reveal: Any = None,
        generator: torch.Generator | None = None,
        check_inputs: bool = True,
    ) -> torch.Tensor:
        """``s_{t+1} [B, S]`` from ``states [B, L, S]`` and ``actions [B, L, A]`` (environment
        units): the dynamics model's ``predict_next_state``."""
        return self.dynamics.predict_next_state(
            states,
            actions,
            mask,
            order=order,
            reveal=reveal,
            generator=generator,
            check_inputs=check_inputs,
        )

    def init_rollout(self, batch_size: int) -> KVCache:
        """An empty KV cache of the reward model for ``batch_size`` rollouts."""
        return self.reward_model.init_cache(batch_size, device=self.device)

    def predict_reward(
        self,
        cache: KVCache,
        state: torch.Tensor,
        action: torch.Tensor,
        *,
        check_inputs: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``(s_t [B, S], a_t [B, A])`` (environment units) to ``cache``; return
        ``(r_t [B], termination probability [B])``. The state is normalised here."""
        return self.reward_model.step(
            cache, self.normalize_state(state), action, check_inputs=check_inputs
        )

    def decode(self, state: torch.Tensor, *, check_inputs: bool = True) -> torch.Tensor:
        """Joint observation ``[..., O]`` of global states ``[..., S]`` (environment units).

        ``check_inputs=False`` skips the NaN/inf scan (a host sync), for hot loops.
        """
        return self.decoder.decode_joint(self.normalize_state(state), check_inputs=check_inputs)
