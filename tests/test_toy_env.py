"""CoupledPointMasses: PettingZoo API, exact batched dynamics, hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test, parallel_seed_test

from dimalib.envs.toy import CoupledPointMasses, CoupledPointMassesConfig

CONFIGS = [
    CoupledPointMassesConfig(),
    CoupledPointMassesConfig(n_agents=3, action_dims=(1, 2, 3)),
    CoupledPointMassesConfig(
        n_agents=4,
        space_dim=3,
        topology="ring",
        max_steps=150,
        mass=2.0,
        spring=1.5,
        damping=0.3,
        force_scale=3.0,
        dt=0.05,
        action_dims=(3, 1, 3, 2),
    ),
    CoupledPointMassesConfig(n_agents=1, space_dim=1),
]


def joint(env: CoupledPointMasses, per_agent: dict[str, np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([per_agent[a] for a in env.possible_agents]))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"n{c.n_agents}d{c.space_dim}")
def test_parallel_api(config: CoupledPointMassesConfig) -> None:
    parallel_api_test(CoupledPointMasses(config), num_cycles=200)


@pytest.mark.parametrize("config", CONFIGS[:2], ids=["default", "hetero"])
def test_parallel_seed(config: CoupledPointMassesConfig) -> None:
    parallel_seed_test(lambda: CoupledPointMasses(config))


def test_reset_seed_reproducible_and_varies() -> None:
    env = CoupledPointMasses()
    a, _ = env.reset(seed=3)
    b, _ = env.reset(seed=3)
    c, _ = env.reset(seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["agent_0"], c["agent_0"])


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"n{c.n_agents}d{c.space_dim}")
def test_batched_step_and_observe_equal_env(config: CoupledPointMassesConfig) -> None:
    """The numpy env (per-agent loop) and the torch batch (linear maps) give the same values."""
    env = CoupledPointMasses(config, box=0.9, init_range=0.7)  # small box: episodes end
    rng = np.random.default_rng(0)
    checked = terminated_seen = 0
    for episode in range(10):
        obs, _ = env.reset(seed=episode)
        state = torch.from_numpy(env.state()).double()
        assert torch.allclose(env.observe(state), joint(env, obs).double(), atol=1e-6)
        while env.agents:
            # actions up to 1.5: clipping must agree too
            acts = {
                a: rng.uniform(-1.5, 1.5, env.action_space(a).shape).astype(np.float32)
                for a in env.agents
            }
            obs, rew, term, _, _ = env.step(acts)
            nxt, r, t = env.batched_step(state[None], joint(env, acts)[None].double())
            env_state = torch.from_numpy(env.state()).double()
            assert torch.allclose(nxt[0], env_state, atol=1e-6), (nxt[0], env_state)
            assert r[0].item() == pytest.approx(rew["agent_0"], abs=1e-6)
            assert len(set(rew.values())) == 1  # shared reward
            assert bool(t[0]) == term["agent_0"]
            assert torch.allclose(env.observe(nxt)[0], joint(env, obs).double(), atol=1e-6)
            terminated_seen += int(term["agent_0"])
            state = env_state
            checked += 1
    assert checked > 50 and terminated_seen > 0


def test_batched_step_batch_shapes_and_float32() -> None:
    env = CoupledPointMasses(n_agents=3, action_dims=(1, 2, 3))
    gen = torch.Generator().manual_seed(0)
    s = env.initial_state(4096, generator=gen)
    a = torch.rand(4096, 6, generator=gen) * 2 - 1
    nxt, r, t = env.batched_step(s, a)
    assert nxt.shape == (4096, 12) and r.shape == (4096,) and t.dtype == torch.bool
    assert nxt.dtype == torch.float32
    n64, r64, _ = env.batched_step(s.double(), a.double())
    assert torch.allclose(nxt.double(), n64, atol=1e-5) and torch.allclose(
        r.double(), r64, atol=1e-4
    )
    # arbitrary leading dimensions
    n2, r2, _ = env.batched_step(s.view(64, 64, 12), a.view(64, 64, 6))
    assert torch.equal(n2.view(4096, 12), nxt) and r2.shape == (64, 64)
    assert env.observe(s.view(64, 64, 12)).shape == (64, 64, env.spec.joint_obs_dim)
    with pytest.raises(ValueError, match=r"^joint_action: expected shape \(4096, 6\)"):
        env.batched_step(s, a[:, :5])
    with pytest.raises(ValueError, match=r"^state: expected shape \(\.\.\., 12\)"):
        env.observe(s[:, :5])


def test_hand_computed_step() -> None:
    """Two masses on a line: x = (1, -1), v = 0, k = 1, c = 0, m = 1, dt = 0.1, a = (0.5, 0)."""
    cfg = CoupledPointMassesConfig(
        n_agents=2, space_dim=1, spring=1.0, damping=0.0, dt=0.1, action_cost=0.1,
        target_radius=0.0, box=0.99,
    )  # fmt: skip
    env = CoupledPointMasses(cfg)
    # acc_0 = 0.5 + (-1 - 1) = -1.5 -> v_0 = -0.15, x_0 = 1 - 0.015 = 0.985
    # acc_1 = 0 + (1 - (-1)) = 2 -> v_1 = 0.2, x_1 = -1 + 0.02 = -0.98
    # reward = -(0.985 + 0.98) - 0.1 * 0.25 = -1.99; max |x| = 0.985 <= 0.99 -> not terminated
    expected_state = [0.985, -0.98, -0.15, 0.2]
    env.reset(options={"state": [1.0, -1.0, 0.0, 0.0]})
    obs, rew, term, trunc, _ = env.step({"agent_0": np.array([0.5]), "agent_1": np.array([0.0])})
    assert env.state() == pytest.approx(expected_state, abs=1e-6)
    assert rew["agent_0"] == pytest.approx(-1.99, abs=1e-9)
    assert not term["agent_0"] and not trunc["agent_0"]
    # obs of agent 0: x_0, v_0, g_0 - x_0, x_1 - x_0
    assert obs["agent_0"] == pytest.approx([0.985, -0.15, -0.985, -1.965], abs=1e-6)
    s = torch.tensor([[1.0, -1.0, 0.0, 0.0]], dtype=torch.float64)
    nxt, r, t = env.batched_step(s, torch.tensor([[0.5, 0.0]], dtype=torch.float64))
    assert nxt[0].tolist() == pytest.approx(expected_state, abs=1e-12)
    assert r.item() == pytest.approx(-1.99, abs=1e-12) and not t.item()
    # a smaller box terminates; an action beyond the bound is clipped to 1
    strict = CoupledPointMasses(cfg, box=0.98)
    _, _, t = strict.batched_step(s, torch.tensor([[0.5, 0.0]], dtype=torch.float64))
    assert t.item()
    nxt, r, _ = env.batched_step(s, torch.tensor([[3.0, 0.0]], dtype=torch.float64))
    # acc_0 = 1 - 2 = -1 -> x_0 = 1 - 0.01 = 0.99; cost 0.1 * 1
    assert nxt[0, 0].item() == pytest.approx(0.99, abs=1e-12)
    assert r.item() == pytest.approx(-(0.99 + 0.98) - 0.1, abs=1e-12)


def test_truncation_at_time_limit() -> None:
    env = CoupledPointMasses(max_steps=5, box=100.0)
    env.reset(seed=0)
    zero = {a: np.zeros(2, np.float32) for a in env.possible_agents}
    for _ in range(4):
        _, _, term, trunc, _ = env.step(zero)
        assert not any(trunc.values()) and not any(term.values())
    _, _, term, trunc, _ = env.step(zero)
    assert all(trunc.values()) and not any(term.values()) and env.agents == []
    with pytest.raises(RuntimeError):
        env.step(zero)


def test_heterogeneous_sizes_and_coupling() -> None:
    env = CoupledPointMasses(n_agents=3, action_dims=(1, 2, 3), space_dim=2)
    spec = env.spec
    assert spec.action_dims == (1, 2, 3) and spec.joint_action_dim == 6
    assert spec.obs_dims == (8, 10, 8)  # chain ends see one neighbour, the middle two
    assert spec.state_dim == 12
    assert [env.action_space(a).shape for a in env.possible_agents] == [(1,), (2,), (3,)]
    assert [b.shape for b in env.force_matrices] == [(2, 1), (2, 2), (2, 3)]
    assert np.allclose(np.linalg.norm(env.force_matrices[0], axis=0), 1.0)
    # agent 0's action reaches mass 2 through the springs: x_2 changes at step 3, not before
    s0 = torch.zeros(2, 12, dtype=torch.float64)
    a = torch.zeros(2, 6, dtype=torch.float64)
    a[1, 0] = 1.0  # only agent 0 acts, only in the second batch entry
    s = s0
    moved = []
    for _ in range(3):
        s, _, _ = env.batched_step(s, a)
        moved.append(
            [bool((s[0, 2 * i : 2 * i + 2] != s[1, 2 * i : 2 * i + 2]).any()) for i in range(3)]
        )
    assert moved == [[True, False, False], [True, True, False], [True, True, True]]
    # the linear form is the dynamics
    big_m, big_n = env.linear_dynamics()
    x = torch.randn(5, 12, dtype=torch.float64)
    u = torch.rand(5, 6, dtype=torch.float64) * 2 - 1
    expected = x @ torch.from_numpy(big_m).T + u @ torch.from_numpy(big_n).T
    assert torch.allclose(env.batched_step(x, u)[0], expected, atol=1e-12)


def test_config_and_step_errors() -> None:
    with pytest.raises(ValueError, match=r"^action_dims: "):
        CoupledPointMasses(n_agents=2, action_dims=(1,))
    with pytest.raises(ValueError, match=r"^topology: "):
        CoupledPointMasses(n_agents=2, topology="ring")
    with pytest.raises(ValueError, match=r"^dt: "):
        CoupledPointMasses(dt=0.0)
    env = CoupledPointMasses()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"^actions: expected an action for 'agent_1'"):
        env.step({"agent_0": np.zeros(2)})
    with pytest.raises(ValueError, match=r"^actions\['agent_0'\]: expected shape \(2,\)"):
        env.step({"agent_0": np.zeros(3), "agent_1": np.zeros(2)})
    with pytest.raises(ValueError, match=r"^options\['state'\]"):
        env.reset(options={"state": np.zeros(3)})
