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
