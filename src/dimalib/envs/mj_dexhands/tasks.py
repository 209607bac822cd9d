"""The four tasks: primitive MJCF objects, start poses, and Bi-DexHands' rewards as pure functions.

Each task is a :class:`TaskDef`: its episode length, how to add its object to the scene spec, the
hands' start poses, the object points that go into the observation (in Bi-DexHands' order) and the
reward. The reward functions take plain arrays (any leading batch shape) so they can be checked
on constructed values; ``Rf``/``Lf`` are sums over the five fingertips of the distances to the
right/left hand's target (:func:`fingertip_distance_sum`).

Sources (PKU-MARL/DexterousHands, ``compute_hand_reward`` of each file):

* ``bidexhands/tasks/shadow_hand_pen.py``: :func:`pen_reward`;
* ``bidexhands/tasks/shadow_hand_bottle_cap.py``: :func:`bottle_cap_reward`;
* ``bidexhands/tasks/shadow_hand_door_open_inward.py`` and
  ``bidexhands/tasks/shadow_hand_door_open_outward.py``: :func:`door_reward` (the same function).

Objects are primitives sized like the Bi-DexHands assets, not their meshes; object geoms collide
with the hands but not with each other (``contype = 2``, ``conaffinity = 1``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import mujoco
import numpy as np

from dimalib.envs.mj_dexhands.scene import ANGVEL, LINVEL, HandPose, add_site_sensors

__all__ = [
    "MJ_DEXHANDS_TASKS",
    "RewardOut",
    "TaskDef",
    "bottle_cap_reward",
    "door_reward",
    "fingertip_distance_sum",
    "pen_reward",
]

NDArray = np.ndarray[Any, Any]
ArrayLike = Any

_OBJ = {"contype": 2, "conaffinity": 1}  # touched by the hands, not by other object geoms
_CAPSULE_Y = [math.sqrt(0.5), -math.sqrt(0.5), 0.0, 0.0]  # local z -> world y


class RewardOut(NamedTuple):
    """What a reward function returns (arrays of the batch shape, or scalars)."""

    reward: NDArray
    terminated: NDArray
    """Bi-DexHands' failure reset (the time-limit reset is truncation, handled by the env)."""
    success: NDArray


# --------------------------------------------------------------------------- rewards
def fingertip_distance_sum(target: ArrayLike, fingertips: ArrayLike) -> NDArray:
    """``sum_k ||target - fingertips[..., k, :]||`` for ``target [..., 3]``, ``fingertips
    [..., 5, 3]``."""
    diff = np.asarray(fingertips, np.float64) - np.asarray(target, np.float64)[..., None, :]
    return np.asarray(np.sqrt((diff * diff).sum(axis=-1)).sum(axis=-1))


def pen_reward(
    right_handle: ArrayLike,
    left_handle: ArrayLike,
    right_fingertips: ArrayLike,
    left_fingertips: ArrayLike,
) -> RewardOut:
    """ShadowHandPen: ``exp(-10 Rf) + exp(-10 Lf)``, plus ``5 ||h_R - h_L|| - 0.8`` once both
    ``Rf < 0.75`` and ``Lf < 0.75``; terminated when ``Rf >= 1.5`` or ``Lf >= 1.5``; success when
    ``5 ||h_R - h_L|| > 1.5`` (handles pulled 0.3 m apart)."""
    hr, hl = np.asarray(right_handle, np.float64), np.asarray(left_handle, np.float64)
    rf = fingertip_distance_sum(hr, right_fingertips)
    lf = fingertip_distance_sum(hl, left_fingertips)
    apart = np.linalg.norm(hr - hl, axis=-1)
    up = np.where((rf < 0.75) & (lf < 0.75), 5.0 * apart - 0.8, 0.0)
    reward = np.exp(-10.0 * rf) + np.exp(-10.0 * lf) + up
    return RewardOut(reward, (rf >= 1.5) | (lf >= 1.5), 5.0 * apart > 1.5)


