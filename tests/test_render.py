"""Global state ↔ MuJoCo (qpos, qvel) and offscreen rendering of MAMuJoCo states."""

from __future__ import annotations

import os

# MuJoCo reads MUJOCO_GL when it is first imported: pick the headless EGL backend for this module
# only (the library never sets it). Has no effect if mujoco was imported earlier in the session.
os.environ.setdefault("MUJOCO_GL", "egl")

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

try:
    import mujoco
except ImportError:
    pytest.skip("needs the mamujoco extra (mujoco)", allow_module_level=True)
except Exception as exc:  # e.g. MUJOCO_GL=osmesa without libOSMesa breaks `import mujoco` itself
    pytest.skip(
        f"mujoco fails to import with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: {exc!r}",
        allow_module_level=True,
    )
pytest.importorskip("gymnasium_robotics")

from dimalib.envs import make_env
from dimalib.envs.mamujoco_state import (
    qpos_qvel_to_state,
    root_positions,
    state_labels,
    state_layout,
    state_to_qpos_qvel,
)
from dimalib.viz import FollowCamera, render_states, strip_figure

SCENARIOS = ("HalfCheetah-2x3", "Walker2d-2x3", "Ant-2x4")
# (n_root, qpos entries in the state, nv, velocity clip, extras)
EXPECTED = {
    "HalfCheetah-2x3": (1, 8, 9, None, ()),
    "Walker2d-2x3": (1, 8, 9, 10.0, ()),
    "Ant-2x4": (2, 13, 14, None, (("cfrc_ext", 78),)),
}


def _rollout(name: str, steps: int = 25, seed: int = 0) -> dict[str, Any]:
    """Random-action rollout: states [T, S] and the true MuJoCo qpos [T, nq] / qvel [T, nv]."""
    env = make_env(name)
    env.reset(seed=seed)
    uw = env.single_agent_env.unwrapped
    rng = np.random.default_rng(seed)
    states, qpos, qvel = [env.state().copy()], [uw.data.qpos.copy()], [uw.data.qvel.copy()]
    for _ in range(steps):
        actions = {a: rng.uniform(-1, 1, env.action_space(a).shape) for a in env.agents}
        _, _, term, trunc, _ = env.step(actions)
        states.append(env.state().copy())
        qpos.append(uw.data.qpos.copy())
        qvel.append(uw.data.qvel.copy())
        if any(term.values()) or any(trunc.values()):
            break
    return {
        "env": env,
        "states": np.array(states),
        "qpos": np.array(qpos),
        "qvel": np.array(qvel),
    }


@pytest.fixture(scope="module")
def rollouts() -> dict[str, dict[str, Any]]:
    return {name: _rollout(name) for name in SCENARIOS}


