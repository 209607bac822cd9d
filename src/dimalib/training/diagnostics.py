"""World-model diagnostics during a run: action effects and model bias against the true env.

Two questions decide whether a policy learned in imagination transfers (learning-evidence issue):

* **Does the model answer the actions?** :func:`~dimalib.evaluation.action_effects` per agent:
  how far and in which direction the predicted next state moves when that agent's action changes,
  against the true change from the same state (``fidelity/ratio_<agent>``,
  ``fidelity/cosine_<agent>``).
* **Is the imagined return the real one?** From the same replay start states, the deterministic
  actor is rolled out for the imagination horizon both in the world model (an
  :class:`~dimalib.imagination.ImaginationEnv` over those starts) and in the true env, and the
  two ``H``-step returns are compared (``bias/imagined_return``, ``bias/real_return``,
  ``bias/gap`` = imagined − real, means over the starts). A gap that grows positive while the real
  evaluation falls is the signature of model exploitation. ``bias/reward_model_return`` is the
  reward model's return along the *real* trajectory (its own KV cache fed the real states and
  actions): close to the real return, the gap comes from the imagined dynamics; close to the
  imagined one, from the reward model.

The true env is what the env name's registry entry offers
(:attr:`dimalib.envs.registry.EnvEntry.true_dynamics`): the real MuJoCo simulator for MAMuJoCo
tasks (:class:`~dimalib.envs.mamujoco_dynamics.MuJoCoStepper`) and the exact dynamics for the
analytic ``toy`` env (:class:`~dimalib.envs.toy.ExactToyDynamics`); other envs (Bi-DexHands, its
MuJoCo rebuilds, registered envs without one) have none and skip the diagnostics.
Everything draws from generators of its own, so training is unaffected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

import torch

from dimalib.data.buffer import ReplayBuffer
from dimalib.envs.registry import lookup
from dimalib.envs.toy import ExactToyDynamics
from dimalib.evaluation import action_effects
from dimalib.imagination.env import ImaginationConfig, ImaginationEnv
from dimalib.world_model import DIMAWorldModel

__all__ = ["ExactToyDynamics", "TrueDynamics", "true_dynamics", "world_model_diagnostics"]

Policy = Callable[[torch.Tensor], torch.Tensor]


class TrueDynamics(Protocol):
    """The true env stepped from global states."""

    def __call__(self, states: torch.Tensor, joint_action: torch.Tensor) -> torch.Tensor:
        """``[B, S]``, ``[B, A]`` → the true next states ``[B, S]``."""
        ...

    def rollout(
        self, states: torch.Tensor, policy: Policy, horizon: int
    ) -> dict[str, torch.Tensor]:
        """``rewards [H, K]`` (0 after termination) and ``terminated [H, K]`` from ``states``."""
        ...


def true_dynamics(env_name: str, *, max_episode_steps: int | None = None) -> TrueDynamics | None:
    """The true dynamics of a registered env name, or ``None`` where it has none.

    Built by the name's :attr:`~dimalib.envs.registry.EnvEntry.true_dynamics` factory: the real
    MuJoCo simulator for MAMuJoCo names, :class:`ExactToyDynamics` for ``"toy"``.

    Args:
        env_name: a registered env name.
        max_episode_steps: the run's time limit, passed to the factory.

    Raises:
        ValueError: unknown env name (:class:`~dimalib.envs.mamujoco.UnknownEnvError`).
    """
    factory = lookup(env_name).true_dynamics
    if factory is None:
        return None
    dynamics: TrueDynamics = factory(env_name, max_episode_steps=max_episode_steps)
    return dynamics


@torch.no_grad()
def world_model_diagnostics(
    world_model: DIMAWorldModel,
    buffer: ReplayBuffer,
    policy: Policy,
    true: TrueDynamics,
    *,
    windows: int,
    imagination: ImaginationConfig,
    seed: int,
) -> dict[str, float]:
    """Action effects and model bias on ``windows`` replay samples (see the module docstring).

    Args:
        world_model: the model being trained (left in eval mode).
        buffer: replay data (start states and windows are drawn from it).
        policy: the deterministic actor, ``obs [K, O] -> joint action [K, A]``.
        true: the true env.
        windows: how many windows and start states.
        imagination: the run's imagination settings (horizon, order, rules); ``num_envs`` is
            replaced by ``windows``.
        seed: seeds every draw (windows, start states, sampler noise, perturbations).

    Returns:
        ``fidelity/ratio_<agent>``, ``fidelity/cosine_<agent>``, ``bias/imagined_return``,
        ``bias/real_return``, ``bias/reward_model_return`` and ``bias/gap``.
    """
    spec, dyn = world_model.spec, world_model.dynamics
    g = torch.Generator().manual_seed(seed)
    win = buffer.sample_dynamics(windows, context=dyn.context, generator=g)
    std = dyn.normalizer.std.to(win["states"].dtype)
    effects = action_effects(
        dyn, win["states"], win["actions"], true, mask=win["mask"], scale=std, seed=seed + 1
    )
    row: dict[str, float] = {}
    for e in effects:
        row[f"fidelity/ratio_{spec.agent_names[e.agent]}"] = e.ratio
        row[f"fidelity/cosine_{spec.agent_names[e.agent]}"] = e.cosine

    starts = buffer.sample_start_contexts(windows, context=dyn.context, generator=g)
    config = dataclasses.replace(imagination, num_envs=windows)
    env = ImaginationEnv(world_model, starts, config, seed=seed + 2)
    obs, _ = env.reset()
    imagined = torch.zeros(windows)
    for _ in range(config.horizon):
        step = env.step(policy(obs))
        imagined += step.reward.cpu()
        obs = step.obs
    out = true.rollout(starts["states"][:, -1], policy, config.horizon)
    real = out["rewards"].sum(0).cpu()
    # the reward model along the real trajectory (stopping where the real rollout terminated)
    states = world_model.normalize_state(out["states"][:-1].transpose(0, 1).float())  # (K, H, S)
    predicted, _ = world_model.reward_model.predict(states, out["actions"].transpose(0, 1).float())
    alive = torch.cat([torch.ones_like(out["terminated"][:1]), ~out["terminated"][:-1]])  # (H, K)
    teacher = (predicted.transpose(0, 1) * alive).sum(0).cpu()
    row["bias/imagined_return"] = float(imagined.mean())
    row["bias/real_return"] = float(real.mean())
    row["bias/reward_model_return"] = float(teacher.mean())
    row["bias/gap"] = float((imagined - real).mean())
    return row
