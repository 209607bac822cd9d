"""Real environments and batched collection.

* :func:`make_env` resolves a task name through :mod:`dimalib.envs.registry`: ``"toy"``, the
  paper's MAMuJoCo tasks (``"HalfCheetah-2x3"``, ...), any ``"Scenario-Conf"`` MAMuJoCo name
  gymnasium-robotics accepts, and the Bi-DexHands tasks (``"ShadowHandPen"``, ...; these need
  Isaac Gym) and their MuJoCo re-implementations (``"MjShadowHandPen"``, ...;
  :mod:`dimalib.envs.mj_dexhands`, no Isaac Gym). :func:`register_env` adds your own.
* :func:`spec_from_env` reads a :class:`~dimalib.spec.MultiAgentSpec` from a PettingZoo
  ``ParallelEnv`` with ``state()``.
* :class:`VectorMultiAgentEnv` and :func:`collect` step ``N`` copies with one batched policy call.
"""

from __future__ import annotations

from typing import Any

from dimalib.envs.bidexhands import BIDEXHANDS_TASKS, BiDexHandsVecEnv, make_bidexhands
from dimalib.envs.mamujoco import MAMUJOCO_TASKS, UnknownEnvError, make_mamujoco
from dimalib.envs.mj_dexhands import MJ_DEXHANDS_TASK_NAMES
from dimalib.envs.parallel import ParallelEnvWithState, spec_from_env
from dimalib.envs.registry import (
    EnvEntry,
    known_names,
    lookup,
    make_vector_env,
    register_env,
    unregister_env,
)
from dimalib.envs.registry import make_env as _registry_make_env
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
    "EnvEntry",
    "ParallelEnvWithState",
    "StepResult",
    "TransitionSink",
    "UnknownEnvError",
    "VectorMultiAgentEnv",
    "collect",
    "known_env_names",
    "lookup",
    "make_bidexhands",
    "make_env",
    "make_mamujoco",
    "make_vector_env",
    "register_env",
    "spec_from_env",
    "unregister_env",
]


def known_env_names() -> list[str]:
    """The named envs :func:`make_env` resolves (:func:`dimalib.envs.registry.known_names`;
    any MAMuJoCo ``"Scenario-Conf"`` works too)."""
    return known_names()


def make_env(name: str, **kwargs: Any) -> Any:
    """Build an environment by name (:func:`dimalib.envs.registry.make_env`).

    * ``"toy"``: :class:`~dimalib.envs.toy.CoupledPointMasses` with three agents of action sizes
      1, 2 and 3 (``max_episode_steps``, default 100; other ``kwargs`` override its config).
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
    * a name you registered with :func:`register_env`: what its factory returns.

    Raises:
        ValueError: unknown name (:class:`UnknownEnvError`; the message lists the known ones).
    """
    return _registry_make_env(name, **kwargs)
