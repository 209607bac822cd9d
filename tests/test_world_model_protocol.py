"""The world-model protocols: a user's model drives imagination; old module paths still work."""

from __future__ import annotations

import pickle

import pytest
import torch

from dimalib import ImaginationEnv
from dimalib.imagination.env import ImaginationConfig
from dimalib.spec import MultiAgentSpec
from dimalib.world_model import (
    DIMAWorldModel,
    DynamicsModel,
    ProbabilisticEnsemble,
    WorldModel,
    WorldModelConfig,
)
from dimalib.world_model.dynamics import DenoiserConfig, SequentialAgentDenoiser


class _Counter:
    """A rollout memory that only counts steps (the linear model's reward needs no history)."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.steps = 0

    def reset(self) -> None:
        self.steps = 0


class LinearWorldModel:
    """``s' = F s + G a``, ``r = c·s + d·a``, ``o = H s``: a world model with no network."""

    def __init__(self, spec: MultiAgentSpec, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        S, A, n_obs = spec.state_dim, spec.joint_action_dim, spec.joint_obs_dim
        self.spec = spec
        self.F = 0.9 * torch.linalg.qr(torch.randn(S, S, generator=g))[0]
        self.G = torch.randn(S, A, generator=g)
        self.c, self.d = torch.randn(S, generator=g), torch.randn(A, generator=g)
        self.H = torch.randn(n_obs, S, generator=g)
        self.calls = 0

    context = 2
    max_rollout_steps = 50
    device = torch.device("cpu")

    @property
    def state_std(self) -> torch.Tensor:
        return torch.ones(self.spec.state_dim)

    def eval(self) -> LinearWorldModel:
        return self

    def predict_next_state(self, states, actions, mask=None, **_: object) -> torch.Tensor:  # type: ignore[no-untyped-def]
        self.calls += 1
        return states[:, -1] @ self.F.T + actions[:, -1] @ self.G.T

    def init_rollout(self, batch_size: int) -> _Counter:
        return _Counter(batch_size)

    def predict_reward(self, cache, state, action, *, check_inputs=True):  # type: ignore[no-untyped-def]
        cache.steps += 1
        reward = state @ self.c + action @ self.d
        return reward, torch.full_like(reward, 0.1 * cache.steps)

    def decode(self, state: torch.Tensor, *, check_inputs: bool = True) -> torch.Tensor:
        return state @ self.H.T


SPEC = MultiAgentSpec(("a", "b"), obs_dims=(3, 2), action_dims=(1, 2), state_dim=4)


def test_a_user_world_model_drives_imagination_exactly() -> None:
    wm = LinearWorldModel(SPEC)
    assert isinstance(wm, WorldModel) and isinstance(wm, DynamicsModel)
    B, H = 5, 8
    g = torch.Generator().manual_seed(1)
    ctx = {
        "states": torch.randn(B, 2, 4, generator=g),
        "actions": torch.rand(B, 1, 3, generator=g) * 2 - 1,
    }
    env = ImaginationEnv(
        wm, ctx, ImaginationConfig(num_envs=B, horizon=H, termination_threshold=0.45)
    )
    obs, state = env.reset()
    torch.testing.assert_close(obs, state @ wm.H.T)  # no obs given: decoded from s_t
    s = ctx["states"][:, -1]
    terminated_at = None
    for t in range(H):
        a = torch.rand(B, 3, generator=g) * 2 - 1
        out = env.step(a)
        expected_next = s @ wm.F.T + a @ wm.G.T
        torch.testing.assert_close(out.state, expected_next, rtol=0, atol=1e-6)
        torch.testing.assert_close(out.obs, expected_next @ wm.H.T, rtol=1e-6, atol=1e-5)
        prob = 0.1 * (t + 1)
        expected_reward = (s @ wm.c + a @ wm.d) if prob <= 0.45 or t == 4 else torch.zeros(B)
        if terminated_at is not None:
            expected_reward = torch.zeros(B)
        torch.testing.assert_close(out.reward, expected_reward, rtol=1e-6, atol=1e-6)
        assert bool(out.terminated.all()) == (prob > 0.45)
        if prob > 0.45 and terminated_at is None:
            terminated_at = t
        s = expected_next
    assert terminated_at == 4 and wm.calls == H


def test_builtin_models_satisfy_the_protocols() -> None:
    wm = DIMAWorldModel(SPEC, WorldModelConfig())
    assert isinstance(wm, WorldModel)
    assert isinstance(wm.dynamics, DynamicsModel)
    assert isinstance(ProbabilisticEnsemble(SPEC), DynamicsModel)
    assert wm.max_rollout_steps == wm.config.reward.max_steps
    assert wm.device == torch.device("cpu")


def test_imagination_refuses_a_non_world_model() -> None:
    with pytest.raises(ValueError, match="world_model: expected a WorldModel"):
        ImaginationEnv(SequentialAgentDenoiser(SPEC), None)  # type: ignore[arg-type]


def test_old_module_paths_are_the_new_modules() -> None:
    import dimalib.data.normalizer as old_norm
    import dimalib.diffusion.denoiser as old_den
    import dimalib.models.state_decoder as old_dec

    import dimalib.world_model.decoder as new_dec
    import dimalib.world_model.dynamics.denoiser as new_den
    import dimalib.world_model.normalizer as new_norm

    assert old_den is new_den and old_dec is new_dec and old_norm is new_norm


def test_configs_pickled_under_the_old_paths_load() -> None:
    """Checkpoints written before the move name ``dimalib.diffusion.denoiser.DenoiserConfig``."""
    cfg = DenoiserConfig(context=2)
    blob = pickle.dumps(cfg, protocol=0)
    assert b"dimalib.world_model.dynamics.denoiser" in blob
    old = blob.replace(b"dimalib.world_model.dynamics.denoiser", b"dimalib.diffusion.denoiser")
    assert pickle.loads(old) == cfg
    wm_blob = pickle.dumps(WorldModelConfig(), protocol=0)
    old_wm = wm_blob.replace(b"dimalib.world_model.aggregate", b"dimalib.world_model")
    assert pickle.loads(old_wm) == WorldModelConfig()


class _RowCounter:
    """Per-rollout step counters: the memory of a scripted reward model."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.count = torch.zeros(batch_size, dtype=torch.long)

    def reset(self) -> None:
        self.count.zero_()

    def reset_rows(self, rows: torch.Tensor) -> None:
        self.count[rows] = 0


class ScriptedEpisodes(LinearWorldModel):
    """Row ``b`` terminates after ``lengths[b]`` steps of its episode; the reward at the episode's
    ``j``-th step is ``j`` (so an episode of length ``k`` returns ``k (k + 1) / 2``)."""

    def __init__(self, spec: MultiAgentSpec, lengths: list[int]) -> None:
        super().__init__(spec)
        self.lengths = torch.tensor(lengths)

    def init_rollout(self, batch_size: int) -> _RowCounter:  # type: ignore[override]
        return _RowCounter(batch_size)

    def predict_reward(self, cache, state, action, *, check_inputs=True):  # type: ignore[no-untyped-def, override]
        cache.count += 1
        return cache.count.float(), (cache.count == self.lengths).float()


def test_autoreset_episodes_count_right_in_record_episode_statistics() -> None:
    """Gymnasium's RecordEpisodeStatistics on the vector view, early terminations included,
    against the episodes worked out by hand (horizon 10, episode lengths 3, 4, never, 2)."""
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    from dimalib.imagination.adapters import VectorImaginationEnv

    B, H = 4, 10
    wm = ScriptedEpisodes(SPEC, [3, 4, 99, 2])
    g = torch.Generator().manual_seed(0)
    ctx = {"states": torch.randn(B, 2, 4, generator=g), "actions": torch.zeros(B, 1, 3)}
    cfg = ImaginationConfig(num_envs=B, horizon=H, autoreset=True)
    venv = RecordEpisodeStatistics(VectorImaginationEnv(ImaginationEnv(wm, ctx, cfg)))
    venv.reset(seed=0)
    restarted, truncated_at_h = [], None
    for t in range(H):
        _, _, _, trunc, info = venv.step(venv.action_space.sample())
        restarted.append(info["active"] == 0)
        if t == H - 1:
            truncated_at_h = trunc
    # by hand: row 0: 1-3 | restart 4 | 5-7 | restart 8 | 9-10 truncated -> returns 6, 6, 3
    #          row 1: 1-4 | restart 5 | 6-9 | restart 10 (not truncated) -> 10, 10
    #          row 2: 1-10 truncated -> 55;  row 3: 1-2 | 3 | 4-5 | 6 | 7-8 | 9 | 10 -> 3, 3, 3, 1
    assert sorted(venv.return_queue) == sorted([6, 6, 3, 10, 10, 55, 3, 3, 3, 1])
    assert sorted(venv.length_queue) == sorted([3, 3, 2, 4, 4, 10, 2, 2, 2, 1])
    assert venv.episode_count == 10
    assert truncated_at_h.tolist() == [True, False, True, True]
    # the restart steps of row 3 (0-based steps 2, 5, 8) report no live transition
    row3 = [bool(r[3]) for r in restarted]
    assert row3 == [False, False, True, False, False, True, False, False, True, False]


def test_autoreset_restarts_a_dima_world_model_from_fresh_contexts() -> None:
    """Through the real DIMAWorldModel: restarted rows return their pool start state exactly and
    terminations are not sticky."""
    from dimalib.data.buffer import ReplayBuffer

    torch.manual_seed(0)
    spec = SPEC
    wm = DIMAWorldModel(spec, WorldModelConfig())
    buf = ReplayBuffer(spec, 256, num_streams=1)
    g = torch.Generator().manual_seed(1)
    states = torch.randn(65, 4, generator=g)
    for t in range(64):
        buf.add(
            state=states[t : t + 1],
            obs=torch.randn(1, 5, generator=g),
            action=torch.rand(1, 3, generator=g) * 2 - 1,
            reward=torch.zeros(1),
            terminated=torch.zeros(1, dtype=torch.bool),
            truncated=torch.tensor([t == 63]),
            next_state=states[t + 1 : t + 2],
            next_obs=torch.randn(1, 5, generator=g),
        )
    # threshold 1e-3: the untrained termination head (p ~ 0.5) ends every episode at once
    cfg = ImaginationConfig(num_envs=6, horizon=6, termination_threshold=1e-3, autoreset=True)
    env = ImaginationEnv(wm, buf, cfg, seed=0)
    env.reset()
    pattern = []
    for _ in range(6):
        out = env.step(torch.zeros(6, 3))
        pattern.append(bool(env.restarted.all()))
        if env.restarted.all():
            assert float(out.reward.abs().max()) == 0.0 and not bool(out.terminated.any())
            # a fresh start: every row is a real state of the buffer, exactly
            assert bool((out.state[:, None, :] == states[None]).all(-1).any(1).all())
        else:
            assert bool(out.terminated.all())
    assert pattern == [False, True, False, True, False, True]


def test_autoreset_episodes_count_right_in_torchrl_reward_sum() -> None:
    """TorchRL's RewardSum over rollout(..., break_when_any_done=False), which partially resets
    done rollouts at once: episodes worked out by hand (horizon 10, lengths 3, 4, never, 2)."""
    pytest.importorskip("torchrl")
    from torchrl.envs import RewardSum, TransformedEnv

    from dimalib.imagination.torchrl_env import TorchRLImaginationEnv

    B, H = 4, 10
    wm = ScriptedEpisodes(SPEC, [3, 4, 99, 2])
    g = torch.Generator().manual_seed(0)
    ctx = {"states": torch.randn(B, 2, 4, generator=g), "actions": torch.zeros(B, 1, 3)}
    cfg = ImaginationConfig(num_envs=B, horizon=H, autoreset=True)
    view = TorchRLImaginationEnv(ImaginationEnv(wm, ctx, cfg), group_map="all_in_one")
    env = TransformedEnv(
        view, RewardSum(in_keys=[("agents", "reward")], out_keys=[("agents", "episode_reward")])
    )
    td = env.rollout(H, break_when_any_done=False)  # (B, H)
    done = td["next", "done"].squeeze(-1)  # (B, H)
    ep = td["next", "agents", "episode_reward"][:, :, 0, 0]  # (B, H), agent 0 (all share it)
    returns = [sorted(ep[b][done[b]].tolist()) for b in range(B)]
    # by hand, restarting at once: row 0: 1-3 | 4-6 | 7-9 | 10 -> 6, 6, 6, 1
    #   row 1: 1-4 | 5-8 | 9-10 -> 10, 10, 3;  row 2: 55;  row 3: five episodes of 2 -> 3 each
    assert returns == [[1, 6, 6, 6], [3, 10, 10], [55], [3, 3, 3, 3, 3]]
    assert int(done.sum()) == 13


def test_the_mbpo_ensemble_drives_imagination_through_a_composed_world_model() -> None:
    """MBPO dynamics with DIMA's reward model and decoder: the imagined states are exactly the
    ensemble's mean predictions, the rewards the GPT's on the normalised states."""
    from dimalib.world_model import ComposedWorldModel, EnsembleConfig

    torch.manual_seed(0)
    dima = DIMAWorldModel(SPEC, WorldModelConfig()).eval()
    ensemble = ProbabilisticEnsemble(SPEC, EnsembleConfig(members=3, hidden_dim=16)).eval()
    wm = ComposedWorldModel(ensemble, dima.reward_model, dima.decoder, dima.normalizer)
    assert isinstance(wm, WorldModel) and wm.context == 1
    B = 4
    g = torch.Generator().manual_seed(5)
    ctx = {"states": torch.randn(B, 1, 4, generator=g), "actions": torch.zeros(B, 0, 3)}
    env = ImaginationEnv(wm, ctx, ImaginationConfig(num_envs=B, horizon=3))
    _, s = env.reset()
    cache = dima.reward_model.init_cache(B)
    ended = torch.zeros(B, dtype=torch.bool)  # sticky terminations (the default rule)
    for _ in range(3):
        a = torch.rand(B, 3, generator=g) * 2 - 1
        out = env.step(a)
        with torch.inference_mode():
            expected = ensemble.predict_next_state(s[:, None], a[:, None])
            r, p = dima.reward_model.step(cache, dima.normalizer.normalize(s), a)
        torch.testing.assert_close(out.state, expected, rtol=0, atol=0)
        torch.testing.assert_close(out.termination_prob, p, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(out.reward, torch.where(ended, 0.0, r), rtol=1e-6, atol=1e-6)
        ended |= p > 0.5
        s = out.state
    with pytest.raises(ValueError, match="reward_model: expected the dynamics model's spec"):
        other = MultiAgentSpec(("x",), (2,), (1,), state_dim=4)
        ComposedWorldModel(
            ensemble, DIMAWorldModel(other).reward_model, dima.decoder, dima.normalizer
        )


def test_autoreset_in_the_harl_view_restarts_within_the_same_step() -> None:
    """HARL's same-step rule: the step that terminates a rollout returns its fresh start
    observation (the last one in ``original_obs``) and the next step begins a new episode."""
    from dimalib.imagination.adapters import HARLImaginationEnv

    B, H = 2, 6
    wm = ScriptedEpisodes(SPEC, [2, 99])
    g = torch.Generator().manual_seed(0)
    ctx = {"states": torch.randn(B, 2, 4, generator=g), "actions": torch.zeros(B, 1, 3)}
    view = HARLImaginationEnv(
        ImaginationEnv(wm, ctx, ImaginationConfig(num_envs=B, horizon=H, autoreset=True))
    )
    obs0, _, _ = view.reset()
    rewards, dones = [], []
    for _ in range(4):
        obs, _share, rew, done, infos, _ = view.step(torch.zeros(B, 2, 2).numpy())
        rewards.append(rew[:, 0, 0].tolist())
        dones.append(done[:, 0].tolist())
        if done[0, 0]:  # row 0 ended: the returned observation is its start again
            assert (obs[0] == obs0[0]).all() and "original_obs" in infos[0][0]
            assert "original_obs" not in infos[1][0]
    # row 0: episodes of 2 steps back to back (rewards 1, 2 | 1, 2); row 1 runs on
    assert rewards == [[1, 1], [2, 2], [1, 3], [2, 4]]
    assert dones == [[False, False], [True, False], [False, False], [True, False]]
