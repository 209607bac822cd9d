"""World-model accuracy on held-out real data: reveal schedules, the joint ablation and MBPO.

Models, trained on the same data with the same batches and the same number of gradient steps:

* ``sequential``: :class:`~dimalib.world_model.dynamics.SequentialAgentDenoiser` with the paper's schedule
  (one agent revealed per denoising step, eq. 9; called ``dima`` in earlier reports);
* ``cumulative``: the same network with the cumulative schedule (the revealed set grows; every
  agent revealed within the first half of the steps; ``RevealSchedule("cumulative")``);
* ``joint``: :class:`~dimalib.world_model.dynamics.JointActionDenoiser` (the paper's ablation, Fig. 8);
* ``ensemble``: :class:`~dimalib.world_model.ProbabilisticEnsemble` (MBPO: 5 Gaussian MLPs on the
  state change, evaluated with the mean of the members' means).

Metrics (paper App. E.2), in normalised state units (each dimension divided by the training
data's standard deviation):

* ``one-step``: mean |ŝ_{t+1} − s_{t+1}| over 1000 held-out windows (real context);
* ``cum L1 @h``: cumulative L1 error per state dimension after h open-loop steps, from 100 held-out
  segments (the first ``L`` real states as context, then the real actions);
* ``order spread @h`` (the two reveal schedules, Fig. 7): the same rollouts under the descending,
  ascending and random conditioning orders, with the same start noises; ``(max − min) / mean``;
* ``action effects`` (MAMuJoCo data): per agent, the predicted change of the next state when that
  agent's current action moves by ``δ ~ U[−0.5, 0.5]`` (same start noise) against the real
  simulator's change from the same state (:class:`~dimalib.envs.mamujoco_dynamics.MuJoCoStepper`),
  on 200 held-out windows, in state stds: magnitude ratio and cosine
  (:func:`~dimalib.evaluation.action_effects`), with the denoising step that first reveals it;
* training time, and inference time per open-loop step at batch 100.

    python benchmarks/wm_accuracy.py --data runs/wm_data/HalfCheetah-2x3 --seeds 0 1 2 \\
        --steps 2000 --out docs/wm_accuracy/HalfCheetah-2x3

Writes ``OUT/results.json``, ``OUT/error_over_horizon.png`` (matplotlib), ``OUT/predictions.pt``
(the first 8 held-out segments and every model's open-loop prediction for them, first seed), and
with ``--render`` ``OUT/strip.png``: a real held-out trajectory and DIMA's open-loop prediction from the same
context, rendered with MuJoCo (needs an OpenGL backend, e.g. ``MUJOCO_GL=egl``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dimalib.data import ReplayBuffer
from dimalib.envs.mamujoco import parse_mamujoco_name
from dimalib.envs.mamujoco_dynamics import MuJoCoStepper
from dimalib.evaluation import (
    action_effects,
    cumulative_l1,
    one_step_error,
    open_loop_states,
    order_spread,
    real_segments,
)
from dimalib.spec import MultiAgentSpec
from dimalib.training.config import trainer_config
from dimalib.world_model import EnsembleConfig, ProbabilisticEnsemble
from dimalib.world_model.dynamics import (
    DenoiserConfig,
    JointActionDenoiser,
    RevealSchedule,
    SamplerConfig,
    SequentialAgentDenoiser,
)

logger = logging.getLogger("wm_accuracy")

MODELS = ("sequential", "cumulative", "joint", "ensemble")
SCHEDULED = ("sequential", "cumulative")  # models whose conditioning order matters
ORDERS = ("descending", "ascending", "random")
CONTEXT = 3  # App. G.1: L = 3
PRESETS: dict[str, tuple[DenoiserConfig, EnsembleConfig]] = {
    # Table 3 denoiser; MBPO's ensemble
    "paper": (DenoiserConfig(), EnsembleConfig()),
    # the trainer's cpu preset denoiser (dimalib.training.config, 'cpu')
    "cpu": (trainer_config("cpu").world_model.dynamics, EnsembleConfig()),
    # for tests and smoke runs
    "tiny": (
        DenoiserConfig(channels=(16, 16), depths=(1, 1), cond_dim=32, action_token_dim=16),
        EnsembleConfig(hidden_dim=32, hidden_layers=2, members=3),
    ),
}
# learning rates: Table 4 for the denoisers (AdamW 1e-4, weight decay 0.01, clip 1); MBPO's
# 1e-3 for the ensemble (its weight decays are ~1e-5..1e-4)
OPTIM = {
    "sequential": {"lr": 1e-4, "weight_decay": 0.01, "clip": 1.0},
    "cumulative": {"lr": 1e-4, "weight_decay": 0.01, "clip": 1.0},
    "joint": {"lr": 1e-4, "weight_decay": 0.01, "clip": 1.0},
    "ensemble": {"lr": 1e-3, "weight_decay": 5e-5, "clip": 10.0},
}


def build(kind: str, spec: MultiAgentSpec, preset: str) -> nn.Module:
    dyn, ens = PRESETS[preset]
    if kind in SCHEDULED:
        sampler = SamplerConfig(reveal=RevealSchedule(kind))  # type: ignore[arg-type]
        return SequentialAgentDenoiser(spec, dataclasses.replace(dyn, sampler=sampler))
    if kind == "joint":
        return JointActionDenoiser(spec, dyn)
    if kind == "ensemble":
        return ProbabilisticEnsemble(spec, ens)
    raise ValueError(f"kind: expected one of {MODELS}, received {kind!r}")


def train(
    model: Any, data: ReplayBuffer, states: torch.Tensor, steps: int, batch: int,
    seed: int, opt_cfg: dict[str, float],
) -> float:  # fmt: skip
    """``steps`` AdamW updates on batches drawn with a generator seeded by ``seed``.

    Every model of one seed sees the very same sequence of batches. Returns the wall time (s).
    """
    model.normalizer.update(states)  # the statistics of all training states first
    opt = torch.optim.AdamW(model.parameters(), lr=opt_cfg["lr"],
                            weight_decay=opt_cfg["weight_decay"])  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss, _ = model.loss(data.sample_dynamics(batch, context=CONTEXT, generator=g))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), opt_cfg["clip"])
        opt.step()
    model.eval()
    return time.perf_counter() - t0


def open_loop(
    model: Any, seg: dict[str, torch.Tensor], horizon: int, order: str | None, noise_seed: int
) -> torch.Tensor:
    """``[B, H, S]`` open-loop prediction from the segments' real context and actions."""
    lm = model.context
    ctx = seg["states"][:, CONTEXT - lm : CONTEXT]
    actions = seg["actions"][:, CONTEXT - lm : CONTEXT + horizon - 1]
    g = torch.Generator().manual_seed(noise_seed)
    return open_loop_states(model, ctx, actions, horizon, order=order, generator=g)


