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
