"""Render MAMuJoCo global states (``env.state()``) offscreen, e.g. a real and an imagined rollout.

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

Rendering (:func:`render_states`) uses ``mujoco.Renderer`` (offscreen OpenGL). MuJoCo picks the GL
backend from the ``MUJOCO_GL`` environment variable **when ``mujoco`` is first imported**; this
module reads it as is and never sets it. Headless Linux needs ``MUJOCO_GL=egl`` (Debian packages
``libegl1`` and ``libgl1-mesa-dri``; a GPU driver's EGL works too) or ``MUJOCO_GL=osmesa``
(``libosmesa6``), plus PyOpenGL. Without a usable backend :func:`render_states` raises
``RuntimeError`` saying so.

:func:`strip_figure` writes a two-row (real / imagined) PNG strip with matplotlib (the optional
extra ``plot``, imported lazily).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "SUPPORTED_SCENARIOS",
    "FollowCamera",
    "StateLayout",
    "qpos_qvel_to_state",
    "render_states",
    "root_positions",
    "state_labels",
    "state_layout",
    "state_to_qpos_qvel",
    "strip_figure",
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

_GL_HELP = (
    "offscreen rendering needs an OpenGL backend: on headless Linux set MUJOCO_GL=egl "
    "(Debian packages libegl1 and libgl1-mesa-dri, or a GPU driver's EGL) or MUJOCO_GL=osmesa "
    "(Debian package libosmesa6), plus the Python package PyOpenGL; MUJOCO_GL is read when "
    "mujoco is first imported, so set it before importing mujoco / gymnasium-robotics"
)


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
def _as_float64(x: Any, name: str) -> FloatArray:
    """``np.ndarray`` / torch tensor / sequence → float64 array, finite, else ``ValueError``."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu().double().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:
        raise ValueError(f"{name}: expected a numeric array, received {type(x).__name__}") from exc
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected a real numeric array, received dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValueError(f"{name}: contains NaN or inf (first at index {bad})")
    return arr


def _check_last_dim(arr: FloatArray, size: int, name: str, what: str) -> None:
    if arr.ndim == 0 or arr.shape[-1] != size:
        raise ValueError(f"{name}: expected shape [..., {size}] ({what}), received {arr.shape}")


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
    arr = _as_float64(state, "state")
    _check_last_dim(arr, layout.state_dim, "state", f"the {layout.scenario} global state")
    batch = arr.shape[:-1]
    if root_xy is None:
        root = np.zeros((*batch, layout.n_root))
    else:
        root_arr = _as_float64(root_xy, "root_xy")
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
    qpos_a = _as_float64(qpos, "qpos")
    qvel_a = _as_float64(qvel, "qvel")
    _check_last_dim(qpos_a, layout.nq, "qpos", f"{layout.scenario} model.nq")
    _check_last_dim(qvel_a, layout.nv, "qvel", f"{layout.scenario} model.nv")
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
        extras_a = _as_float64(extras, "extras")
        _check_last_dim(extras_a, layout.extras_dim, "extras", "entries after qvel")
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
    arr = _as_float64(states, "states")
    if arr.ndim != 2:
        raise ValueError(f"states: expected shape [T, {layout.state_dim}], received {arr.shape}")
    _check_last_dim(arr, layout.state_dim, "states", f"the {layout.scenario} global state")
    r0 = np.zeros(layout.n_root) if start is None else _as_float64(start, "start")
    if r0.shape != (layout.n_root,):
        raise ValueError(f"start: expected shape ({layout.n_root},), received {r0.shape}")
    v = arr[:, layout.qvel_slice][:, : layout.n_root]
    steps = 0.5 * layout.dt * (v[1:] + v[:-1])
    return np.asarray(r0 + np.concatenate([np.zeros((1, layout.n_root)), np.cumsum(steps, 0)]))


# --------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class FollowCamera:
    """A free camera that follows a body sideways (the same framing for every state).

    Attributes:
        distance: metres from the look-at point (``None``: 4, or 3 for Hopper and Swimmer, as
            Gymnasium's default cameras).
        azimuth: degrees; 90 looks along +y, so motion along +x goes to the right.
        elevation: degrees (negative: from above).
        height: look-at height in metres; ``None`` uses the body's height in the model's reference
            pose (``qpos0``), so jumps and falls stay visible.
        body: the followed body (its x and y); ``"torso"`` in all supported models.
    """

    distance: float | None = None
    azimuth: float = 90.0
    elevation: float = -15.0
    height: float | None = None
    body: str = "torso"


_DEFAULT_DISTANCE: dict[str, float] = {"Hopper": 3.0, "Swimmer": 3.0}


