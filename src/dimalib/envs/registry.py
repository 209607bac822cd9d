"""One table of environment names: what every name builds, its preset family and its abilities.

Every env name dimalib accepts (``make_env``, ``make_vector_env``, the ``Trainer``, the presets of
``trainer_config``, the diagnostics' true dynamics, the example scripts) resolves here, to one
:class:`EnvEntry`. An entry holds

* how to match the name: the exact :attr:`EnvEntry.name`, or a predicate (:attr:`EnvEntry.match`)
  for a family of names such as MAMuJoCo's ``"Scenario-Conf"`` (``"Hopper-3x1"``, ...);
* how to build it: one env (:attr:`EnvEntry.make`, a PettingZoo ``ParallelEnv`` with ``state()``,
  batched by :class:`~dimalib.envs.vector.VectorMultiAgentEnv`) and/or a batched env directly
  (:attr:`EnvEntry.make_vector`; Bi-DexHands, which Isaac Gym batches itself);
* its preset family (:attr:`EnvEntry.family`, which Table 1/4 values ``trainer_config`` picks),
  whether ``reset(seed=...)`` seeds it (:attr:`EnvEntry.seedable`), and optionally its exact
  dynamics for the world-model diagnostics (:attr:`EnvEntry.true_dynamics`).

Built in (registered when this module is imported; nothing heavy runs then, MuJoCo,
gymnasium-robotics and Isaac Gym are imported by the factories):

* ``"toy"`` (family ``"mamujoco"``): :class:`~dimalib.envs.toy.CoupledPointMasses`, with its
  exact dynamics;
* the seven paper MAMuJoCo tasks (``"mamujoco"``):
  :func:`~dimalib.envs.mamujoco.make_mamujoco`, with the real simulator as true dynamics;
* the four Bi-DexHands tasks (``"bidexhands"``, batched and seeded by Isaac Gym, not seedable on
  reset): :func:`~dimalib.envs.bidexhands.make_bidexhands`;
* the four ``"MjShadowHand..."`` tasks (``"bidexhands"``):
  :class:`~dimalib.envs.mj_dexhands.MjDexHandsEnv`;
* the pattern ``"<MAMuJoCo Scenario-Conf>"``: any other MAMuJoCo ``"Scenario-Conf"`` name
  (:func:`~dimalib.envs.mamujoco.parse_mamujoco_name`), as the paper tasks.

Your own env takes one call::

    register_env("points-4", lambda name, **kw: CoupledPointMasses(n_agents=4, **kw))
    Trainer("points-4", config)

Every factory of an entry receives the env name first (pattern entries need it), then keyword
arguments. Exact names are looked up before patterns; patterns in registration order. A
registration lasts for the process: a run resumed in another process (or the workers of
``VectorMultiAgentEnv(mode="subprocess")`` built from ``make_env``) must register it again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from dimalib.envs.bidexhands import BIDEXHANDS_TASKS, make_bidexhands, make_bidexhands_vector
from dimalib.envs.mamujoco import (
    MAMUJOCO_TASKS,
    UnknownEnvError,
    did_you_mean,
    make_mamujoco_task,
    parse_mamujoco_name,
    suggest_mamujoco_name,
)
from dimalib.envs.mj_dexhands import MJ_DEXHANDS_TASK_NAMES
from dimalib.envs.vector import RealVectorEnv, VectorMultiAgentEnv
from dimalib.utils.checks import check_int

__all__ = [
    "ENV_FAMILIES",
    "TOY_ENV",
    "EnvEntry",
    "UnknownEnvError",
    "entries",
    "known_names",
    "lookup",
    "make_env",
    "make_vector_env",
    "register_env",
    "suggest",
    "unregister_env",
]

#: The preset families: which of the paper's Table 1/4 values ``trainer_config`` uses.
ENV_FAMILIES: tuple[str, ...] = ("mamujoco", "bidexhands")

TOY_ENV = "toy"
"""Name of the fast analytic test env: :class:`~dimalib.envs.toy.CoupledPointMasses` with three
agents of action sizes 1, 2 and 3 (episodes of 100 steps unless ``max_episode_steps`` says)."""


@dataclass(frozen=True)
class EnvEntry:
    """One registered env name (or family of names) and what it builds.

    Attributes:
        name: the exact env name; for a pattern entry (``match`` given), a label naming the
            pattern (not itself a valid env name, not in :func:`known_names`).
        make: ``make(name, **kwargs) -> env``: what :func:`make_env` returns, usually one
            PettingZoo ``ParallelEnv`` with ``state()``
            (:class:`~dimalib.envs.parallel.ParallelEnvWithState`). It must accept
            ``max_episode_steps=`` (the time limit) where runs set one. ``None``: batched only.
        family: preset family, one of :data:`ENV_FAMILIES` (``"mamujoco"``: the paper's MAMuJoCo
            values; ``"bidexhands"``: its Bi-DexHands ones).
        make_vector: ``make_vector(name, num_envs, *, seed, max_episode_steps, device) ->``
            :class:`~dimalib.envs.vector.RealVectorEnv`, for an env that is batched natively;
            ``None``: :func:`make_vector_env` steps ``num_envs`` copies of ``make`` in a
            :class:`~dimalib.envs.vector.VectorMultiAgentEnv`.
        match: ``match(name) -> bool`` for a pattern entry; ``None``: only ``name`` matches.
        seedable: ``reset(seed=...)`` of its batched env seeds it (``False`` for Isaac Gym,
            seeded once when built; its batched env then has ``seedable = False`` too).
        true_dynamics: optional ``true_dynamics(name, *, max_episode_steps) -> TrueDynamics``
            (:class:`dimalib.training.diagnostics.TrueDynamics`): the exact env stepped from global
            states, which the world-model diagnostics compare the model with.
        description: one line for people (lists, docs); for a pattern entry it completes "or a
            ..." in the unknown-name error, e.g. ``"MAMuJoCo 'Scenario-Conf' name"``.
        examples: for a pattern entry, names it matches, shown in the unknown-name error.
        suggest: for a pattern entry, ``suggest(name) -> str``: a ``" (did you mean 'X'?)"`` for
            a near miss of the pattern, or ``""``.
    """

    name: str
    make: Callable[..., Any] | None = None
    family: str = "mamujoco"
    make_vector: Callable[..., RealVectorEnv] | None = None
    match: Callable[[str], bool] | None = None
    seedable: bool = True
    true_dynamics: Callable[..., Any] | None = None
    description: str = ""
    examples: tuple[str, ...] = ()
    suggest: Callable[[str], str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: expected a non-empty string, received {self.name!r}")
        if self.family not in ENV_FAMILIES:
            raise ValueError(
                f"family: expected one of {list(ENV_FAMILIES)}, received {self.family!r}"
            )
        if self.make is None and self.make_vector is None:
            raise ValueError(f"make: env {self.name!r} needs make, make_vector or both")
        for field in ("make", "make_vector", "match", "true_dynamics", "suggest"):
            value = getattr(self, field)
            if value is not None and not callable(value):
                raise ValueError(f"{field}: expected a callable or None, received {value!r}")
        if not isinstance(self.seedable, bool):
            raise ValueError(f"seedable: expected a bool, received {self.seedable!r}")
        if not isinstance(self.examples, tuple) or not all(
            isinstance(e, str) for e in self.examples
        ):
            raise ValueError(f"examples: expected a tuple of names, received {self.examples!r}")

    @property
    def is_pattern(self) -> bool:
        """The entry matches a family of names (``match``), not one exact name."""
        return self.match is not None

    def matches(self, name: str) -> bool:
        """Whether ``name`` is this entry's name (or one its pattern matches)."""
        return bool(self.match(name)) if self.match is not None else name == self.name


