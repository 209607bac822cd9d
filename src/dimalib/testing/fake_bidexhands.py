"""FAKE Bi-DexHands ``MultiVecTaskPython`` for tests: same interface, made-up dynamics.

:class:`FakeMultiVecTaskPython` is **not** Bi-DexHands. It mirrors the interface and the data
handling of Bi-DexHands' ``MultiVecTaskPython`` (``bidexhands/tasks/hand_base/multi_vec_task.py``)
so that :class:`dimalib.envs.bidexhands.BiDexHandsVecEnv` can be tested without Isaac Gym:

* attributes ``num_envs``, ``num_agents`` (2), ``num_obs`` (per-agent obs, ``task.num_obs -
  num_hand_obs``), ``num_acts`` (26), ``nums_share_observations``, ``clip_obs`` (5),
  ``clip_actions`` (1), ``rl_device`` and ``task`` (with ``obs_buf``, ``rew_buf``, ``reset_buf``,
  ``progress_buf``, ``max_episode_length``, ``num_hand_obs`` 199);
* ``step(actions)`` indexes ``actions[agent]`` and ``hstack``s them (so it takes ``[2, N, 26]``),
  clamps to ±1, runs the task step, splits ``obs_buf`` into the two hands' observations
  (``obs[:, :199] ++ obs[:, 398:]`` and ``obs[:, 199:398] ++ obs[:, 398:]``), and returns
  ``obs [N, 2, 218]``, ``state [N, 2, 417]`` (the clamped ``obs_buf`` for each agent),
  ``reward [N, 2, 1]``, ``done [N, 2]`` (``reset_buf``), ``info``, ``None``; ``221``/``420`` for
  BottleCap;
* the task's ``step`` works like an Isaac Gym task: ``pre_physics_step`` first resets the envs
  flagged in ``reset_buf`` (so an ended env is reset inside the *next* step, and its reset
  observation is never returned), then ``progress_buf += 1``, observations, reward and
  ``reset_buf = failure | progress_buf >= max_episode_length``;
* ``reset()`` steps every env once with small random actions, as the real one does.

The dynamics are a toy: an "object height" ``z`` (obs index 398) moves with the two hands' vertical
force actions, ``z += 0.05 * (a[:, 2] + a[:, 28])``; the episode fails when ``z < -1``; the reward
is ``1 - |z - 0.5|`` minus a small action penalty. Everything else in ``obs_buf`` is a fixed random
linear function of the state, plus the last actions at 173:199 and 372:398 as in Bi-DexHands.
"""

from __future__ import annotations

from typing import Any

import torch

from dimalib.envs.bidexhands import BIDEXHANDS_TASKS

__all__ = ["FakeMultiVecTaskPython", "FakeShadowHandTask"]

NUM_HAND_OBS = 199  # 72 + 95 + 26 + 6, as in Bi-DexHands' Shadow hand tasks
OBJECT_Z = 398  # first index after the two hands' blocks


