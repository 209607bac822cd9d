"""Run a grid of (method, task, seed) training runs as parallel processes, then aggregate them.

Each run is a subprocess — ``examples/dima_mappo.py`` (``dima``) or ``examples/mappo.py``
(``mappo``) — with one torch thread, niced, output to ``OUT/METHOD-TASK-SEED.log``; at most
``--jobs`` run at once. The sweep is resumable: a finished run is skipped ("finished" is read
from the last row of its ``metrics.csv``, so a larger ``--dima-steps`` extends runs), an
interrupted DIMA run continues from its ``checkpoint.pt`` (bit-identical to an uninterrupted
run), an interrupted MAPPO run starts again. When every run has ended,
``benchmarks/plot_curves.py`` aggregates each task (IQM, 95% bootstrap CI, the dip
check) into ``OUT/TASK.png`` and ``OUT/TASK.json``.

    python benchmarks/sweep.py --tasks HalfCheetah-2x3 Ant-2x4 --seeds 0 1 2 3 4 --jobs 2 \\
        --dima-steps 100000 --mappo-steps 1000000 --out runs/sweep
    python benchmarks/sweep.py --methods dima --tasks toy --seeds 0 1 --dima-steps 2000 \\
        --extra --set wm_warmup_transitions=400 --out runs/sweep-toy    # a quick check
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def command(method: str, task: str, seed: int, run: Path, args: argparse.Namespace) -> list[str]:
    """The command line of one run (resuming a DIMA run from its checkpoint)."""
    py = [sys.executable]
    if method == "mappo":
        return [
            *py,
            str(ROOT / "examples/mappo.py"),
            "--env",
            task,
            "--seed",
            str(seed),
            "--total-env-steps",
            str(args.mappo_steps),
            "--threads",
            "1",
            "--out",
            str(run),
        ]
    steps = ["--total-env-steps", str(args.dima_steps)]
    if (run / "checkpoint.pt").exists():
        return [
            *py,
            str(ROOT / "examples/dima_mappo.py"),
            "--resume",
            str(run / "checkpoint.pt"),
            *steps,
            "--threads",
            "1",
            "--no-tensorboard",
        ]
    return [
        *py,
        str(ROOT / "examples/dima_mappo.py"),
        "--env",
        task,
        "--seed",
        str(seed),
        "--preset",
        args.preset,
        *steps,
        "--threads",
        "1",
        "--out",
        str(run),
        "--no-tensorboard",
        "--overwrite",
        *args.extra,
    ]


def env_steps_done(run: Path) -> int:
    """The env-step count of a run's last ``metrics.csv`` row (0 without one)."""
    path = run / "metrics.csv"
    if not path.exists():
        return 0
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return int(float(rows[-1]["env_steps"])) if rows else 0


def finished(method: str, run: Path, args: argparse.Namespace) -> bool:
    target = args.mappo_steps if method == "mappo" else args.dima_steps
    done = env_steps_done(run) >= target
    return done and (method != "mappo" or (run / "mappo.pt").exists())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=["dima", "mappo"], choices=["dima", "mappo"])
    p.add_argument("--tasks", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2)), help="runs at once")
    p.add_argument("--dima-steps", type=int, default=100_000)
    p.add_argument("--mappo-steps", type=int, default=1_000_000)
    p.add_argument("--preset", default="cpu", choices=["cpu", "paper"])
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more dima_mappo.py flags")
    p.add_argument("--out", type=Path, default=Path("runs/sweep"))
    p.add_argument("--no-aggregate", action="store_true")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs: expected a positive integer, received {args.jobs}")
    args.out.mkdir(parents=True, exist_ok=True)
    todo = [(m, t, s) for t in args.tasks for m in args.methods for s in args.seeds]
    pending = [x for x in todo if not finished(x[0], args.out / f"{x[0]}-{x[1]}-{x[2]}", args)]
    print(f"{len(todo)} runs, {len(todo) - len(pending)} finished already, {args.jobs} at once")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    running: list[tuple[subprocess.Popen[bytes], str]] = []
    failed = []
    while pending or running:
        while pending and len(running) < args.jobs:
            method, task, seed = pending.pop(0)
            name = f"{method}-{task}-{seed}"
            log = (args.out / f"{name}.log").open("ab")
            cmd = command(method, task, seed, args.out / name, args)
            running.append(
                (
                    subprocess.Popen(
                        ["nice", "-n", "10", *cmd], stdout=log, stderr=subprocess.STDOUT, env=env
                    ),
                    name,
                )
            )
            print(f"{time.strftime('%H:%M:%S')} start {name}", flush=True)
        time.sleep(2)
        for proc, name in list(running):
            if proc.poll() is not None:
                running.remove((proc, name))
                print(
                    f"{time.strftime('%H:%M:%S')} end {name} (exit {proc.returncode})", flush=True
                )
                if proc.returncode != 0:
                    failed.append(name)
    if not args.no_aggregate:
        sys.path.insert(0, str(HERE))
        import plot_curves

        for task in args.tasks:
            globs = []
            for method in args.methods:
                label = "DIMA+MAPPO" if method == "dima" else "MAPPO"
                globs += ["--glob", f"{label}={args.out}/{method}-{task}-*"]
            plot_curves.main(
                [
                    *globs,
                    "--at",
                    "25000",
                    "50000",
                    "100000",
                    "500000",
                    "1000000",
                    "--dip-ref",
                    "10000",
                    "--out",
                    str(args.out / f"{task}.png"),
                    "--summary",
                    str(args.out / f"{task}.json"),
                    "--title",
                    task,
                ]
            )
    if failed:
        print(f"failed: {failed} (see their logs)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
