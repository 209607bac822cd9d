"""The trainer's checkpoint file: its format, and the plumbing of saving and resuming a run.

A checkpoint is one crash-safe versioned file (:func:`~dimalib.utils.io.atomic_save`, kind
:data:`CHECKPOINT_KIND`) holding a dict with the keys :data:`REQUIRED_KEYS`, plus the replay
buffer's incremental block files in the folder ``<path>.buffer/`` beside it
(:class:`~dimalib.data.buffer_store.BufferStore`). Format versions:

* 2 (written): ``"buffer"`` is the manifest of the block files, with ``"store"`` naming the folder;
* 1 (still read): ``"buffer"`` is the whole ``ReplayBuffer.state_dict()`` inline.

The learner's state (``Learner.state_dict()``) lives under :data:`LEARNER_KEY` (``"mappo"``,
whatever the learner: the name dates from when MAPPO was the only one). What goes into the
other keys is :class:`~dimalib.training.Trainer`'s business (``Trainer.state_dict``).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dimalib.data.buffer import ReplayBuffer
from dimalib.data.buffer_store import BufferStore
from dimalib.spec import MultiAgentSpec
from dimalib.training.config import TrainerConfig
from dimalib.utils.io import atomic_save, load_versioned

__all__ = [
    "BUFFER_SUFFIX",
    "CHECKPOINT_KIND",
    "CHECKPOINT_VERSION",
    "LEARNER_KEY",
    "READABLE_VERSIONS",
    "REQUIRED_KEYS",
    "buffer_folder",
    "global_rng_state",
    "load_buffer",
    "read_checkpoint",
    "set_global_rng_state",
    "write_checkpoint",
]

CHECKPOINT_KIND = "dima_trainer_checkpoint"
CHECKPOINT_VERSION = 2  # 2: the replay buffer in incremental block files beside the checkpoint
READABLE_VERSIONS = (1, 2)  # 1: the whole buffer inside the checkpoint
BUFFER_SUFFIX = ".buffer"
LEARNER_KEY = "mappo"
REQUIRED_KEYS = (
    "env",
    "seed",
    "device",
    "config",
    "spec",
    "counters",
    "world_model",
    "wm_optimizers",
    LEARNER_KEY,
    "buffer",
    "rng",
    "history",
)


def buffer_folder(path: Path) -> Path:
    """The folder of the replay buffer's block files of the checkpoint ``path``."""
    return path.with_name(path.name + BUFFER_SUFFIX)


def write_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` atomically (temp file, fsync, rename) as the current format version."""
    return atomic_save(state, path, kind=CHECKPOINT_KIND, version=CHECKPOINT_VERSION)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint's dict (tensors on the CPU), with its keys and its config checked.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a dimalib trainer checkpoint of a readable version, corrupt, incomplete,
            or its ``"config"`` is not a :class:`~dimalib.training.config.TrainerConfig`.
    """
    blob = load_versioned(path, kind=CHECKPOINT_KIND, version=READABLE_VERSIONS, map_location="cpu")
    missing = [k for k in REQUIRED_KEYS if k not in blob]
    if missing:
        raise ValueError(f"path: {str(path)!r} is an incomplete trainer checkpoint: {missing}")
    config = blob["config"]
    if not isinstance(config, TrainerConfig):
        raise ValueError(
            f"path: {str(path)!r} holds a {type(config).__name__} config, not a TrainerConfig"
        )
    return blob


def load_buffer(
    saved: dict[str, Any], path: Path, *, device: torch.device, spec: MultiAgentSpec
) -> tuple[ReplayBuffer, BufferStore | None]:
    """The replay buffer of a checkpoint's ``"buffer"`` entry, and the store that continues
    saving it incrementally (None for a version-1 checkpoint, whose buffer is inline).

    The block files are read from the folder named after *this* ``path`` (a copied or renamed
    checkpoint reads its own copy of the blocks, never the folder of the run it was copied from).

    Raises:
        ValueError: the folder is missing, or a block file is missing or damaged.
    """
    if "store" in saved:  # incremental block files beside the checkpoint
        folder = buffer_folder(path)
        if not folder.is_dir():
            raise ValueError(
                f"path: the replay buffer of {str(path)!r} lives in {str(folder)!r}, which "
                f"does not exist (it was written as {saved['store']!r}; copy or move the "
                "folder together with the checkpoint)"
            )
        return BufferStore.load(folder, saved, device=device, spec=spec)
    # a checkpoint written before incremental buffers: the whole buffer inline
    return ReplayBuffer.from_state_dict(saved, device=device, spec=spec), None


def global_rng_state() -> dict[str, Any]:
    """The global torch (CPU and every CUDA device), numpy and ``random`` RNG states."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_global_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`global_rng_state` output. CUDA states are skipped when this machine has no
    CUDA or another number of GPUs (those RNGs keep their fresh seeds)."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):  # another GPU count: keep the fresh seeds
            torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
