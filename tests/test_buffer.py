"""ReplayBuffer: episode boundaries, masks, wrap-around, persistence, input errors.

Every row written carries a unique id ``g`` (in ``state[0]``, ``obs[0]``, ``action[0]``, ``reward``;
``next_state[0] = next_obs[0] = g + 0.5``), and a plain-Python reference model records each
stream's rows and episodes, so every sampled value can be checked against what must be there.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dimalib.data.buffer import DEFAULT_CAPACITY, ReplayBuffer
from dimalib.spec import MultiAgentSpec
from dimalib.utils.io import atomic_save

SPEC = MultiAgentSpec(("a", "b"), obs_dims=(2, 1), action_dims=(1, 2), state_dim=3)
S, OBS, A = SPEC.state_dim, SPEC.joint_obs_dim, SPEC.joint_action_dim


@dataclasses.dataclass
class Row:
    id: int
    episode: int
    term: bool
    trunc: bool

    @property
    def done(self) -> bool:
        return self.term or self.trunc


class Reference:
    """What the buffer must hold: every row ever written, per stream, with its episode."""

    def __init__(self, num_streams: int, stream_capacity: int) -> None:
        self.rows: list[list[Row]] = [[] for _ in range(num_streams)]
        self.episode = list(range(num_streams))
        self.next_episode = num_streams
        self.next_id = 0
        self.c = stream_capacity

    def write(self, stream: int, term: bool, trunc: bool) -> int:
        g = self.next_id
        self.next_id += 1
        self.rows[stream].append(Row(g, self.episode[stream], term, trunc))
        if term or trunc:
            self.new_episode(stream)
        return g

    def new_episode(self, stream: int) -> None:
        self.episode[stream] = self.next_episode
        self.next_episode += 1

    def end(self, stream: int) -> None:
        rows = self.rows[stream]
        if rows and not rows[-1].done:
            rows[-1].trunc = True
            self.new_episode(stream)

    def surviving(self, stream: int) -> list[Row]:
        return self.rows[stream][-self.c :]

    def locate(self, g: int) -> tuple[int, int]:
        """(stream, index in the stream's full history) of row id ``g``; it must survive."""
        for s, rows in enumerate(self.rows):
            for k, r in enumerate(rows):
                if r.id == g:
                    assert k >= len(rows) - self.c, f"row {g} was overwritten but sampled"
                    return s, k
        raise AssertionError(f"row id {g} was never written")

    def same_episode_at(self, stream: int, k: int, d: int) -> bool:
        """Whether history index ``k + d`` is stored and in the episode of index ``k``."""
        rows = self.rows[stream]
        j = k + d
        if j < max(0, len(rows) - self.c) or j >= len(rows):
            return False
        return rows[j].episode == rows[k].episode

    def is_final(self, stream: int, k: int) -> bool:
        rows = self.rows[stream]
        return rows[k].done or k == len(rows) - 1


def make_rows(ids: list[int], term: list[bool], trunc: list[bool]) -> dict[str, torch.Tensor]:
    g = torch.tensor(ids, dtype=torch.float32)
    n = len(ids)

    def lead(value: torch.Tensor, dim: int) -> torch.Tensor:
        out = torch.zeros(n, dim)
        out[:, 0] = value
        out[:, 1:] = 0.25  # non-zero filler: padding must be zero, stored rows are not
        return out

    return {
        "state": lead(g, S),
        "obs": lead(g, OBS),
        "action": lead(g, A),
        "reward": g.clone(),
        "terminated": torch.tensor(term, dtype=torch.bool).reshape(n),
        "truncated": torch.tensor(trunc, dtype=torch.bool).reshape(n),
        "next_state": lead(g + 0.5, S),
        "next_obs": lead(g + 0.5, OBS),
    }


flag = st.sampled_from([(False, False)] * 6 + [(True, False), (False, True), (True, True)])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, int, list[Any]]:
    num_streams = draw(st.integers(1, 3))
    stream_capacity = draw(st.integers(1, 12))
    ops: list[Any] = []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["add", "add", "add", "extend", "end"]))
        if kind == "add":
            ops.append(("add", [draw(flag) for _ in range(num_streams)]))
        elif kind == "extend":
            stream = draw(st.integers(0, num_streams - 1))
            ops.append(("extend", stream, draw(st.lists(flag, max_size=2 * stream_capacity + 3))))
        else:
            streams = draw(st.lists(st.integers(0, num_streams - 1), max_size=num_streams))
            ops.append(("end", None if draw(st.booleans()) else streams))
    return num_streams, stream_capacity, ops


