"""Model-free MAPPO in the real env: the baseline for DIMA, with the very same learner.

The learner is dimalib's :class:`~dimalib.algorithms.MAPPO` with the same ``MAPPOConfig`` DIMA uses
(Tables 1 and 4: shared actor on observations, critic on the global state, λ-returns with λ 0.95,
PPO clip 0.1, 5 PPO epochs, Adam 5e-4, ValueNorm). Only the data differ: on-policy rollouts of
``--rollout-steps`` batched steps from ``--num-envs`` real env copies instead of imagined ones, and
the discount of step ``t`` is ``γ·(1 − done_t)`` from the real termination. Where an episode is cut
by the time limit (truncated, not terminated) the rollout's next state is already the new
episode's, so the value of the true last state is folded into the reward,
``r_t + γ·V(s_final)``, and the discount is 0 (the usual time-limit bootstrap).

    python examples/mappo.py --env HalfCheetah-2x3 --total-env-steps 1000000
    python examples/mappo.py --env toy --total-env-steps 20000 --num-envs 4 --rollout-steps 100

Writes ``OUT/metrics.csv`` (one row per update, evaluation every ``--eval-every`` env steps with
10 deterministic episodes in separate env copies; ``--eval-sampled-actions`` adds as many with
sampled actions), TensorBoard events when available, and the final
learner as ``OUT/mappo.pt``. Default ``--out``: ``runs/mappo-ENV-SEED``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from dimalib.algorithms.mappo import MAPPO, MAPPOConfig
from dimalib.envs.registry import UnknownEnvError, known_names, lookup
from dimalib.training.trainer import (
    MetricsLogger,
    RealVectorEnv,
    evaluate_policy,
    make_vector_env,
)
from dimalib.utils.checks import check_device
from dimalib.utils.io import atomic_save
from dimalib.utils.threads import auto_threads

ENV_NAMES = known_names()  # the registered names (dimalib.envs.registry); patterns work too


def collect_rollout(
    venv: RealVectorEnv, mappo: MAPPO, steps: int, generator: torch.Generator
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """``steps`` on-policy batched steps → MAPPO's rollout dict (with ``discounts``)."""
    gamma, device = mappo.config.gamma, mappo.device
    state, obs = venv.state.to(device), venv.obs.to(device)
    keys = ("obs", "state", "actions", "log_probs", "rewards", "discounts")
    data: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    finished: list[float] = []
    with torch.no_grad():
        for _ in range(steps):
            out = mappo.actor.act(obs, generator=generator)
            res = venv.step(out.action)
            reward = res.reward.to(device)
            terminated, truncated = res.terminated.to(device), res.truncated.to(device)
            if bool(truncated.any()):  # time limit: bootstrap from the true last state
                v_final = mappo.critic.value(res.final_state.to(device))
                reward = torch.where(truncated & ~terminated, reward + gamma * v_final, reward)
            done = terminated | truncated
            step = {
                "obs": obs, "state": state, "actions": out.policy_action,
                "log_probs": out.log_prob, "rewards": reward,
                "discounts": gamma * (~done).float(),
            }  # fmt: skip
            for k, v in step.items():
                data[k].append(v)
            finished += res.episode_return[res.done].tolist()
            state, obs = res.next_state.to(device), res.next_obs.to(device)
    data["state"].append(state)  # s_T bootstraps the last step
    return {k: torch.stack(v) for k, v in data.items()}, finished


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--env", required=True, help=f"one of {ENV_NAMES} or a MAMuJoCo 'Scenario-Conf' name"
    )
    p.add_argument("--total-env-steps", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-envs", type=int, default=10, help="parallel real env copies")
    p.add_argument("--rollout-steps", type=int, default=400, help="batched steps per update")
    p.add_argument("--eval-every", type=int, default=10_000, help="env steps between evaluations")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--eval-sampled-actions", action="store_true",
                   help="also evaluate sampled actions (eval/sampled_return_*; training unchanged)")  # fmt: skip
    p.add_argument("--max-episode-steps", type=int, default=None)
    p.add_argument("--out", default=None, help="output folder (default runs/mappo-ENV-SEED)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: the cores the load average leaves free)")  # fmt: skip
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        entry = lookup(args.env)
    except UnknownEnvError as exc:
        print(f"error: --env: {str(exc).removeprefix('name: ')}", file=sys.stderr)
        return 2
    problems = [
        f"--{name.replace('_', '-')}: expected a positive integer, received {value}"
        for name, value in vars(args).items()
        if name in ("total_env_steps", "num_envs", "rollout_steps", "eval_every", "eval_episodes",
                    "threads", "max_episode_steps")
        and value is not None and value < 1
    ]  # fmt: skip
    try:
        check_device("--device", args.device)
    except ValueError as exc:
        problems.append(str(exc))
    if args.seed < 0:
        problems.append(f"--seed: expected a non-negative integer, received {args.seed}")
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        return 2
    torch.set_num_threads(auto_threads() if args.threads is None else args.threads)
    torch.manual_seed(args.seed)
    try:
        venv = make_vector_env(args.env, args.num_envs, seed=args.seed,
                               max_episode_steps=args.max_episode_steps)  # fmt: skip
        eval_venv = make_vector_env(args.env, args.eval_episodes, seed=args.seed + 1,
                                    max_episode_steps=args.max_episode_steps)  # fmt: skip
    except (ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    config = MAPPOConfig.bidexhands() if entry.family == "bidexhands" else MAPPOConfig.mamujoco()
    mappo = MAPPO(venv.spec, config, args.device)
    generator = torch.Generator(mappo.device).manual_seed(args.seed)
    out = Path(args.out or f"runs/mappo-{args.env}-{args.seed}")
    metrics = MetricsLogger(out)
    seedable = entry.seedable  # Isaac Gym is seeded once, when built
    venv.reset(seed=args.seed if seedable else None)

    env_steps, update, next_eval, start = 0, 0, args.eval_every, time.perf_counter()
    recent: list[float] = []
    status = 0
    try:
        while env_steps < args.total_env_steps:
            rollout, finished = collect_rollout(venv, mappo, args.rollout_steps, generator)
            stats = mappo.update(rollout, generator=generator)
            env_steps += args.rollout_steps * venv.num_envs
            update += 1
            recent = (recent + finished)[-20:]
            row: dict[str, float] = {"update": update, "env_steps": env_steps}
            row["train/episode_return"] = sum(recent) / len(recent) if recent else float("nan")
            row.update({f"policy/{k}": v for k, v in stats.items()})
            if env_steps >= next_eval or env_steps >= args.total_env_steps:
                eval_seed = (args.seed + 10_000 + env_steps) if seedable else None
                row.update(evaluate_policy(
                    eval_venv, lambda o: mappo.act(o, deterministic=True), seed=eval_seed
                ))  # fmt: skip
                if args.eval_sampled_actions:  # own generator: training's stream is untouched
                    eval_gen = torch.Generator(mappo.device).manual_seed(args.seed + env_steps)
                    sampled = evaluate_policy(
                        eval_venv, lambda o, g=eval_gen: mappo.act(o, generator=g), seed=eval_seed
                    )
                    row["eval/sampled_return_mean"] = sampled["eval/return_mean"]
                    row["eval/sampled_return_std"] = sampled["eval/return_std"]
                while next_eval <= env_steps:
                    next_eval += args.eval_every
            rate = env_steps / (time.perf_counter() - start)
            row["perf/env_steps_per_s"] = rate
            metrics.log(row)
            ev = row.get("eval/return_mean")
            print(f"update {update} | env steps {env_steps:,} | {rate:.0f} steps/s | train return "
                  f"{row['train/episode_return']:.1f}" + ("" if ev is None else f" | eval {ev:.1f}"),
                  file=sys.stderr, flush=True)  # fmt: skip
    except KeyboardInterrupt:
        print("interrupted: saving the learner", file=sys.stderr)
        status = 130
    finally:
        venv.close()
        eval_venv.close()
        metrics.close()
    out.mkdir(parents=True, exist_ok=True)
    atomic_save({"env": args.env, "env_steps": env_steps, "mappo": mappo.state_dict()},
                out / "mappo.pt", kind="mappo_baseline", version=1)  # fmt: skip
    print(f"{'interrupted' if status else 'done'}: {env_steps:,} env steps; metrics in "
          f"{out / 'metrics.csv'}, learner in {out / 'mappo.pt'}")  # fmt: skip
    return status


if __name__ == "__main__":
    sys.exit(main())
