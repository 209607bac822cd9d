"""PPO objectives of DIMA's MAPPO: eq. 20 (critic) and eq. 21 (actor) of the paper (App. C).

With MAPPO's practical changes: the Huber loss and the clipped value loss on ValueNorm-normalised
targets, and a team advantage shared by every agent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dimalib.algorithms.networks import masked_mean
from dimalib.utils.checks import check_tensor

__all__ = ["ppo_losses"]


def ppo_losses(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    *,
    clip: float = 0.1,
    entropy_coef: float = 0.001,
    value_clip: float | None = 0.1,
    huber_delta: float | None = 10.0,
    mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Actor loss (eq. 21) and critic loss (eq. 20 with MAPPO's Huber and value clipping).

    The team advantage ``A_t`` is shared by every agent (App. C): it is broadcast over the agent
    axis. Means run over every (sample, agent) pair where ``mask`` is set, i.e. the mean of the
    per-agent losses ``L^i_ψ`` of eq. 21 over agents.

    Actor::

        ρ = exp(log π − log π_old)
        policy_loss  = −mean(min(ρ A, clip(ρ, 1 − ε, 1 + ε) A))
        entropy_loss = −η · mean(H)
        actor_loss   = policy_loss + entropy_loss

    Critic (all in ValueNorm's normalised units)::

        v_clip      = v_old + clip(v − v_old, −ε_v, ε_v)
        value_loss  = mean(max(ℓ(R − v), ℓ(R − v_clip)))     (no max when value_clip is None)
        ℓ(e) = Huber_δ(e) = ½ e² if |e| ≤ δ else δ (|e| − ½ δ)   (½ e² when huber_delta is None)

    Args:
        log_probs: ``[*, n]`` log-probabilities under the current policy (with gradient).
        old_log_probs: ``[*, n]`` log-probabilities when the data was collected.
        advantages: ``[*]`` team advantages (already normalised if desired).
        entropy: ``[*, n]`` per-agent policy entropies.
        values: ``[*]`` current critic outputs (with gradient).
        old_values: ``[*]`` critic outputs when the batch was prepared.
        returns: ``[*]`` critic targets (normalised λ-returns).
        clip: PPO ε.
        entropy_coef: η.
        value_clip: ε_v, or None for the unclipped loss.
        huber_delta: δ, or None for ½ e².
        mask: ``[*]`` bool/float weights (steps to count); None counts everything.

    Returns:
        dict with scalar tensors ``actor_loss``, ``policy_loss``, ``entropy_loss``, ``entropy``,
        ``critic_loss`` (= ``value_loss``), ``value_loss``, ``ratio`` (mean), ``clip_fraction``
        (share of ratios outside ``[1 − ε, 1 + ε]``) and ``approx_kl`` (mean of
        ``(ρ − 1) − log ρ``, an estimator of KL(π_old ‖ π)).
    """
    check_tensor("log_probs", log_probs, floating=True)
    if log_probs.dim() < 1:
        raise ValueError("log_probs: expected shape (*, n), received a 0-d tensor")
    lead = tuple(log_probs.shape[:-1])
    check_tensor("old_log_probs", old_log_probs, tuple(log_probs.shape), floating=True)
    check_tensor("entropy", entropy, tuple(log_probs.shape), floating=True)
    for name, x in (
        ("advantages", advantages),
        ("values", values),
        ("old_values", old_values),
        ("returns", returns),
    ):
        check_tensor(name, x, lead, floating=True)
    if mask is not None:
        check_tensor("mask", mask, lead)
    if not clip > 0:
        raise ValueError(f"clip: expected a positive number, received {clip!r}")

    agent_mask = None if mask is None else mask[..., None]  # (*, 1) broadcast over agents
    log_ratio = log_probs - old_log_probs  # (*, n)
    ratio = log_ratio.exp()
    adv = advantages[..., None]  # (*, 1) the team advantage, shared by all agents
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)
    policy_loss = -masked_mean(surrogate, agent_mask)
    mean_entropy = masked_mean(entropy, agent_mask)
    entropy_loss = -entropy_coef * mean_entropy

    def error_loss(err: torch.Tensor) -> torch.Tensor:
        if huber_delta is None:
            return 0.5 * err.square()
        return F.huber_loss(err, torch.zeros_like(err), reduction="none", delta=huber_delta)

    loss = error_loss(returns - values)
    if value_clip is not None:
        clipped = old_values + (values - old_values).clamp(-value_clip, value_clip)
        loss = torch.maximum(loss, error_loss(returns - clipped))
    value_loss = masked_mean(loss, mask)

    with torch.no_grad():
        ratio_mean = masked_mean(ratio, agent_mask)
        clip_fraction = masked_mean(((ratio - 1.0).abs() > clip).to(ratio.dtype), agent_mask)
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, agent_mask)
    return {
        "actor_loss": policy_loss + entropy_loss,
        "policy_loss": policy_loss,
        "entropy_loss": entropy_loss,
        "entropy": mean_entropy,
        "critic_loss": value_loss,
        "value_loss": value_loss,
        "ratio": ratio_mean,
        "clip_fraction": clip_fraction,
        "approx_kl": approx_kl,
    }
