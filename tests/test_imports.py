"""The core package imports without the optional extras."""

from __future__ import annotations

import subprocess
import sys

BLOCKED = ("mujoco", "gymnasium_robotics", "torchrl", "matplotlib", "tensorboard")


def test_core_imports_without_optional_extras() -> None:
    code = f"""
import sys
for name in {BLOCKED!r}:
    sys.modules[name] = None  # 'import name' now raises ImportError
import dimalib, dimalib.envs, dimalib.training, dimalib.evaluation, dimalib.world_model
from dimalib.envs import MJ_DEXHANDS_TASK_NAMES, known_env_names, make_env
assert "MjShadowHandPen" in known_env_names()
try:
    make_env("MjShadowHandPen")
except ImportError as exc:
    assert "dimalib[mamujoco]" in str(exc), exc
else:
    raise AssertionError("make_env without mujoco should raise ImportError")
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_lazy_task_names_match_the_task_table() -> None:
    from dimalib.envs.mj_dexhands import MJ_DEXHANDS_TASK_NAMES
    from dimalib.envs.mj_dexhands.tasks import MJ_DEXHANDS_TASKS

    assert tuple(MJ_DEXHANDS_TASKS) == MJ_DEXHANDS_TASK_NAMES
