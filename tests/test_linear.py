"""dimalib.utils.linear: oneDNN float32 products equal F.linear's (values and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dimalib.spec import MultiAgentSpec
from dimalib.utils.linear import (
    MIN_MACS,
    MIN_MACS_GRAD,
    Linear,
    _OneDNNLinear,  # the oneDNN path forced, for the property test
    linear,
    onednn_available,
    set_onednn,
    uses_onednn,
)
from dimalib.world_model.reward_termination import RewardTerminationConfig, RewardTerminationGPT

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="PyTorch without oneDNN")


def _grads(fn, x, w, b, g):  # type: ignore[no-untyped-def]
    for t in (x, w, b):
        if t is not None:
            t.grad = None
    out = fn(x, w, b)
    out.backward(g)
    return out.detach(), [
        None if t is None or t.grad is None else t.grad.clone() for t in (x, w, b)
    ]


def _reference(x, w, b):  # type: ignore[no-untyped-def]
    """The same product in float64, as the yardstick of both float32 results."""
    return F.linear(x.double(), w.double(), None if b is None else b.double())


@needs_onednn
@pytest.mark.parametrize(
    ("lead", "k", "n", "bias"),
    [((3840,), 256, 1024, True), ((64, 30), 64, 256, True), ((1200,), 128, 64, False)],
)
def test_values_and_gradients_match_f_linear(
    lead: tuple[int, ...], k: int, n: int, bias: bool
) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*lead, k, generator=gen, requires_grad=True)
    w = torch.randn(n, k, generator=gen, requires_grad=True)
    b = torch.randn(n, generator=gen, requires_grad=True) if bias else None
    assert uses_onednn(x, w, b)
    g = torch.randn(*lead, n, generator=gen)
    out, grads = _grads(linear, x, w, b, g)
    ref_out, ref_grads = _grads(F.linear, x, w, b, g)
    exact = _reference(x, w, b)
    # both float32 results are within float32 rounding of the float64 product, and of each other
    scale = exact.abs().max().item()
    assert (out.double() - exact).abs().max().item() < 1e-6 * scale * k**0.5
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-4)
    for got, want in zip(grads, ref_grads, strict=True):
        if want is not None:
            torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-3)


@needs_onednn
def test_strided_inputs_and_partial_gradients() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(128, 1024, generator=gen).t()  # (1024, 128), not contiguous
    w = torch.randn(256, 128, generator=gen, requires_grad=True)
    assert not x.is_contiguous() and uses_onednn(x, w)
    out, (gx, gw, _) = _grads(linear, x, w, None, torch.ones(1024, 256))
    ref, (_, rw, _) = _grads(F.linear, x, w, None, torch.ones(1024, 256))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)
    assert gx is None  # x needs no gradient: none computed
    torch.testing.assert_close(gw, rw, rtol=1e-5, atol=1e-3)
    # a strided gradient (a transposed view flowing back) gives the same weight gradient
    w.grad = None
    linear(x, w).t().contiguous().t().backward(torch.ones(256, 1024).t())
    torch.testing.assert_close(w.grad, rw, rtol=1e-5, atol=1e-3)


def test_falls_back_where_onednn_does_not_apply() -> None:
    big = torch.randn(2048, 64), torch.randn(64, 64)
    small = torch.randn(8, 16), torch.randn(4, 16)
    assert MIN_MACS > 8 * 16 * 4 and not uses_onednn(*small)
    # with a gradient to compute the bar is higher (the backward's own fixed cost)
    mid = torch.randn(1024, 64, requires_grad=True), torch.randn(64, 64)
    assert MIN_MACS <= 1024 * 64 * 64 < MIN_MACS_GRAD
    assert not uses_onednn(*mid)
    with torch.no_grad():
        assert uses_onednn(*mid) == onednn_available()
    assert not uses_onednn(big[0].double(), big[1].double())
    assert not uses_onednn(big[0].bfloat16(), big[1].bfloat16())
    assert not uses_onednn(torch.randn(64), big[1])  # 1-D input
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not uses_onednn(*big)
        out = linear(*big)
    assert out.dtype == torch.bfloat16  # autocast still applies: F.linear ran
    for x, w in (small, (big[0].double(), big[1].double())):
        assert torch.equal(linear(x, w), F.linear(x, w))  # bit-identical where it falls back
    assert uses_onednn(*big) == onednn_available()


@needs_onednn
def test_inference_mode_and_bad_shape() -> None:
    x, w, b = torch.randn(512, 64), torch.randn(128, 64), torch.randn(128)
    assert uses_onednn(x, w, b)
    with torch.inference_mode():
        out = linear(x, w, b)
    torch.testing.assert_close(out, F.linear(x, w, b), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"x: expected last dimension 64"):
        linear(torch.randn(4096, 65), w)


def test_linear_module_is_nn_linear() -> None:
    torch.manual_seed(0)
    ref = nn.Linear(64, 512)
    layer = Linear(64, 512)
    assert isinstance(layer, nn.Linear)
    assert layer.state_dict().keys() == ref.state_dict().keys()
    layer.load_state_dict(ref.state_dict())
    x = torch.randn(300, 64)
    torch.testing.assert_close(layer(x), ref(x), rtol=1e-5, atol=1e-5)
    layer.onednn = False
    assert torch.equal(layer(x), ref(x))  # switched off: F.linear itself


def test_set_onednn_switches_every_routed_layer() -> None:
    spec = MultiAgentSpec(("a", "b"), obs_dims=(4, 4), action_dims=(2, 3), state_dim=8)
    model = RewardTerminationGPT(spec, RewardTerminationConfig(n_layer=2, n_embd=32, n_head=2))
    linears = sum(isinstance(m, Linear) for m in model.modules())
    attention = len(model.blocks)  # each attention's split projections route through linear()
    assert set_onednn(model, False) == linears + attention
    assert all(not m.onednn for m in model.modules() if hasattr(type(m), "onednn"))
    assert set_onednn(model, True) == linears + attention


@needs_onednn
def test_gpt_update_matches_with_and_without_onednn() -> None:
    """A whole model: loss and every parameter gradient agree to float32 rounding."""
    spec = MultiAgentSpec(("a", "b"), obs_dims=(6, 6), action_dims=(3, 3), state_dim=17)
    cfg = RewardTerminationConfig(n_layer=2, n_head=2, n_embd=128, head_hidden=128)
    cfg = RewardTerminationConfig(**{**cfg.__dict__, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
                                     "resid_pdrop": 0.0})  # fmt: skip
    torch.manual_seed(0)
    model = RewardTerminationGPT(spec, cfg)
    states, actions = torch.randn(64, 15, 17), torch.randn(64, 15, 6)
    results = []
    for flag in (False, True):
        set_onednn(model, flag)
        model.zero_grad()
        reward, logit = model(states, actions)
        (reward.square().mean() + logit.square().mean()).backward()
        results.append((reward.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@needs_onednn
@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 600),
    k=st.integers(1, 300),
    n=st.integers(1, 300),
    bias=st.booleans(),
)
def test_property_equals_f_linear(m: int, k: int, n: int, bias: bool) -> None:
    gen = torch.Generator().manual_seed(m * 7919 + k * 31 + n)
    x = torch.randn(m, k, generator=gen, requires_grad=True)
    w = torch.randn(n, k, generator=gen, requires_grad=True)
    b = torch.randn(n, generator=gen, requires_grad=True) if bias else None
    g = torch.randn(m, n, generator=gen)
    ref, ref_grads = _grads(F.linear, x, w, b, g)
    tol = 1e-5 * max(1.0, k**0.5)
    # the oneDNN function itself, whatever the size, and linear() with its routing
    for fn in (_OneDNNLinear.apply, linear):
        out, grads = _grads(fn, x, w, b, g)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=tol)
        for got, want in zip(grads, ref_grads, strict=True):
            if want is not None:
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * max(k, m, n))


def test_torch_func_transforms_and_double_backward() -> None:
    """vmap and torch.func.grad fall back to F.linear; a gradient of a gradient (create_graph)
    goes through differentiable products and equals F.linear's."""
    torch.manual_seed(0)
    layer = Linear(256, 256)
    x = torch.randn(4, 512, 256)
    out = torch.vmap(layer)(x)
    torch.testing.assert_close(out, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
    w = layer.weight.detach()
    got = torch.func.grad(lambda w: linear(x[0], w).square().sum())(w)
    want = torch.func.grad(lambda w: F.linear(x[0], w).square().sum())(w)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-3)
    results = []
    for fn in (linear, F.linear):
        xx = x[0].clone().requires_grad_(True)
        assert fn is F.linear or uses_onednn(xx, layer.weight, layer.bias) == onednn_available()
        y = fn(xx, layer.weight, layer.bias).square().sum()
        (g,) = torch.autograd.grad(y, xx, create_graph=True)
        layer.zero_grad()
        g.square().sum().backward()
        results.append([layer.weight.grad.clone(), layer.bias.grad.clone(), xx.grad.clone()])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