def apply(buf: ReplayBuffer, ref: Reference, ops: list[Any]) -> None:
    for op in ops:
        if op[0] == "add":
            ids = [ref.write(s, t, u) for s, (t, u) in enumerate(op[1])]
            rows = make_rows(ids, [t for t, _ in op[1]], [u for _, u in op[1]])
            buf.add(**rows)
        elif op[0] == "extend":
            _, stream, flags = op
            ids = [ref.write(stream, t, u) for t, u in flags]
            rows = make_rows(ids, [t for t, _ in flags], [u for _, u in flags])
            buf.extend(**rows, stream=stream)
        else:
            streams = op[1]
            for s in range(buf.num_streams) if streams is None else streams:
                ref.end(s)
            buf.end_episodes(streams)


def build(num_streams: int, stream_capacity: int, ops: list[Any]) -> tuple[ReplayBuffer, Reference]:
    buf = ReplayBuffer(SPEC, capacity=num_streams * stream_capacity, num_streams=num_streams)
    ref = Reference(num_streams, stream_capacity)
    apply(buf, ref, ops)
    return buf, ref


def ids_of(x: torch.Tensor) -> list[int]:
    return [int(v) for v in x.tolist()]


def check_past_window(
    ref: Reference, states: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor
) -> list[tuple[int, int]]:
    """Check ``[B, L, ...]`` windows ending at the anchor (last entry); return anchors' locations."""
    b, length = mask.shape
    anchors = []
    assert mask[:, -1].all(), "the anchor row is always valid"
    for i in range(b):
        s, k = ref.locate(int(states[i, -1, 0]))
        anchors.append((s, k))
        for pos in range(length):
            d = pos - (length - 1)  # offset from the anchor, <= 0
            valid = ref.same_episode_at(s, k, d)
            assert bool(mask[i, pos]) == valid, (i, pos, s, k, d)
            if valid:
                expected = ref.rows[s][k + d].id
                assert states[i, pos, 0] == expected and (states[i, pos, 1:] == 0.25).all()
                if pos < actions.shape[1]:
                    assert actions[i, pos, 0] == expected
            else:
                assert (states[i, pos] == 0).all()
                if pos < actions.shape[1]:
                    assert (actions[i, pos] == 0).all()
    return anchors