def door_reward(
    right_handle: ArrayLike,
    left_handle: ArrayLike,
    right_fingertips: ArrayLike,
    left_fingertips: ArrayLike,
) -> RewardOut:
    """ShadowHandDoorOpenInward/Outward: ``2 - Rf - Lf``, plus ``2 |y_R - y_L|`` (the handles'
    distance along ``y``) once both ``Rf < 0.5`` and ``Lf < 0.5``; terminated when ``Rf >= 1.5``
    or ``Lf >= 1.5``; success when ``|y_R - y_L| > 0.5``."""
    hr, hl = np.asarray(right_handle, np.float64), np.asarray(left_handle, np.float64)
    rf = fingertip_distance_sum(hr, right_fingertips)
    lf = fingertip_distance_sum(hl, left_fingertips)
    dy = np.abs(hr[..., 1] - hl[..., 1])
    up = np.where((rf < 0.5) & (lf < 0.5), 2.0 * dy, 0.0)
    return RewardOut(2.0 - rf - lf + up, (rf >= 1.5) | (lf >= 1.5), dy > 0.5)


def bottle_cap_reward(
    bottle_pos: ArrayLike,
    cap_target: ArrayLike,
    cap_pos: ArrayLike,
    right_palm: ArrayLike,
    left_palm: ArrayLike,
    right_fingertips: ArrayLike,
    fall_height: float = 0.37,
) -> RewardOut:
    """ShadowHandBottleCap: ``2 - Rf - ||left_palm - bottle||`` with ``Rf`` the right fingertips'
    distances to the cap target (a point fixed on the bottle), plus ``30 ||cap - bottle||`` once
    ``Rf <= 0.3``; terminated when the cap target falls to ``z <= fall_height``, the right palm is
    ``>= 0.5`` from the cap target or the left palm ``>= 0.2`` from the bottle; success when
    ``||cap - bottle|| > 0.03`` (the cap's reference point coincides with the bottle's at rest)."""
    bottle = np.asarray(bottle_pos, np.float64)
    target = np.asarray(cap_target, np.float64)
    cap = np.asarray(cap_pos, np.float64)
    rf = fingertip_distance_sum(target, right_fingertips)
    left_dist = np.linalg.norm(np.asarray(left_palm, np.float64) - bottle, axis=-1)
    right_dist = np.linalg.norm(np.asarray(right_palm, np.float64) - target, axis=-1)
    opened = np.linalg.norm(cap - bottle, axis=-1)
    up = np.where(rf <= 0.3, 30.0 * opened, 0.0)
    terminated = (target[..., 2] <= fall_height) | (right_dist >= 0.5) | (left_dist >= 0.2)
    return RewardOut(2.0 - rf - left_dist + up, terminated, opened > 0.03)


# --------------------------------------------------------------------------- objects
def _add_pen(spec: mujoco.MjSpec) -> None:
    """A pen along ``y`` between the hands: the barrel (free body, the right hand's part) and the
    cap (the left hand's part) on a slide joint that pulls it off along ``-y`` (0 to 0.2 m).
    Both float (``gravcomp``, lightly damped free joint), as the hands do."""
    pen = spec.worldbody.add_body(name="pen", pos=[0.0, 0.0, 0.45], gravcomp=1.0)
    pen.add_joint(name="pen_root", type=mujoco.mjtJoint.mjJNT_FREE, damping=0.05)
    pen.add_geom(
        name="pen_barrel",
        type=mujoco.mjtGeom.mjGEOM_CAPSULE,
        size=[0.01, 0.07, 0.0],
        pos=[0.0, 0.05, 0.0],
        quat=_CAPSULE_Y,
        rgba=[0.2, 0.4, 0.9, 1.0],
        mass=0.1,
        **_OBJ,
    )
    pen.add_site(name="pen_site")
    cap = pen.add_body(name="pen_cap", pos=[0.0, -0.06, 0.0], gravcomp=1.0)
    cap.add_joint(
        name="pen_slide",
        type=mujoco.mjtJoint.mjJNT_SLIDE,
        axis=[0.0, -1.0, 0.0],
        range=[0.0, 0.2],
        damping=0.2,
        frictionloss=0.02,
    )
    cap.add_geom(
        name="pen_cap",
        type=mujoco.mjtGeom.mjGEOM_CAPSULE,
        size=[0.012, 0.04, 0.0],
        quat=_CAPSULE_Y,
        rgba=[0.9, 0.3, 0.2, 1.0],
        mass=0.05,
        **_OBJ,
    )
    _add_object_sensors(spec, "pen_site")


