"""Bi-DexHands adapter against the FAKE MultiVecTaskPython, and the missing-Isaac-Gym error."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from dimalib.envs import BIDEXHANDS_TASKS, collect, make_env
from dimalib.envs.bidexhands import BiDexHandsVecEnv, isaacgym_missing_message, make_bidexhands
from dimalib.testing.fake_bidexhands import FakeMultiVecTaskPython

HAS_ISAACGYM = importlib.util.find_spec("isaacgym") is not None

DOWN = 28  # left hand's vertical force in the [N, 52] joint action; 2 is the right hand's


def push(n: int, down: list[bool]) -> torch.Tensor:
    """Joint action: both hands push the object down in the copies flagged ``down``."""
    a = torch.zeros(n, 52)
    for i, d in enumerate(down):
        if d:
            a[i, 2] = a[i, DOWN] = -1.0
    return a


# ------------------------------------------------------------------- the fake itself
@pytest.mark.parametrize(
    ("task", "obs", "state"),
    [
        ("ShadowHandPen", 218, 417),
        ("ShadowHandBottleCap", 221, 420),
        ("ShadowHandDoorOpenInward", 218, 417),
        ("ShadowHandDoorOpenOutward", 218, 417),
    ],
)
def test_fake_mirrors_multivectaskpython_shapes(task, obs, state):
    fake = FakeMultiVecTaskPython(3, task)
    o, s, avail = fake.reset()
    assert o.shape == (3, 2, obs) and s.shape == (3, 2, state) and avail is None
    out = fake.step(torch.zeros(2, 3, 26))  # agent-major, as MultiVecTaskPython indexes it
    assert len(out) == 6 and out[5] is None
    o, s, r, d, _info, _ = out
    assert o.shape == (3, 2, obs) and s.shape == (3, 2, state)
    assert r.shape == (3, 2, 1) and d.shape == (3, 2)
    assert torch.equal(s[:, 0], s[:, 1]) and torch.equal(r[:, 0], r[:, 1])
    # each hand sees its own block plus the shared object block
    assert torch.equal(o[:, 0, 199:], o[:, 1, 199:])
    assert fake.num_obs == obs and fake.nums_share_observations == state and fake.num_agents == 2
    with pytest.raises(ValueError, match="actions of shape"):
        fake.step(torch.zeros(3, 2, 26))  # env-major is what the real one would mangle


# ------------------------------------------------------------------- the adapter
@pytest.mark.parametrize("task", list(BIDEXHANDS_TASKS))
def test_adapter_shapes_and_spec(task):
    info = BIDEXHANDS_TASKS[task]
    env = BiDexHandsVecEnv(FakeMultiVecTaskPython(4, task))
    assert env.spec.obs_dims == (info.obs_dim,) * 2
    assert env.spec.action_dims == (26, 26) and env.spec.joint_action_dim == 52
    assert env.spec.state_dim == info.state_dim
    state, obs = env.reset()
    assert state.shape == (4, info.state_dim) and obs.shape == (4, 2 * info.obs_dim)
    assert state.dtype == obs.dtype == torch.float32
    out = env.step(torch.zeros(4, 52))
    assert out.next_state.shape == (4, info.state_dim) and out.next_obs.shape == (
        4,
        2 * info.obs_dim,
    )
    assert out.reward.shape == (4,) and out.reward.dtype == torch.float32
    assert out.terminated.dtype == out.truncated.dtype == torch.bool


def test_adapter_converts_actions_obs_state_and_reward_exactly():
    fake = FakeMultiVecTaskPython(3, "ShadowHandPen", seed=1)
    env = BiDexHandsVecEnv(fake)
    env.reset()
    joint = torch.rand(3, 52, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = env.step(joint)
    sent = fake.step_calls[-1]  # what MultiVecTaskPython.step received
    assert sent.shape == (2, 3, 26)
    assert torch.equal(sent[0], joint[:, :26]) and torch.equal(sent[1], joint[:, 26:])
    obs_buf = fake.task.obs_buf.clamp(-5, 5)
    assert torch.equal(out.next_state, obs_buf)
    assert torch.equal(out.next_obs[:, :218], torch.cat([obs_buf[:, :199], obs_buf[:, 398:]], 1))
    assert torch.equal(out.next_obs[:, 218:], torch.cat([obs_buf[:, 199:398], obs_buf[:, 398:]], 1))
    assert torch.equal(out.reward, fake.task.rew_buf)
    # the hands' last actions appear in their observation blocks, as in Bi-DexHands
    assert torch.equal(out.next_obs[:, 173:199], joint[:, :26])
    assert torch.equal(out.next_obs[:, 218 + 173 : 218 + 199], joint[:, 26:])


def test_failure_is_terminated_and_only_that_copy_ends():
    env = BiDexHandsVecEnv(FakeMultiVecTaskPython(2, "ShadowHandPen"))
    env.reset()
    # z starts near 0.5 (reset() takes one small random step) and drops 0.1 per pushing step
    steps, out = 1, env.step(push(2, [True, False]))
    while not out.done.any() and steps < 30:
        steps, out = steps + 1, env.step(push(2, [True, False]))
    assert steps in (15, 16)
    assert float(out.next_state[0, 398]) < -1.0 <= float(out.next_state[1, 398])
    assert out.terminated.tolist() == [True, False]
    assert not out.truncated.any()
    assert out.episode_length.tolist() == [steps, steps]
    assert torch.equal(out.final_state, out.next_state)  # the reset obs is never returned
    assert env.reset_in_last_step.tolist() == [False, False]
    out = env.step(push(2, [False, False]))
    assert env.reset_in_last_step.tolist() == [True, False]  # reset happened inside this step
    assert out.episode_length.tolist() == [1, steps + 1]
    assert abs(float(out.next_state[0, 398]) - 0.5) < 1e-6  # the fresh episode's object height


def test_time_limit_is_truncation_and_episode_returns_add_up():
    fake = FakeMultiVecTaskPython(2, "ShadowHandDoorOpenInward", episode_length=6)
    env = BiDexHandsVecEnv(fake)
    env.reset()  # MultiVecTaskPython.reset() is itself one env step (progress 1)
    rewards = []
    for _ in range(5):
        out = env.step(torch.zeros(2, 52))
        rewards.append(out.reward)
    assert out.truncated.all() and not out.terminated.any()
    assert torch.equal(fake.task.progress_buf, torch.tensor([6, 6]))
    torch.testing.assert_close(out.episode_return, torch.stack(rewards).sum(0))
    for _ in range(6):  # later episodes last the full episode length
        out = env.step(torch.zeros(2, 52))
    assert out.truncated.all() and out.episode_length.tolist() == [6, 6]


def test_collect_works_with_the_adapter():
    env = BiDexHandsVecEnv(FakeMultiVecTaskPython(3, "ShadowHandBottleCap", episode_length=4))
    res = collect(env, lambda obs, state: torch.zeros(obs.shape[0], 52), 10)
    assert res.env_steps == 30
    assert res.episode_lengths.tolist() == [3, 3, 3, 4, 4, 4]


def test_adapter_rejects_bad_input():
    env = BiDexHandsVecEnv(FakeMultiVecTaskPython(2))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.zeros(2, 52))
    with pytest.raises(ValueError, match="seed"):
        env.reset(seed=3)
    env.reset()
    with pytest.raises(ValueError, match=r"joint_action: expected shape \(2, 52\)"):
        env.step(torch.zeros(2, 2, 26))
    with pytest.raises(ValueError, match="joint_action: expected finite"):
        env.step(torch.full((2, 52), float("nan")))


# ------------------------------------------------------------------- without Isaac Gym
@pytest.mark.skipif(HAS_ISAACGYM, reason="Isaac Gym is installed here")
@pytest.mark.parametrize("task", list(BIDEXHANDS_TASKS))
def test_selecting_a_task_without_isaacgym_says_what_is_missing(task):
    with pytest.raises(ImportError) as info:
        make_env(task, num_envs=2)
    msg = str(info.value)
    for part in (
        "isaacgym",
        task,
        "Python 3.6-3.8",
        "NVIDIA GPU",
        "developer.nvidia.com",
        "PKU-MARL/DexterousHands",
    ):
        assert part in msg, part
    with pytest.raises(ImportError, match="isaacgym"):
        make_bidexhands(task)


def test_missing_message_names_the_missing_module():
    assert "'bidexhands'" in isaacgym_missing_message("ShadowHandPen", "bidexhands")
    with pytest.raises(ValueError, match="task"):
        make_bidexhands("ShadowHandKettle")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_adapter_keeps_the_env_device():
    env = BiDexHandsVecEnv(FakeMultiVecTaskPython(2, rl_device="cuda"))
    state, obs = env.reset()
    assert state.device.type == obs.device.type == "cuda"
    out = env.step(torch.zeros(2, 52))  # a CPU action is moved to the env's device
    assert out.reward.device.type == out.terminated.device.type == "cuda"
    cpu = BiDexHandsVecEnv(FakeMultiVecTaskPython(2, rl_device="cuda"), device="cpu")
    cpu.reset()
    assert cpu.step(torch.zeros(2, 52)).next_obs.device.type == "cpu"
