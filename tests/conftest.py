"""Test-wide settings.

The test models are tiny: one intra-op thread runs them as fast as two and avoids
oversubscription when pytest-xdist runs one worker per core (``nox -s tests`` uses ``-n 2``).

MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` when it is first imported, which may happen in
any test module of a worker: the headless EGL backend is chosen here, before any test imports it,
so the rendering tests can run (they skip with the reason when no backend works).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import torch

torch.set_num_threads(int(os.environ.get("DIMALIB_TEST_THREADS", "1")))