def check_against_reference(
    buf: ReplayBuffer, ref: Reference, seed: int, context: int = 3, horizon: int = 5
) -> None:
    """Stored rows, bookkeeping and every sampler's output agree with the reference model."""
    num_streams = buf.num_streams

    # only the oldest rows of each stream are lost, and len counts what is kept
    for s in range(num_streams):
        kept = ref.surviving(s)
        data = buf.stream_data(s)
        assert ids_of(data["reward"]) == [r.id for r in kept]
        assert data["terminated"].tolist() == [r.term for r in kept]
        assert data["truncated"].tolist() == [r.trunc for r in kept]
        # buffer episode ids partition the rows exactly as the reference episodes do
        eid = data["episode_id"].tolist()
        for j in range(1, len(kept)):
            assert (eid[j] == eid[j - 1]) == (kept[j].episode == kept[j - 1].episode)
    assert len(buf) == sum(len(ref.surviving(s)) for s in range(num_streams))
    assert buf.stream_sizes == tuple(len(ref.surviving(s)) for s in range(num_streams))
    all_eids = [buf.stream_data(s)["episode_id"] for s in range(num_streams)]
    for s1 in range(num_streams):
        for s2 in range(s1 + 1, num_streams):
            assert not set(all_eids[s1].tolist()) & set(all_eids[s2].tolist())

    if len(buf) == 0:
        with pytest.raises(ValueError, match="empty"):
            buf.sample_dynamics(4)
        return
    gen = torch.Generator().manual_seed(seed)
    batch = 64

    dyn = buf.sample_dynamics(batch, context=context, generator=gen)
    assert dyn["states"].shape == (batch, context, S) and dyn["actions"].shape == (
        batch,
        context,
        A,
    )
    assert dyn["mask"].dtype == torch.bool and dyn["next_state"].shape == (batch, S)
    for i, (s, k) in enumerate(check_past_window(ref, dyn["states"], dyn["actions"], dyn["mask"])):
        assert dyn["next_state"][i, 0] == ref.rows[s][k].id + 0.5

    start = buf.sample_start_contexts(batch, context=context, generator=gen)
    assert start["actions"].shape == (batch, context - 1, A) and start["obs"].shape == (batch, OBS)
    for i, (s, k) in enumerate(
        check_past_window(ref, start["states"], start["actions"], start["mask"])
    ):
        assert start["obs"][i, 0] == ref.rows[s][k].id

    # recent starts: the same windows, anchored only in each stream's `recent` newest rows
    recent = 1 + seed % 4
    late = buf.sample_start_contexts(batch, context=context, generator=gen, recent=recent)
    for s, k in check_past_window(ref, late["states"], late["actions"], late["mask"]):
        assert k >= len(ref.rows[s]) - recent, (s, k, recent)

    seq = buf.sample_sequences(batch, length=horizon, generator=gen)
    assert seq["states"].shape == (batch, horizon, S) and seq["rewards"].shape == (batch, horizon)
    assert seq["mask"][:, 0].all()
    for i in range(batch):
        s, k = ref.locate(int(seq["states"][i, 0, 0]))
        for d in range(horizon):
            valid = ref.same_episode_at(s, k, d)
            assert bool(seq["mask"][i, d]) == valid, (i, d)
            if valid:
                row = ref.rows[s][k + d]
                assert seq["states"][i, d, 0] == row.id and seq["actions"][i, d, 0] == row.id
                assert seq["rewards"][i, d] == row.id
                assert bool(seq["terminated"][i, d]) == row.term
            else:
                assert (seq["states"][i, d] == 0).all() and (seq["actions"][i, d] == 0).all()
                assert seq["rewards"][i, d] == 0 and not seq["terminated"][i, d]

    pairs = buf.sample_state_obs(batch, generator=gen)
    assert torch.equal(pairs["state"][:, 0], pairs["obs"][:, 0])
    for value in pairs["state"][:, 0].tolist():
        s, k = ref.locate(int(value))
        if value != int(value):  # a next_state: only where it is stored nowhere else
            assert ref.is_final(s, k)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(1, 6))
def test_windows_match_reference(
    scenario: tuple[int, int, list[Any]], seed: int, context: int, horizon: int
) -> None:
    num_streams, c, ops = scenario
    buf, ref = build(num_streams, c, ops)
    check_against_reference(buf, ref, seed, context, horizon)


def test_sampling_is_uniform_over_transitions() -> None:
    """Streams of different fill levels: every stored row equally likely."""
    buf, _ = build(
        2, 10, [("extend", 0, [(False, False)] * 3), ("extend", 1, [(False, False)] * 7)]
    )
    gen = torch.Generator().manual_seed(0)
    n = 50_000
    anchors = buf.sample_dynamics(n, generator=gen)["states"][:, -1, 0].long()
    counts = torch.bincount(anchors, minlength=10).float()
    assert counts.shape == (10,)
    assert ((counts - n / 10).abs() < 0.05 * n / 10).all(), counts


def test_recent_starts_are_uniform_over_each_streams_newest_rows() -> None:
    """``recent=k``: the union of every stream's k newest rows (all of a shorter stream),
    each row equally likely; the argument is checked."""
    buf, _ = build(
        2, 10, [("extend", 0, [(False, False)] * 3), ("extend", 1, [(False, False)] * 7)]
    )  # stream 0 holds ids 0-2, stream 1 ids 3-9
    gen = torch.Generator().manual_seed(0)
    n = 40_000
    ids = buf.sample_start_contexts(n, context=1, generator=gen, recent=4)["states"][:, -1, 0]
    uniq, counts = torch.unique(ids.long(), return_counts=True)
    assert uniq.tolist() == [0, 1, 2, 6, 7, 8, 9]  # 3 of stream 0 (all), the 4 newest of 1
    assert ((counts.float() - n / 7).abs() < 0.05 * n / 7).all(), counts
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="recent: expected an integer >= 1"):
            buf.sample_start_contexts(4, recent=bad)  # type: ignore[arg-type]


