"""MuJoCo re-implementations of the Bi-DexHands tasks: sizes, layout, rewards, progress, API."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test, parallel_seed_test

from dimalib.envs import VectorMultiAgentEnv, known_env_names, make_env
from dimalib.envs.mj_dexhands import HAND_OBS_DIM, MJ_DEXHANDS_TASKS, MjDexHandsEnv
from dimalib.envs.mj_dexhands.scene import FORCE_SCALE, PHYSICS_DT, SUBSTEPS, euler_xyz
from dimalib.envs.mj_dexhands.tasks import (
    bottle_cap_reward,
    door_reward,
    fingertip_distance_sum,
    pen_reward,
)
from dimalib.training.config import env_family, trainer_config
from dimalib.training.trainer import check_env_name, known_trainer_envs, make_vector_env

TASKS = list(MJ_DEXHANDS_TASKS)
SIZES = {  # name: (obs per agent, state, episode length)
    "MjShadowHandPen": (218, 417, 125),
    "MjShadowHandBottleCap": (221, 420, 125),
    "MjShadowHandDoorOpenInward": (218, 417, 250),
    "MjShadowHandDoorOpenOutward": (218, 417, 250),
}


@pytest.fixture(scope="module")
def envs() -> dict[str, MjDexHandsEnv]:
    return {name: MjDexHandsEnv(name, dof_noise=0.0) for name in TASKS}


def tips_at(target: np.ndarray, offset: float) -> np.ndarray:
    """Five fingertips, each ``offset`` from ``target`` (along different axes)."""
    dirs = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], np.float64)
    return np.asarray(target, np.float64) + offset * dirs


# --------------------------------------------------------------------------- sizes and layout
@pytest.mark.parametrize("name", TASKS)
def test_sizes_and_registration(name: str, envs: dict[str, MjDexHandsEnv]) -> None:
    obs_dim, state_dim, length = SIZES[name]
    env = envs[name]
    obs, infos = env.reset(seed=0)
    assert env.possible_agents == ["right_hand", "left_hand"]
    assert set(infos) == set(env.possible_agents)
    for agent in env.possible_agents:
        assert obs[agent].shape == (obs_dim,) and obs[agent].dtype == np.float32
        assert env.observation_space(agent).shape == (obs_dim,)
        assert env.action_space(agent).shape == (26,)
        assert env.observation_space(agent) is env.observation_space(agent)  # cached
    assert env.state().shape == (state_dim,) and env.state_space.shape == (state_dim,)
    assert env.max_episode_steps == length
    assert env.spec.joint_action_dim == 52 and env.spec.state_dim == state_dim
    assert name in known_env_names() and name in known_trainer_envs()
    check_env_name(name)
    assert isinstance(make_env(name), MjDexHandsEnv)
    assert env_family(name) == "bidexhands"
    assert trainer_config("paper", name).env_steps_per_epoch == 500


def test_physics_settings(envs: dict[str, MjDexHandsEnv]) -> None:
    env = envs["MjShadowHandPen"]
    m = env.model
    assert math.isclose(m.opt.timestep, 1 / 120) and m.opt.timestep == PHYSICS_DT
    assert SUBSTEPS == 2
    assert m.nu == 40 and m.ntendon == 8  # 20 actuators and 4 coupling tendons per hand
    assert {m.tendon(i).name.split(":")[-1] for i in range(m.ntendon)} == {
        "T_FFJ1c",
        "T_MFJ1c",
        "T_RFJ1c",
        "T_LFJ1c",
    }
    hand_bodies = [b for b in range(m.nbody) if m.body(b).name.startswith(("rh_", "lh_"))]
    assert len(hand_bodies) == 52 and np.all(m.body_gravcomp[hand_bodies] == 1.0)


def test_observation_layout(envs: dict[str, MjDexHandsEnv]) -> None:
    env = envs["MjShadowHandDoorOpenOutward"]
    obs, _ = env.reset(seed=1)
    rng = np.random.default_rng(0)
    actions = {a: rng.uniform(-0.5, 0.5, 26).astype(np.float32) for a in env.possible_agents}
    for _ in range(3):
        obs, *_ = env.step(actions)
    s = env.state()
    d, m = env.data, env.model
    obj = s[2 * HAND_OBS_DIM :]
    assert obj.shape == (19,)
    for i, agent in enumerate(env.possible_agents):
        hand = s[i * HAND_OBS_DIM : (i + 1) * HAND_OBS_DIM]
        np.testing.assert_array_equal(obs[agent], np.concatenate([hand, obj]))
        prefix = ("rh_", "lh_")[i] + "robot0:"
        joints = [m.joint(prefix + j) for j in ("WRJ1", "FFJ2", "THJ0")]
        for k, j in zip((0, 3, 23), joints, strict=True):  # joint order of the asset
            lo, hi = m.jnt_range[j.id]
            q = d.qpos[j.qposadr[0]]
            assert hand[k] == pytest.approx(np.clip((2 * q - hi - lo) / (hi - lo), -5, 5), abs=1e-5)
            assert hand[24 + k] == pytest.approx(
                np.clip(0.2 * d.qvel[j.dofadr[0]], -5, 5), abs=1e-5
            )
        tip = m.body(prefix + "ffdistal").id
        np.testing.assert_allclose(hand[72:75], d.xpos[tip], atol=1e-6)
        np.testing.assert_allclose(hand[75:79], d.xquat[tip][[1, 2, 3, 0]], atol=1e-6)
        thumb = m.body(prefix + "thdistal").id
        np.testing.assert_allclose(hand[72 + 52 : 72 + 55], d.xpos[thumb], atol=1e-6)
        palm = m.body(prefix + "palm").id
        expect = d.xpos[palm] + d.xmat[palm].reshape(3, 3) @ np.array([0.0, -0.02, 0.08])
        np.testing.assert_allclose(hand[167:170], expect, atol=1e-6)
        mount = m.body(prefix + "hand mount").id
        np.testing.assert_allclose(hand[170:173], euler_xyz(d.xquat[mount]), atol=1e-5)
        np.testing.assert_allclose(hand[173:199], actions[agent], atol=1e-6)
    door = m.body("door").id
    np.testing.assert_allclose(obj[0:3], d.xpos[door], atol=1e-6)
    np.testing.assert_allclose(obj[7:13], 0.0, atol=1e-6)  # the door frame is fixed
    left = m.body("door_left_leaf").id
    handle = d.xpos[left] + d.xmat[left].reshape(3, 3) @ np.array([0.06, 0.35, 0.0])
    np.testing.assert_allclose(obj[13:16], handle, atol=1e-6)  # left handle, then right
    assert obj[16 + 1] > 0 > obj[13 + 1]
    assert np.abs(s).max() <= 5.0


def test_bottle_cap_object_block(envs: dict[str, MjDexHandsEnv]) -> None:
    env = envs["MjShadowHandBottleCap"]
    env.reset(seed=0)
    obj = env.state()[2 * HAND_OBS_DIM :]
    assert obj.shape == (22,)
    bottle, target, cap = obj[13:16], obj[16:19], obj[19:22]
    np.testing.assert_allclose(bottle, cap, atol=1e-6)  # cap closed: reference points coincide
    assert np.linalg.norm(target - bottle) == pytest.approx(0.115, abs=1e-5)


# --------------------------------------------------------------------------- rewards
def test_fingertip_distance_sum() -> None:
    target = np.array([0.1, -0.2, 0.3])
    assert fingertip_distance_sum(target, tips_at(target, 0.1)) == pytest.approx(0.5)
    batch = np.stack([tips_at(target, 0.1), tips_at(target, 0.2)])
    np.testing.assert_allclose(fingertip_distance_sum(target, batch), [0.5, 1.0])


def test_pen_reward() -> None:
    hr, hl = np.array([0.0, 0.1, 0.5]), np.array([0.0, -0.1, 0.5])
    out = pen_reward(hr, hl, tips_at(hr, 0.1), tips_at(hl, 0.1))  # Rf = Lf = 0.5 < 0.75
    assert out.reward == pytest.approx(2 * math.exp(-5.0) + (5 * 0.2 - 0.8))
    assert not out.terminated and not out.success
    out = pen_reward(hr, hl, tips_at(hr, 0.16), tips_at(hl, 0.1))  # Rf = 0.8: no bonus
    assert out.reward == pytest.approx(math.exp(-8.0) + math.exp(-5.0))
    out = pen_reward(hr, hl, tips_at(hr, 0.3), tips_at(hl, 0.1))  # Rf = 1.5: reset
    assert out.terminated
    far_r, far_l = np.array([0.0, 0.2, 0.5]), np.array([0.0, -0.2, 0.5])
    out = pen_reward(far_r, far_l, tips_at(far_r, 0.02), tips_at(far_l, 0.02))
    assert out.success and out.reward == pytest.approx(2 * math.exp(-1.0) + 5 * 0.4 - 0.8)


def test_door_reward() -> None:
    hr, hl = np.array([0.0, 0.3, 0.6]), np.array([0.0, -0.3, 0.6])
    out = door_reward(hr, hl, tips_at(hr, 0.05), tips_at(hl, 0.05))  # Rf = Lf = 0.25
    assert out.reward == pytest.approx(2 - 0.5 + 2 * 0.6)
    assert out.success and not out.terminated
    out = door_reward(hr, hl, tips_at(hr, 0.12), tips_at(hl, 0.05))  # Rf = 0.6: no bonus
    assert out.reward == pytest.approx(2 - 0.6 - 0.25)
    out = door_reward(hr, hl, tips_at(hr, 0.05), tips_at(hl, 0.3))  # Lf = 1.5: reset
    assert out.terminated
    closed_r, closed_l = np.array([0.0, 0.05, 0.6]), np.array([0.0, -0.05, 0.6])
    assert not door_reward(closed_r, closed_l, tips_at(closed_r, 0), tips_at(closed_l, 0)).success
    batch = door_reward(
        np.stack([hr, closed_r]),
        np.stack([hl, closed_l]),
        np.stack([tips_at(hr, 0.05), tips_at(closed_r, 0.0)]),
        np.stack([tips_at(hl, 0.05), tips_at(closed_l, 0.0)]),
    )
    np.testing.assert_allclose(batch.reward, [2.7, 2.0 + 2 * 0.1])
    np.testing.assert_array_equal(batch.success, [True, False])


def test_bottle_cap_reward() -> None:
    bottle, target = np.array([0.0, 0.0, 0.5]), np.array([0.0, 0.0, 0.6])
    cap = np.array([0.0, 0.0, 0.54])  # pulled 0.04 off
    right_palm, left_palm = target + np.array([0.0, 0.3, 0.0]), bottle + np.array([0.1, 0, 0])
    out = bottle_cap_reward(bottle, target, cap, right_palm, left_palm, tips_at(target, 0.05))
    assert out.reward == pytest.approx(2 - 0.25 - 0.1 + 30 * 0.04)  # Rf = 0.25 <= 0.3
    assert out.success and not out.terminated
    out = bottle_cap_reward(bottle, target, bottle, right_palm, left_palm, tips_at(target, 0.1))
    assert out.reward == pytest.approx(2 - 0.5 - 0.1) and not out.success  # Rf = 0.5: no bonus
    assert bottle_cap_reward(
        bottle, target, cap, right_palm, bottle + np.array([0.25, 0, 0]), tips_at(target, 0.05)
    ).terminated
    assert bottle_cap_reward(
        bottle, target, cap, target + np.array([0.5, 0, 0]), left_palm, tips_at(target, 0.05)
    ).terminated
    low = np.array([0.0, 0.0, 0.3])
    assert bottle_cap_reward(bottle, low, cap, low, left_palm, tips_at(low, 0.05)).terminated


# --------------------------------------------------------------------------- scripted progress
def reach(env: MjDexHandsEnv, targets: np.ndarray, fingers: float = -1.0) -> np.ndarray:
    """Joint action driving each hand's fingertip centroid to ``targets [2, 3]``."""
    tips = env.fingertip_points().mean(axis=1)
    a = np.zeros((2, 26))
    a[:, :3] = np.clip(10.0 * (np.asarray(targets) - tips), -1.0, 1.0)
    a[:, 6:] = fingers
    return a


