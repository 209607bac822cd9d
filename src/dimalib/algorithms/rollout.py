"""The rollout dict of learning in imagination: collecting it and checking it.

Paper Algorithm 1, ``update_actor_critic``: ``B`` rollouts of ``T`` steps imagined from real start
contexts. :func:`imagine_rollout` collects one with any batched policy that returns an
:class:`~dimalib.algorithms.networks.ActorOutput`; :func:`check_rollout` validates what
:meth:`~dimalib.algorithms.mappo.MAPPO.update` consumes. The keys and shapes are tabulated in
:class:`~dimalib.algorithms.mappo.MAPPO`'s docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from dimalib.algorithms.networks import ActorOutput
from dimalib.algorithms.protocols import ImaginationEnvLike
from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import check_finite, check_tensor

__all__ = ["ROLLOUT_KEYS", "check_rollout", "imagine_rollout"]

ROLLOUT_KEYS = ("obs", "state", "actions", "log_probs", "rewards")
"""The keys every rollout given to an update holds (plus ``discounts`` or ``termination_prob``)."""


@torch.no_grad()
def imagine_rollout(
    policy: Callable[[torch.Tensor], ActorOutput],
    imagination_env: ImaginationEnvLike,
    horizon: int | None = None,
    *,
    seed: int | None = None,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Reset ``imagination_env`` with ``seed`` and step it with ``policy`` for ``horizon`` steps.

    Everything stays on the devices (no host synchronisation per step).

    Args:
        policy: ``(B, O)`` imagined joint observations → :class:`ActorOutput` with ``action
            (B, A)`` (environment units, what the env receives), ``policy_action (B, A)`` and
            ``log_prob (B, n)``; it draws its own noise (e.g. from a captured generator).
        imagination_env: an :class:`~dimalib.imagination.ImaginationEnv` or anything with its
            ``horizon``, ``reset(seed=)`` and ``step(joint_action)``.
        horizon: steps to take (default and maximum: the env's horizon).
        seed: passed to ``imagination_env.reset``.
        device: where the rollout's tensors are gathered.

    Returns:
        ``obs (T, B, O)``, ``state (T+1, B, S)`` (``s_T`` bootstraps), ``actions (T, B, A)``
        (policy space), ``env_actions (T, B, A)``, ``log_probs (T, B, n)``, ``mask (T, B)``
        (True while the rollout had not terminated before step ``t``), ``rewards (T, B)``,
        ``termination_prob (T, B)`` (both float32) and ``terminated (T, B)`` (after step ``t``).

    Raises:
        ValueError: ``horizon`` not an integer in ``[1, imagination_env.horizon]``.
    """
    max_horizon = int(imagination_env.horizon)
    horizon = max_horizon if horizon is None else horizon
    if not isinstance(horizon, int) or not 1 <= horizon <= max_horizon:
        raise ValueError(
            f"horizon: expected an integer in [1, {max_horizon}] (the env's horizon), "
            f"received {horizon!r}"
        )
    obs, state = imagination_env.reset(seed=seed)
    obs, state = obs.to(device), state.to(device)
    alive = torch.ones(obs.shape[0], dtype=torch.bool, device=device)
    steps: dict[str, list[torch.Tensor]] = {}
    for _ in range(horizon):
        out = policy(obs)
        step = imagination_env.step(out.action)
        record = {
            "obs": obs,  # (B, O) o_t
            "state": state,  # (B, S) s_t
            "actions": out.policy_action,  # (B, A)
            "env_actions": out.action,  # (B, A)
            "log_probs": out.log_prob,  # (B, n)
            "mask": alive,  # (B,) not terminated before step t
            "rewards": step.reward,  # (B,) r_t
            "termination_prob": step.termination_prob,  # (B,) p_t
            "terminated": step.terminated,  # (B,) after step t
        }
        for key, value in record.items():
            steps.setdefault(key, []).append(value.to(device))
        obs, state = step.obs.to(device), step.state.to(device)
        alive = ~step.terminated.to(device)
    steps["state"].append(state)  # s_T, for bootstrapping
    rollout = {k: torch.stack(v) for k, v in steps.items()}
    rollout["rewards"] = rollout["rewards"].float()
    rollout["termination_prob"] = rollout["termination_prob"].float()
    return rollout


def check_rollout(
    rollout: Mapping[str, torch.Tensor], spec: MultiAgentSpec, device: torch.device
) -> dict[str, torch.Tensor]:
    """Validate a rollout for an update and move its used entries to ``device``.

    Checks the keys (:data:`ROLLOUT_KEYS` and exactly one of ``discounts`` /
    ``termination_prob``), the shapes against ``spec`` (``T`` and ``B`` from ``rewards``) and
    finiteness (one host check per tensor).

    Returns:
        ``rewards``, ``obs``, ``state``, ``actions``, ``log_probs``, the given one of
        ``discounts`` / ``termination_prob`` and, if given, ``mask``; other keys are dropped.

    Raises:
        ValueError: naming the offending key.
    """
    if not isinstance(rollout, Mapping):
        raise ValueError(
            f"rollout: expected a mapping of tensors, received {type(rollout).__name__}"
        )
    missing = [k for k in ROLLOUT_KEYS if k not in rollout]
    if missing:
        raise ValueError(f"rollout: missing keys {missing}; received keys {sorted(rollout)}")
    has_d, has_p = "discounts" in rollout, "termination_prob" in rollout
    if has_d == has_p:
        raise ValueError(
            "rollout: expected exactly one of 'discounts' and 'termination_prob', received "
            f"{'both' if has_d else 'neither'}"
        )
    rewards = check_tensor("rollout['rewards']", rollout["rewards"], (None, None), floating=True)
    T, B = rewards.shape
    shapes = {
        "obs": (T, B, spec.joint_obs_dim),
        "state": (T + 1, B, spec.state_dim),
        "actions": (T, B, spec.joint_action_dim),
        "log_probs": (T, B, spec.n_agents),
        "discounts": (T, B),
        "termination_prob": (T, B),
    }
    out: dict[str, torch.Tensor] = {"rewards": rewards}
    for key, shape in shapes.items():
        if key in rollout:
            out[key] = check_tensor(f"rollout[{key!r}]", rollout[key], shape, floating=True)
    for key, value in out.items():
        check_finite(f"rollout[{key!r}]", value)
    if "mask" in rollout:
        out["mask"] = check_tensor("rollout['mask']", rollout["mask"], (T, B))
    return {k: v.to(device) for k, v in out.items()}
