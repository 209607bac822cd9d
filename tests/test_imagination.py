"""DIMAWorldModel and ImaginationEnv: equivalence with hand-made calls, rules, errors, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dimalib import MultiAgentSpec
from dimalib.data.buffer import ReplayBuffer
from dimalib.imagination import ImaginationConfig, ImaginationEnv
from dimalib.world_model import (
    DIMAWorldModel,
    RewardTerminationConfig,
    StateDecoderConfig,
    WorldModelConfig,
)
from dimalib.world_model.dynamics import DenoiserConfig

SPEC = MultiAgentSpec(("left", "right"), (4, 5), (2, 3), state_dim=6)
TINY = WorldModelConfig(
    dynamics=DenoiserConfig(channels=(32, 32), depths=(1, 1), cond_dim=64, action_token_dim=32),
    reward=RewardTerminationConfig(n_layer=2, n_head=2, n_embd=32, head_hidden=32, max_steps=5),
    decoder=StateDecoderConfig(hidden_dim=32),
)


@torch.no_grad()
def _world_model(seed: int = 0, conditioning: str = "sequential") -> DIMAWorldModel:
    torch.manual_seed(seed)
    cfg = WorldModelConfig(
        dynamics=TINY.dynamics,
        reward=TINY.reward,
        decoder=TINY.decoder,
        conditioning=conditioning,  # type: ignore[arg-type]
    )
    wm = DIMAWorldModel(SPEC, cfg)
    g = torch.Generator().manual_seed(seed)
    for p in wm.parameters():  # zero-initialised output layers would hide the dynamics
        p.add_(torch.randn(p.shape, generator=g) * 0.05)
    wm.update_normalizer(torch.randn(200, SPEC.state_dim) * 2 + 1)
    return wm.eval()


def _context(B: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, 3, dtype=torch.bool)
    mask[0, 0] = False
    return {
        "states": torch.randn(B, 3, SPEC.state_dim, generator=g),
        "actions": torch.rand(B, 2, SPEC.joint_action_dim, generator=g) * 2 - 1,
        "mask": mask,
        "obs": torch.randn(B, SPEC.joint_obs_dim, generator=g),
    }


def _buffer(n_rows: int = 40) -> ReplayBuffer:
    buf = ReplayBuffer(SPEC, capacity=100)
    g = torch.Generator().manual_seed(1)
    for t in range(n_rows):
        buf.add(
            torch.randn(1, 6, generator=g),
            torch.randn(1, 9, generator=g),
            torch.rand(1, 5, generator=g) * 2 - 1,
            torch.randn(1, generator=g),
            torch.zeros(1, dtype=torch.bool),
            torch.tensor([t % 10 == 9]),
            torch.randn(1, 6, generator=g),
            torch.randn(1, 9, generator=g),
        )
    return buf


def test_one_imagined_step_equals_the_calls_made_by_hand() -> None:
    wm = _world_model()
    ctx = _context(8)
    env = ImaginationEnv(
        wm, ctx, ImaginationConfig(num_envs=8, horizon=5, order="ascending"), seed=3
    )
    obs0, state0 = env.reset()
    assert torch.equal(obs0, ctx["obs"]) and torch.equal(state0, ctx["states"][:, -1])
    action = torch.rand(8, 5, generator=torch.Generator().manual_seed(9)) * 2 - 1
    out = env.step(action)

    # by hand: the sampler with the same seed and order, the GPT from an empty cache, the decoder
    g = torch.Generator().manual_seed(3)
    actions = torch.cat([ctx["actions"], action[:, None]], dim=1)
    next_state = wm.dynamics.predict_next_state(
        ctx["states"], actions, ctx["mask"], order="ascending", generator=g
    )
    with torch.no_grad():
        reward, prob = wm.reward_model.predict(
            wm.normalize_state(ctx["states"][:, -1:]), action[:, None]
        )
        obs = wm.decoder.decode_joint(wm.normalize_state(next_state))
    torch.testing.assert_close(out.state, next_state)
    torch.testing.assert_close(out.reward, reward[:, 0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.termination_prob, prob[:, 0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.obs, obs)
    assert out.state.requires_grad is False and not out.state.is_inference()


def test_configured_order_reaches_the_sampler() -> None:
    wm = _world_model()
    seen: list[object] = []
    original = wm.dynamics.sampler.schedule

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("order"))
        return original(*args, **kwargs)

    wm.dynamics.sampler.schedule = spy  # type: ignore[method-assign]
    env = ImaginationEnv(
        wm, _context(4), ImaginationConfig(num_envs=4, horizon=3, order=("right", "left"))
    )
    env.reset()
    env.step(torch.zeros(4, 5))
    env.step(torch.zeros(4, 5), order="random")
    assert seen == [("right", "left"), "random"]
    # and the order changes the prediction
    cfg_a = ImaginationConfig(num_envs=4, horizon=2, order="ascending")
    cfg_b = ImaginationConfig(num_envs=4, horizon=2, order="descending")
    a = ImaginationEnv(wm, _context(4), cfg_a, seed=0)
    b = ImaginationEnv(wm, _context(4), cfg_b, seed=0)
    a.reset(), b.reset()
    act = torch.rand(4, 5) * 2 - 1
    assert not torch.allclose(a.step(act).state, b.step(act).state)


def test_rollout_shapes_truncation_and_context_shift() -> None:
    wm = _world_model()
    env = ImaginationEnv(wm, _buffer(), ImaginationConfig(num_envs=7, horizon=4), seed=0)
    obs, state = env.reset()
    assert obs.shape == (7, 9) and state.shape == (7, 6)
    for t in range(4):
        out = env.step(torch.rand(7, 5) * 2 - 1)
        assert out.obs.shape == (7, 9) and out.state.shape == (7, 6)
        assert out.reward.shape == out.terminated.shape == out.truncated.shape == (7,)
        assert bool(out.truncated.all()) == (t == 3)
        torch.testing.assert_close(env._states[:, -1], out.state)  # the context moved on
    with pytest.raises(ValueError, match="horizon"):
        env.step(torch.zeros(7, 5))
    env.reset()
    assert env.t == 0


def test_reproducible_under_a_seed_and_different_across_seeds() -> None:
    wm = _world_model()

    def rollout(seed: int) -> torch.Tensor:
        env = ImaginationEnv(wm, _buffer(), ImaginationConfig(num_envs=5, horizon=3), seed=seed)
        env.reset()
        return torch.stack([env.step(torch.full((5, 5), 0.3)).state for _ in range(3)])

    assert torch.equal(rollout(1), rollout(1))
    assert not torch.equal(rollout(1), rollout(2))


def test_termination_is_sticky_and_zeroes_later_rewards() -> None:
    wm = _world_model()
    with torch.no_grad():  # a termination head that fires on the first step only
        last = wm.reward_model.termination_head[-1]
        last.weight.zero_()
        last.bias.fill_(10.0)
    env = ImaginationEnv(wm, _context(3), ImaginationConfig(num_envs=3, horizon=3), seed=0)
    env.reset()
    first = env.step(torch.zeros(3, 5))
    assert bool(first.terminated.all()) and float(first.reward.abs().sum()) > 0
    with torch.no_grad():
        last.bias.fill_(-10.0)
    second = env.step(torch.zeros(3, 5))
    assert bool(second.terminated.all())  # sticky
    assert float(second.termination_prob.max()) < 0.01
    assert torch.equal(second.reward, torch.zeros(3))


def test_saved_and_reloaded_world_model_gives_identical_rollouts(tmp_path: Path) -> None:
    wm = _world_model(conditioning="joint")
    path = wm.save(tmp_path / "wm.pt")
    again = DIMAWorldModel.load(path)
    assert again.config == wm.config and again.spec == wm.spec

    def rollout(model: DIMAWorldModel) -> list[torch.Tensor]:
        env = ImaginationEnv(model, _context(6), ImaginationConfig(num_envs=6, horizon=3), seed=4)
        env.reset()
        return [
            torch.cat([o.state, o.obs, o.reward[:, None]], 1)
            for o in (env.step(torch.full((6, 5), v)) for v in (0.1, -0.2, 0.5))
        ]

    for x, y in zip(rollout(wm), rollout(again), strict=True):
        assert torch.equal(x, y)


def test_load_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable dimalib file"):
        DIMAWorldModel.load(bad)
    _buffer().save(tmp_path / "buf.pt")
    with pytest.raises(ValueError, match="expected a dimalib 'dima_world_model' file"):
        DIMAWorldModel.load(tmp_path / "buf.pt")


def test_bad_actions_and_missing_context() -> None:
    wm = _world_model()
    env = ImaginationEnv(wm, None, ImaginationConfig(num_envs=2, horizon=2))
    with pytest.raises(ValueError, match="source: no start context"):
        env.reset()
    with pytest.raises(ValueError, match="step: call reset"):
        env.step(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"source\['states'\]: expected shape \(2, 3, 6\)"):
        env.reset({"states": torch.zeros(2, 2, 6), "actions": torch.zeros(2, 2, 5)})
    env.reset(_context(2))
    with pytest.raises(
        ValueError, match=r"joint_action: expected shape \(2, 5\), received \(2, 4\)"
    ):
        env.step(torch.zeros(2, 4))
    with pytest.raises(
        ValueError, match=r"joint_action: expected shape \(2, 5\), received \(3, 5\)"
    ):
        env.step(torch.zeros(3, 5))
    # default: NaN detected on the device, reported with its step when the rollout ends
    env.step(torch.full((2, 5), float("nan")))
    with pytest.raises(ValueError, match=r"joint_action: expected finite values.* at step 0"):
        env.step(torch.zeros(2, 5))
    env.reset(_context(2))
    env.step(torch.zeros(2, 5))
    later = torch.zeros(2, 5)
    later[1, 3] = float("inf")
    with pytest.raises(ValueError, match="at step 1 of this rollout"):
        env.step(later)

    strict = ImaginationEnv(
        wm,
        _context(2),
        ImaginationConfig(num_envs=2, horizon=2, check_actions="step", out_of_bounds="error"),
    )
    strict.reset()
    with pytest.raises(ValueError, match="joint_action: expected finite values"):
        strict.step(torch.full((2, 5), float("inf")))
    with pytest.raises(ValueError, match=r"joint_action: expected values within the spec's bounds"):
        strict.step(torch.full((2, 5), 1.5))


def test_out_of_bound_actions_are_clipped_by_default() -> None:
    wm = _world_model()
    a = ImaginationEnv(wm, _context(2), ImaginationConfig(num_envs=2, horizon=2), seed=0)
    b = ImaginationEnv(wm, _context(2), ImaginationConfig(num_envs=2, horizon=2), seed=0)
    a.reset(), b.reset()
    torch.testing.assert_close(
        a.step(torch.full((2, 5), 7.0)).state, b.step(torch.full((2, 5), 1.0)).state
    )


def test_world_model_losses_on_buffer_batches() -> None:
    wm = _world_model().train()
    buf = _buffer()
    for name, batch in (
        ("dynamics", buf.sample_dynamics(8)),
        ("reward", buf.sample_sequences(4, length=5)),
        ("decoder", buf.sample_state_obs(8)),
    ):
        loss, metrics = getattr(wm, f"{name}_loss")(batch)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        assert metrics
    with pytest.raises(ValueError, match=r"batch: missing key\(s\) \['obs'\]"):
        wm.decoder_loss({"state": torch.zeros(2, 6)})
    with pytest.raises(ValueError, match="conditioning"):
        WorldModelConfig(conditioning="flat")  # type: ignore[arg-type]


def test_disagreement_penalty_subtracts_the_spread_of_a_second_sample() -> None:
    wm = _world_model()
    ctx = _context(6)
    action = torch.rand(6, 5, generator=torch.Generator().manual_seed(4)) * 2 - 1
    plain = ImaginationEnv(wm, ctx, ImaginationConfig(num_envs=6, horizon=3), seed=5)
    pess = ImaginationEnv(
        wm, ctx, ImaginationConfig(num_envs=6, horizon=3, disagreement_penalty=0.5), seed=5
    )
    plain.reset(), pess.reset()
    for _ in range(3):
        a, b = plain.step(action), pess.step(action)
        torch.testing.assert_close(a.state, b.state, rtol=0, atol=0)  # same main sample
        assert plain.last_disagreement is None and pess.last_disagreement is not None
        d = pess.last_disagreement
        assert bool((d > 0).all()) and bool(torch.isfinite(d).all())
        torch.testing.assert_close(b.reward, a.reward - 0.5 * d)
    # the spread by hand: the RMS in state stds between two samples of the same step
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    acts = torch.cat([ctx["actions"], action[:, None]], dim=1)
    s1, s2 = (
        wm.dynamics.predict_next_state(ctx["states"], acts, ctx["mask"], generator=g)
        for g in (g1, g2)
    )
    std = wm.dynamics.normalizer.std.float()
    spread = ((s1 - s2) / std).square().mean(dim=1).sqrt()
    env = ImaginationEnv(
        wm, ctx, ImaginationConfig(num_envs=6, horizon=3, disagreement_penalty=1.0), seed=5
    )
    env.reset()
    env._generators[("", torch.device("cpu"))] = torch.Generator().manual_seed(1)
    env._generators[("disagreement", torch.device("cpu"))] = torch.Generator().manual_seed(2)
    env.step(action)
    assert env.last_disagreement is not None
    torch.testing.assert_close(env.last_disagreement, spread)
    with pytest.raises(ValueError, match="disagreement_penalty"):
        ImaginationConfig(disagreement_penalty=-1.0)


def test_recent_starts_draw_that_fraction_from_the_newest_rows() -> None:
    """``recent_starts = ρ``: the last round(ρ·B) starts are among the buffer's
    ``recent_window`` newest states, the others uniform over all rows."""
    buf = _buffer(40)
    rows = buf.stream_data(0)["state"]  # (40, S), oldest first
    newest = rows[-5:]

    def starts(rho: float, seed: int) -> torch.Tensor:
        cfg = ImaginationConfig(num_envs=8, horizon=3, recent_starts=rho, recent_window=5)
        _, state = ImaginationEnv(_world_model(), buf, cfg, seed=seed).reset()
        return state  # (8, S)

    def in_newest(state: torch.Tensor) -> torch.Tensor:
        return (state[:, None] == newest[None]).all(-1).any(-1)  # (B,)

    assert in_newest(starts(1.0, 0)).all()
    old = torch.zeros(4, dtype=torch.bool)
    for seed in range(5):
        half = starts(0.5, seed)
        assert in_newest(half[4:]).all()
        old |= ~in_newest(half[:4])
    assert old.any()  # the uniform half reaches older rows (35 of 40 are older)
    for field, bad in (("recent_starts", 1.5), ("recent_starts", True), ("recent_window", 0)):
        with pytest.raises(ValueError, match=field):
            ImaginationConfig(**{field: bad})  # type: ignore[arg-type]