def run_script(
    env: MjDexHandsEnv, phases: list[tuple[int, object]], successes: list[float] | None = None
) -> list[float]:
    """Run the phases ``(steps, () -> (fingertip targets [2, 3], finger action))``; returns the
    rewards; ``successes`` collects the handles' distance along ``y`` (doors)."""
    rewards = []
    for steps, target_fn in phases:
        for _ in range(steps):
            targets, fingers = target_fn()  # type: ignore[operator]
            joint = reach(env, targets, fingers)
            _, rew, term, trunc, info = env.step({"right_hand": joint[0], "left_hand": joint[1]})
            rewards.append(rew["right_hand"])
            if successes is not None:
                h = handles(env)
                successes.append(abs(h[1, 1] - h[0, 1]))
                assert info["right_hand"]["success"] == (successes[-1] > 0.5)
            if any(term.values()) or any(trunc.values()):
                return rewards
    return rewards


def handles(env: MjDexHandsEnv) -> np.ndarray:
    return env._points()


@pytest.mark.parametrize("inward", [False, True], ids=["outward", "inward"])
def test_door_script_opens_the_door(inward: bool, envs: dict[str, MjDexHandsEnv]) -> None:
    env = envs["MjShadowHandDoorOpenInward" if inward else "MjShadowHandDoorOpenOutward"]
    env.reset(seed=0)
    start = env.step({a: np.zeros(26, np.float32) for a in env.possible_agents})[1]["right_hand"]
    dx = -0.025 if inward else 0.03  # inward: fingers behind the bar; outward: in front

    def approach() -> tuple[np.ndarray, float]:
        h = handles(env)  # left handle, right handle
        return np.stack([h[1], h[0]]) + np.array([dx, 0.0, 0.0]), -1.0

    def grip() -> tuple[np.ndarray, float]:
        return approach()[0], 0.8 if inward else -1.0  # curl the fingers around the bar

    def move() -> tuple[np.ndarray, float]:  # pull towards +x (inward) or push to -x (outward)
        h = handles(env)
        return np.stack([h[1], h[0]]) + np.array([0.2 if inward else -0.15, 0, 0]), grip()[1]

    spread: list[float] = []
    rewards = run_script(env, [(50, approach), (20, grip), (60, move)], spread)
    assert max(spread[:50]) < 0.2  # about closed while approaching (handles 0.1 apart)
    if inward:  # pulling by a hooked bar: the doors open well but the fingers may slip off
        assert max(spread) > 0.3
    else:  # pushing: handles > 0.5 apart along y, Bi-DexHands' success
        assert max(spread) > 0.5
    assert max(rewards) > start + 1.0


