"""WorldModelTrainer (Table 4 optimisers) and the evaluation metrics (App. E.2)."""

from __future__ import annotations

import pytest
import torch

from dimalib.data import ReplayBuffer
from dimalib.envs.toy import CoupledPointMasses
from dimalib.evaluation import cumulative_l1, open_loop_states, real_segments
from dimalib.training import WorldModelTrainer, WorldModelTrainingConfig
from dimalib.world_model import DIMAWorldModel
from tests.test_imagination import TINY


def test_cumulative_l1_against_hand_computed_values() -> None:
    pred = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [3.0, 3.0]]])  # [B=1, H=3, S=2]
    true = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [3.0, 1.0]]])
    # per-step mean |error| over dims: (1 + 2)/2 = 1.5, (1 + 1)/2 = 1, (0 + 2)/2 = 1
    torch.testing.assert_close(cumulative_l1(pred, true), torch.tensor([1.5, 2.5, 3.5]))
    # with per-dimension scales (1, 2): 1.0, 0.75, 0.5
    scaled = cumulative_l1(pred, true, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(scaled, torch.tensor([1.0, 1.75, 2.25]))
    with pytest.raises(ValueError, match="target: expected shape"):
        cumulative_l1(pred, true[:, :2])


def _toy_buffer(steps: int = 120, episode: int = 30) -> tuple[CoupledPointMasses, ReplayBuffer]:
    env = CoupledPointMasses(n_agents=2, action_dims=(2, 3), max_steps=episode)
    buf = ReplayBuffer(env.spec, capacity=1000)
    g = torch.Generator().manual_seed(0)
    s = env.initial_state(1, generator=g)
    for t in range(steps):
        if t % episode == 0:
            s = env.initial_state(1, generator=g)
        a = torch.rand(1, env.spec.joint_action_dim, generator=g) * 2 - 1
        s2, r, term = env.batched_step(s, a)
        trunc = torch.tensor([t % episode == episode - 1])
        buf.add(s, env.observe(s), a, r, term, trunc & ~term, s2, env.observe(s2))
        s = s2
    return env, buf


def test_real_segments_are_consecutive_steps_of_one_episode() -> None:
    env, buf = _toy_buffer()
    seg = real_segments(buf, 16, context=3, horizon=5, generator=torch.Generator().manual_seed(0))
    assert seg["states"].shape == (16, 8, env.spec.state_dim)
    # every next state follows from the exact dynamics: the window never crosses an episode
    nxt, _, _ = env.batched_step(seg["states"][:, :-1], seg["actions"][:, :-1])
    torch.testing.assert_close(nxt, seg["states"][:, 1:], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no episode segment of 40 steps"):
        real_segments(buf, 4, context=3, horizon=37)


def test_open_loop_equals_feeding_predictions_back_by_hand() -> None:
    env, buf = _toy_buffer()
    wm = DIMAWorldModel(env.spec, TINY).eval()
    seg = real_segments(buf, 4, context=3, horizon=3)
    ctx, actions = seg["states"][:, :3], seg["actions"][:, :5]
    pred = open_loop_states(wm, ctx, actions, 3, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    states = ctx
    for h in range(3):
        nxt = wm.dynamics.predict_next_state(states, actions[:, h : h + 3], generator=g)
        torch.testing.assert_close(pred[:, h], nxt)
        states = torch.cat([states[:, 1:], nxt[:, None]], dim=1)


def test_trainer_uses_table4_optimisers_and_reduces_every_loss() -> None:
    env, buf = _toy_buffer(steps=300)
    torch.manual_seed(0)
    wm = DIMAWorldModel(env.spec, TINY)
    wm.update_normalizer(buf.sample_state_obs(300)["state"])
    trainer = WorldModelTrainer(
        wm, WorldModelTrainingConfig(steps_per_epoch=60, decoder_lr=3e-3, dynamics_lr=2e-3,
                                     reward_lr=2e-3, dynamics_batch=32, reward_batch=16),
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    cfg = WorldModelTrainingConfig()
    assert (cfg.decoder_lr, cfg.dynamics_lr, cfg.reward_lr) == (3e-4, 1e-4, 1e-4)
    assert (cfg.decoder_grad_clip, cfg.dynamics_grad_clip, cfg.reward_grad_clip) == (10, 1, 10)
    assert (cfg.decoder_batch, cfg.dynamics_batch, cfg.reward_batch) == (256, 64, 128)
    opt = trainer.optimizers["dynamics"]
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["weight_decay"] == 0.01
    first = trainer.train_epoch(buf, steps=5)
    trainer.train_epoch(buf)
    last = trainer.train_epoch(buf, steps=20)
    for key in ("decoder/loss", "dynamics/loss", "reward/loss"):
        assert last[key] < first[key], key
    state = trainer.state_dict()
    assert set(state) == {"decoder", "dynamics", "reward"}
    trainer.load_state_dict(state)
    with pytest.raises(ValueError, match="buffer: expected stored transitions"):
        trainer.train_epoch(ReplayBuffer(env.spec, capacity=10))


def _nan_at(wm: DIMAWorldModel, bad_steps: set[int]) -> None:
    """Make the dynamics loss NaN at the given update indices (counted from 0)."""
    original, calls = wm.dynamics_loss, [0]

    def loss(batch):  # type: ignore[no-untyped-def]
        value, info = original(batch)
        step, calls[0] = calls[0], calls[0] + 1
        return (value * float("nan") if step in bad_steps else value), info

    wm.dynamics_loss = loss  # type: ignore[method-assign]


def test_non_finite_updates_are_skipped_exactly_and_counted() -> None:
    env, buf = _toy_buffer(steps=200)
    cfg = WorldModelTrainingConfig(dynamics_batch=16, dynamics_lr=1e-3)

    def make() -> tuple[DIMAWorldModel, WorldModelTrainer]:
        torch.manual_seed(0)
        wm = DIMAWorldModel(env.spec, TINY)
        wm.update_normalizer(
            buf.sample_state_obs(200, generator=torch.Generator().manual_seed(1))["state"]
        )
        return wm, WorldModelTrainer(wm, cfg, generator=torch.Generator().manual_seed(0))  # fmt: skip

    wm_a, trainer_a = make()
    _nan_at(wm_a, {1})
    torch.manual_seed(7)
    metrics = trainer_a.train_dynamics(buf, 3)
    assert metrics["dynamics/skipped_updates"] == 1.0
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    # the same run by hand: update 0, draw (and discard) update 1's batch and noise, update 2
    wm_b, trainer_b = make()
    torch.manual_seed(7)
    trainer_b.train_dynamics(buf, 1)
    wm_b.dynamics_loss(buf.sample_dynamics(16, context=wm_b.context, generator=trainer_b.generator))
    trainer_b.train_dynamics(buf, 1)
    for (name, a), b in zip(wm_a.state_dict().items(), wm_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    opt_a, opt_b = trainer_a.optimizers["dynamics"], trainer_b.optimizers["dynamics"]
    for pa, pb in zip(opt_a.state.values(), opt_b.state.values(), strict=True):
        for key in pa:  # AdamW moments and the step count skip the NaN update
            assert torch.equal(pa[key], pb[key]), key


def test_a_phase_of_only_non_finite_updates_stops_training_and_changes_nothing() -> None:
    from dimalib.training import NonFiniteTrainingError

    env, buf = _toy_buffer(steps=200)
    torch.manual_seed(0)
    wm = DIMAWorldModel(env.spec, TINY)
    trainer = WorldModelTrainer(wm, WorldModelTrainingConfig(dynamics_batch=16))
    trainer.train_dynamics(buf, 1)
    weights = {k: v.clone() for k, v in wm.dynamics.state_dict().items() if "normalizer" not in k}
    moments = {
        k: v.clone() for k, v in trainer.optimizers["dynamics"].state_dict()["state"][0].items()
    }
    _nan_at(wm, {0, 1, 2})
    with pytest.raises(
        NonFiniteTrainingError, match="dynamics: all 3 updates of this epoch had a non-finite"
    ):
        trainer.train_dynamics(buf, 3)
    after = wm.dynamics.state_dict()
    assert all(torch.equal(after[k], v) for k, v in weights.items())
    state = trainer.optimizers["dynamics"].state_dict()["state"][0]
    assert all(torch.equal(state[k], v) for k, v in moments.items())
