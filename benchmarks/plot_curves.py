"""Learning curves of several runs (``metrics.csv`` of ``dima_mappo.py`` / ``mappo.py``) in one PNG,
with the aggregate table of a multi-seed comparison.

Runs are grouped by label; each group is drawn as its mean evaluation return against env steps
(on the union of the evaluation points, linearly interpolated) with every seed as a thin line.
Printed: a Markdown table of every run's final return and wall time and, for each ``--at`` env-step
count, each group's mean, interquartile mean (IQM: the mean of the middle 50% of seeds, as rliable
computes it with ``scipy.stats.trim_mean(x, 0.25)``) and a 95% percentile-bootstrap confidence
interval of the IQM over seeds (``--bootstrap`` resamples). The return "at" a step count is the
run's last evaluation at or before it (runs that stopped earlier are left out).

    python benchmarks/plot_curves.py --out docs/img/curves.png \\
        --run "DIMA+MAPPO=runs/dima/s0" --run "DIMA+MAPPO=runs/dima/s1" \\
        --glob "MAPPO=runs/ref/mappo-HalfCheetah-2x3-*" --at 25000 50000 100000 \\
        --summary docs/results/summary.json --copy-csv docs/results

``--copy-csv DIR`` copies each run's ``metrics.csv`` to ``DIR/<label>-<run folder>.csv`` with only
the evaluation rows and the columns a curve needs (small files to commit); ``--summary`` writes the
table as JSON. ``--dip-ref 10000`` adds the exploitation-dip check: each run's lowest evaluation
after 10k env steps against its own 10k evaluation, flagged when more than 20% lower.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

#: columns kept by --copy-csv (when present)
KEEP = (
    "epoch", "update", "env_steps", "eval/return_mean", "eval/return_std", "eval/length_mean",
    "collect/reward_mean", "policy/imagined_reward_mean", "policy/imagined_return",
    "time/total_s", "perf/env_steps_per_s", "eval/sampled_return_mean", "eval/sampled_return_std",
    "train/episode_return",
)  # fmt: skip


def read_eval(run: Path, metric: str = "eval/return_mean") -> tuple[np.ndarray, np.ndarray, float]:
    """``(env_steps, eval_return, wall_seconds)`` of one run's ``metrics.csv``; ``metric`` is
    the evaluation column read (``eval/sampled_return_mean``: the sampled actions' return where
    the run logged it, ``eval_sampled_actions``)."""
    steps, returns, wall = [], [], 0.0
    with open(run / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("time/total_s"):
                wall = float(row["time/total_s"])
            elif row.get("perf/env_steps_per_s"):  # mappo.py logs a rate, not a total
                wall = float(row["env_steps"]) / float(row["perf/env_steps_per_s"])
            if row.get(metric):
                steps.append(float(row["env_steps"]))
                returns.append(float(row[metric]))
    return np.array(steps), np.array(returns), wall


def iqm(values: np.ndarray) -> float:
    """Interquartile mean: the mean after cutting ``floor(0.25·n)`` values at each end."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    cut = int(0.25 * len(x))
    return float(x[cut : len(x) - cut].mean())


