"""Agent groups (issue "scale"): error floors and time per imagined step, per agent vs per group.

Part 1, exact: the closed-form optimal denoiser (``LinearGaussianDenoiser``) of linear systems of
``n`` one-dimensional agents (``LinearGaussianSystem.random``), RMSE of the predicted next state
in state stds against the noiseless one, for the joint model, the paper's per-agent schedule,
the per-agent cumulative schedule and schedules over ``G`` groups of equal size.

Part 2, time: an untrained dynamics model of the ``cpu`` preset's size predicting ``--batch``
next states (``predict_next_state`` under inference mode) for teams of ``n`` agents, per-agent
cumulative schedule vs ``G`` groups. Prints both tables with the load and thread count.

    python benchmarks/groups.py --threads 1 --out docs/scale/groups.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from dimalib.envs.linear import LinearGaussianSystem
from dimalib.spec import MultiAgentSpec
from dimalib.training.config import trainer_config
from dimalib.world_model.dynamics import RevealSchedule, SamplerConfig, SequentialAgentDenoiser
from dimalib.world_model.dynamics.optimal import LinearGaussianDenoiser
from dimalib.world_model.dynamics.reveal import contiguous_groups
from dimalib.world_model.dynamics.sampler import EulerSampler


def floors(n: int, windows: int) -> dict[str, tuple[float, int]]:
    system = LinearGaussianSystem.random((1,) * n, seed=0, agent_variance=1.0)
    test = system.windows(windows, generator=torch.Generator().manual_seed(1))
    schedules = {
        "joint": RevealSchedule("joint"),
        "per agent, sequential (eq. 9)": RevealSchedule("sequential"),
        "per agent, cumulative": RevealSchedule("cumulative"),
    }
    for g in (2, 4):
        if g < n:
            schedules[f"{g} groups, cumulative"] = RevealSchedule(
                "cumulative", groups=contiguous_groups(n, g)
            )
            schedules[f"{g} groups, sequential"] = RevealSchedule(
                "sequential", groups=contiguous_groups(n, g)
            )
    out = {}
    for name, reveal in schedules.items():
        opt = LinearGaussianDenoiser.from_system(system, sampler=SamplerConfig(reveal=reveal))
        pred = opt.predict_next_state(
            test["states"], test["actions"], generator=torch.Generator().manual_seed(2)
        )
        err = (pred - test["mean_next_state"]) / system.state_std
        out[name] = (float(err.square().mean().sqrt()), opt.sampler.num_steps(n, reveal))
    return out


def step_times(
    n: int, reveals: dict[str, RevealSchedule], batch: int, repeats: int
) -> dict[str, float]:
    """Median ms of ``predict_next_state`` per schedule, the schedules timed interleaved
    (A, B, C, A, B, C, ...) so that load changes hit them alike."""
    base = trainer_config("cpu", "HalfCheetah-2x3").world_model.dynamics
    spec = MultiAgentSpec(tuple(f"a{i}" for i in range(n)), (4,) * n, (1,) * n, state_dim=20)
    models = {}
    for name, reveal in reveals.items():
        cfg = dataclasses.replace(base, sampler=SamplerConfig(reveal=reveal))
        torch.manual_seed(0)
        models[name] = SequentialAgentDenoiser(spec, cfg).eval()
    L = base.context
    states, actions = torch.randn(batch, L, 20), torch.rand(batch, L, n) * 2 - 1
    times: dict[str, list[float]] = {name: [] for name in reveals}
    with torch.inference_mode():
        for model in models.values():
            model.predict_next_state(states, actions, check_inputs=False)  # warm-up
        for _ in range(repeats):
            for name, model in models.items():
                t0 = time.perf_counter()
                model.predict_next_state(states, actions, check_inputs=False)
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, nargs="+", default=[4, 8, 16, 32, 100])
    p.add_argument("--time-agents", type=int, nargs="+", default=[4, 10, 20, 50])
    p.add_argument("--windows", type=int, default=1000)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loadavg = Path("/proc/loadavg")
    load = loadavg.read_text().split()[:3] if loadavg.exists() else ["?"]
    print(f"load {' '.join(load)}, torch threads {args.threads}\n")
    result: dict[str, object] = {"load": load, "threads": args.threads, "floors": {}, "time_ms": {}}
    print("| agents | schedule | denoising steps | RMSE (state stds) |\n|---|---|---|---|")
    for n in args.agents:
        for name, (err, steps) in floors(n, args.windows).items():
            print(f"| {n} | {name} | {steps} | {err:.4f} |")
            result["floors"][f"{n}/{name}"] = {"rmse": err, "steps": steps}  # type: ignore[index]
    print(f"\n| agents | schedule | steps | ms per {args.batch} next states |\n|---|---|---|---|")
    for n in args.time_agents:
        reveals = {
            "per agent, cumulative": RevealSchedule("cumulative"),
            "2 groups, cumulative": RevealSchedule("cumulative", groups=contiguous_groups(n, 2)),
            "4 groups, cumulative": RevealSchedule("cumulative", groups=contiguous_groups(n, 4)),
        }
        for name, ms in step_times(n, reveals, args.batch, args.repeats).items():
            steps = EulerSampler(SamplerConfig(reveal=reveals[name])).num_steps(n)
            print(f"| {n} | {name} | {steps} | {ms:.1f} |")
            result["time_ms"][f"{n}/{name}"] = {"ms": ms, "steps": steps}  # type: ignore[index]
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
