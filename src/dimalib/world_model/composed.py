"""`ComposedWorldModel`: a :class:`~dimalib.world_model.protocols.WorldModel` from separate parts.

Pair any :class:`~dimalib.world_model.protocols.DynamicsModel` — the MBPO
:class:`~dimalib.world_model.ensemble.ProbabilisticEnsemble`, a denoiser, a user's model — with a
reward/termination GPT, a state decoder and the running state statistics those two were trained
with, and :class:`~dimalib.imagination.ImaginationEnv` drives imagination with it (e.g. MBPO
dynamics with DIMA's reward model and decoder). Environment units throughout, as the protocol says.
"""

from __future__ import annotations

from typing import Any

import torch

from dimalib.world_model.decoder import FSQStateDecoder
from dimalib.world_model.normalizer import RunningNormalizer
from dimalib.world_model.protocols import DynamicsModel
from dimalib.world_model.reward_termination import KVCache, RewardTerminationGPT

__all__ = ["ComposedWorldModel"]


class ComposedWorldModel:
    """Dynamics, reward/termination and decoder models as one world model.

    Args:
        dynamics: predicts ``s_{t+1}`` (its ``spec`` is the team's).
        reward_model: the reward/termination GPT, trained on states normalised by ``normalizer``.
        decoder: the state decoder, trained on states normalised by ``normalizer``.
        normalizer: the running state statistics of the reward model and decoder.
    """

    def __init__(
        self,
        dynamics: DynamicsModel,
        reward_model: RewardTerminationGPT,
        decoder: FSQStateDecoder,
        normalizer: RunningNormalizer,
    ) -> None:
        if not isinstance(dynamics, DynamicsModel):
            raise ValueError(
                f"dynamics: expected a DynamicsModel, received {type(dynamics).__name__}"
            )
        for name, part in (("reward_model", reward_model), ("decoder", decoder)):
            if part.spec != dynamics.spec:
                raise ValueError(
                    f"{name}: expected the dynamics model's spec {dynamics.spec}, "
                    f"received {part.spec}"
                )
        if normalizer.dim != dynamics.spec.state_dim:
            raise ValueError(
                f"normalizer: expected dim {dynamics.spec.state_dim} (the state size), "
                f"received {normalizer.dim}"
            )
        self.spec = dynamics.spec
        self.dynamics, self.reward_model, self.decoder = dynamics, reward_model, decoder
        self.normalizer = normalizer

    @property
    def context(self) -> int:
        return self.dynamics.context

    @property
    def max_rollout_steps(self) -> int:
        return self.reward_model.config.max_steps

    @property
    def device(self) -> torch.device:
        return self.reward_model.pos_emb.device

    @property
    def state_std(self) -> torch.Tensor:
        return self.normalizer.std

    def eval(self) -> ComposedWorldModel:
        for part in (self.dynamics, self.reward_model, self.decoder):
            part.eval()
        return self

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
        """``s_{t+1} [B, S]`` from the dynamics model (``states [B, L, S]``, ``actions [B, L, A]``)."""
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
        return self.reward_model.init_cache(batch_size, device=self.device)

    def predict_reward(
        self,
        cache: KVCache,
        state: torch.Tensor,
        action: torch.Tensor,
        *,
        check_inputs: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r_t [B], termination probability [B])`` of ``(s_t [B, S], a_t [B, A])``."""
        return self.reward_model.step(
            cache, self.normalizer.normalize(state), action, check_inputs=check_inputs
        )

    def decode(self, state: torch.Tensor, *, check_inputs: bool = True) -> torch.Tensor:
        """``[..., S]`` states → ``[..., O]`` joint observations."""
        return self.decoder.decode_joint(
            self.normalizer.normalize(state), check_inputs=check_inputs
        )
