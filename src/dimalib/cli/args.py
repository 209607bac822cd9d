"""The command line of ``dimalib train``, parsed by `tyro <https://brentyi.github.io/tyro/>`_.

:class:`TrainArgs` holds the run options and, flattened into the same flag namespace, the whole
:class:`~dimalib.training.config.TrainerConfig`: every field, nested ones included, is a flag
(``--mappo.actor-lr``, ``--imagination.horizon``, ``--world-model.dynamics.channels 32 32``),
documented in ``--help`` by the field's docstring or comment.

Two stages (:func:`parse_args`): ``--preset``, ``--env``, ``--device`` and ``--reveal`` are read
first and pick the preset (:func:`~dimalib.training.config.trainer_config`) that supplies the
flags' defaults; tyro then parses the whole line against it. ``--set FIELD=VALUE`` (the older
spelling, kept; :func:`override`) is applied after the flags, when the trainer is built.

Fields tyro cannot read as it would by itself: ``RevealSchedule.sets`` (a tuple of
variable-length tuples) is one Python literal here
(``--world-model.dynamics.sampler.reveal.sets "((0,), (0, 1), (0, 1, 2))"``); the ``order``
fields (a name or a sequence of agents) take ``descending`` / ``ascending`` / ``random`` or the
agents, ``--imagination.order 2 0 1``; ``X | None`` fields take ``None``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import torch
import tyro

from dimalib.envs.registry import known_names
from dimalib.training.config import PRESETS, Preset, TrainerConfig, trainer_config, with_reveal
from dimalib.world_model.dynamics.reveal import RevealSchedule

__all__ = [
    "DESCRIPTION",
    "ENV_NAMES",
    "REVEAL_CHOICES",
    "TrainArgs",
    "UsageError",
    "override",
    "parse_args",
]

ENV_NAMES = known_names()  # the registry's exact names (toy first) at import time
Reveal = Literal["sequential", "cumulative", "joint"]
REVEAL_CHOICES: tuple[Reveal, ...] = ("sequential", "cumulative", "joint")

# tyro joins a line that starts with a letter to the line before (docstring reflow) and does not
# wrap the description: every line below that must stay a line starts with a space.
DESCRIPTION = """\
Train DIMA + MAPPO (paper Algorithm 1) on a real multi-agent env.

Examples:
  {prog} --env HalfCheetah-2x3 --preset cpu --total-env-steps 30000
  {prog} --env Ant-2x4 --preset paper --device cuda
  {prog} --env toy --imagination.horizon 10 --mappo.actor-lr 3e-4 --set num_envs=2
  {prog} --resume runs/dima_mappo-HalfCheetah-2x3-0/checkpoint.pt --total-env-steps 60000

Config flags:
  Every TrainerConfig field is a flag, nested ones dotted: --mappo.actor-lr,
  --imagination.horizon, --world-model.dynamics.channels 32 32, ... Their defaults, shown
  below, are the preset's (--preset for the family of --env, then --reveal), so
  '{prog} --env ShadowHandPen --preset paper --help' shows that preset's values.
  --set FIELD=VALUE (the older spelling: a dotted field name and a Python literal, e.g.
  --set imagination.num_envs=100) is applied after the flags. With --resume the checkpoint
  holds the config: config flags, --preset, --reveal and --set are ignored (with a warning).

Outputs (in --out, default runs/dima_mappo-ENV-SEED):
  metrics.csv (one row per epoch, against env steps), TensorBoard events under tb/ when
  tensorboard is installed, config.json, checkpoint.pt with the replay buffer's block files in
  checkpoint.pt.buffer/ (every --checkpoint-every epochs, at the end and on Ctrl-C; move the two
  together) and learning_curve.png when matplotlib is installed.
  Ctrl-C finishes the current epoch, saves a checkpoint and exits with status 130 (Ctrl-C again
  stops at once without saving). --resume OUT/checkpoint.pt continues exactly as an
  uninterrupted run would.

