"""The roles of a world model, as small protocols (structural types: no base class needed).

Everything here takes and returns **environment units** (raw states, actions within the spec's
bounds, rewards as the env pays them): normalisation is each model's own business.

* :class:`DynamicsModel` — ``p(s_{t+1} | s_{t−L+1..t}, a_{t−L+1..t})``: the denoisers
  (:class:`~dimalib.world_model.dynamics.SequentialAgentDenoiser`,
  :class:`~dimalib.world_model.dynamics.JointActionDenoiser`), the MBPO
  :class:`~dimalib.world_model.ensemble.ProbabilisticEnsemble` and
  :class:`~dimalib.world_model.aggregate.DIMAWorldModel` itself satisfy it; the accuracy tools of
  :mod:`dimalib.evaluation` accept any of them.
* :class:`WorldModel` — what :class:`~dimalib.imagination.ImaginationEnv` drives: next states,
  incremental reward/termination prediction over a rollout, and every agent's observation of a
  state. :class:`~dimalib.world_model.aggregate.DIMAWorldModel` implements it; so can a user's model
  (tests/test_world_model_protocol.py drives imagination with a closed-form linear model).
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, runtime_checkable

import torch

from dimalib.spec import MultiAgentSpec

__all__ = ["DynamicsModel", "RolloutCache", "WorldModel"]


@runtime_checkable
class DynamicsModel(Protocol):
    """A next-state model over a context of ``L`` past states and joint actions."""

    spec: MultiAgentSpec

    @property
    def context(self) -> int:
        """``L``: how many past states (and joint actions) a prediction conditions on."""
        ...

    def eval(self) -> Any: ...

    def predict_next_state(
        self,
        states: torch.Tensor,  # (B, L, S)
        actions: torch.Tensor,  # (B, L, A), the last one is a_t
        mask: torch.Tensor | None = None,  # (B, L) bool, False on padded steps
        *,
        order: Any = None,
        reveal: Any = None,
        generator: torch.Generator | None = None,
        check_inputs: bool = True,
    ) -> torch.Tensor:  # (B, S)
        """``s_{t+1}``; ``check_inputs=False`` is the unchecked path for validated hot loops."""
        ...


class RolloutCache(Protocol):
    """Per-rollout memory of an incremental reward model (e.g. a transformer's KV cache)."""

    @property
    def batch_size(self) -> int: ...

    def reset(self) -> None:
        """Forget every step (start new rollouts)."""
        ...

    def reset_rows(self, rows: torch.Tensor) -> None:
        """Start new rollouts where ``rows [B]`` (bool) is True, from the next step on (used by
        ``ImaginationConfig(autoreset=True)``; on the device, no host sync)."""
        ...


CacheT = TypeVar("CacheT", bound=RolloutCache)


@runtime_checkable
class WorldModel(DynamicsModel, Protocol[CacheT]):
    """Everything an imagined environment needs (environment units throughout).

    Generic in the rollout memory its :meth:`init_rollout` makes (``WorldModel[KVCache]`` for
    :class:`~dimalib.world_model.aggregate.DIMAWorldModel`)."""

    @property
    def max_rollout_steps(self) -> int:
        """The longest rollout :meth:`predict_reward` can follow from one :meth:`init_rollout`."""
        ...

    @property
    def device(self) -> torch.device: ...

    @property
    def state_std(self) -> torch.Tensor:
        """``(S,)`` typical scale of each state entry (for distances between predicted states)."""
        ...

    def init_rollout(self, batch_size: int) -> CacheT:
        """An empty memory for ``batch_size`` rollouts, on :attr:`device`."""
        ...

    def predict_reward(
        self,
        cache: CacheT,
        state: torch.Tensor,  # (B, S) s_t
        action: torch.Tensor,  # (B, A) a_t
        *,
        check_inputs: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # (B,) r_t, (B,) termination probability
        """Append step ``t`` to ``cache``; predict its reward and termination probability."""
        ...

    def decode(self, state: torch.Tensor, *, check_inputs: bool = True) -> torch.Tensor:
        """``[..., S]`` states → ``[..., O]`` joint observations (every agent's, in spec order)."""
        ...
