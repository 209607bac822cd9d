"""Deprecated: moved in 0.2 to :mod:`dimalib.envs.mamujoco_state` (the state layout) and
:mod:`dimalib.viz.render` (rendering and figures). Every name below keeps working from here."""

from dimalib.envs.mamujoco_state import (
    SUPPORTED_SCENARIOS,
    StateLayout,
    qpos_qvel_to_state,
    root_positions,
    state_labels,
    state_layout,
    state_to_qpos_qvel,
)
from dimalib.viz.render import FollowCamera, render_states, strip_figure

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
