"""Return targets for learning in imagination: the λ-return of DIMA's eq. 19 (paper App. C).

:func:`lambda_returns` is DreamerV1's λ-return (its eq. 6), which DIMA's MAPPO uses as the critic
target and, minus the critic's value, as the team advantage (see
:meth:`dimalib.algorithms.mappo.MAPPO.prepare_batch`).
"""

from __future__ import annotations

import torch

from dimalib.utils.checks import check_tensor

__all__ = ["lambda_returns"]


def lambda_returns(
    rewards: torch.Tensor, values: torch.Tensor, discounts: torch.Tensor, lam: float
) -> torch.Tensor:
    """λ-returns of eq. 19 (DreamerV1's form), computed backwards in time.

    With ``T`` imagined steps, step ``t`` (0-based) takes action ``a_t`` in state ``s_t`` and
    receives ``r_t`` and ``d_t``; ``values[t] = V(s_t)`` for ``t = 0..T`` (``values[T]`` is the
    state after the last action, used only to bootstrap)::

        V^λ_T = V(s_T)
        V^λ_t = r_t + d_t · ((1 − λ) · V(s_{t+1}) + λ · V^λ_{t+1}),   t = T−1, …, 0

    Index map to the paper: its trajectory ``t = 1..H`` holds ``H = T + 1`` states; eq. 19's
    ``t < H`` branch is our ``t = 0..T−1`` and its ``t = H`` branch our ``V^λ_T``. Eq. 19 as
    printed writes ``(1 − λ) V_ξ(ŝ_t)``; we follow DreamerV1 (eq. 6 of the cited paper),
    ``(1 − λ) V(s_{t+1})``, which makes ``λ = 0`` the one-step TD target and ``λ = 1`` the
    bootstrapped discounted return. In DIMA ``d_t = γ · (1 − p_t)`` where ``p_t`` is the reward
    model's predicted termination probability of step ``t`` (its ``γ̂_t``), so a likely terminal
    transition stops bootstrapping (see :meth:`MAPPO.prepare_batch`).

    Args:
        rewards: ``[T, *]`` rewards ``r_t``.
        values: ``[T + 1, *]`` ``V(s_t)`` in return units (not normalised).
        discounts: ``[T, *]`` ``d_t``.
        lam: λ in [0, 1].

    Returns:
        ``[T, *]`` targets ``V^λ_t``.
    """
    check_tensor("rewards", rewards, floating=True)
    if rewards.dim() < 1:
        raise ValueError("rewards: expected shape (T, *), received a 0-d tensor")
    T, rest = rewards.shape[0], tuple(rewards.shape[1:])
    check_tensor("values", values, (T + 1, *rest), floating=True)
    check_tensor("discounts", discounts, (T, *rest), floating=True)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam: expected a value in [0, 1], received {lam!r}")
    out = torch.empty_like(rewards)
    next_return = values[T]
    for t in reversed(range(T)):
        next_return = rewards[t] + discounts[t] * ((1.0 - lam) * values[t + 1] + lam * next_return)
        out[t] = next_return
    return out
