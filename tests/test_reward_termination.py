"""Tests of `RewardTerminationGPT`: learning, causality, KV cache, laws and input validation."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dimalib.spec import MultiAgentSpec
from dimalib.world_model import KVCache, RewardTerminationConfig, RewardTerminationGPT

# heterogeneous team: 3 agents with action sizes 2, 3, 1 (A = 6), state size 5
HETERO = MultiAgentSpec(("a", "b", "c"), obs_dims=(4, 6, 3), action_dims=(2, 3, 1), state_dim=5)
TINY = RewardTerminationConfig(
    n_layer=2, n_head=2, n_embd=32, head_hidden=32, max_steps=6, mlp_ratio=2
)


def _model(
    spec: MultiAgentSpec = HETERO,
    config: RewardTerminationConfig = TINY,
    seed: int = 0,
    noise: float = 0.1,
) -> RewardTerminationGPT:
    """A model in eval mode whose weights are perturbed so its outputs are O(0.1-1), not ~0."""
    torch.manual_seed(seed)
    model = RewardTerminationGPT(spec, config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * torch.randn_like(p))
    return model


def _inputs(
    spec: MultiAgentSpec, b: int, t: int, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(b, t, spec.state_dim, generator=g)
    actions = torch.rand(b, t, spec.joint_action_dim, generator=g) * 2 - 1
    return states, actions


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models: one intra-op thread is fastest and robust on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- basics
def test_paper_defaults() -> None:
    cfg = RewardTerminationConfig()
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd) == (6, 4, 256)
    assert (cfg.embd_pdrop, cfg.attn_pdrop, cfg.resid_pdrop) == (0.1, 0.1, 0.1)
    assert cfg.max_steps == 15
    assert not cfg.autocast_bf16


def test_shapes_heterogeneous() -> None:
    model = _model()
    states, actions = _inputs(HETERO, 3, 4)
    reward, logit = model(states, actions)
    assert reward.shape == (3, 4) and logit.shape == (3, 4)
    assert reward.dtype == torch.float32
    _, prob = model.predict(states, actions)
    torch.testing.assert_close(prob, torch.sigmoid(logit))
    assert model.pos_emb.shape[1] == 2 * TINY.max_steps


def test_optimizer_groups_partition_parameters() -> None:
    model = _model()
    groups = model.optimizer_groups(0.01)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    no_decay = {id(p) for p in groups[1]["params"]}
    assert id(model.pos_emb) in no_decay and id(model.agent_emb) in no_decay
    assert id(model.blocks[0].attn.qkv.weight) not in no_decay


# -------------------------------------------------------------------------- learning
def _synthetic_batch(
    spec: MultiAgentSpec, b: int, t: int, g: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """r_t = 0.7 s_t[0] - 0.5 s_t[1] + a_t · w ; γ_t = 1[s_t[2] > 0.8] (a fixed known rule)."""
    states = torch.randn(b, t, spec.state_dim, generator=g)
    actions = torch.rand(b, t, spec.joint_action_dim, generator=g) * 2 - 1
    w_a = torch.linspace(-1.0, 1.0, spec.joint_action_dim)
    rewards = 0.7 * states[..., 0] - 0.5 * states[..., 1] + actions @ w_a
    terminations = states[..., 2] > 0.8
    return states, actions, rewards, terminations


@pytest.mark.parametrize("autocast_bf16", [False, True])
def test_learns_known_reward_and_termination_rule(autocast_bf16: bool) -> None:
    spec = MultiAgentSpec(("a", "b"), obs_dims=(3, 3), action_dims=(2, 3), state_dim=4)
    config = RewardTerminationConfig(
        n_layer=2,
        n_head=2,
        n_embd=64,
        head_hidden=64,
        max_steps=8,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        resid_pdrop=0.0,
        autocast_bf16=autocast_bf16,
    )
    torch.manual_seed(0)
    model = RewardTerminationGPT(spec, config)
    steps = 300
    opt = torch.optim.AdamW(model.optimizer_groups(0.01), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss, _ = model.loss(*_synthetic_batch(spec, 64, 8, g))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)  # Table 4
        opt.step()
        sched.step()
    model.eval()
    states, actions, rewards, terminations = _synthetic_batch(spec, 512, 8, g)
    with torch.no_grad():
        reward, prob = model.predict(states, actions)
    rmse = float((reward - rewards).pow(2).mean().sqrt())
    accuracy = float(((prob > 0.5) == terminations).float().mean())
    # reward std is ~1.3; a model that ignored its inputs would have rmse ~1.3 and accuracy ~0.79
    assert rmse < 0.1 * float(rewards.std()), rmse
    assert accuracy > 0.97, accuracy


# ------------------------------------------------------------------------- causality
@pytest.mark.parametrize("k", [0, 2, 5])
def test_causality(k: int) -> None:
    model = _model()
    states, actions = _inputs(HETERO, 2, 6)
    with torch.no_grad():
        r0, g0 = model(states, actions)
        s2, a2 = states.clone(), actions.clone()
        a2[:, k] += 1.0  # change a_k: outputs < k unchanged, output k changes
        r1, g1 = model(states, a2)
        s2[:, k] += 1.0  # change s_k too
        r2, g2 = model(s2, actions)
    for r, g in ((r1, g1), (r2, g2)):
        torch.testing.assert_close(r[:, :k], r0[:, :k], atol=1e-6, rtol=0)
        torch.testing.assert_close(g[:, :k], g0[:, :k], atol=1e-6, rtol=0)
        assert (r[:, k] - r0[:, k]).abs().max() > 1e-4  # the test can see a change
    # a shorter prefix gives the same predictions as the long sequence
    with torch.no_grad():
        rp, gp = model(states[:, : k + 1], actions[:, : k + 1])
    torch.testing.assert_close(rp, r0[:, : k + 1], atol=1e-6, rtol=0)
    torch.testing.assert_close(gp, g0[:, : k + 1], atol=1e-6, rtol=0)


# -------------------------------------------------------------------------- KV cache
@pytest.mark.parametrize("prime", [0, 1, 3])
def test_kv_cache_matches_forward(prime: int) -> None:
    config = RewardTerminationConfig(n_layer=3, n_head=2, n_embd=32, head_hidden=32, max_steps=6)
    model = _model(config=config)
    states, actions = _inputs(HETERO, 4, 6)
    with torch.inference_mode():
        reward, logit = model(states, actions)
        cache = model.init_cache(4)
        r_parts, p_parts = [], []
        if prime:
            r, p = model.extend(cache, states[:, :prime], actions[:, :prime])
            r_parts.append(r)
            p_parts.append(p)
        for t in range(prime, 6):
            r, p = model.step(cache, states[:, t], actions[:, t])
            r_parts.append(r[:, None])
            p_parts.append(p[:, None])
    assert cache.steps == 6 and cache.length == 12
    assert reward.abs().mean() > 0.05  # outputs are not trivially ~0
    torch.testing.assert_close(torch.cat(r_parts, 1), reward, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat(p_parts, 1), torch.sigmoid(logit), atol=1e-5, rtol=0)


def test_kv_cache_full_raises_and_reset_reuses() -> None:
    model = _model()
    states, actions = _inputs(HETERO, 2, 6)
    with torch.inference_mode():
        cache = model.init_cache(2)
        model.extend(cache, states, actions)  # exactly max_steps: allowed
        with pytest.raises(ValueError, match=r"^state: .*max_steps=6"):
            model.step(cache, states[:, 0], actions[:, 0])
        assert cache.steps == 6  # nothing written
        cache.reset()
        r_a, _ = model.extend(cache, states[:, :2], actions[:, :2])
        cache.reset()
        with pytest.raises(ValueError, match=r"^states: .*max_steps=6"):
            model.extend(cache, *_inputs(HETERO, 2, 7))
        r_b, _ = model.extend(cache, states[:, :2], actions[:, :2])
    torch.testing.assert_close(r_a, r_b, atol=0, rtol=0)


def test_kv_cache_bf16_autocast_close_to_float32() -> None:
    config = RewardTerminationConfig(n_layer=2, n_head=2, n_embd=32, head_hidden=32, max_steps=4)
    model32 = _model(config=config)
    model16 = RewardTerminationGPT(
        HETERO,
        RewardTerminationConfig(
            n_layer=2, n_head=2, n_embd=32, head_hidden=32, max_steps=4, autocast_bf16=True
        ),
    ).eval()
    model16.load_state_dict(model32.state_dict())
    states, actions = _inputs(HETERO, 8, 4)
    with torch.inference_mode():
        ref, _ = model32(states, actions)
        full, _ = model16(states, actions)
        cache = model16.init_cache(8)
        assert cache.keys.dtype == torch.bfloat16
        steps = [model16.step(cache, states[:, t], actions[:, t])[0] for t in range(4)]
        # an outer autocast (reusing bf16 weight copies across steps) gives the same outputs
        cache.reset()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outer = [model16.step(cache, states[:, t], actions[:, t])[0] for t in range(4)]
    assert full.dtype == torch.float32 and outer[0].dtype == torch.float32
    torch.testing.assert_close(torch.stack(outer, 1), torch.stack(steps, 1), atol=1e-6, rtol=0)
    scale = float(ref.abs().max())
    assert float((full - ref).abs().max()) < 0.05 * scale
    assert float((torch.stack(steps, 1) - full).abs().max()) < 0.05 * scale


# ------------------------------------------------------------------------------ laws
@settings(max_examples=15, deadline=None)
@given(order=st.permutations(range(3)), seed=st.integers(0, 2**16))
def test_agent_relabelling_law(order: list[int], seed: int) -> None:
    """Relabelling agents (and their encoders/id embeddings alike) leaves predictions unchanged."""
    model = _model(seed=seed)
    spec_p = HETERO.permuted(order)
    model_p = RewardTerminationGPT(spec_p, TINY).eval()
    sd = dict(model.state_dict())
    sd["action_weight"] = sd["action_weight"][list(order)]
    sd["agent_emb"] = sd["agent_emb"][list(order)]
    model_p.load_state_dict(sd)
    states, actions = _inputs(HETERO, 3, 5, seed=seed)
    parts = HETERO.split_actions(actions)
    actions_p = torch.cat([parts[i] for i in order], dim=-1)
    with torch.no_grad():
        r, g = model(states, actions)
        r_p, g_p = model_p(states, actions_p)
    torch.testing.assert_close(r_p, r, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_p, g, atol=1e-5, rtol=1e-5)


@settings(max_examples=10, deadline=None)
@given(b=st.integers(1, 5), t=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_batched_equals_looped(b: int, t: int, seed: int) -> None:
    model = _model()
    states, actions = _inputs(HETERO, b, t, seed=seed)
    with torch.no_grad():
        r, g = model(states, actions)
        for i in range(b):
            r_i, g_i = model(states[i : i + 1], actions[i : i + 1])
            torch.testing.assert_close(r_i[0], r[i], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(g_i[0], g[i], atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ loss
def test_loss_mask_excludes_positions() -> None:
    model = _model()
    states, actions = _inputs(HETERO, 2, 5)
    rewards = torch.randn(2, 5)
    terms = torch.rand(2, 5) > 0.7
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[:, 3:] = False
    loss, metrics = model.loss(states, actions, rewards, terms, mask)
    rewards2, terms2 = rewards.clone(), terms.clone()
    rewards2[:, 3:] += 100.0
    terms2[:, 3:] = ~terms2[:, 3:]
    loss2, _ = model.loss(states, actions, rewards2, terms2, mask)
    torch.testing.assert_close(loss, loss2)
    # equal to the loss on the unmasked prefix (causal: later steps cannot matter)
    loss3, _ = model.loss(states[:, :3], actions[:, :3], rewards[:, :3], terms[:, :3])
    torch.testing.assert_close(loss, loss3)
    # bool and float targets agree; the loss is SmoothL1 + BCE
    loss4, _ = model.loss(states, actions, rewards, terms.float(), mask)
    torch.testing.assert_close(loss, loss4)
    reward, logit = model(states[:, :3], actions[:, :3])
    expected = torch.nn.functional.smooth_l1_loss(
        reward, rewards[:, :3]
    ) + torch.nn.functional.binary_cross_entropy_with_logits(logit, terms[:, :3].float())
    torch.testing.assert_close(loss, expected)
    assert set(metrics) == {
        "loss",
        "reward_loss",
        "termination_loss",
        "reward_mae",
        "termination_accuracy",
    }
    assert not metrics["loss"].requires_grad


# ------------------------------------------------------------------------ validation
def _bad_calls() -> list[tuple[str, object]]:
    s, a = _inputs(HETERO, 2, 3)
    r, g = torch.zeros(2, 3), torch.zeros(2, 3)
    nan_s = s.clone()
    nan_s[0, 1, 2] = math.nan
    inf_a = a.clone()
    inf_a[1, 0, 0] = math.inf
    return [
        ("states", lambda m: m(s[..., :4], a)),  # wrong state size
        ("actions", lambda m: m(s, torch.zeros(2, 3, 5))),  # an agent's action missing
        ("actions", lambda m: m(s, torch.zeros(2, 3, 6 + 2))),  # one agent too many
        ("actions", lambda m: m(s, a[:1])),  # batch mismatch
        ("actions", lambda m: m(s, a[:, :2])),  # time mismatch
        ("states", lambda m: m(s[0], a[0])),  # missing batch dim
        ("states", lambda m: m(nan_s, a)),
        ("actions", lambda m: m(s, inf_a)),
        ("states", lambda m: m(s.long(), a)),
        ("states", lambda m: m(*_inputs(HETERO, 2, 7))),  # longer than max_steps
        ("states", lambda m: m(s[:, :0], a[:, :0])),  # empty sequence
        ("rewards", lambda m: m.loss(s, a, r[:, :2], g)),
        ("rewards", lambda m: m.loss(s, a, r + math.nan, g)),
        ("terminations", lambda m: m.loss(s, a, r, g + 2.0)),
        ("terminations", lambda m: m.loss(s, a, r, g[None])),
        ("mask", lambda m: m.loss(s, a, r, g, torch.ones(2, 3))),
        ("cache", lambda m: m.extend("cache", s, a)),
        ("state", lambda m: m.step(m.init_cache(3), s[:, 0], a[:, 0])),  # batch vs cache
        ("state", lambda m: m.step(m.init_cache(2), s[:, 0, :4], a[:, 0])),
        ("action", lambda m: m.step(m.init_cache(2), s[:, 0], a[:, 0, :5])),
        ("state", lambda m: m.step(m.init_cache(2), nan_s[:, 1], a[:, 0])),
        ("batch_size", lambda m: m.init_cache(0)),
    ]


@pytest.mark.parametrize(("name", "call"), _bad_calls())
def test_bad_input_raises_value_error_naming_argument(name: str, call: object) -> None:
    model = _model()
    assert callable(call)
    with pytest.raises(ValueError, match=rf"^{name}: expected"), torch.no_grad():
        call(model)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_embd": 30, "n_head": 4}, "n_embd"),
        ({"n_layer": 0}, "n_layer"),
        ({"max_steps": 0}, "max_steps"),
        ({"attn_pdrop": 1.0}, "attn_pdrop"),
    ],
)
def test_bad_config(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        RewardTerminationConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_spec() -> None:
    with pytest.raises(ValueError, match=r"^spec: expected"):
        RewardTerminationGPT("spec", TINY)  # type: ignore[arg-type]


def test_cache_type() -> None:
    cache = _model().init_cache(2)
    assert isinstance(cache, KVCache)
    assert cache.keys.shape == (2, 2, 2, 12, 16)
    assert cache.capacity == 12 and cache.batch_size == 2 and cache.steps == 0


def test_unchecked_step_equals_the_checked_one() -> None:
    """``step(check_inputs=False)`` (imagination's path) is the same computation, unchecked."""
    spec = MultiAgentSpec(("a", "b"), (3, 3), (2, 1), state_dim=5)
    gpt = RewardTerminationGPT(
        spec, RewardTerminationConfig(n_layer=2, n_head=2, n_embd=16, max_steps=4)
    ).eval()
    g = torch.Generator().manual_seed(0)
    s, a = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 3, generator=g)
    checked, unchecked = gpt.init_cache(3), gpt.init_cache(3)
    with torch.no_grad():
        for t in range(4):
            r1, p1 = gpt.step(checked, s[:, t], a[:, t])
            r2, p2 = gpt.step(unchecked, s[:, t], a[:, t], check_inputs=False)
            torch.testing.assert_close(r2, r1, rtol=0, atol=0)
            torch.testing.assert_close(p2, p1, rtol=0, atol=0)
        with pytest.raises(ValueError, match="max_steps=4"):
            gpt.step(unchecked, s[:, 0], a[:, 0], check_inputs=False)


