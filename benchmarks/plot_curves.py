"""Learning curves of several runs (``metrics.csv`` of ``dima_mappo.py`` / ``mappo.py``) in one PNG.

Runs are grouped by label; each group is drawn as its mean evaluation return against env steps
(on the union of the evaluation points, linearly interpolated) with every seed as a thin line.
A Markdown table of the final evaluation returns and wall times is printed.

    python benchmarks/plot_curves.py --out docs/img/curves.png \\
        --run "DIMA+MAPPO=runs/evidence/dima-s0" --run "DIMA+MAPPO=runs/evidence/dima-s1" \\
        --run "MAPPO=runs/evidence/mappo-s0" --run "MAPPO=runs/evidence/mappo-s1"
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np


def read_eval(run: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """``(env_steps, eval_return, wall_seconds)`` of one run's ``metrics.csv``."""
    steps, returns, wall = [], [], 0.0
    with open(run / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("time/total_s"):
                wall = float(row["time/total_s"])
            elif row.get("perf/env_steps_per_s"):  # mappo.py logs a rate, not a total
                wall = float(row["env_steps"]) / float(row["perf/env_steps_per_s"])
            if row.get("eval/return_mean"):
                steps.append(float(row["env_steps"]))
                returns.append(float(row["eval/return_mean"]))
    return np.array(steps), np.array(returns), wall


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", action="append", required=True, help="LABEL=RUN_DIR (repeatable)")
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--title", default="HalfCheetah-2x3")
    args = p.parse_args(argv)
    groups: dict[str, list[tuple[str, np.ndarray, np.ndarray, float]]] = defaultdict(list)
    for spec in args.run:
        label, _, folder = spec.partition("=")
        steps, returns, wall = read_eval(Path(folder))
        groups[label].append((folder, steps, returns, wall))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    print("| method | run | final eval return | env steps | wall time (min) |")
    print("|---|---|---|---|---|")
    for i, (label, runs) in enumerate(groups.items()):
        color = f"C{i}"
        grid = np.unique(np.concatenate([s for _, s, _, _ in runs]))
        curves = np.stack([np.interp(grid, s, r) for _, s, r, _ in runs])
        for _, s, r, _ in runs:
            ax.plot(s, r, color=color, alpha=0.35, lw=0.8)
        ax.plot(grid, curves.mean(0), color=color, lw=2, label=f"{label} (mean of {len(runs)})")
        finals = [float(r[-1]) for _, _, r, _ in runs]
        for folder, s, r, wall in runs:
            print(f"| {label} | `{folder}` | {r[-1]:.1f} | {int(s[-1]):,} | {wall / 60:.1f} |")
        spread = f" ± {statistics.stdev(finals):.1f}" if len(finals) > 1 else ""
        print(f"| **{label}** | mean | **{statistics.mean(finals):.1f}{spread}** | | |")
    ax.set(xlabel="real env steps", ylabel="evaluation return (10 episodes)", title=args.title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(out)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
