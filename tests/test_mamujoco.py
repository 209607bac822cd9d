"""MAMuJoCo through gymnasium-robotics: the seven paper tasks, the 3x2 partitions, rollouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium_robotics")

from dimalib.envs import MAMUJOCO_TASKS, VectorMultiAgentEnv, make_env, spec_from_env
from dimalib.envs.mamujoco import (
    CUSTOM_PARTITIONS,
    flat_stepper,
    make_mamujoco,
    parse_mamujoco_name,
)

SEVEN = list(MAMUJOCO_TASKS)
EXPECTED_AGENTS = {  # (n_agents, actions per agent) from the task name
    name: tuple(int(v) for v in conf.split("x")) for name, (_, conf) in MAMUJOCO_TASKS.items()
}


@pytest.fixture(autouse=True)
def _mujoco_log_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory


def test_paper_has_seven_tasks():
    assert SEVEN == [
        "HalfCheetah-2x3",
        "HalfCheetah-3x2",
        "HalfCheetah-6x1",
        "Walker2d-2x3",
        "Walker2d-3x2",
        "Ant-2x4",
        "Ant-4x2",
    ]


@pytest.mark.parametrize("name", SEVEN)
def test_task_builds_and_spec_matches_gymnasium_robotics_spaces(name):
    env = make_env(name)
    env.reset(seed=0)
    spec = spec_from_env(env)
    n_agents, per_agent = EXPECTED_AGENTS[name]
    assert spec.agent_names == tuple(env.possible_agents)
    assert spec.n_agents == n_agents
    assert spec.action_dims == (per_agent,) * n_agents
    for i, agent in enumerate(env.possible_agents):
        assert spec.obs_dims[i] == env.observation_space(agent).shape[0]
        assert spec.action_dims[i] == env.action_space(agent).shape[0]
        sl = spec.action_slices[i]
        assert spec.action_low[sl] == tuple(env.action_space(agent).low.tolist())
        assert spec.action_high[sl] == tuple(env.action_space(agent).high.tolist())
    state = env.state()
    assert spec.state_dim == state.shape[0] == env.single_agent_env.observation_space.shape[0]
    obs, _ = env.reset(seed=0)
    for i, agent in enumerate(env.possible_agents):
        assert obs[agent].shape == (spec.obs_dims[i],)
    # the whole robot is controlled: joint action covers the single-agent action space
    assert spec.joint_action_dim == env.single_agent_env.action_space.shape[0]
    env.close()


@pytest.mark.parametrize("scenario", ["HalfCheetah", "Walker2d"])
def test_3x2_partition_covers_every_actuator_exactly_once(scenario):
    env = make_mamujoco(scenario, "3x2")
    parts = env.agent_action_partitions
    assert len(parts) == 3 and all(len(p) == 2 for p in parts)
    act_ids = sorted(node.act_ids for part in parts for node in part)
    assert act_ids == list(range(env.single_agent_env.action_space.shape[0]))
    # the grouping is the standard one, by gymnasium-robotics' node labels
    _, groups = CUSTOM_PARTITIONS[(scenario, "3x2")]
    assert [tuple(n.label for n in p) for p in parts] == [tuple(g) for g in groups]
    # each joint-action entry drives exactly one actuator, and every actuator is driven
    spec = spec_from_env(env)
    seen = set()
    for j in range(spec.joint_action_dim):
        joint = np.zeros(spec.joint_action_dim, np.float32)
        joint[j] = 1.0
        local = {a: joint[s] for a, s in zip(env.possible_agents, spec.action_slices, strict=True)}
        glob = env.map_local_actions_to_global_action(local)  # asserts no double/undefined entry
        (hit,) = np.flatnonzero(glob)
        seen.add(int(hit))
    assert seen == set(range(spec.joint_action_dim))


def test_3x2_groupings_are_the_standard_ones():
    env = make_mamujoco("HalfCheetah", "3x2")
    labels = [[n.label for n in p] for p in env.agent_action_partitions]
    assert labels == [["bfoot", "bshin"], ["bthigh", "ffoot"], ["fshin", "fthigh"]]
    env = make_mamujoco("Walker2d", "3x2")
    labels = [[n.label for n in p] for p in env.agent_action_partitions]
    assert labels == [
        ["foot_joint", "leg_joint"],
        ["thigh_joint", "foot_left_joint"],
        ["leg_left_joint", "thigh_left_joint"],
    ]


def test_generic_scenario_names():
    assert parse_mamujoco_name("Hopper-3x1") == ("Hopper", "3x1")
    assert parse_mamujoco_name("Ant-2x4d") == ("Ant", "2x4d")
    assert parse_mamujoco_name("Humanoid-9|8") == ("Humanoid", "9|8")
    assert parse_mamujoco_name("NotAnEnv-2x3") is None
    spec = spec_from_env(make_env("Hopper-3x1"))
    assert spec.n_agents == 3 and spec.action_dims == (1, 1, 1) and spec.state_dim == 11
    spec = spec_from_env(make_mamujoco("Ant", "2x4d"))
    assert spec.n_agents == 2 and spec.action_dims == (4, 4)


def test_bad_scenario_or_partition_raises_value_error():
    with pytest.raises(ValueError, match="scenario"):
        make_mamujoco("Cheetah", "2x3")
    with pytest.raises(ValueError, match=r"agent_conf.*4x2"):
        make_mamujoco("HalfCheetah", "4x2")
    with pytest.raises(ValueError, match="max_episode_steps"):
        make_mamujoco("HalfCheetah", "2x3", max_episode_steps=0)


@pytest.mark.parametrize("name", ["HalfCheetah-3x2", "Walker2d-2x3", "Ant-4x2"])
def test_rollout_state_reward_and_time_limit(name):
    """state == env.state(), one shared reward, truncation exactly at the time limit."""
    limit = 6
    n = 2
    venv = VectorMultiAgentEnv([lambda: make_env(name, max_episode_steps=limit)] * n)
    envs = venv._group.envs
    state, _ = venv.reset(seed=3)
    for i, env in enumerate(envs):
        np.testing.assert_array_equal(state[i].numpy(), env.state().astype(np.float32))
    gen = torch.Generator().manual_seed(0)
    lengths = np.zeros(n, int)
    for _ in range(3 * limit):
        action = torch.rand(n, venv.spec.joint_action_dim, generator=gen) * 0.2 - 0.1
        out = venv.step(action)
        lengths += 1
        for i, env in enumerate(envs):  # next_state is the live env's state (after auto-reset)
            np.testing.assert_array_equal(out.next_state[i].numpy(), env.state().astype(np.float32))
        done = out.done.numpy()
        # small actions keep the robots healthy: every end is the time limit, none terminal
        assert not out.terminated.any()
        np.testing.assert_array_equal(out.truncated.numpy(), lengths == limit)
        np.testing.assert_array_equal(out.episode_length.numpy(), lengths)
        changed = (out.final_state != out.next_state).any(dim=1).numpy()
        np.testing.assert_array_equal(changed, done)  # reset state differs from the last one
        lengths[done] = 0
    venv.close()


def test_reward_is_the_shared_team_reward():
    env = make_env("Ant-4x2")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        _, rewards, terms, truncs, _ = env.step(
            {a: rng.uniform(-1, 1, env.action_space(a).shape) for a in env.possible_agents}
        )
        assert len(set(rewards.values())) == 1
        assert len(set(terms.values())) == 1 and len(set(truncs.values())) == 1


def test_termination_is_kept_apart_from_truncation():
    """Walker2d falls under strong random actions: terminated, not truncated."""
    venv = VectorMultiAgentEnv([lambda: make_env("Walker2d-2x3", max_episode_steps=400)])
    venv.reset(seed=0)
    gen = torch.Generator().manual_seed(1)
    terminated = truncated = 0
    for _ in range(300):
        out = venv.step(torch.rand(1, 6, generator=gen) * 2 - 1)
        assert not (out.terminated & out.truncated).any()
        terminated += int(out.terminated.sum())
        truncated += int(out.truncated.sum())
        if out.terminated.any():
            assert int(out.episode_length[0]) < 400
    assert terminated >= 1 and truncated == 0
    venv.close()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("HalfCheetah-2x3", True),
        ("HalfCheetah-3x2", True),
        ("HalfCheetah-6x1", True),
        ("Ant-2x4", True),
        ("Ant-4x2", True),
        ("Walker2d-2x3", False),  # its state clips joint velocities that agents see unclipped
        ("Walker2d-3x2", False),
    ],
)
def test_flat_fast_path_applies_only_where_verified(name, expected):
    assert (flat_stepper(make_env(name)) is not None) is expected


@pytest.mark.parametrize("name", ["HalfCheetah-6x1", "Ant-2x4", "Hopper-3x1"])
def test_flat_fast_path_equals_the_dict_api(name):
    """The array-level path gives bit-identical states, observations, rewards and flags."""
    fast = make_env(name, max_episode_steps=25)
    ref = make_env(name, max_episode_steps=25)
    flat = flat_stepper(fast)
    assert flat is not None
    spec = spec_from_env(ref)
    fast.reset(seed=5)
    ref.reset(seed=5)
    rng = np.random.default_rng(2)
    for t in range(60):
        joint = rng.uniform(-1, 1, spec.joint_action_dim).astype(np.float32) * (3.0 if t % 7 else 1)
        state, joint_obs, reward, term, trunc = flat.step(joint)
        acts = {a: joint[s] for a, s in zip(ref.possible_agents, spec.action_slices, strict=True)}
        obs_d, rew_d, term_d, trunc_d, _ = ref.step(acts)
        np.testing.assert_array_equal(state, ref.state())
        np.testing.assert_array_equal(
            joint_obs, np.concatenate([obs_d[a] for a in ref.possible_agents])
        )
        assert reward == rew_d[ref.possible_agents[0]]
        assert term == term_d[ref.possible_agents[0]]
        assert trunc == trunc_d[ref.possible_agents[0]]
        if term or trunc:
            fast.reset()
            ref.reset()


def test_building_an_env_prints_no_mujoco_warning_and_writes_no_log_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    import logging

    import mujoco

    from dimalib.envs import make_env

    monkeypatch.chdir(tmp_path)
    before = mujoco.get_mju_user_warning()
    with caplog.at_level(logging.DEBUG, logger="dimalib.envs"):
        env = make_env("HalfCheetah-2x3")
        env.reset(seed=0)
    out, err = capfd.readouterr()
    assert "settotalmass" not in out + err
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert any(
        "settotalmass" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records
    )
    assert mujoco.get_mju_user_warning() is before  # the handler was only installed for the build


@pytest.mark.parametrize(
    ("name", "n_agents"), [("Pusher-3p", 3), ("Humanoid-9|8", 2), ("Reacher-2x1", 2)]
)
def test_every_agent_conf_form_gymnasium_robotics_accepts_is_a_name(
    name: str, n_agents: int
) -> None:
    from dimalib.envs.mamujoco import make_mamujoco_task, parse_mamujoco_name

    assert parse_mamujoco_name(name) == tuple(name.split("-"))
    env = make_mamujoco_task(name)
    assert len(env.possible_agents) == n_agents


def test_unsupported_scenarios_and_near_misses_get_clear_errors() -> None:
    from dimalib.envs.mamujoco import UnknownEnvError, make_mamujoco, make_mamujoco_task

    with pytest.raises(UnknownEnvError, match=r"name: .*'InvertedPendulum-1x1'"):
        make_mamujoco_task("InvertedPendulum-1x1")  # no partition upstream: not listed
    with pytest.raises(UnknownEnvError, match=r"\(did you mean 'HalfCheetah-2x3'\?\)"):
        make_mamujoco_task("halfcheetah-2x3")
    with pytest.raises(UnknownEnvError, match=r"no partition '3x' .*expected one of \['3p'\]"):
        make_mamujoco("Pusher", "3x")
    try:  # broken upstream with mujoco 4.0 (gymnasium-robotics 1.4.2): a clear error, no IndexError
        make_mamujoco("CoupledHalfCheetah", "1p1").reset(seed=0)
    except RuntimeError as exc:
        assert "upstream bug of gymnasium-robotics" in str(exc)
