"""The denoiser's 1-D U-Net: the short-sequence convolution and the fused condition projections
compute the same function as ``F.conv1d`` and one linear layer per norm (issue "speed")."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dimalib.testing.reference_unet import reference_unet_forward
from dimalib.world_model.dynamics.unet1d import DENSE_MAX_LEN, ResBlock1D, SeqConv1d, UNet1D


def _randomise(module: nn.Module, seed: int = 0) -> None:
    """Non-zero weights everywhere (the U-Net starts with zeroed output convolutions)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def _grads(out: torch.Tensor, inputs: list[torch.Tensor], seed: int = 1) -> list[torch.Tensor]:
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    return list(torch.autograd.grad(out, inputs, g))


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 7),
    channels=st.sampled_from([(1, 1), (3, 5), (8, 8), (18, 32)]),
    length=st.integers(1, DENSE_MAX_LEN + 2),
    kernel_stride_pad=st.sampled_from([(3, 1, 1), (3, 2, 1), (1, 1, 0), (3, 1, 0), (2, 1, 1)]),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_seqconv_equals_conv1d_forward_and_backward(
    batch: int,
    channels: tuple[int, int],
    length: int,
    kernel_stride_pad: tuple[int, int, int],
    bias: bool,
    seed: int,
) -> None:
    k, stride, pad = kernel_stride_pad
    if length + 2 * pad < k:
        return  # no output step
    c_in, c_out = channels
    conv = SeqConv1d(c_in, c_out, k, stride=stride, padding=pad, bias=bias)
    _randomise(conv, seed)
    x = torch.randn(batch, c_in, length, generator=torch.Generator().manual_seed(seed + 1))
    x.requires_grad_(True)
    params = [conv.weight] + ([conv.bias] if conv.bias is not None else [])
    ours = conv(x)
    ref = F.conv1d(x, conv.weight, conv.bias, stride=stride, padding=pad)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(_grads(ours, [x, *params]), _grads(ref, [x, *params]), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_seqconv_state_dict_is_conv1d_state_dict() -> None:
    """Checkpoints written with nn.Conv1d layers load into SeqConv1d and back."""
    ours, plain = SeqConv1d(4, 6, 3, padding=1), nn.Conv1d(4, 6, 3, padding=1)
    _randomise(plain)
    assert ours.state_dict().keys() == plain.state_dict().keys()
    ours.load_state_dict(plain.state_dict())
    x = torch.randn(2, 4, 4)
    torch.testing.assert_close(ours(x), plain(x), rtol=1e-5, atol=1e-6)
    plain.load_state_dict(ours.state_dict())


def test_seqconv_first_call_under_inference_mode_then_training() -> None:
    """Indices built under inference_mode are plain tensors, so training can use them."""
    conv = SeqConv1d(3, 3, 3, padding=1)
    x = torch.randn(2, 3, 4)
    with torch.inference_mode():
        conv(x)
    conv(x).square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_seqconv_pickles_and_copies_without_caches() -> None:
    conv = SeqConv1d(3, 2, 3, padding=1)
    x = torch.randn(2, 3, 4)
    y = conv(x)
    for clone in (pickle.loads(pickle.dumps(conv)), copy.deepcopy(conv)):
        assert clone._dense_index == {} and clone._banded is None
        torch.testing.assert_close(clone(x), y)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_string_padding_keeps_conv1d(padding: str) -> None:
    conv = SeqConv1d(3, 4, 3, padding=padding)
    _randomise(conv)
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(conv(x), F.conv1d(x, conv.weight, conv.bias, padding=padding))
    assert conv._dense_index == {}


def test_long_sequences_use_conv1d(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above DENSE_MAX_LEN steps the layer is nn.Conv1d's forward (no banded matrix)."""
    conv = SeqConv1d(2, 2, 3, padding=1)
    conv(torch.randn(1, 2, DENSE_MAX_LEN + 1))
    assert conv._dense_index == {}
    conv(torch.randn(1, 2, DENSE_MAX_LEN))
    assert list(conv._dense_index) == [(DENSE_MAX_LEN, "cpu")]


@pytest.mark.parametrize("length", [2, 4, 5, 7])
@pytest.mark.parametrize(
    ("depths", "channels"), [((1, 1), (32, 32)), ((2, 2, 2), (32, 64, 64)), ((1,), (8,))]
)
def test_unet_equals_reference(
    length: int, depths: tuple[int, ...], channels: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    unet = UNet1D(6, 5, 16, depths, channels)
    _randomise(unet, 3)
    x = torch.randn(9, 6, length, requires_grad=True)
    cond = torch.randn(9, 16, requires_grad=True)
    ours, ref = unet(x, cond), reference_unet_forward(unet, x, cond)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    inputs = [x, cond, *unet.parameters()]
    for a, b in zip(_grads(ours, inputs), _grads(ref, inputs), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.inference_mode(), unet.frozen():
        torch.testing.assert_close(unet(x, cond), ref.detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(unet(x, cond), ref.detach(), rtol=1e-5, atol=1e-5)


def test_resblock_forward_equals_its_projected_form() -> None:
    block = ResBlock1D(4, 8, 6)
    _randomise(block)
    x, cond = torch.randn(3, 4, 4), torch.randn(3, 6)
    projected = block.modulated(x, block.norm1.linear(cond), block.norm2.linear(cond))
    torch.testing.assert_close(block(x, cond), projected)


def test_frozen_reuses_matrices_and_sees_changes_between_blocks() -> None:
    unet = UNet1D(3, 3, 8, (1, 1), (8, 8))
    _randomise(unet)
    x, cond = torch.randn(2, 3, 4), torch.randn(2, 8)
    with torch.inference_mode():
        with unet.frozen():
            first = unet(x, cond)
            assert unet.conv_in._banded and 4 in unet.conv_in._banded
            banded = unet.conv_in._banded[4][0]
            unet(x, cond)
            assert unet.conv_in._banded[4][0] is banded  # built once
            assert unet._stacked is not None  # the stacked condition projections, too
        assert unet.conv_in._banded is None and unet._stacked is None  # dropped on leaving
    with torch.no_grad():
        unet.conv_in.weight.mul_(2)  # the next block sees the new weights
        unet.mid[0].norm1.linear.weight.mul_(2)  # type: ignore[union-attr]
    with torch.inference_mode(), unet.frozen():
        second = unet(x, cond)
    assert not torch.allclose(first, second)
    torch.testing.assert_close(second, reference_unet_forward(unet, x, cond).detach())


def test_forward_projected_takes_the_stacked_projection() -> None:
    """``forward(x, cond)`` = ``forward_projected(x, cond @ Wᵀ + b)`` with ``condition_weights``,
    inside and outside ``frozen()`` (nested blocks keep the outer one's matrices); a projection
    of the wrong width is refused."""
    unet = UNet1D(3, 3, 8, (1, 1), (8, 8))
    _randomise(unet)
    x, cond = torch.randn(5, 3, 4), torch.randn(5, 8)
    weight, bias, sizes = unet.condition_weights()
    assert weight.shape == (sum(sizes), 8) and bias.shape == (sum(sizes),)
    # (scale, shift) of 8 channels per norm; an up block's first norm sees 8 + 8 skip channels
    assert sizes == [16] * 8 + [32, 16, 32, 16]
    ref = reference_unet_forward(unet, x, cond)
    torch.testing.assert_close(unet.forward_projected(x, F.linear(cond, weight, bias)), ref)
    with torch.inference_mode(), unet.frozen():
        stacked = unet._stacked
        with unet.frozen():
            assert unet._stacked is stacked
        assert unet._stacked is stacked and unet.conv_in._banded is not None
        w, b, _ = unet.condition_weights()
        torch.testing.assert_close(unet.forward_projected(x, F.linear(cond, w, b)), ref.detach())
        twin = copy.deepcopy(unet)
    assert twin._stacked is None and twin.conv_in._banded is None
    with pytest.raises(ValueError, match=r"projected: expected \[B, 224\]"):
        unet.forward_projected(x, torch.zeros(5, 223))


def test_frozen_refuses_gradient_recording() -> None:
    unet = UNet1D(3, 3, 8, (1,), (8,))
    with (
        pytest.raises(RuntimeError, match="frozen: expected no gradient recording"),
        unet.frozen(),
    ):
        pass
    assert unet.conv_in._banded is None