# the registry: entry name (exact name or pattern label) -> entry, in registration order
_REGISTRY: dict[str, EnvEntry] = {}


def register_env(
    entry_or_name: EnvEntry | str,
    make: Callable[..., Any] | None = None,
    *,
    overwrite: bool = False,
    **fields: Any,
) -> EnvEntry:
    """Register an env name (or a pattern of names) so every part of dimalib accepts it.

    One call with the name and a factory, ``register_env("my-env", lambda name, **kw:
    MyEnv(**kw))``, or one with a ready :class:`EnvEntry`.

    Args:
        entry_or_name: an :class:`EnvEntry`, or the name of a new one built from the arguments.
        make: the factory, ``make(name, **kwargs) -> env`` (:attr:`EnvEntry.make`).
        overwrite: replace an entry registered under the same name instead of failing.
        **fields: the other fields of :class:`EnvEntry` (``family``, ``make_vector``,
            ``match``, ``seedable``, ``true_dynamics``, ``description``, ``examples``,
            ``suggest``); only with a name.

    Returns:
        the registered entry.

    Raises:
        ValueError: the name is registered already (and ``overwrite`` is False), a field is
            unknown or invalid, or fields are given along with an :class:`EnvEntry`.

    Examples:
        >>> from dimalib.envs.toy import CoupledPointMasses
        >>> entry = register_env("points-4", lambda name, **kw: CoupledPointMasses(n_agents=4, **kw))
        >>> make_env("points-4").possible_agents
        ['agent_0', 'agent_1', 'agent_2', 'agent_3']
        >>> _ = unregister_env("points-4")
    """
    if isinstance(entry_or_name, EnvEntry):
        given = sorted(fields) + (["make"] if make is not None else [])
        if given:
            raise ValueError(
                f"entry_or_name: an EnvEntry carries its own fields; received also {given}"
            )
        entry = entry_or_name
    elif isinstance(entry_or_name, str):
        allowed = [f for f in EnvEntry.__dataclass_fields__ if f not in ("name", "make")]
        unknown = sorted(set(fields) - set(allowed))
        if unknown:
            raise ValueError(f"{unknown[0]}: not a field of EnvEntry; expected some of {allowed}")
        if "examples" in fields:
            fields["examples"] = tuple(fields["examples"])
        entry = EnvEntry(entry_or_name, make, **fields)
    else:
        raise ValueError(
            "entry_or_name: expected an EnvEntry or a name, received "
            f"{type(entry_or_name).__name__}"
        )
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite: expected a bool, received {overwrite!r}")
    if entry.name in _REGISTRY and not overwrite:
        raise ValueError(
            f"entry_or_name: an env named {entry.name!r} is registered already "
            f"({_REGISTRY[entry.name].description or 'no description'}); pass overwrite=True to "
            "replace it, or unregister_env it first"
        )
    _REGISTRY[entry.name] = entry
    return entry


