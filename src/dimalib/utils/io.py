"""Crash-safe, versioned, checksummed files: write to a temporary file, then rename over the target.

File layout (format 1)::

    DIMALIB-FILE 1\n
    {"kind": ..., "version": ..., "sha256": ..., "bytes": N}\n
    <N bytes: torch.save of the payload, which also holds the kind and version>

:func:`load_versioned` verifies the length and the SHA-256 of the payload before unpickling
anything, so a damaged file (flipped bytes, a cut-off write, a file of another program) is
refused with an error that names it; nothing reads it half. Files written by dimalib before this
layout (a bare ``torch.save``) still load, without the checksum.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "atomic_save",
    "atomic_write_bytes",
    "file_digest",
    "fsync_dir",
    "load_versioned",
    "restore_fields",
]

logger = logging.getLogger(__name__)

MAGIC = b"DIMALIB-FILE 1\n"


def atomic_write_bytes(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, flushed and
    fsynced, then renamed over ``path``. A crash leaves the old file or the new one.

    The file gets the permissions of an ordinary ``open(path, "wb")`` (``0o666`` minus the
    process umask, applied by the OS: the umask is never read or changed here).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)  # the rename itself survives a power loss
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # e.g. Windows, some network file systems
        pass
    finally:
        os.close(fd)


def atomic_save(
    payload: dict[str, Any], path: str | os.PathLike[str], *, kind: str, version: int
) -> Path:
    """Save ``payload`` with ``torch.save`` atomically, tagged with ``kind`` and ``version`` and
    checksummed (see the module docstring)."""
    buf = io.BytesIO()
    torch.save({"dimalib_kind": kind, "dimalib_version": version, **payload}, buf)
    body = buf.getvalue()
    digest = hashlib.sha256(body).hexdigest()
    header = {"kind": kind, "version": version, "sha256": digest, "bytes": len(body)}
    return atomic_write_bytes(MAGIC + json.dumps(header).encode() + b"\n" + body, path)


_HEADER_KEYS = {"kind", "version", "sha256", "bytes"}


def file_digest(path: str | os.PathLike[str]) -> str:
    """The payload SHA-256 that the header of the dimalib file ``path`` states (the payload is
    not read; :func:`load_versioned` verifies it). Raises ``ValueError`` for other files."""
    with open(path, "rb") as f:
        magic, line = f.read(len(MAGIC)), f.readline(4096)
    try:
        if magic != MAGIC:
            raise ValueError("no dimalib header")
        return str(json.loads(line)["sha256"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"path: {str(path)!r} is not a readable dimalib file ({err})") from err


def _payload(path: Path, kind: str) -> tuple[bytes, int | None]:
    """The verified payload bytes of ``path`` (or the whole file for the legacy layout) and the
    version its header states (None for the legacy layout)."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        if data.startswith(b"PK\x03\x04"):  # a bare torch.save: dimalib's layout before format 1
            logger.warning(
                "%s has no checksum (an older dimalib file); loading it unverified", path
            )
            return data, None
        raise ValueError(
            f"path: {str(path)!r} is not a readable dimalib file (no dimalib header; damaged or "
            "written by another program)"
        )
    end = data.find(b"\n", len(MAGIC))
    try:
        header = json.loads(data[len(MAGIC) : end])
        if not isinstance(header, dict) or set(header) != _HEADER_KEYS:
            raise ValueError(f"keys {sorted(header) if isinstance(header, dict) else header}")
        expected_len, expected_sha = int(header["bytes"]), str(header["sha256"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"path: {str(path)!r} is damaged: unreadable header ({err})") from err
    body = data[end + 1 :]
    if len(body) != expected_len:
        raise ValueError(
            f"path: {str(path)!r} is damaged: expected {expected_len} payload bytes, received "
            f"{len(body)} (cut off or appended to)"
        )
    digest = hashlib.sha256(body).hexdigest()
    if digest != expected_sha:
        raise ValueError(
            f"path: {str(path)!r} is damaged: checksum mismatch (expected sha256 {expected_sha}, "
            f"received {digest})"
        )
    if header.get("kind") != kind:
        raise ValueError(
            f"path: expected a dimalib {kind!r} file, received {header.get('kind')!r} in "
            f"{str(path)!r}"
        )
    return body, header["version"]


def load_versioned(
    path: str | os.PathLike[str],
    *,
    kind: str,
    version: int | tuple[int, ...],
    map_location: str | torch.device | None = "cpu",
) -> dict[str, Any]:
    """Load a file written by :func:`atomic_save`, checking its checksum, kind and version
    (``version``: the one accepted, or a tuple of the readable ones).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when the file is damaged (checksum or length), is not a dimalib ``kind``
            file, or has another version; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no such file {str(path)!r}")
    body, header_version = _payload(path, kind)
    try:
        blob = torch.load(io.BytesIO(body), map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises several types for a damaged file
        raise ValueError(f"path: {str(path)!r} is not a readable dimalib file ({err})") from err
    if not isinstance(blob, dict) or blob.get("dimalib_kind") != kind:
        found = blob.get("dimalib_kind") if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(
            f"path: expected a dimalib {kind!r} file, received {found!r} in {str(path)!r}"
        )
    if header_version is not None and header_version != blob.get("dimalib_version"):
        raise ValueError(
            f"path: {str(path)!r} is damaged: its header says version {header_version!r}, its "
            f"payload {blob.get('dimalib_version')!r}"
        )
    accepted = (version,) if isinstance(version, int) else tuple(version)
    if blob.get("dimalib_version") not in accepted:
        wanted = " or ".join(str(v) for v in accepted)
        raise ValueError(
            f"path: expected {kind} format version {wanted}, received "
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
