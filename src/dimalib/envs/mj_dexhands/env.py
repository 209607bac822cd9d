"""PettingZoo ``ParallelEnv`` of the MuJoCo Bi-DexHands re-implementations (see the package
docstring for the observation layout)."""

from __future__ import annotations

import functools
import math
from typing import Any

import gymnasium
import mujoco
import numpy as np
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from dimalib.envs.mj_dexhands.scene import (
    FINGERTIPS,
    FORCE_SCALE,
    HAND_PREFIXES,
    SUBSTEPS,
    TORQUE_SCALE,
    build_model,
)
from dimalib.envs.mj_dexhands.tasks import (
    MJ_DEXHANDS_TASKS,
    RewardOut,
    TaskDef,
    bottle_cap_reward,
    door_reward,
    pen_reward,
)
from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import check_int

__all__ = ["AGENTS", "HAND_OBS_DIM", "MjDexHandsEnv", "make_mj_dexhands"]

NDArray = np.ndarray[Any, Any]

AGENTS: tuple[str, str] = ("right_hand", "left_hand")
"""Agent names, in agent order (Bi-DexHands agent 0 is the right hand)."""
HAND_OBS_DIM = 199
"""Values per hand: 24 + 24 + 24 + 65 + 30 + 3 + 3 + 26."""
VEL_OBS_SCALE = 0.2
FORCE_TORQUE_OBS_SCALE = 10.0
CLIP_OBS = 5.0
"""Observations and state are clipped to ``[-5, 5]`` (Bi-DexHands' ``clipObservations``)."""
_FINGERTIP_OFFSET = 0.02  # reward point: 2 cm along the distal body's z axis
_PALM_OFFSET = np.array([0.0, -0.02, 0.08])  # "hand position": this point in the palm frame
_XYZW = np.array([1, 2, 3, 0])
_Z_COLUMN = np.array([2, 5, 8])  # a body's z axis in MuJoCo's row-major xmat


class _FlatStepper:
    """Array-level stepping for :class:`dimalib.envs.vector.VectorMultiAgentEnv` (same values as
    the dict API: both call :meth:`MjDexHandsEnv._step_arrays`)."""

    def __init__(self, env: MjDexHandsEnv) -> None:
        self.env = env

    def step(self, joint_action: NDArray) -> tuple[NDArray, NDArray, float, bool, bool]:
        return self.env._step_arrays(np.asarray(joint_action, np.float64).reshape(2, 26))


