"""Render MAMuJoCo global states offscreen, e.g. a real and an imagined rollout, and figures.

The state layout (what each entry of a global state is) lives in
:mod:`dimalib.envs.mamujoco_state`.

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

import copy
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dimalib.envs.mamujoco_state import root_positions, state_layout, state_to_qpos_qvel
from dimalib.utils.checks import as_float64_array, check_int, check_last_dim
from dimalib.utils.io import atomic_write_bytes

__all__ = [
    "FollowCamera",
    "render_states",
    "strip_figure",
]

logger = logging.getLogger(__name__)

_GL_HELP = (
    "offscreen rendering needs an OpenGL backend: on headless Linux set MUJOCO_GL=egl "
    "(Debian packages libegl1 and libgl1-mesa-dri, or a GPU driver's EGL) or MUJOCO_GL=osmesa "
    "(Debian package libosmesa6), plus the Python package PyOpenGL; MUJOCO_GL is read when "
    "mujoco is first imported, so set it before importing mujoco / gymnasium-robotics"
)


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
    width = check_int("width", width)
    height = check_int("height", height)
    arr = as_float64_array(states, "states")
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(
            f"states: expected shape [T, {layout.state_dim}] with T >= 1, received {arr.shape}"
        )
    check_last_dim(arr, layout.state_dim, "states", f"the {layout.scenario} global state")
    n_steps = arr.shape[0]
    if root_x is None:
        roots = root_positions(layout, arr)
    else:
        roots = as_float64_array(root_x, "root_x")
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

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    out = atomic_write_bytes(buf.getvalue(), path)
    logger.debug("wrote %s (%d steps)", out, n)
    return out
