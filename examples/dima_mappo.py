"""Train DIMA + MAPPO (paper Algorithm 1) on a real multi-agent env, from the command line.

    python examples/dima_mappo.py --env HalfCheetah-2x3 --preset cpu --total-env-steps 30000
    python examples/dima_mappo.py --env Ant-2x4 --preset paper --device cuda
    python examples/dima_mappo.py --resume runs/dima_mappo-HalfCheetah-2x3-0/checkpoint.pt \
        --total-env-steps 60000
    python examples/dima_mappo.py --env toy --preset cpu --wm-warmup-transitions 1000 \
        --mappo.actor-lr 3e-4 --set imagination.num_envs=100

This is the ``dimalib train`` command (:func:`dimalib.cli.train_main`, installed with the package:
``dimalib train --env HalfCheetah-2x3 --preset cpu``); ``--help`` lists every flag. Every
``TrainerConfig`` field, nested ones included, is a flag (``--imagination.horizon``,
``--mappo.actor-lr``, ``--world-model.dynamics.channels 32 32``) whose default is the chosen
``--preset``'s for the ``--env``; ``--set FIELD=VALUE`` (a dotted field name and a Python literal)
still works and is applied after the flags.

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
flag or config value, an unavailable ``--device``, output folder already holding a run), 130
interrupted. Usage errors are reported before anything is built or written.
"""

from __future__ import annotations

from dimalib.cli import train_main as main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