Exit status:
  0 done (or nothing to do: a resumed run already at --total-env-steps); 1 runtime error
  (unreadable checkpoint, Bi-DexHands without Isaac Gym); 2 usage error (unknown env, a bad flag
  or config value, an unavailable --device, an --out folder already holding a run), reported
  before anything is built or written; 130 interrupted."""


class UsageError(Exception):
    """A problem with the command line (exit status 2)."""


def _flag(help: str, default: str | None = None, **kwargs: Any) -> Any:
    """tyro's settings of a field; ``default`` replaces tyro's ``(default: None)`` hint (in
    parentheses, it is the whole hint)."""
    hint = default if default is None or default.startswith("(") else f"(default: {default})"
    return tyro.conf.arg(help=help, help_behavior_hint=hint, **kwargs)


@dataclass
class TrainArgs:
    """The command line of ``dimalib train``: run options, then the whole trainer config."""

    env: Annotated[
        str | None,
        _flag(
            f"one of {ENV_NAMES} or any MAMuJoCo 'Scenario-Conf' name gymnasium-robotics builds "
            "(Hopper-3x1, Pusher-3p, Humanoid-9|8, ManySegmentAnt-4x2, ...)",
            "(required unless --resume)",
            metavar="ENV",
        ),
    ] = None
    total_env_steps: Annotated[
        int | None,
        _flag(
            "real env steps of the whole run",
            "the paper's budget, 1M MAMuJoCo, 300k Bi-DexHands; 20k for toy",
            metavar="INT",
        ),
    ] = None
    seed: Annotated[int, _flag("seed of the run (envs, networks, sampling)", "0")] = 0
    device: Annotated[
        str | None, _flag("torch device", "cpu, or the checkpoint's", metavar="DEVICE")
    ] = None
    preset: Annotated[
        Preset | None,
        _flag(
            "'paper' (Tables 1, 3, 4) or 'cpu' (smaller, >= 30k env steps/hour on 2 CPU cores); "
            "supplies the config flags' defaults",
            "cpu on a CPU device, paper otherwise",
            metavar="{paper,cpu}",
        ),
    ] = None
    reveal: Annotated[
        Reveal | None,
        _flag(
            "reveal schedule of the dynamics model: 'sequential' (the paper's eq. 9, one agent "
            "per denoising step), 'cumulative' (the revealed set grows; every agent's action "
            "reaches the next state) or 'joint' (the ablation); replaces "
            "--world-model.dynamics.sampler.reveal.* before the flags apply",
            "the preset's, paper: sequential, cpu: cumulative",
            metavar="{sequential,cumulative,joint}",
        ),
    ] = None
    set: Annotated[
        list[str],
        tyro.conf.UseAppendAction,
        _flag(
            "override a TrainerConfig field by its dotted name, e.g. imagination.num_envs=100 "
            "(a Python literal or a bare word), after the config flags",
            "(repeatable)",
            metavar="FIELD=VALUE",
        ),
    ] = field(default_factory=list)
    resume: Annotated[
        str | None, _flag("continue from a checkpoint", "a new run", metavar="PATH")
    ] = None
    out: Annotated[
        str | None, _flag("output folder", "runs/dima_mappo-ENV-SEED", metavar="DIR")
    ] = None
    checkpoint_every: Annotated[
        int,
        _flag(
            "save a checkpoint every N epochs (1: the replay buffer is written incrementally, "
            "so a kill loses at most one epoch; 0: only at the end and on Ctrl-C)",
            "1",
            metavar="N",
        ),
    ] = 1
    overwrite: Annotated[
        bool, tyro.conf.FlagCreatePairsOff, _flag("reuse an --out folder holding a run")
    ] = False
    threads: Annotated[
        int | None,
        _flag(
            "torch CPU threads; default: the cores the 1-minute load average leaves free (a "
            "shared machine gets 1 thread: 2 threads beside a busy process run 2.6-2.9x slower); "
            "fix it for runs reproducible bit for bit",
            "auto",
            metavar="INT",
        ),
    ] = None
    no_tensorboard: Annotated[
        bool, tyro.conf.FlagCreatePairsOff, _flag("CSV only, no TensorBoard events")
    ] = False
    verbose: Annotated[
        bool, tyro.conf.FlagCreatePairsOff, _flag("log INFO messages", aliases=("-v",))
    ] = False
    config: Annotated[TrainerConfig, tyro.conf.arg(name="")] = field(default_factory=TrainerConfig)


# --------------------------------------------------------------------------- tyro rules
def _is_nested_tuple(tp: Any) -> bool:
    """``tuple[tuple[X, ...], ...]``: tyro alone would read one inner tuple only."""
    args = typing.get_args(tp)
    return (
        typing.get_origin(tp) is tuple
        and len(args) == 2
        and args[1] is Ellipsis
        and typing.get_origin(args[0]) is tuple
    )


def _as_tuples(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value


def _literal(text: str, optional: bool) -> Any:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(
            f"expected a Python literal such as '((0,), (0, 1))', received {text!r}"
        ) from None
    if value is None and optional:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (list, tuple)) for v in value):
        raise ValueError(f"expected a tuple of tuples such as '((0,), (0, 1))', received {text!r}")
    return _as_tuples(value)


REGISTRY = tyro.constructors.ConstructorRegistry()


@REGISTRY.primitive_rule
def _nested_tuple_rule(
    info: tyro.constructors.PrimitiveTypeInfo,
) -> tyro.constructors.PrimitiveConstructorSpec[Any] | None:
    """A tuple of variable-length tuples (``RevealSchedule.sets``) as one Python literal:
    ``--world-model.dynamics.sampler.reveal.sets "((0,), (0, 1))"``."""
    members = typing.get_args(info.type)
    union = typing.get_origin(info.type) in (typing.Union, types.UnionType)
    optional = union and type(None) in members
    inner = [m for m in members if m is not type(None)] if union else [info.type]
    if len(inner) != 1 or not _is_nested_tuple(inner[0]):
        return None
    return tyro.constructors.PrimitiveConstructorSpec(
        nargs=1,
        metavar="'((I,...),...)'" + ("|None" if optional else ""),
        instance_from_str=lambda args: _literal(args[0], optional),
        is_instance=lambda v: (v is None and optional) or isinstance(v, tuple),
        str_from_instance=lambda v: [repr(v)],
    )


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


def _tuples(config: Any) -> Any:
    """``config`` with the lists tyro builds for ``Sequence`` fields (an explicit ``order``) made
    tuples, as the presets and ``--set`` write them (frozen configs stay hashable)."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        new = _tuples(value) if dataclasses.is_dataclass(value) else value
        if isinstance(new, list):
            new = tuple(new)
        if new is not value:
            changes[f.name] = new
    return dataclasses.replace(config, **changes) if changes else config