@pytest.mark.parametrize("name", ["MjShadowHandPen", "MjShadowHandBottleCap"])
def test_reaching_lowers_fingertip_distances(name: str, envs: dict[str, MjDexHandsEnv]) -> None:
    env = envs[name]
    env.reset(seed=0)

    def distances() -> tuple[float, float]:
        tips, pts = env.fingertip_points(), handles(env)
        if name == "MjShadowHandPen":  # right handle, left handle
            return (
                float(fingertip_distance_sum(pts[0], tips[0])),
                float(fingertip_distance_sum(pts[1], tips[1])),
            )
        return float(fingertip_distance_sum(pts[1], tips[0])), 0.0  # cap target

    def targets() -> tuple[np.ndarray, float]:
        pts = handles(env)
        hover = np.array([0.0, 0.0, 0.04])
        if name == "MjShadowHandPen":
            return np.stack([pts[0], pts[1]]) + hover, -1.0
        left_tips = env.fingertip_points()[1].mean(axis=0)
        return np.stack([pts[1] + hover, left_tips]), -1.0  # the left hand stays

    rf0, lf0 = distances()
    r0 = float(env._reward().reward)
    best_rf, best_lf, best_r = rf0, lf0, r0
    for _ in range(30):
        rewards = run_script(env, [(1, targets)])
        assert env.agents
        rf, lf = distances()
        best_rf, best_lf, best_r = min(best_rf, rf), min(best_lf, lf), max(best_r, rewards[-1])
    assert best_rf < rf0 - 0.15
    assert best_lf < lf0 - 0.15 or name == "MjShadowHandBottleCap"
    assert best_r > r0 + 0.05


