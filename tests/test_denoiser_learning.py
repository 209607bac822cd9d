"""Permutation invariance of a *trained* denoiser on the analytic environment (paper §3.1 (i)).

A small SequentialAgentDenoiser with the paper's schedule (one agent per step, eq. 9) is trained for a fixed budget (600 steps of batch 128) on exact
transitions of `CoupledPointMasses` with two agents of different action sizes (1 and 3). Its
next-state predictions must be accurate — well below the error of predicting "nothing moves" —
and must depend little on the conditioning order: less than on the start noise, and well below
the error to the true next state.

Measured on 2026-11-25 (AMD EPYC, 1 thread): naive error 0.057, model error 0.022-0.025, spread
across these orders 0.008-0.015, spread across two start noises 0.020-0.021 (interleaving the
agents the other way, (0, 1, 1, 0) against (1, 0, 0, 1), reaches 0.021). The spread does not vanish with more
training (0.009 after 2000 steps) nor with more denoising steps (it grows): with these small
action effects, the noise level at which the conditioning passes from one agent to the other
still hides part of the first agent's effect.
"""

from __future__ import annotations

import functools

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dimalib.envs.toy import CoupledPointMasses
from dimalib.world_model.dynamics import (
    DenoiserConfig,
    RevealSchedule,
    SamplerConfig,
    SequentialAgentDenoiser,
)

ENV = CoupledPointMasses(n_agents=2, action_dims=(1, 3))
# the three orders of paper App. E.2, (2, 2, 1, 1), (1, 1, 2, 2) and (2, 1, 1, 2), in several spellings
ORDERS = ["descending", "ascending", (1, 0, 0, 1), (0, 1), ("agent_1", "agent_0")]


def _windows(batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Three-step histories of the exact dynamics from random positions and velocities."""
    s = ENV.initial_state(batch, generator=generator)
    half = s.shape[1] // 2
    s[:, half:] = torch.randn(batch, half, generator=generator) * 0.5
    states, actions = [s], []
    for _ in range(3):
        a = torch.rand(batch, ENV.spec.joint_action_dim, generator=generator) * 2 - 1
        s, _, _ = ENV.batched_step(s, a)
        states.append(s)
        actions.append(a)
    return {
        "states": torch.stack(states[:3], 1),
        "actions": torch.stack(actions, 1),
        "next_state": states[3],
    }


@functools.cache
def _trained() -> SequentialAgentDenoiser:
    torch.manual_seed(0)
    cfg = DenoiserConfig(channels=(32, 32), depths=(1, 1), cond_dim=64, action_token_dim=32,
                         sampler=SamplerConfig(reveal=RevealSchedule("sequential")))  # fmt: skip
    model = SequentialAgentDenoiser(ENV.spec, cfg)
    steps = 600
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss, _ = model.loss(_windows(128, g), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    return model.eval()


def _predict(model: SequentialAgentDenoiser, test: dict[str, torch.Tensor], order: object,
             seed: int) -> torch.Tensor:  # fmt: skip
    return model.predict_next_state(
        test["states"], test["actions"], order=order,  # type: ignore[arg-type]
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip


@settings(max_examples=6, deadline=None)
@given(
    data_seed=st.integers(0, 2**16),
    orders=st.lists(st.sampled_from(ORDERS), min_size=2, max_size=2, unique=True),
)
def test_trained_predictions_do_not_depend_on_the_conditioning_order(
    data_seed: int, orders: list[object]
) -> None:
    model = _trained()
    test = _windows(400, torch.Generator().manual_seed(data_seed))
    truth = test["next_state"]
    a, b = (_predict(model, test, order, seed=data_seed) for order in orders)  # same noise
    other_noise = _predict(model, test, orders[0], seed=data_seed + 1)
    naive = float((test["states"][:, -1] - truth).abs().mean())  # "nothing moves"
    error = max(float((p - truth).abs().mean()) for p in (a, b))
    order_spread = float((a - b).abs().mean())
    noise_spread = float((a - other_noise).abs().mean())
    assert error < 0.5 * naive
    assert order_spread < 0.7 * error
    assert order_spread < noise_spread
