"""dimalib.utils.optim: fused kernels where torch has them; states loaded across kernels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dimalib.utils.optim import fused_available, load_optimizer_state


def _step(opt: torch.optim.Optimizer, model: nn.Module) -> None:
    opt.zero_grad()
    model(torch.ones(4, 3)).square().sum().backward()
    opt.step()


def test_fused_available_follows_the_torch_version_and_device() -> None:
    newer = torch.torch_version.TorchVersion(torch.__version__) >= (2, 4)
    assert fused_available("cpu") is newer
    assert fused_available(torch.device("cuda")) is True
    assert fused_available("meta") is False


def test_a_for_loop_state_loads_into_a_fused_optimiser_and_steps_like_it() -> None:
    """Adam with the for-loop kernel, two steps; its state loaded into a fused Adam keeps the
    fused kernel and its next step equals the for-loop optimiser's next step (float rounding)."""
    if not fused_available("cpu"):
        pytest.skip("torch < 2.4: no fused CPU Adam")
    torch.manual_seed(0)
    a = nn.Linear(3, 2)
    b = nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    loop = torch.optim.Adam(a.parameters(), lr=0.1)
    fused = torch.optim.Adam(b.parameters(), lr=0.1, fused=True)
    for _ in range(2):
        _step(loop, a)
    b.load_state_dict(a.state_dict())
    load_optimizer_state(fused, loop.state_dict())
    assert fused.param_groups[0]["fused"] is True
    assert fused.state_dict()["state"][0]["exp_avg"] is not loop.state_dict()["state"][0]["exp_avg"]
    _step(loop, a)
    _step(fused, b)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_group_count_mismatch_is_refused_before_loading() -> None:
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    other = torch.optim.Adam([{"params": [model.weight]}, {"params": [model.bias]}])
    with pytest.raises(ValueError, match="expected 1 parameter group"):
        load_optimizer_state(opt, other.state_dict())