def test_state_obs_pool_includes_final_states_once() -> None:
    # stream 0: episode of 3 rows (terminated) then 2 rows of a running episode
    flags = [(False, False), (False, False), (True, False), (False, False), (False, False)]
    buf, _ = build(1, 10, [("extend", 0, flags)])
    gen = torch.Generator().manual_seed(1)
    n = 70_000
    values = buf.sample_state_obs(n, generator=gen)["state"][:, 0]
    # pool: states 0..4 plus next states 2.5 (terminal) and 4.5 (newest row): 7 entries
    expected = [0.0, 1.0, 2.0, 2.5, 3.0, 4.0, 4.5]
    uniq, counts = torch.unique(values, return_counts=True)
    assert uniq.tolist() == expected
    assert ((counts.float() - n / 7).abs() < 0.05 * n / 7).all(), counts
    plain = buf.sample_state_obs(1000, generator=gen, include_final=False)["state"][:, 0]
    assert set(plain.tolist()) == {0.0, 1.0, 2.0, 3.0, 4.0}


def test_short_episodes_usable_in_sequences() -> None:
    # episodes of lengths 1, 2 and 3, all shorter than H = 15
    flags = [(True, False), (False, False), (False, True), (False, False), (False, False)]
    flags += [(True, False)]
    buf, _ = build(1, 100, [("extend", 0, flags)])
    seq = buf.sample_sequences(500, length=15, generator=torch.Generator().manual_seed(0))
    lengths = seq["mask"].sum(1)
    starts = seq["states"][:, 0, 0].long()
    expected = torch.tensor([1, 2, 1, 3, 2, 1])[starts]
    assert torch.equal(lengths, expected)
    # a sample starting at an episode's first row covers the whole episode
    assert set(starts.tolist()) == set(range(6))


def test_wraparound_partial_episode_starts_at_oldest_row() -> None:
    # one long episode of 10 rows in a stream of capacity 4: rows 6..9 survive
    buf, _ = build(1, 4, [("extend", 0, [(False, False)] * 10)])
    assert len(buf) == 4 and buf.capacity == 4
    out = buf.sample_dynamics(400, context=3, generator=torch.Generator().manual_seed(0))
    anchor = out["states"][:, -1, 0]
    assert set(anchor.tolist()) == {6.0, 7.0, 8.0, 9.0}
    expected_valid = torch.stack([anchor - 2 >= 6, anchor - 1 >= 6, anchor >= 6], 1)
    assert torch.equal(out["mask"], expected_valid)
    # consecutive values where valid
    prev = out["states"][:, :, 0]
    assert torch.equal(
        prev[out["mask"]], (anchor[:, None] + torch.tensor([-2.0, -1, 0]))[out["mask"]]
    )


def test_capacity_rounds_down_per_stream_and_default() -> None:
    buf = ReplayBuffer(SPEC, capacity=10, num_streams=3)
    assert buf.stream_capacity == 3 and buf.capacity == 9
    assert ReplayBuffer(SPEC, num_streams=4).capacity == DEFAULT_CAPACITY == 250_000
    big = ReplayBuffer(SPEC, capacity=1000)
    assert big.nbytes == 1000 * (4 * (2 * S + 2 * OBS + A + 1) + 2 + 8)


# ------------------------------------------------------------------------ save / load


