"""MuJoCo's warnings routed to Python logging while dimalib compiles a model.

MuJoCo prints its warnings to stdout and appends them to ``MUJOCO_LOG.TXT`` in the working
directory unless a user handler is installed. gymnasium-robotics' MAMuJoCo models use the
deprecated ``settotalmass`` compiler attribute, so every env built printed one warning and wrote
the file. :func:`mujoco_warnings_to_logging` installs a handler for the duration of a build only
(the previous handler is restored, so nothing global is left behind): deprecation notices go to
the ``dimalib.envs`` logger at DEBUG, any other MuJoCo warning at WARNING.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["mujoco_warnings_to_logging"]

logger = logging.getLogger("dimalib.envs")


def _handler(message: str) -> None:
    level = logging.DEBUG if "deprecated" in message else logging.WARNING
    logger.log(level, "MuJoCo: %s", message.strip())


@contextlib.contextmanager
def mujoco_warnings_to_logging() -> Iterator[None]:
    """Within the block, MuJoCo warnings go to logging instead of stdout and MUJOCO_LOG.TXT."""
    import mujoco

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(_handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)
