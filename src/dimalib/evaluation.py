"""World-model accuracy: open-loop rollouts on real segments and their error (paper App. E.2).

Any dynamics model with the denoisers' ``predict_next_state(states [B, L, S], actions [B, L, A])``
signature and a ``context`` attribute can be evaluated: a :class:`~dimalib.world_model.DIMAWorldModel`
(its dynamics model is used), a :class:`~dimalib.diffusion.SequentialAgentDenoiser` or
:class:`~dimalib.diffusion.JointActionDenoiser`, or a
:class:`~dimalib.models.ProbabilisticEnsemble`.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from dimalib.data.buffer import ReplayBuffer
from dimalib.diffusion.sampler import Order
from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import check_tensor
from dimalib.world_model import DIMAWorldModel

__all__ = [
    "NextStatePredictor",
    "cumulative_l1",
    "one_step_error",
    "open_loop_states",
    "order_spread",
    "real_segments",
]


class NextStatePredictor(Protocol):
    """What :func:`open_loop_states` needs from a dynamics model."""

    spec: MultiAgentSpec

    @property
    def context(self) -> int: ...

    def eval(self) -> Any: ...

    def predict_next_state(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        order: Any = None,
        generator: torch.Generator | None = None,
        check_inputs: bool = True,
    ) -> torch.Tensor: ...


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
    model: DIMAWorldModel | NextStatePredictor,
    states: torch.Tensor,
    actions: torch.Tensor,
    horizon: int,
    *,
    order: Order | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Predict ``horizon`` states open loop from real contexts and real actions.

    Args:
        model: a world model (its dynamics model is used) or any :class:`NextStatePredictor`.
        states: ``[B, L, S]`` real context ``s_{t−L+1..t}`` (``L = model.context``).
        actions: ``[B, L − 1 + horizon, A]`` real actions ``a_{t−L+1..t+horizon−1}``.
        order: conditioning order for a sequential denoiser (ignored by the other models).
        generator: makes the start noises reproducible.

    Returns:
        ``[B, horizon, S]`` predicted ``s_{t+1..t+horizon}``, each fed back as context.
    """
    dynamics: NextStatePredictor = model.dynamics if isinstance(model, DIMAWorldModel) else model
    spec = model.spec
    L, S, A = dynamics.context, spec.state_dim, spec.joint_action_dim
    check_tensor("states", states, (None, L, S), floating=True, finite=True)
    check_tensor("actions", actions, (states.shape[0], L - 1 + horizon, A), floating=True,
                 finite=True)  # fmt: skip
    model.eval()
    ctx = states
    out = []
    for h in range(horizon):
        nxt = dynamics.predict_next_state(
            ctx, actions[:, h : h + L], order=order, generator=generator, check_inputs=False
        )
        out.append(nxt)
        ctx = torch.cat([ctx[:, 1:], nxt[:, None]], dim=1)
    return torch.stack(out, dim=1)


def one_step_error(
    predicted: torch.Tensor, target: torch.Tensor, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean absolute error per state dimension, ``mean_{b, d} |pred − target| / scale[d]``.

    Args:
        predicted, target: ``[B, S]`` (or any ``[..., S]``).
        scale: optional ``[S]`` per-dimension scale (e.g. the state std).

    Returns:
        A scalar tensor.
    """
    check_tensor("target", target, tuple(predicted.shape))
    err = (predicted - target).abs()
    if scale is not None:
        err = err / scale
    return err.mean()


def order_spread(curves: torch.Tensor) -> torch.Tensor:
    """Spread of error curves across conditioning orders, relative to their mean (Fig. 7).

    ``spread_h = (max_o e_{o,h} − min_o e_{o,h}) / mean_o e_{o,h}``.

    Args:
        curves: ``[O, H]`` one error curve (e.g. :func:`cumulative_l1`) per order.

    Returns:
        ``[H]`` the relative spread after each step.
    """
    check_tensor("curves", curves, (None, None), floating=True, finite=True)
    if curves.shape[0] < 2:
        raise ValueError(
            f"curves: expected at least 2 orders (rows), received shape {tuple(curves.shape)}"
        )
    return (curves.amax(0) - curves.amin(0)) / curves.mean(0)


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