def evaluate(
    model: Any, kind: str, seg: dict[str, torch.Tensor], windows: dict[str, torch.Tensor],
    std: torch.Tensor, horizon: int, dims: slice = slice(None), stepper: Any = None,
) -> dict[str, Any]:  # fmt: skip
    target = seg["states"][:, CONTEXT:]
    lm = model.context
    with torch.inference_mode():
        pred1 = model.predict_next_state(
            windows["states"][:, CONTEXT - lm :],
            windows["actions"][:, CONTEXT - lm :],
            windows["mask"][:, CONTEXT - lm :],
            generator=torch.Generator().manual_seed(7),
        )
    one = one_step_error(pred1[:, dims], windows["next_state"][:, dims], std[dims])
    res: dict[str, Any] = {"one_step": float(one)}
    orders = ORDERS if kind in SCHEDULED else (None,)
    curves = []
    for order in orders:
        t0 = time.perf_counter()
        pred = open_loop(model, seg, horizon, order, noise_seed=11)
        dt = time.perf_counter() - t0
        curves.append(cumulative_l1(pred[..., dims], target[..., dims], std[dims]))
        if order in (None, "descending"):
            res["cum_l1"] = curves[-1].tolist()
            res["ms_per_step"] = 1e3 * dt / horizon
            res["prediction"] = pred
    if kind in SCHEDULED:
        stacked = torch.stack(curves)
        res["cum_l1_by_order"] = {o: c.tolist() for o, c in zip(ORDERS, curves, strict=True)}
        res["order_spread"] = order_spread(stacked).tolist()
    if stepper is not None:
        n = 200
        effects = action_effects(
            model, windows["states"][:n, CONTEXT - lm :], windows["actions"][:n, CONTEXT - lm :],
            stepper, scale=std, order="descending" if kind in SCHEDULED else None, seed=3,
        )  # fmt: skip
        res["action_effects"] = [e._asdict() for e in effects]
    return res