@settings(max_examples=40, deadline=None)
@given(scenarios(), scenarios(), st.integers(0, 2**31 - 1))
def test_save_load_round_trip(
    first: tuple[int, int, list[Any]], more: tuple[int, int, list[Any]], seed: int
) -> None:
    import tempfile

    num_streams, c, ops = first
    buf, ref = build(num_streams, c, ops)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sub" / "buffer.pt"
        buf.save(path)
        loaded = ReplayBuffer.load(path, spec=SPEC)
    a, b = buf.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        if key == "data":
            assert a[key].keys() == b[key].keys()
            for name in a[key]:
                assert torch.equal(a[key][name], b[key][name]), name
        else:
            assert a[key] == b[key], key
    # the copy behaves identically afterwards: same writes, same samples
    extra = [op for op in more[2] if op[0] != "add" or len(op[1]) == num_streams]
    extra = [op for op in extra if op[0] != "extend" or op[1] < num_streams]
    extra = [
        op if op[0] != "end" or op[1] is None else ("end", [s for s in op[1] if s < num_streams])
        for op in extra
    ]
    ref2 = copy.deepcopy(ref)
    apply(buf, ref, extra)
    apply(loaded, ref2, extra)
    check_against_reference(loaded, ref2, seed)
    if len(buf) == 0:
        return
    for sampler in ("sample_dynamics", "sample_sequences", "sample_start_contexts"):
        out1 = getattr(buf, sampler)(32, generator=torch.Generator().manual_seed(seed))
        out2 = getattr(loaded, sampler)(32, generator=torch.Generator().manual_seed(seed))
        for key in out1:
            assert torch.equal(out1[key], out2[key]), (sampler, key)
    out1 = buf.sample_state_obs(32, generator=torch.Generator().manual_seed(seed))
    out2 = loaded.sample_state_obs(32, generator=torch.Generator().manual_seed(seed))
    assert all(torch.equal(out1[k], out2[k]) for k in out1)


