"""Shared helpers of the benchmark scripts: timing and the machine's description."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def machine() -> str:
    """One line naming the CPU (model, family/model numbers, vector ISA torch uses) or GPU, the
    thread count, the 1-minute load average and torch's version (the development VM's CPU
    changes between sessions: Zen 3 with AVX2 and Zen 5 with AVX-512 both occurred)."""
    cpu = platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if not line.strip():
                    break  # the first processor is enough
    except OSError:
        pass
    if "model name" in fields:
        cpu = f"{fields['model name']} (family {fields.get('cpu family', '?')} model "
        cpu += f"{fields.get('model', '?')}, {torch.backends.cpu.get_cpu_capability()})"
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    load = f", load {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    return f"{cpu}, {torch.get_num_threads()} threads{gpu}{load}, torch {torch.__version__}"


def trainer_past_warmup(env: str, config: Any, device: torch.device) -> Any:
    """A ``Trainer`` as at an epoch past both warm-ups (the epoch benchmarks' starting point): its
    buffer filled past ``wm_warmup_transitions`` with random-policy transitions from the real
    env, the normaliser initialised, the epoch counters past the policy warm-up (collection uses
    the actor). The caller closes it."""
    from dimalib.training.trainer import Trainer

    trainer = Trainer(env, config, seed=0, device=device, tensorboard=False)
    try:
        while len(trainer.buffer) < config.wm_warmup_transitions:
            trainer.collect()
        trainer._init_normalizer()
    except BaseException:
        trainer.close()
        raise
    trainer.wm_epochs = config.policy_warmup_wm_epochs + 1
    trainer.policy_epochs = 1
    return trainer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(
    fn: Callable[[], object], device: torch.device, *, warmup: int = 5, repeats: int = 30
) -> tuple[float, float]:
    """(median, interquartile range) of ``fn``'s wall time in milliseconds."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(times, n=4)
    return statistics.median(times), q[2] - q[0]


def print_table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    """Print a Markdown table (so the output can be pasted into docs/benchmarks.md)."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
