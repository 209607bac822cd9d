"""MAMuJoCo global states (``env.state()``) ↔ MuJoCo ``(qpos, qvel)``: the layout of a state.

A MAMuJoCo global state is the observation of the Gymnasium MuJoCo ``-v5`` env underneath
gymnasium-robotics' ``mamujoco_v1`` (``MultiAgentMujocoEnv.state()`` returns
``single_agent_env.unwrapped._get_obs()``). With the default options it is::

    state = [ qpos[k:] | qvel (clipped to ±10 for Walker2d, Hopper) | extras ]

where ``k`` root coordinates are left out (``k = 1``: the root x of HalfCheetah, Walker2d, Hopper;
``k = 2``: the root x, y of Ant, Humanoid, HumanoidStandup, Swimmer) and ``extras`` are derived
quantities some scenarios add (Ant: ``cfrc_ext[1:]`` clipped to ``contact_force_range``; Humanoid:
``cinert[1:]``, ``cvel[1:]``, ``qfrc_actuator[6:]``, ``cfrc_ext[1:]``). The layout of a given env is
read from its ``observation_structure`` and checked numerically against the env's own
``_get_obs`` (:func:`state_layout`); see ``docs/rendering.md`` for the entry-by-entry tables.

What cannot be recovered from a state, and what this module does about it:

* **The root position** (``qpos[:k]``) is not in the state. :func:`state_to_qpos_qvel` takes it as
  ``root_xy`` (default 0). For a sequence, :func:`root_positions` integrates it from the root
  velocity ``qvel[:k]`` (which *is* in the state) with the trapezoid rule,
  ``x_t = x_{t-1} + dt·(v_{t-1} + v_t)/2`` with the env's ``dt`` (``frame_skip × timestep``). This
  is an approximation (MuJoCo integrates ``frame_skip`` sub-steps): a few centimetres of drift
  over 60 steps on random actions; with a tracking camera it only shifts the floor under the body.
* **Clipped velocities** (Walker2d, Hopper): ``qvel`` from a state is the clipped one.
  ``state → (qpos, qvel) → state`` is still exact (clipping is idempotent).
* **Extras** are not functions of ``(qpos, qvel)``: after ``mj_step`` MuJoCo's derived quantities
  (contacts, ``cinert``, ``cfrc_ext``) belong to the last sub-step, and ``qfrc_actuator`` depends on
  the action. They are not needed for rendering; :func:`qpos_qvel_to_state` takes them back as
  ``extras``.

Rendering these states is :mod:`dimalib.viz.render`.
"""

from __future__ import annotations

import copy
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from dimalib.utils.checks import as_float64_array, check_last_dim

