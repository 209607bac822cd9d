"""Deterministic against stochastic evaluation of a run's actor, and where its episodes fail.

The trainers evaluate the actor's mean action (``Trainer.evaluate``); collection samples from it.
Late in some HalfCheetah-2x3 runs the two disagree by more than 1000 per episode (learning-evidence
issue). For one or more checkpoints this runs ``--episodes`` real 1000-step episodes with each
kind of action (the same reset seeds) and reports per mode: the mean and spread of the return,
the return of the first ``--split`` steps against the rest (a run that resets its envs every
epoch, ``reset_envs_each_epoch=True``, only stores the first ``env_steps_per_epoch`` steps of
each episode), and, where the state has a pitch angle (``rooty``: HalfCheetah, Hopper,
Walker2d), how many episodes turn over (``cos(pitch) < 0``) and the median step at which they
first do; where it has the root's forward velocity (``rootx``), its mean (HalfCheetah's forward
reward per step before the control cost).

``--csv`` instead reads finished runs' ``metrics.csv`` files (e.g. the committed reference
curves) and sets each evaluation from ``--from-steps`` on against the rate the same run's sampled
collection earned around it (1000 × ``collect/reward_mean`` over the epochs within ``--window``
env steps): where the mean action's evaluation falls while collection does not, the fall is the
mean action's, not the policy's.

    python benchmarks/eval_modes.py --run runs/remedy/dima-noreset-HalfCheetah-2x3-0 --threads 1
    python benchmarks/eval_modes.py --csv docs/results/DIMA*.csv --from-steps 50000
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from pathlib import Path

import torch
from _common import machine, print_table

from dimalib.envs.mamujoco_state import state_labels
from dimalib.training.trainer import Trainer, make_vector_env


def state_index(env_name: str, kind: str, joint: str) -> int | None:
    """The state entry ``kind`` (``"qpos"`` / ``"qvel"``) of the root joint ``joint``
    (``"rooty"``: pitch, ``"rootx"``: forward), None where the state has none."""
    try:
        labels = state_labels(env_name)
    except (ValueError, TypeError):
        return None
    hits = [i for i, label in enumerate(labels) if label.startswith(kind) and joint in label]
    return hits[0] if hits else None


def episodes(
    trainer: Trainer, n: int, *, deterministic: bool, seed: int, split: int
) -> dict[str, float]:
    """``n`` real episodes of ``trainer``'s actor, one per env copy (reset seeds ``seed + i``)."""
    venv = make_vector_env(
        trainer.env_name,
        n,
        seed=seed,
        max_episode_steps=trainer.config.max_episode_steps,
        device=trainer.device,
    )
    pitch = state_index(trainer.env_name, "qpos", "rooty")
    forward = state_index(trainer.env_name, "qvel", "rootx")
    torch.manual_seed(seed)
    try:
        _, obs = venv.reset(seed=seed)
        rewards: list[torch.Tensor] = []  # per step: [n]
        flipped: list[torch.Tensor] = []  # per step: [n] bool
        speed: list[torch.Tensor] = []  # per step: [n] forward velocity
        alive = torch.ones(n, dtype=torch.bool)
        trainer.learner.eval()
        with torch.inference_mode():
            while bool(alive.any()):
                out = venv.step(trainer.learner.act(obs, deterministic=deterministic))
                rewards.append(out.reward.cpu().double() * alive)
                if pitch is not None:
                    flipped.append((out.final_state[:, pitch].cpu().cos() < 0) & alive)
                if forward is not None:
                    speed.append(out.final_state[:, forward].cpu().double() * alive)
                alive &= ~out.done.cpu()
                obs = out.next_obs
    finally:
        venv.close()
    r = torch.stack(rewards)  # (T, n)
    result = {
        "return_mean": float(r.sum(0).mean()),
        "return_std": float(r.sum(0).std(unbiased=False)),
        "return_min": float(r.sum(0).min()),
        f"first_{split}_mean": float(r[:split].sum(0).mean()),
        f"after_{split}_mean": float(r[split:].sum(0).mean()),
        "steps": float(r.shape[0]),
    }
    if speed:  # mean over each episode's steps, then over episodes
        result["forward_velocity"] = float((torch.stack(speed).sum(0) / r.shape[0]).mean())
    if flipped:
        f = torch.stack(flipped)  # (T, n)
        ever = f.any(0)
        first = f.float().argmax(0)[ever].tolist()
        result["turned_over"] = float(ever.sum())
        result["first_turn_median"] = float(statistics.median(first)) if first else math.nan
        result["turned_fraction_of_steps"] = float(f.double().mean())
    return result


