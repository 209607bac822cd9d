"""The MuJoCo scene shared by the four tasks: two Shadow hands, combined with ``mujoco.MjSpec``.

The hand is gymnasium-robotics' Shadow hand (``envs/assets/hand/{shared,shared_asset,robot}.xml``
inside the installed ``gymnasium_robotics`` package, meshes under ``envs/assets/stls/hand``); it is
loaded once per hand into an :class:`mujoco.MjSpec`, changed as below, and attached twice to an
empty world spec with the name prefixes ``"rh_"`` (agent ``right_hand``) and ``"lh_"`` (agent
``left_hand``). Both are the same (right) hand model, placed and rotated by the task, as Bi-DexHands
places two copies of one hand asset (``shadow_hand.xml`` / ``shadow_hand1.xml``).

Changes to the asset, following what Bi-DexHands does to it in Isaac Gym
(``bidexhands/tasks/shadow_hand_*.py``, ``_create_envs``):

* the ``robot0:hand mount`` body gets a free joint (Bi-DexHands: ``fix_base_link = False``) and
  every hand body gets ``gravcomp = 1`` (Bi-DexHands: ``disable_gravity = True``); the free joint
  is damped, translation with :data:`LINEAR_DAMPING` N·s/m, rotation with
  :data:`ANGULAR_DAMPING` N·m·s/rad (Bi-DexHands: PhysX linear/angular damping 100);
* of the 44 fixed tendons only the four that couple the two distal joints of each finger are kept
  (``T_FFJ1c``, ``T_MFJ1c``, ``T_RFJ1c``, ``T_LFJ1c``: the tendons Bi-DexHands configures), the
  joint-limit tendons and the asset's sensors are removed;
* the asset's joint friction loss (0.001 N·m) and joint-limit margin (0.01 rad) are set to 0
  (they only cost constraint rows);
* a site at the origin of each distal body carries a force and a torque sensor (Isaac Gym's
  fingertip force sensors) and a linear/angular velocity sensor (fingertip velocities).

The 20 position actuators of the asset (20 of the 24 joints; the distal joints follow through the
tendons) take the finger targets ``a[6:26]``; ``a[0:3]`` and ``a[3:6]`` become a world-frame force
and torque on the forearm (``xfrc_applied``), :data:`FORCE_SCALE` N and :data:`TORQUE_SCALE` N·m
per unit action.

Physics: ``dt = 1/120`` s with :data:`SUBSTEPS` = 2 physics steps per control step (60 Hz control,
Bi-DexHands' ``sim.dt = 1/60`` with 2 PhysX substeps), ``implicitfast`` integrator, soft contacts.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

__all__ = [
    "ANGULAR_DAMPING",
    "COUPLING_TENDONS",
    "FINGERTIPS",
    "FORCE_SCALE",
    "HAND_PREFIXES",
    "LINEAR_DAMPING",
    "PHYSICS_DT",
    "SUBSTEPS",
    "TORQUE_SCALE",
    "HandPose",
    "build_model",
    "euler_xyz",
    "hand_asset_dir",
    "hand_spec",
    "orientation",
]

NDArray = np.ndarray[Any, Any]

PHYSICS_DT = 1.0 / 120.0
"""MuJoCo time step (s)."""
SUBSTEPS = 2
"""Physics steps per control step: control at 60 Hz as in Bi-DexHands."""
FORCE_SCALE = 20.0
"""Forearm force per unit of ``a[0:3]`` (N). Bi-DexHands applies ``a * dt * 0.5 * 1e5`` (~833 N at
``dt = 1/60``) against PhysX damping 100 (a terminal speed of about 1.7 m/s for the 5 kg hand);
here 20 N against :data:`LINEAR_DAMPING` gives about 1 m/s."""
TORQUE_SCALE = 2.0
"""Forearm torque per unit of ``a[3:6]`` (N·m); Bi-DexHands: ``a * dt * orientation_scale * 1000``
with ``orientation_scale`` 0.1 to 0.5 depending on the task config (~1.7 to 8.3 N·m)."""
LINEAR_DAMPING = 20.0
"""Damping of the free joint's translational DoFs (N·s/m)."""
ANGULAR_DAMPING = 1.0
"""Damping of the free joint's rotational DoFs (N·m·s/rad)."""

