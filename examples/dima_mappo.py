"""Train DIMA + MAPPO (paper Algorithm 1) on a real multi-agent env, from the command line.

    python examples/dima_mappo.py --env HalfCheetah-2x3 --preset cpu --total-env-steps 30000
    python examples/dima_mappo.py --env Ant-2x4 --preset paper --device cuda
    python examples/dima_mappo.py --resume runs/dima_mappo-HalfCheetah-2x3-0/checkpoint.pt \
        --total-env-steps 60000
    python examples/dima_mappo.py --env toy --preset cpu --set wm_warmup_transitions=1000

Writes into ``--out`` (default ``runs/dima_mappo-ENV-SEED``): ``metrics.csv`` (one row per epoch,
against env steps), TensorBoard events under ``tb/`` when ``tensorboard`` is installed,
``config.json``, ``checkpoint.pt`` with the replay buffer's block files in ``checkpoint.pt.buffer/``
(every ``--checkpoint-every`` epochs, default every epoch, at the end and on Ctrl-C; move the two
together) and ``learning_curve.png`` when matplotlib is installed.

Ctrl-C: the current epoch is finished, a checkpoint is saved, and the script exits with status
130 (press Ctrl-C again to stop at once without saving; the last checkpoint stays as it was).
Resume with ``--resume OUT/checkpoint.pt``: the continuation is identical to an uninterrupted run.

Exit status: 0 done (or nothing to do: a resumed run already at ``--total-env-steps``), 1 runtime
error (unreadable checkpoint, Bi-DexHands without Isaac Gym), 2 usage error (unknown env, a bad
number, an unavailable ``--device``, output folder already holding a run), 130 interrupted. Usage
errors are reported before anything is built or written.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import json
import logging
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from dimalib.diffusion import RevealSchedule
from dimalib.envs import BIDEXHANDS_TASKS, MAMUJOCO_TASKS, MJ_DEXHANDS_TASK_NAMES
from dimalib.envs.mamujoco import UnknownEnvError
from dimalib.training.config import (
    PRESETS,
    ConfigError,
    TrainerConfig,
    env_family,
    trainer_config,
    with_reveal,
)
from dimalib.training.trainer import TOY_ENV, Trainer, check_env_name
from dimalib.training.world_model_trainer import NonFiniteTrainingError
from dimalib.utils.checks import check_device

ENV_NAMES = [*MAMUJOCO_TASKS, *BIDEXHANDS_TASKS, *MJ_DEXHANDS_TASK_NAMES, TOY_ENV]
PAPER_BUDGET = {"mamujoco": 1_000_000, "bidexhands": 300_000}  # §5.1: real env steps per run
EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
CHECKPOINT = "checkpoint.pt"
REVEAL_CHOICES = ("sequential", "cumulative", "joint")

log = logging.getLogger("dima_mappo")


class UsageError(Exception):
    """A problem with the command line (exit status 2)."""


# --------------------------------------------------------------------------- config overrides
def override(config: Any, assignment: str, _label: str | None = None) -> Any:
    """``config`` with one (possibly nested) field set: ``"imagination.num_envs=100"``.

    The value is a Python literal (``100``, ``0.5``, ``(32, 32)``, ``'random'``, ``None``) or a
    bare word taken as a string.
    """
    label = assignment if _label is None else _label  # the user's whole FIELD=VALUE
    if "=" not in assignment:
        raise UsageError(f"--set: expected FIELD=VALUE, received {assignment!r}")
    path, text = assignment.split("=", 1)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    head, _, rest = path.strip().partition(".")
    names = [f.name for f in dataclasses.fields(config)] if dataclasses.is_dataclass(config) else []
    if head not in names:
        raise UsageError(f"--set {label}: unknown field {path!r}; fields here: {names}")
    if rest:
        value = override(getattr(config, head), f"{rest}={text}", label)
    try:
        return dataclasses.replace(config, **{head: value})
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--set {label}: {exc}") from exc


# --------------------------------------------------------------------------- Ctrl-C
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


# --------------------------------------------------------------------------- progress
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


# --------------------------------------------------------------------------- outputs
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
    ax.fill_between(steps, [m - s for m, s in zip(mean, std, strict=True)], [m + s for m, s in zip(mean, std, strict=True)],
                    alpha=0.2)  # fmt: skip
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def holds_run(out: Path) -> bool:
    return (out / CHECKPOINT).exists() or (out / "metrics.csv").exists()


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[1:]),
    )  # fmt: skip
    p.add_argument(
        "--env",
        help=f"one of {ENV_NAMES} or any MAMuJoCo 'Scenario-Conf' name gymnasium-robotics builds "
        "(Hopper-3x1, Pusher-3p, Humanoid-9|8, ManySegmentAnt-4x2, ...); required unless --resume",
    )
    p.add_argument(
        "--total-env-steps", type=int, default=None,
        help="real env steps of the whole run (default: the paper's budget, 1M MAMuJoCo, "
        "300k Bi-DexHands; 20k for toy)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--device", default=None, help="torch device (default: cpu, or the checkpoint's)"
    )
    p.add_argument(
        "--preset", choices=PRESETS, default=None,
        help="'paper' (Tables 1, 3, 4) or 'cpu' (smaller, >= 30k env steps/hour on 2 CPU cores); "
        "default: cpu on a CPU device, paper otherwise",
    )  # fmt: skip
    p.add_argument(
        "--reveal", choices=REVEAL_CHOICES, default=None,
        help="reveal schedule of the dynamics model: 'sequential' (the paper's eq. 9, one agent "
        "per denoising step), 'cumulative' (the revealed set grows; every agent's action reaches "
        "the next state) or 'joint' (the ablation); default: the preset's (paper: sequential, "
        "cpu: cumulative)",
    )  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a TrainerConfig field, e.g. imagination.num_envs=100")  # fmt: skip
    p.add_argument("--resume", metavar="PATH", help="continue from a checkpoint")
    p.add_argument("--out", help="output folder (default runs/dima_mappo-ENV-SEED)")
    p.add_argument("--checkpoint-every", type=int, default=1, metavar="N",
                   help="save a checkpoint every N epochs (default 1: the replay buffer is "
                   "written incrementally, so a kill loses at most one epoch; 0: only at the "
                   "end and on Ctrl-C)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="reuse an --out folder holding a run")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-tensorboard", action="store_true", help="CSV only")
    p.add_argument("-v", "--verbose", action="store_true", help="log INFO messages")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Refuse a bad command line before anything is built or written (:class:`UsageError`)."""
    if args.total_env_steps is not None and args.total_env_steps < 1:
        raise UsageError(
            f"--total-env-steps: expected a positive integer, received {args.total_env_steps}"
        )
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads: expected a positive integer, received {args.threads}")
    if args.checkpoint_every < 0:
        raise UsageError(
            f"--checkpoint-every: expected an integer >= 0 (0: only at the end and on Ctrl-C), "
            f"received {args.checkpoint_every}"
        )
    if args.device is not None:
        try:
            check_device("--device", args.device)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out: expected a folder, received {args.out!r}, an existing file")
    if args.resume is not None and not Path(args.resume).is_file():
        raise UsageError(f"--resume: expected a checkpoint file, received {args.resume!r} "
                         f"({'a folder' if Path(args.resume).is_dir() else 'no such file'})")  # fmt: skip