def _import_mujoco() -> Any:
    """``import mujoco``; a GL backend that fails while mujoco imports → ``RuntimeError``."""
    try:
        import mujoco
    except ImportError as exc:  # pragma: no cover - only without the extra
        raise ImportError(
            f"rendering needs mujoco: pip install 'dimalib[mamujoco]' ({exc})"
        ) from exc
    except Exception as exc:  # e.g. MUJOCO_GL=osmesa without libOSMesa: PyOpenGL fails on import
        raise RuntimeError(
            f"mujoco failed to import with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r} "
            f"({type(exc).__name__}: {exc}); {_GL_HELP}"
        ) from exc
    return mujoco


def _make_renderer(model: Any, height: int, width: int) -> Any:
    mujoco = _import_mujoco()
    if not hasattr(mujoco, "Renderer"):
        raise RuntimeError(
            f"mujoco has no Renderer (MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}): {_GL_HELP}"
        )
    try:
        renderer = mujoco.Renderer(model, height=height, width=width)
    except Exception as exc:
        raise RuntimeError(
            f"could not create an offscreen mujoco.Renderer "
            f"(MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: {type(exc).__name__}: {exc}); {_GL_HELP}"
        ) from exc
    logger.debug("mujoco.Renderer %dx%d (MUJOCO_GL=%s)", width, height, os.environ.get("MUJOCO_GL"))
    return renderer


