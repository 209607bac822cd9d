"""dimalib.utils.dropout: F.dropout's distribution and gradient with a cheaper CPU mask."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dimalib.spec import MultiAgentSpec
from dimalib.utils.dropout import Dropout, dropout, set_fast_mask, uses_fast_mask
from dimalib.world_model import RewardTerminationConfig, RewardTerminationGPT
from dimalib.world_model.reward_termination import CausalSelfAttention


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_is_one_minus_p(p: float) -> None:
    torch.manual_seed(0)
    n = 1_000_000
    x = torch.ones(n)
    kept = float((dropout(x, p) != 0).double().mean())
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(kept - (1 - p)) < 5 * sigma  # 5 binomial standard deviations


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("p", [0.1, 0.021, 0.3, 0.77])
def test_kept_values_scaled_like_f_dropout(dtype: torch.dtype, p: float) -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 33, dtype=dtype)
    y = dropout(x, p)
    assert y.dtype == dtype and y.shape == x.shape
    # F.dropout's own factor for kept elements (read off its output on ones), bit for bit
    factor = F.dropout(torch.ones(4096, dtype=dtype), p, training=True).max()
    kept = y != 0
    assert torch.equal(y[kept], x[kept] * factor)
    assert 0 < int(kept.sum()) < x.numel()


def test_gradient_is_the_mask_times_the_scale() -> None:
    torch.manual_seed(2)
    x = torch.randn(50, 40, dtype=torch.float64, requires_grad=True)
    y = dropout(x, 0.3)
    g = torch.randn_like(y)
    y.backward(g)
    assert x.grad is not None
    mask = (y != 0).double() / 0.7
    torch.testing.assert_close(x.grad, g * mask, rtol=0, atol=1e-15)


def test_seeded_masks_repeat_and_differ_between_calls() -> None:
    x = torch.ones(1000)
    torch.manual_seed(3)
    a, b = dropout(x, 0.5), dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(a, dropout(x, 0.5))
    assert not torch.equal(a, b)


def test_identity_and_fallbacks() -> None:
    x = torch.randn(10, 10)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))  # F.dropout's p = 1
    assert uses_fast_mask(x, 0.1)
    assert not uses_fast_mask(x, 0.0) and not uses_fast_mask(x, 1.0)
    assert not uses_fast_mask(torch.ones(3, dtype=torch.int64), 0.1)
    # p within 2**-32 of 1: round(p * 2**31) would not fit an int32; F.dropout takes it
    near_one = 1 - 2**-40
    assert uses_fast_mask(x, 1 - 2**-20) and not uses_fast_mask(x, near_one)
    assert float(dropout(torch.ones(1000), near_one).abs().max()) == 0.0
    # the F.dropout route gives F.dropout's mask bit for bit
    torch.manual_seed(4)
    ref = F.dropout(x, 0.2, training=True)
    torch.manual_seed(4)
    assert torch.equal(dropout(x, 0.2, fast=False), ref)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_bad_p_is_refused(p: float) -> None:
    with pytest.raises(ValueError, match="p: expected a probability"):
        dropout(torch.ones(3), p)


def test_torch_func_transform_falls_back() -> None:
    x = torch.ones(4, 8)
    out = torch.func.vmap(lambda r: dropout(r, 0.5), randomness="different")(x)
    assert out.shape == x.shape
    assert set(out.unique().tolist()) <= {0.0, 2.0}
    # a tensor the transform does not wrap (F.dropout gives every row its own mask)
    out = torch.func.vmap(lambda r: r[0] * dropout(torch.ones(64), 0.5), randomness="different")(x)
    assert out.shape == (4, 64) and not torch.equal(out[0], out[1])


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(1, 7), min_size=1, max_size=4),
    p=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**16),
)
def test_every_output_is_zero_or_scaled_input(shape: list[int], p: float, seed: int) -> None:
    torch.manual_seed(seed)
    x = torch.rand(shape, dtype=torch.float64) + 0.5  # no zeros in the input
    y = dropout(x, p)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / (1 - p), rtol=1e-15, atol=0)


def test_module_matches_nn_dropout_and_switches() -> None:
    layer = Dropout(0.25)
    assert repr(layer) == repr(nn.Dropout(0.25)) and layer.state_dict() == {}
    x = torch.ones(1000)
    assert torch.equal(layer.eval()(x), x)
    layer.train()
    model = nn.Sequential(layer, nn.Linear(2, 2), Dropout(0.5))
    assert set_fast_mask(model, False) == 2
    torch.manual_seed(5)
    ref = F.dropout(x, 0.25, training=True)
    torch.manual_seed(5)
    assert torch.equal(layer(x), ref)
    with pytest.raises(ValueError, match="enabled: expected a bool"):
        set_fast_mask(model, 1)  # type: ignore[arg-type]


def _attention(attn_pdrop: float) -> CausalSelfAttention:
    torch.manual_seed(6)
    cfg = RewardTerminationConfig(
        n_layer=1, n_head=2, n_embd=16, max_steps=4, attn_pdrop=attn_pdrop, resid_pdrop=0.0
    )
    return CausalSelfAttention(cfg).double()


def test_training_attention_without_dropout_equals_sdpa() -> None:
    """The matmul path (taken in CPU training with attention dropout) equals SDPA's causal
    attention once its dropout is off: compare both paths at p -> 0 through a mask of ones."""
    from dimalib.world_model.reward_termination import _matmul_attention

    g = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(3, 2, 6, 8, generator=g, dtype=torch.float64) for _ in range(3))
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(_matmul_attention(q, k, v, causal, 0.0), ref, rtol=1e-12, atol=1e-12)


def test_training_attention_dropout_is_unbiased() -> None:
    """E[dropout(P)] = P: the mean over many dropped-out attentions approaches the attention
    without dropout (the training path's mask is dimalib's, the expectation is the same)."""
    attn = _attention(0.3).train()
    h = torch.randn(1, 8, 16, dtype=torch.float64)
    with torch.no_grad():
        ref = attn.eval()(h, attn_mask=None)
        attn.train()
        assert uses_fast_mask(h, 0.3)
        outs = torch.stack([attn(h, attn_mask=None) for _ in range(4000)])
    mean, sem = outs.mean(0), outs.std(0) / math.sqrt(outs.shape[0])
    assert bool(((mean - ref).abs() <= 5 * sem + 1e-9).all())
    assert float(outs.std(0).max()) > 0  # dropout did act


def test_gpt_train_step_uses_no_bernoulli_on_cpu() -> None:
    """In CPU training the GPT draws no bernoulli_ masks and takes no SDPA math path."""
    spec = MultiAgentSpec(("a", "b"), obs_dims=(3, 3), action_dims=(2, 2), state_dim=5)
    model = RewardTerminationGPT(spec, RewardTerminationConfig(n_layer=2, n_embd=32)).train()
    states, actions = torch.randn(4, 6, 5), torch.rand(4, 6, 4)
    seen: list[str] = []
    from torch.utils._python_dispatch import TorchDispatchMode

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    with Spy():
        reward, logit = model(states, actions)
        (reward.sum() + logit.sum()).backward()
    assert not any("bernoulli" in name for name in seen)
    set_fast_mask(model, False)
    seen.clear()
    with Spy():
        model(states, actions)
    assert any("bernoulli" in name for name in seen)


def test_gpt_training_path_equals_eval_without_dropout_in_float64() -> None:
    """With every dropout probability at 1e-13 (every element kept, factor 1 + 1e-13) the CPU
    training path (dimalib masks, matmul attention with its causal mask, the last block's
    action-token queries) gives the eval path's outputs and gradients (SDPA) in float64."""
    spec = MultiAgentSpec(("a", "b"), obs_dims=(3, 3), action_dims=(2, 3), state_dim=5)
    p = 1e-13
    cfg = RewardTerminationConfig(
        n_layer=2, n_head=2, n_embd=16, max_steps=6, embd_pdrop=p, attn_pdrop=p, resid_pdrop=p
    )
    torch.manual_seed(8)
    model = RewardTerminationGPT(spec, cfg).double()
    states = torch.randn(3, 6, 5, dtype=torch.float64)
    actions = torch.rand(3, 6, 5, dtype=torch.float64)
    outs, grads = [], []
    for train in (True, False):
        model.train(train)
        model.zero_grad()
        reward, logit = model(states, actions)
        (reward.square().sum() + logit.sum()).backward()
        outs.append(torch.cat([reward, logit]))
        grads.append(
            torch.cat([q.grad.flatten() for q in model.parameters() if q.grad is not None])
        )
    assert uses_fast_mask(states, p)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_bf16_training_attention_scores_in_float32() -> None:
    """Under bf16 autocast the training attention's scores are computed in float32 (as SDPA's
    math path did): its error against float64 stays near the eval kernel's."""
    from dimalib.world_model.reward_termination import _matmul_attention

    g = torch.Generator().manual_seed(9)
    q, k, v = (torch.randn(8, 4, 30, 64, generator=g, dtype=torch.float64) for _ in range(3))
    causal = torch.ones(30, 30, dtype=torch.bool).tril()
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        qb, kb, vb = (t.to(torch.bfloat16) for t in (q, k, v))
        fast = _matmul_attention(qb, kb, vb, causal, 0.0, float_scores=True)
        coarse = _matmul_attention(qb, kb, vb, causal, 0.0, float_scores=False)
        flash = F.scaled_dot_product_attention(qb, kb, vb, is_causal=True)
    err = {n: float((t.double() - ref).abs().max()) for n, t in
           (("fast", fast), ("coarse", coarse), ("flash", flash))}  # fmt: skip
    assert err["fast"] < 2 * err["flash"] + 0.01, err
    assert err["fast"] < err["coarse"], err