def build_trainer(args: argparse.Namespace) -> tuple[Trainer, Path]:
    """The trainer (new or resumed) and the output folder; writes nothing."""
    tensorboard = not args.no_tensorboard
    if args.resume:
        ckpt = Path(args.resume)
        out = Path(args.out) if args.out else ckpt.parent
        if args.preset or args.set or args.reveal:
            log.warning(
                "--preset/--set/--reveal are ignored with --resume (the checkpoint holds the "
                "config)"
            )
        trainer = Trainer.resume(ckpt, device=args.device, log_dir=out, tensorboard=tensorboard)
        if args.env and args.env != trainer.env_name:
            trainer.close()
            raise UsageError(
                f"--env {args.env!r} differs from the checkpoint's {trainer.env_name!r}"
            )
        return trainer, out
    if not args.env:
        raise UsageError("--env is required (or --resume PATH)")
    try:  # the library's own rule: the named tasks and any MAMuJoCo 'Scenario-Conf' name
        check_env_name(args.env)
    except ValueError as exc:
        raise UsageError(str(exc).removeprefix("env: ")) from None
    if args.seed < 0:
        raise UsageError(f"--seed: expected a non-negative integer, received {args.seed}")
    device = args.device or "cpu"
    preset = args.preset or ("cpu" if torch.device(device).type == "cpu" else "paper")
    config: TrainerConfig = trainer_config(preset, args.env)
    if args.reveal is not None:
        config = with_reveal(config, RevealSchedule(args.reveal))
    for assignment in args.set:
        config = override(config, assignment)
    out = Path(args.out or f"runs/dima_mappo-{args.env}-{args.seed}")
    if holds_run(out) and not args.overwrite:
        raise UsageError(
            f"{out} already holds a run; resume it with --resume {out / CHECKPOINT}, "
            "pick another --out, or pass --overwrite"
        )
    log.info("preset %s on %s", preset, device)
    trainer = Trainer(args.env, config, seed=args.seed, device=device, log_dir=out,
                      tensorboard=tensorboard)  # fmt: skip
    return trainer, out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        check_args(args)
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        trainer, out = build_trainer(args)
    except (UsageError, ConfigError, UnknownEnvError) as exc:  # the config does not fit the env,
        # or gymnasium-robotics has no such scenario / partition
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, FileNotFoundError, ImportError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        print("\ninterrupted before training started; nothing saved", file=sys.stderr)
        return EXIT_INTERRUPTED

    with trainer:
        total = args.total_env_steps
        if total is None:
            total = (
                20_000
                if trainer.env_name == TOY_ENV
                else PAPER_BUDGET[env_family(trainer.env_name)]
            )
        if trainer.env_steps >= total:  # a finished run: leave its files as they are
            print(f"nothing to do: the checkpoint holds {trainer.env_steps:,} env steps, "
                  f"--total-env-steps is {total:,}; pass a larger --total-env-steps to continue "
                  "(no file was changed)", file=sys.stderr)  # fmt: skip
            return 0
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(
            {"env": trainer.env_name, "seed": trainer.seed, "device": str(trainer.device),
             "config": trainer.config.to_dict()}, indent=2, default=str))  # fmt: skip
        ckpt = out / CHECKPOINT
        progress = Progress(total, trainer.env_steps)
        trainer.on_phase = progress.phase
        start = time.perf_counter()
        status = 0
        with GracefulInterrupt() as interrupt:
            try:
                per_epoch = trainer.config.env_steps_per_epoch
                while trainer.env_steps < total:
                    last = trainer.env_steps + per_epoch >= total
                    row = trainer.run_epoch(force_eval=last)
                    progress.update(trainer, row)
                    if interrupt.requested:
                        status = EXIT_INTERRUPTED
                        break
                    if args.checkpoint_every > 0 and trainer.epoch % args.checkpoint_every == 0:
                        trainer.save_checkpoint(ckpt)
            except KeyboardInterrupt:
                progress.close()
                print(f"stopped without saving; the last checkpoint ({ckpt}) is unchanged",
                      file=sys.stderr)  # fmt: skip
                return EXIT_INTERRUPTED
            except NonFiniteTrainingError as exc:
                progress.close()
                print(f"error: {exc}; stopped without saving, the last checkpoint ({ckpt}) is "
                      "unchanged", file=sys.stderr)  # fmt: skip
                return EXIT_RUNTIME
            trainer.save_checkpoint(ckpt)
        progress.close()
        minutes = (time.perf_counter() - start) / 60
        last_eval = trainer.last_eval
        ret = "n/a" if last_eval is None else f"{last_eval['eval/return_mean']:.2f}"
        word = "interrupted" if status else "done"
        print(f"{word}: {trainer.env_steps:,} env steps, {trainer.epoch} epochs, "
              f"{minutes:.1f} min this session; last eval return {ret}; checkpoint {ckpt}")  # fmt: skip
        if status == 0:
            title = f"DIMA + MAPPO, {trainer.env_name}, seed {trainer.seed}"
            if plot_learning_curve(trainer.history, out / "learning_curve.png", title):
                print(f"learning curve: {out / 'learning_curve.png'}")
            else:
                print("matplotlib is not installed: no learning_curve.png "
                      f"(the curve is in {out / 'metrics.csv'}: eval/return_mean vs env_steps)")  # fmt: skip
        return status


if __name__ == "__main__":
    sys.exit(main())
