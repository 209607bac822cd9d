"""One Algorithm-1 epoch of DIMA + MAPPO, timed per phase (paper Algorithm 1, Table 4).

The trainer is built with a preset (``paper``: Tables 1, 3, 4; ``cpu``: the smaller CPU preset),
its replay buffer is filled past the world-model warm-up with random-policy transitions from the
real env, and then every phase of one epoch is timed on its own:

* ``collect``: ``env_steps_per_epoch`` real env steps with the actor;
* ``decoder`` / ``denoiser`` / ``GPT``: ``steps_per_epoch`` updates of each world-model part;
* ``imagination``: ``policy_updates_per_epoch`` imagined rollouts (``num_envs`` × ``horizon``);
* ``PPO``: ``policy_updates_per_epoch`` MAPPO updates on those rollouts.

``--fraction f`` runs ``f`` of the updates of the update phases and scales their time by ``1/f``
(the per-update cost does not depend on the update's index), so the paper preset can be
measured in a fraction of its epoch time; the table says which rows are scaled.

    python benchmarks/bench_epoch.py --preset paper --env HalfCheetah-2x3
    python benchmarks/bench_epoch.py --preset cpu
    python benchmarks/bench_epoch.py --preset paper --fraction 0.25 --gpt-bf16
    python benchmarks/bench_epoch.py --preset paper --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from typing import TypeVar

import torch
from _common import machine, print_table, sync, trainer_past_warmup

from dimalib.training import trainer_config

T = TypeVar("T")


def timed(fn: Callable[[], object], device: torch.device) -> float:
    return timed_call(fn, device)[0]


def timed_call(fn: Callable[[], T], device: torch.device) -> tuple[float, T]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="HalfCheetah-2x3")
    p.add_argument("--preset", choices=("paper", "cpu"), default="paper")
    p.add_argument("--device", default="cpu")
    p.add_argument("--fraction", type=float, default=1.0, help="share of the updates to run")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--gpt-bf16", action="store_true",
                   help="the GPT's transformer blocks under bfloat16 autocast (autocast_bf16)")  # fmt: skip
    args = p.parse_args(argv)
    if not 0 < args.fraction <= 1:
        p.error(f"--fraction: expected a value in (0, 1], received {args.fraction}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = trainer_config(args.preset, args.env)
    if args.gpt_bf16:
        wm_cfg = cfg.world_model
        reward = dataclasses.replace(wm_cfg.reward, autocast_bf16=True)
        cfg = cfg.replace(world_model=dataclasses.replace(wm_cfg, reward=reward))
    trainer = trainer_past_warmup(args.env, cfg, device)
    wm_steps = max(1, round(cfg.wm_training.steps_per_epoch * args.fraction))
    n_policy = max(1, round(cfg.policy_updates_per_epoch * args.fraction))
    scale_wm = cfg.wm_training.steps_per_epoch / wm_steps
    scale_pol = cfg.policy_updates_per_epoch / n_policy
    try:
        wm, buf = trainer.wm_trainer, trainer.buffer
        for warm in (True, False):  # one short untimed pass first (allocator, lazy init)
            steps = 2 if warm else wm_steps
            times = {
                "collect": timed(trainer.collect, device),
                "decoder": timed(lambda s=steps: wm.train_decoder(buf, s), device),
                "denoiser": timed(lambda s=steps: wm.train_dynamics(buf, s), device),
                "GPT": timed(lambda s=steps: wm.train_reward(buf, s), device),
            }
        imag, ppo = 0.0, 0.0
        mappo, gen = trainer.learner, trainer.policy_generator
        for k in range(n_policy):
            dt, rollout = timed_call(
                lambda k=k: mappo.collect_imagined_rollout(trainer.imagination, generator=gen, seed=k),
                device,
            )  # fmt: skip
            imag += dt
            ppo += timed(lambda r=rollout: mappo.update(r, generator=gen), device)
        times["imagination"], times["PPO"] = imag, ppo
    finally:
        trainer.close()
    scaled = {
        "collect": 1.0, "decoder": scale_wm, "denoiser": scale_wm, "GPT": scale_wm,
        "imagination": scale_pol, "PPO": scale_pol,
    }  # fmt: skip
    epoch = {k: times[k] * scaled[k] for k in times}
    total = sum(epoch.values())
    rows = [
        (k, f"{times[k]:.2f}", f"x{scaled[k]:.0f}" if scaled[k] != 1 else "-", f"{epoch[k]:.2f}",
         f"{100 * epoch[k] / total:.0f}%")
        for k in times
    ]  # fmt: skip
    rows.append(("epoch", "", "", f"{total:.1f}", "100%"))
    per_hour = cfg.env_steps_per_epoch * 3600 / total
    print_table(
        f"One epoch, {args.preset} preset{' + bf16 GPT' if args.gpt_bf16 else ''}, {args.env} "
        f"({machine()}): {total:.1f} s "
        f"= {per_hour:,.0f} env steps per hour",
        rows, ("phase", "measured s", "scaled", "per epoch s", "share"),
    )  # fmt: skip
    return {**epoch, "epoch": total, "env_steps_per_hour": per_hour}


if __name__ == "__main__":
    main()
