"""Checksummed, versioned files: every damaged file is detected and left as it was."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dimalib.data import ReplayBuffer
from dimalib.envs.toy import CoupledPointMasses
from dimalib.utils.io import MAGIC, atomic_save, load_versioned

PAYLOAD = {"weights": torch.arange(200, dtype=torch.float32).reshape(20, 10), "name": "x"}


def _saved(tmp_path: Path) -> tuple[Path, bytes]:
    path = atomic_save(PAYLOAD, tmp_path / "file.pt", kind="thing", version=3)
    return path, path.read_bytes()


def test_round_trip_and_the_layout(tmp_path: Path) -> None:
    path, data = _saved(tmp_path)
    assert data.startswith(MAGIC)
    blob = load_versioned(path, kind="thing", version=3)
    assert torch.equal(blob["weights"], PAYLOAD["weights"]) and blob["name"] == "x"
    with pytest.raises(ValueError, match="expected a dimalib 'other' file"):
        load_versioned(path, kind="other", version=3)
    with pytest.raises(ValueError, match="expected thing format version 4, received 3"):
        load_versioned(path, kind="thing", version=4)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_flipped_bytes_are_detected_and_the_file_is_left_alone(
    tmp_path: Path, data: st.DataObject
) -> None:
    path, original = _saved(tmp_path)
    damaged = bytearray(original)
    offsets = data.draw(
        st.lists(st.integers(0, len(original) - 1), min_size=1, max_size=4, unique=True)
    )
    for offset in offsets:
        damaged[offset] ^= data.draw(st.integers(1, 255))
    path.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=r"path: .*file\.pt"):
        load_versioned(path, kind="thing", version=3)
    assert path.read_bytes() == bytes(damaged)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.floats(0.0, 0.999))
def test_truncated_files_are_detected(tmp_path: Path, cut: float) -> None:
    path, original = _saved(tmp_path)
    path.write_bytes(original[: int(cut * len(original))])
    with pytest.raises(ValueError, match=r"path: .*file\.pt"):
        load_versioned(path, kind="thing", version=3)


def test_appended_bytes_are_detected(tmp_path: Path) -> None:
    path, original = _saved(tmp_path)
    path.write_bytes(original + b"\x00")
    with pytest.raises(ValueError, match=r"expected .* payload bytes"):
        load_versioned(path, kind="thing", version=3)


def test_files_of_the_older_layout_still_load(tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"dimalib_kind": "thing", "dimalib_version": 3, **PAYLOAD}, buf)
    path = tmp_path / "old.pt"
    path.write_bytes(buf.getvalue())
    assert torch.equal(load_versioned(path, kind="thing", version=3)["weights"], PAYLOAD["weights"])


def test_a_damaged_replay_buffer_file_is_refused(tmp_path: Path) -> None:
    env = CoupledPointMasses(n_agents=2, action_dims=(1, 2))
    buf = ReplayBuffer(env.spec, capacity=50)
    s = env.initial_state(1, generator=torch.Generator().manual_seed(0))
    a = torch.zeros(1, env.spec.joint_action_dim)
    s2, r, term = env.batched_step(s, a)
    buf.add(s, env.observe(s), a, r, term, torch.zeros(1, dtype=torch.bool), s2, env.observe(s2))
    path = buf.save(tmp_path / "buffer.pt")
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x40  # a flipped bit inside the stored tensors
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged: checksum mismatch"):
        ReplayBuffer.load(path)


def test_atomic_write_gets_ordinary_file_permissions(tmp_path: Path) -> None:
    """Like ``open(path, "wb")``: 0o666 minus the umask (mkstemp's 0o600 would hide the file)."""
    import os

    from dimalib.utils.io import atomic_write_bytes

    old = os.umask(0o027)
    try:
        out = atomic_write_bytes(b"x", tmp_path / "a.bin")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o640
    assert out.read_bytes() == b"x" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]
