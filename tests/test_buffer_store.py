"""BufferStore: incremental block files of a replay buffer, exact round trips, crash safety."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dimalib import MultiAgentSpec
from dimalib.data.buffer import BLOCK_ROWS, ReplayBuffer
from dimalib.data.buffer_store import BufferStore

SPEC = MultiAgentSpec(("a", "b"), (2, 1), (1, 1), state_dim=2)


def _rows(t: int, seed: int, done_every: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    done = torch.zeros(t, dtype=torch.bool)
    if done_every:
        done[done_every - 1 :: done_every] = True
    return {
        "state": torch.randn(t, 2, generator=g),
        "obs": torch.randn(t, 3, generator=g),
        "action": torch.rand(t, 2, generator=g),
        "reward": torch.randn(t, generator=g),
        "terminated": done,
        "truncated": torch.zeros(t, dtype=torch.bool),
        "next_state": torch.randn(t, 2, generator=g),
        "next_obs": torch.randn(t, 3, generator=g),
    }


def _assert_same(a: ReplayBuffer, b: ReplayBuffer) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert {k: v for k, v in sa.items() if k != "data"} == {
        k: v for k, v in sb.items() if k != "data"
    }
    for name, value in sa["data"].items():
        assert torch.equal(value, sb["data"][name]), name


def _blocks_changed(before: dict[str, torch.Tensor], buf: ReplayBuffer) -> set[int]:
    """Blocks whose content differs from ``before`` (brute force, for the dirty-set check)."""
    now = buf.state_dict()["data"]
    changed = set()
    for name, value in now.items():
        old = before.get(name)
        for k in range(buf.num_blocks):
            lo, hi = k * BLOCK_ROWS, (k + 1) * BLOCK_ROWS
            if (
                old is None
                or old.shape[1] < min(hi, value.shape[1])
                or not torch.equal(old[:, lo:hi], value[:, lo:hi])
            ):
                changed.add(k)
    return changed


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("extend"), st.integers(0, 1), st.integers(1, 2600)),
        st.tuples(st.just("add"), st.integers(1, 3), st.just(0)),
        st.tuples(st.just("end"), st.just(0), st.just(0)),
        st.tuples(st.just("save"), st.just(0), st.just(0)),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS, capacity=st.sampled_from([2 * 1500, 2 * 2048, 2 * 3000]))
def test_incremental_saves_reproduce_the_buffer_and_write_only_changed_blocks(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]], capacity: int
) -> None:
    folder = tmp_path_factory.mktemp("store")
    buf = ReplayBuffer(SPEC, capacity=capacity, num_streams=2)
    store = BufferStore(folder)
    saved: dict[str, torch.Tensor] = {}
    for i, (op, a, b) in enumerate([*ops, ("save", 0, 0)]):
        if op == "extend":
            buf.extend(**_rows(b, seed=i, done_every=7), stream=a)
        elif op == "add":
            for j in range(a):
                rows = _rows(2, seed=100 * i + j, done_every=2 if j % 2 else 0)
                buf.add(**rows)
        elif op == "end":
            buf.end_episodes()
        else:
            changed = _blocks_changed(saved, buf)
            assert changed <= set(buf.dirty_blocks()) | (set(range(buf.num_blocks)) - set(
                store._committed))  # fmt: skip
            before = {p.name for p in folder.glob("*.dimalib")}
            manifest = store.save(buf)
            written = {p.name for p in folder.glob("*.dimalib")} - before
            assert len(written) <= len(buf.dirty_blocks()) + buf.num_blocks - len(store._committed)
            store.commit(buf)
            assert buf.dirty_blocks() == []
            assert {p.name for p in folder.glob("*.dimalib")} == {
                v[0] for v in manifest["blocks"].values()
            }  # the old generations are gone
            loaded, _ = BufferStore.load(folder, manifest, spec=SPEC)
            _assert_same(loaded, buf)
            saved = {k: v.clone() for k, v in buf.state_dict()["data"].items()}


def test_a_second_save_writes_only_the_new_rows_block(tmp_path: Path) -> None:
    buf = ReplayBuffer(SPEC, capacity=10_000)
    buf.extend(**_rows(3 * BLOCK_ROWS + 10, seed=0))
    store = BufferStore(tmp_path)
    first = store.save(buf)
    store.commit(buf)
    assert len(first["blocks"]) == 4
    buf.extend(**_rows(5, seed=1))  # rows 3082..3086: block 3 only
    second = store.save(buf)
    store.commit(buf)
    changed = [k for k in first["blocks"] if first["blocks"][k] != second["blocks"][k]]
    assert changed == [3]
    loaded, _ = BufferStore.load(tmp_path, second)
    _assert_same(loaded, buf)


def test_a_crash_before_the_checkpoint_leaves_the_previous_manifest_loadable(
    tmp_path: Path,
) -> None:
    buf = ReplayBuffer(SPEC, capacity=10_000)
    buf.extend(**_rows(1500, seed=0))
    store = BufferStore(tmp_path)
    old = store.save(buf)
    store.commit(buf)
    snapshot = ReplayBuffer.from_state_dict(buf.state_dict())
    buf.extend(**_rows(800, seed=1))
    store.save(buf)  # new block files written; the "checkpoint" never lands, no commit
    loaded, _ = BufferStore.load(tmp_path, old)
    _assert_same(loaded, snapshot)
    # a new store on the same folder (after a restart) continues without clobbering old files
    again = BufferStore(tmp_path)
    assert again._generation == 2
    manifest = again.save(buf)
    again.commit(buf)
    _assert_same(BufferStore.load(tmp_path, manifest)[0], buf)


def test_missing_or_foreign_block_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    buf = ReplayBuffer(SPEC, capacity=10_000)
    buf.extend(**_rows(2100, seed=0))
    store = BufferStore(tmp_path)
    manifest = store.save(buf)
    store.commit(buf)
    name0, name1 = manifest["blocks"][0][0], manifest["blocks"][1][0]
    (tmp_path / name1).replace(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match=rf"{name1}'?: block 1 of the replay buffer is missing"):
        BufferStore.load(tmp_path, manifest)
    (tmp_path / "elsewhere").replace(tmp_path / name1)
    (tmp_path / name0).write_bytes((tmp_path / name1).read_bytes())  # another block's file
    with pytest.raises(ValueError, match=rf"{name0}.*is not the block 0 this checkpoint wrote"):
        BufferStore.load(tmp_path, manifest)
    with pytest.raises(ValueError, match="manifest: not a replay-buffer manifest"):
        BufferStore.load(tmp_path, {"format": 1})


def test_an_empty_buffer_round_trips(tmp_path: Path) -> None:
    buf = ReplayBuffer(SPEC, capacity=100, num_streams=2)
    store = BufferStore(tmp_path)
    manifest = store.save(buf)
    store.commit(buf)
    loaded, _ = BufferStore.load(tmp_path, manifest)
    assert len(loaded) == 0 and loaded.num_streams == 2
