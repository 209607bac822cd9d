"""VectorMultiAgentEnv and collect: equality with separate envs, modes, validation, buffers."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch

from dimalib.envs import (
    CollectResult,
    VectorMultiAgentEnv,
    collect,
    known_env_names,
    make_env,
    spec_from_env,
)

pytest.importorskip("gymnasium_robotics")


@pytest.fixture(autouse=True)
def _mujoco_log_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory


def policy(obs: torch.Tensor, state: torch.Tensor, a_dim: int) -> torch.Tensor:
    """Deterministic, row-wise, only + * and clamp (bit-identical batched or one row at a time)."""
    return (obs[:, :a_dim] * 0.8 - state[:, :a_dim] * 0.3 + 0.1).clamp(-1.0, 1.0)


def toy_env(max_steps: int = 9) -> Any:
    from dimalib.envs.toy import CoupledPointMasses

    return CoupledPointMasses(n_agents=3, max_steps=max_steps, box=1.6)


class DropoutEnv:
    """Tiny ParallelEnv: agent ``b`` disappears from obs on the last step; per-agent rewards."""

    def __init__(self, length: int = 4) -> None:
        self.possible_agents = ["a", "b"]
        self.metadata: dict[str, Any] = {}
        self.length = length
        self.t = 0
        self.base = 0.0

    def observation_space(self, agent: str) -> Any:
        return gymnasium.spaces.Box(-np.inf, np.inf, (2 if agent == "a" else 3,), np.float32)

    def action_space(self, agent: str) -> Any:
        return gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def _obs(self, drop_b: bool = False) -> dict[str, np.ndarray]:
        out = {"a": np.full(2, self.base + self.t, np.float32)}
        if not drop_b:
            out["b"] = np.full(3, -(self.base + self.t), np.float32)
        return out

    def reset(self, seed: int | None = None, options: Any = None) -> Any:
        self.base = float(seed or 0) * 100.0 if seed is not None else self.base + 1000.0
        self.t = 0
        return self._obs(), {}

    def step(self, actions: dict[str, np.ndarray]) -> Any:
        self.t += 1
        end = self.t >= self.length
        rewards = {"a": float(actions["a"][0]), "b": 3.0 * float(actions["b"][0])}
        return self._obs(drop_b=end), rewards, {"a": False, "b": False}, {"a": end, "b": end}, {}

    def state(self) -> np.ndarray:
        return np.array([self.base, self.t], np.float32)

    def close(self) -> None:
        pass


def run_separately(make, seeds, steps, a_dim):
    """Reference: each env on its own through the PettingZoo dict API, same policy."""
    per_env = []
    for seed in seeds:
        env = make()
        agents = env.possible_agents
        spec = spec_from_env(env)
        obs_d, _ = env.reset(seed=seed)
        state = env.state()
        rec: dict[str, list] = {k: [] for k in ("state", "obs", "reward", "term", "trunc")}
        rec.update(final_state=[], final_obs=[], next_state=[], next_obs=[])
        for _ in range(steps):
            jo = np.concatenate([obs_d[a] for a in agents]).astype(np.float32)
            st = np.asarray(state, np.float32)
            rec["state"].append(st)
            rec["obs"].append(jo)
            act = policy(torch.from_numpy(jo)[None], torch.from_numpy(st)[None], a_dim)[0].numpy()
            obs_d, rew, term, trunc, _ = env.step(
                {a: act[s] for a, s in zip(agents, spec.action_slices, strict=True)}
            )
            t, u = any(term.values()), any(trunc.values())
            rec["reward"].append(np.float32(next(iter(rew.values()))))
            rec["term"].append(t)
            rec["trunc"].append(u and not t)
            state = env.state()
            rec["final_state"].append(np.asarray(state, np.float32))
            rec["final_obs"].append(np.concatenate([obs_d[a] for a in agents]).astype(np.float32))
            if t or u:
                obs_d, _ = env.reset()
                state = env.state()
            rec["next_state"].append(np.asarray(state, np.float32))
            rec["next_obs"].append(np.concatenate([obs_d[a] for a in agents]).astype(np.float32))
        env.close()
        per_env.append({k: np.stack(v) for k, v in rec.items()})
    return {k: np.stack([e[k] for e in per_env], axis=1) for k in per_env[0]}  # [T, N, ...]


def run_vector(venv, seed, steps):
    a_dim = venv.spec.joint_action_dim
    state, obs = venv.reset(seed=seed)
    rec: dict[str, list] = {}
    for _ in range(steps):
        out = venv.step(policy(obs, state, a_dim))
        fields = {
            "state": state,
            "obs": obs,
            "reward": out.reward,
            "term": out.terminated,
            "trunc": out.truncated,
            "final_state": out.final_state,
            "final_obs": out.final_obs,
            "next_state": out.next_state,
            "next_obs": out.next_obs,
        }
        for k, v in fields.items():
            rec.setdefault(k, []).append(v.numpy().copy())
        state, obs = out.next_state, out.next_obs
    return {k: np.stack(v) for k, v in rec.items()}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


CASES = {
    "HalfCheetah-3x2": functools.partial(make_env, "HalfCheetah-3x2", max_episode_steps=13),
    "Walker2d-3x2": functools.partial(make_env, "Walker2d-3x2", max_episode_steps=13),
    "Ant-4x2": functools.partial(make_env, "Ant-4x2", max_episode_steps=13),
    "toy": toy_env,
}


@pytest.mark.parametrize("case", list(CASES))
def test_n_collected_copies_equal_n_separate_envs(case):
    make = CASES[case]
    n, seed, steps = 3, 11, 30
    with VectorMultiAgentEnv([make] * n) as venv:
        got = run_vector(venv, seed, steps)
        a_dim = venv.spec.joint_action_dim
    want = run_separately(make, [seed + i for i in range(n)], steps, a_dim)
    assert want["trunc"].any() or want["term"].any()  # episodes did end and auto-reset
    assert_same(got, want)
    # the copies really differ from each other (seed + i)
    assert not np.array_equal(got["state"][0, 0], got["state"][0, 1])


def test_fast_path_and_dict_path_give_identical_batches():
    make = functools.partial(make_env, "Ant-2x4", max_episode_steps=9)
    with (
        VectorMultiAgentEnv([make] * 2) as fast,
        VectorMultiAgentEnv([make] * 2, fast_path=False) as slow,
    ):
        assert fast._group.num_fast == 2 and slow._group.num_fast == 0
        assert_same(run_vector(fast, 4, 20), run_vector(slow, 4, 20))


def test_inprocess_equals_subprocess_and_workers_exit():
    make = functools.partial(make_env, "HalfCheetah-2x3", max_episode_steps=7)
    with VectorMultiAgentEnv([make] * 3) as local:
        want = run_vector(local, 5, 16)
    sub = VectorMultiAgentEnv([make] * 3, mode="subprocess", num_workers=2)
    assert sub.spec == local.spec
    assert [b - a for a, b in sub._bounds] == [2, 1] or [b - a for a, b in sub._bounds] == [1, 2]
    got = run_vector(sub, 5, 16)
    procs = [w.proc for w in sub._workers]
    sub.close()
    sub.close()  # idempotent
    assert_same(got, want)
    assert all(not p.is_alive() for p in procs)
    with pytest.raises(RuntimeError, match="closed"):
        sub.reset(seed=0)


def _broken_env() -> Any:
    raise OSError("no such asset: broken.xml")


def test_worker_failure_is_reported():
    with pytest.raises(RuntimeError, match=r"broken\.xml"):
        VectorMultiAgentEnv([_broken_env], mode="subprocess")


@pytest.fixture
def cheetah():
    venv = VectorMultiAgentEnv([functools.partial(make_env, "HalfCheetah-2x3")] * 2)
    yield venv
    venv.close()


def test_step_before_reset_raises(cheetah):
    with pytest.raises(RuntimeError, match="reset"):
        cheetah.step(torch.zeros(2, 6))


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (torch.zeros(2, 5), r"joint_action: expected shape \(2, 6\), received \(2, 5\)"),
        (torch.zeros(3, 6), r"joint_action: expected shape \(2, 6\), received \(3, 6\)"),
        (torch.zeros(6), r"joint_action: expected shape"),
        (torch.zeros(2, 6, dtype=torch.int64), "joint_action: expected a floating point"),
        (np.zeros((2, 6), np.float32), "joint_action: expected a torch.Tensor"),
        (torch.tensor([[0.0] * 5 + [float("nan")]] * 2), "joint_action: expected finite.*2 NaN"),
        (
            torch.tensor([[float("inf")] + [0.0] * 5] * 2),
            "joint_action: expected finite.*0 NaN and 2 inf",
        ),
    ],
)
def test_bad_actions_raise_value_error_naming_the_argument(cheetah, action, message):
    cheetah.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        cheetah.step(action)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="env_fns"):
        VectorMultiAgentEnv([])
    with pytest.raises(ValueError, match="mode"):
        VectorMultiAgentEnv([toy_env], mode="threads")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_workers"):
        VectorMultiAgentEnv([toy_env], mode="subprocess", num_workers=0)
    with pytest.raises(ValueError, match="start_method"):
        VectorMultiAgentEnv([toy_env], mode="subprocess", start_method="fork")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same spec"):
        VectorMultiAgentEnv([toy_env, functools.partial(make_env, "HalfCheetah-2x3")])
    with VectorMultiAgentEnv([toy_env]) as venv, pytest.raises(ValueError, match="seed"):
        venv.reset(seed=1.5)  # type: ignore[arg-type]


def test_unknown_env_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"HalfCheetah-2x3.*ShadowHandPen.*received 'Pong'"):
        make_env("Pong")
    assert "Ant-4x2" in known_env_names() and "ShadowHandDoorOpenOutward" in known_env_names()


def test_generic_env_missing_agent_and_per_agent_rewards():
    with VectorMultiAgentEnv([DropoutEnv, DropoutEnv]) as venv:
        assert venv.spec.obs_dims == (2, 3) and venv.spec.state_dim == 2
        _, obs = venv.reset(seed=1)
        np.testing.assert_array_equal(obs[1].numpy(), [200, 200, -200, -200, -200])
        for _ in range(4):
            out = venv.step(torch.tensor([[0.5, 0.25], [-0.5, 0.0]]))
            np.testing.assert_allclose(out.reward.numpy(), [(0.5 + 0.75) / 2, -0.25])
        assert out.truncated.all() and not out.terminated.any()
        # the agent missing from the last observation is zero-filled in final_obs
        np.testing.assert_array_equal(out.final_obs[0].numpy(), [104, 104, 0, 0, 0])
        np.testing.assert_array_equal(out.final_state[0].numpy(), [100, 4])
        np.testing.assert_array_equal(out.next_state[0].numpy(), [1100, 0])  # auto-reset
        np.testing.assert_array_equal(out.episode_length.numpy(), [4, 4])


class RecordingSink:
    """Stand-in for ReplayBuffer: records what ``add`` receives."""

    def __init__(self) -> None:
        self.rows: list[dict[str, torch.Tensor]] = []

    def add(self, state, obs, action, reward, terminated, truncated, next_state, next_obs):
        self.rows.append(
            dict(
                state=state,
                obs=obs,
                action=action,
                reward=reward,
                terminated=terminated,
                truncated=truncated,
                next_state=next_state,
                next_obs=next_obs,
            )
        )


def test_collect_inserts_true_transitions_and_reports_episodes():
    make = functools.partial(make_env, "HalfCheetah-6x1", max_episode_steps=6)
    calls = []

    def pol(obs, state):
        calls.append(obs.shape[0])
        return policy(obs, state, 6)

    with VectorMultiAgentEnv([make] * 2) as venv:
        sink = RecordingSink()
        first = collect(venv, pol, 9, sink, seed=0)
        second = collect(venv, pol, 9, sink)  # continues where the first call stopped
    assert calls == [2] * 18  # one policy call per step, for the whole batch
    assert isinstance(first, CollectResult) and first.env_steps == 18
    assert first.num_episodes == 2 and second.num_episodes == 4
    assert first.episode_lengths.tolist() == [6, 6]
    assert second.episode_lengths.tolist() == [6] * 4  # the one spanning both calls counts whole
    rows = sink.rows
    assert len(rows) == 18
    for t in range(17):
        done = rows[t]["terminated"] | rows[t]["truncated"]
        # next row starts where this one went: from next_state if not done, else a reset state
        same = (rows[t + 1]["state"] == rows[t]["next_state"]).all(dim=1)
        assert torch.equal(same, ~done)
    rewards = torch.stack([r["reward"] for r in rows])  # [18, 2]
    np.testing.assert_allclose(first.episode_returns.numpy(), rewards[:6].sum(0).numpy(), rtol=1e-5)
    np.testing.assert_allclose(first.mean_return, float(rewards[:6].sum(0).mean()), rtol=1e-5)
    with VectorMultiAgentEnv([make]) as venv:
        empty = collect(venv, pol, 0)
    assert empty.num_episodes == 0 and empty.env_steps == 0 and np.isnan(empty.mean_return)


def test_collect_rejects_bad_policy_output_and_steps():
    with VectorMultiAgentEnv([toy_env]) as venv:
        with pytest.raises(ValueError, match="joint_action"):
            collect(venv, lambda o, s: torch.zeros(1, 5), 1)
        with pytest.raises(ValueError, match="steps"):
            collect(venv, lambda o, s: torch.zeros(1, 6), -1)


def test_collect_into_the_replay_buffer():
    buffer_mod = pytest.importorskip("dimalib.data.buffer")
    make = functools.partial(toy_env, max_steps=5)
    with VectorMultiAgentEnv([make] * 2) as venv:
        buf = buffer_mod.ReplayBuffer(venv.spec, capacity=100, num_streams=2)
        sink = RecordingSink()

        class Both:
            def add(self, **kw):
                sink.add(**kw)
                buf.add(**kw)

        collect(venv, lambda o, s: policy(o, s, 6), 12, Both(), seed=3)
    assert len(buf) == 24
    for stream in range(2):
        stored = buf.stream_data(stream)
        for key in ("state", "obs", "action", "reward", "terminated", "truncated", "next_state"):
            want = torch.stack([r[key][stream] for r in sink.rows])
            assert torch.equal(stored[key].to(want.dtype), want), key