def _recomputed_obs(env: Any, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """Set (qpos, qvel) on a fresh MjData and let the env's own _get_obs build the state."""
    uw = env.single_agent_env.unwrapped
    data = mujoco.MjData(uw.model)
    data.qpos[:] = qpos
    data.qvel[:] = qvel
    mujoco.mj_forward(uw.model, data)
    mujoco.mj_rnePostConstraint(uw.model, data)
    real = uw.data
    uw.data = data
    try:
        return np.asarray(uw._get_obs())
    finally:
        uw.data = real


@pytest.mark.parametrize("name", SCENARIOS)
def test_layout_matches_env(name: str, rollouts: dict[str, dict[str, Any]]) -> None:
    env = rollouts[name]["env"]
    layout = state_layout(env)
    n_root, n_qpos_obs, nv, clip, extras = EXPECTED[name]
    assert (layout.n_root, layout.n_qpos_obs, layout.nv) == (n_root, n_qpos_obs, nv)
    assert layout.qvel_clip == clip and layout.extras == extras
    assert layout.state_dim == env.state().shape[0] == len(state_labels(env))
    assert layout.dt == pytest.approx(env.single_agent_env.unwrapped.dt)
    assert state_layout(name) == layout  # by name: the default -v5 options mamujoco_v1 uses


@pytest.mark.parametrize("name", SCENARIOS)
def test_round_trip_is_exact(name: str, rollouts: dict[str, dict[str, Any]]) -> None:
    run = rollouts[name]
    env, states = run["env"], run["states"]
    layout = state_layout(env)
    k = layout.n_root
    assert len(states) > 5
    for t in range(len(states)):
        qpos, qvel = state_to_qpos_qvel(env, states[t], root_xy=run["qpos"][t, :k])
        assert np.array_equal(qpos, run["qpos"][t])
        clip = layout.qvel_clip
        true_qvel = run["qvel"][t] if clip is None else np.clip(run["qvel"][t], -clip, clip)
        assert np.array_equal(qvel, true_qvel)
        # state -> (qpos, qvel) -> MjData -> the env's observation == the state, bitwise (the
        # extras -- Ant's contact forces -- belong to the last physics sub-step, not to (qpos, qvel))
        obs = _recomputed_obs(env, qpos, qvel)
        n = layout.n_qpos_obs + layout.nv
        assert np.array_equal(obs[:n], states[t][:n])
        if not layout.extras:
            assert np.array_equal(obs, states[t])
    # batched, with the extras carried over: exact for the whole state; torch input too
    qpos, qvel = state_to_qpos_qvel(env, torch.from_numpy(states))
    assert qpos.shape == (len(states), layout.nq) and np.all(qpos[:, :k] == 0.0)
    back = qpos_qvel_to_state(env, qpos, qvel, extras=states[:, layout.extras_slice])
    assert back.dtype == np.float64 and np.array_equal(back, states)


@pytest.mark.parametrize("name", SCENARIOS)
def test_round_trip_on_extreme_mujoco_data(name: str, rollouts: dict[str, dict[str, Any]]) -> None:
    """Large random qpos/qvel (beyond Walker2d's ±10 velocity clip) still round-trip exactly."""
    env = rollouts[name]["env"]
    layout = state_layout(env)
    rng = np.random.default_rng(1)
    qpos0, qvel0 = rng.normal(0, 20, layout.nq), rng.normal(0, 20, layout.nv)
    state = _recomputed_obs(env, qpos0, qvel0)
    qpos, qvel = state_to_qpos_qvel(env, state, root_xy=qpos0[: layout.n_root])
    assert np.array_equal(qpos, qpos0)
    n = layout.n_qpos_obs + layout.nv
    assert np.array_equal(_recomputed_obs(env, qpos, qvel)[:n], state[:n])
    extras = state[layout.extras_slice]
    assert np.array_equal(qpos_qvel_to_state(env, qpos, qvel, extras), state)
    assert np.array_equal(qpos_qvel_to_state(env, qpos0, qvel0, extras), state)  # clips as env


def test_root_positions_track_the_true_root(rollouts: dict[str, dict[str, Any]]) -> None:
    for name in SCENARIOS:
        run = rollouts[name]
        k = state_layout(name).n_root
        roots = root_positions(name, run["states"], start=run["qpos"][0, :k])
        assert roots.shape == (len(run["states"]), k)
        assert np.abs(roots - run["qpos"][:, :k]).max() < 0.1  # trapezoid drift, in metres


def test_bad_inputs_raise_value_error(rollouts: dict[str, dict[str, Any]]) -> None:
    env = rollouts["Ant-2x4"]["env"]
    state = rollouts["Ant-2x4"]["states"][1]
    with pytest.raises(ValueError, match="state:"):
        state_to_qpos_qvel(env, state[:-1])
    with pytest.raises(ValueError, match="state:"):
        state_to_qpos_qvel(env, np.float64(1.0))
    for bad in (np.nan, np.inf):
        broken = state.copy()
        broken[3] = bad
        with pytest.raises(ValueError, match=r"state: contains NaN or inf"):
            state_to_qpos_qvel(env, broken)
    with pytest.raises(ValueError, match="state:"):
        state_to_qpos_qvel(env, np.array(["a"] * state.size))
    with pytest.raises(ValueError, match="root_xy:"):
        state_to_qpos_qvel(env, state, root_xy=[1.0, 2.0, 3.0])
    qpos, qvel = state_to_qpos_qvel(env, state)
    with pytest.raises(ValueError, match="extras:"):
        qpos_qvel_to_state(env, qpos, qvel)  # Ant's contact forces are not in (qpos, qvel)
    with pytest.raises(ValueError, match="qpos:"):
        qpos_qvel_to_state(env, qpos[:-1], qvel, extras=state[-78:])
    with pytest.raises(ValueError, match="qvel:"):
        qpos_qvel_to_state(env, qpos, qvel[None], extras=state[-78:])
    with pytest.raises(ValueError, match="env_or_model:"):
        state_layout("Reacher-2x1")
    with pytest.raises(ValueError, match="env_or_model:"):
        state_layout(env.single_agent_env.unwrapped.model)
    with pytest.raises(ValueError, match="width:"):
        render_states(env, state, width=0, height=10)
    with pytest.raises(ValueError, match="states:"):
        render_states(env, np.full_like(state, np.nan), width=8, height=8)
    with pytest.raises(ValueError, match="root_x:"):
        render_states(env, np.stack([state, state]), width=8, height=8, root_x=np.zeros(2))
    with pytest.raises(ValueError, match="camera:"):
        render_states(env, state, width=8, height=8, camera="no-such-camera")


@pytest.fixture(scope="module")
def gl_backend(rollouts: dict[str, dict[str, Any]]) -> None:
    """Skip the rendering tests, saying why, when no offscreen OpenGL backend works here."""
    try:
        render_states(
            "HalfCheetah-2x3", rollouts["HalfCheetah-2x3"]["states"][0], width=8, height=8
        )
    except RuntimeError as exc:
        pytest.skip(f"no offscreen OpenGL backend (MUJOCO_GL={os.environ.get('MUJOCO_GL')}): {exc}")


@pytest.mark.usefixtures("gl_backend")
@pytest.mark.parametrize("name", ["HalfCheetah-2x3", "Ant-2x4"])
def test_render_states(name: str, rollouts: dict[str, dict[str, Any]]) -> None:
    states = rollouts[name]["states"]
    k = state_layout(name).n_root
    picked = np.stack([states[0], states[-1], states[0]])
    frames = render_states(
        name, torch.from_numpy(picked), width=64, height=48, root_x=np.zeros((3, k))
    )
    assert frames.shape == (3, 48, 64, 3) and frames.dtype == np.uint8
    for frame in frames:
        assert frame.std() > 5.0 and len(np.unique(frame.reshape(-1, 3), axis=0)) > 20  # not blank
    assert not np.array_equal(frames[0], frames[1])  # different states, different images
    # a state's image depends on the state and root only, not on what was rendered before it
    assert np.array_equal(frames[2], frames[0])
    again = render_states(name, states[0], width=64, height=48, camera=FollowCamera())
    assert np.array_equal(again[0], frames[0])  # root_x=None starts the integration at 0
    moved = render_states(name, states[0], width=64, height=48, root_x=np.full((1, k), 0.5))
    assert not np.array_equal(moved[0], frames[0])  # the floor moves under the followed torso


def test_strip_figure_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    real = rng.integers(0, 255, (15, 12, 16, 3), dtype=np.uint8)
    imagined = rng.integers(0, 255, (15, 12, 16, 3), dtype=np.uint8)
    steps = [1, 2, 4, 6, 8, 10, 12, 14]
    out = strip_figure(real, imagined, steps, tmp_path / "sub" / "strip.png", title="t")
    assert out == tmp_path / "sub" / "strip.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["strip.png"]  # no temp file left
    with pytest.raises(ValueError, match="steps:"):
        strip_figure(real, imagined, [15], tmp_path / "x.png")
    with pytest.raises(ValueError, match="imagined_frames:"):
        strip_figure(real, imagined.astype(np.float32), steps, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
