"""`MuJoCoStepper`: the real simulator's next global state from any MAMuJoCo state and action.

The world-model diagnostics need the *true* answer to "what if agent ``i`` had acted
differently from this state?" (:func:`dimalib.evaluation.action_effects`). A MAMuJoCo global state
is the single-agent MuJoCo observation ``[qpos[k:], qvel, extras]`` (:mod:`dimalib.envs.mamujoco_state`),
so the simulator can be put in that state and stepped with any joint action: ``MuJoCoStepper``
resets MuJoCo's data, sets ``qpos``/``qvel`` from the state, applies the joint action through
gymnasium-robotics' own action partition and runs the env's ``frame_skip`` sub-steps
(``MujocoEnv.do_simulation``), then reads the env's ``_get_obs()`` — one sample at a time, on the
CPU.

What a state does not hold, and what that means here:

* the root position ``qpos[:k]`` (x; x and y for Ant): set to 0. The dynamics of these tasks do
  not depend on it (flat floor, no position-dependent forces), and it is not in the next state;
* ``extras`` (Ant's clipped contact forces ``cfrc_ext``): derived quantities, not inputs of the
  dynamics; the next state's extras are recomputed by the simulator;
* velocities clipped in the state (Walker2d, Hopper clip ``qvel`` to ±10): the simulator restarts
  from the clipped value (rare on data from a moving policy);
* MuJoCo's solver warm start (``qacc_warmstart``) and, on tasks with actuator activations, their
  state: reset to zero, so the true step may differ from the recorded one in the contact solver's
  last digits. :meth:`MuJoCoStepper.replay_error` measures how well stepping from recorded states
  reproduces the recorded next states (HalfCheetah, Ant: to 1e-14).
* Rewards that read body positions (Ant's ``xpos``) differ slightly from the real env's: after
  ``mj_step`` the real env's ``xpos`` is one sub-step stale, a step from a set state recomputes it
  (measured: up to 0.01 per Ant step; HalfCheetah reads ``qpos`` and is exact).
* The agents' observations are read from the state itself where gymnasium-robotics' mapping is a
  plain selection of state entries (verified by ``flat_stepper``; HalfCheetah, Ant): contact
  forces in an observation are those of the step that produced the state, which MuJoCo cannot
  recompute from positions and velocities. Elsewhere (e.g. Walker2d, whose agents see unclipped
  velocities) they come from MuJoCo after setting the state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dimalib.envs.mamujoco import flat_stepper
from dimalib.envs.mamujoco_state import StateLayout, state_layout, state_to_qpos_qvel

__all__ = ["MuJoCoStepper", "global_action_index"]


def global_action_index(env: Any) -> np.ndarray[Any, Any]:
    """``[A]`` indices with ``global_action = joint_action[index]`` for a MAMuJoCo env.

    Reads gymnasium-robotics' own ``agent_action_partitions`` (the joint action concatenates the
    agents' actions in agent order, each in its partition's node order).
    """
    act_ids = [node.act_ids for part in env.agent_action_partitions for node in part]
    n_act = int(env.single_agent_env.action_space.shape[0])
    if sorted(act_ids) != list(range(n_act)):
        raise ValueError(
            f"env: expected the agents' partitions to cover the {n_act} actuators once each, "
            f"received {act_ids}"
        )
    index = np.empty(n_act, np.int64)
    index[np.asarray(act_ids, np.int64)] = np.arange(n_act)
    return index


class MuJoCoStepper:
    """``(state [B, S], joint_action [B, A]) -> next state [B, S]`` by the real simulator.

    Args:
        env_name: a MAMuJoCo task name (``"HalfCheetah-2x3"``, ``"Ant-2x4"``, ...).

    Examples:
        >>> stepper = MuJoCoStepper("HalfCheetah-2x3")  # doctest: +SKIP
        >>> next_state = stepper(states[:, -1], actions[:, -1])  # doctest: +SKIP
    """

    def __init__(self, env_name: str) -> None:
        from dimalib.envs.mamujoco import make_mamujoco_task

        self.env = make_mamujoco_task(env_name)
        self.env.reset(seed=0)
        self.action_index = global_action_index(self.env)
        self.layout: StateLayout = state_layout(self.env)
        self.uw = self.env.single_agent_env.unwrapped
        # where every observation entry is an entry of the state (verified), read it there: the
        # state holds the step's own contact forces, which MuJoCo cannot recompute from a state
        flat = flat_stepper(self.env)
        self.obs_index = None if flat is None else flat.obs_index

    def _set(self, state: np.ndarray[Any, Any]) -> None:
        import mujoco

        qpos, qvel = state_to_qpos_qvel(self.layout, state)
        mujoco.mj_resetData(self.uw.model, self.uw.data)
        self.uw.set_state(qpos, qvel)  # also runs mj_forward

    def step_one(self, state: np.ndarray[Any, Any], joint_action: np.ndarray[Any, Any]) -> Any:
        """One transition in float64 numpy: ``[S]``, ``[A]`` → ``[S]``."""
        return self.transition(state, joint_action)[0]

    def transition(
        self, state: np.ndarray[Any, Any], joint_action: np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], float, bool]:
        """One step of the env's own ``step`` from ``state``: ``(next state [S], reward,
        terminated)`` (the shared MAMuJoCo reward; the root starts at 0, which the rewards of
        these tasks do not depend on)."""
        self._set(state)
        global_action = np.asarray(joint_action, np.float64)[self.action_index]
        nxt, reward, terminated, _, _ = self.uw.step(global_action)
        return np.asarray(nxt, np.float64), float(reward), bool(terminated)

    def observe(self, state: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """``[S]`` → the agents' joint observation ``[O]`` (gymnasium-robotics' own mapping)."""
        if self.obs_index is not None:
            return np.asarray(state, np.float64)[self.obs_index]
        self._set(state)
        agents = range(len(self.env.possible_agents))
        return np.concatenate([self.env._get_obs_agent(i) for i in agents]).astype(np.float64)

    def rollout(
        self,
        states: torch.Tensor,
        policy: Any,
        horizon: int,
    ) -> dict[str, torch.Tensor]:
        """Roll ``policy`` (``obs [K, O] -> joint action [K, A]``, batched) in the real simulator
        from ``states [K, S]`` for ``horizon`` steps, each start on its own.

        Returns:
            ``rewards [H, K]`` (0 after a termination), ``terminated [H, K]`` (sticky),
            ``states [H + 1, K, S]`` and ``actions [H, K, A]``, as tensors on ``states``' device
            and dtype.
        """
        cur = states.detach().cpu().double().numpy().copy()
        K = cur.shape[0]
        done = np.zeros(K, dtype=bool)
        rewards, terms, visited, taken = [], [], [cur.copy()], []
        for _ in range(horizon):
            obs = torch.as_tensor(np.stack([self.observe(s) for s in cur]), dtype=states.dtype)
            act = policy(obs.to(states.device)).detach().cpu().double().numpy()
            taken.append(act)
            r = np.zeros(K)
            for k in range(K):
                if done[k]:
                    continue
                cur[k], r[k], term = self.transition(cur[k], act[k])
                done[k] |= term
            rewards.append(r)
            terms.append(done.copy())
            visited.append(cur.copy())
        dtype, device = states.dtype, states.device
        return {
            "rewards": torch.as_tensor(np.stack(rewards), dtype=dtype, device=device),
            "terminated": torch.as_tensor(np.stack(terms), device=device),
            "states": torch.as_tensor(np.stack(visited), dtype=dtype, device=device),
            "actions": torch.as_tensor(np.stack(taken), dtype=dtype, device=device),
        }

    def __call__(self, states: torch.Tensor, joint_action: torch.Tensor) -> torch.Tensor:
        """Batched over ``B`` (a loop on the CPU); returns a tensor like ``states``."""
        s = states.detach().cpu().double().numpy()
        a = joint_action.detach().cpu().double().numpy()
        out = np.stack([self.step_one(s[b], a[b]) for b in range(s.shape[0])])
        return torch.as_tensor(out, dtype=states.dtype, device=states.device)

    def replay_error(
        self, states: torch.Tensor, joint_action: torch.Tensor, next_states: torch.Tensor
    ) -> torch.Tensor:
        """``[S]`` mean absolute difference between stepping from recorded states and the
        recorded next states (how exactly the stepper reproduces the env)."""
        return (self(states, joint_action) - next_states).abs().mean(dim=0)

    def close(self) -> None:
        self.env.close()