class FakeShadowHandTask:
    """FAKE stand-in for a Bi-DexHands Shadow-hand task (the ``task`` inside MultiVecTaskPython)."""

    def __init__(
        self,
        num_envs: int,
        num_obs: int,
        max_episode_length: int,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        self.num_envs = num_envs
        self.num_obs = num_obs
        self.num_states = 0
        self.num_hand_obs = NUM_HAND_OBS
        self.num_actions = 26
        self.agent_index = [[[0, 1, 2, 3, 4, 5]], [[0, 1, 2, 3, 4, 5]]]
        self.max_episode_length = max_episode_length
        self.device = torch.device(device)
        self._gen = torch.Generator(device="cpu").manual_seed(seed)
        self._proj = torch.randn(8, num_obs, generator=self._gen).to(self.device)
        self.obs_buf = torch.zeros(num_envs, num_obs, device=self.device)
        self.rew_buf = torch.zeros(num_envs, device=self.device)
        self.reset_buf = torch.ones(num_envs, dtype=torch.long, device=self.device)
        self.progress_buf = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.actions = torch.zeros(num_envs, 2 * self.num_actions, device=self.device)
        self.latent = torch.zeros(num_envs, 8, device=self.device)
        self.z = torch.zeros(num_envs, device=self.device)
        self.num_resets = 0  # how many env resets happened (for tests)

    def _reset_idx(self, env_ids: torch.Tensor) -> None:
        noise = torch.rand(len(env_ids), 8, generator=self._gen).to(self.device) * 0.1
        self.latent[env_ids] = noise
        self.z[env_ids] = 0.5
        self.progress_buf[env_ids] = 0
        self.reset_buf[env_ids] = 0
        self.num_resets += len(env_ids)

    def step(self, actions: torch.Tensor) -> None:
        if tuple(actions.shape) != (self.num_envs, 2 * self.num_actions):
            raise ValueError(
                f"fake task: expected actions of shape {(self.num_envs, 2 * self.num_actions)}, "
                f"received {tuple(actions.shape)}"
            )
        # pre_physics_step: reset the envs that ended at the previous step, then take the actions
        env_ids = self.reset_buf.nonzero(as_tuple=False).squeeze(-1)
        if len(env_ids) > 0:
            self._reset_idx(env_ids)
        self.actions = actions.clone().to(self.device)
        # "physics"
        a = self.actions
        self.latent = 0.9 * self.latent + 0.1 * torch.tanh(a[:, :8] + a[:, 26:34])
        self.z = self.z + 0.05 * (a[:, 2] + a[:, 28])
        # post_physics_step
        self.progress_buf += 1
        obs = torch.tanh(self.latent @ self._proj)
        obs[:, 173:199] = a[:, :26]
        obs[:, 372:398] = a[:, 26:]
        obs[:, OBJECT_Z] = self.z
        self.obs_buf = obs
        self.rew_buf = 1.0 - (self.z - 0.5).abs() - 1e-3 * (a**2).sum(-1)
        failed = self.z < -1.0
        timeout = self.progress_buf >= self.max_episode_length
        self.reset_buf = (failed | timeout).long()


class FakeMultiVecTaskPython:
    """FAKE Bi-DexHands ``MultiVecTaskPython``: identical interface, toy dynamics (see module doc).

    Args:
        num_envs: ``N``.
        task: a name in :data:`dimalib.envs.bidexhands.BIDEXHANDS_TASKS` (sets the sizes and the
            episode length).
        episode_length: override of the episode length.
        rl_device: device of the returned tensors.
        seed: seed of the fake's random numbers.
    """

    def __init__(
        self,
        num_envs: int,
        task: str = "ShadowHandPen",
        *,
        episode_length: int | None = None,
        rl_device: str | torch.device = "cpu",
        seed: int = 0,
        clip_observations: float = 5.0,
        clip_actions: float = 1.0,
    ) -> None:
        info = BIDEXHANDS_TASKS[task]
        self.task = FakeShadowHandTask(
            num_envs,
            info.state_dim,
            episode_length or info.episode_length,
            device=rl_device,
            seed=seed,
        )
        self.num_environments = num_envs
        self.num_states = self.task.num_states
        self.num_actions = self.task.num_actions
        self.num_hand_obs = self.task.num_hand_obs
        self.num_observations = self.task.num_obs - self.num_hand_obs
        self.nums_share_observations = self.num_observations + self.num_hand_obs
        self.agent_index = self.task.agent_index
        self.num_agents = len(self.agent_index[0] * 2)
        self.clip_obs = clip_observations
        self.clip_actions = clip_actions
        self.rl_device = torch.device(rl_device)
        self.step_calls: list[torch.Tensor] = []  # the actions received (for tests)

    @property
    def num_envs(self) -> int:
        return self.num_environments

    @property
    def num_acts(self) -> int:
        return self.num_actions

    @property
    def num_obs(self) -> int:
        return self.num_observations

    def get_number_of_agents(self) -> int:
        return self.num_agents

    def get_state(self) -> torch.Tensor:
        return torch.clamp(self.task.obs_buf, -self.clip_obs, self.clip_obs).to(self.rl_device)

    def _split(self) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.num_hand_obs
        obs_buf = torch.clamp(self.task.obs_buf, -self.clip_obs, self.clip_obs).to(self.rl_device)
        hand_obs = [
            torch.cat([obs_buf[:, :h], obs_buf[:, 2 * h :]], dim=1),
            torch.cat([obs_buf[:, h : 2 * h], obs_buf[:, 2 * h :]], dim=1),
        ]
        state_buf = torch.clamp(self.task.obs_buf, -self.clip_obs, self.clip_obs)
        obs_all = torch.transpose(torch.stack(hand_obs), 1, 0)
        state_all = torch.transpose(torch.stack([state_buf, state_buf]), 1, 0)
        return obs_all, state_all

    def step(self, actions: Any) -> tuple[Any, ...]:
        self.step_calls.append(torch.stack(list(actions)).clone())
        a_hand_actions = actions[0]
        for i in range(1, len(actions)):
            a_hand_actions = torch.hstack((a_hand_actions, actions[i]))
        actions_tensor = torch.clamp(a_hand_actions, -self.clip_actions, self.clip_actions)
        self.task.step(actions_tensor)
        obs_all, state_all = self._split()
        rewards = self.task.rew_buf.unsqueeze(-1).to(self.rl_device)
        dones = self.task.reset_buf.to(self.rl_device)
        reward_all = torch.transpose(torch.stack([rewards, rewards]), 1, 0)
        done_all = torch.transpose(torch.stack([dones, dones]), 1, 0)
        info_all = torch.stack([torch.Tensor(0), torch.Tensor(0)])
        return obs_all, state_all, reward_all, done_all, info_all, None

    def reset(self) -> tuple[Any, ...]:
        actions = 0.01 * (
            1
            - 2
            * torch.rand(
                [self.task.num_envs, self.task.num_actions * 2],
                dtype=torch.float32,
                generator=self.task._gen,
            ).to(self.rl_device)
        )
        self.task.step(actions)
        obs_all, state_all = self._split()
        return obs_all, state_all, None