def _check_size(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, received {value!r}")
    return int(value)


def render_states(
    scenario_or_env: Any,
    states: Any,
    *,
    width: int = 320,
    height: int = 240,
    camera: FollowCamera | str | int | None = None,
    root_x: Any = None,
) -> npt.NDArray[np.uint8]:
    """Render a MAMuJoCo global-state sequence offscreen.

    Each state is put on a scratch ``MjData`` (the env's own data is not touched), ``mj_forward``
    computes the kinematics and ``mujoco.Renderer`` draws it. Needs an OpenGL backend picked by
    ``MUJOCO_GL`` (read as is, when mujoco is first imported; see the module docstring).

    Args:
        scenario_or_env: see :func:`state_layout` (``"HalfCheetah-2x3"``, the env, a layout).
        states: ``[T, S]`` or ``[S]`` (numpy or torch), e.g. real or imagined global states.
        width: image width in pixels.
        height: image height in pixels.
        camera: a :class:`FollowCamera` (``None``: ``FollowCamera()``, follows the torso sideways
            so two sequences are framed alike), or the name / id of a camera in the model XML
            (e.g. ``"track"``).
        root_x: the left-out root position per state, ``[T, n_root]`` (or ``[T]`` when
            ``n_root == 1``); ``None`` integrates it from the root velocities starting at 0
            (:func:`root_positions`). With a following camera it only moves the floor.

    Returns:
        ``frames [T, height, width, 3]`` uint8 RGB.

    Raises:
        ValueError: bad states / sizes / camera.
        RuntimeError: no usable OpenGL backend (the message names ``MUJOCO_GL`` and packages).
    """
    mujoco = _import_mujoco()
    layout = state_layout(scenario_or_env)
    width = _check_size(width, "width")
    height = _check_size(height, "height")
    arr = _as_float64(states, "states")
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(
            f"states: expected shape [T, {layout.state_dim}] with T >= 1, received {arr.shape}"
        )
    _check_last_dim(arr, layout.state_dim, "states", f"the {layout.scenario} global state")
    n_steps = arr.shape[0]
    if root_x is None:
        roots = root_positions(layout, arr)
    else:
        roots = _as_float64(root_x, "root_x")
        if roots.ndim == 1 and layout.n_root == 1:
            roots = roots[:, None]
        if roots.shape != (n_steps, layout.n_root):
            raise ValueError(
                f"root_x: expected shape ({n_steps}, {layout.n_root}), received {roots.shape}"
            )
    qpos, qvel = state_to_qpos_qvel(layout, arr, root_xy=roots)

    model = layout.model
    if camera is None:
        camera = FollowCamera()
    follow: FollowCamera | None = camera if isinstance(camera, FollowCamera) else None
    if follow is None:
        if isinstance(camera, bool) or not isinstance(camera, (str, int, np.integer)):
            raise ValueError(
                f"camera: expected a FollowCamera, a camera name or id, received {camera!r}"
            )
        try:
            model.camera(camera)
        except Exception as exc:
            names = [model.camera(i).name for i in range(model.ncam)]
            raise ValueError(
                f"camera: expected one of {names} or an id, received {camera!r}"
            ) from exc
    vis = model.vis.global_
    if width > vis.offwidth or height > vis.offheight:
        model = copy.deepcopy(model)  # do not enlarge the env's own framebuffer settings
        model.vis.global_.offwidth = max(width, vis.offwidth)
        model.vis.global_.offheight = max(height, vis.offheight)
    data = mujoco.MjData(model)
    cam: Any = camera
    body_id = 0
    if follow is not None:
        try:
            body_id = int(model.body(follow.body).id)
        except Exception as exc:
            raise ValueError(f"camera: the model has no body {follow.body!r}") from exc
        mujoco.mj_forward(model, data)  # reference pose qpos0
        look_z = float(data.xpos[body_id, 2]) if follow.height is None else float(follow.height)
        cam = mujoco.MjvCamera()
        cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        cam.distance = (
            _DEFAULT_DISTANCE.get(layout.scenario, 4.0)
            if follow.distance is None
            else float(follow.distance)
        )
        cam.azimuth = float(follow.azimuth)
        cam.elevation = float(follow.elevation)

    frames = np.empty((n_steps, height, width, 3), dtype=np.uint8)
    renderer = _make_renderer(model, height, width)
    try:
        for t in range(n_steps):
            data.qpos[:] = qpos[t]
            data.qvel[:] = qvel[t]
            mujoco.mj_forward(model, data)
            if follow is not None:
                cam.lookat[:] = (data.xpos[body_id, 0], data.xpos[body_id, 1], look_z)
            renderer.update_scene(data, camera=cam)
            frames[t] = renderer.render()
    finally:
        renderer.close()
    return frames


# --------------------------------------------------------------------------- figure
def _check_frames(frames: Any, name: str) -> npt.NDArray[np.uint8]:
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or arr.shape[0] == 0:
        raise ValueError(
            f"{name}: expected uint8 frames [T, H, W, 3] with T >= 1, received "
            f"{arr.dtype} {arr.shape}"
        )
    return arr


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def strip_figure(
    real_frames: Any,
    imagined_frames: Any,
    steps: Sequence[int],
    path: str | os.PathLike[str],
    *,
    labels: tuple[str, str] = ("real", "imagined"),
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Write a PNG with two rows of frames, real above imagined, one column per step.

    Args:
        real_frames: ``[T, H, W, 3]`` uint8, ``real_frames[t]`` is the frame at step ``t``
            (e.g. from :func:`render_states`).
        imagined_frames: ``[T', H, W, 3]`` uint8, indexed the same way.
        steps: the steps shown, e.g. ``(1, 2, 4, 6, 8, 10, 12, 14)``; each must index both arrays.
            Columns are labelled ``t = step``.
        path: the PNG written (atomically: a temporary file in the same folder, then
            ``os.replace``); parent folders are created.
        labels: row labels.
        title: optional figure title.
        dpi: resolution; one frame pixel is one image pixel.

    Returns:
        The path written.

    Raises:
        ValueError: bad frames or steps. ImportError: matplotlib missing (extra ``plot``).
    """
    real = _check_frames(real_frames, "real_frames")
    imagined = _check_frames(imagined_frames, "imagined_frames")
    if real.shape[1:] != imagined.shape[1:]:
        raise ValueError(
            f"imagined_frames: expected frames of shape {real.shape[1:]} (as real_frames), "
            f"received {imagined.shape[1:]}"
        )
    step_list = [int(s) for s in steps]
    if not step_list or any(isinstance(s, bool) for s in steps):
        raise ValueError(f"steps: expected a non-empty sequence of ints, received {steps!r}")
    limit = min(real.shape[0], imagined.shape[0])
    bad = [s for s in step_list if not 0 <= s < limit]
    if bad:
        raise ValueError(
            f"steps: expected indices in [0, {limit}) (frames given: real {real.shape[0]}, "
            f"imagined {imagined.shape[0]}), received {bad}"
        )
    if len(labels) != 2:
        raise ValueError(f"labels: expected two row labels, received {labels!r}")
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - only without the extra
        raise ImportError(
            f"strip_figure needs matplotlib: pip install 'dimalib[plot]' ({exc})"
        ) from exc

    h, w = real.shape[1:3]
    n = len(step_list)
    top = 0.45 if title else 0.3
    fig = Figure(figsize=(n * w / dpi + 0.4, 2 * h / dpi + top + 0.05), dpi=dpi)
    axes = fig.subplots(2, n, squeeze=False)
    for row, (frames, label) in enumerate(((real, labels[0]), (imagined, labels[1]))):
        for col, step in enumerate(step_list):
            ax = axes[row][col]
            ax.imshow(frames[step], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"t = {step}", fontsize=9)
            if col == 0:
                ax.set_ylabel(label, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    fig_w, fig_h = fig.get_size_inches()
    fig.subplots_adjust(
        left=0.4 / fig_w,
        right=1.0,
        bottom=0.05 / fig_h,
        top=1.0 - top / fig_h,
        wspace=0.02,
        hspace=0.02,
    )

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=dpi)
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; a PNG is for sharing
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    logger.debug("wrote %s (%d steps)", out, n)
    return out
