"""Multi-Agent MuJoCo through gymnasium-robotics' ``mamujoco_v1`` (MuJoCo ``-v5`` tasks).

The paper's seven tasks (§5.1) are :data:`MAMUJOCO_TASKS`; any other scenario / agent
configuration that gymnasium-robotics accepts works through :func:`make_mamujoco`, e.g.
``make_mamujoco("Hopper", "3x1")``.

gymnasium-robotics 1.4.2 has no ``3x2`` partition for HalfCheetah and Walker2d. dimalib builds it
with ``mamujoco_v1.parallel_env(..., agent_factorization=...)`` from the nodes of gymnasium-robotics'
own hypergraph (``obsk.get_parts_and_edges``), grouped as in the original multi-agent MuJoCo:

* HalfCheetah 3x2: ``(bfoot, bshin)``, ``(bthigh, ffoot)``, ``(fshin, fthigh)``
* Walker2d 3x2: ``(foot, leg)``, ``(thigh, foot_left)``, ``(leg_left, thigh_left)`` (joint nodes
  ``foot_joint``, ``leg_joint``, ...).

Note: in 1.4.2 ``agent_conf=None`` turns the env into a *single* agent and ignores
``agent_factorization``, so the custom partition is passed with ``agent_conf="3x2"``.

The returned env is gymnasium-robotics' own ``MultiAgentMujocoEnv`` (a PettingZoo ``ParallelEnv``):
the reward is shared by all agents, ``state()`` is the single-agent MuJoCo observation, and the
time limit (``max_episode_steps``, default 1000) shows up as truncation, apart from termination.
:func:`make_mamujoco` adds one method to it, ``flat_stepper()`` (:func:`flat_stepper` of that
env), the array-level fast path :class:`~dimalib.envs.vector.VectorMultiAgentEnv` uses.
The returns are comparable in trend, not digit for digit, with the paper's gym-0.21 ``-v2`` tasks.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import logging
import re
import types
import warnings
from collections.abc import Sequence
from typing import Any

from dimalib.envs._mujoco_log import mujoco_warnings_to_logging
from dimalib.envs.parallel import spec_from_env
from dimalib.utils.checks import check_int

__all__ = [
    "CUSTOM_PARTITIONS",
    "KNOWN_CONFS",
    "MAMUJOCO_SCENARIOS",
    "MAMUJOCO_TASKS",
    "FlatMaMuJoCo",
    "UnknownEnvError",
    "custom_factorization",
    "did_you_mean",
    "flat_stepper",
    "make_mamujoco",
    "make_mamujoco_task",
    "parse_mamujoco_name",
    "spec_from_env",
    "suggest_mamujoco_name",
]

#: The paper's seven MAMuJoCo tasks: name → (scenario, agent_conf).
MAMUJOCO_TASKS: dict[str, tuple[str, str]] = {
    "HalfCheetah-2x3": ("HalfCheetah", "2x3"),
    "HalfCheetah-3x2": ("HalfCheetah", "3x2"),
    "HalfCheetah-6x1": ("HalfCheetah", "6x1"),
    "Walker2d-2x3": ("Walker2d", "2x3"),
    "Walker2d-3x2": ("Walker2d", "3x2"),
    "Ant-2x4": ("Ant", "2x4"),
    "Ant-4x2": ("Ant", "4x2"),
}

#: Scenarios gymnasium-robotics' ``mamujoco_v1`` builds (1.4.x). Its ``InvertedPendulum`` and
#: ``InvertedDoublePendulum`` have no agent partition upstream ("UNKNOWN label environment"), so
#: they are not listed; ``CoupledHalfCheetah`` is listed but fails inside gymnasium-robotics 1.4.2
#: with mujoco 4.0 (an ``IndexError`` in ``obsk.py``), which :func:`make_mamujoco` reports.
MAMUJOCO_SCENARIOS: tuple[str, ...] = (
    "Ant",
    "HalfCheetah",
    "Hopper",
    "HumanoidStandup",
    "Humanoid",
    "Reacher",
    "Swimmer",
    "Pusher",
    "Walker2d",
    "ManySegmentSwimmer",
    "ManySegmentAnt",
    "CoupledHalfCheetah",
)

#: The agent_conf values gymnasium-robotics' ``obsk.get_parts_and_edges`` accepts per scenario
#: (``ManySegmentSwimmer``/``ManySegmentAnt`` take any ``"<agents>x<segments>"``), plus dimalib's
#: :data:`CUSTOM_PARTITIONS`; used for the error message only: gymnasium-robotics decides.
KNOWN_CONFS: dict[str, tuple[str, ...]] = {
    "Ant": ("2x4", "2x4d", "4x2"),
    "HalfCheetah": ("2x3", "3x2", "6x1"),
    "Hopper": ("3x1",),
    "HumanoidStandup": ("9|8",),
    "Humanoid": ("9|8",),
    "Reacher": ("2x1",),
    "Swimmer": ("2x1",),
    "Pusher": ("3p",),
    "Walker2d": ("2x3", "3x2"),
    "ManySegmentSwimmer": ("<agents>x<segments>",),
    "ManySegmentAnt": ("<agents>x<segments>",),
    "CoupledHalfCheetah": ("1p1",),
}

#: Partitions gymnasium-robotics lacks: (scenario, agent_conf) → (base conf whose graph supplies
#: the nodes, groups of node labels, one group per agent, in agent order).
CUSTOM_PARTITIONS: dict[tuple[str, str], tuple[str, tuple[tuple[str, ...], ...]]] = {
    ("HalfCheetah", "3x2"): (
        "2x3",
        (("bfoot", "bshin"), ("bthigh", "ffoot"), ("fshin", "fthigh")),
    ),
    ("Walker2d", "3x2"): (
        "2x3",
        (
            ("foot_joint", "leg_joint"),
            ("thigh_joint", "foot_left_joint"),
            ("leg_left_joint", "thigh_left_joint"),
        ),
    ),
}

logger = logging.getLogger(__name__)

# "2x3", "2x4d", "9|8", "3p", "1p1": every agent_conf form gymnasium-robotics uses
_NAME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9]*)-(\d+(?:x\d+[A-Za-z]*|\|\d+|p\d*))$")


class UnknownEnvError(ValueError):
    """A scenario or agent partition that gymnasium-robotics does not build."""


def did_you_mean(name: str, choices: Sequence[str]) -> str:
    """``" (did you mean 'X'?)"`` for the closest of ``choices`` (case-insensitive), or ``""``."""
    close = _closest(name, choices)
    return f" (did you mean {close!r}?)" if close else ""


def _closest(name: str, choices: Sequence[str]) -> str | None:
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def _import_mamujoco() -> Any:
    notice = io.StringIO()
    try:
        # gymnasium-robotics prints a notice about its Adroit envs on import (irrelevant here)
        with warnings.catch_warnings(), contextlib.redirect_stderr(notice):
            warnings.simplefilter("ignore")
            from gymnasium_robotics import mamujoco_v1
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "MAMuJoCo needs gymnasium-robotics and mujoco: pip install 'dimalib[mamujoco]' "
            f"(import failed: {exc})"
        ) from exc
    if notice.getvalue():
        logger.debug("gymnasium-robotics import notice: %s", notice.getvalue().strip())
    return mamujoco_v1


def custom_factorization(scenario: str, agent_conf: str) -> dict[str, Any]:
    """The ``agent_factorization`` dict for a partition in :data:`CUSTOM_PARTITIONS`.

    Nodes, edges and globals come from gymnasium-robotics' hypergraph of the scenario; only the
    grouping of the nodes into agents is dimalib's.
    """
    if (scenario, agent_conf) not in CUSTOM_PARTITIONS:
        raise ValueError(
            f"(scenario, agent_conf): expected one of {sorted(CUSTOM_PARTITIONS)}, "
            f"received {(scenario, agent_conf)!r}"
        )
    _import_mamujoco()
    from gymnasium_robotics.envs.multiagent_mujoco.obsk import get_parts_and_edges

    base_conf, groups = CUSTOM_PARTITIONS[(scenario, agent_conf)]
    parts, edges, global_nodes = get_parts_and_edges(scenario, base_conf)
    nodes = {node.label: node for part in parts for node in part}
    wanted = [label for group in groups for label in group]
    if sorted(wanted) != sorted(nodes):
        raise RuntimeError(  # gymnasium-robotics renamed its nodes: fail loudly, do not guess
            f"{scenario}-{agent_conf}: partition labels {sorted(wanted)} do not match "
            f"gymnasium-robotics' nodes {sorted(nodes)}"
        )
    partition = [tuple(nodes[label] for label in group) for group in groups]
    return {"partition": partition, "edges": edges, "globals": global_nodes}


def make_mamujoco(
    scenario: str,
    agent_conf: str,
    *,
    agent_obsk: int = 1,
    max_episode_steps: int | None = None,
    **kwargs: Any,
) -> Any:
    """Build a MAMuJoCo ``ParallelEnv`` (gymnasium-robotics ``MultiAgentMujocoEnv``).

    Args:
        scenario: e.g. ``"HalfCheetah"``, ``"Ant"``, ``"Hopper"`` (see :data:`MAMUJOCO_SCENARIOS`).
        agent_conf: ``"<agents>x<segments>"`` as gymnasium-robotics accepts it (``"2x3"``,
            ``"2x4d"``, ...) or one of :data:`CUSTOM_PARTITIONS` (``"3x2"`` for HalfCheetah and
            Walker2d).
        agent_obsk: observation depth (nearest ``k`` joints observed), gymnasium-robotics' default 1.
        max_episode_steps: time limit of the underlying MuJoCo env (truncation); ``None`` keeps the
            task's default (1000).
        **kwargs: passed to ``mamujoco_v1.parallel_env`` and on to the Gymnasium MuJoCo env.

    Returns:
        the env, with a ``flat_stepper()`` method (:func:`flat_stepper` of it: the vector env's
        verified fast path, or ``None`` where the dict API is needed).

    Raises:
        ValueError: unknown scenario or a partition gymnasium-robotics rejects.
    """
    if scenario not in MAMUJOCO_SCENARIOS:
        raise UnknownEnvError(
            f"scenario: expected one of {list(MAMUJOCO_SCENARIOS)}, received {scenario!r}"
            + did_you_mean(scenario, MAMUJOCO_SCENARIOS)
        )
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = check_int("max_episode_steps", max_episode_steps)
    mamujoco_v1 = _import_mamujoco()
    if (scenario, agent_conf) in CUSTOM_PARTITIONS:
        kwargs["agent_factorization"] = custom_factorization(scenario, agent_conf)
    try:
        with mujoco_warnings_to_logging():  # no settotalmass notice on stdout, no MUJOCO_LOG.TXT
            env = mamujoco_v1.parallel_env(scenario, agent_conf, agent_obsk=agent_obsk, **kwargs)
    except Exception as exc:
        if "UNKNOWN partitioning config" in str(exc):
            raise UnknownEnvError(
                f"agent_conf: gymnasium-robotics has no partition {agent_conf!r} for {scenario}; "
                f"expected one of {list(KNOWN_CONFS.get(scenario, ()))} ({exc})"
            ) from exc
        if scenario == "CoupledHalfCheetah" and isinstance(exc, IndexError):
            raise RuntimeError(
                "CoupledHalfCheetah fails inside gymnasium-robotics (IndexError in "
                f"multiagent_mujoco/obsk.py: {exc}) with mujoco {_mujoco_version()}; it is an "
                "upstream bug of gymnasium-robotics with this mujoco version, not of dimalib"
            ) from exc
        raise
    # the vector env's fast-path capability (dimalib.envs.vector.FlatStepper); the class is
    # gymnasium-robotics', so the method is bound to this instance
    env.flat_stepper = types.MethodType(flat_stepper, env)
    return env


def parse_mamujoco_name(name: str) -> tuple[str, str] | None:
    """``"HalfCheetah-2x3"`` → ``("HalfCheetah", "2x3")``; ``None`` if not a MAMuJoCo name."""
    if name in MAMUJOCO_TASKS:
        return MAMUJOCO_TASKS[name]
    m = _NAME_RE.match(name)
    if m is None or m.group(1) not in MAMUJOCO_SCENARIOS:
        return None
    return m.group(1), m.group(2)


def make_mamujoco_task(name: str, **kwargs: Any) -> Any:
    """Build a MAMuJoCo env from a ``"Scenario-Conf"`` name: the seven paper tasks or any
    scenario with an agent_conf gymnasium-robotics accepts (``"Hopper-3x1"``, ``"Pusher-3p"``,
    ``"Humanoid-9|8"``, ``"ManySegmentAnt-4x2"``, ...)."""
    parsed = parse_mamujoco_name(name)
    if parsed is None:
        raise UnknownEnvError(
            f"name: expected a MAMuJoCo 'Scenario-Conf' name such as {list(MAMUJOCO_TASKS)}, "
            f"received {name!r}" + suggest_mamujoco_name(name)
        )
    return make_mamujoco(*parsed, **kwargs)


def suggest_mamujoco_name(name: str) -> str:
    """A "did you mean" for a near miss of a MAMuJoCo name (``"halfcheetah-2x3"``,
    ``"Pusher-3x"``), or ``""``."""
    names = [f"{sc}-{c}" for sc, confs in KNOWN_CONFS.items() for c in confs if c[0] != "<"]
    close = _closest(name, names)
    if close is None:  # the scenario alone, keeping the given partition
        scenario, dash, conf = name.partition("-")
        close = _closest(scenario, MAMUJOCO_SCENARIOS)
        close = None if close is None else close + dash + conf
    return f" (did you mean {close!r}?)" if close and close != name else ""


def _mujoco_version() -> str:
    try:
        import mujoco

        return str(mujoco.__version__)
    except ImportError:  # pragma: no cover
        return "(not installed)"


# --------------------------------------------------------------------------- flat fast path
class FlatMaMuJoCo:
    """Array-level stepping of a MAMuJoCo env that gives exactly what its dict API gives.

    ``MultiAgentMujocoEnv.step`` maps the agents' action dict to the single-agent action in a
    Python loop and builds every agent's observation with ``obsk.build_obs`` (another Python loop,
    ~90 µs per Ant step), after which a vector env turns the dicts back into arrays. When each agent
    observation entry is a plain copy of an entry of the single-agent observation (``state()``),
    all of that is two index operations: ``global_action = joint_action[action_index]`` and
    ``joint_obs = state[obs_index]`` with ``obs_index`` from gymnasium-robotics' own
    ``observation_factorization``. :func:`flat_stepper` only returns one after checking, on
    random MuJoCo data (large values, so clipping differences show), that ``state[obs_index]``
    equals ``build_obs``'s output; envs where it does not hold (e.g. Walker2d, whose state clips
    joint velocities that the agents see unclipped) keep the dict path.

    The underlying single-agent env (with its ``TimeLimit``) is stepped exactly as
    ``MultiAgentMujocoEnv.step`` steps it, with the same float64 action.
    """

    def __init__(self, env: Any, action_index: Any, obs_index: Any) -> None:
        self.env = env
        self.single = env.single_agent_env
        self.action_index = action_index  # global action = joint_action[action_index]
        self.obs_index = obs_index  # joint obs = state[obs_index]

    def step(self, joint_action: Any) -> tuple[Any, Any, float, bool, bool]:
        """``joint_action [A]`` → ``(state [S] float64, joint_obs [O], reward, terminated,
        truncated)``."""
        import numpy as np

        global_action = np.asarray(joint_action, dtype=np.float64)[self.action_index]
        state, reward, terminated, truncated, _ = self.single.step(global_action)
        return state, state[self.obs_index], float(reward), bool(terminated), bool(truncated)


def flat_stepper(env: Any, *, checks: int = 4, seed: int = 0) -> FlatMaMuJoCo | None:
    """A verified :class:`FlatMaMuJoCo` for ``env``, or ``None`` when the dict path is needed.

    Args:
        env: a gymnasium-robotics ``MultiAgentMujocoEnv``.
        checks: number of random MuJoCo data fills on which the index map is verified.
        seed: seed of those fills (the env's own state and RNG are not touched).
    """
    import copy

    import numpy as np

    if getattr(env, "agent_obsk", None) is None or not hasattr(env, "single_agent_env"):
        return None
    factorization = getattr(env, "observation_factorization", None)
    if not factorization:
        return None
    agents = list(env.possible_agents)
    try:
        obs_index = np.concatenate([np.asarray(factorization[a], np.int64) for a in agents])
        act_ids = [node.act_ids for part in env.agent_action_partitions for node in part]
        n_act = int(env.single_agent_env.action_space.shape[0])
        if sorted(act_ids) != list(range(n_act)):
            return None
        action_index = np.empty(n_act, np.int64)
        action_index[np.asarray(act_ids, np.int64)] = np.arange(n_act)
        uw = env.single_agent_env.unwrapped
        real = uw.data
        rng = np.random.default_rng(seed)
        fields = ("qpos", "qvel", "cfrc_ext", "cinert", "cvel", "qfrc_actuator", "xpos")
        ok = True
        try:
            for _ in range(checks):
                fake = copy.copy(real)
                for name in fields:
                    arr = getattr(fake, name, None)
                    if arr is not None and arr.size:
                        arr[...] = rng.normal(0.0, 30.0, arr.shape)
                uw.data = fake
                state = np.asarray(uw._get_obs())
                dict_obs = np.concatenate([env._get_obs_agent(i) for i in range(len(agents))])
                if dict_obs.shape != obs_index.shape or not np.array_equal(
                    dict_obs, state[obs_index]
                ):
                    ok = False
                    break
        finally:
            uw.data = real
    except Exception:  # any structural surprise: keep the dict path
        return None
    return FlatMaMuJoCo(env, action_index, obs_index) if ok else None
