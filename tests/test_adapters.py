"""Adapters over ImaginationEnv: PettingZoo, Gymnasium vector, HARL tuples, TorchRL; the example."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test, parallel_seed_test

from dimalib import MultiAgentSpec
from dimalib.data.buffer import ReplayBuffer
from dimalib.envs import spec_from_env
from dimalib.imagination import ImaginationConfig, ImaginationEnv
from dimalib.imagination.adapters import (
    HARLImaginationEnv,
    PettingZooImaginationEnv,
    VectorImaginationEnv,
)
from dimalib.world_model import (
    DIMAWorldModel,
    RewardTerminationConfig,
    StateDecoderConfig,
    WorldModelConfig,
)
from dimalib.world_model.dynamics import DenoiserConfig

# heterogeneous agents and non-default bounds, so padding and spaces are exercised
SPEC = MultiAgentSpec(
    ("left", "right"),
    (4, 5),
    (2, 3),
    state_dim=6,
    action_low=(-1.0, -2.0, -1.0, -1.0, 0.0),
    action_high=(1.0, 2.0, 0.5, 1.0, 3.0),
)
TINY = WorldModelConfig(
    dynamics=DenoiserConfig(channels=(32, 32), depths=(1, 1), cond_dim=64, action_token_dim=32),
    reward=RewardTerminationConfig(n_layer=2, n_head=2, n_embd=32, head_hidden=32, max_steps=5),
    decoder=StateDecoderConfig(hidden_dim=32),
)
OBS, ACT, STATE = SPEC.joint_obs_dim, SPEC.joint_action_dim, SPEC.state_dim
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_marl.py"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models: one thread is fastest, and much faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@torch.no_grad()
def _world_model(seed: int = 0) -> DIMAWorldModel:
    torch.manual_seed(seed)
    wm = DIMAWorldModel(SPEC, TINY)
    g = torch.Generator().manual_seed(seed)
    for p in wm.parameters():  # zero-initialised output layers would hide the dynamics
        p.add_(torch.randn(p.shape, generator=g) * 0.05)
    wm.update_normalizer(torch.randn(200, STATE) * 2 + 1)
    return wm.eval()


def _buffer(n_rows: int = 40) -> ReplayBuffer:
    buf = ReplayBuffer(SPEC, capacity=100)
    g = torch.Generator().manual_seed(1)
    for t in range(n_rows):
        buf.add(
            torch.randn(1, STATE, generator=g),
            torch.randn(1, OBS, generator=g),
            torch.rand(1, ACT, generator=g) * 2 - 1,
            torch.randn(1, generator=g),
            torch.zeros(1, dtype=torch.bool),
            torch.tensor([t % 10 == 9]),
            torch.randn(1, STATE, generator=g),
            torch.randn(1, OBS, generator=g),
        )
    return buf


def _env(
    wm: DIMAWorldModel, n: int, horizon: int, seed: int | None = 0, **cfg: object
) -> ImaginationEnv:
    config = ImaginationConfig(num_envs=n, horizon=horizon, **cfg)  # type: ignore[arg-type]
    return ImaginationEnv(wm, _buffer(), config, seed=seed)


def _actions(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, ACT, generator=g) * 2 - 1


def _terminate_always(wm: DIMAWorldModel) -> None:
    with torch.no_grad():  # a termination head that always fires
        last = wm.reward_model.termination_head[-1]
        last.weight.zero_()
        last.bias.fill_(10.0)


def _pad_obs(joint_obs: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(*joint_obs.shape[:-1], 2, 5)
    out[..., 0, :4] = joint_obs[..., :4]
    out[..., 1, :5] = joint_obs[..., 4:]
    return out


@pytest.fixture(scope="module")
def wm() -> DIMAWorldModel:
    return _world_model()


# --------------------------------------------------------------------------- PettingZoo
def test_pettingzoo_api_and_seed_tests(wm: DIMAWorldModel) -> None:
    def make() -> PettingZooImaginationEnv:
        return PettingZooImaginationEnv(_env(wm, 1, horizon=4, seed=None))

    parallel_api_test(make(), num_cycles=10)
    parallel_seed_test(make, num_cycles=10)

    # the seed test stops after one step: compare whole rollouts, and check the seed matters
    def rollout(seed: int) -> list[np.ndarray]:
        env = make()
        obs, _ = env.reset(seed=seed)
        out = [obs["left"], obs["right"], env.state()]
        g = np.random.default_rng(0)
        while env.agents:
            acts = {
                a: g.uniform(-1, 1, env.action_space(a).shape).astype(np.float32)
                for a in env.agents
            }
            obs, rew, _, _, _ = env.step(acts)
            out += [obs["left"], obs["right"], env.state(), np.array(rew["left"])]
        return out

    a, b, c = rollout(7), rollout(7), rollout(8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])  # another seed samples another start context


def test_pettingzoo_spaces_and_values_match_the_imagination_env(wm: DIMAWorldModel) -> None:
    view = PettingZooImaginationEnv(_env(wm, 1, horizon=3, seed=5))
    direct = _env(wm, 1, horizon=3, seed=5)
    assert view.possible_agents == ["left", "right"] and view.agents == []
    for i, agent in enumerate(view.possible_agents):
        assert view.observation_space(agent) is view.observation_space(agent)
        assert view.action_space(agent) is view.action_space(agent)
        assert view.observation_space(agent).shape == (SPEC.obs_dims[i],)
        box = view.action_space(agent)
        assert box.dtype == np.float32
        sl = SPEC.action_slices[i]
        np.testing.assert_array_equal(box.low, np.float32(SPEC.action_low[sl]))
        np.testing.assert_array_equal(box.high, np.float32(SPEC.action_high[sl]))
    assert view.state_space.shape == (STATE,)
    assert spec_from_env(view) == SPEC  # dimalib's own env tooling reads the view like a real env
    with pytest.raises(ValueError, match="agent: expected one of"):
        view.action_space("nobody")

    obs, infos = view.reset(seed=5)
    d_obs, d_state = direct.reset(seed=5)
    assert set(obs) == set(infos) == {"left", "right"} and view.agents == ["left", "right"]
    for agent, sl in zip(view.possible_agents, SPEC.obs_slices, strict=True):
        assert obs[agent].dtype == np.float32
        np.testing.assert_array_equal(obs[agent], d_obs[0, sl].numpy())
    np.testing.assert_array_equal(view.state(), d_state[0].numpy())
    for t in range(3):
        joint = _actions(1, t)
        acts = {"left": joint[0, :2].numpy(), "right": joint[0, 2:].numpy()}
        obs, rew, term, trunc, info = view.step(acts)
        ref = direct.step(joint)
        for agent, sl in zip(view.possible_agents, SPEC.obs_slices, strict=True):
            np.testing.assert_array_equal(obs[agent], ref.obs[0, sl].numpy())
            assert isinstance(rew[agent], float) and isinstance(term[agent], bool)
            assert rew[agent] == pytest.approx(float(ref.reward[0]), abs=1e-6)
            assert term[agent] == bool(ref.terminated[0])
            assert trunc[agent] == (t == 2)
            assert info[agent]["termination_prob"] == pytest.approx(
                float(ref.termination_prob[0]), abs=1e-6
            )
        np.testing.assert_array_equal(view.state(), ref.state[0].numpy())
    assert view.agents == []  # truncated at the horizon
    with pytest.raises(ValueError, match="episode has ended"):
        view.step(acts)


def test_pettingzoo_termination_ends_the_episode() -> None:
    wm = _world_model()
    _terminate_always(wm)
    view = PettingZooImaginationEnv(_env(wm, 1, horizon=5))
    view.reset()
    _, rew, term, trunc, _ = view.step({"left": np.zeros(2), "right": np.zeros(3)})
    assert term == {"left": True, "right": True} and trunc == {"left": False, "right": False}
    assert view.agents == [] and rew["left"] != 0.0


def test_pettingzoo_rejects_bad_action_dicts_and_batches(wm: DIMAWorldModel) -> None:
    view = PettingZooImaginationEnv(_env(wm, 1, horizon=3))
    view.reset()
    ok = {"left": np.zeros(2, np.float32), "right": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match="missing an action for agent 'right'"):
        view.step({"left": ok["left"]})
    with pytest.raises(ValueError, match="'ghost', which is not a live agent"):
        view.step({**ok, "ghost": np.zeros(1)})
    with pytest.raises(
        ValueError, match=r"actions\['left'\]: expected shape \(2,\), received \(3,\)"
    ):
        view.step({**ok, "left": np.zeros(3)})
    with pytest.raises(ValueError, match=r"actions\['right'\]: expected finite values"):
        view.step({**ok, "right": np.array([0.0, np.nan, 0.0])})
    with pytest.raises(ValueError, match=r"actions\['right'\]: expected finite values"):
        view.step({**ok, "right": np.array([0.0, np.inf, 0.0])})
    with pytest.raises(ValueError, match=r"actions\['left'\]: expected a float array"):
        view.step({**ok, "left": "fast"})
    with pytest.raises(ValueError, match="actions: expected a dict"):
        view.step([ok["left"], ok["right"]])  # type: ignore[arg-type]
    assert view.imagination_env.t == 0  # nothing was stepped
    view.step(ok)  # a torch tensor works too
    view.step({"left": torch.zeros(2), "right": torch.zeros(3)})
    with pytest.raises(ValueError, match="num_envs == 1"):
        PettingZooImaginationEnv(_env(wm, 2, horizon=3))
    with pytest.raises(ValueError, match="imagination_env: expected an ImaginationEnv"):
        PettingZooImaginationEnv(wm)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="state: call reset"):
        PettingZooImaginationEnv(_env(wm, 1, horizon=3)).state()


# --------------------------------------------------------------------------- Gymnasium vector
@pytest.mark.parametrize("as_numpy", [False, True], ids=["torch", "numpy"])
def test_vector_shapes_dtypes_and_values(wm: DIMAWorldModel, as_numpy: bool) -> None:
    n = 4
    venv = VectorImaginationEnv(_env(wm, n, horizon=3, seed=2), as_numpy=as_numpy)
    direct = _env(wm, n, horizon=3, seed=2)
    assert isinstance(venv, gymnasium.vector.VectorEnv) and venv.num_envs == n
    assert venv.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.NEXT_STEP
    assert venv.single_observation_space.shape == (OBS,)
    assert venv.observation_space.shape == (n, OBS) and venv.action_space.shape == (n, ACT)
    np.testing.assert_array_equal(venv.single_action_space.low, np.float32(SPEC.action_low))
    np.testing.assert_array_equal(venv.single_action_space.high, np.float32(SPEC.action_high))

    def as_tensor(x: object, dtype: torch.dtype) -> torch.Tensor:
        if as_numpy:
            assert isinstance(x, np.ndarray)
            assert x.dtype == (np.float32 if dtype == torch.float32 else np.bool_)
            return torch.from_numpy(x)
        assert isinstance(x, torch.Tensor) and x.dtype == dtype and x.device == direct.device
        return x

    obs, info = venv.reset(seed=2)
    d_obs, d_state = direct.reset(seed=2)
    assert torch.equal(as_tensor(obs, torch.float32), d_obs)
    assert torch.equal(as_tensor(info["state"], torch.float32), d_state)
    for t in range(3):
        act = _actions(n, 10 + t)
        obs, rew, term, trunc, info = venv.step(act.numpy() if as_numpy else act)
        ref = direct.step(act)
        assert torch.equal(as_tensor(obs, torch.float32), ref.obs)
        assert tuple(as_tensor(rew, torch.float32).shape) == (n,)
        assert torch.equal(as_tensor(rew, torch.float32), ref.reward)
        assert torch.equal(as_tensor(term, torch.bool), ref.terminated)
        assert torch.equal(as_tensor(trunc, torch.bool), ref.truncated)
        assert bool(as_tensor(trunc, torch.bool).all()) == (t == 2)
        assert torch.equal(as_tensor(info["state"], torch.float32), ref.state)
        assert torch.equal(as_tensor(info["termination_prob"], torch.float32), ref.termination_prob)
        assert bool(as_tensor(info["active"], torch.bool).all())
        assert bool(as_tensor(info["_state"], torch.bool).all())
    venv.close()


def test_vector_next_step_autoreset_at_the_horizon(wm: DIMAWorldModel) -> None:
    n = 3
    venv = VectorImaginationEnv(_env(wm, n, horizon=2, seed=None), as_numpy=False)
    direct = _env(wm, n, horizon=2, seed=None)
    with pytest.raises(ValueError, match="step: call reset"):
        venv.step(torch.zeros(n, ACT))
    venv.reset(seed=9)
    direct.reset(seed=9)
    for t in range(2):
        _, _, _, trunc, _ = venv.step(_actions(n, t))
        direct.step(_actions(n, t))
    assert bool(trunc.all())
    expected_obs, expected_state = direct.reset()  # the same generator, continued
    obs, rew, term, trunc, info = venv.step(torch.full((n, ACT), 123.0))  # actions ignored
    assert torch.equal(obs, expected_obs) and torch.equal(info["state"], expected_state)
    assert torch.equal(rew, torch.zeros(n)) and not bool(term.any()) and not bool(trunc.any())
    assert not bool(info["active"].any())
    assert venv.imagination_env.t == 0
    # the new episode continues like the ImaginationEnv
    obs, rew, _, trunc, info = venv.step(_actions(n, 5))
    ref = direct.step(_actions(n, 5))
    assert torch.equal(obs, ref.obs) and torch.equal(rew, ref.reward)
    assert bool(info["active"].all()) and not bool(trunc.any())
    with pytest.raises(ValueError, match=r"actions: expected shape \(3, 5\), received \(3, 4\)"):
        venv.step(torch.zeros(n, 4))
    with pytest.raises(ValueError, match="actions: expected a floating point tensor"):
        venv.step(torch.zeros(n, ACT, dtype=torch.long))


def test_vector_termination_is_sticky_and_masked_by_active() -> None:
    wm = _world_model()
    _terminate_always(wm)
    venv = VectorImaginationEnv(_env(wm, 2, horizon=3), as_numpy=False)
    venv.reset()
    _, rew1, term1, _, info1 = venv.step(torch.zeros(2, ACT))
    _, rew2, term2, _, info2 = venv.step(torch.zeros(2, ACT))
    assert bool(term1.all()) and bool(info1["active"].all()) and bool((rew1 != 0).all())
    assert bool(term2.all()) and not bool(info2["active"].any())
    assert torch.equal(rew2, torch.zeros(2))


def test_vector_view_works_with_gymnasium_vector_wrappers_by_default(wm: DIMAWorldModel) -> None:
    from gymnasium.wrappers.vector import NormalizeObservation, RecordEpisodeStatistics

    n, horizon = 3, 2
    venv = NormalizeObservation(RecordEpisodeStatistics(VectorImaginationEnv(
        _env(wm, n, horizon=horizon, seed=1))))  # fmt: skip
    direct = _env(wm, n, horizon=horizon, seed=1)
    obs, _ = venv.reset(seed=1)
    direct.reset(seed=1)
    assert isinstance(obs, np.ndarray) and obs.shape == (n, OBS)
    total = torch.zeros(n)
    for t in range(horizon):
        act = _actions(n, t)
        obs, _, _, trunc, info = venv.step(act.numpy())
        total += direct.step(act).reward
    assert bool(np.all(trunc)) and "episode" in info
    np.testing.assert_allclose(info["episode"]["r"], total.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(info["episode"]["l"], np.full(n, horizon))


# --------------------------------------------------------------------------- HARL
@pytest.mark.parametrize("as_numpy", [True, False], ids=["numpy", "torch"])
def test_harl_shapes_padding_and_values(wm: DIMAWorldModel, as_numpy: bool) -> None:
    n = 3
    henv = HARLImaginationEnv(_env(wm, n, horizon=2, seed=4), as_numpy=as_numpy)
    direct = _env(wm, n, horizon=2, seed=4)
    assert henv.n_agents == 2 and henv.num_envs == n
    assert [s.shape for s in henv.observation_space] == [(5,), (5,)]
    assert [s.shape for s in henv.share_observation_space] == [(STATE,), (STATE,)]
    assert [s.shape for s in henv.action_space] == [(3,), (3,)]
    assert [s.shape for s in henv.true_action_space] == [(2,), (3,)]
    np.testing.assert_array_equal(henv.action_space[0].high, np.float32([1.0, 2.0, 1.0]))

    def t(x: object, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if as_numpy:
            assert isinstance(x, np.ndarray)
            return torch.from_numpy(x)
        assert isinstance(x, torch.Tensor) and x.dtype == dtype
        return x

    obs, share, avail = henv.reset(seed=4)
    d_obs, d_state = direct.reset(seed=4)
    assert avail is None and t(obs).shape == (n, 2, 5) and t(share).shape == (n, 2, STATE)
    assert t(obs).dtype == torch.float32
    assert torch.equal(t(obs), _pad_obs(d_obs))
    assert torch.equal(t(share), d_state[:, None].expand(n, 2, STATE))

    # step 1: padding entries of the smaller agent are ignored
    joint = _actions(n, 0)
    padded = torch.full((n, 2, 3), 99.0)
    padded[:, 0, :2], padded[:, 1, :] = joint[:, :2], joint[:, 2:]
    obs, share, rew, dones, infos, avail = henv.step(padded.numpy() if as_numpy else padded)
    ref = direct.step(joint)
    assert avail is None
    assert torch.equal(t(obs), _pad_obs(ref.obs))
    assert torch.equal(t(share), ref.state[:, None].expand(n, 2, STATE))
    assert t(rew).shape == (n, 2, 1) and torch.equal(
        t(rew), ref.reward[:, None, None].expand(n, 2, 1)
    )
    done_ref = (ref.terminated | ref.truncated)[:, None].expand(n, 2)
    assert t(dones, torch.bool).dtype == torch.bool and torch.equal(t(dones, torch.bool), done_ref)
    assert len(infos) == n and all(len(row) == 2 for row in infos)
    assert all(d["bad_transition"] is False for row in infos for d in row)
    assert infos[1][1]["termination_prob"] == pytest.approx(float(ref.termination_prob[1]))

    # step 2 reaches the horizon: every rollout is done and restarts within this step
    joint = _actions(n, 1)
    padded = torch.zeros(n, 2, 3)
    padded[:, 0, :2], padded[:, 1, :] = joint[:, :2], joint[:, 2:]
    obs, share, rew, dones, infos, _ = henv.step(padded)
    ref = direct.step(joint)
    new_obs, new_state = direct.reset()
    assert bool(t(dones, torch.bool).all())
    bad = (ref.truncated & ~ref.terminated).tolist()
    for i in range(n):
        assert [d["bad_transition"] for d in infos[i]] == [bad[i], bad[i]]
        assert torch.equal(t(infos[i][0]["original_obs"]), _pad_obs(ref.obs[i]))
        assert torch.equal(t(infos[i][0]["original_state"]), ref.state[i, None].expand(2, STATE))
        assert infos[i][0]["original_avail_actions"] is None
        assert "original_obs" not in infos[i][1]
    assert torch.equal(t(obs), _pad_obs(new_obs))
    assert torch.equal(t(share), new_state[:, None].expand(n, 2, STATE))
    with pytest.raises(ValueError, match=r"actions: expected shape \(3, 2, 3\)"):
        henv.step(np.zeros((n, ACT), np.float32))


def test_harl_bad_transition_is_false_after_a_termination() -> None:
    wm = _world_model()
    _terminate_always(wm)
    henv = HARLImaginationEnv(_env(wm, 2, horizon=2))
    henv.reset()
    _, _, rew1, dones1, infos1, _ = henv.step(np.zeros((2, 2, 3), np.float32))
    _, _, rew2, dones2, infos2, _ = henv.step(np.zeros((2, 2, 3), np.float32))
    assert dones1.all() and dones2.all() and (rew1 != 0).all() and (rew2 == 0).all()
    assert not any(d["bad_transition"] for row in infos1 + infos2 for d in row)
    assert "original_obs" in infos2[0][0] and "original_obs" not in infos1[0][0]


# --------------------------------------------------------------------------- TorchRL
def test_torchrl_env_specs_and_values(wm: DIMAWorldModel) -> None:
    pytest.importorskip("torchrl")
    from torchrl.envs.utils import check_env_specs

    from dimalib.imagination.torchrl_env import TorchRLImaginationEnv

    env = TorchRLImaginationEnv(_env(wm, 3, horizon=4, seed=0), group_map="all_in_one")
    check_env_specs(env, break_when_any_done="both")

    env.set_seed(6)
    direct = _env(wm, 3, horizon=4, seed=6)
    td = env.reset()
    d_obs, d_state = direct.reset()
    assert torch.equal(td["agents", "observation"], _pad_obs(d_obs))
    assert torch.equal(td["state"], d_state)
    joint = _actions(3, 0)
    padded = torch.zeros(3, 2, 3)
    padded[:, 0, :2], padded[:, 1, :] = joint[:, :2], joint[:, 2:]
    td["agents", "action"] = padded
    nxt = env.step(td)["next"]
    ref = direct.step(joint)
    assert torch.equal(nxt["agents", "observation"], _pad_obs(ref.obs))
    assert torch.equal(nxt["state"], ref.state)
    assert torch.equal(nxt["agents", "reward"], ref.reward[:, None, None].expand(3, 2, 1))
    assert torch.equal(nxt["terminated"][:, 0], ref.terminated)
    assert torch.equal(
        nxt["agents", "done"][..., 0], (ref.terminated | ref.truncated)[:, None].expand(3, 2)
    )


def test_torchrl_partial_reset_keeps_terminated_rollouts_absorbing(wm: DIMAWorldModel) -> None:
    pytest.importorskip("torchrl")
    from tensordict import TensorDict

    from dimalib.imagination.torchrl_env import TorchRLImaginationEnv

    n, joint = 4, _actions(4, 3)
    ref_env = _env(wm, n, horizon=4, seed=1)
    ref_env.reset()
    probs = ref_env.step(joint).termination_prob.sort().values
    assert bool(probs[1] < probs[2]), "need distinct termination probabilities"
    threshold = float(probs[1] + probs[2]) / 2  # two rollouts terminate on the first step
    env = TorchRLImaginationEnv(
        _env(wm, n, horizon=4, seed=1, termination_threshold=threshold), group_map="all_in_one"
    )
    padded = torch.zeros(n, 2, 3)
    padded[:, 0, :2], padded[:, 1, :] = joint[:, :2], joint[:, 2:]

    def policy(td: TensorDict) -> TensorDict:
        return td.set(("agents", "action"), padded)

    out = env.rollout(3, policy, break_when_any_done=False)  # partial resets in between
    done = out["next", "done"][..., 0]  # [n, 3]
    reward = out["next", "agents", "reward"][..., 0, 0]
    first = done[:, 0]
    assert int(first.sum()) == 2
    assert bool(done[first].all()) and bool((reward[first][:, 1:] == 0).all())
    assert not bool(done[~first].any()) and bool((reward[~first] != 0).all())
    # a partial reset may not name a live rollout
    with pytest.raises(ValueError, match="restart together"):
        env.reset(TensorDict({"_reset": (~first)[:, None]}, batch_size=[n]))


def test_torchrl_one_group_per_agent_has_no_dummy_action_entries(wm: DIMAWorldModel) -> None:
    pytest.importorskip("torchrl")
    from torchrl.envs.utils import check_env_specs

    from dimalib.imagination.torchrl_env import TorchRLImaginationEnv

    env = TorchRLImaginationEnv(_env(wm, 3, horizon=4, seed=0))  # heterogeneous: auto
    assert env.group_map == "one_per_agent"
    check_env_specs(env, break_when_any_done="both")
    names = SPEC.agent_names
    for i, name in enumerate(names):
        assert env.action_spec[name, "action"].shape == (3, 1, SPEC.action_dims[i])
        assert env.observation_spec[name, "observation"].shape == (3, 1, SPEC.obs_dims[i])
    env.set_seed(6)
    direct = _env(wm, 3, horizon=4, seed=6)
    td = env.reset()
    d_obs, _ = direct.reset()
    for name, part in zip(names, SPEC.split_obs(d_obs), strict=True):
        assert torch.equal(td[name, "observation"][:, 0], part)
    joint = _actions(3, 0)
    for name, part in zip(names, SPEC.split_actions(joint), strict=True):
        td[name, "action"] = part[:, None]
    nxt = env.step(td)["next"]
    ref = direct.step(joint)
    for name, part in zip(names, SPEC.split_obs(ref.obs), strict=True):
        assert torch.equal(nxt[name, "observation"][:, 0], part)
        assert torch.equal(nxt[name, "reward"][:, 0, 0], ref.reward)
    with pytest.raises(ValueError, match="group_map: expected 'auto'"):
        TorchRLImaginationEnv(_env(wm, 3, horizon=4), group_map="per_agent")  # type: ignore[arg-type]


def test_torchrl_module_without_torchrl_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "torchrl", None)
    monkeypatch.delitem(sys.modules, "dimalib.imagination.torchrl_env", raising=False)
    with pytest.raises(ImportError, match=r"pip install dimalib\[torchrl\]"):
        importlib.import_module("dimalib.imagination.torchrl_env")


# --------------------------------------------------------------------------- the example
def test_custom_marl_example_runs_with_tiny_arguments() -> None:
    args = [
        "--real-envs",
        "2",
        "--collect-steps",
        "20",
        "--episode-steps",
        "10",
        "--wm-steps",
        "2",
        "--rollouts",
        "4",
        "--horizon",
        "3",
        "--iters",
        "2",
        "--eval-episodes",
        "1",
    ]
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for marker in (
        "[1] collected 40 real transitions",
        "[2] world model step 2",
        "[3] REINFORCE iter 2",
        "[4] real env",
    ):
        assert marker in proc.stdout, proc.stdout
