"""Thread policy (issue "speed"): the cpu preset's world-model updates at 1 thread against all
cores, interleaved in one process, on whatever else the machine is running.

Run it once on a quiet machine and once beside a busy process (e.g. another training run): the
ratio shows why ``--threads`` defaults to the cores the load average leaves free
(:func:`dimalib.utils.threads.auto_threads`).

    python benchmarks/threads.py --repeats 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from _common import machine

from dimalib.training.config import trainer_config
from dimalib.training.trainer import Trainer
from dimalib.utils.threads import auto_threads, available_cores


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="HalfCheetah-2x3")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--updates", type=int, default=5, help="updates of each part per timing")
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    cores = available_cores()
    counts = sorted({1, cores})
    cfg = trainer_config("cpu", args.env)
    times: dict[int, list[float]] = {n: [] for n in counts}
    torch.set_num_threads(1)
    with Trainer(args.env, cfg, seed=0) as trainer:
        while len(trainer.buffer) < cfg.wm_warmup_transitions:
            trainer.collect()
        trainer._init_normalizer()
        wm, buf = trainer.wm_trainer, trainer.buffer

        def work() -> None:
            wm.train_decoder(buf, args.updates)
            wm.train_dynamics(buf, args.updates)
            wm.train_reward(buf, args.updates)

        for n in counts:  # warm-up: first-call allocations at each count
            torch.set_num_threads(n)
            work()
        for _ in range(args.repeats):  # A, B, A, B, ...
            for n in counts:
                torch.set_num_threads(n)
                start = time.perf_counter()
                work()
                times[n].append(time.perf_counter() - start)
    load_after = os.getloadavg()
    torch.set_num_threads(1)
    print(f"# {machine()}")
    print(f"# load before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f}; {cores} cores; auto_threads() now: {auto_threads()}")  # fmt: skip
    print(f"# {args.updates} updates each of the decoder, denoiser and GPT (cpu preset), "
          f"median of {args.repeats} interleaved repeats")  # fmt: skip
    print("| threads | ms per round | vs 1 thread |")
    print("|---|---|---|")
    med = {n: statistics.median(t) * 1e3 for n, t in times.items()}
    for n in counts:
        print(f"| {n} | {med[n]:.0f} | {med[n] / med[1]:.2f}× |")
    return {f"threads_{n}_ms": v for n, v in med.items()}


if __name__ == "__main__":
    main()
