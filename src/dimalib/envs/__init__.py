"""Real environments and batched collection.

* :func:`make_env` resolves a task name: the paper's MAMuJoCo tasks (``"HalfCheetah-2x3"``, ...),
  any ``"Scenario-Conf"`` MAMuJoCo name gymnasium-robotics accepts, and the Bi-DexHands tasks
  (``"ShadowHandPen"``, ...; these need Isaac Gym) and their MuJoCo re-implementations
  (``"MjShadowHandPen"``, ...; :mod:`dimalib.envs.mj_dexhands`, no Isaac Gym).
* :func:`spec_from_env` reads a :class:`~dimalib.spec.MultiAgentSpec` from a PettingZoo
  ``ParallelEnv`` with ``state()``.
* :class:`VectorMultiAgentEnv` and :func:`collect` step ``N`` copies with one batched policy call.
"""

from __future__ import annotations

from typing import Any

from dimalib.envs.bidexhands import BIDEXHANDS_TASKS, BiDexHandsVecEnv, make_bidexhands
from dimalib.envs.mamujoco import (
    MAMUJOCO_TASKS,
    UnknownEnvError,
    did_you_mean,
    make_mamujoco,
    parse_mamujoco_name,
    suggest_mamujoco_name,
)
from dimalib.envs.mj_dexhands import MJ_DEXHANDS_TASK_NAMES
from dimalib.envs.parallel import ParallelEnvWithState, spec_from_env
from dimalib.envs.vector import (
    CollectResult,
    StepResult,
    TransitionSink,
    VectorMultiAgentEnv,
    collect,
)

__all__ = [
    "BIDEXHANDS_TASKS",
    "MAMUJOCO_TASKS",
    "MJ_DEXHANDS_TASK_NAMES",
    "BiDexHandsVecEnv",
    "CollectResult",
    "ParallelEnvWithState",
    "StepResult",
    "TransitionSink",
    "UnknownEnvError",
    "VectorMultiAgentEnv",
    "collect",
    "known_env_names",
    "make_bidexhands",
    "make_env",
    "make_mamujoco",
    "spec_from_env",
]


def known_env_names() -> list[str]:
    """The named tasks :func:`make_env` resolves (plus any MAMuJoCo ``"Scenario-Conf"``)."""
    return [*MAMUJOCO_TASKS, *BIDEXHANDS_TASKS, *MJ_DEXHANDS_TASK_NAMES]


def make_env(name: str, **kwargs: Any) -> Any:
    """Build an environment by name.

    * MAMuJoCo (``"HalfCheetah-3x2"``, ``"Hopper-3x1"``, ...): returns gymnasium-robotics'
      PettingZoo ``ParallelEnv`` (one copy); ``kwargs`` go to
      :func:`~dimalib.envs.mamujoco.make_mamujoco` (``agent_obsk``, ``max_episode_steps``, ...).
      Batch copies with ``VectorMultiAgentEnv([lambda: make_env(name)] * N)``.
    * Bi-DexHands (``"ShadowHandPen"``, ``"ShadowHandBottleCap"``, ``"ShadowHandDoorOpenInward"``,
      ``"ShadowHandDoorOpenOutward"``): returns a :class:`BiDexHandsVecEnv` (already batched,
      ``num_envs=`` in ``kwargs``); raises ``ImportError`` explaining how to get Isaac Gym when it
      is missing.
    * MuJoCo re-implementations of those tasks (``"MjShadowHandPen"``,
      ``"MjShadowHandBottleCap"``, ``"MjShadowHandDoorOpenInward"``,
      ``"MjShadowHandDoorOpenOutward"``): returns a :class:`~dimalib.envs.mj_dexhands.MjDexHandsEnv` (a PettingZoo
      ``ParallelEnv``, one copy; ``kwargs`` such as ``max_episode_steps`` go to it).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if not isinstance(name, str):
        raise ValueError(f"name: expected a string, received {type(name).__name__}")
    if name in BIDEXHANDS_TASKS:
        return make_bidexhands(name, **kwargs)
    if name in MJ_DEXHANDS_TASK_NAMES:
        try:
            from dimalib.envs.mj_dexhands.env import make_mj_dexhands
        except ImportError as exc:
            raise ImportError(
                f"{name} needs MuJoCo and gymnasium-robotics' Shadow hand assets: "
                f"pip install 'dimalib[mamujoco]' ({exc})"
            ) from exc
        return make_mj_dexhands(name, **kwargs)
    parsed = parse_mamujoco_name(name)
    if parsed is not None:
        return make_mamujoco(*parsed, **kwargs)
    raise UnknownEnvError(
        f"name: expected one of {known_env_names()} or a MAMuJoCo 'Scenario-Conf' name "
        f"(e.g. 'Hopper-3x1', 'Pusher-3p'), received {name!r}"
        + (did_you_mean(name, known_env_names()) or suggest_mamujoco_name(name))
    )