class MjDexHandsEnv(ParallelEnv[str, NDArray, NDArray]):
    """One MuJoCo Bi-DexHands task (``"MjShadowHandPen"``, ...) as a PettingZoo ``ParallelEnv``.

    Agents ``"right_hand"`` and ``"left_hand"``, 26 actions each in ``[-1, 1]`` (clipped): forearm
    force ``a[0:3]``, torque ``a[3:6]``, finger position targets ``a[6:26]``. The reward is shared;
    ``terminated`` is Bi-DexHands' failure reset, ``truncated`` the episode length.

    Args:
        task: a name of :data:`~dimalib.envs.mj_dexhands.tasks.MJ_DEXHANDS_TASKS`.
        max_episode_steps: overrides the task's episode length.
        dof_noise: reset noise of the hand joints, as a fraction of each joint's range (uniform in
            ``±dof_noise / 2``; Bi-DexHands' ``resetDofPosRandomInterval``); 0 gives identical
            episodes.
        render_mode: ``None`` or ``"rgb_array"`` (:meth:`render` returns a 240x320 image).
    """

    metadata: dict[str, Any] = {  # noqa: RUF012 - PettingZoo's convention
        "name": "mj_dexhands_v0",
        "render_modes": ["rgb_array"],
        "is_parallelizable": True,
    }

    def __init__(
        self,
        task: str = "MjShadowHandDoorOpenOutward",
        *,
        max_episode_steps: int | None = None,
        dof_noise: float = 0.02,
        render_mode: str | None = None,
    ) -> None:
        if task not in MJ_DEXHANDS_TASKS:
            raise ValueError(f"task: expected one of {list(MJ_DEXHANDS_TASKS)}, received {task!r}")
        if max_episode_steps is not None:
            check_int("max_episode_steps", max_episode_steps)
        if not dof_noise >= 0.0:
            raise ValueError(f"dof_noise: expected a number >= 0, received {dof_noise}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode: expected None or 'rgb_array', received {render_mode!r}")
        self.task: TaskDef = MJ_DEXHANDS_TASKS[task]
        self.max_episode_steps = int(max_episode_steps or self.task.episode_length)
        self.dof_noise = float(dof_noise)
        self.render_mode = render_mode
        self.possible_agents = list(AGENTS)
        self.agents: list[str] = []
        self.model = build_model(self.task.add_object, self.task.right, self.task.left)
        self.data = mujoco.MjData(self.model)
        self._index()
        obs_dim, state_dim = self.task.obs_dim, self.task.state_dim
        self._obs_spaces = {
            a: gymnasium.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32) for a in AGENTS
        }
        self._act_spaces = {a: gymnasium.spaces.Box(-1.0, 1.0, (26,), np.float32) for a in AGENTS}
        self.state_space = gymnasium.spaces.Box(-np.inf, np.inf, (state_dim,), np.float32)
        self._np_random: np.random.Generator | None = None
        self._actions = np.zeros((2, 26))
        self._t = 0
        self._state = np.zeros(state_dim, np.float32)
        self._last: RewardOut | None = None
        self._cache: tuple[NDArray, NDArray, NDArray] = (np.zeros((2, 5, 3)),) * 3
        self._renderer: mujoco.Renderer | None = None

    # ------------------------------------------------------------------ model indices
    def _index(self) -> None:
        m = self.model
        hinge_q, hinge_d, lo, hi, act, free_q, free_d = [], [], [], [], [], [], []
        mount, palm, tips, ft_sensors, vel_sensors = [], [], [], [], []
        for prefix in HAND_PREFIXES:
            p = prefix + "robot0:"
            joints = [j for j in range(m.njnt) if m.joint(j).name.startswith(p)]
            free = m.joint(p + "root").id
            hinges = [j for j in joints if j != free]
            if len(hinges) != 24:
                raise RuntimeError(f"expected 24 hand joints, found {len(hinges)}")
            hinge_q.append(m.jnt_qposadr[hinges])
            hinge_d.append(m.jnt_dofadr[hinges])
            lo.append(m.jnt_range[hinges, 0])
            hi.append(m.jnt_range[hinges, 1])
            free_q.append(int(m.jnt_qposadr[free]))
            free_d.append(int(m.jnt_dofadr[free]))
            act.append([a for a in range(m.nu) if m.actuator(a).name.startswith(p)])
            mount.append(m.body(p + "hand mount").id)
            palm.append(m.body(p + "palm").id)
            tips.append([m.body(p + t).id for t in FINGERTIPS])
            ft: list[int] = []
            vel: list[int] = []
            for t in FINGERTIPS:
                site = f"{p}S_ft_{t}"
                for kind, out in (("force", ft), ("torque", ft), ("linvel", vel), ("angvel", vel)):
                    sid = m.sensor(f"{site}_{kind}").id
                    out.extend(range(m.sensor_adr[sid], m.sensor_adr[sid] + 3))
            ft_sensors.append(ft)
            vel_sensors.append(vel)
        self._hinge_q = np.asarray(hinge_q)  # [2, 24]
        self._hinge_d = np.asarray(hinge_d)
        self._lo, self._hi = np.asarray(lo), np.asarray(hi)
        self._act = np.asarray(act)  # [2, 20]
        if self._act.shape != (2, 20):
            raise RuntimeError(f"expected 20 actuators per hand, found {self._act.shape}")
        self._ctrl_lo = m.actuator_ctrlrange[self._act, 0]
        self._ctrl_hi = m.actuator_ctrlrange[self._act, 1]
        self._free_q, self._free_d = free_q, free_d
        self._mount = np.asarray(mount)
        self._forearm = np.asarray([m.body(p + "robot0:forearm").id for p in HAND_PREFIXES])
        self._palm = np.asarray(palm)
        self._tips = np.asarray(tips)  # [2, 5]
        self._ft_sensors = np.asarray(ft_sensors)  # [2, 30]: per tip force 3, torque 3
        self._vel_sensors = np.asarray(vel_sensors).reshape(2, 5, 6)  # per tip linvel, angvel
        self._obj_body = m.body(self.task.object_body).id
        self._obj_vel = np.arange(m.nsensordata - 6, m.nsensordata)  # linvel, angvel
        self._pt_body = np.asarray([m.body(b).id for b, _ in self.task.points])
        self._pt_off = np.asarray([off for _, off in self.task.points], np.float64)
        self._init_qpos = m.qpos0.copy()
        for k, q in enumerate(self._free_q):  # the hands' start poses are their attach frames
            self._init_qpos[q : q + 3] = m.body_pos[self._mount[k]]
            self._init_qpos[q + 3 : q + 7] = m.body_quat[self._mount[k]]
        self._init_qpos[self._hinge_q] = np.clip(0.0, self._lo, self._hi)

    # ------------------------------------------------------------------ spaces / spec
    @functools.cached_property
    def spec(self) -> MultiAgentSpec:
        """The :class:`MultiAgentSpec` (two agents, 26 actions each in ``[-1, 1]``)."""
        return MultiAgentSpec(
            agent_names=AGENTS,
            obs_dims=(self.task.obs_dim, self.task.obs_dim),
            action_dims=(26, 26),
            state_dim=self.task.state_dim,
            action_low=-1.0,
            action_high=1.0,
        )

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._act_spaces[agent]

    # ------------------------------------------------------------------ episode
    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, NDArray], dict[str, dict[str, Any]]]:
        if seed is not None or self._np_random is None:
            self._np_random, _ = seeding.np_random(seed)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        qpos = self._init_qpos.copy()
        if self.dof_noise > 0.0:
            u = self._np_random.uniform(-0.5, 0.5, size=self._lo.shape)
            qpos[self._hinge_q] = np.clip(
                qpos[self._hinge_q] + self.dof_noise * u * (self._hi - self._lo), self._lo, self._hi
            )
        d.qpos[:] = qpos
        d.ctrl[self._act] = np.clip(qpos[self._hinge_q][:, _ACTUATED], self._ctrl_lo, self._ctrl_hi)
        mujoco.mj_forward(m, d)
        self._actions[:] = 0.0
        self._t = 0
        self._last = None
        self.agents = list(self.possible_agents)
        state = self._observe()
        return self._split(state), {a: {} for a in self.agents}

    def step(
        self, actions: dict[str, Any]
    ) -> tuple[
        dict[str, NDArray],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        if not self.agents:
            raise RuntimeError("step: the episode has ended (or reset was not called); reset first")
        act = np.empty((2, 26))
        for i, name in enumerate(self.possible_agents):
            if name not in actions:
                raise ValueError(f"actions: expected an action for {name!r}, received none")
            a = np.asarray(actions[name], dtype=np.float64).reshape(-1)
            if a.shape != (26,):
                raise ValueError(
                    f"actions[{name!r}]: expected shape (26,), received {np.shape(actions[name])}"
                )
            act[i] = a
        names = list(self.agents)
        state, _, reward, terminated, truncated = self._step_arrays(act)
        info = self._info()
        return (
            self._split(state),
            {a: reward for a in names},
            {a: terminated for a in names},
            {a: truncated for a in names},
            {a: dict(info) for a in names},
        )

    def _step_arrays(self, act: NDArray) -> tuple[NDArray, NDArray, float, bool, bool]:
        """Apply ``act [2, 26]``; returns ``(state, joint_obs, reward, terminated, truncated)``."""
        if not self.agents:
            raise RuntimeError("step: the episode has ended (or reset was not called); reset first")
        m, d = self.model, self.data
        if not np.isfinite(act).all():
            raise ValueError("actions: expected finite values")
        a = np.minimum(np.maximum(act, -1.0), 1.0)
        self._actions[:] = a
        d.ctrl[self._act] = self._ctrl_lo + 0.5 * (a[:, 6:] + 1.0) * (self._ctrl_hi - self._ctrl_lo)
        d.xfrc_applied[self._forearm, :3] = FORCE_SCALE * a[:, 0:3]
        d.xfrc_applied[self._forearm, 3:] = TORQUE_SCALE * a[:, 3:6]
        mujoco.mj_step(m, d, SUBSTEPS)
        self._t += 1
        state = self._observe()
        out = self._reward()
        self._last = out
        terminated = bool(out.terminated)
        truncated = (not terminated) and self._t >= self.max_episode_steps
        if terminated or truncated:
            self.agents = []
        return state, self._joint_obs(state), float(out.reward), terminated, truncated

    # ------------------------------------------------------------------ observation
    def _observe(self) -> NDArray:
        """Fill and return the ``[S]`` float32 global state (clipped); caches the reward's inputs
        (fingertip points, object points, palm points) of the same data."""
        d = self.data
        s = self._state
        q = d.qpos[self._hinge_q]
        tip_pos = d.xpos[self._tips]  # [2, 5, 3]
        tip_z = d.xmat[self._tips][..., _Z_COLUMN]
        palms = self._palm_points()
        hands = np.concatenate(
            [
                (2.0 * q - self._hi - self._lo) / (self._hi - self._lo),
                VEL_OBS_SCALE * d.qvel[self._hinge_d],
                FORCE_TORQUE_OBS_SCALE * d.qfrc_actuator[self._hinge_d],
                np.concatenate(
                    [tip_pos, d.xquat[self._tips][..., _XYZW], d.sensordata[self._vel_sensors]],
                    axis=2,
                ).reshape(2, 65),
                FORCE_TORQUE_OBS_SCALE * d.sensordata[self._ft_sensors],
                palms,
                _euler2(d.xquat[self._mount]),
                self._actions,
            ],
            axis=1,
        )
        o = 2 * HAND_OBS_DIM
        s[:o] = hands.reshape(-1)
        b = self._obj_body
        s[o : o + 3] = d.xpos[b]
        s[o + 3 : o + 7] = d.xquat[b][_XYZW]
        vel = d.sensordata[self._obj_vel]
        s[o + 7 : o + 10] = vel[:3]
        s[o + 10 : o + 13] = VEL_OBS_SCALE * vel[3:]
        pts = self._points()
        s[o + 13 :] = pts.reshape(-1)
        np.minimum(np.maximum(s, -CLIP_OBS, out=s), CLIP_OBS, out=s)
        self._cache = (tip_pos + _FINGERTIP_OFFSET * tip_z, pts, palms)
        return s.copy()

    def _palm_points(self) -> NDArray:
        d = self.data
        rot = d.xmat[self._palm].reshape(2, 3, 3)
        return np.asarray(d.xpos[self._palm] + rot @ _PALM_OFFSET)

    def _points(self) -> NDArray:
        d = self.data
        rot = d.xmat[self._pt_body].reshape(-1, 3, 3)
        return np.asarray(d.xpos[self._pt_body] + (rot @ self._pt_off[:, :, None])[:, :, 0])

    def fingertip_points(self) -> NDArray:
        """``[2, 5, 3]``: the reward's fingertip points (2 cm along each distal body's z axis)."""
        d = self.data
        z_axis = d.xmat[self._tips][..., _Z_COLUMN]
        return np.asarray(d.xpos[self._tips] + _FINGERTIP_OFFSET * z_axis)

    def _reward(self) -> RewardOut:
        tips, pts, palms = self._cache  # computed by _observe from the same data
        kind = self.task.kind
        if kind == "pen":
            return pen_reward(pts[0], pts[1], tips[0], tips[1])
        if kind == "door":  # points: left handle, right handle
            return door_reward(pts[1], pts[0], tips[0], tips[1])
        return bottle_cap_reward(pts[0], pts[1], pts[2], palms[0], palms[1], tips[0])

    def _info(self) -> dict[str, Any]:
        out = self._last
        return {"success": bool(out.success)} if out is not None else {}

    def _split(self, state: NDArray) -> dict[str, NDArray]:
        obj = state[2 * HAND_OBS_DIM :]
        return {
            name: np.concatenate([state[i * HAND_OBS_DIM : (i + 1) * HAND_OBS_DIM], obj])
            for i, name in enumerate(self.possible_agents)
        }

    def _joint_obs(self, state: NDArray) -> NDArray:
        obj = state[2 * HAND_OBS_DIM :]
        return np.concatenate(
            [state[:HAND_OBS_DIM], obj, state[HAND_OBS_DIM : 2 * HAND_OBS_DIM], obj]
        )

    def state(self) -> NDArray:
        """``[S]`` float32 global state (417, or 420 for BottleCap) of the current step."""
        return self._state.copy()

    def flat_stepper(self) -> _FlatStepper:
        """The array-level stepper :class:`~dimalib.envs.vector.VectorMultiAgentEnv` uses."""
        return _FlatStepper(self)

    # ------------------------------------------------------------------ rendering
    def render(self) -> NDArray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, 240, 320)
        cam = mujoco.MjvCamera()
        if self.task.kind == "door":  # from the hands' side
            cam.lookat[:] = [0.25, 0.0, 0.6]
            cam.distance, cam.azimuth, cam.elevation = 1.3, 205.0, -20.0
        else:
            cam.lookat[:] = [0.0, 0.0, 0.47]
            cam.distance, cam.azimuth, cam.elevation = 1.0, 150.0, -30.0
        self._renderer.update_scene(self.data, camera=cam)
        return np.asarray(self._renderer.render())

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def _euler2(quats: NDArray) -> NDArray:
    """:func:`~dimalib.envs.mj_dexhands.scene.euler_xyz` of two quaternions, with scalar math
    (cheaper than numpy for two)."""
    out = np.empty((2, 3))
    two_pi = 2.0 * math.pi
    for i in range(2):
        w, x, y, z = (float(v) for v in quats[i])
        out[i, 0] = math.atan2(2.0 * (w * x + y * z), w * w - x * x - y * y + z * z) % two_pi
        out[i, 1] = math.asin(min(1.0, max(-1.0, 2.0 * (w * y - z * x)))) % two_pi
        out[i, 2] = math.atan2(2.0 * (w * z + x * y), w * w + x * x - y * y - z * z) % two_pi
    return out


_ACTUATED = np.array([0, 1, 2, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15, 16, 17, 19, 20, 21, 22, 23])
"""Positions of the 20 actuated joints among a hand's 24 (not the distal ``J0`` of the four
fingers, which follow through the coupling tendons)."""


def make_mj_dexhands(name: str, **kwargs: Any) -> MjDexHandsEnv:
    """Build one MuJoCo Bi-DexHands task env by name (``kwargs`` go to :class:`MjDexHandsEnv`)."""
    return MjDexHandsEnv(name, **kwargs)