HAND_PREFIXES: tuple[str, str] = ("rh_", "lh_")
"""Name prefixes of the two attached hands, in agent order (right hand, left hand)."""
FINGERTIPS: tuple[str, ...] = ("ffdistal", "mfdistal", "rfdistal", "lfdistal", "thdistal")
"""Distal bodies, in Bi-DexHands' fingertip order (first, middle, ring, little finger, thumb)."""
COUPLING_TENDONS: tuple[str, ...] = ("T_FFJ1c", "T_MFJ1c", "T_RFJ1c", "T_LFJ1c")
"""The fixed tendons kept: they couple each finger's two distal joints."""

_ASSET_PREFIX = "robot0:"
_USER_SIZES = {
    "nuser_jnt": 1,
    "nuser_site": 1,
    "nuser_tendon": 1,
    "nuser_actuator": 16,
    "nuser_sensor": 1,
}


def hand_asset_dir() -> str:
    """``.../gymnasium_robotics/envs/assets/hand`` of the installed package (not imported)."""
    spec = importlib.util.find_spec("gymnasium_robotics")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the MuJoCo Bi-DexHands tasks use the Shadow hand asset shipped with "
            "gymnasium-robotics: pip install 'dimalib[mamujoco]'"
        )
    path = os.path.join(next(iter(spec.submodule_search_locations)), "envs", "assets", "hand")
    if not os.path.isfile(os.path.join(path, "robot.xml")):
        raise FileNotFoundError(f"Shadow hand asset not found in {path}")
    return path


def hand_spec() -> mujoco.MjSpec:
    """One Shadow hand as an ``MjSpec``, changed as the module docstring says (names unprefixed,
    i.e. ``robot0:...``; the root body is ``robot0:hand mount`` at the origin)."""
    root = hand_asset_dir()
    meshdir = os.path.normpath(os.path.join(root, "..", "stls", "hand"))
    xml = (
        f'<mujoco><compiler angle="radian" meshdir="{meshdir}"/>'
        f'<include file="{os.path.join(root, "shared.xml")}"/>'
        f'<asset><include file="{os.path.join(root, "shared_asset.xml")}"/></asset>'
        f'<worldbody><include file="{os.path.join(root, "robot.xml")}"/></worldbody></mujoco>'
    )
    spec = mujoco.MjSpec.from_string(xml)
    spec.njmax = spec.nconmax = -1  # sized automatically (the scene has two hands and objects)
    keep = {_ASSET_PREFIX + t for t in COUPLING_TENDONS}
    for tendon in list(spec.tendons):
        if tendon.name not in keep:
            spec.delete(tendon)
    for sensor in list(spec.sensors):
        spec.delete(sensor)
    for mesh in spec.meshes:  # absolute paths: the attaching spec has its own meshdir
        if mesh.file and not os.path.isabs(mesh.file):
            mesh.file = os.path.join(meshdir, mesh.file)
    mount = spec.body(_ASSET_PREFIX + "hand mount")
    mount.pos = [0.0, 0.0, 0.0]
    mount.alt.type = mujoco.mjtOrientation.mjORIENTATION_QUAT
    mount.quat = [1.0, 0.0, 0.0, 0.0]
    mount.add_freejoint(name=_ASSET_PREFIX + "root")
    for body in [mount, *mount.find_all(mujoco.mjtObj.mjOBJ_BODY)]:
        body.gravcomp = 1.0
    for tip in FINGERTIPS:
        spec.body(_ASSET_PREFIX + tip).add_site(name=f"{_ASSET_PREFIX}S_ft_{tip}", size=[0.004])
    return spec


def orientation(forearm: Sequence[float], palm_normal: Sequence[float]) -> NDArray:
    """Quaternion ``[w, x, y, z]`` that points the hand's forearm axis (local ``+z``: wrist to
    fingers) along ``forearm`` and its palm normal (local ``-y``) along ``palm_normal``."""
    z = np.asarray(forearm, np.float64)
    z = z / np.linalg.norm(z)
    y = -np.asarray(palm_normal, np.float64)
    y = y - (y @ z) * z
    y = y / np.linalg.norm(y)
    x = np.cross(y, z)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.stack([x, y, z], axis=1).reshape(-1))
    return quat


@dataclass(frozen=True)
class HandPose:
    """Start pose of a hand's root (``hand mount``) body: position and ``[w, x, y, z]``."""

    pos: tuple[float, float, float]
    quat: tuple[float, float, float, float]

    @staticmethod
    def facing(
        pos: Sequence[float], forearm: Sequence[float], palm_normal: Sequence[float]
    ) -> HandPose:
        q = orientation(forearm, palm_normal)
        return HandPose(
            (float(pos[0]), float(pos[1]), float(pos[2])),
            (float(q[0]), float(q[1]), float(q[2]), float(q[3])),
        )


