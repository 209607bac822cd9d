"""What ``dimalib train`` shows and leaves besides the trainer's own files: the per-epoch progress
line, the two-stage Ctrl-C and the learning-curve PNG."""

from __future__ import annotations

import importlib.util
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from dimalib.training.trainer import Trainer

__all__ = ["GracefulInterrupt", "Progress", "plot_learning_curve"]


class GracefulInterrupt:
    """First Ctrl-C: let the epoch finish (then save and exit 130). Second: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> GracefulInterrupt:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nCtrl-C: finishing the current epoch, then saving a checkpoint "
            "(press Ctrl-C again to stop now without saving)",
            file=sys.stderr,
            flush=True,
        )


class Progress:
    """One line per epoch: tqdm if installed, else a plain line (rewritten on a terminal)."""

    def __init__(self, total: int, initial: int) -> None:
        self.total = total
        self._bar: Any = None
        self._tty = sys.stderr.isatty()
        if importlib.util.find_spec("tqdm") is not None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def phase(self, name: str) -> None:
        """Within an epoch (a paper-preset epoch takes minutes): the phase now running, on a
        terminal only (logs keep one line per epoch)."""
        if self._bar is not None:
            self._bar.set_description_str(name, refresh=True)
        elif self._tty:
            print(f"\r  ... {name}".ljust(100), end="", file=sys.stderr, flush=True)

    def update(self, trainer: Trainer, row: Mapping[str, float]) -> None:
        last = trainer.last_eval
        ret = (
            "n/a"
            if last is None
            else f"{last['eval/return_mean']:.1f} @ {int(last['env_steps']):,}"
        )
        rate = row["perf/env_steps_per_s"]
        phase = (
            "policy"
            if trainer.policy_epochs
            else ("world model" if trainer.wm_epochs else "warm-up")
        )
        if self._bar is not None:
            self._bar.n = min(trainer.env_steps, self.total)
            self._bar.set_postfix_str(f"epoch {trainer.epoch} ({phase}) eval return {ret}")
            return
        line = (
            f"epoch {trainer.epoch} ({phase}) | env steps {trainer.env_steps:,}/{self.total:,} | "
            f"{rate:.1f} env steps/s | eval return {ret}"
        )
        if self._tty:
            print("\r" + line.ljust(100), end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._tty:
            print(file=sys.stderr)


def plot_learning_curve(history: list[dict[str, float]], path: Path, title: str) -> bool:
    """Evaluation return against env steps as a PNG; False when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in history if "eval/return_mean" in r]
    steps = [r["env_steps"] for r in rows]
    mean = [r["eval/return_mean"] for r in rows]
    std = [r["eval/return_std"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, mean, marker="o", label="evaluation return (10 episodes)")
    lower = [m - s for m, s in zip(mean, std, strict=True)]
    upper = [m + s for m, s in zip(mean, std, strict=True)]
    ax.fill_between(steps, lower, upper, alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
