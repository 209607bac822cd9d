"""``dimalib train``: DIMA + MAPPO (paper Algorithm 1) on a real multi-agent env.

:func:`train_main` parses the command line (:mod:`dimalib.cli.args`), checks it, builds or
resumes the :class:`~dimalib.training.trainer.Trainer`, and runs epochs up to
``--total-env-steps`` with a progress line, checkpoints and a two-stage Ctrl-C. Every usage error
is reported (exit status 2) before anything is built or written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from dimalib.cli._display import GracefulInterrupt, Progress, plot_learning_curve
from dimalib.cli.args import TrainArgs, UsageError, override, parse_args
from dimalib.envs.mamujoco import UnknownEnvError
from dimalib.training.config import ConfigError, TrainerConfig, env_family
from dimalib.training.distributed import init_from_env, sync_flag
from dimalib.training.trainer import TOY_ENV, Trainer, check_env_name
from dimalib.training.world_model_trainer import NonFiniteTrainingError
from dimalib.utils.checks import check_device
from dimalib.utils.threads import auto_threads

__all__ = [
    "CHECKPOINT",
    "EXIT_INTERRUPTED",
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "build_trainer",
    "check_args",
    "train_main",
]

PAPER_BUDGET = {"mamujoco": 1_000_000, "bidexhands": 300_000}  # §5.1: real env steps per run
EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
CHECKPOINT = "checkpoint.pt"

log = logging.getLogger("dimalib.cli")


def check_args(args: TrainArgs) -> None:
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
        kind = "a folder" if Path(args.resume).is_dir() else "no such file"
        raise UsageError(f"--resume: expected a checkpoint file, received {args.resume!r} ({kind})")


def holds_run(out: Path) -> bool:
    return (out / CHECKPOINT).exists() or (out / "metrics.csv").exists()


def build_trainer(args: TrainArgs, config_flags: bool = False) -> tuple[Trainer, Path]:
    """The trainer (new or resumed) and the output folder; writes nothing."""
    tensorboard = not args.no_tensorboard
    if args.resume:
        ckpt = Path(args.resume)
        out = Path(args.out) if args.out else ckpt.parent
        if args.preset or args.set or args.reveal or config_flags:
            log.warning(
                "--preset/--reveal/--set and config flags are ignored with --resume (the "
                "checkpoint holds the config)"
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
    config: TrainerConfig = args.config  # the preset's, with --reveal and the config flags
    for assignment in args.set:
        config = override(config, assignment)
    out = Path(args.out or f"runs/dima_mappo-{args.env}-{args.seed}")
    if holds_run(out) and not args.overwrite:
        raise UsageError(
            f"{out} already holds a run; resume it with --resume {out / CHECKPOINT}, "
            "pick another --out, or pass --overwrite"
        )
    preset = args.preset or ("cpu" if torch.device(device).type == "cpu" else "paper")
    log.info("preset %s on %s", preset, device)
    trainer = Trainer(
        args.env, config, seed=args.seed, device=device, log_dir=out, tensorboard=tensorboard
    )
    return trainer, out


# --------------------------------------------------------------------------- main
def _under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _join_process_group(args: TrainArgs) -> TrainArgs:
    """``torchrun``: gloo for CPU runs, NCCL for CUDA ones with one GPU per rank
    (``LOCAL_RANK``); returns the args with this rank's device."""
    if args.resume and args.device is None:
        raise UsageError(
            "--device: under torchrun, --resume needs an explicit --device (cpu or cuda), so "
            "that every rank joins with the right backend"
        )
    device = torch.device(args.device or "cpu")
    if device.type == "cuda":
        if device.index is not None:
            raise UsageError(
                f"--device: under torchrun pass 'cuda' (each rank takes cuda:LOCAL_RANK), "
                f"received {args.device!r}"
            )
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    init_from_env("nccl" if device.type == "cuda" else "gloo", device=device)
    return dataclasses.replace(args, device=str(device))


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that Python's exit flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def train_main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``dimalib train`` (and ``examples/dima_mappo.py``): parse ``argv`` (default
    ``sys.argv[1:]``), train, and return the exit status (0, 1, 2 or 130; see ``--help``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or Path(sys.argv[0]).name or "dimalib train"
    try:
        args, config_flags = parse_args(argv, prog)
    except SystemExit as exc:  # --help, or tyro has printed why it refused the line
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `--help | head`: the reader left
        _quiet_stdout()
        return 0
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        check_args(args)
        threads = auto_threads() if args.threads is None else args.threads
        torch.set_num_threads(threads)
        log.info("%d torch threads%s", threads, " (auto)" if args.threads is None else "")
        if _under_torchrun():  # join the group before building: no rank writes before all check
            args = _join_process_group(args)
        trainer, out = build_trainer(args, config_flags)
        if _under_torchrun():
            try:
                trainer.distribute()
            except BaseException:
                trainer.close()
                raise
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
    try:
        with trainer:
            return _train(trainer, out, args)
    finally:
        if _under_torchrun() and dist.is_initialized():
            dist.destroy_process_group()


def _train(trainer: Trainer, out: Path, args: TrainArgs) -> int:
    total = args.total_env_steps
    if total is None:
        total = (
            20_000 if trainer.env_name == TOY_ENV else PAPER_BUDGET[env_family(trainer.env_name)]
        )
    if trainer.rank != 0:  # a distributed run's other ranks: world-model shares, no files
        return _follow(trainer, total)
    if trainer.env_steps >= total:  # a finished run: leave its files as they are
        print(
            f"nothing to do: the checkpoint holds {trainer.env_steps:,} env steps, "
            f"--total-env-steps is {total:,}; pass a larger --total-env-steps to continue "
            "(no file was changed)",
            file=sys.stderr,
        )
        return 0
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "env": trainer.env_name,
        "seed": trainer.seed,
        "device": str(trainer.device),
        "threads": torch.get_num_threads(),
        "config": trainer.config.to_dict(),
    }
    (out / "config.json").write_text(json.dumps(info, indent=2, default=str))
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
                stop = interrupt.requested
                if trainer.world_size > 1:  # every rank stops at the same epoch
                    stop = sync_flag(stop, device=trainer.device)
                if stop:
                    status = EXIT_INTERRUPTED
                    break
                if args.checkpoint_every > 0 and trainer.epoch % args.checkpoint_every == 0:
                    trainer.save_checkpoint(ckpt)
        except KeyboardInterrupt:
            progress.close()
            print(
                f"stopped without saving; the last checkpoint ({ckpt}) is unchanged",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        except NonFiniteTrainingError as exc:
            progress.close()
            print(
                f"error: {exc}; stopped without saving, the last checkpoint ({ckpt}) is unchanged",
                file=sys.stderr,
            )
            return EXIT_RUNTIME
        trainer.save_checkpoint(ckpt)
    progress.close()
    minutes = (time.perf_counter() - start) / 60
    last_eval = trainer.last_eval
    ret = "n/a" if last_eval is None else f"{last_eval['eval/return_mean']:.2f}"
    word = "interrupted" if status else "done"
    print(
        f"{word}: {trainer.env_steps:,} env steps, {trainer.epoch} epochs, "
        f"{minutes:.1f} min this session; last eval return {ret}; checkpoint {ckpt}"
    )
    if status == 0:
        title = f"DIMA + MAPPO, {trainer.env_name}, seed {trainer.seed}"
        if plot_learning_curve(trainer.history, out / "learning_curve.png", title):
            print(f"learning curve: {out / 'learning_curve.png'}")
        else:
            print(
                "matplotlib is not installed: no learning_curve.png "
                f"(the curve is in {out / 'metrics.csv'}: eval/return_mean vs env_steps)"
            )
    return status


def _follow(trainer: Trainer, total: int) -> int:
    """The loop of ranks 1..N-1: the same epochs as rank 0, which decides when to stop."""
    if trainer.env_steps >= total:
        return 0
    per_epoch = trainer.config.env_steps_per_epoch
    with GracefulInterrupt() as interrupt:
        while trainer.env_steps < total:
            try:
                trainer.run_epoch(force_eval=trainer.env_steps + per_epoch >= total)
            except NonFiniteTrainingError as exc:
                print(f"error (rank {trainer.rank}): {exc}", file=sys.stderr)
                return EXIT_RUNTIME
            if sync_flag(interrupt.requested, device=trainer.device):
                return EXIT_INTERRUPTED
    return 0
