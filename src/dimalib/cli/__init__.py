"""The ``dimalib`` command (``[project.scripts]``): ``dimalib train ...``.

    dimalib train --env HalfCheetah-2x3 --preset cpu --total-env-steps 30000
    dimalib train --env toy --mappo.actor-lr 3e-4 --imagination.horizon 10
    dimalib train --help      # every flag, TrainerConfig's nested fields included

``examples/dima_mappo.py`` is the same ``train`` command (:func:`train_main`). The flags are
parsed by tyro from :class:`~dimalib.cli.args.TrainArgs` (:mod:`dimalib.cli.args`);
:mod:`dimalib.cli.train` runs them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dimalib.cli.args import TrainArgs, UsageError, override, parse_args
from dimalib.cli.train import EXIT_INTERRUPTED, EXIT_RUNTIME, EXIT_USAGE, train_main

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "TrainArgs",
    "UsageError",
    "main",
    "override",
    "parse_args",
    "train_main",
]

COMMANDS = {"train": "train DIMA + MAPPO (paper Algorithm 1) on a multi-agent env"}

USAGE = "\n".join(
    [
        "usage: dimalib [-h] [--version] COMMAND [ARGS ...]",
        "",
        "DIMA (diffusion multi-agent world model) + MAPPO.",
        "",
        "commands:",
        *(f"  {name:<10}{text}" for name, text in COMMANDS.items()),
        "",
        "'dimalib COMMAND --help' lists a command's flags.",
    ]
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dimalib`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(USAGE, file=sys.stderr)
        return EXIT_USAGE
    command, rest = args[0], args[1:]
    if command in ("-h", "--help"):
        print(USAGE)
        return 0
    if command == "--version":
        from dimalib import __version__

        print(f"dimalib {__version__}")
        return 0
    if command == "train":
        return train_main(rest, prog="dimalib train")
    print(USAGE, file=sys.stderr)
    print(
        f"\nerror: unknown command {command!r}; expected one of {list(COMMANDS)}", file=sys.stderr
    )
    return EXIT_USAGE