def recent_states(trainer: Trainer, rows: int) -> torch.Tensor:
    """The ``rows`` most recently stored states of the replay buffer's first stream ``[K, S]``
    (read through its public block copies)."""
    buffer, have = trainer.buffer, 0
    parts: list[torch.Tensor] = []
    for k in reversed(range(buffer.num_blocks)):
        block = buffer.block(k)["state"][0]  # (rows of block k, S), stream 0
        parts.insert(0, block)
        have += block.shape[0]
        if have >= rows:
            break
    return torch.cat(parts)[-rows:]


def start_returns(
    trainer: Trainer, horizons: list[int], n: int, *, seed: int, recent: int
) -> list[tuple[str, int, float, float]]:
    """The mean action's real ``H``-step return (true simulator) from three start
    distributions: uniform replay rows (where imagination starts), the ``recent`` most recent
    rows, and the env's reset states (where every evaluation episode starts).
    Returns ``(starts, H, mean, std)`` rows."""
    from dimalib.training.diagnostics import true_dynamics

    true = true_dynamics(trainer.env_name, max_episode_steps=trainer.config.max_episode_steps)
    if true is None:
        return []
    g = torch.Generator().manual_seed(seed)
    context = trainer.world_model.dynamics.context
    replay = trainer.buffer.sample_start_contexts(n, context=context, generator=g)["states"][:, -1]
    pool = recent_states(trainer, recent)
    latest = pool[torch.randint(pool.shape[0], (n,), generator=g)]
    venv = make_vector_env(trainer.env_name, n, seed=seed)
    try:
        reset, _ = venv.reset(seed=seed)
    finally:
        venv.close()
    policy = lambda obs: trainer.learner.act(obs, deterministic=True)  # noqa: E731
    rows = []
    for name, states in (
        ("replay (uniform)", replay),
        (f"replay (last {recent:,})", latest),
        ("env reset", reset),
    ):
        for h in horizons:
            with torch.inference_mode():
                ret = true.rollout(states.float(), policy, h)["rewards"].sum(0).double()
            rows.append((name, h, float(ret.mean()), float(ret.std(unbiased=False))))
    return rows


def actor_std(trainer: Trainer) -> float:
    """The mean over action entries of the Gaussian actor's σ (NaN for other policies)."""
    actor = getattr(trainer.learner, "actor", None)  # MAPPO's actor network
    modules = actor.modules() if isinstance(actor, torch.nn.Module) else ()
    stds = [
        torch.sigmoid(param.detach()) * float(getattr(m, "config").std_scale)  # noqa: B009
        for m in modules
        if isinstance(param := getattr(m, "std_param", None), torch.Tensor)
    ]
    return float(torch.cat(stds).mean()) if stds else math.nan


