"""The seams of the learners: what a learner needs from an imagined env, and what the trainer
needs from a learner (paper Algorithm 1, ``update_actor_critic`` and ``collect_experience``).

* :class:`ImaginedStepLike` / :class:`ImaginationEnvLike` — what
  :meth:`~dimalib.algorithms.mappo.MAPPO.collect_imagined_rollout` reads from
  :class:`~dimalib.imagination.ImaginationEnv` (any object with these members fits).
* :class:`Learner` — what :class:`~dimalib.training.Trainer` calls on its learner; DIMA's
  :class:`~dimalib.algorithms.mappo.MAPPO` is one, and any other MARL learner with these six
  methods can be trained through the same loop (``Trainer(..., learner=...)``).

Shapes: ``N`` real env copies, ``B`` imagined rollouts, ``H`` imagination horizon, ``O`` joint
observation, ``S`` global state, ``A`` joint action (``spec.joint_*_dim``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["ImaginationEnvLike", "ImaginedStepLike", "Learner"]


class ImaginedStepLike(Protocol):
    """The fields of :class:`dimalib.imagination.ImaginedStep` that MAPPO reads."""

    @property
    def obs(self) -> torch.Tensor: ...  # (B, O)
    @property
    def state(self) -> torch.Tensor: ...  # (B, S)
    @property
    def reward(self) -> torch.Tensor: ...  # (B,)
    @property
    def terminated(self) -> torch.Tensor: ...  # (B,) bool, sticky
    @property
    def termination_prob(self) -> torch.Tensor: ...  # (B,)


class ImaginationEnvLike(Protocol):
    """What :meth:`MAPPO.collect_imagined_rollout` needs: :class:`ImaginationEnv` fits."""

    @property
    def horizon(self) -> int: ...

    def reset(self, *, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]: ...

    def step(self, joint_action: torch.Tensor) -> ImaginedStepLike: ...


@runtime_checkable
class Learner(Protocol):
    """A MARL learner that :class:`~dimalib.training.Trainer` trains in imagination.

    The trainer calls exactly these methods, in this pattern, every epoch:

    1. collection: :meth:`eval`, then :meth:`act` with a ``generator`` once per real env step;
    2. learning in imagination, ``policy_updates_per_epoch`` times:
       :meth:`collect_imagined_rollout`, then :meth:`update` on its rollout;
    3. evaluation and world-model diagnostics: :meth:`eval`, then
       :meth:`act` with ``deterministic=True``;
    4. checkpoints: :meth:`state_dict` when saving, :meth:`load_state_dict` when resuming.

    The learner owns its device: inputs arrive on the trainer's device and may be moved. All
    random draws must come from the given generators (never the global RNG) for a run to be a
    function of its seed and to resume bit for bit.
    :class:`~dimalib.algorithms.mappo.MAPPO` is the reference implementation.
    """

    def act(
        self,
        joint_obs: torch.Tensor,
        *,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Joint actions for real joint observations, without gradient.

        Args:
            joint_obs: ``(N, O)`` float joint observations of the ``N`` real env copies.
            deterministic: the policy's mode/mean (evaluation) instead of a sample (collection).
            generator: the source of the sampling noise (collection passes one, on the
                trainer's device).

        Returns:
            ``(N, A)`` joint actions in environment units, within ``spec.action_bounds()``.
        """
        ...

    def eval(self) -> object:
        """Switch to inference mode before acting (the return value is ignored;
        ``nn.Module.eval`` returns ``self``). :meth:`update` switches back to training mode
        itself if it needs to."""
        ...

    def collect_imagined_rollout(
        self,
        imagination_env: ImaginationEnvLike,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> Mapping[str, torch.Tensor]:
        """Reset ``imagination_env`` with ``seed`` and act in it for its whole horizon.

        Args:
            imagination_env: the trainer's :class:`~dimalib.imagination.ImaginationEnv`
                (``B = num_envs`` rollouts of ``H = horizon`` steps).
            generator: for the sampling noise.
            seed: for the env's reset (the choice of start contexts).

        Returns:
            the rollout, handed unchanged to :meth:`update`. The trainer itself reads
            ``rewards (H, B)`` (float) and ``terminated (H, B)`` (bool, sticky: true from the
            step a rollout terminated on); other keys are the learner's own.
        """
        ...

    def update(
        self, rollout: Mapping[str, torch.Tensor], *, generator: torch.Generator | None = None
    ) -> dict[str, float]:
        """Learn from one rollout of :meth:`collect_imagined_rollout`.

        Args:
            rollout: as returned by :meth:`collect_imagined_rollout`.
            generator: for any randomness of the update (e.g. minibatch shuffling).

        Returns:
            scalar statistics; the trainer averages them over the epoch's updates and logs them
            as ``policy/<name>`` (beside its own ``policy/imagined_*``).
        """
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (weights, optimiser moments, normalisers): tensors,
        numbers, strings and nested dicts/lists; saved in the trainer checkpoint under
        ``"mappo"``."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (tensors arrive on the CPU)."""
        ...