@needs_onednn
@pytest.mark.parametrize(
    "make_bias",
    [
        lambda n: torch.tensor([0.5]).expand(n),  # broadcast view: stride 0
        lambda n: torch.randn(2 * n)[::2],  # strided
        lambda n: torch.tensor(0.5),  # 0-d: F.linear broadcasts it
        lambda n: torch.randn(1),  # [1]: F.linear broadcasts it
    ],
)
def test_unusual_biases_equal_f_linear(make_bias) -> None:  # type: ignore[no-untyped-def]
    x, w = torch.randn(512, 64), torch.randn(64, 64)
    b = make_bias(64)
    torch.testing.assert_close(linear(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-5)
    xg = x.clone().requires_grad_(True)
    wide = torch.randn(256, 64)  # with a gradient: above MIN_MACS_GRAD
    bb = make_bias(256)
    out = linear(xg, wide, bb)
    torch.testing.assert_close(out, F.linear(xg, wide, bb), rtol=1e-5, atol=1e-5)
    (grad,) = torch.autograd.grad(out.square().sum(), xg)
    (want,) = torch.autograd.grad(F.linear(xg, wide, bb).square().sum(), xg)
    torch.testing.assert_close(grad, want, rtol=1e-5, atol=1e-6 * want.abs().max().item())
    with pytest.raises(RuntimeError):  # a bias of the wrong length fails as in F.linear
        linear(x, w, torch.randn(65))


def test_forward_mode_ad_and_compile_fall_back() -> None:
    import torch.autograd.forward_ad as fwad

    x, w, t = torch.randn(4096, 64), torch.randn(64, 64), torch.randn(4096, 64)
    with fwad.dual_level():
        assert not uses_onednn(fwad.make_dual(x, t), w)
        tangent = fwad.unpack_dual(linear(fwad.make_dual(x, t), w)).tangent
    torch.testing.assert_close(tangent, F.linear(t, w), rtol=1e-5, atol=1e-5)
    layer = Linear(64, 64)
    compiled = torch.compile(layer, backend="eager", fullgraph=True)  # no graph break
    torch.testing.assert_close(compiled(x), F.linear(x, layer.weight, layer.bias))
    with torch.backends.mkldnn.flags(enabled=False):
        assert not uses_onednn(x, w)


def test_width_error_is_the_same_on_both_paths() -> None:
    for rows in (4, 8192):  # below and above the threshold
        with pytest.raises(ValueError, match=r"x: expected last dimension 64"):
            linear(torch.randn(rows, 65), torch.randn(64, 64))


class _Spy:
    """Counts the calls that reach oneDNN's operator."""

    def __init__(self, op):  # type: ignore[no-untyped-def]
        self.op, self.calls = op, 0

    def __call__(self, *args):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.op(*args)


@needs_onednn
def test_flags_decide_which_library_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """set_onednn really switches the GPT, the U-Net's products and SeqConv1d, and the threshold
    band between MIN_MACS and MIN_MACS_GRAD takes oneDNN only without a gradient."""
    import dimalib.utils.linear as lin
    from dimalib.world_model.dynamics.unet1d import UNet1D

    spy = _Spy(lin._OP)
    monkeypatch.setattr(lin, "_OP", spy)
    spec = MultiAgentSpec(("a", "b"), obs_dims=(6, 6), action_dims=(3, 3), state_dim=17)
    gpt = RewardTerminationGPT(spec, RewardTerminationConfig(n_layer=1, n_embd=128, n_head=2))
    unet = UNet1D(18, 17, 256, depths=(1, 1), channels=(64, 64))
    inputs = {
        gpt: (torch.randn(64, 15, 17), torch.randn(64, 15, 6)),
        unet: (torch.randn(600, 18, 4), torch.randn(600, 256)),
    }
    for model, args in inputs.items():
        for flag in (False, True):
            set_onednn(model, flag)
            spy.calls = 0
            model(*args)[0].sum().backward()
            assert (spy.calls > 0) == flag, (type(model).__name__, flag, spy.calls)
    # the band: 1024 × 64 × 64 = 4.2 M multiply-adds
    x, w = torch.randn(1024, 64, requires_grad=True), torch.randn(64, 64)
    spy.calls = 0
    assert torch.equal(linear(x, w), F.linear(x, w)) and spy.calls == 0  # with a gradient: MKL
    with torch.no_grad():
        out = linear(x, w)
    assert spy.calls == 1
    torch.testing.assert_close(out, F.linear(x.detach(), w), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_seqconv_and_unet_above_the_threshold_equal_the_reference() -> None:
    """The banded convolution and the stacked projection at sizes that do reach oneDNN."""
    from dimalib.testing.reference_unet import reference_unet_forward
    from dimalib.world_model.dynamics.unet1d import SeqConv1d, UNet1D

    torch.manual_seed(0)
    for kernel, stride, padding in ((3, 1, 1), (3, 2, 1), (2, 1, 1)):
        conv = SeqConv1d(64, 96, kernel, stride=stride, padding=padding)
        x = torch.randn(256, 64, 4, requires_grad=True)
        out = conv(x)
        ref = F.conv1d(x, conv.weight, conv.bias, stride=stride, padding=padding)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        g = torch.randn_like(out)
        got = torch.autograd.grad(out, (x, conv.weight, conv.bias), g)
        want = torch.autograd.grad(ref, (x, conv.weight, conv.bias), g)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    unet = UNet1D(18, 17, 256, depths=(1, 1), channels=(64, 64))
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # zero-initialised output layers hide differences
    x, cond = torch.randn(600, 18, 4), torch.randn(600, 256)
    with torch.inference_mode():
        torch.testing.assert_close(
            unet(x, cond), reference_unet_forward(unet, x, cond), rtol=1e-4, atol=1e-5
        )