# --------------------------------------------------------------------------- API, batching, noise
@pytest.mark.parametrize("name", ["MjShadowHandPen", "MjShadowHandBottleCap"])
def test_pettingzoo_api_and_seed(name: str) -> None:
    parallel_api_test(MjDexHandsEnv(name, max_episode_steps=15), num_cycles=40)
    parallel_seed_test(lambda: MjDexHandsEnv(name, max_episode_steps=15), num_cycles=20)


def test_seeding_and_truncation() -> None:
    a, b = MjDexHandsEnv("MjShadowHandPen"), MjDexHandsEnv("MjShadowHandPen")
    oa, _ = a.reset(seed=5)
    ob, _ = b.reset(seed=5)
    np.testing.assert_array_equal(oa["right_hand"], ob["right_hand"])
    oc, _ = b.reset(seed=6)
    assert not np.array_equal(oa["right_hand"], oc["right_hand"])
    env = MjDexHandsEnv("MjShadowHandDoorOpenOutward", max_episode_steps=3)
    env.reset(seed=0)
    zero = {ag: np.zeros(26, np.float32) for ag in env.possible_agents}
    for t in range(3):
        _, _, term, trunc, _ = env.step(zero)
        assert not any(term.values()) and all(trunc.values()) == (t == 2)
    assert env.agents == []
    with pytest.raises(RuntimeError):
        env.step(zero)


