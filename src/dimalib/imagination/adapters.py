"""Views of an :class:`ImaginationEnv` in the conventions of existing MARL code.

Each view wraps one :class:`~dimalib.imagination.env.ImaginationEnv` (no copy of the world model)
so that a learner written for another API trains inside the world model unchanged:

* :class:`PettingZooImaginationEnv`: a PettingZoo ``ParallelEnv`` over a single rollout
  (``num_envs == 1``): dict-keyed numpy observations, shared reward, ``state()``.
* :class:`VectorImaginationEnv`: a Gymnasium ``VectorEnv`` over the joint observation and joint
  action (``[N, O]`` / ``[N, A]``), with next-step autoreset at the horizon.
* :class:`HARLImaginationEnv`: the tuple conventions of HARL / the official MAPPO code
  (``obs, share_obs, rewards, dones, infos, available_actions``), agents padded to one size.

A TorchRL ``EnvBase`` view lives in :mod:`dimalib.imagination.torchrl_env` (optional dependency).

**Episodes in imagination.** All rollouts of an ImaginationEnv start together (``reset``) and are
truncated together after ``horizon`` steps. A rollout whose predicted termination probability
exceeds the threshold is *terminated*; the world model cannot restart one rollout alone, so it
stays in an absorbing terminal state until the horizon: ``terminated`` remains True and its
reward is 0 on every later step. How each view presents this:

* PettingZoo: the episode (one rollout) ends at the first termination or at the horizon; all
  agents leave ``agents`` at once and ``step`` then refuses until ``reset``.
With ``ImaginationConfig(autoreset=True)`` a terminated rollout is instead restarted on the
next step from a fresh context (:mod:`dimalib.imagination.env`), and the vector view follows
Gymnasium's ``NEXT_STEP`` contract for early terminations too. Without it:

* Vector (Gymnasium ``NEXT_STEP`` autoreset): ``terminations`` stays True after a termination; a
  learner that skips the transition that follows an episode end (the ``NEXT_STEP`` rule) thus
  skips every absorbing step. ``infos["active"]`` marks the transitions that belong to a live
  episode. The step after the horizon restarts every rollout.
* HARL (same-step autoreset, as HARL's ``ShareDummyVecEnv``/``ShareSubprocVecEnv``): ``dones``
  stays True after a termination (a one-step terminal episode with reward 0 every step, value
  target 0); at the horizon the rollouts restart within the same ``step``. With
  ``autoreset=True`` a terminated rollout restarts within the same ``step`` as well (its last
  observation in ``infos[i][0]["original_obs"]``).

Shared reward. The world model predicts one team reward; every agent receives it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from pettingzoo import ParallelEnv

from dimalib.data.buffer import ReplayBuffer
from dimalib.imagination.env import ImaginationEnv, StartContext
from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import check_tensor

__all__ = ["HARLImaginationEnv", "PettingZooImaginationEnv", "VectorImaginationEnv"]

NDArray = np.ndarray[Any, Any]
Source = ReplayBuffer | StartContext


# --------------------------------------------------------------------------- helpers
def _check_env(imagination_env: object) -> ImaginationEnv:
    if not isinstance(imagination_env, ImaginationEnv):
        raise ValueError(
            f"imagination_env: expected an ImaginationEnv, received {type(imagination_env).__name__}"
        )
    return imagination_env


def _source_from_options(options: Mapping[str, Any] | None) -> Source | None:
    """``options["source"]`` (start contexts for this reset); other keys are ignored."""
    if options is None:
        return None
    if not isinstance(options, Mapping):
        raise ValueError(f"options: expected a dict or None, received {type(options).__name__}")
    source = options.get("source")
    if source is not None and not isinstance(source, (ReplayBuffer, Mapping)):
        raise ValueError(
            "options['source']: expected a ReplayBuffer or a mapping of start-context tensors, "
            f"received {type(source).__name__}"
        )
    return source


def _obs_box(size: int) -> gymnasium.spaces.Box:
    return gymnasium.spaces.Box(-np.inf, np.inf, (size,), np.float32)


def _action_box(spec: MultiAgentSpec, sl: slice, pad_to: int | None = None) -> gymnasium.spaces.Box:
    """Box of the joint-action entries ``sl``; padded with ``[-1, 1]`` entries up to ``pad_to``."""
    assert isinstance(spec.action_low, tuple) and isinstance(spec.action_high, tuple)
    low = list(spec.action_low[sl])
    high = list(spec.action_high[sl])
    if pad_to is not None:
        low += [-1.0] * (pad_to - len(low))
        high += [1.0] * (pad_to - len(high))
    return gymnasium.spaces.Box(
        np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32), dtype=np.float32
    )


def _as_action_tensor(
    name: str, actions: object, shape: tuple[int, ...], device: torch.device
) -> torch.Tensor:
    """A floating ``shape`` tensor on ``device`` (float32) from a tensor or array-like."""
    if not isinstance(actions, torch.Tensor):
        try:
            array = np.asarray(actions, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{name}: expected a float array or tensor, received {type(actions).__name__}"
            ) from err
        actions = torch.from_numpy(array)
    check_tensor(name, actions, shape, floating=True)
    return actions.to(device=device, dtype=torch.float32)


def _numpy(x: torch.Tensor) -> NDArray:
    return x.detach().cpu().numpy()


# --------------------------------------------------------------------------- PettingZoo
class PettingZooImaginationEnv(ParallelEnv[str, NDArray, NDArray]):
    """PettingZoo ``ParallelEnv`` view of an :class:`ImaginationEnv` with ``num_envs == 1``.

    Args:
        imagination_env: the imagined environment (one rollout).

    * ``possible_agents`` / ``agents``: the spec's agent names; all agents leave ``agents`` at the
      first termination or at the horizon (PettingZoo's rule for finished agents).
    * observations: ``{agent: float32 [obs_dims[i]]}``; ``state()``: float32 ``[S]``.
    * rewards: the shared predicted team reward (a Python ``float``) for every agent;
      terminations / truncations: ``bool``; infos: ``{"termination_prob": float}`` per agent.
    * ``observation_space(agent)`` (unbounded) and ``action_space(agent)`` (the spec's bounds)
      are float32 ``Box`` objects created once.
    * ``reset(seed=s)`` reseeds the ImaginationEnv (start-context sampling and sampler noise), so
      two views reset with the same seed and fed the same actions give identical rollouts.
      ``reset(options={"source": ctx})`` starts from the given start contexts (a
      :class:`ReplayBuffer` or a mapping, see :data:`StartContext`); other option keys are ignored.

    Action dicts are checked on the host: every live agent exactly once, each action of shape
    ``(action_dims[i],)`` and finite; otherwise ``ValueError`` naming the agent. Finite
    out-of-bound actions follow the ImaginationEnv's ``out_of_bounds`` rule (clip by default).

    Raises:
        ValueError: ``imagination_env`` is not an ImaginationEnv or has ``num_envs != 1``.
    """

    metadata: dict[str, Any] = {  # noqa: RUF012 - PettingZoo's convention
        "name": "dimalib_imagination_v0",
        "render_modes": [],
        "is_parallelizable": True,
    }

    def __init__(self, imagination_env: ImaginationEnv) -> None:
        env = _check_env(imagination_env)
        if env.num_envs != 1:
            raise ValueError(
                f"imagination_env: expected num_envs == 1 for the PettingZoo view, received "
                f"num_envs={env.num_envs}; use VectorImaginationEnv or HARLImaginationEnv for "
                "batches of rollouts"
            )
        self.imagination_env = env
        spec = env.spec
        self.multi_agent_spec = spec
        self.possible_agents: list[str] = list(spec.agent_names)
        self.agents: list[str] = []
        self.render_mode = None
        self.observation_spaces = {
            a: _obs_box(d) for a, d in zip(self.possible_agents, spec.obs_dims, strict=True)
        }
        self.action_spaces = {
            a: _action_box(spec, sl)
            for a, sl in zip(self.possible_agents, spec.action_slices, strict=True)
        }
        self.state_space = _obs_box(spec.state_dim)
        self._state: NDArray | None = None

    # ---------------------------------------------------------------- spaces
    def _check_agent(self, agent: str) -> None:
        if agent not in self.observation_spaces:
            raise ValueError(f"agent: expected one of {self.possible_agents}, received {agent!r}")

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        """The (cached) unbounded float32 ``Box`` of ``agent``'s observation."""
        self._check_agent(agent)
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Box:
        """The (cached) float32 ``Box`` of ``agent``'s action, with the spec's bounds."""
        self._check_agent(agent)
        return self.action_spaces[agent]

    # --------------------------------------------------------------- episode
    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, NDArray], dict[str, dict[str, Any]]]:
        """Start a rollout; returns ``({agent: obs}, {agent: {}})``."""
        obs, state = self.imagination_env.reset(_source_from_options(options), seed=seed)
        self.agents = list(self.possible_agents)
        self._state = _numpy(state[0]).astype(np.float32, copy=True)
        return self._split(_numpy(obs[0])), {a: {} for a in self.agents}

    def step(
        self, actions: dict[str, Any]
    ) -> tuple[
        dict[str, NDArray],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        """Advance the rollout with ``{agent: action [action_dims[i]]}`` for every live agent."""
        if not self.agents:
            raise ValueError(
                "step: the imagined episode has ended (or reset() was not called); call reset()"
            )
        joint = self._joint_action(actions)
        out = self.imagination_env.step(joint)
        # one host transfer for everything
        packed = _numpy(
            torch.cat(
                [
                    out.obs[0],
                    out.state[0],
                    out.reward[:1],
                    out.terminated[:1].float(),
                    out.truncated[:1].float(),
                    out.termination_prob[:1],
                ]
            )
        )
        o, s = self.multi_agent_spec.joint_obs_dim, self.multi_agent_spec.state_dim
        obs = self._split(packed[:o])
        self._state = packed[o : o + s].astype(np.float32, copy=True)
        reward, term, trunc, prob = (float(v) for v in packed[o + s :])
        terminated, truncated = term > 0.5, trunc > 0.5
        names = self.agents
        result = (
            obs,
            dict.fromkeys(names, reward),
            dict.fromkeys(names, terminated),
            dict.fromkeys(names, truncated),
            {a: {"termination_prob": prob} for a in names},
        )
        if terminated or truncated:
            self.agents = []
        return result

    def state(self) -> NDArray:
        """``[S]`` float32: the current (predicted) global state."""
        if self._state is None:
            raise ValueError("state: call reset() first")
        return self._state.copy()

    def render(self) -> None:
        return None

    def close(self) -> None:
        return None

    # --------------------------------------------------------------- helpers
    def _split(self, joint_obs: NDArray) -> dict[str, NDArray]:
        return {
            a: np.array(joint_obs[sl], dtype=np.float32)
            for a, sl in zip(self.possible_agents, self.multi_agent_spec.obs_slices, strict=True)
        }

    def _joint_action(self, actions: object) -> torch.Tensor:
        """Validated ``[1, A]`` joint action on the world model's device."""
        if not isinstance(actions, Mapping):
            raise ValueError(
                f"actions: expected a dict keyed by agent name, received {type(actions).__name__}"
            )
        for name in self.agents:
            if name not in actions:
                raise ValueError(
                    f"actions: missing an action for agent {name!r} (live agents: {self.agents})"
                )
        for key in actions:
            if key not in self.agents:
                raise ValueError(
                    f"actions: received an action for {key!r}, which is not a live agent "
                    f"(live agents: {self.agents})"
                )
        parts = []
        for name, dim in zip(self.possible_agents, self.multi_agent_spec.action_dims, strict=True):
            value = actions[name]
            try:
                if isinstance(value, torch.Tensor):
                    value = value.detach().cpu()
                a = np.asarray(value, dtype=np.float32)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"actions[{name!r}]: expected a float array of shape ({dim},), received "
                    f"{type(value).__name__}"
                ) from err
            if a.shape != (dim,):
                raise ValueError(f"actions[{name!r}]: expected shape ({dim},), received {a.shape}")
            if not np.isfinite(a).all():
                raise ValueError(
                    f"actions[{name!r}]: expected finite values, received {a.tolist()}"
                )
            parts.append(a)
        joint = torch.from_numpy(np.concatenate(parts)[None])
        return joint.to(self.imagination_env.device)


