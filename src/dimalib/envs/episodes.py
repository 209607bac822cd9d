"""Episodes of a policy in a batched real env: the evaluation protocol of dimalib's trainers.

:func:`evaluate_policy` runs one episode per env copy (the deterministic actor in
:class:`~dimalib.training.Trainer` and ``examples/mappo.py``); :func:`is_seedable` says whether a
batched env's ``reset(seed=...)`` seeds it (Isaac Gym's does not).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dimalib.envs.vector import RealVectorEnv

__all__ = ["evaluate_policy", "is_seedable"]


def is_seedable(venv: RealVectorEnv) -> bool:
    """``reset(seed=...)`` seeds ``venv`` (not Isaac Gym's: ``seedable = False``)."""
    return bool(getattr(venv, "seedable", True))


def evaluate_policy(
    venv: RealVectorEnv,
    act: Callable[[torch.Tensor], torch.Tensor],
    *,
    seed: int | None = None,
    max_steps: int = 1_000_000,
) -> dict[str, float]:
    """Run one episode in each of ``venv``'s copies with ``act(joint_obs [N, O]) -> [N, A]``.

    The envs are reset with ``seed`` (copy ``i`` with ``seed + i``; no seed for Bi-DexHands);
    stepping continues until every copy has finished its first episode (finished copies keep
    stepping in their next episode, which is not counted).

    Returns:
        ``eval/return_mean``, ``eval/return_std`` (population std), ``eval/length_mean`` and
        ``eval/episodes``.

    Raises:
        RuntimeError: some copy did not finish an episode within ``max_steps`` steps.
    """
    n = venv.num_envs
    _, obs = venv.reset(seed=seed if is_seedable(venv) else None)
    finished = torch.zeros(n, dtype=torch.bool)
    returns = torch.zeros(n, dtype=torch.float64)
    lengths = torch.zeros(n, dtype=torch.int64)
    with torch.no_grad():
        for _ in range(max_steps):
            out = venv.step(act(obs))
            done = out.done.cpu()
            new = done & ~finished
            if bool(new.any()):
                returns[new] = out.episode_return.cpu().double()[new]
                lengths[new] = out.episode_length.cpu()[new]
                finished |= done
                if bool(finished.all()):
                    break
            obs = out.next_obs
        else:
            raise RuntimeError(
                f"evaluation: {int((~finished).sum())} of {n} episodes did not end within "
                f"{max_steps} steps; give the env a time limit (max_episode_steps)"
            )
    return {
        "eval/return_mean": float(returns.mean()),
        "eval/return_std": float(returns.std(unbiased=False)),
        "eval/length_mean": float(lengths.double().mean()),
        "eval/episodes": n,
    }