def test_force_action_moves_the_hand() -> None:
    env = MjDexHandsEnv("MjShadowHandDoorOpenOutward", dof_noise=0.0)
    env.reset(seed=0)
    mount = env._mount[0]
    x0 = env.data.xpos[mount].copy()
    push = np.zeros(26, np.float32)
    push[2] = 1.0  # +z force on the right forearm
    for _ in range(10):
        env.step({"right_hand": push, "left_hand": np.zeros(26, np.float32)})
    dz = env.data.xpos[mount][2] - x0[2]
    assert dz > 0.01  # moves up (no gravity sag: gravcomp)
    assert dz < FORCE_SCALE / 20.0 * 10 * SUBSTEPS * PHYSICS_DT  # bounded by damping (≈1 m/s)
    assert abs(env.data.xpos[env._mount[1]][2] - 0.6) < 1e-3  # the other hand stays


def test_vector_env_fast_path_matches_dict_path() -> None:
    fast = VectorMultiAgentEnv([lambda: make_env("MjShadowHandPen", max_episode_steps=20)] * 2)
    slow = VectorMultiAgentEnv(
        [lambda: make_env("MjShadowHandPen", max_episode_steps=20)] * 2, fast_path=False
    )
    assert fast._group is not None and fast._group.num_fast == 2
    fast.reset(seed=3)
    slow.reset(seed=3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(45):
        act = torch.rand(2, 52, generator=gen) * 2 - 1
        ra, rb = fast.step(act), slow.step(act)
        for field in ("final_state", "final_obs", "next_state", "reward", "terminated"):
            assert torch.equal(getattr(ra, field), getattr(rb, field)), field
    assert ra.final_obs.shape == (2, 436)
    venv = make_vector_env("MjShadowHandDoorOpenOutward", 2, max_episode_steps=10)
    assert venv.spec.state_dim == 417
    venv.close()


@pytest.mark.parametrize("name", TASKS)
def test_no_nan_over_1000_random_steps(name: str) -> None:
    env = MjDexHandsEnv(name)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(1000):
        acts = {a: rng.uniform(-1, 1, 26).astype(np.float32) for a in env.possible_agents}
        obs, rew, *_ = env.step(acts)
        assert np.isfinite(obs["right_hand"]).all() and np.isfinite(obs["left_hand"]).all()
        assert np.isfinite(rew["right_hand"]) and np.isfinite(env.data.qpos).all()
        if not env.agents:
            episodes += 1
            env.reset()
    assert episodes >= 1
    assert env.data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number == 0