# --------------------------------------------------------------------------- Gymnasium vector
class VectorImaginationEnv(VectorEnv[Any, Any, Any]):
    """Gymnasium ``VectorEnv`` view of an :class:`ImaginationEnv` (``N = num_envs`` rollouts).

    Args:
        imagination_env: the imagined environment.
        as_numpy: return numpy arrays (default: what Gymnasium's vector wrappers such as
            ``RecordEpisodeStatistics`` and ``NormalizeObservation`` expect); ``False`` returns
            torch tensors on the world model's device, for torch learners (no host copies).

    Spaces: ``single_observation_space`` is the unbounded float32 ``Box`` of the joint
    observation ``[O]`` (agents concatenated in spec order), ``single_action_space`` the float32
    ``Box`` of the joint action ``[A]`` with the spec's bounds; ``observation_space`` and
    ``action_space`` are their ``[N, ...]`` batched versions.

    ``reset(seed=, options=) -> (obs [N, O], infos)`` and ``step(actions [N, A]) -> (obs [N, O],
    rewards [N], terminations [N] bool, truncations [N] bool, infos)``. Outputs are numpy arrays
    (float32 and bool), or torch tensors on the world model's device with ``as_numpy=False``;
    ``actions`` may be a tensor (any device, floating) or an array-like. ``infos`` holds
    ``"state"`` ``[N, S]`` (the global state), ``"termination_prob"`` ``[N]`` (the predicted
    ``γ_t``; 0 after a reset) and, from ``step``, ``"active"`` ``[N]`` bool (the transition belongs
    to a live episode: False on the autoreset step and for rollouts that ended earlier), each with
    the all-True ``"_key"`` mask of Gymnasium's vector ``infos``.

    Autoreset (``metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP``): the step that reaches
    the horizon reports ``truncations`` True for every rollout; the following ``step`` ignores its
    actions, restarts every rollout from the start contexts (those of the last explicit
    ``reset``: ``options["source"]`` or the ImaginationEnv's own) and returns the first
    observations with zero rewards and False flags. Terminations before the horizon: with
    ``ImaginationConfig(autoreset=True)`` the terminated rollout restarts on the next step (the
    same ``NEXT_STEP`` contract, so ``RecordEpisodeStatistics`` counts every episode once, tested);
    otherwise they are sticky (see the module docstring). One case is off by one: a rollout that
    restarts on the horizon step itself begins its next episode with one extra zero-reward step
    (the restart of every rollout). ``reset(seed=s)`` reseeds the ImaginationEnv.
    """

    metadata: dict[str, Any] = {  # noqa: RUF012 - Gymnasium's convention
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        "render_modes": [],
    }

    def __init__(self, imagination_env: ImaginationEnv, *, as_numpy: bool = True) -> None:
        env = _check_env(imagination_env)
        self.imagination_env = env
        self.multi_agent_spec = spec = env.spec
        self.as_numpy = bool(as_numpy)
        self.device = env.device
        self.num_envs = env.num_envs
        self.single_observation_space = _obs_box(spec.joint_obs_dim)
        self.single_action_space = _action_box(spec, slice(0, spec.joint_action_dim))
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._source: Source | None = None
        self._started = False
        self._autoreset = False  # the previous step reached the horizon
        self._ended = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Restart every rollout; returns ``(obs [N, O], {"state", "termination_prob"})``."""
        super().reset(seed=seed)
        self._source = _source_from_options(options)
        obs, state = self.imagination_env.reset(self._source, seed=seed)
        self._started = True
        self._autoreset = False
        self._ended.zero_()
        zeros = torch.zeros(self.num_envs, device=self.device)
        return self._out(obs), self._infos(state=state, termination_prob=zeros)

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """One batched step (or the autoreset step after the horizon); see the class docstring."""
        if not self._started:
            raise ValueError("step: call reset() before step()")
        n, a = self.num_envs, self.multi_agent_spec.joint_action_dim
        action = _as_action_tensor("actions", actions, (n, a), self.device)
        if self._autoreset:
            obs, state = self.imagination_env.reset(self._source)
            self._autoreset = False
            self._ended.zero_()
            flags = torch.zeros(n, dtype=torch.bool, device=self.device)
            zeros = torch.zeros(n, device=self.device)
            return (
                self._out(obs),
                self._out(zeros),
                self._out(flags),
                self._out(flags.clone()),
                self._infos(state=state, termination_prob=zeros.clone(), active=flags.clone()),
            )
        out = self.imagination_env.step(action)
        if self.imagination_env.config.autoreset:  # the ImaginationEnv restarts early ends
            active = ~self.imagination_env.restarted
        else:
            active = ~self._ended
            self._ended = out.terminated | out.truncated
        # every rollout is truncated at the same step; the step count avoids a device sync
        self._autoreset = self.imagination_env.t >= self.imagination_env.horizon
        return (
            self._out(out.obs),
            self._out(out.reward),
            self._out(out.terminated),
            self._out(out.truncated),
            self._infos(state=out.state, termination_prob=out.termination_prob, active=active),
        )

    def render(self) -> None:
        return None

    def _out(self, x: torch.Tensor) -> Any:
        return _numpy(x) if self.as_numpy else x

    def _infos(self, **values: torch.Tensor) -> dict[str, Any]:
        infos: dict[str, Any] = {}
        mask = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        for key, value in values.items():
            infos[key] = self._out(value)
            infos[f"_{key}"] = self._out(mask)
        return infos


# --------------------------------------------------------------------------- HARL / MAPPO
class HARLImaginationEnv:
    """HARL / official-MAPPO view of an :class:`ImaginationEnv` (``N = num_envs`` rollouts).

    Args:
        imagination_env: the imagined environment.
        as_numpy: return numpy arrays (default, as HARL's vectorised envs do) instead of torch
            tensors on the world model's device.

    * ``reset() -> (obs [N, n_agents, max_obs], share_obs [N, n_agents, S], None)``;
    * ``step(actions [N, n_agents, max_act]) -> (obs, share_obs, rewards [N, n_agents, 1],
      dones [N, n_agents] bool, infos, None)``.

    Padding: agent ``i``'s observation fills ``obs[:, i, :obs_dims[i]]``, the rest is 0; its
    action is read from ``actions[:, i, :action_dims[i]]`` and entries past that are ignored (as
    HARL's MAMuJoCo env drops the "dummy actions" of smaller agents). ``share_obs`` is the global
    state repeated for every agent (HARL's ``"EP"`` state type). ``available_actions`` is ``None``
    (continuous actions). Rewards are the shared team reward repeated per agent; ``dones`` is
    ``terminated | truncated`` of the rollout for every agent.

    ``infos`` is a list of ``N`` lists of ``n_agents`` dicts, each with ``"bad_transition"``
    (True when the rollout was truncated at the horizon without terminating: bootstrap from the
    value, as in HARL) and ``"termination_prob"``. At the horizon every rollout is done and, as
    HARL's ``ShareDummyVecEnv`` does, the view restarts them within the same ``step``: the returned
    ``obs``/``share_obs`` are the new first ones, and ``infos[i][0]`` holds the last ones under
    ``"original_obs"``, ``"original_state"`` and ``"original_avail_actions"`` (None). Terminations
    before the horizon are sticky (see the module docstring). Building ``infos`` reads
    ``bad_transition`` and ``termination_prob`` on the host (one sync per step).

    Attributes (HARL's names): ``n_agents``, ``num_envs``, ``observation_space`` (per agent,
    padded ``Box(max_obs)``), ``share_observation_space`` (per agent, ``Box(S)``),
    ``action_space`` (per agent, padded ``Box(max_act)``: the agent's bounds, then ``[-1, 1]`` on
    ignored entries) and ``true_action_space`` (per agent, unpadded).
    """

    def __init__(self, imagination_env: ImaginationEnv, *, as_numpy: bool = True) -> None:
        env = _check_env(imagination_env)
        self.imagination_env = env
        self.multi_agent_spec = spec = env.spec
        self.as_numpy = bool(as_numpy)
        self.device = env.device
        self.num_envs = env.num_envs
        self.n_agents = spec.n_agents
        m_obs, m_act = spec.max_obs_dim, spec.max_action_dim
        self.observation_space = [_obs_box(m_obs) for _ in range(self.n_agents)]
        self.share_observation_space = [_obs_box(spec.state_dim) for _ in range(self.n_agents)]
        self.action_space = [_action_box(spec, sl, pad_to=m_act) for sl in spec.action_slices]
        self.true_action_space = [_action_box(spec, sl) for sl in spec.action_slices]
        self._source: Source | None = None

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, Any, None]:
        """Restart every rollout; returns ``(obs, share_obs, None)``.

        ``seed`` reseeds the ImaginationEnv; ``options["source"]`` gives start contexts (kept for
        the automatic restarts at the horizon).
        """
        self._source = _source_from_options(options)
        obs, state = self.imagination_env.reset(self._source, seed=seed)
        return self._out(self.pad_obs(obs)), self._out(self._share(state)), None

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, list[list[dict[str, Any]]], None]:
        """One batched step with padded per-agent ``actions``; see the class docstring."""
        env, spec = self.imagination_env, self.multi_agent_spec
        n, k = self.num_envs, self.n_agents
        padded = _as_action_tensor("actions", actions, (n, k, spec.max_action_dim), self.device)
        out = env.step(spec.unpad_actions(padded))
        obs, share_obs = self.pad_obs(out.obs), self._share(out.state)
        rewards = out.reward[:, None, None].expand(n, k, 1).clone()
        dones = (out.terminated | out.truncated)[:, None].expand(n, k).clone()
        bad = (out.truncated & ~out.terminated).tolist()
        prob = out.termination_prob.tolist()
        infos: list[list[dict[str, Any]]] = [
            [{"bad_transition": bool(bad[i]), "termination_prob": float(prob[i])} for _ in range(k)]
            for i in range(n)
        ]
        if env.t >= env.horizon:  # every rollout is done: restart them in this step
            last_obs, last_share = self._out(obs), self._out(share_obs)
            for i in range(n):
                infos[i][0]["original_obs"] = last_obs[i]
                infos[i][0]["original_state"] = last_share[i]
                infos[i][0]["original_avail_actions"] = None
            new_obs, new_state = env.reset(self._source)
            obs, share_obs = self.pad_obs(new_obs), self._share(new_state)
        elif env.config.autoreset:  # same-step restart of the rollouts that terminated
            ended = out.terminated.tolist()
            if any(ended):
                last_obs, last_share = self._out(obs), self._out(share_obs)
                for i in (i for i in range(n) if ended[i]):
                    infos[i][0]["original_obs"] = last_obs[i]
                    infos[i][0]["original_state"] = last_share[i]
                    infos[i][0]["original_avail_actions"] = None
                new_obs, new_state = env.restart(out.terminated)
                obs, share_obs = self.pad_obs(new_obs), self._share(new_state)
        return (
            self._out(obs),
            self._out(share_obs),
            self._out(rewards),
            self._out(dones),
            infos,
            None,
        )

    def pad_obs(self, joint_obs: torch.Tensor) -> torch.Tensor:
        """``[..., O]`` joint observation → ``[..., n_agents, max_obs]``, zero padded."""
        return self.multi_agent_spec.pad_obs(joint_obs)

    def close(self) -> None:
        return None

    def _share(self, state: torch.Tensor) -> torch.Tensor:
        return state[:, None, :].expand(-1, self.n_agents, -1).clone()

    def _out(self, x: torch.Tensor) -> Any:
        return _numpy(x) if self.as_numpy else x