# --------------------------------------------------------------------------- parsing
def _preset_defaults(argv: Sequence[str]) -> TrainerConfig:
    """Stage 1: the preset that supplies the config flags' defaults, from ``--preset``, ``--env``,
    ``--device`` and ``--reveal`` alone. A missing or bad value falls back to the default here;
    tyro (stage 2) or :func:`check_args` reports it."""
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    for flag in ("--env", "--preset", "--device", "--reveal"):
        p.add_argument(flag)
    try:
        known, _ = p.parse_known_args(list(argv))
    except argparse.ArgumentError:
        known = argparse.Namespace(env=None, preset=None, device=None, reveal=None)
    try:
        device_type = torch.device(known.device or "cpu").type
    except (RuntimeError, ValueError, TypeError):
        device_type = "cpu"
    preset = known.preset if known.preset in PRESETS else None
    preset = preset or ("cpu" if device_type == "cpu" else "paper")
    config = trainer_config(preset, known.env or "HalfCheetah-2x3")
    if known.reveal in REVEAL_CHOICES:
        config = with_reveal(config, RevealSchedule(known.reveal))
    return config


def parse_args(argv: Sequence[str], prog: str) -> tuple[TrainArgs, bool]:
    """The parsed command line and whether any config flag changed the preset's config.

    Raises:
        SystemExit: ``--help`` (0) or a flag tyro rejects (2: an unknown flag, a bad number, a
            nested config's value its dataclass refuses; tyro prints why, naming the field).
        UsageError: a value ``TrainerConfig`` itself refuses (e.g. ``imagination.horizon``
            above the reward model's ``max_steps``).
    """
    defaults = _preset_defaults(argv)
    try:
        args = tyro.cli(
            TrainArgs,
            args=list(argv),
            prog=prog,
            description=DESCRIPTION.format(prog=prog),
            default=TrainArgs(config=defaults),
            registry=REGISTRY,
        )
    except ValueError as exc:  # TrainerConfig's own checks (tyro reports the nested configs'):
        # the flattened config is tyro's root, whose errors it leaves to the caller
        raise UsageError(str(exc)) from None
    args.config = _tuples(args.config)
    return args, args.config != defaults
