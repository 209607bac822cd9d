"""World-model accuracy: open-loop rollouts on real segments and their error (paper App. E.2)."""

from __future__ import annotations

import torch

from dimalib.data.buffer import ReplayBuffer
from dimalib.diffusion.sampler import Order
from dimalib.utils.checks import check_tensor
from dimalib.world_model import DIMAWorldModel

__all__ = ["cumulative_l1", "open_loop_states", "real_segments"]


def real_segments(
    buffer: ReplayBuffer,
    batch_size: int,
    context: int,
    horizon: int,
    *,
    generator: torch.Generator | None = None,
    max_tries: int = 20,
) -> dict[str, torch.Tensor]:
    """Segments of ``context + horizon`` consecutive real steps inside one episode.

    Returns:
        ``states [B, L + H, S]`` and ``actions [B, L + H, A]`` (``B <= batch_size`` when the
        buffer holds few complete segments). Context: ``states[:, :L]``; the open-loop actions:
        ``actions[:, :L + H - 1]``; the targets: ``states[:, L:]``.
    """
    length = context + horizon
    kept: list[dict[str, torch.Tensor]] = []
    n = 0
    for _ in range(max_tries):
        seq = buffer.sample_sequences(batch_size, length=length, generator=generator)
        full = seq["mask"].all(dim=1)
        kept.append({k: seq[k][full] for k in ("states", "actions")})
        n += int(full.sum())
        if n >= batch_size:
            break
    if n == 0:
        raise ValueError(
            f"buffer: no episode segment of {length} steps found; collect longer episodes"
        )
    return {k: torch.cat([d[k] for d in kept])[:batch_size] for k in ("states", "actions")}


@torch.inference_mode()
def open_loop_states(
    world_model: DIMAWorldModel,
    states: torch.Tensor,
    actions: torch.Tensor,
    horizon: int,
    *,
    order: Order | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Predict ``horizon`` states open loop from real contexts and real actions.

    Args:
        states: ``[B, L, S]`` real context ``s_{t−L+1..t}``.
        actions: ``[B, L − 1 + horizon, A]`` real actions ``a_{t−L+1..t+horizon−1}``.

    Returns:
        ``[B, horizon, S]`` predicted ``s_{t+1..t+horizon}``, each fed back as context.
    """
    L, S, A = world_model.context, world_model.spec.state_dim, world_model.spec.joint_action_dim
    check_tensor("states", states, (None, L, S), floating=True, finite=True)
    check_tensor("actions", actions, (states.shape[0], L - 1 + horizon, A), floating=True)
    world_model.eval()
    ctx = states
    out = []
    for h in range(horizon):
        nxt = world_model.dynamics.predict_next_state(
            ctx, actions[:, h : h + L], order=order, generator=generator, check_inputs=False
        )
        out.append(nxt)
        ctx = torch.cat([ctx[:, 1:], nxt[:, None]], dim=1)
    return torch.stack(out, dim=1)


def cumulative_l1(
    predicted: torch.Tensor, target: torch.Tensor, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """Cumulative L1 error per state dimension over the horizon (App. E.2, Fig. 7).

    ``e_h = Σ_{k<=h} mean_{b, d} |pred[b, k, d] − target[b, k, d]| / scale[d]``.

    Args:
        predicted, target: ``[B, H, S]``.
        scale: optional ``[S]`` per-dimension scale (e.g. the state std) to compare dimensions.

    Returns:
        ``[H]`` the cumulative error after each step.
    """
    check_tensor("target", target, tuple(predicted.shape))
    err = (predicted - target).abs()
    if scale is not None:
        err = err / scale
    return err.mean(dim=(0, 2)).cumsum(0)
