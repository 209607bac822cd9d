"""Many agents, trained (issue "scale"): per-agent reveal vs agent groups vs the joint ablation on
MAMuJoCo's ManySegmentSwimmer with 4, 10, 20 and 50 agents (one segment each).

For each team size ``n``: one random-policy dataset (``--num-envs`` copies × ``--env-steps``
steps, episodes of ``--episode-len``) and held-out episodes (another seed), the same for every
schedule. On it, a dynamics denoiser of the ``cpu`` preset's size (``trainer_config("cpu")``:
U-Net channels 32-32, one block per level, cond 64, action tokens 32; AdamW lr 3e-3, weight
decay 0.01, clip 1, batch 64) is trained per schedule with the same ``--steps`` gradient steps,
the same initial weights, the same batches and the same σ and noise draws (only the revealed
sets differ):

* ``joint``: the ablation (``JointActionDenoiser``, every action at every step, ``n`` steps);
* ``per agent, cumulative`` and ``per agent, sequential (eq. 9)``: one unit per agent, ``n`` steps;
* ``G groups, cumulative``: ``contiguous_groups(n, G)`` for G = 2 and 4, 4 denoising steps.

Not trained, sampled from trained weights: ``joint, 4 steps`` (the joint model with the grouped
schedules' 4 denoising steps; its training does not depend on the step count) and, at n = 4,
``4 groups`` (four groups of one agent: the per-agent cumulative model's weights, an identical
training law).

Reported per (n, schedule), on held-out data, errors in state stds (the training data's):
one-step RMSE of the predicted next state, the open-loop RMSE at step 15 (``open_loop_states``
from real contexts with the real actions, the RMSE of step 15 alone) and the library's cumulative
L1 after 15 steps (``cumulative_l1``, App. E.2), each error's ratio to the joint ablation's at the
same n, the milliseconds of one imagined step for ``--batch`` rollouts (``predict_next_state``
under inference mode, median of ``--repeats`` repeats, every model of every n interleaved so
that load changes hit them alike) and the training wall time. Prints the table with the load and
the thread count; ``--out`` writes JSON.

    nice -n 5 python benchmarks/many_agents.py --threads 1 --out docs/scale/many_agents.json
    python benchmarks/many_agents.py --agents 4 10 --steps 20 --env-steps 100   # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from dimalib.data import ReplayBuffer
from dimalib.envs import VectorMultiAgentEnv, collect, make_env
from dimalib.evaluation import cumulative_l1, open_loop_states, real_segments
from dimalib.spec import MultiAgentSpec
from dimalib.training.config import trainer_config
from dimalib.world_model.dynamics import (
    DenoiserConfig,
    JointActionDenoiser,
    RevealSchedule,
    SamplerConfig,
    SequentialAgentDenoiser,
)
from dimalib.world_model.dynamics.reveal import contiguous_groups

Model = SequentialAgentDenoiser | JointActionDenoiser


def load() -> list[str]:
    path = Path("/proc/loadavg")
    return path.read_text().split()[:3] if path.exists() else ["?"]


def gather(
    name: str, steps: int, num_envs: int, episode_len: int, seed: int
) -> tuple[ReplayBuffer, float, int]:
    """``num_envs × steps`` random-policy transitions, the ms per env step (one copy) and the
    number of steps at which a copy's MuJoCo warned of an unstable simulation (MuJoCo then
    resets that copy's physics: one transition jumps back to the model's default pose)."""
    venv = VectorMultiAgentEnv(
        [functools.partial(make_env, name, max_episode_steps=episode_len)] * num_envs
    )
    spec = venv.spec
    buffer = ReplayBuffer(spec, capacity=steps * num_envs, num_streams=num_envs)
    low, high = spec.action_bounds()
    g = torch.Generator().manual_seed(seed)

    def policy(obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return low + (high - low) * torch.rand(obs.shape[0], spec.joint_action_dim, generator=g)

    copies = [e.single_agent_env.unwrapped.data for e in getattr(venv._group, "envs", ())]
    warned = [0] * len(copies)
    unstable = 0  # MuJoCo's "simulation is unstable" resets (counters cleared at every reset)
    t0 = time.perf_counter()
    venv.reset(seed=seed)
    for _ in range(steps):
        collect(venv, policy, 1, buffer)
        for i, data in enumerate(copies):
            count = sum(int(w.number) for w in data.warning)
            unstable += count > warned[i]
            warned[i] = count
    ms = (time.perf_counter() - t0) / (steps * num_envs) * 1e3
    venv.close()
    return buffer, ms, unstable


def schedules(n: int) -> dict[str, RevealSchedule]:
    out = {
        "joint": RevealSchedule("joint"),
        "per agent, cumulative": RevealSchedule("cumulative"),
        "per agent, sequential (eq. 9)": RevealSchedule("sequential"),
    }
    for g in (2, 4):
        if g <= n:
            out[f"{g} groups, cumulative"] = RevealSchedule(
                "cumulative", groups=contiguous_groups(n, g)
            )
    return out


def build(
    spec: MultiAgentSpec, base: DenoiserConfig, reveal: RevealSchedule, **sampler: Any
) -> Model:
    cfg = dataclasses.replace(
        base, sampler=SamplerConfig(reveal=reveal, **sampler), update_normalizer=False
    )
    cls = JointActionDenoiser if reveal.kind == "joint" else SequentialAgentDenoiser
    return cls(spec, cfg)


def train(
    model: Model, buffer: ReplayBuffer, steps: int, seed: int, batch: int, lr: float,
    weight_decay: float, clip: float,
) -> tuple[float, float, float]:  # fmt: skip
    """``steps`` AdamW updates of the denoising loss; ``(wall seconds, CPU seconds of this
    process, mean loss of the last 10% of the steps)``.

    The batches and the σ/noise draws are seeded per step, so every schedule sees the same ones.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    batches = torch.Generator().manual_seed(seed)
    noise = torch.Generator()
    model.train()
    tail: list[torch.Tensor] = []
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(steps):
        b = buffer.sample_dynamics(batch, context=model.context, generator=batches)
        noise.manual_seed(seed * 1_000_003 + step)
        loss, _ = model.loss(b, generator=noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if step >= steps - max(1, steps // 10):
            tail.append(loss.detach())
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    model.eval()
    return seconds, cpu, float(torch.stack(tail).mean())


def rmse(pred: torch.Tensor, target: torch.Tensor, std: torch.Tensor) -> float:
    return float(((pred - target) / std).square().mean().sqrt())


@torch.inference_mode()
def evaluate(
    model: Model, windows: dict[str, torch.Tensor], segments: dict[str, torch.Tensor],
    std: torch.Tensor, horizon: int, seed: int,
) -> dict[str, Any]:  # fmt: skip
    """One-step RMSE, open-loop RMSE per step and cumulative L1, in state stds."""
    pred = model.predict_next_state(
        windows["states"], windows["actions"], windows["mask"],
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    L = model.context
    ctx, target = segments["states"][:, :L], segments["states"][:, L:]
    roll = open_loop_states(
        model, ctx, segments["actions"][:, :-1], horizon,
        generator=torch.Generator().manual_seed(seed + 1),
    )  # fmt: skip
    per_step = [rmse(roll[:, h], target[:, h], std) for h in range(horizon)]
    return {
        "one_step_rmse": rmse(pred, windows["next_state"], std),
        "open_loop_rmse": per_step,
        "cum_l1": cumulative_l1(roll, target, std).tolist(),
    }


def baseline(
    windows: dict[str, torch.Tensor], segments: dict[str, torch.Tensor], std: torch.Tensor,
    context: int, horizon: int,
) -> dict[str, Any]:  # fmt: skip
    """'The state does not change': the last context state as every prediction."""
    ctx, target = segments["states"][:, :context], segments["states"][:, context:]
    copy = ctx[:, -1:].expand_as(target)
    return {
        "one_step_rmse": rmse(windows["states"][:, -1], windows["next_state"], std),
        "open_loop_rmse": [rmse(copy[:, h], target[:, h], std) for h in range(horizon)],
        "cum_l1": cumulative_l1(copy, target, std).tolist(),
    }


@torch.inference_mode()
def step_times(
    models: dict[tuple[int, str], Model], inputs: dict[int, tuple[torch.Tensor, torch.Tensor]],
    repeats: int,
) -> dict[tuple[int, str], float]:  # fmt: skip
    """Median ms of ``predict_next_state`` per model, all models interleaved per repeat."""
    times: dict[tuple[int, str], list[float]] = {key: [] for key in models}
    for (n, _), model in models.items():  # warm-up
        model.predict_next_state(*inputs[n], check_inputs=False)
    for _ in range(repeats):
        for key, model in models.items():
            states, actions = inputs[key[0]]
            t0 = time.perf_counter()
            model.predict_next_state(states, actions, check_inputs=False)
            times[key].append(time.perf_counter() - t0)
    return {key: statistics.median(t) * 1e3 for key, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, nargs="+", default=[4, 10, 20, 50])
    p.add_argument("--segments", type=int, default=1, help="segments per agent")
    p.add_argument("--steps", type=int, default=1500, help="gradient steps per model")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--env-steps", type=int, default=1000, help="training steps per env copy")
    p.add_argument("--heldout-steps", type=int, default=200, help="held-out steps per env copy")
    p.add_argument("--episode-len", type=int, default=200)
    p.add_argument("--windows", type=int, default=1000, help="held-out one-step windows")
    p.add_argument("--segments-eval", type=int, default=100, help="held-out open-loop segments")
    p.add_argument("--horizon", type=int, default=15)
    p.add_argument("--batch", type=int, default=200, help="rollouts per timed imagined step")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--schedules", nargs="+", default=None, help="only these schedules (and the joint one)"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start, cpu_start, load_start = time.perf_counter(), time.process_time(), load()
    preset = trainer_config("cpu", "ManySegmentSwimmer-4x1")
    base, opt = preset.world_model.dynamics, preset.wm_training
    print(f"load {' '.join(load_start)}, torch threads {args.threads}, {args.steps} gradient "
          f"steps per model, batch {opt.dynamics_batch}, lr {opt.dynamics_lr}\n")  # fmt: skip

    models: dict[tuple[int, str], Model] = {}
    inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    envs: dict[int, dict[str, Any]] = {}
    for n in args.agents:
        name = f"ManySegmentSwimmer-{n}x{args.segments}"
        train_buf, env_ms, unstable = gather(
            name, args.env_steps, args.num_envs, args.episode_len, args.seed
        )
        test_buf, _, unstable_test = gather(
            name, args.heldout_steps, args.num_envs, args.episode_len, args.seed + 10_000
        )
        spec = train_buf.spec
        g = torch.Generator().manual_seed(args.seed + 1)
        next_states = train_buf.sample_dynamics(2 * len(train_buf), generator=g)["next_state"]
        std = next_states.std(0).clamp_min(base.normalizer_min_std)
        windows = test_buf.sample_dynamics(args.windows, context=base.context, generator=g)
        segments = real_segments(
            test_buf, args.segments_eval, base.context, args.horizon, generator=g
        )
        inputs[n] = (windows["states"][: args.batch], windows["actions"][: args.batch])
        envs[n] = {
            "env": name, "state_dim": spec.state_dim, "env_ms_per_step": env_ms,
            "train_transitions": len(train_buf), "heldout_transitions": len(test_buf),
            "segments": len(segments["states"]),
            "unstable_steps": {"train": unstable, "heldout": unstable_test},
            "copy_baseline": baseline(windows, segments, std, base.context, args.horizon),
        }  # fmt: skip
        print(f"{name}: state {spec.state_dim}, {len(train_buf)} + {len(test_buf)} transitions, "
              f"{env_ms:.2f} ms per env step, unstable MuJoCo steps {unstable} / {unstable_test}")  # fmt: skip
        for label, reveal in schedules(n).items():
            if args.schedules and label != "joint" and label not in args.schedules:
                continue  # the joint ablation always runs: the ratios need it
            alias = n == 4 and label == "4 groups, cumulative"  # four groups of one agent
            if alias and (n, "per agent, cumulative") not in models:
                continue
            torch.manual_seed(args.seed)  # the same initial weights for every schedule
            model = build(spec, base, reveal)
            model.normalizer.update(next_states)
            if alias:
                model.load_state_dict(models[(n, "per agent, cumulative")].state_dict())
                seconds, cpu, final = None, None, None
            else:
                seconds, cpu, final = train(
                    model, train_buf, args.steps, args.seed, opt.dynamics_batch,
                    opt.dynamics_lr, opt.weight_decay, opt.dynamics_grad_clip,
                )  # fmt: skip
            models[(n, label)] = model
            rows[(n, label)] = {
                "trained": not alias, "train_s": seconds, "train_cpu_s": cpu, "final_loss": final,
                "steps": model.sampler.num_steps(n),
                **evaluate(model, windows, segments, std, args.horizon, args.seed),
            }  # fmt: skip
            if label == "joint":  # the joint model sampled with the grouped schedules' 4 steps
                fast = build(spec, base, reveal, num_steps=4)
                fast.load_state_dict(model.state_dict())
                fast.eval()
                models[(n, "joint, 4 steps")] = fast
                rows[(n, "joint, 4 steps")] = {
                    "trained": False, "train_s": None, "train_cpu_s": None, "final_loss": None,
                    "steps": 4,
                    **evaluate(fast, windows, segments, std, args.horizon, args.seed),
                }  # fmt: skip
            r = rows[(n, label)]
            how = (
                "weights of per agent, cumulative"
                if alias
                else f"{seconds:.0f} s, loss {final:.4f}"
            )
            print(f"  {label}: {how}, one-step {r['one_step_rmse']:.4f}, "
                  f"h={args.horizon} {r['open_loop_rmse'][-1]:.4f}")  # fmt: skip

    print(f"\ntiming {len(models)} models, {args.repeats} interleaved repeats ...")
    ms = step_times(models, inputs, args.repeats)
    load_end = load()
    H = args.horizon
    print(f"\nload at start {' '.join(load_start)}, at end {' '.join(load_end)}, torch threads "
          f"{args.threads}\n")  # fmt: skip
    print(f"| agents | schedule | denoising steps | one-step RMSE | ×joint | RMSE at step {H} | "
          f"×joint | cum. L1 at {H} | ×joint | ms per {args.batch} next states | train s |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for (n, label), r in rows.items():
        j = rows[(n, "joint")]
        r["ms"] = ms[(n, label)]
        r["one_step_ratio"] = r["one_step_rmse"] / j["one_step_rmse"]
        r["open_loop_ratio"] = r["open_loop_rmse"][-1] / j["open_loop_rmse"][-1]
        r["cum_l1_ratio"] = r["cum_l1"][-1] / j["cum_l1"][-1]
        train_s = "-" if r["train_s"] is None else f"{r['train_s']:.0f}"
        print(f"| {n} | {label} | {r['steps']} | {r['one_step_rmse']:.4f} | "
              f"{r['one_step_ratio']:.2f} | {r['open_loop_rmse'][-1]:.3f} | "
              f"{r['open_loop_ratio']:.2f} | {r['cum_l1'][-1]:.2f} | {r['cum_l1_ratio']:.2f} | "
              f"{r['ms']:.0f} | {train_s} |")  # fmt: skip
    print(
        f"\n| agents | copy baseline one-step | at step {H} | cum. L1 at {H} |\n|---|---|---|---|"
    )
    for n, e in envs.items():
        c = e["copy_baseline"]
        print(f"| {n} | {c['one_step_rmse']:.4f} | {c['open_loop_rmse'][-1]:.3f} | "
              f"{c['cum_l1'][-1]:.2f} |")  # fmt: skip

    targets: dict[str, Any] = {}
    lo, hi = min(args.agents), max(args.agents)
    for G in (2, 4):
        a, b = (lo, f"{G} groups, cumulative"), (hi, f"{G} groups, cumulative")
        if a in ms and b in ms:
            targets[f"time {hi}/{lo} agents, {G} groups"] = ms[b] / ms[a]
    for n in args.agents:
        grouped = [r for (m, label), r in rows.items() if m == n and "groups" in label]
        for key in ("one_step_ratio", "open_loop_ratio", "cum_l1_ratio"):
            if grouped:
                targets[f"best grouped {key}, {n} agents"] = min(r[key] for r in grouped)
    total, total_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print("\ntargets (time ratio <= 1.5, best grouped error ratio <= 1.2):")
    for key, value in targets.items():
        print(f"  {key}: {value:.2f}")
    print(f"total wall time {total:.0f} s, CPU time of this process {total_cpu:.0f} s")
    if args.out is not None:
        result = {
            "load_start": load_start, "load_end": load_end, "threads": args.threads,
            "wall_s": total, "cpu_s": total_cpu, "args": {k: str(v) for k, v in vars(args).items()},
            "denoiser": repr(base), "optimiser": {
                "batch": opt.dynamics_batch, "lr": opt.dynamics_lr,
                "weight_decay": opt.weight_decay, "clip": opt.dynamics_grad_clip,
            },
            "envs": {str(n): e for n, e in envs.items()},
            "results": {f"{n}/{label}": r for (n, label), r in rows.items()},
            "targets": targets,
        }  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