def csv_rows(paths: list[Path], from_steps: int, window: int) -> list[tuple[str, ...]]:
    """Per ``metrics.csv``: the evaluations from ``from_steps`` on against the collection rate.

    Returns rows ``(run, evaluations, mean eval, mean collection rate, evals below half the
    collection rate, median eval std, the largest fall from one evaluation to the next)``; the collection rate is 1000 × the mean
    ``collect/reward_mean`` of the epochs within ``window`` env steps of each evaluation."""
    out: list[tuple[str, ...]] = []
    for path in paths:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        collect = [
            (float(r["env_steps"]), float(r["collect/reward_mean"]))
            for r in rows
            if r.get("collect/reward_mean")
        ]
        evals, rates, stds, steps, below = [], [], [], [], 0
        for r in rows:
            if not r.get("eval/return_mean") or float(r["env_steps"]) < from_steps:
                continue
            at = float(r["env_steps"])
            near = [v for s, v in collect if abs(s - at) <= window]
            rate = 1000.0 * statistics.fmean(near) if near else math.nan
            evals.append(float(r["eval/return_mean"]))
            steps.append(int(at))
            rates.append(rate)
            stds.append(float(r["eval/return_std"]))
            below += evals[-1] < 0.5 * rate
        if not evals:
            continue
        falls = [(evals[i - 1] - evals[i], i) for i in range(1, len(evals))]
        drop, at_i = max(falls, default=(math.nan, 0))
        out.append(
            (
                path.parent.name if path.stem == "metrics" else path.stem,
                str(len(evals)),
                f"{statistics.fmean(evals):.0f}",
                f"{statistics.fmean(rates):.0f}",
                f"{below}/{len(evals)}",
                f"{statistics.median(stds):.0f}",
                f"{drop:.0f} ({evals[at_i - 1]:.0f} → {evals[at_i]:.0f} at {steps[at_i]:,})"
                if drop > 0  # NaN (one evaluation) and rises only: no fall to report
                else "",
            )
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", nargs="+", default=[], help="run folders (with checkpoint.pt)")
    p.add_argument("--csv", nargs="+", type=Path, default=[], help="finished runs' metrics CSVs")
    p.add_argument("--from-steps", type=int, default=50_000, help="--csv: evaluations from here")
    p.add_argument("--window", type=int, default=2000, help="--csv: collection window (steps)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--split", type=int, default=200, help="first-steps window (default 200)")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    p.add_argument(
        "--start-horizons",
        type=int,
        nargs="*",
        default=[15, 100],
        help="also the mean action's real H-step return from replay, recent and reset starts",
    )
    p.add_argument("--recent", type=int, default=2000, help="rows counted as recent")
    args = p.parse_args()
    if not args.run and not args.csv:
        p.error("--run or --csv: expected at least one run folder or CSV file, received none")
    torch.set_num_threads(args.threads)
    print(machine())
    if args.csv:
        print_table(
            f"Mean-action evaluations from {args.from_steps:,} env steps against sampled collection",
            csv_rows(args.csv, args.from_steps, args.window),
            (
                "run",
                "evaluations",
                "mean eval return",
                "collection rate (1000 x reward/step)",
                "evals < half the rate",
                "median eval std",
                "largest fall between evaluations",
            ),
        )
    rows: list[list[str]] = []
    blob: dict[str, dict[str, float]] = {}
    starts: list[tuple[str, ...]] = []
    for run in args.run:
        trainer = Trainer.resume(Path(run) / "checkpoint.pt", tensorboard=False)
        try:
            for mode in ("mean action", "sampled"):
                res = episodes(
                    trainer,
                    args.episodes,
                    deterministic=mode == "mean action",
                    seed=args.seed,
                    split=args.split,
                )
                blob[f"{run}|{mode}"] = {"env_steps": trainer.env_steps, **res}
                rows.append(
                    [
                        Path(run).name,
                        f"{trainer.env_steps:,}",
                        mode,
                        f"{res['return_mean']:.0f} ± {res['return_std']:.0f}",
                        f"{res['return_min']:.0f}",
                        f"{res[f'first_{args.split}_mean']:.0f}",
                        f"{res[f'after_{args.split}_mean']:.0f}",
                        f"{res.get('forward_velocity', math.nan):.2f}",
                        f"{res.get('turned_over', math.nan):.0f}/{args.episodes}",
                        f"{res.get('first_turn_median', math.nan):.0f}",
                        f"{actor_std(trainer):.3f}",
                    ]
                )
            for name, h, mean, std in start_returns(
                trainer, args.start_horizons, args.episodes, seed=args.seed, recent=args.recent
            ):
                blob[f"{run}|start {name}|H={h}"] = {"mean": mean, "std": std}
                starts.append((Path(run).name, f"{trainer.env_steps:,}", name, str(h),
                               f"{mean:.1f} ± {std:.1f}"))  # fmt: skip
        finally:
            trainer.close()
    if starts:
        print_table(
            "The mean action's real H-step return by start state",
            starts,
            ("run", "env steps", "starts", "H", "return"),
        )
    if rows:
        print_table(
            f"Mean action against sampled actions, {args.episodes} episodes each",
            [tuple(r) for r in rows],
            (
                "run",
                "env steps",
                "actions",
                "return",
                "min",
                f"steps < {args.split}",
                f"steps >= {args.split}",
                "forward velocity",
                "turned over",
                "first turn (median step)",
                "actor σ (mean)",
            ),
        )
    if args.json is not None:
        args.json.write_text(json.dumps(blob, indent=1) + "\n")


if __name__ == "__main__":
    main()
