"""Tests of `FSQStateDecoder`: reconstruction, codebook usage, layout, laws and input validation.

The helpers `fit_decoder` and `reconstruction_error` take any ``(states, joint_obs)`` data set, so
a test on recorded environment data only needs to load its tensors and call them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dimalib.spec import MultiAgentSpec
from dimalib.world_model import FSQStateDecoder, StateDecoderConfig

SPEC = MultiAgentSpec(("a", "b"), obs_dims=(5, 7), action_dims=(1, 2), state_dim=6)
TINY = StateDecoderConfig(hidden_dim=64, num_tokens=4)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models: one intra-op thread is fastest and robust on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- helpers
def synthetic_system(
    spec: MultiAgentSpec, n: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """States ``s ~ N(0, I)`` and joint observations ``o_i = tanh(W_i s + b_i)`` (fixed W_i, b_i)."""
    g = torch.Generator().manual_seed(1234)  # the system is fixed; ``seed`` draws the states
    weights = [torch.randn(d, spec.state_dim, generator=g) for d in spec.obs_dims]
    biases = [0.3 * torch.randn(d, generator=g) for d in spec.obs_dims]
    states = torch.randn(n, spec.state_dim, generator=torch.Generator().manual_seed(seed))
    obs = [torch.tanh(states @ w.T + b) for w, b in zip(weights, biases, strict=True)]
    return states, torch.cat(obs, dim=-1)


def fit_decoder(
    decoder: FSQStateDecoder,
    states: torch.Tensor,
    joint_obs: torch.Tensor,
    steps: int,
    batch_size: int = 256,  # Table 4
    lr: float = 3e-3,
    seed: int = 0,
) -> FSQStateDecoder:
    """AdamW (weight decay 0.01, gradient clipping 10 as Table 4) on minibatches of the data."""
    opt = torch.optim.AdamW(decoder.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    decoder.train()
    for _ in range(steps):
        idx = torch.randint(0, states.shape[0], (batch_size,), generator=g)
        loss, _ = decoder.loss(states[idx], joint_obs[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 10.0)
        opt.step()
        sched.step()
    return decoder.eval()


@torch.no_grad()
def reconstruction_error(
    decoder: FSQStateDecoder, states: torch.Tensor, joint_obs: torch.Tensor
) -> float:
    """MSE divided by the per-entry variance of the targets (0 = perfect, ~1 = mean predictor)."""
    mse = (decoder.decode_joint(states) - joint_obs).pow(2).mean()
    return float(mse / joint_obs.var(dim=0).mean())


# ------------------------------------------------------------------------------ tests
def test_paper_defaults() -> None:
    cfg = StateDecoderConfig()
    assert (cfg.num_layers, cfg.hidden_dim, cfg.levels) == (3, 512, (8, 6, 5))
    assert cfg.quantizer == "fsq" and cfg.codebook_size == 240 and cfg.token_dim == 3
    dec = FSQStateDecoder(SPEC)
    linears = [m for m in dec.encoder if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [512, 512, 4 * 3]
    assert all(
        isinstance(m, torch.nn.GELU) for m in dec.encoder if not isinstance(m, torch.nn.Linear)
    )


def test_reconstructs_synthetic_system_with_high_code_usage() -> None:
    states, obs = synthetic_system(SPEC, 8192, seed=0)
    torch.manual_seed(0)
    dec = fit_decoder(FSQStateDecoder(SPEC, TINY), states, obs, steps=600)
    test_states, test_obs = synthetic_system(SPEC, 2048, seed=1)
    err = reconstruction_error(dec, test_states, test_obs)
    # a decoder that ignored the state would score ~1.0
    assert err < 0.05, err
    usage = dec.codebook_usage(test_states)
    assert usage["usage"] > 0.5, usage
    assert 1.0 <= usage["perplexity"] <= usage["usage"] * dec.codebook_size + 1e-6


def test_vq_variant_trains_with_commitment_loss() -> None:
    cfg = StateDecoderConfig(hidden_dim=64, num_tokens=4, quantizer="vq", vq_codebook_size=64)
    states, obs = synthetic_system(SPEC, 4096, seed=0)
    torch.manual_seed(0)
    dec = FSQStateDecoder(SPEC, cfg)
    _, metrics = dec.loss(states[:256], obs[:256])
    assert float(metrics["commitment"]) > 0.0
    torch.testing.assert_close(metrics["loss"], metrics["mse"] + metrics["commitment"])
    before = reconstruction_error(dec.eval(), states[:1024], obs[:1024])
    fit_decoder(dec, states, obs, steps=300)
    test_states, test_obs = synthetic_system(SPEC, 1024, seed=1)
    after = reconstruction_error(dec, test_states, test_obs)
    assert after < 0.3 * before, (before, after)
    assert dec.codebook_usage(test_states)["usage"] > 0.1


def test_fsq_loss_is_plain_mse() -> None:
    dec = FSQStateDecoder(SPEC, TINY)
    states, obs = synthetic_system(SPEC, 32)
    loss, metrics = dec.loss(states, obs)
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(dec(states), obs))
    assert float(metrics["commitment"]) == 0.0
    loss.backward()  # straight-through: the encoder gets gradients through the rounding
    assert dec.encoder[0].weight.grad is not None
    assert float(dec.encoder[0].weight.grad.abs().sum()) > 0.0


def test_layout_follows_spec() -> None:
    dec = FSQStateDecoder(SPEC, TINY).eval()
    states, _ = synthetic_system(SPEC, 10)
    with torch.no_grad():
        joint = dec.decode_joint(states)
        parts = dec.decode(states)
        codes, indices = dec.encode(states)
    assert joint.shape == (10, SPEC.joint_obs_dim)
    assert [tuple(p.shape) for p in parts] == [(10, 5), (10, 7)]
    for part, sl in zip(parts, SPEC.obs_slices, strict=True):
        torch.testing.assert_close(part, joint[:, sl])
    assert codes.shape == (10, 4, 3) and indices.shape == (10, 4)
    assert int(indices.min()) >= 0 and int(indices.max()) < 240
    # codes lie on the FSQ grid: L levels per channel in [-1, 1]
    for ch, lvl in enumerate((8, 6, 5)):
        scaled = codes[..., ch] * (lvl // 2)
        torch.testing.assert_close(scaled, scaled.round())


def test_codebook_usage_constant_state() -> None:
    dec = FSQStateDecoder(SPEC, TINY)
    usage = dec.codebook_usage(torch.zeros(100, SPEC.state_dim))
    # every token of a constant state takes one code: at most num_tokens codes used
    assert usage["usage"] <= 4 / 240 + 1e-12
    assert 1.0 <= usage["perplexity"] <= 4.0 + 1e-9
    assert dec.training  # mode restored


@settings(max_examples=10, deadline=None)
@given(b=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_batched_equals_looped_and_leading_dims(b: int, seed: int) -> None:
    dec = FSQStateDecoder(SPEC, TINY).eval()
    states = torch.randn(b, 3, SPEC.state_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = dec(states)  # (b, 3, O)
        flat = dec(states.reshape(-1, SPEC.state_dim)).reshape(b, 3, -1)
        torch.testing.assert_close(out, flat, atol=1e-6, rtol=1e-6)
        for i in range(b):
            torch.testing.assert_close(dec(states[i, 0]), out[i, 0], atol=1e-6, rtol=1e-6)


# ------------------------------------------------------------------------- validation
def _bad_calls() -> list[tuple[str, object]]:
    states, obs = synthetic_system(SPEC, 4)
    nan_s = states.clone()
    nan_s[1, 2] = math.nan
    inf_o = obs.clone()
    inf_o[0, 0] = math.inf
    spec3 = MultiAgentSpec(("a", "b", "c"), obs_dims=(5, 7, 2), action_dims=(1, 1, 1), state_dim=6)
    return [
        ("state", lambda d: d(states[:, :5])),
        ("state", lambda d: d(nan_s)),
        ("state", lambda d: d.decode(states.long())),
        ("state", lambda d: d.encode(torch.tensor(1.0))),
        ("state", lambda d: d.codebook_usage(nan_s)),
        ("joint_obs", lambda d: d.loss(states, obs[:, :5])),  # one agent's observation only
        ("joint_obs", lambda d: d.loss(states, synthetic_system(spec3, 4)[1])),  # 3 agents
        ("joint_obs", lambda d: d.loss(states, obs[:3])),  # batch mismatch
        ("joint_obs", lambda d: d.loss(states, inf_o)),
        ("state", lambda d: d.loss(nan_s, obs)),
    ]


@pytest.mark.parametrize(("name", "call"), _bad_calls())
def test_bad_input_raises_value_error_naming_argument(name: str, call: object) -> None:
    dec = FSQStateDecoder(SPEC, TINY)
    assert callable(call)
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        call(dec)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"levels": (8, 2)}, "levels"),
        ({"levels": ()}, "levels"),
        ({"quantizer": "lfq"}, "quantizer"),
        ({"num_tokens": 0}, "num_tokens"),
        ({"num_layers": 1}, "num_layers"),
        ({"vq_decay": 1.0}, "vq_decay"),
    ],
)
def test_bad_config(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        StateDecoderConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_spec() -> None:
    with pytest.raises(ValueError, match=r"^spec: expected"):
        FSQStateDecoder(None)  # type: ignore[arg-type]