def _door_builder(inward: bool) -> Callable[[mujoco.MjSpec], None]:
    def add(spec: mujoco.MjSpec) -> None:
        """A fixed frame at ``x = 0`` with two 0.4 m x 0.8 m leaves hinged at ``y = ±0.4`` that
        meet at ``y = 0``; a vertical bar handle on the hands' side (``+x``) of each leaf, 0.05 m
        from the seam. Outward: the leaves swing away from the hands (push); inward: towards them
        (pull; Bi-DexHands flips the same door by π). Both start closed, hinge range 0 to 90°."""
        door = spec.worldbody.add_body(name="door", pos=[0.0, 0.0, 0.6])
        door.add_site(name="door_site")
        for post in (-1.0, 1.0):
            door.add_geom(
                type=mujoco.mjtGeom.mjGEOM_BOX,
                size=[0.02, 0.02, 0.42],
                pos=[0.0, post * 0.43, 0.0],
                rgba=[0.4, 0.3, 0.2, 1.0],
                **_OBJ,
            )
        for side, sgn in (("right", 1.0), ("left", -1.0)):
            leaf = door.add_body(name=f"door_{side}_leaf", pos=[0.0, sgn * 0.4, 0.0])
            axis = sgn * (1.0 if inward else -1.0)
            leaf.add_joint(
                name=f"door_{side}_hinge",
                type=mujoco.mjtJoint.mjJNT_HINGE,
                axis=[0.0, 0.0, axis],
                range=[0.0, 0.5 * math.pi],
                damping=0.5,
                frictionloss=0.05,
            )
            leaf.add_geom(
                type=mujoco.mjtGeom.mjGEOM_BOX,
                size=[0.01, 0.199, 0.4],
                pos=[0.0, -sgn * 0.2, 0.0],
                rgba=[0.75, 0.6, 0.4, 1.0],
                mass=1.0,
                **_OBJ,
            )
            y = -sgn * 0.35
            leaf.add_geom(
                type=mujoco.mjtGeom.mjGEOM_CAPSULE,
                size=[0.01, 0.06, 0.0],
                pos=[0.06, y, 0.0],
                rgba=[0.8, 0.8, 0.8, 1.0],
                mass=0.05,
                **_OBJ,
            )
            for z in (-0.05, 0.05):
                leaf.add_geom(
                    type=mujoco.mjtGeom.mjGEOM_BOX,
                    size=[0.025, 0.006, 0.006],
                    pos=[0.035, y, z],
                    rgba=[0.8, 0.8, 0.8, 1.0],
                    mass=0.01,
                    **_OBJ,
                )
        _add_object_sensors(spec, "door_site")

    return add


def _add_bottle(spec: mujoco.MjSpec) -> None:
    """A bottle (cylinder, radius 0.03 m, 0.1 m long) lying along ``+y`` in the left hand's palm,
    and its cap: hinge and slide joint along the bottle axis. The bottle is gravity compensated
    like the hands: a passive palm does not hold a rolling cylinder in MuJoCo's soft contacts, so
    under gravity nearly every episode would end at once. The cap body's origin is at the
    bottle's origin (its base), so ``||cap - bottle||`` is how far the cap has been pulled (0 at
    rest, up to 0.05 m)."""
    bottle = spec.worldbody.add_body(
        name="bottle", pos=list(BOTTLE_START), quat=_CAPSULE_Y, gravcomp=1.0
    )
    bottle.add_freejoint(name="bottle_root")
    bottle.add_geom(
        name="bottle",
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        size=[0.03, 0.05, 0.0],
        pos=[0.0, 0.0, 0.05],
        rgba=[0.3, 0.7, 0.4, 1.0],
        mass=0.15,
        friction=[1.0, 0.01, 0.001],
        **_OBJ,
    )
    bottle.add_site(name="bottle_site")
    cap = bottle.add_body(name="bottle_cap", gravcomp=1.0)
    cap.add_joint(
        name="bottle_cap_hinge",
        type=mujoco.mjtJoint.mjJNT_HINGE,
        axis=[0.0, 0.0, 1.0],
        damping=0.002,
        frictionloss=0.001,
    )
    cap.add_joint(
        name="bottle_cap_slide",
        type=mujoco.mjtJoint.mjJNT_SLIDE,
        axis=[0.0, 0.0, 1.0],
        range=[0.0, 0.05],
        damping=0.5,
        frictionloss=0.05,
    )
    cap.add_geom(
        name="bottle_cap",
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        size=[0.033, 0.015, 0.0],
        pos=[0.0, 0.0, 0.115],
        rgba=[0.9, 0.2, 0.2, 1.0],
        mass=0.02,
        friction=[1.0, 0.01, 0.001],
        **_OBJ,
    )
    _add_object_sensors(spec, "bottle_site")