def bootstrap_ci(
    values: np.ndarray, stat: Any = iqm, reps: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``stat`` over the seeds."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(x), size=(reps, len(x)))
    stats = np.array([stat(x[d]) for d in draws])
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def value_at(steps: np.ndarray, returns: np.ndarray, at: float) -> float:
    """The last evaluation at or before ``at`` env steps (NaN if none, or if the run stopped
    before ``at``)."""
    ok = steps <= at
    if not ok.any() or steps[-1] < at:
        return float("nan")
    return float(returns[ok][-1])


def dip(steps: np.ndarray, returns: np.ndarray, ref: float, tol: float = 0.2) -> dict[str, Any]:
    """The "no exploitation dip" check: the run's evaluation at ``ref`` env steps (the last one at
    or before it), its lowest evaluation after that, and whether that lowest value falls more
    than ``tol`` (a fraction of ``|ref value|``) below it."""
    base = value_at(steps, returns, ref)
    later = returns[steps > ref]
    if np.isnan(base) or len(later) == 0:
        return {"ref": None, "min_after": None, "min_at": None, "fell": None}
    k = int(np.argmin(later))
    low = float(later[k])
    return {
        "ref": base,
        "min_after": low,
        "min_at": int(steps[steps > ref][k]),
        "fell": bool(low < base - tol * abs(base)),
    }


def _none_if_nan(x: float) -> float | None:
    return None if np.isnan(x) else x


def copy_csv(run: Path, out: Path) -> None:
    with open(run / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("eval/return_mean")]
    cols = [c for c in KEEP if rows and c in rows[0]]
    cols += sorted(c for c in (rows[0] if rows else {}) if c.startswith("fidelity/"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", action="append", default=[], help="LABEL=RUN_DIR (repeatable)")
    p.add_argument(
        "--glob",
        action="append",
        default=[],
        help="LABEL=PATTERN: every run folder matching the pattern",
    )
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument(
        "--metric",
        default="eval/return_mean",
        help="evaluation column aggregated (default eval/return_mean, the mean action's return; "
        "eval/sampled_return_mean: the sampled actions')",
    )
    p.add_argument("--title", default="HalfCheetah-2x3")
    p.add_argument(
        "--at",
        type=float,
        nargs="*",
        default=[],
        help="env-step counts for the aggregate table (default: the final evaluation)",
    )
    p.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples")
    p.add_argument("--summary", type=Path, default=None, help="JSON file for the aggregate table")
    p.add_argument("--copy-csv", type=Path, default=None, help="folder for small per-run CSVs")
    p.add_argument("--xmax", type=float, default=None, help="right end of the x axis")
    p.add_argument(
        "--dip-ref",
        type=float,
        default=None,
        help="env steps of the reference evaluation for the dip check (e.g. 10000): each run's "
        "lowest later evaluation against it, flagged when more than 20%% lower",
    )
    args = p.parse_args(argv)
    specs = list(args.run)
    for item in args.glob:
        label, _, pattern = item.partition("=")
        specs += [
            f"{label}={d}" for d in sorted(glob.glob(pattern)) if Path(d, "metrics.csv").exists()
        ]
    if not specs:
        p.error("no runs: pass --run or --glob")
    groups: dict[str, list[tuple[str, np.ndarray, np.ndarray, float]]] = defaultdict(list)
    for spec in specs:
        label, _, folder = spec.partition("=")
        steps, returns, wall = read_eval(Path(folder), args.metric)
        if len(steps) == 0:  # a run that has not evaluated yet (e.g. just started)
            print(f"skipped {folder}: no evaluation yet")
            continue
        groups[label].append((folder, steps, returns, wall))
        if args.copy_csv is not None:
            slug = re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{label}-{Path(folder).name}")
            copy_csv(Path(folder), args.copy_csv / f"{slug}.csv")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    print("| method | run | final eval return | env steps | wall time (min) |")
    print("|---|---|---|---|---|")
    summary: dict[str, Any] = {"groups": {}}
    for i, (label, runs) in enumerate(groups.items()):
        color = f"C{i}"
        grid = np.unique(np.concatenate([s for _, s, _, _ in runs]))
        if args.xmax is not None:
            grid = grid[grid <= args.xmax]
        curves = np.stack([np.interp(grid, s, r) for _, s, r, _ in runs])
        for _, s, r, _ in runs:
            keep = s <= (args.xmax or np.inf)
            ax.plot(s[keep], r[keep], color=color, alpha=0.35, lw=0.8)
        ax.plot(grid, curves.mean(0), color=color, lw=2, label=f"{label} (mean of {len(runs)})")
        finals = [float(r[-1]) for _, _, r, _ in runs]
        for folder, s, r, wall in runs:
            print(f"| {label} | `{folder}` | {r[-1]:.1f} | {int(s[-1]):,} | {wall / 60:.1f} |")
        spread = f" ± {statistics.stdev(finals):.1f}" if len(finals) > 1 else ""
        print(f"| **{label}** | mean | **{statistics.mean(finals):.1f}{spread}** | | |")
        group: dict[str, Any] = {
            "runs": [
                {
                    "folder": folder,
                    "final_return": float(r[-1]),
                    "final_env_steps": int(s[-1]),
                    "wall_minutes": wall / 60,
                    "returns_at": {str(int(a)): _none_if_nan(value_at(s, r, a)) for a in args.at},
                    **({"dip": dip(s, r, args.dip_ref)} if args.dip_ref is not None else {}),
                }
                for folder, s, r, wall in runs
            ],
            "at": {},
        }
        for a in args.at:
            vals = np.array([value_at(s, r, a) for _, s, r, _ in runs])
            vals = vals[np.isfinite(vals)]
            if len(vals) == 0:
                continue
            lo, hi = bootstrap_ci(vals, reps=args.bootstrap)
            group["at"][str(int(a))] = {
                "n": len(vals),
                "mean": float(vals.mean()),
                "iqm": iqm(vals),
                "ci95_iqm": [_none_if_nan(lo), _none_if_nan(hi)],
                "min": float(vals.min()),
                "max": float(vals.max()),
            }
        summary["groups"][label] = group
    if args.at:
        print("\n| method | env steps | seeds | mean | IQM | 95% CI of the IQM | min | max |")
        print("|---|---|---|---|---|---|---|---|")
        for label, group in summary["groups"].items():
            for a, st in group["at"].items():
                lo, hi = (float("nan") if v is None else v for v in st["ci95_iqm"])
                print(f"| {label} | {int(a):,} | {st['n']} | {st['mean']:.1f} | {st['iqm']:.1f} | "
                      f"[{lo:.1f}, {hi:.1f}] | {st['min']:.1f} | {st['max']:.1f} |")  # fmt: skip
    if args.dip_ref is not None:
        print(
            f"\n| method | run | eval at {int(args.dip_ref):,} | lowest later (at) | > 20% lower |"
        )
        print("|---|---|---|---|---|")
        for label, group in summary["groups"].items():
            for run in group["runs"]:
                d = run["dip"]
                if d["ref"] is None:
                    continue
                print(f"| {label} | `{run['folder']}` | {d['ref']:.1f} | {d['min_after']:.1f} "
                      f"({d['min_at']:,}) | {'yes' if d['fell'] else 'no'} |")  # fmt: skip
    ax.set(xlabel="real env steps", ylabel="evaluation return (10 episodes)", title=args.title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(out)
    print(f"\nwrote {out}")
    if args.summary is not None:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        tmp_json = args.summary.with_suffix(".tmp")
        tmp_json.write_text(json.dumps(summary, indent=1))
        tmp_json.replace(args.summary)
    return summary


if __name__ == "__main__":
    main()