def test_load_checks_spec_kind_and_content(tmp_path: Path) -> None:
    buf, _ = build(2, 5, [("add", [(False, False), (True, False)])])
    path = buf.save(tmp_path / "buf.pt")
    other = MultiAgentSpec(("a", "b"), obs_dims=(2, 1), action_dims=(1, 2), state_dim=4)
    with pytest.raises(ValueError, match="spec"):
        ReplayBuffer.load(path, spec=other)
    atomic_save({"x": 1}, tmp_path / "other.pt", kind="checkpoint", version=1)
    with pytest.raises(ValueError, match="replay_buffer"):
        ReplayBuffer.load(tmp_path / "other.pt")
    atomic_save({"x": 1}, tmp_path / "v2.pt", kind="replay_buffer", version=2)
    with pytest.raises(ValueError, match="version"):
        ReplayBuffer.load(tmp_path / "v2.pt")
    bad = buf.state_dict()
    bad["data"]["state"] = bad["data"]["state"][:, :, :2]
    atomic_save(bad, tmp_path / "bad.pt", kind="replay_buffer", version=1)
    with pytest.raises(ValueError, match="state"):
        ReplayBuffer.load(tmp_path / "bad.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="path"):
        ReplayBuffer.load(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        ReplayBuffer.load(tmp_path / "missing.pt")


# ------------------------------------------------------------------------- bad input


def good_rows(n: int = 2) -> dict[str, Any]:
    return make_rows(list(range(n)), [False] * n, [False] * n)


@pytest.mark.parametrize(
    "name",
    ["state", "obs", "action", "reward", "terminated", "truncated", "next_state", "next_obs"],
)
def test_add_wrong_shape_names_argument(name: str) -> None:
    buf = ReplayBuffer(SPEC, capacity=10, num_streams=2)
    rows = good_rows()
    rows[name] = torch.cat([rows[name], rows[name][:1]])  # N + 1 rows
    with pytest.raises(ValueError, match=rf"^{name}: expected shape \(2"):
        buf.add(**rows)
    assert len(buf) == 0


@pytest.mark.parametrize("name", ["state", "obs", "action", "reward", "next_state", "next_obs"])
def test_add_non_finite_names_argument(name: str) -> None:
    buf = ReplayBuffer(SPEC, capacity=10, num_streams=2)
    rows = good_rows()
    rows[name] = rows[name].clone()
    rows[name].view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match=rf"^{name}: expected finite values, received 1 NaN"):
        buf.add(**rows)
    rows[name].view(-1)[0] = float("inf")
    with pytest.raises(ValueError, match=rf"^{name}: .*1 inf"):
        buf.add(**rows)


def test_add_rejects_values_that_overflow_float32() -> None:
    buf = ReplayBuffer(SPEC, capacity=10, num_streams=2)
    rows = good_rows()
    rows["next_obs"] = rows["next_obs"].double()
    rows["next_obs"][1, 0] = 1e39  # finite in float64, inf once stored as float32
    with pytest.raises(
        ValueError, match=r"^next_obs: expected finite values, received 0 NaN and 1"
    ):
        buf.add(**rows)


def test_add_dtype_and_type_errors() -> None:
    buf = ReplayBuffer(SPEC, capacity=10, num_streams=2)
    rows = good_rows()
    rows["terminated"] = rows["terminated"].float()
    with pytest.raises(ValueError, match=r"^terminated: expected dtype torch.bool, received"):
        buf.add(**rows)
    rows = good_rows()
    rows["action"] = rows["action"].long()
    with pytest.raises(ValueError, match=r"^action: expected a floating point tensor"):
        buf.add(**rows)
    rows = good_rows()
    rows["obs"] = rows["obs"].tolist()
    with pytest.raises(ValueError, match=r"^obs: expected a torch.Tensor, received list"):
        buf.add(**rows)


def test_accepts_numpy_and_float64_stores_float32() -> None:
    buf = ReplayBuffer(SPEC, capacity=10, num_streams=2)
    rows = {k: v.numpy() for k, v in good_rows().items()}
    rows["state"] = rows["state"].astype(np.float64) + 1e-9
    buf.add(**rows)
    data = buf.stream_data(1)
    assert data["state"].dtype == torch.float32 and data["state"][0, 0] == 1.0


def test_extend_errors_and_arguments() -> None:
    buf = ReplayBuffer(SPEC, capacity=10, num_streams=2)
    rows = make_rows([0, 1, 2], [False] * 3, [False] * 3)
    with pytest.raises(ValueError, match=r"^stream: "):
        buf.extend(**rows, stream=2)
    rows["reward"] = rows["reward"][:2]
    with pytest.raises(ValueError, match=r"^reward: expected shape \(3\)"):
        buf.extend(**rows, stream=0)
    empty = make_rows([], [], [])
    buf.extend(**empty, stream=1)
    assert len(buf) == 0
    with pytest.raises(ValueError, match=r"^streams: "):
        buf.end_episodes([5])


def test_constructor_and_sampler_argument_errors() -> None:
    with pytest.raises(ValueError, match=r"^capacity: "):
        ReplayBuffer(SPEC, capacity=2, num_streams=3)
    with pytest.raises(ValueError, match=r"^num_streams: "):
        ReplayBuffer(SPEC, num_streams=0)
    with pytest.raises(ValueError, match=r"^spec: "):
        ReplayBuffer("spec")  # type: ignore[arg-type]
    buf, _ = build(1, 5, [("add", [(False, False)])])
    with pytest.raises(ValueError, match=r"^batch_size: "):
        buf.sample_dynamics(0)
    with pytest.raises(ValueError, match=r"^context: "):
        buf.sample_start_contexts(4, context=0)
    with pytest.raises(ValueError, match=r"^length: "):
        buf.sample_sequences(4, length=0)


def test_add_accepts_huge_finite_values_and_names_the_non_finite_field() -> None:
    # the combined finiteness check sums each field: a sum that overflows must not reject data
    buf = ReplayBuffer(SPEC, capacity=10, num_streams=2)
    big = torch.full((2, 3), 3e38)  # finite, but the sum overflows float32
    z = torch.zeros
    row = [
        big,
        z(2, 3),
        z(2, 3),
        z(2),
        z(2, dtype=torch.bool),
        z(2, dtype=torch.bool),
        big,
        z(2, 3),
    ]
    buf.add(*row)
    assert len(buf) == 2
    row[3] = torch.tensor([0.0, float("-inf")])
    with pytest.raises(ValueError, match="reward: expected finite values"):
        buf.add(*row)
    assert len(buf) == 2
