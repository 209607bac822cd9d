"""Bi-DexHands tasks re-implemented on MuJoCo, without Isaac Gym.

**These are re-implementations, not the Bi-DexHands benchmark.** The paper's second benchmark,
Bi-DexHands (PKU-MARL/DexterousHands), runs on NVIDIA Isaac Gym, which cannot be installed here.
This package rebuilds four of its tasks on MuJoCo with the Shadow hand shipped with
gymnasium-robotics and primitive objects, keeping Bi-DexHands' action and observation layout,
rewards, success and reset rules and episode lengths. Physics (soft contacts vs PhysX), object
shapes and start poses differ, so returns are comparable in trend, not in value, with published
Bi-DexHands numbers (``docs/mj_dexhands.md`` lists the differences).

* ``MjShadowHandPen`` (``shadow_hand_pen.py``): obs 218 per agent, state 417, 125 steps;
* ``MjShadowHandBottleCap`` (``shadow_hand_bottle_cap.py``): 221, 420, 125 steps;
* ``MjShadowHandDoorOpenInward`` (``shadow_hand_door_open_inward.py``): 218, 417, 250 steps;
* ``MjShadowHandDoorOpenOutward`` (``shadow_hand_door_open_outward.py``): 218, 417, 250 steps;

all with two agents of 26 actions (task files under ``bidexhands/tasks/`` of
PKU-MARL/DexterousHands).

Agents: ``"right_hand"`` (agent 0) and ``"left_hand"`` (agent 1). Actions per agent, in
``[-1, 1]`` (clipped): ``a[0:3]`` world-frame force on the forearm (× 20 N), ``a[3:6]`` torque
(× 2 N·m), ``a[6:26]`` position targets of the 20 actuated joints, mapped linearly from
``[-1, 1]`` to each actuator's range (Bi-DexHands' ``scale``, no action smoothing).

Hand block (199 values per hand, Bi-DexHands' ``compute_full_state``), offsets within the block:

=========  ====  ================================================================================
offset     size  content
=========  ====  ================================================================================
0          24    joint positions, normalised to ``[-1, 1]`` by the joint limits (``unscale``)
24         24    joint velocities × 0.2
48         24    joint actuator forces (``qfrc_actuator``) × 10
72         65    5 fingertips (ff, mf, rf, lf, th distal bodies) × 13: position 3, quaternion 4
                 (``x, y, z, w`` as Isaac Gym), linear velocity 3, angular velocity 3 (world frame)
137        30    5 fingertips × (force 3, torque 3) of a force/torque sensor at the distal body
                 (MuJoCo ``force``/``torque`` sensors, site frame) × 10
167        3     hand position: palm + palm-frame offset ``(0, -0.02, 0.08)``
170        3     roll, pitch, yaw of the hand root (``hand mount``), each in ``[0, 2π)``
173        26    the hand's last (clipped) action
=========  ====  ================================================================================

Object block (19 values; 22 for BottleCap), offsets within the block:

======  ====  ===================================================================================
offset  size  content
======  ====  ===================================================================================
0       7     object root pose: position 3, quaternion 4 (``x, y, z, w``); the pen barrel, the
              bottle, or the (fixed) door frame
7       3     object linear velocity
10      3     object angular velocity × 0.2
13      3     Pen: right handle (barrel point); Doors: left handle; BottleCap: bottle position
16      3     Pen: left handle (cap); Doors: right handle; BottleCap: cap target (a point fixed on
              the bottle where the cap sits)
19      3     BottleCap only: cap position (its reference point, at the bottle's origin at rest)
======  ====  ===================================================================================

Per-agent observation: the agent's own hand block, then the object block (``199 + 19 = 218``;
221 for BottleCap): offsets 0–198 hand, 199– object. Global state (what ``state()`` returns and
Bi-DexHands' full ``obs_buf``): right hand block (0–198), left hand block (199–397), object block
(398–416, BottleCap 398–419): ``2 × 199 + 19 = 417`` (420). Observations and state are clipped to
``[-5, 5]`` as Bi-DexHands' ``MultiVecTaskPython`` clips them (``clipObservations``).

Rewards (shared by both agents), success and failure resets: :mod:`dimalib.envs.mj_dexhands.tasks`.
A failure reset is ``terminated``; reaching the episode length is ``truncated``.

Use :func:`dimalib.envs.make_env` (``make_env("MjShadowHandPen")``) or :class:`MjDexHandsEnv`;
batch copies with ``VectorMultiAgentEnv([lambda: make_env(name)] * N)`` (array-level fast path).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "AGENTS",
    "HAND_OBS_DIM",
    "MJ_DEXHANDS_TASKS",
    "MJ_DEXHANDS_TASK_NAMES",
    "MjDexHandsEnv",
    "TaskDef",
    "make_mj_dexhands",
]

#: The task names, available without importing MuJoCo (``mujoco`` is the optional extra
#: ``mamujoco``); :data:`MJ_DEXHANDS_TASKS` maps them to their definitions.
MJ_DEXHANDS_TASK_NAMES: tuple[str, ...] = (
    "MjShadowHandPen",
    "MjShadowHandBottleCap",
    "MjShadowHandDoorOpenInward",
    "MjShadowHandDoorOpenOutward",
)

# Everything else needs MuJoCo: imported on first use, so `import dimalib` works without it.
_LAZY = {
    "AGENTS": "env",
    "HAND_OBS_DIM": "env",
    "MjDexHandsEnv": "env",
    "make_mj_dexhands": "env",
    "MJ_DEXHANDS_TASKS": "tasks",
    "TaskDef": "tasks",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
