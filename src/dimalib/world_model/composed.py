"""`ComposedWorldModel`: a :class:`~dimalib.world_model.protocols.WorldModel` from separate parts.

Pair any :class:`~dimalib.world_model.protocols.DynamicsModel` — the MBPO
:class:`~dimalib.world_model.ensemble.ProbabilisticEnsemble`, a denoiser, a user's model — with a
reward/termination GPT, a state decoder and the running state statistics those two were trained
with, and :class:`~dimalib.imagination.ImaginationEnv` drives imagination with it (e.g. MBPO
dynamics with DIMA's reward model and decoder). Environment units throughout, as the protocol says.
"""

from __future__ import annotations

from dimalib.world_model.decoder import FSQStateDecoder
from dimalib.world_model.normalizer import RunningNormalizer
from dimalib.world_model.parts import WorldModelParts
from dimalib.world_model.protocols import DynamicsModel
from dimalib.world_model.reward_termination import RewardTerminationGPT

__all__ = ["ComposedWorldModel"]


class ComposedWorldModel(WorldModelParts):
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
        self._normalizer = normalizer

    @property
    def normalizer(self) -> RunningNormalizer:
        return self._normalizer

    def eval(self) -> ComposedWorldModel:
        for part in (self.dynamics, self.reward_model, self.decoder):
            part.eval()
        return self
