"""Incremental, crash-safe storage of a :class:`~dimalib.data.buffer.ReplayBuffer` in a folder.

A trainer checkpoint every epoch would rewrite the whole replay buffer each time (hundreds of MB
at the paper's 250k transitions). Instead the buffer is kept as blocks of
:data:`~dimalib.data.buffer.BLOCK_ROWS` ring positions (all streams), one file per block and
save generation::

    <folder>/block-00003-000017.dimalib   # block 3 as written by save generation 17

Each file is a versioned, checksummed dimalib file (:mod:`dimalib.utils.io`) and is never
overwritten. :meth:`BufferStore.save` writes only the blocks written to since the previous save
and returns a *manifest* (the buffer's counters plus, per block, its file name and payload
SHA-256) that the caller stores inside its own checkpoint. Once that checkpoint is in place,
:meth:`BufferStore.commit` deletes the files no manifest refers to any more. A crash at any
moment leaves the previous checkpoint and every file it refers to intact; :meth:`BufferStore.load`
rebuilds the buffer from a manifest and refuses a missing or different block file naming it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from dimalib.data.buffer import BLOCK_ROWS, ReplayBuffer
from dimalib.spec import MultiAgentSpec
from dimalib.utils.io import atomic_save, file_digest, fsync_dir, load_versioned

__all__ = ["BufferStore"]

_KIND, _VERSION, _FORMAT = "replay_buffer_block", 1, 1
_NAME = re.compile(r"block-(\d{5,})-(\d{6,})\.dimalib")


class BufferStore:
    """The block files of one replay buffer in ``folder`` (created on the first save)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._committed: dict[int, tuple[str, str]] = {}  # block -> (file name, sha256)
        self._prepared: tuple[dict[int, tuple[str, str]], list[int]] | None = None
        names = [_NAME.fullmatch(p.name) for p in self._files()]
        self._generation = max((int(m.group(2)) for m in names if m), default=0)

    def _files(self) -> list[Path]:
        return sorted(self.folder.glob("block-*.dimalib")) if self.folder.is_dir() else []

    def save(self, buffer: ReplayBuffer) -> dict[str, Any]:
        """Write the blocks of ``buffer`` that changed since the last :meth:`commit` (all of them
        the first time) and return the manifest to store in the checkpoint."""
        self.folder.mkdir(parents=True, exist_ok=True)
        n_blocks = buffer.num_blocks
        blocks = {k: v for k, v in self._committed.items() if k < n_blocks}
        todo = sorted(set(buffer.dirty_blocks()) | (set(range(n_blocks)) - set(blocks)))
        self._generation += 1
        for k in todo:
            path = self.folder / f"block-{k:05d}-{self._generation:06d}.dimalib"
            atomic_save({"block": k, "data": buffer.block(k)}, path, kind=_KIND, version=_VERSION)
            blocks[k] = (path.name, file_digest(path))
        fsync_dir(self.folder)  # the new blocks are on disk before a checkpoint names them
        self._prepared = (blocks, todo)
        return {
            "format": _FORMAT,
            "block_rows": BLOCK_ROWS,
            "bookkeeping": buffer.bookkeeping(),
            "blocks": {k: list(v) for k, v in sorted(blocks.items())},
        }

    def commit(self, buffer: ReplayBuffer) -> None:
        """The checkpoint holding the last :meth:`save`'s manifest is in place: mark its blocks
        clean in ``buffer`` and delete the block files it does not refer to."""
        if self._prepared is None:
            raise ValueError("commit: call save() first")
        blocks, written = self._prepared
        buffer.mark_clean(written)
        self._committed, self._prepared = blocks, None
        keep = {name for name, _ in blocks.values()}
        for path in self._files():
            if path.name not in keep:
                path.unlink(missing_ok=True)

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike[str],
        manifest: dict[str, Any],
        *,
        device: torch.device | str | None = None,
        spec: MultiAgentSpec | None = None,
    ) -> tuple[ReplayBuffer, BufferStore]:
        """The buffer a manifest describes, and a store that continues from it.

        Raises:
            ValueError: a malformed manifest, or a block file that is missing, damaged or not the
                one the manifest names (naming the file).
        """
        store = cls(folder)
        try:
            if manifest["format"] != _FORMAT or manifest["block_rows"] != BLOCK_ROWS:
                raise ValueError(f"format {manifest['format']}, {manifest['block_rows']} rows")
            state = dict(manifest["bookkeeping"])
            entries = {int(k): (str(v[0]), str(v[1])) for k, v in manifest["blocks"].items()}
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ValueError(f"manifest: not a replay-buffer manifest ({err!r})") from err
        if sorted(entries) != list(range(len(entries))):
            raise ValueError(
                f"manifest: expected blocks 0..{len(entries) - 1}, got {sorted(entries)}"
            )
        parts: list[dict[str, torch.Tensor]] = []
        for k in range(len(entries)):
            name, sha = entries[k]
            path = store.folder / name
            if not path.is_file():
                raise ValueError(f"path: {str(path)!r}: block {k} of the replay buffer is missing")
            if file_digest(path) != sha:
                raise ValueError(
                    f"path: {str(path)!r} is not the block {k} this checkpoint wrote "
                    "(checksum differs)"
                )
            blob = load_versioned(path, kind=_KIND, version=_VERSION, map_location="cpu")
            parts.append(blob["data"])
        if parts:
            state["data"] = {f: torch.cat([p[f] for p in parts], dim=1) for f in parts[0]}
        else:  # an empty buffer: zero rows of every field
            n, c = int(state["num_streams"]), int(state["stream_capacity"])
            empty = ReplayBuffer(MultiAgentSpec.from_dict(state["spec"]), n * c, num_streams=n)
            state["data"] = empty.state_dict()["data"]
        buffer = ReplayBuffer.from_state_dict(state, device=device, spec=spec)
        buffer.mark_clean(range(len(entries)))
        store._committed = entries
        return buffer, store