def _add_object_sensors(spec: mujoco.MjSpec, site: str) -> None:
    """Linear and angular velocity (world frame) of the object's root body: the last 6 sensor
    values."""
    add_site_sensors(spec, site, (LINVEL, ANGVEL))


# --------------------------------------------------------------------------- task table
BOTTLE_START = (0.0, -0.19, 0.47)
"""Start position of the bottle's base (its axis along ``+y``)."""

Point = tuple[str, tuple[float, float, float]]
"""An object point: body name and offset in that body's frame."""


@dataclass(frozen=True)
class TaskDef:
    """One task: sizes, scene, observation points, reward.

    Attributes:
        name: registered name (``"MjShadowHand..."``).
        episode_length: steps before truncation (Bi-DexHands' ``episodeLength``).
        add_object: adds the object bodies (and 6 velocity sensors of ``object_body``) to a spec.
        object_body: the body whose pose/velocity is the object block's first 13 values.
        right, left: start poses of the hands' root bodies.
        points: object points appended to the object block, in Bi-DexHands' order (2 or 3).
        kind: ``"pen"``, ``"door"`` or ``"bottle_cap"`` (which reward function).
        source: the Bi-DexHands task file this re-implements.
    """

    name: str
    episode_length: int
    add_object: Callable[[mujoco.MjSpec], None]
    object_body: str
    right: HandPose
    left: HandPose
    points: tuple[Point, ...]
    kind: str
    source: str

    @property
    def object_dim(self) -> int:
        """Object block size: pose 7 + linear velocity 3 + angular velocity 3 + 3 per point."""
        return 13 + 3 * len(self.points)

    @property
    def obs_dim(self) -> int:
        """Per-agent observation size: 199 hand values + the object block."""
        return 199 + self.object_dim

    @property
    def state_dim(self) -> int:
        """Global state size: both hands' 199 values + the object block."""
        return 2 * 199 + self.object_dim


_DOOR_RIGHT = HandPose.facing((0.62, 0.1, 0.6), (-1.0, 0.0, 0.0), (0.0, -1.0, 0.0))
_DOOR_LEFT = HandPose.facing((0.62, -0.1, 0.6), (-1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
_DOOR_POINTS: tuple[Point, ...] = (
    ("door_left_leaf", (0.06, 0.35, 0.0)),
    ("door_right_leaf", (0.06, -0.35, 0.0)),
)


def _door_task(inward: bool) -> TaskDef:
    """The two door tasks: the same scene, hands and points; only the hinges' direction differs."""
    name = f"MjShadowHandDoorOpen{'Inward' if inward else 'Outward'}"
    return TaskDef(
        name=name,
        episode_length=250,
        add_object=_door_builder(inward=inward),
        object_body="door",
        right=_DOOR_RIGHT,
        left=_DOOR_LEFT,
        points=_DOOR_POINTS,
        kind="door",
        source=f"bidexhands/tasks/shadow_hand_door_open_{'inward' if inward else 'outward'}.py",
    )


MJ_DEXHANDS_TASKS: dict[str, TaskDef] = {
    "MjShadowHandPen": TaskDef(
        name="MjShadowHandPen",
        episode_length=125,
        add_object=_add_pen,
        object_body="pen",
        right=HandPose.facing((0.0, 0.64, 0.5), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0)),
        left=HandPose.facing((0.0, -0.64, 0.5), (0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
        points=(("pen", (0.0, 0.09, 0.0)), ("pen_cap", (0.0, 0.0, 0.0))),
        kind="pen",
        source="bidexhands/tasks/shadow_hand_pen.py",
    ),
    "MjShadowHandBottleCap": TaskDef(
        name="MjShadowHandBottleCap",
        episode_length=125,
        add_object=_add_bottle,
        object_body="bottle",
        right=HandPose.facing((0.0, 0.56, 0.52), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0)),
        left=HandPose.facing((0.0, -0.5, 0.42), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
        points=(
            ("bottle", (0.0, 0.0, 0.0)),
            ("bottle", (0.0, 0.0, 0.115)),
            ("bottle_cap", (0.0, 0.0, 0.0)),
        ),
        kind="bottle_cap",
        source="bidexhands/tasks/shadow_hand_bottle_cap.py",
    ),
    "MjShadowHandDoorOpenInward": _door_task(inward=True),
    "MjShadowHandDoorOpenOutward": _door_task(inward=False),
}
"""The four re-implemented tasks by name."""
