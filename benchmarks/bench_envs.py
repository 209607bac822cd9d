"""Collection throughput: ``VectorMultiAgentEnv`` + ``collect`` vs the bare gymnasium-robotics loop.

For each task and number of copies ``N`` it measures env steps per second of

* ``bare``: ``N`` gymnasium-robotics ``mamujoco_v1`` envs stepped one after another through the
  PettingZoo dict API with pre-built action dicts (no policy, no tensors, reset when done);
* ``collect``: ``collect(venv, policy, steps)`` with a batched random policy (one call per step),
  in-process; ``+buffer`` also inserts every row into ``dimalib.data.buffer.ReplayBuffer``
  (column left out if it cannot be imported); ``dict path`` is the same with ``fast_path=False``
  (PettingZoo dicts converted to arrays, no MAMuJoCo array-level stepping);
* ``subproc``: ``collect`` + buffer in subprocess mode (2 workers), for the largest ``N``.

Runs are interleaved and repeated; the table shows medians of wall-clock rates (the machine may be
shared, so single runs are noisy). ``ratio`` is ``+buffer / bare`` (``collect / bare`` without the
buffer) in wall-clock rates, ``cpu ratio`` the same in steps per CPU-second of this process (less
sensitive to other processes' load), ``overhead`` the per-env-step wall time of ``+buffer`` minus
``bare`` (µs; negative: faster than the bare loop).

The MuJoCo Bi-DexHands re-implementations (``MjShadowHandPen``, ``MjShadowHandBottleCap``,
``MjShadowHandDoorOpenInward``, ``MjShadowHandDoorOpenOutward``; :mod:`dimalib.envs.mj_dexhands`)
run in the same columns: ``bare`` is their PettingZoo dict API, ``collect`` uses their array-level
fast path. ``--tasks mj_dexhands`` selects all four.

    python benchmarks/bench_envs.py                       # HalfCheetah-2x3, Ant-4x2 and the four
                                                          # MjShadowHand tasks, N in 1 4 16
    python benchmarks/bench_envs.py --n 4 --repeats 3 --tasks HalfCheetah-2x3
    python benchmarks/bench_envs.py --tasks mj_dexhands --n 1 4 --no-subprocess
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

from dimalib.envs import MJ_DEXHANDS_TASK_NAMES, VectorMultiAgentEnv, collect, make_env

try:
    from dimalib.data.buffer import ReplayBuffer
except ImportError:  # the buffer column is skipped
    ReplayBuffer = None  # type: ignore[assignment,misc]


Rates = tuple[float, float]  # (env steps per wall-clock second, per CPU second of this process)


def _rates(env_steps: int, wall0: float, cpu0: float) -> Rates:
    return (
        env_steps / (time.perf_counter() - wall0),
        env_steps / max(time.process_time() - cpu0, 1e-9),
    )


def bare_rate(name: str, n: int, steps: int) -> Rates:
    """Env steps/s of ``n`` envs through the PettingZoo dict API, no conversion at all."""
    envs = [make_env(name) for _ in range(n)]
    rng = np.random.default_rng(0)
    agents = envs[0].possible_agents
    actions = [
        {a: rng.uniform(-1, 1, envs[0].action_space(a).shape).astype(np.float32) for a in agents}
        for _ in range(64)
    ]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for t in range(steps):
        act = actions[t % 64]
        for env in envs:
            _, _, term, trunc, _ = env.step(act)
            if any(term.values()) or any(trunc.values()):
                env.reset()
    rate = _rates(n * steps, wall0, cpu0)
    for env in envs:
        env.close()
    return rate


def collect_rate(
    name: str, n: int, steps: int, *, buffer: bool, fast_path: bool = True, mode: str = "inprocess"
) -> Rates:
    venv = VectorMultiAgentEnv(
        [functools.partial(make_env, name)] * n,
        mode=mode,  # type: ignore[arg-type]
        num_workers=2,
        fast_path=fast_path,
    )
    a_dim = venv.spec.joint_action_dim
    gen = torch.Generator().manual_seed(0)

    def policy(obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return torch.rand(obs.shape[0], a_dim, generator=gen) * 2 - 1

    sink: Any = None
    if buffer and ReplayBuffer is not None:
        sink = ReplayBuffer(venv.spec, capacity=max(n * (steps + 2), 1000), num_streams=n)
    venv.reset(seed=0)
    collect(venv, policy, 2, sink)  # warm-up
    wall0, cpu0 = time.perf_counter(), time.process_time()
    collect(venv, policy, steps, sink)
    rate = _rates(n * steps, wall0, cpu0)
    venv.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=["HalfCheetah-2x3", "Ant-4x2", *MJ_DEXHANDS_TASK_NAMES],
        help="task names; 'mj_dexhands' stands for the four MjShadowHand tasks",
    )
    parser.add_argument("--n", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--env-steps", type=int, default=0, help="env steps per run (default: per task)"
    )
    parser.add_argument("--no-subprocess", action="store_true")
    args = parser.parse_args()
    args.tasks = [t for name in args.tasks for t in (
        list(MJ_DEXHANDS_TASK_NAMES) if name == "mj_dexhands" else [name])]  # fmt: skip
    torch.set_num_threads(1)
    width = max(16, *(len(t) for t in args.tasks))

    cols = ["bare", "collect", "+buffer", "dict path", "subproc"]
    header = (
        f"{'task':<{width}} {'N':>3} "
        + " ".join(f"{c:>10}" for c in cols)
        + f" {'ratio':>6} {'cpu ratio':>9} {'overhead':>9}"
    )
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    sys.stdout.write(
        f"env steps/s, medians of {args.repeats} interleaved runs; ratio = "
        f"{'+buffer' if ReplayBuffer is not None else 'collect'} / bare; "
        f"CPU: {cpu_model or 'unknown'} ({os.cpu_count()} cores), torch threads 1\n\n"
        f"{header}\n{'-' * len(header)}\n"
    )
    for name in args.tasks:
        total = args.env_steps or (4000 if name.startswith("HalfCheetah") else 1500)
        if name in MJ_DEXHANDS_TASK_NAMES and not args.env_steps:
            total = 1000
        for n in args.n:
            steps = max(total // n, 10)
            runs: dict[str, list[Rates]] = {c: [] for c in cols}
            with_sub = not args.no_subprocess and n == max(args.n)
            buf = ReplayBuffer is not None
            for _ in range(args.repeats):  # interleaved, so load changes hit every column
                runs["bare"].append(bare_rate(name, n, steps))
                runs["collect"].append(collect_rate(name, n, steps, buffer=False))
                if buf:
                    runs["+buffer"].append(collect_rate(name, n, steps, buffer=True))
                runs["dict path"].append(collect_rate(name, n, steps, buffer=buf, fast_path=False))
                if with_sub:
                    runs["subproc"].append(
                        collect_rate(name, n, steps, buffer=buf, mode="subprocess")
                    )
            med = {c: statistics.median(r[0] for r in v) if v else np.nan for c, v in runs.items()}
            cpu = {c: statistics.median(r[1] for r in v) if v else np.nan for c, v in runs.items()}
            main_col = "+buffer" if ReplayBuffer is not None else "collect"
            ratio = med[main_col] / med["bare"]
            cpu_ratio = (
                cpu[main_col] / cpu["bare"]
            )  # subproc excluded: its workers' CPU is elsewhere
            overhead = (1.0 / med[main_col] - 1.0 / med["bare"]) * 1e6
            cells = " ".join("         -" if np.isnan(med[c]) else f"{med[c]:>10.0f}" for c in cols)
            row = (
                f"{name:<{width}} {n:>3} {cells} {ratio:>6.2f} {cpu_ratio:>9.2f} {overhead:>8.1f}µs"
            )
            sys.stdout.write(row + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