def unregister_env(name: str) -> EnvEntry:
    """Remove the entry registered under ``name`` (an exact name or a pattern label); returns it.

    Raises:
        UnknownEnvError: nothing is registered under ``name``.
    """
    try:
        return _REGISTRY.pop(name)
    except (KeyError, TypeError):
        raise UnknownEnvError(
            f"name: no env registered under {name!r}; registered: {list(_REGISTRY)}"
        ) from None


def entries() -> tuple[EnvEntry, ...]:
    """Every registered entry, exact names and patterns, in registration order."""
    return tuple(_REGISTRY.values())


def known_names() -> list[str]:
    """The exact registered names, in registration order (pattern entries match more)."""
    return [e.name for e in _REGISTRY.values() if not e.is_pattern]


def suggest(name: str) -> str:
    """``" (did you mean 'X'?)"`` for the closest known name or pattern near miss, or ``""``."""
    close = did_you_mean(name, known_names())
    for entry in _REGISTRY.values():
        if close:
            break
        if entry.suggest is not None:
            close = entry.suggest(name)
    return close


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise ValueError(f"name: expected a string, received {type(name).__name__}")
    return name


def lookup(name: str) -> EnvEntry:
    """The entry ``name`` resolves to: its exact entry, else the first pattern that matches.

    Raises:
        UnknownEnvError: (a ``ValueError``) no entry matches; the message lists the known names
            and patterns and suggests the closest one.
    """
    _check_name(name)
    entry = _REGISTRY.get(name)
    if entry is not None and not entry.is_pattern:
        return entry
    for entry in _REGISTRY.values():
        if entry.is_pattern and entry.matches(name):
            return entry
    patterns = "".join(
        f" or a {e.description} (e.g. {', '.join(map(repr, e.examples))})"
        for e in _REGISTRY.values()
        if e.is_pattern
    )
    raise UnknownEnvError(
        f"name: expected one of {known_names()}{patterns}, received {name!r}" + suggest(name)
    )


def make_env(name: str, **kwargs: Any) -> Any:
    """Build the env registered as ``name`` (its entry's ``make(name, **kwargs)``).

    Raises:
        UnknownEnvError: unknown name.
        ValueError: the env is registered as a batched env only (use :func:`make_vector_env`).
    """
    entry = lookup(name)
    if entry.make is None:
        raise ValueError(
            f"name: {name!r} is registered as a batched env only; use make_vector_env({name!r}, N)"
        )
    return entry.make(name, **kwargs)


