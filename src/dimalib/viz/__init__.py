"""Visualisation: offscreen rendering of MAMuJoCo states and real-vs-imagined figure strips."""

from dimalib.viz.render import FollowCamera, render_states, strip_figure

__all__ = ["FollowCamera", "render_states", "strip_figure"]
