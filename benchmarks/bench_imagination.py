"""Imagination throughput: transitions/s of `ImaginationEnv` at 600 rollouts × horizon 15.

Paper model sizes (Table 3) on HalfCheetah-2x3 (state 17, 2 agents × 3 actions, obs 12 each;
4 denoising steps) and Ant-4x2 (state 105, 4 agents × 2, obs 42 each; 4 denoising steps). One
imagined transition = the denoiser's sampling of the next state, the GPT's KV-cached reward and
termination, and the decoder. Start contexts come from a small replay buffer of random data (the
weights are untrained: speed does not depend on them).

    python benchmarks/bench_imagination.py [--device cpu|cuda] [--repeats 3] [--threads N]

Each task runs twice: the GPT in float32 (the default) and with ``autocast_bf16=True`` (its
transformer blocks in bfloat16; see ``RewardTerminationConfig``).

``--compare-fold`` instead times the denoiser's sampling block against the computation before it
(``SequentialAgentDenoiser.sampling``: the U-Net's stacked condition projection folded into the
action pool's output layer and the sampler's one σ embedded once; before: the projection of the
full condition and σ embedded per sample), interleaved in one process (A, B, B, A, ...), medians:

    python benchmarks/bench_imagination.py --compare-fold --threads 1 --repeats 6
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from _common import machine, print_table, sync

from dimalib import MultiAgentSpec
from dimalib.data import ReplayBuffer
from dimalib.imagination import ImaginationConfig, ImaginationEnv
from dimalib.world_model import DIMAWorldModel, RewardTerminationConfig, WorldModelConfig

TASKS = {
    "HalfCheetah-2x3": MultiAgentSpec(("a0", "a1"), (12, 12), (3, 3), 17),
    "Ant-4x2": MultiAgentSpec(("a0", "a1", "a2", "a3"), (42,) * 4, (2,) * 4, 105),
}


def random_buffer(spec: MultiAgentSpec, rows: int = 500) -> ReplayBuffer:
    buf = ReplayBuffer(spec, capacity=rows)
    S, Ob, A = spec.state_dim, spec.joint_obs_dim, spec.joint_action_dim
    done = torch.zeros(rows, dtype=torch.bool)
    done[99::100] = True
    buf.extend(
        torch.randn(rows, S), torch.randn(rows, Ob), torch.rand(rows, A) * 2 - 1,
        torch.randn(rows), torch.zeros(rows, dtype=torch.bool), done,
        torch.randn(rows, S), torch.randn(rows, Ob),
    )  # fmt: skip
    return buf


def bench(name: str, device: torch.device, repeats: int, gpt_bf16: bool) -> tuple[str, ...]:
    spec = TASKS[name]
    torch.manual_seed(0)
    config = WorldModelConfig(reward=RewardTerminationConfig(autocast_bf16=gpt_bf16))
    wm = DIMAWorldModel(spec, config).to(device)
    env = ImaginationEnv(wm, random_buffer(spec), ImaginationConfig(), seed=0)
    actions = torch.rand(env.horizon, env.num_envs, spec.joint_action_dim, device=device) * 2 - 1

    rollout = _rollout_fn(env, actions)
    rollout()  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        rollout()
        sync(device)
        times.append(time.perf_counter() - t0)
    best = sorted(times)[len(times) // 2]
    n = env.num_envs * env.horizon
    return (
        name,
        "bfloat16 autocast" if gpt_bf16 else "float32",
        f"{env.num_envs} × {env.horizon}",
        str(wm.dynamics.sampler.num_steps(spec.n_agents)),
        f"{best:.2f}",
        f"{n / best:,.0f}",
    )


def _rollout_fn(env: ImaginationEnv, actions: torch.Tensor) -> Callable[[], None]:
    def rollout() -> None:
        env.reset()
        for t in range(env.horizon):
            env.step(actions[t])

    return rollout


def _unfolded(den: Any) -> Callable[[bool], None]:
    """A switch between the sampling block and the computation before it, on one model: the
    U-Net's own ``frozen()`` (no fold) and σ passed as a per-sample tensor (embedded per sample)."""
    network = den._network

    def per_sample_sigma(noisy: torch.Tensor, sigma: torch.Tensor, *rest: Any) -> Any:
        return network(noisy, sigma.contiguous(), *rest)

    def switch(before: bool) -> None:
        if before:
            den.sampling, den._network = den.unet.frozen, per_sample_sigma
        else:
            den.__dict__.pop("sampling", None)
            den.__dict__.pop("_network", None)

    return switch


def compare_fold(name: str, device: torch.device, repeats: int) -> tuple[str, ...]:
    spec = TASKS[name]
    torch.manual_seed(0)
    wm = DIMAWorldModel(spec, WorldModelConfig()).to(device)
    env = ImaginationEnv(wm, random_buffer(spec), ImaginationConfig(), seed=0)
    actions = torch.rand(env.horizon, env.num_envs, spec.joint_action_dim, device=device) * 2 - 1
    rollout, switch = _rollout_fn(env, actions), _unfolded(wm.dynamics)
    times: dict[bool, list[float]] = {True: [], False: []}
    for before in (True, False):  # warm-up
        switch(before)
        rollout()
    for r in range(repeats):
        for before in (True, False) if r % 2 == 0 else (False, True):
            switch(before)
            sync(device)
            t0 = time.perf_counter()
            rollout()
            sync(device)
            times[before].append(time.perf_counter() - t0)
    switch(False)
    old, new = statistics.median(times[True]), statistics.median(times[False])
    n = env.num_envs * env.horizon
    return (
        name,
        f"{old:.2f}",
        f"{new:.2f}",
        f"{n / old:,.0f}",
        f"{n / new:,.0f}",
        f"{old / new:.2f}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compare-fold", action="store_true",
                        help="time the sampling block against the computation before it")  # fmt: skip
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.compare_fold:
        print_table(
            f"Denoiser sampling block, fp32 GPT ({machine()}), {args.repeats} interleaved repeats",
            [compare_fold(task, device, args.repeats) for task in TASKS],
            ("task", "before s", "sampling() s", "before /s", "sampling() /s", "speed-up"),
        )
        return
    rows = [bench(task, device, args.repeats, bf16) for task in TASKS for bf16 in (False, True)]
    print_table(
        f"Imagination ({machine()})",
        rows,
        ("task", "GPT precision", "rollouts × horizon", "denoising steps", "seconds per rollout batch",
         "imagined transitions/s"),
    )  # fmt: skip


if __name__ == "__main__":
    main()