def mean_std(values: Sequence[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def summary(results: dict[str, Any], horizon: int) -> str:
    """Markdown tables: accuracy and cost per model, and DIMA's order spread."""
    hs = [h for h in (1, 5, 10, 15) if h <= horizon]
    lines = ["| model | one-step | " + " | ".join(f"cum L1 @{h}" for h in hs)
             + " | train s | ms / open-loop step @100 |",
             "|---" * (4 + len(hs)) + "|"]  # fmt: skip
    for kind in results["models"]:
        runs = [r[kind] for r in results["seeds"].values()]
        row = [kind, mean_std([r["one_step"] for r in runs])]
        row += [mean_std([r["cum_l1"][h - 1] for r in runs]) for h in hs]
        row += [
            mean_std([r["train_seconds"] for r in runs]),
            mean_std([r["ms_per_step"] for r in runs]),
        ]
        lines.append("| " + " | ".join(row) + " |")
    copy = results["copy_baseline_cum_l1"]
    lines.append("| copy s_t (no model) | – | " + " | ".join(f"{copy[h - 1]:.3f}" for h in hs)
                 + " | – | – |")  # fmt: skip
    for kind in (k for k in SCHEDULED if k in results["models"]):
        lines += ["", f"| {kind} order | " + " | ".join(f"cum L1 @{h}" for h in hs) + " |",
                  "|---" * (1 + len(hs)) + "|"]  # fmt: skip
        runs = [r[kind] for r in results["seeds"].values()]
        for o in ORDERS:
            vals = [mean_std([r["cum_l1_by_order"][o][h - 1] for r in runs]) for h in hs]
            lines.append(f"| {o} | " + " | ".join(vals) + " |")
        vals = [mean_std([100 * r["order_spread"][h - 1] for r in runs]) for h in hs]
        lines.append("| spread (max−min)/mean, % | " + " | ".join(vals) + " |")
    first = next(iter(results["seeds"].values()))
    if any("action_effects" in first[k] for k in results["models"]):
        n_agents = len(next(first[k] for k in results["models"])["action_effects"])
        lines += ["", "| model (descending) | " + " | ".join(
            f"agent {i}: ratio / cosine (first step)" for i in range(n_agents)) + " |",
            "|---" * (1 + n_agents) + "|"]  # fmt: skip
        for kind in results["models"]:
            runs = [r[kind]["action_effects"] for r in results["seeds"].values()]
            cells = []
            for i in range(n_agents):
                ratio = mean_std([run[i]["ratio"] for run in runs])
                cos = mean_std([run[i]["cosine"] for run in runs])
                step = runs[0][i]["first_step"]
                cells.append(f"{ratio} / {cos} ({'–' if step is None else step})")
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib missing: no plot (pip install 'dimalib[plot]')")
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for kind in results["models"]:
        curves = torch.tensor([r[kind]["cum_l1"] for r in results["seeds"].values()])
        h = torch.arange(1, curves.shape[1] + 1)
        m, s = curves.mean(0), curves.std(0) if len(curves) > 1 else torch.zeros_like(curves[0])
        axes[0].plot(h, m, label=kind)
        axes[0].fill_between(h, m - s, m + s, alpha=0.25)
    copy = results["copy_baseline_cum_l1"]
    axes[0].plot(range(1, len(copy) + 1), copy, "k:", label="copy $s_t$")
    axes[0].set(xlabel="horizon h", ylabel="cumulative L1 / dim (state stds)",
                title=f"{results['env']}: open loop, held-out")  # fmt: skip
    axes[0].legend()
    for kind, style in zip(SCHEDULED, ("-", "--"), strict=True):
        if kind not in results["models"]:
            continue
        for o in ORDERS:
            curves = torch.tensor(
                [r[kind]["cum_l1_by_order"][o] for r in results["seeds"].values()]
            )
            axes[1].plot(range(1, curves.shape[1] + 1), curves.mean(0), style, label=f"{kind} {o}")
        axes[1].set(xlabel="horizon h", ylabel="cumulative L1 / dim",
                    title="reveal schedules: conditioning orders")  # fmt: skip
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def render_strip(
    pictures: dict[str, Any], path: Path, model: str = "cumulative", segment: int = 0
) -> None:
    """A real held-out segment and ``model``'s open-loop prediction, rendered side by side.

    Step 0 is the last real context state (shared); steps 1..H are the real states and the
    predicted ones, shown at t = 1, 2, 4, …, 14. The left-out root position of both rows is
    integrated from their own root velocities (:func:`dimalib.envs.mamujoco_state.root_positions`).
    """
    from dimalib.viz import render_states, strip_figure

    real = pictures["real"][segment, CONTEXT - 1 :]  # (1 + H, S)
    pred = torch.cat([real[:1], pictures["predicted"][model][segment]])  # (1 + H, S)
    horizon = real.shape[0] - 1
    steps = [t for t in (1, 2, 4, 6, 8, 10, 12, 14) if t <= horizon]
    env = pictures["env"]
    frames = [render_states(env, x.numpy(), width=200, height=150) for x in (real, pred)]
    strip_figure(*frames, steps, path, labels=("real", f"imagined ({model})"),
                 title=f"{env}: held-out segment, open loop from a real context")  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="folder written by benchmarks/wm_datasets.py")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=2000, help="gradient steps per model")
    p.add_argument("--batch", type=int, default=64, help="Table 4: dynamics batch 64")
    p.add_argument("--lr-scale", type=float, default=1.0, help="multiplies every learning rate")
    p.add_argument("--denoiser-lr", type=float, default=None,
                   help="learning rate of both denoisers (default: Table 4's 1e-4)")  # fmt: skip
    p.add_argument("--horizon", type=int, default=15)
    p.add_argument("--segments", type=int, default=100, help="App. E.2: 100 segments")
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    p.add_argument("--eval-dims", type=int, default=None,
                   help="measure errors on the first N state entries only (e.g. 27 on Ant: "
                   "positions and velocities, without the 78 contact forces)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-effects", action="store_true",
                   help="skip the action-effect table against the real simulator")  # fmt: skip
    p.add_argument("--render", action="store_true", help="render a real/imagined strip (MuJoCo)")
    p.add_argument("--render-only", action="store_true",
                   help="only draw OUT/strip.png from an earlier run's OUT/predictions.pt")  # fmt: skip
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.render_only:
        render_strip(torch.load(Path(args.out) / "predictions.pt"), Path(args.out) / "strip.png")
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    optim = {k: {**v, "lr": v["lr"] * args.lr_scale} for k, v in OPTIM.items()}
    if args.denoiser_lr is not None:
        for kind in ("sequential", "cumulative", "joint"):
            optim[kind]["lr"] = args.denoiser_lr
    data_dir, out = Path(args.data), Path(args.out)
    train_buf, heldout = (
        ReplayBuffer.load(data_dir / "train.pt"),
        ReplayBuffer.load(data_dir / "heldout.pt"),
    )
    meta = (
        json.loads((data_dir / "meta.json").read_text())
        if (data_dir / "meta.json").exists()
        else {}
    )
    spec = train_buf.spec
    states = train_buf.sample_state_obs(len(train_buf), generator=torch.Generator().manual_seed(0))[
        "state"
    ]
    std = states.std(0).clamp_min(1e-2)
    seg = real_segments(heldout, args.segments, CONTEXT, args.horizon,
                        generator=torch.Generator().manual_seed(1234))  # fmt: skip
    windows = heldout.sample_dynamics(
        1000, context=CONTEXT, generator=torch.Generator().manual_seed(4321)
    )
    target = seg["states"][:, CONTEXT:]
    dims = slice(None) if args.eval_dims is None else slice(0, args.eval_dims)
    last = seg["states"][:, CONTEXT - 1 : CONTEXT].expand_as(target)
    copy = cumulative_l1(last[..., dims], target[..., dims], std[dims])
    results: dict[str, Any] = {
        "env": meta.get("env", str(data_dir)), "models": args.models, "steps": args.steps,
        "batch": args.batch, "preset": args.preset, "optim": optim, "eval_dims": args.eval_dims, "segments": len(target),
        "train_transitions": len(train_buf), "heldout_transitions": len(heldout),
        "copy_baseline_cum_l1": copy.tolist(), "seeds": {},
    }  # fmt: skip
    preds: dict[str, torch.Tensor] = {}  # first seed's open-loop predictions, for pictures
    stepper = None
    if not args.no_effects and parse_mamujoco_name(results["env"]) is not None:
        stepper = MuJoCoStepper(results["env"])
    for seed in args.seeds:
        per_seed: dict[str, Any] = {}
        for kind in args.models:
            torch.manual_seed(seed)
            model = build(kind, spec, args.preset)
            seconds = train(model, train_buf, states, args.steps, args.batch, seed, optim[kind])
            res = evaluate(model, kind, seg, windows, std, args.horizon, dims, stepper)
            res["train_seconds"] = seconds
            preds.setdefault(kind, res.pop("prediction")[:8])
            per_seed[kind] = res
            logger.warning("seed %d %-8s one-step %.3f cum L1@%d %.3f train %.0f s", seed, kind,
                           res["one_step"], args.horizon, res["cum_l1"][-1], seconds)  # fmt: skip
        results["seeds"][str(seed)] = per_seed
    out.mkdir(parents=True, exist_ok=True)
    table = summary(results, args.horizon)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps({**results, "table": table}, indent=2))
    tmp.replace(out / "results.json")
    plot(results, out / "error_over_horizon.png")
    pictures = {"env": results["env"], "real": seg["states"][:8], "predicted": preds}
    torch.save(pictures, out / "predictions.pt")
    strip_model = next((k for k in ("cumulative", "sequential") if k in preds), None)
    if args.render and strip_model is not None:
        render_strip(pictures, out / "strip.png", model=strip_model)
    print(f"\n### {results['env']}: {len(train_buf)} train / {len(heldout)} held-out transitions, "
          f"{args.steps} steps x batch {args.batch}, seeds {args.seeds}\n")  # fmt: skip
    print(table)
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    main()
