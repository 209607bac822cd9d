"""Float32 linear layers: MKL (``F.linear``) against oneDNN (``dimalib.utils.linear``), interleaved.

Two tables:

* **products**: forward and forward+backward of the world model's and MAPPO's linear shapes
  (rows ``M``, in ``K``, out ``N``), GFLOP/s through each library and the ratio, both forced
  (``F.linear`` against the oneDNN autograd function); the second column says where
  ``dimalib.utils.linear.linear`` routes the shape (below ``MIN_MACS_GRAD`` only without a
  gradient, below ``MIN_MACS`` never). Forward+backward calls accumulate into ``.grad`` in both;
* **epoch** (``--epoch``): the phases of one Algorithm-1 epoch (as ``bench_epoch.py``), each timed
  with every dimalib layer on MKL and on oneDNN in turn (``dimalib.utils.linear.set_onednn``),
  A, B, A, B, ... in one process; medians and the ratio.

    python benchmarks/bench_linear.py --threads 1
    python benchmarks/bench_linear.py --threads 1 --epoch --preset cpu --rounds 5
    python benchmarks/bench_linear.py --threads 2 --epoch --preset paper --fraction 0.05
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _common import machine, print_table, trainer_past_warmup
from torch import nn

from dimalib.training import trainer_config
from dimalib.training.trainer import Trainer
from dimalib.utils.linear import (
    MIN_MACS,
    MIN_MACS_GRAD,
    _OneDNNLinear,
    onednn_available,
    set_onednn,
)

# (M, K, N): paper GPT (128 × 30 tokens, width 256), cpu-preset GPT (64 × 30 tokens, width 64),
# paper decoder (256, hidden 512), MAPPO minibatches and imagination batches (hidden 64)
SHAPES = [
    (3840, 256, 768), (3840, 256, 1024), (3840, 1024, 256),
    (1920, 64, 256), (1920, 256, 64), (256, 512, 512),
    (1200, 64, 64), (600, 17, 64), (400, 64, 256),
]  # fmt: skip


def _ms(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _product_row(m: int, k: int, n: int, repeats: int) -> tuple[str, ...]:
    x = torch.randn(m, k, requires_grad=True)
    w = torch.randn(n, k, requires_grad=True)
    b = torch.randn(n, requires_grad=True)
    g = torch.randn(m, n)
    gflop = 2 * m * k * n / 1e9
    with torch.no_grad():
        fwd_mkl = _ms(lambda: F.linear(x, w, b), repeats)
        fwd_dnn = _ms(lambda: _OneDNNLinear.apply(x, w, b), repeats)
    both_mkl = _ms(lambda: F.linear(x, w, b).backward(g), repeats)
    both_dnn = _ms(lambda: _OneDNNLinear.apply(x, w, b).backward(g), repeats)
    macs = m * k * n
    routed = (
        "oneDNN" if macs >= MIN_MACS_GRAD else "oneDNN without grad" if macs >= MIN_MACS else "MKL"
    )
    return (
        f"{m}×{k} → {n}",
        routed,
        f"{gflop / fwd_mkl * 1e3:.0f}", f"{gflop / fwd_dnn * 1e3:.0f}", f"{fwd_mkl / fwd_dnn:.2f}",
        f"{3 * gflop / both_mkl * 1e3:.0f}", f"{3 * gflop / both_dnn * 1e3:.0f}",
        f"{both_mkl / both_dnn:.2f}",
    )  # fmt: skip


def products(repeats: int) -> None:
    rows = []
    for m, k, n in SHAPES:
        rows.append(_product_row(m, k, n, repeats))
    print_table(
        f"float32 linear products, MKL vs oneDNN ({machine()})",
        rows,
        ("M×K → N", "dimalib sends it to", "fwd MKL GFLOP/s", "fwd oneDNN", "ratio",
         "fwd+bwd MKL GFLOP/s", "fwd+bwd oneDNN", "ratio"),
    )  # fmt: skip


def _modules(trainer: Trainer) -> list[nn.Module]:
    learner = [v for v in vars(trainer.mappo).values() if isinstance(v, nn.Module)]
    return [trainer.world_model, *learner]


def epoch(preset: str, env: str, fraction: float, rounds: int) -> None:
    cfg = trainer_config(preset, env)
    trainer = trainer_past_warmup(env, cfg, torch.device("cpu"))
    wm_steps = max(1, round(cfg.wm_training.steps_per_epoch * fraction))
    n_policy = max(1, round(cfg.policy_updates_per_epoch * fraction))
    scale_wm = cfg.wm_training.steps_per_epoch / wm_steps
    scale_pol = cfg.policy_updates_per_epoch / n_policy
    modules = _modules(trainer)
    times: dict[bool, dict[str, list[float]]] = {False: {}, True: {}}
    try:
        wm, buf, mappo = trainer.wm_trainer, trainer.buffer, trainer.mappo
        gen = trainer.policy_generator
        for r in range(rounds + 1):  # round 0 warms both up and is not kept
            for flag in (False, True) if r % 2 else (True, False):  # alternate which goes first
                for m in modules:
                    set_onednn(m, flag)
                phase: dict[str, float] = {}
                for name, fn in (
                    ("decoder", lambda: wm.train_decoder(buf, wm_steps)),
                    ("denoiser", lambda: wm.train_dynamics(buf, wm_steps)),
                    ("GPT", lambda: wm.train_reward(buf, wm_steps)),
                ):
                    t0 = time.perf_counter()
                    fn()
                    phase[name] = (time.perf_counter() - t0) * scale_wm
                imag = ppo = 0.0
                for k in range(n_policy):
                    t0 = time.perf_counter()
                    rollout = mappo.collect_imagined_rollout(
                        trainer.imagination, generator=gen, seed=k
                    )
                    t1 = time.perf_counter()
                    mappo.update(rollout, generator=gen)
                    imag, ppo = imag + t1 - t0, ppo + time.perf_counter() - t1
                phase["imagination"], phase["PPO"] = imag * scale_pol, ppo * scale_pol
                phase["epoch (these phases)"] = sum(phase.values())
                if r:
                    for name, v in phase.items():
                        times[flag].setdefault(name, []).append(v)
    finally:
        trainer.close()
    rows = []
    for name in times[False]:
        a, b = statistics.median(times[False][name]), statistics.median(times[True][name])
        rows.append((name, f"{a:.2f}", f"{b:.2f}", f"{a / b:.2f}"))
    print_table(
        f"One {preset}-preset epoch on {env}, MKL vs oneDNN float32 linear layers, "
        f"medians of {rounds} interleaved rounds, updates ×{scale_wm:.0f} / ×{scale_pol:.0f} "
        f"scaled ({machine()})",
        rows,
        ("phase", "MKL s", "oneDNN s", "ratio"),
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=20, help="timed calls per product")
    p.add_argument("--epoch", action="store_true", help="also time an epoch's phases")
    p.add_argument("--preset", choices=("paper", "cpu"), default="cpu")
    p.add_argument("--env", default="HalfCheetah-2x3")
    p.add_argument("--fraction", type=float, default=1.0, help="share of the updates to run")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each variant")
    args = p.parse_args(argv)
    if not 0 < args.fraction <= 1:
        p.error(f"--fraction: expected a value in (0, 1], received {args.fraction}")
    if not onednn_available():
        p.error("this PyTorch has no oneDNN linear operator (torch.backends.mkldnn)")
    if args.threads:
        torch.set_num_threads(args.threads)
    if hasattr(os, "getloadavg"):
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    products(args.repeats)
    if args.epoch:
        epoch(args.preset, args.env, args.fraction, args.rounds)


if __name__ == "__main__":
    main()