def make_vector_env(
    name: str,
    num_envs: int,
    *,
    seed: int = 0,
    max_episode_steps: int | None = None,
    device: torch.device | str = "cpu",
) -> RealVectorEnv:
    """``num_envs`` copies of the env registered as ``name``, as one batched env.

    The entry's ``make_vector`` builds it where it has one (Bi-DexHands: Isaac Gym's own batch,
    seeded here with ``seed``); otherwise ``num_envs`` copies of ``make(name,
    max_episode_steps=...)`` in an in-process :class:`~dimalib.envs.vector.VectorMultiAgentEnv`
    (seeded at each ``reset(seed=...)``; ``seed`` is not used here, and ``max_episode_steps`` is
    passed only when set).

    Raises:
        UnknownEnvError: unknown name.
        ValueError: ``num_envs`` is not a positive integer.
        ImportError: an env whose dependencies are missing (the message says how to get them).
    """
    entry = lookup(name)
    check_int("num_envs", num_envs)
    if entry.make_vector is not None:
        return entry.make_vector(
            name, num_envs, seed=seed, max_episode_steps=max_episode_steps, device=device
        )
    assert entry.make is not None  # EnvEntry checks that one of them is set
    limit = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    fn = functools.partial(entry.make, name, **limit)
    return VectorMultiAgentEnv([fn] * num_envs, device=device)


# --------------------------------------------------------------------------- built-in factories
def _make_toy(name: str, *, max_episode_steps: int | None = None, **overrides: Any) -> Any:
    from dimalib.envs.toy import CoupledPointMasses

    config: dict[str, Any] = {"n_agents": 3, "action_dims": (1, 2, 3), **overrides}
    return CoupledPointMasses(**config, max_steps=max_episode_steps or 100)


def _toy_dynamics(name: str, *, max_episode_steps: int | None = None) -> Any:
    from dimalib.envs.toy import ExactToyDynamics

    return ExactToyDynamics(_make_toy(name, max_episode_steps=max_episode_steps))


def _mujoco_stepper(name: str, *, max_episode_steps: int | None = None) -> Any:
    from dimalib.envs.mamujoco_dynamics import MuJoCoStepper

    return MuJoCoStepper(name)


def _make_mj_dexhands(name: str, **kwargs: Any) -> Any:
    try:
        from dimalib.envs.mj_dexhands.env import make_mj_dexhands
    except ImportError as exc:
        raise ImportError(
            f"{name} needs MuJoCo and gymnasium-robotics' Shadow hand assets: "
            f"pip install 'dimalib[mamujoco]' ({exc})"
        ) from exc
    return make_mj_dexhands(name, **kwargs)


def _is_mamujoco_name(name: str) -> bool:
    return parse_mamujoco_name(name) is not None


def _register_builtins() -> None:
    register_env(
        TOY_ENV,
        _make_toy,
        true_dynamics=_toy_dynamics,
        description="CoupledPointMasses: 3 spring-coupled point masses, exact dynamics (tests)",
    )
    for task, (scenario, conf) in MAMUJOCO_TASKS.items():
        register_env(
            task,
            make_mamujoco_task,
            true_dynamics=_mujoco_stepper,
            description=f"MAMuJoCo {scenario} {conf} (paper task)",
        )
    for task in BIDEXHANDS_TASKS:
        register_env(
            task,
            make_bidexhands,
            family="bidexhands",
            make_vector=make_bidexhands_vector,
            seedable=False,
            description=f"Bi-DexHands {task} on Isaac Gym (paper task)",
        )
    for task in MJ_DEXHANDS_TASK_NAMES:
        register_env(
            task,
            _make_mj_dexhands,
            family="bidexhands",
            description=f"MuJoCo re-implementation of Bi-DexHands {task.removeprefix('Mj')}",
        )
    register_env(
        "<MAMuJoCo Scenario-Conf>",
        make_mamujoco_task,
        match=_is_mamujoco_name,
        true_dynamics=_mujoco_stepper,
        description="MAMuJoCo 'Scenario-Conf' name",
        examples=("Hopper-3x1", "Pusher-3p"),
        suggest=suggest_mamujoco_name,
    )


_register_builtins()