__all__ = [
    "SUPPORTED_SCENARIOS",
    "StateLayout",
    "qpos_qvel_to_state",
    "root_positions",
    "state_labels",
    "state_layout",
    "state_to_qpos_qvel",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Gymnasium ``-v5`` env classes whose observation is ``[qpos[k:], qvel, extras]``, mapped to the
#: scenario name and the velocity clip their ``_get_obs`` applies (``None``: no clip).
_ENV_CLASSES: dict[str, tuple[str, float | None]] = {
    "HalfCheetahEnv": ("HalfCheetah", None),
    "Walker2dEnv": ("Walker2d", 10.0),
    "HopperEnv": ("Hopper", 10.0),
    "AntEnv": ("Ant", None),
    "HumanoidEnv": ("Humanoid", None),
    "HumanoidStandupEnv": ("HumanoidStandup", None),
    "SwimmerEnv": ("Swimmer", None),
}

#: Scenarios whose global state :func:`state_layout` maps to MuJoCo ``(qpos, qvel)``.
SUPPORTED_SCENARIOS: tuple[str, ...] = tuple(s for s, _ in _ENV_CLASSES.values())


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class StateLayout:
    """Where ``qpos`` and ``qvel`` sit in a MuJoCo ``-v5`` observation (= a MAMuJoCo state).

    ``state[S] = [qpos[n_root:] (nq - n_root) | qvel (nv, clipped to ±qvel_clip) | extras]``.

    Attributes:
        scenario: ``"HalfCheetah"``, ``"Ant"``, ...
        nq: ``model.nq``.
        nv: ``model.nv``.
        n_root: number of leading ``qpos`` entries left out of the state (root x, or x and y);
            ``qvel[:n_root]`` are their velocities.
        qvel_clip: the env clips ``qvel`` to ``[-qvel_clip, qvel_clip]`` in the state (``None``:
            not clipped).
        extras: ``(name, size)`` of the entries after ``qvel``, in order (e.g.
            ``(("cfrc_ext", 78),)`` for Ant).
        dt: seconds between two states (``frame_skip × model.opt.timestep``).
        model: the ``mujoco.MjModel`` (shared with the env it came from; treated as read-only).
    """

    scenario: str
    nq: int
    nv: int
    n_root: int
    qvel_clip: float | None
    extras: tuple[tuple[str, int], ...]
    dt: float
    model: Any = field(repr=False, compare=False)

    @property
    def n_qpos_obs(self) -> int:
        """Number of ``qpos`` entries in the state (``nq - n_root``)."""
        return self.nq - self.n_root

    @property
    def extras_dim(self) -> int:
        """Number of entries after ``qvel``."""
        return sum(n for _, n in self.extras)

    @property
    def state_dim(self) -> int:
        """``S``, the size of a state vector."""
        return self.n_qpos_obs + self.nv + self.extras_dim

    @property
    def qpos_slice(self) -> slice:
        """``state[qpos_slice] == qpos[n_root:]``."""
        return slice(0, self.n_qpos_obs)

    @property
    def qvel_slice(self) -> slice:
        """``state[qvel_slice] == clip(qvel)``."""
        return slice(self.n_qpos_obs, self.n_qpos_obs + self.nv)

    @property
    def extras_slice(self) -> slice:
        """``state[extras_slice]``: the extras (empty for HalfCheetah, Walker2d, Hopper)."""
        return slice(self.n_qpos_obs + self.nv, self.state_dim)


def _unwrapped_mujoco_env(env: Any) -> Any:
    """The Gymnasium ``MujocoEnv`` under a MAMuJoCo ``ParallelEnv`` or a Gymnasium env."""
    single = getattr(env, "single_agent_env", None)
    if single is not None:
        env = single
    return getattr(env, "unwrapped", env)


@functools.lru_cache(maxsize=16)
def _mujoco_env_for_name(scenario: str) -> Any:
    """A default Gymnasium ``{scenario}-v5`` env (cached: only its model and options are used)."""
    import gymnasium

    logger.debug("building %s-v5 to read its state layout", scenario)
    return gymnasium.make(f"{scenario}-v5").unwrapped


def _scenario_from_name(name: str) -> str:
    from dimalib.envs.mamujoco import parse_mamujoco_name

    if name in SUPPORTED_SCENARIOS:
        return name
    parsed = parse_mamujoco_name(name)
    if parsed is None or parsed[0] not in SUPPORTED_SCENARIOS:
        raise ValueError(
            f"env_or_model: expected a MAMuJoCo task name ('HalfCheetah-2x3', ...) or scenario "
            f"of {list(SUPPORTED_SCENARIOS)}, received {name!r}"
        )
    return parsed[0]


@functools.lru_cache(maxsize=32)
def _layout_for_name(scenario: str) -> StateLayout:
    return _layout_from_mujoco_env(_mujoco_env_for_name(scenario))


def _layout_from_mujoco_env(uw: Any) -> StateLayout:
    cls = type(uw).__name__
    if cls not in _ENV_CLASSES:
        raise ValueError(
            f"env_or_model: global-state rendering supports the MuJoCo envs of "
            f"{list(SUPPORTED_SCENARIOS)}, received an env over {cls}"
        )
    structure = getattr(uw, "observation_structure", None)
    model = getattr(uw, "model", None)
    if not isinstance(structure, dict) or model is None:
        raise ValueError(
            f"env_or_model: {cls} has no observation_structure/model (a Gymnasium MuJoCo -v5 "
            "env is needed)"
        )
    scenario, clip = _ENV_CLASSES[cls]
    keys = list(structure)
    if keys[:3] != ["skipped_qpos", "qpos", "qvel"]:
        raise ValueError(
            f"env_or_model: unexpected observation_structure keys {keys} for {cls} "
            "(expected skipped_qpos, qpos, qvel first)"
        )
    n_root = int(structure["skipped_qpos"])
    layout = StateLayout(
        scenario=scenario,
        nq=int(model.nq),
        nv=int(model.nv),
        n_root=n_root,
        qvel_clip=clip,
        extras=tuple((k, int(structure[k])) for k in keys[3:] if int(structure[k]) > 0),
        dt=float(uw.dt),
        model=model,
    )
    if int(structure["qpos"]) != layout.n_qpos_obs or int(structure["qvel"]) != layout.nv:
        raise ValueError(
            f"env_or_model: observation_structure {structure} does not match the model "
            f"(nq={layout.nq}, nv={layout.nv})"
        )
    _check_layout(uw, layout)
    logger.debug("state layout of %s: %s", cls, layout)
    return layout


def _check_layout(uw: Any, layout: StateLayout, *, seed: int = 0) -> None:
    """Compare the layout with the env's own ``_get_obs`` on scratch data with large values."""
    obs_dim = int(uw.observation_space.shape[0])
    if obs_dim != layout.state_dim:
        raise ValueError(
            f"env_or_model: observation size {obs_dim} != layout size {layout.state_dim} ({layout})"
        )
    rng = np.random.default_rng(seed)
    real = uw.data
    fake = copy.copy(real)  # MjData copy: the env's own data and RNG are not touched
    fake.qpos[:] = rng.normal(0.0, 30.0, layout.nq)
    fake.qvel[:] = rng.normal(0.0, 30.0, layout.nv)
    try:
        uw.data = fake
        obs = np.asarray(uw._get_obs(), dtype=np.float64)
    finally:
        uw.data = real
    expected = _assemble(layout, fake.qpos.copy(), fake.qvel.copy(), obs[layout.extras_slice])
    if not np.array_equal(obs, expected):
        raise RuntimeError(  # the installed Gymnasium changed its observation: do not guess
            f"{layout.scenario}: the env's observation is not [qpos[{layout.n_root}:], qvel"
            f"{'' if layout.qvel_clip is None else ' clipped'}, extras] as dimalib expects"
        )


def state_layout(env_or_model: Any) -> StateLayout:
    """The :class:`StateLayout` of a MAMuJoCo env's global state.

    Args:
        env_or_model: a MAMuJoCo ``ParallelEnv`` (``make_env("Ant-2x4")``), a Gymnasium MuJoCo
            ``-v5`` env, a task / scenario name (``"Ant-2x4"`` or ``"Ant"``: the default ``-v5``
            options, which are mamujoco_v1's) or a :class:`StateLayout` (returned as is). A bare
            ``mujoco.MjModel`` is not enough: the observation options live in the env.

    Raises:
        ValueError: unsupported scenario or not an env.
    """
    if isinstance(env_or_model, StateLayout):
        return env_or_model
    if isinstance(env_or_model, str):
        return _layout_for_name(_scenario_from_name(env_or_model))
    if type(env_or_model).__name__ == "MjModel":
        raise ValueError(
            "env_or_model: a mujoco.MjModel does not say which qpos entries the state leaves out; "
            "pass the MAMuJoCo env, its name ('HalfCheetah-2x3') or a StateLayout"
        )
    uw = _unwrapped_mujoco_env(env_or_model)
    if not hasattr(uw, "model"):
        raise ValueError(
            "env_or_model: expected a MAMuJoCo env, a Gymnasium MuJoCo env, a task name or a "
            f"StateLayout, received {type(env_or_model).__name__}"
        )
    return _layout_from_mujoco_env(uw)


def state_labels(env_or_model: Any) -> list[str]:
    """A name per state entry, e.g. ``"qpos[2] rootz"``, ``"qvel[0] rootx"``,
    ``"cfrc_ext[torso][3]"`` (length ``S``)."""
    layout = state_layout(env_or_model)
    model = layout.model
    qpos_names = [""] * layout.nq
    qvel_names = [""] * layout.nv
    free_q = ("x", "y", "z", "qw", "qx", "qy", "qz")
    free_v = ("vx", "vy", "vz", "wx", "wy", "wz")
    ball_q = ("qw", "qx", "qy", "qz")
    ball_v = ("wx", "wy", "wz")
    for j in range(model.njnt):
        name = model.joint(j).name or f"joint{j}"
        qa, va, jt = int(model.jnt_qposadr[j]), int(model.jnt_dofadr[j]), int(model.jnt_type[j])
        if jt == 0:  # free
            for i, s in enumerate(free_q):
                qpos_names[qa + i] = f"{name}.{s}"
            for i, s in enumerate(free_v):
                qvel_names[va + i] = f"{name}.{s}"
        elif jt == 1:  # ball
            for i, s in enumerate(ball_q):
                qpos_names[qa + i] = f"{name}.{s}"
            for i, s in enumerate(ball_v):
                qvel_names[va + i] = f"{name}.{s}"
        else:  # slide / hinge
            qpos_names[qa] = name
            qvel_names[va] = name
    labels = [f"qpos[{i}] {qpos_names[i]}" for i in range(layout.n_root, layout.nq)]
    labels += [f"qvel[{i}] {qvel_names[i]}" for i in range(layout.nv)]
    for key, size in layout.extras:
        labels += [f"{key}[{i}]" for i in range(size)]
    return labels


# --------------------------------------------------------------------------- conversions
def state_to_qpos_qvel(
    env_or_model: Any,
    state: Any,
    root_xy: Any = None,
) -> tuple[FloatArray, FloatArray]:
    """Global state → MuJoCo ``(qpos, qvel)`` of the single-agent env under MAMuJoCo.

    Args:
        env_or_model: see :func:`state_layout` (env, name or :class:`StateLayout`).
        state: ``[..., S]`` (numpy or torch; any float dtype, computed in float64).
        root_xy: the left-out root coordinates ``qpos[:n_root]`` (x; x and y for Ant/Humanoid/
            Swimmer), broadcastable to ``[..., n_root]``; ``None`` puts the root at 0. For a
            trajectory use :func:`root_positions`.

    Returns:
        ``qpos [..., nq]`` and ``qvel [..., nv]`` (float64). ``qvel`` is the state's, i.e. clipped
        to ±10 for Walker2d and Hopper; quaternions are not renormalised (MuJoCo normalises them
        when computing kinematics).

    Raises:
        ValueError: wrong last dimension, NaN/inf, or a ``root_xy`` that does not broadcast.
    """
    layout = state_layout(env_or_model)
    arr = as_float64_array(state, "state")
    check_last_dim(arr, layout.state_dim, "state", f"the {layout.scenario} global state")
    batch = arr.shape[:-1]
    if root_xy is None:
        root = np.zeros((*batch, layout.n_root))
    else:
        root_arr = as_float64_array(root_xy, "root_xy")
        try:
            root = np.broadcast_to(root_arr, (*batch, layout.n_root))
        except ValueError as exc:
            raise ValueError(
                f"root_xy: expected shape broadcastable to {(*batch, layout.n_root)} "
                f"({layout.n_root} left-out root coordinate(s)), received {root_arr.shape}"
            ) from exc
    qpos = np.concatenate([root, arr[..., layout.qpos_slice]], axis=-1)
    qvel = arr[..., layout.qvel_slice].copy()
    return qpos, qvel


def _assemble(layout: StateLayout, qpos: FloatArray, qvel: FloatArray, extras: FloatArray) -> Any:
    if layout.qvel_clip is not None:
        qvel = np.clip(qvel, -layout.qvel_clip, layout.qvel_clip)
    return np.concatenate([qpos[..., layout.n_root :], qvel, extras], axis=-1)


def qpos_qvel_to_state(
    env_or_model: Any,
    qpos: Any,
    qvel: Any,
    extras: Any = None,
) -> FloatArray:
    """MuJoCo ``(qpos, qvel)`` → global state, as the env's ``_get_obs`` builds it.

    Drops ``qpos[:n_root]``, clips ``qvel`` where the env does (Walker2d, Hopper) and appends
    ``extras``.

    Args:
        env_or_model: see :func:`state_layout`.
        qpos: ``[..., nq]``.
        qvel: ``[..., nv]`` (same leading shape as ``qpos``).
        extras: ``[..., extras_dim]``, the entries after ``qvel`` (Ant's contact forces, ...),
            typically ``state[..., layout.extras_slice]`` of the state being rebuilt. They are not
            functions of ``(qpos, qvel)``, so they are required when the layout has any and must be
            ``None`` (or size 0) otherwise.

    Returns:
        ``state [..., S]`` float64.

    Raises:
        ValueError: wrong shapes, NaN/inf, or missing extras.
    """
    layout = state_layout(env_or_model)
    qpos_a = as_float64_array(qpos, "qpos")
    qvel_a = as_float64_array(qvel, "qvel")
    check_last_dim(qpos_a, layout.nq, "qpos", f"{layout.scenario} model.nq")
    check_last_dim(qvel_a, layout.nv, "qvel", f"{layout.scenario} model.nv")
    if qpos_a.shape[:-1] != qvel_a.shape[:-1]:
        raise ValueError(
            f"qvel: expected leading shape {qpos_a.shape[:-1]} (as qpos), received "
            f"{qvel_a.shape[:-1]}"
        )
    batch = qpos_a.shape[:-1]
    if extras is None:
        if layout.extras_dim:
            raise ValueError(
                f"extras: {layout.scenario}'s state has {layout.extras_dim} entries after qvel "
                f"({', '.join(k for k, _ in layout.extras)}) that are not functions of (qpos, "
                "qvel); pass them, e.g. state[..., layout.extras_slice]"
            )
        extras_a = np.zeros((*batch, 0))
    else:
        extras_a = as_float64_array(extras, "extras")
        check_last_dim(extras_a, layout.extras_dim, "extras", "entries after qvel")
        if extras_a.shape[:-1] != batch:
            raise ValueError(
                f"extras: expected leading shape {batch} (as qpos), received {extras_a.shape[:-1]}"
            )
    return np.asarray(_assemble(layout, qpos_a, qvel_a, extras_a), dtype=np.float64)


def root_positions(env_or_model: Any, states: Any, start: Any = None) -> FloatArray:
    """Integrate the left-out root coordinates of a state sequence from its root velocities.

    Trapezoid rule with the env's ``dt``: ``r_0 = start``,
    ``r_t = r_{t-1} + dt · (v_{t-1} + v_t) / 2`` where ``v_t = state_t[qvel_slice][:n_root]``
    (world-frame root velocity for slide and free joints). An approximation of what MuJoCo's
    ``frame_skip`` sub-steps integrate; the velocities of Walker2d / Hopper states are clipped.

    Args:
        env_or_model: see :func:`state_layout`.
        states: ``[T, S]``.
        start: ``[n_root]`` root position at ``t = 0`` (``None``: 0).

    Returns:
        ``[T, n_root]`` float64.
    """
    layout = state_layout(env_or_model)
    arr = as_float64_array(states, "states")
    if arr.ndim != 2:
        raise ValueError(f"states: expected shape [T, {layout.state_dim}], received {arr.shape}")
    check_last_dim(arr, layout.state_dim, "states", f"the {layout.scenario} global state")
    r0 = np.zeros(layout.n_root) if start is None else as_float64_array(start, "start")
    if r0.shape != (layout.n_root,):
        raise ValueError(f"start: expected shape ({layout.n_root},), received {r0.shape}")
    v = arr[:, layout.qvel_slice][:, : layout.n_root]
    steps = 0.5 * layout.dt * (v[1:] + v[:-1])
    return np.asarray(r0 + np.concatenate([np.zeros((1, layout.n_root)), np.cumsum(steps, 0)]))
