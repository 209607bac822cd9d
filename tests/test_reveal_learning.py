"""Learning against a known linear system: the cumulative schedule keeps every agent's effect.

Three small denoisers (the paper's sequential schedule, dimalib's cumulative one and the joint
ablation) are trained on the same batches with the same σ/noise draws on
``LinearGaussianSystem.random((2, 3))`` and measured against the noiseless next state.

Measured on 2026-12-01 (Zen 5, 1 thread, ~18 s per model; 550 steps of batch 128, lr 3e-3):
one-step RMSE in state stds sequential 0.367, cumulative 0.145, joint 0.140 (ignoring every
action: 0.442); action-effect ratio (cosine) of agent 0, revealed last in the descending order:
0.10 (0.84) sequential, 0.95 (0.99) cumulative, 0.98 (0.99) joint; agent 1: 0.78 (0.90), 0.90
(0.90), 0.90 (0.90).
"""

from __future__ import annotations

import functools

import torch

from dimalib.envs.linear import LinearGaussianSystem
from dimalib.evaluation import action_effects
from dimalib.world_model.dynamics import (
    DenoiserConfig,
    JointActionDenoiser,
    RevealSchedule,
    SamplerConfig,
    SequentialAgentDenoiser,
)

SYSTEM = LinearGaussianSystem.random((2, 3), seed=0, agent_variance=1.0)
STEPS, BATCH = 550, 128


@functools.cache
def _data() -> dict[str, torch.Tensor]:
    return SYSTEM.windows(20_000, generator=torch.Generator().manual_seed(0))


@functools.cache
def _trained(kind: str) -> SequentialAgentDenoiser:
    torch.manual_seed(0)
    cfg = DenoiserConfig(
        channels=(32, 32),
        depths=(1, 1),
        cond_dim=64,
        action_token_dim=32,
        sampler=SamplerConfig(reveal=RevealSchedule(kind)),
    )  # type: ignore[arg-type]
    model = (JointActionDenoiser if kind == "joint" else SequentialAgentDenoiser)(SYSTEM.spec, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=STEPS)
    data, index = _data(), torch.Generator().manual_seed(1)
    for step in range(STEPS):
        idx = torch.randint(0, data["states"].shape[0], (BATCH,), generator=index)
        batch = {k: data[k][idx] for k in ("states", "actions", "next_state")}
        loss, _ = model.loss(batch, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def _rmse(model: SequentialAgentDenoiser, test: dict[str, torch.Tensor]) -> float:
    pred = model.predict_next_state(
        test["states"], test["actions"], generator=torch.Generator().manual_seed(3)
    )
    err = (pred.double() - test["mean_next_state"].double()) / SYSTEM.state_std
    return float(err.square().mean().sqrt())


def test_cumulative_schedule_learns_every_agents_effect_like_the_joint_model() -> None:
    test = SYSTEM.windows(2000, generator=torch.Generator().manual_seed(2))
    err = {kind: _rmse(_trained(kind), test) for kind in ("sequential", "cumulative", "joint")}
    ignore = test["states"][:, -1].double() @ SYSTEM.A.T - test["mean_next_state"].double()
    ignore_rmse = float((ignore / SYSTEM.state_std).square().mean().sqrt())
    assert err["joint"] < 0.5 * ignore_rmse
    assert err["cumulative"] < 1.3 * err["joint"]
    assert err["sequential"] > 1.8 * err["cumulative"]
    scale = SYSTEM.state_std.float()
    effects = {
        kind: action_effects(
            _trained(kind), test["states"], test["actions"], SYSTEM.mean_next_state, scale=scale
        )
        for kind in ("sequential", "cumulative", "joint")
    }
    # descending order: agent 0 is revealed last; the paper's scheme all but ignores it
    assert effects["sequential"][0].ratio < 0.3
    for cum, joint in zip(effects["cumulative"], effects["joint"], strict=True):
        assert cum.ratio > 0.8 and cum.cosine > 0.85
        assert abs(cum.ratio - joint.ratio) < 0.1 and abs(cum.cosine - joint.cosine) < 0.03
