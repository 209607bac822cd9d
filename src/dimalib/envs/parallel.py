"""PettingZoo ``ParallelEnv`` ↔ :class:`~dimalib.spec.MultiAgentSpec` glue.

dimalib talks to real environments through the PettingZoo parallel API plus a global ``state()``
(MAMuJoCo, the toy env, any user env that has both). This module holds what is shared by every
such env: the spec read from the env's spaces (:func:`spec_from_env`) and the per-step dict ↔ flat
array conversion used by :mod:`dimalib.envs.vector`.

Layout (see :mod:`dimalib.spec`): a joint observation is the concatenation of the agents'
observations in ``possible_agents`` order, a joint action likewise; dicts keyed by agent name
exist only at this boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dimalib.spec import MultiAgentSpec

__all__ = ["ParallelEnvWithState", "spec_from_env"]


@runtime_checkable
class ParallelEnvWithState(Protocol):
    """What dimalib needs from an environment: PettingZoo's parallel API plus ``state()``.

    ``observation_space(agent)`` and ``action_space(agent)`` must be 1-D ``gymnasium.spaces.Box``;
    ``state()`` returns the global state as a 1-D array.
    """

    possible_agents: list[str]

    def observation_space(self, agent: str) -> Any: ...

    def action_space(self, agent: str) -> Any: ...

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]: ...

    def step(self, actions: dict[str, Any]) -> tuple[Any, Any, Any, Any, Any]: ...

    def state(self) -> Any: ...

    def close(self) -> None: ...


def _box_dim(kind: str, agent: str, space: Any) -> int:
    shape = getattr(space, "shape", None)
    if shape is None or len(shape) != 1 or not hasattr(space, "low"):
        raise ValueError(
            f"{kind}_space({agent!r}): expected a 1-D gymnasium.spaces.Box, received {space!r}"
        )
    return int(shape[0])


def spec_from_env(env: Any) -> MultiAgentSpec:
    """Read a :class:`MultiAgentSpec` from a PettingZoo ``ParallelEnv`` that has ``state()``.

    Agents are taken in ``env.possible_agents`` order. Per-agent observation and action sizes come
    from ``observation_space(agent)`` / ``action_space(agent)`` (1-D Boxes), the action bounds from
    the action spaces' ``low``/``high`` (concatenated in agent order), and the state size from
    ``env.state_space`` when the env has one, otherwise from the length of ``env.state()``.

    Raises:
        ValueError: the env lacks ``possible_agents``/``state()``, a space is not a 1-D Box, the
            action bounds are not finite, or ``state()`` cannot be called yet (reset the env first).
    """
    agents = getattr(env, "possible_agents", None)
    if not agents:
        raise ValueError(
            f"env: expected a PettingZoo ParallelEnv with possible_agents, received "
            f"{type(env).__name__}"
        )
    if not callable(getattr(env, "state", None)):
        raise ValueError(
            f"env: expected a ParallelEnv with a state() method, received {type(env).__name__}"
        )
    names = tuple(str(a) for a in agents)
    obs_dims = tuple(_box_dim("observation", a, env.observation_space(a)) for a in agents)
    act_spaces = [env.action_space(a) for a in agents]
    action_dims = tuple(_box_dim("action", a, s) for a, s in zip(agents, act_spaces, strict=True))
    low = np.concatenate(
        [np.broadcast_to(np.asarray(s.low, np.float64), s.shape) for s in act_spaces]
    )
    high = np.concatenate(
        [np.broadcast_to(np.asarray(s.high, np.float64), s.shape) for s in act_spaces]
    )
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError(
            "env: expected finite action bounds (continuous control), received low="
            f"{low.tolist()} high={high.tolist()}"
        )
    state_space = getattr(env, "state_space", None)
    if state_space is not None and getattr(state_space, "shape", None):
        state_dim = int(np.prod(state_space.shape))
    else:
        try:
            state = np.asarray(env.state())
        except Exception as exc:  # an env may refuse state() before reset
            raise ValueError(
                f"env: state() failed ({exc!r}); reset the env before calling spec_from_env"
            ) from exc
        state_dim = int(state.size)
    return MultiAgentSpec(
        agent_names=names,
        obs_dims=obs_dims,
        action_dims=action_dims,
        state_dim=state_dim,
        action_low=tuple(float(v) for v in low),
        action_high=tuple(float(v) for v in high),
    )


def team_reward(rewards: Mapping[str, Any]) -> float:
    """The team reward of one step: the shared reward, or the agents' mean when they differ."""
    vals = list(rewards.values())
    if not vals:
        return 0.0
    first = vals[0]
    if vals.count(first) == len(vals):  # shared (the cooperative case): C-level comparison
        return float(first)
    return float(sum(float(v) for v in vals) / len(vals))
