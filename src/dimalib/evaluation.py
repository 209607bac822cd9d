"""World-model accuracy: open-loop rollouts on real segments and their error (paper App. E.2).

Any dynamics model with the denoisers' ``predict_next_state(states [B, L, S], actions [B, L, A])``
signature and a ``context`` attribute can be evaluated: a :class:`~dimalib.world_model.DIMAWorldModel`
(its dynamics model is used), a :class:`~dimalib.world_model.dynamics.SequentialAgentDenoiser` or
:class:`~dimalib.world_model.dynamics.JointActionDenoiser`, or a
:class:`~dimalib.world_model.ProbabilisticEnsemble`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from dimalib.data.buffer import ReplayBuffer
from dimalib.utils.checks import check_tensor
from dimalib.world_model.aggregate import DIMAWorldModel
from dimalib.world_model.dynamics.reveal import Order, RevealSchedule
from dimalib.world_model.protocols import DynamicsModel

__all__ = [
    "ActionEffect",
    "NextStatePredictor",
    "action_effects",
    "cumulative_l1",
    "one_step_error",
    "open_loop_states",
    "order_spread",
    "real_segments",
]


NextStatePredictor = DynamicsModel
"""What :func:`open_loop_states` needs from a dynamics model (an alias of
:class:`~dimalib.world_model.protocols.DynamicsModel`)."""


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
    reveal: RevealSchedule | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Predict ``horizon`` states open loop from real contexts and real actions.

    Args:
        model: a world model (its dynamics model is used) or any :class:`NextStatePredictor`.
        states: ``[B, L, S]`` real context ``s_{t−L+1..t}`` (``L = model.context``).
        actions: ``[B, L − 1 + horizon, A]`` real actions ``a_{t−L+1..t+horizon−1}``.
        order: conditioning order for a sequential denoiser (ignored by the other models).
        reveal: reveal schedule for a denoiser (default: the model's; ignored by the others).
        generator: makes the start noises reproducible.

    Returns:
        ``[B, horizon, S]`` predicted ``s_{t+1..t+horizon}``, each fed back as context.
    """
    dynamics: NextStatePredictor = model.dynamics if isinstance(model, DIMAWorldModel) else model
    spec = model.spec
    L, S, A = dynamics.context, spec.state_dim, spec.joint_action_dim
    check_tensor("states", states, (None, L, S), floating=True, finite=True)
    check_tensor(
        "actions", actions, (states.shape[0], L - 1 + horizon, A), floating=True, finite=True
    )
    model.eval()
    ctx = states
    out = []
    for h in range(horizon):
        nxt = dynamics.predict_next_state(
            ctx,
            actions[:, h : h + L],
            order=order,
            reveal=reveal,
            generator=generator,
            check_inputs=False,
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


# ------------------------------------------------------------------ action-effect diagnostics
class ActionEffect(NamedTuple):
    """How a model's next state answers one agent's action (:func:`action_effects`).

    Attributes:
        agent: the agent whose current action was changed.
        first_step: the denoising step at which the schedule first reveals that agent (``None``
            for models without a reveal schedule and for random orders).
        ratio: ``Σ_b ||Δ̂_b|| / Σ_b ||Δ_b||``, predicted against true change (1 is right; 0 the
            model ignores the agent).
        cosine: mean over samples of ``cos(Δ̂_b, Δ_b)`` (1 is the right direction).
    """

    agent: int
    first_step: int | None
    ratio: float
    cosine: float


def _first_steps(
    model: Any, order: Order | None, reveal: RevealSchedule | None
) -> list[int | None]:
    n = model.spec.n_agents
    sampler = getattr(model, "sampler", None)
    if sampler is None or not hasattr(sampler, "schedule"):
        return [None] * n
    if order is None:
        order = sampler.config.order
    if order == "random":
        return [None] * n
    if reveal is not None:
        reveal = reveal.for_team(model.spec)
    masks = sampler.schedule(n, 1, order=order, reveal=reveal, agent_names=model.spec.agent_names)
    first = masks[0].int().argmax(dim=0)  # (n,) the first step that reveals each agent
    return [int(f) for f in first]


@torch.inference_mode()
def action_effects(
    model: DIMAWorldModel | NextStatePredictor,
    states: torch.Tensor,
    actions: torch.Tensor,
    true_next_state: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    mask: torch.Tensor | None = None,
    delta: float = 0.5,
    scale: torch.Tensor | None = None,
    order: Order | None = None,
    reveal: RevealSchedule | None = None,
    seed: int = 0,
) -> list[ActionEffect]:
    """Per agent, the predicted change of the next state when that agent's action changes,
    against the true change (fidelity issue; docs/design.md).

    For each agent ``i`` the current action of agent ``i`` alone is moved by ``δ ~ U[−delta,
    delta]`` per entry (then clipped to the spec's bounds); the model predicts both next states
    from the **same start noise** (the same generator seed), and ``true_next_state`` gives both
    true ones (noise-free: e.g. :meth:`~dimalib.envs.linear.LinearGaussianSystem.mean_next_state`
    or a simulator stepped from the same state, :class:`~dimalib.envs.mamujoco_dynamics.MuJoCoStepper`).

    Args:
        model: a world model (its dynamics model) or any :class:`NextStatePredictor`.
        states: ``[B, L, S]`` contexts; actions: ``[B, L, A]`` (the last is the current one).
        true_next_state: ``(state_t [B, S], action_t [B, A]) -> s_{t+1} [B, S]``.
        mask: ``[B, L]`` bool, False on padded context steps (default: all valid).
        delta: half-width of the per-entry perturbation.
        scale: ``[S]`` per-entry scale of the state (e.g. the data's std) so every entry counts
            alike; default 1.
        order: the conditioning order to measure (default: the model's).
        reveal: the reveal schedule to measure (default: the model's).
        seed: seeds the perturbations and the model's start noise.

    Returns:
        One :class:`ActionEffect` per agent, in agent order.
    """
    dynamics: NextStatePredictor = model.dynamics if isinstance(model, DIMAWorldModel) else model
    spec = model.spec
    L, S, A = dynamics.context, spec.state_dim, spec.joint_action_dim
    check_tensor("states", states, (None, L, S), floating=True, finite=True)
    check_tensor("actions", actions, (states.shape[0], L, A), floating=True, finite=True)
    if not delta > 0:
        raise ValueError(f"delta: expected > 0, received {delta}")
    if scale is None:
        scale = torch.ones(S, dtype=states.dtype, device=states.device)
    check_tensor("scale", scale, (S,), floating=True, finite=True)
    model.eval()
    low, high = spec.action_bounds(device=actions.device)
    g = torch.Generator(device=states.device).manual_seed(seed)

    def predict(acts: torch.Tensor) -> torch.Tensor:
        noise = torch.Generator(device=states.device).manual_seed(seed + 1)
        return dynamics.predict_next_state(
            states, acts, mask, order=order, reveal=reveal, generator=noise, check_inputs=False
        )

    base_pred = predict(actions)
    base_true = true_next_state(states[:, -1], actions[:, -1])
    firsts = _first_steps(dynamics, order, reveal)
    out = []
    for i, sl in enumerate(spec.action_slices):
        moved = actions.clone()
        d = (torch.rand(moved[:, -1, sl].shape, generator=g, device=g.device) * 2 - 1) * delta
        moved[:, -1, sl] = torch.maximum(torch.minimum(moved[:, -1, sl] + d, high[sl]), low[sl])
        dp = (predict(moved) - base_pred) / scale  # (B, S)
        dt = (true_next_state(states[:, -1], moved[:, -1]) - base_true) / scale
        ratio = float(dp.norm(dim=1).sum() / dt.norm(dim=1).sum().clamp_min(1e-12))
        cosine = float(torch.nn.functional.cosine_similarity(dp, dt, dim=1, eps=1e-12).mean())
        out.append(ActionEffect(i, firsts[i], ratio, cosine))
    return out