FORCE = (mujoco.mjtSensor.mjSENS_FORCE, "force")
TORQUE = (mujoco.mjtSensor.mjSENS_TORQUE, "torque")
LINVEL = (mujoco.mjtSensor.mjSENS_FRAMELINVEL, "linvel")
ANGVEL = (mujoco.mjtSensor.mjSENS_FRAMEANGVEL, "angvel")


def add_site_sensors(
    spec: mujoco.MjSpec, site: str, kinds: Sequence[tuple[mujoco.mjtSensor, str]]
) -> None:
    """Add one sensor per ``(type, suffix)`` on ``site``, named ``f"{site}_{suffix}"``, in order
    (the order of their values in ``MjData.sensordata``)."""
    for kind, suffix in kinds:
        spec.add_sensor(
            type=kind, objtype=mujoco.mjtObj.mjOBJ_SITE, objname=site, name=f"{site}_{suffix}"
        )


def build_model(
    add_object: Callable[[mujoco.MjSpec], None],
    right: HandPose,
    left: HandPose,
    *,
    linear_damping: float = LINEAR_DAMPING,
    angular_damping: float = ANGULAR_DAMPING,
) -> mujoco.MjModel:
    """Compile the scene: options, light, two hands (``rh_``/``lh_``) at their start poses, the
    fingertip sensors, then whatever ``add_object`` adds to the spec."""
    spec = mujoco.MjSpec()
    spec.modelname = "mj_dexhands"
    spec.compiler.degree = False  # radians, like the hand asset
    spec.option.timestep = PHYSICS_DT
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.iterations = 20
    for (
        name,
        value,
    ) in _USER_SIZES.items():  # the hand's custom user-data sizes (no attach conflict)
        setattr(spec, name, value)
    spec.visual.global_.offwidth = 640
    spec.visual.global_.offheight = 480
    spec.worldbody.add_light(
        pos=[0.0, 0.0, 3.0], dir=[0.0, 0.0, -1.0], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL
    )
    spec.worldbody.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[2.0, 2.0, 0.05],
        rgba=[0.25, 0.3, 0.35, 1.0],
        contype=0,
        conaffinity=0,
    )
    for prefix, pose in zip(HAND_PREFIXES, (right, left), strict=True):
        hand = hand_spec()
        frame = spec.worldbody.add_frame(pos=list(pose.pos), quat=list(pose.quat))
        frame.attach_body(hand.body(_ASSET_PREFIX + "hand mount"), prefix, "")
    for prefix in HAND_PREFIXES:
        sites = [f"{prefix}{_ASSET_PREFIX}S_ft_{tip}" for tip in FINGERTIPS]
        for site in sites:  # per fingertip: force, torque (Isaac Gym force sensor: 6 values)
            add_site_sensors(spec, site, (FORCE, TORQUE))
        for site in sites:  # per fingertip: linear, angular velocity (world frame)
            add_site_sensors(spec, site, (LINVEL, ANGVEL))
    add_object(spec)
    model = spec.compile()
    for prefix in HAND_PREFIXES:
        adr = int(model.jnt_dofadr[model.joint(f"{prefix}{_ASSET_PREFIX}root").id])
        model.dof_damping[adr : adr + 3] = linear_damping
        model.dof_damping[adr + 3 : adr + 6] = angular_damping
    hand = np.array([model.joint(j).name.startswith(HAND_PREFIXES) for j in range(model.njnt)])
    # speed: the asset's 0.001 N·m joint friction and 0.01 rad limit margin add ~70 always-active
    # constraint rows for a negligible effect (Isaac Gym's drives have neither)
    model.jnt_margin[hand] = 0.0
    for j in np.flatnonzero(hand):
        model.dof_frictionloss[model.jnt_dofadr[j]] = 0.0
    return model


def euler_xyz(quat_wxyz: NDArray) -> NDArray:
    """Roll, pitch, yaw (``[..., 3]``, each in ``[0, 2π)``) of ``[..., 4]`` ``[w, x, y, z]``
    quaternions, Bi-DexHands' ``get_euler_xyz`` convention."""
    w, x, y, z = (quat_wxyz[..., i] for i in range(4))
    roll = np.arctan2(2.0 * (w * x + y * z), w * w - x * x - y * y + z * z)
    sinp = np.clip(2.0 * (w * y - z * x), -1.0, 1.0)
    pitch = np.arcsin(sinp)
    yaw = np.arctan2(2.0 * (w * z + x * y), w * w + x * x - y * y - z * z)
    return np.stack([roll, pitch, yaw], axis=-1) % (2.0 * math.pi)