def test_restarting_one_row_equals_a_fresh_cache() -> None:
    """After ``reset_rows``, a row's predictions are those of a new sequence of its own steps."""
    spec = MultiAgentSpec(("a", "b"), (3, 3), (2, 1), state_dim=5)
    cfg = RewardTerminationConfig(n_layer=2, n_head=2, n_embd=16, max_steps=6)
    gpt = RewardTerminationGPT(spec, cfg).eval()
    g = torch.Generator().manual_seed(3)
    s, a = torch.randn(3, 6, 5, generator=g), torch.randn(3, 6, 3, generator=g)
    cache = gpt.init_cache(3)
    restart_after = 2  # row 1 starts a new sequence at step 2; rows 0 and 2 continue
    got_r, got_p = [], []
    with torch.no_grad():
        for t in range(6):
            if t == restart_after:
                cache.reset_rows(torch.tensor([False, True, False]))
            r, p = gpt.step(cache, s[:, t], a[:, t], check_inputs=t % 2 == 0)
            got_r.append(r)
            got_p.append(p)
        full_r, full_p = gpt.predict(s, a)  # no restart: rows 0 and 2
        new_r, new_p = gpt.predict(s[1:2, restart_after:], a[1:2, restart_after:])
    got_r_t, got_p_t = torch.stack(got_r, 1), torch.stack(got_p, 1)
    for row in (0, 2):
        torch.testing.assert_close(got_r_t[row], full_r[row], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got_p_t[row], full_p[row], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        got_r_t[1, :restart_after], full_r[1, :restart_after], rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(got_r_t[1, restart_after:], new_r[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_p_t[1, restart_after:], new_p[0], rtol=1e-5, atol=1e-5)
    cache.reset()
    assert cache.row_start is None and cache.length == 0
