"""Crash-safe, versioned files: write to a temporary file, then rename over the target."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_save", "load_versioned", "restore_fields"]


def atomic_save(
    payload: dict[str, Any], path: str | os.PathLike[str], *, kind: str, version: int
) -> Path:
    """Save ``payload`` with ``torch.save`` atomically, tagged with ``kind`` and ``version``.

    The data go to a temporary file in the target's folder, are flushed to disk, and the file is
    renamed over ``path``: a crash leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"dimalib_kind": kind, "dimalib_version": version, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(blob, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_versioned(
    path: str | os.PathLike[str],
    *,
    kind: str,
    version: int,
    map_location: str | torch.device | None = "cpu",
) -> dict[str, Any]:
    """Load a file written by :func:`atomic_save`, checking its kind and version.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when the file is not a dimalib ``kind`` file, is corrupt, or has another version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no such file {str(path)!r}")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises several types for a damaged file
        raise ValueError(f"path: {str(path)!r} is not a readable dimalib file ({err})") from err
    if not isinstance(blob, dict) or blob.get("dimalib_kind") != kind:
        found = blob.get("dimalib_kind") if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(
            f"path: expected a dimalib {kind!r} file, received {found!r} in {str(path)!r}"
        )
    if blob.get("dimalib_version") != version:
        raise ValueError(
            f"path: expected {kind} format version {version}, received "
            f"{blob.get('dimalib_version')!r} in {str(path)!r}"
        )
    return blob


def restore_fields(obj: Any, state: dict[str, Any], legacy: dict[str, Any] | None = None) -> None:
    """``__setstate__`` of a frozen dataclass that may come from a file written before some of
    its fields existed: every field the file lacks takes ``legacy[name]`` (the behaviour the old
    version had) or else the field's default, then the file's values are applied as they are.
    """
    import dataclasses

    legacy = legacy or {}
    for f in dataclasses.fields(obj):
        if f.name in state:
            continue
        if f.name in legacy:
            value = legacy[f.name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            raise ValueError(f"state: a stored {type(obj).__name__} lacks the field {f.name!r}")
        object.__setattr__(obj, f.name, value)
    for name, value in state.items():
        object.__setattr__(obj, name, value)
