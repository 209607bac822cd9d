"""Reveal schedules on known linear-Gaussian systems: learned models against their exact floors.

For each system (``LinearGaussianSystem.random``: n = 2 agents with action sizes (2, 3), and
n = 3 with (1, 2, 4); state dim 10) and each reveal schedule, a denoiser is trained on the same
batches with the same σ/noise draws (equal budget), then measured on held-out windows:

* one-step RMSE to the noiseless next state ``A s + B a`` in state-std units, for the descending,
  ascending and random orders (spread = (max − min) / mean over orders);
* the closed-form optimal denoiser's RMSE through the same sampler (the schedule's floor);
* per agent, the action-effect ratio and cosine of :func:`dimalib.evaluation.action_effects`
  against the true ``B_i δ`` (descending order).

    python benchmarks/fidelity_linear.py --steps 3000 --seeds 0 1 --out docs/fidelity/linear.json

Prints one table row per (system, schedule, seed) with the load and thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from dimalib.envs.linear import LinearGaussianSystem
from dimalib.evaluation import action_effects
from dimalib.world_model.dynamics import (
    DenoiserConfig,
    JointActionDenoiser,
    RevealSchedule,
    SamplerConfig,
    SequentialAgentDenoiser,
)
from dimalib.world_model.dynamics.optimal import LinearGaussianDenoiser

SCHEDULES: dict[str, RevealSchedule] = {
    "sequential": RevealSchedule("sequential"),  # paper eq. 9
    # every agent within the first half of the steps; training sizes matched to the schedule
    "cumulative": RevealSchedule("cumulative"),
    "cumulative-uniform": RevealSchedule("cumulative", train_sizes="uniform"),
    "joint": RevealSchedule("joint"),
}
SYSTEMS = {"n2": (2, 3), "n3": (1, 2, 4)}
ORDERS = ("descending", "ascending", "random")


def rmse(system: LinearGaussianSystem, pred: torch.Tensor, target: torch.Tensor) -> float:
    err = (pred.double() - target.double()) / system.state_std
    return float(err.square().mean().sqrt())


def train(
    system: LinearGaussianSystem,
    reveal: RevealSchedule,
    data: dict[str, torch.Tensor],
    steps: int,
    seed: int,
    lr: float,
    batch: int,
) -> SequentialAgentDenoiser:
    torch.manual_seed(seed)
    cfg = DenoiserConfig(
        channels=(64, 64),
        depths=(1, 1),
        cond_dim=128,
        action_token_dim=64,
        sampler=SamplerConfig(reveal=reveal),
    )
    cls = JointActionDenoiser if reveal.kind == "joint" else SequentialAgentDenoiser
    model = cls(system.spec, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    n = data["states"].shape[0]
    index_gen = torch.Generator().manual_seed(1000 + seed)  # identical batches for every schedule
    for step in range(steps):
        idx = torch.randint(0, n, (batch,), generator=index_gen)
        mb = {k: data[k][idx] for k in ("states", "actions", "next_state")}
        # identical σ and noise draws for every schedule at every step
        loss, _ = model.loss(mb, generator=torch.Generator().manual_seed(seed * 10**6 + step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model.eval()


def evaluate(
    system: LinearGaussianSystem, model: Any, test: dict[str, torch.Tensor]
) -> dict[str, Any]:
    errs = {}
    for order in ORDERS:
        pred = model.predict_next_state(
            test["states"], test["actions"], order=order, generator=torch.Generator().manual_seed(5)
        )
        errs[order] = rmse(system, pred, test["mean_next_state"])
    vals = list(errs.values())
    effects = action_effects(
        model,
        test["states"],
        test["actions"],
        system.mean_next_state,
        scale=system.state_std.float(),
        order="descending",
        seed=3,
    )
    return {
        "rmse": errs,
        "rmse_mean": sum(vals) / len(vals),
        "order_spread": (max(vals) - min(vals)) / (sum(vals) / len(vals)),
        "effects": [e._asdict() for e in effects],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    p.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=list(SCHEDULES))
    p.add_argument("--train-windows", type=int, default=40_000)
    p.add_argument("--test-windows", type=int, default=4_000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loadavg = Path("/proc/loadavg")
    load = " ".join(loadavg.read_text().split()[:3]) if loadavg.exists() else "n/a"
    print(
        f"# load {load}, torch threads {torch.get_num_threads()}, {args.steps} steps x batch "
        f"{args.batch}, lr {args.lr}, {args.train_windows} training windows"
    )
    print(
        "| system | schedule | seed | floor | RMSE desc | asc | random | spread | "
        "effect ratio (cosine) per agent | train s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    results: list[dict[str, Any]] = []
    for sys_name in args.systems:
        system = LinearGaussianSystem.random(SYSTEMS[sys_name], seed=0, agent_variance=1.0)
        data = system.windows(args.train_windows, generator=torch.Generator().manual_seed(11))
        test = system.windows(args.test_windows, generator=torch.Generator().manual_seed(12))
        for sched_name in args.schedules:
            reveal = SCHEDULES[sched_name]
            optimal = LinearGaussianDenoiser.from_system(
                system, sampler=SamplerConfig(reveal=reveal)
            )
            floor = evaluate(system, optimal, test)
            for seed in args.seeds:
                t0 = time.perf_counter()
                model = train(system, reveal, data, args.steps, seed, args.lr, args.batch)
                wall = time.perf_counter() - t0
                res = evaluate(system, model, test)
                row = {
                    "system": sys_name,
                    "action_dims": SYSTEMS[sys_name],
                    "schedule": sched_name,
                    "seed": seed,
                    "steps": args.steps,
                    "train_seconds": wall,
                    "floor": floor,
                    **res,
                }
                results.append(row)
                eff = ", ".join(f"{e['ratio']:.2f} ({e['cosine']:.2f})" for e in res["effects"])
                r = res["rmse"]
                print(
                    f"| {sys_name} {SYSTEMS[sys_name]} | {sched_name} | {seed} | "
                    f"{floor['rmse_mean']:.4f} | {r['descending']:.4f} | {r['ascending']:.4f} | "
                    f"{r['random']:.4f} | {res['order_spread']:.1%} | {eff} | {wall:.0f} |",
                    flush=True,
                )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "command": "python benchmarks/fidelity_linear.py " + " ".join(os.sys.argv[1:]),
            "load": load,
            "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
        tmp.replace(args.out)


if __name__ == "__main__":
    main()
