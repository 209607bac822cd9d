"""Replay buffer of real-environment transitions with episode-aware, vectorised window sampling.

The buffer ``D`` of Algorithm 1 (paper App. F), capacity 2.5e5 transitions (Table 4).

Layout. ``num_streams`` independent ring buffers (one per parallel environment copy), each of
``capacity // num_streams`` rows, held as preallocated ``[num_streams, rows, ...]`` tensors on one
device. A **row** is one transition ``(s_t, o_t, a_t, r_t, terminated_t, truncated_t, s_{t+1},
o_{t+1})``: the step taken from ``state`` with ``action``. Every row also carries the id of its
episode (unique over the whole buffer), which is all the bookkeeping episode boundaries need.

Episodes. A stream's rows are written in time order; an episode ends at a row with ``terminated``
or ``truncated`` set, and the stream's next row begins a new episode. When a stream is full its
oldest row is overwritten; a partly overwritten episode keeps its surviving rows, and its start is
then the stream's oldest surviving row. Sampled windows are built from the *logical* position of a
row (0 = oldest surviving row of its stream) and its episode id, so they never cross an episode
boundary, never reach into another stream, and never straddle the overwrite point.

Sampling draws rows uniformly over every stored transition (all streams pooled) with one
``torch.randint`` and gathers windows with index arithmetic: no Python loop per sample, and no
host-device synchronisation on an accelerator.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import check_finite, check_tensor
from dimalib.utils.io import atomic_save, load_versioned

__all__ = ["DEFAULT_CAPACITY", "ReplayBuffer"]

logger = logging.getLogger(__name__)

DEFAULT_CAPACITY = 250_000
"""Buffer size in transitions (paper Table 4: 2.5e5)."""

_KIND = "replay_buffer"
_VERSION = 1

ArrayLike = torch.Tensor | np.ndarray[Any, Any]

# name -> (per-row trailing shape key, dtype); "S"/"O"/"A" are resolved from the spec
_FIELDS: dict[str, tuple[str | None, torch.dtype]] = {
    "state": ("S", torch.float32),
    "obs": ("O", torch.float32),
    "action": ("A", torch.float32),
    "reward": (None, torch.float32),
    "terminated": (None, torch.bool),
    "truncated": (None, torch.bool),
    "next_state": ("S", torch.float32),
    "next_obs": ("O", torch.float32),
}
_EPISODE = "episode_id"
BLOCK_ROWS = 1024
"""Ring positions per block of an incremental checkpoint (:mod:`dimalib.data.buffer_store`)."""


def _as_tensor(name: str, x: object) -> torch.Tensor:
    """Accept a torch tensor or a numpy array; anything else fails in ``check_tensor``."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    return check_tensor(name, x)


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, received {value!r}")
    return value


def _check_fits(name: str, nbytes: int, device: torch.device) -> None:
    """Refuse an allocation larger than the device's memory before attempting it."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    elif device.type == "cpu" and hasattr(os, "sysconf"):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    else:
        return
    if nbytes > total:
        raise ValueError(
            f"{name}: expected storage that fits in {device.type} memory ({total / 2**30:.1f} "
            f"GiB), received a request for {nbytes / 2**30:.1f} GiB"
        )


class ReplayBuffer:
    """Ring-buffer storage of transitions from ``num_streams`` parallel environment copies.

    Args:
        spec: the team description; fixes ``S = spec.state_dim``, ``O = spec.joint_obs_dim`` and
            ``A = spec.joint_action_dim``.
        capacity: total number of transitions kept (Table 4: 2.5e5). Each stream keeps
            ``capacity // num_streams`` rows, so the effective capacity is that times
            ``num_streams``.
        num_streams: number of parallel environment copies that :meth:`add` receives at once.
        device: where storage lives and samples are returned.

    Floating data are stored as float32, flags as bool and episode ids as int64: about
    ``4 * (2S + 2O + A + 1) + 10`` bytes per transition (see :attr:`nbytes`).

    Examples:
        >>> spec = MultiAgentSpec(("a", "b"), obs_dims=(3, 3), action_dims=(1, 1), state_dim=4)
        >>> buf = ReplayBuffer(spec, capacity=100, num_streams=2)
        >>> z = torch.zeros
        >>> buf.add(z(2, 4), z(2, 6), z(2, 2), z(2), z(2, dtype=torch.bool),
        ...         z(2, dtype=torch.bool), z(2, 4), z(2, 6))
        >>> len(buf), buf.sample_dynamics(8)["states"].shape
        (2, torch.Size([8, 3, 4]))
    """

    def __init__(
        self,
        spec: MultiAgentSpec,
        capacity: int = DEFAULT_CAPACITY,
        num_streams: int = 1,
        device: torch.device | str = "cpu",
    ) -> None:
        if not isinstance(spec, MultiAgentSpec):
            raise ValueError(f"spec: expected a MultiAgentSpec, received {type(spec).__name__}")
        num_streams = _positive_int("num_streams", num_streams)
        capacity = _positive_int("capacity", capacity)
        if capacity < num_streams:
            raise ValueError(
                f"capacity: expected at least one row per stream (>= num_streams={num_streams}), "
                f"received {capacity}"
            )
        self.spec = spec
        self.num_streams = num_streams
        self.stream_capacity = capacity // num_streams
        self.device = torch.device(device)
        self._dims = {"S": spec.state_dim, "O": spec.joint_obs_dim, "A": spec.joint_action_dim}
        n, c = num_streams, self.stream_capacity
        _check_fits("capacity", n * c * self.bytes_per_transition(spec), self.device)
        self._data: dict[str, torch.Tensor] = {
            name: torch.zeros((n, c, *self._trailing(name)), dtype=dtype, device=self.device)
            for name, (_, dtype) in _FIELDS.items()
        }
        self._data[_EPISODE] = torch.zeros((n, c), dtype=torch.int64, device=self.device)
        # blocks of BLOCK_ROWS ring positions written since the last mark_clean() (for
        # incremental checkpoints, dimalib.data.buffer_store); python ints, no device sync
        self._dirty: set[int] = set()
        # host-side bookkeeping (a handful of ints per stream)
        self._pos = [0] * n  # next slot written in each stream
        self._size = [0] * n  # rows stored in each stream
        self._episode = list(range(n))  # id of the episode the stream's next row belongs to
        self._next_episode = n  # next unused episode id
        self._meta: dict[str, torch.Tensor] | None = None  # device index tensors, per write
        self._final_rows: torch.Tensor | None = None

    # ----------------------------------------------------------------- sizes
    @property
    def capacity(self) -> int:
        """Effective capacity: ``stream_capacity * num_streams`` transitions."""
        return self.stream_capacity * self.num_streams

    def __len__(self) -> int:
        """Number of stored transitions (all streams)."""
        return sum(self._size)

    @property
    def stream_sizes(self) -> tuple[int, ...]:
        """Number of stored transitions per stream."""
        return tuple(self._size)

    @staticmethod
    def bytes_per_transition(spec: MultiAgentSpec) -> int:
        """Storage of one transition: float32 fields, bool flags and an int64 episode id."""
        floats = 2 * spec.state_dim + 2 * spec.joint_obs_dim + spec.joint_action_dim + 1
        return 4 * floats + 2 + 8

    @property
    def nbytes(self) -> int:
        """Bytes held by the preallocated storage."""
        return sum(t.numel() * t.element_size() for t in self._data.values())

    def __repr__(self) -> str:
        return (
            f"ReplayBuffer(len={len(self)}, capacity={self.capacity}, "
            f"num_streams={self.num_streams}, device={self.device}, "
            f"S={self._dims['S']}, O={self._dims['O']}, A={self._dims['A']})"
        )

    def _trailing(self, name: str) -> tuple[int, ...]:
        key = _FIELDS[name][0]
        return () if key is None else (self._dims[key],)

    # ---------------------------------------------------------------- insert
    def _validate(self, rows: int, values: Mapping[str, object]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        finite: list[torch.Tensor] = []
        for name, (_, dtype) in _FIELDS.items():
            x = _as_tensor(name, values[name])
            shape = (rows, *self._trailing(name))
            if dtype == torch.bool:
                out[name] = check_tensor(name, x, shape, dtype=torch.bool).to(self.device)
            else:  # finiteness is checked after the cast: 1e39 in float64 is inf in float32
                check_tensor(name, x, shape, floating=True)
                out[name] = x.to(device=self.device, dtype=dtype)
                finite.append(out[name].sum())  # NaN/inf anywhere makes the sum non-finite
        if not bool(torch.isfinite(torch.stack(finite)).all()):  # one host sync for all fields
            for name, (_, dtype) in _FIELDS.items():
                if dtype != torch.bool:  # raises, naming the first bad field (a sum that merely
                    check_finite(name, out[name])  # overflowed passes here and is accepted)
        return out

    def add(
        self,
        state: ArrayLike,
        obs: ArrayLike,
        action: ArrayLike,
        reward: ArrayLike,
        terminated: ArrayLike,
        truncated: ArrayLike,
        next_state: ArrayLike,
        next_obs: ArrayLike,
    ) -> None:
        """Append one transition per stream (``N = num_streams``).

        Args:
            state: ``[N, S]`` global state ``s_t``.
            obs: ``[N, O]`` joint observation ``o_t``.
            action: ``[N, A]`` joint action ``a_t`` taken from ``s_t``.
            reward: ``[N]`` shared reward ``r_t``.
            terminated: ``[N]`` bool, the episode ended in a terminal state.
            truncated: ``[N]`` bool, the episode was cut (time limit).
            next_state: ``[N, S]`` ``s_{t+1}``; for a finished episode the true final state,
                not the reset state of an auto-resetting vector env.
            next_obs: ``[N, O]`` ``o_{t+1}``, same convention.

        Floating inputs may be any float dtype (stored as float32) and must be finite; numpy
        arrays are accepted. Raises ``ValueError`` naming the bad argument.
        """
        n, c = self.num_streams, self.stream_capacity
        rows = self._validate(
            n,
            {
                "state": state,
                "obs": obs,
                "action": action,
                "reward": reward,
                "terminated": terminated,
                "truncated": truncated,
                "next_state": next_state,
                "next_obs": next_obs,
            },
        )
        flat = torch.arange(n, device=self.device) * c + torch.tensor(self._pos, device=self.device)
        self._write(flat, rows, torch.tensor(self._episode, device=self.device))
        self._dirty.update(p // BLOCK_ROWS for p in self._pos)
        done = (rows["terminated"] | rows["truncated"]).tolist()
        for i in range(n):
            self._pos[i] = (self._pos[i] + 1) % c
            self._size[i] = min(self._size[i] + 1, c)
            if done[i]:
                self._episode[i] = self._next_episode
                self._next_episode += 1
        self._invalidate()

    def extend(
        self,
        state: ArrayLike,
        obs: ArrayLike,
        action: ArrayLike,
        reward: ArrayLike,
        terminated: ArrayLike,
        truncated: ArrayLike,
        next_state: ArrayLike,
        next_obs: ArrayLike,
        *,
        stream: int = 0,
    ) -> None:
        """Append ``T`` consecutive transitions of one stream, e.g. a whole episode.

        Arguments are those of :meth:`add` with a leading time axis ``[T, ...]`` instead of the
        stream axis. The rows continue the stream's current episode; any row with ``terminated``
        or ``truncated`` closes its episode, so several episodes may be passed at once. When
        ``T`` exceeds the stream's capacity only the last rows are kept.
        """
        if not isinstance(stream, int) or not 0 <= stream < self.num_streams:
            raise ValueError(
                f"stream: expected an integer in [0, {self.num_streams}), received {stream!r}"
            )
        state_t = check_tensor("state", _as_tensor("state", state), (None, self._dims["S"]))
        t = int(state_t.shape[0])
        values = {
            "state": state_t,
            "obs": obs,
            "action": action,
            "reward": reward,
            "terminated": terminated,
            "truncated": truncated,
            "next_state": next_state,
            "next_obs": next_obs,
        }
        rows = self._validate(t, values)
        if t == 0:
            return
        c = self.stream_capacity
        done = (rows["terminated"] | rows["truncated"]).cpu()
        # episode id of every row: the k-th closed episode in this call opens id next+k-1
        closed_before = torch.cumsum(done.long(), 0) - done.long()
        ids = torch.where(
            closed_before == 0,
            torch.tensor(self._episode[stream]),
            self._next_episode + closed_before - 1,
        )
        keep = min(t, c)
        flat = stream * c + (self._pos[stream] + torch.arange(t - keep, t, device=self.device)) % c
        kept = {name: value[t - keep :] for name, value in rows.items()}
        self._write(flat, kept, ids[t - keep :].to(self.device))
        first = (self._pos[stream] + t - keep) % c  # the rows went to [first, first + keep) mod c
        for lo, hi in ((first, min(first + keep, c)), (0, max(first + keep - c, 0))):
            if hi > lo:
                self._dirty.update(range(lo // BLOCK_ROWS, (hi - 1) // BLOCK_ROWS + 1))
        n_done = int(done.sum())
        if n_done:
            self._episode[stream] = self._next_episode + n_done - 1
            self._next_episode += n_done
        self._pos[stream] = (self._pos[stream] + t) % c
        self._size[stream] = min(self._size[stream] + t, c)
        self._invalidate()

    def _write(
        self, flat: torch.Tensor, rows: dict[str, torch.Tensor], episode: torch.Tensor
    ) -> None:
        """Copy ``rows`` (``[k, ...]`` per field) and episode ids ``[k]`` to flat slots ``[k]``."""
        for name, value in {**rows, _EPISODE: episode}.items():
            dest = self._data[name]
            # index_copy_ on the flat view: much faster than advanced-index assignment on CPU
            dest.view(-1, *dest.shape[2:]).index_copy_(0, flat, value)

    def end_episodes(self, streams: Sequence[int] | None = None) -> None:
        """Close the running episode of ``streams`` (default: all), e.g. before an env reset.

        Algorithm 1 resets the environment at the start of every collection phase; call this
        first, so the next rows do not continue the cut episode. The stream's newest row gets
        ``truncated = True`` (its ``next_state`` is then used as a final state). Streams whose
        last row already ended an episode, or that hold no row, are left as they are.
        """
        chosen = range(self.num_streams) if streams is None else streams
        c = self.stream_capacity
        for i in chosen:
            if not isinstance(i, int) or not 0 <= i < self.num_streams:
                raise ValueError(
                    f"streams: expected integers in [0, {self.num_streams}), received {i!r}"
                )
            newest = (self._pos[i] - 1) % c
            if self._size[i] == 0 or bool(
                self._data["terminated"][i, newest] | self._data["truncated"][i, newest]
            ):
                continue
            self._data["truncated"][i, newest] = True
            self._dirty.add(newest // BLOCK_ROWS)
            self._episode[i] = self._next_episode
            self._next_episode += 1
        self._invalidate()

    def _invalidate(self) -> None:
        self._meta = None
        self._final_rows = None

    # ------------------------------------------------------------ inspection
    def stream_data(self, stream: int) -> dict[str, torch.Tensor]:
        """Every stored row of ``stream`` in time order (oldest first): ``{field: [n, ...]}``.

        Includes ``"episode_id"`` ``[n]`` int64. Returns copies, for inspection and export.
        """
        if not isinstance(stream, int) or not 0 <= stream < self.num_streams:
            raise ValueError(
                f"stream: expected an integer in [0, {self.num_streams}), received {stream!r}"
            )
        c, size = self.stream_capacity, self._size[stream]
        slots = (self._pos[stream] - size + torch.arange(size, device=self.device)) % c
        return {name: t[stream, slots].clone() for name, t in self._data.items()}

    # -------------------------------------------------------------- sampling
    def _index_meta(self) -> dict[str, torch.Tensor]:
        if self._meta is None:
            c = self.stream_capacity
            size = torch.tensor(self._size, dtype=torch.int64, device=self.device)
            pos = torch.tensor(self._pos, dtype=torch.int64, device=self.device)
            ends = torch.cumsum(size, 0)
            self._meta = {
                "size": size,
                "ends": ends,
                "starts": ends - size,
                "oldest": (pos - size) % c,
            }
        return self._meta

    def _randint(
        self, high: int, batch_size: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        device = generator.device if generator is not None else self.device
        out = torch.randint(high, (batch_size,), generator=generator, device=device)
        return out.to(self.device)

    def _check_sample_args(self, batch_size: int, **lengths: int) -> None:
        _positive_int("batch_size", batch_size)
        for name, value in lengths.items():
            _positive_int(name, value)
        if len(self) == 0:
            raise ValueError("buffer: cannot sample from an empty buffer (add transitions first)")

    def _sample_rows(
        self, batch_size: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform rows over all stored transitions: ``(stream [B], logical position [B])``."""
        return self._locate(self._randint(len(self), batch_size, generator))

    def _sample_recent_rows(
        self, batch_size: int, recent: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform rows over each stream's ``recent`` newest rows (all of a shorter stream):
        ``(stream [B], logical position [B])``."""
        high = sum(min(n, recent) for n in self._size)  # host ints: no device sync
        u = self._randint(high, batch_size, generator)  # (B,) over the union of the windows
        size = self._index_meta()["size"]  # (N,)
        width = size.clamp(max=recent)  # (N,) rows in each stream's window
        ends = torch.cumsum(width, 0)
        stream = torch.searchsorted(ends, u, right=True)
        j = u - (ends - width)[stream]  # 0 = the stream's newest row
        return stream, size[stream] - 1 - j

    def _locate(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Transition number ``u`` (streams in order, oldest first) → ``(stream, logical)``."""
        if self.num_streams == 1:
            return torch.zeros_like(u), u
        meta = self._index_meta()
        stream = torch.searchsorted(meta["ends"], u, right=True)
        return stream, u - meta["starts"][stream]

    def _flat(self, stream: torch.Tensor, logical: torch.Tensor) -> torch.Tensor:
        """Flat index into ``[num_streams * stream_capacity]`` of a (stream, logical) pair."""
        c = self.stream_capacity
        return stream * c + (self._index_meta()["oldest"][stream] + logical) % c

    def _window(
        self, stream: torch.Tensor, logical: torch.Tensor, offsets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows at ``logical + offsets`` of the same stream: ``(flat index [B, L], mask [B, L])``.

        ``mask`` is True where the row is stored and belongs to the episode of the anchor row
        (offset 0); masked entries point at the anchor row itself (any valid row would do).
        """
        size = self._index_meta()["size"][stream]
        pos = logical[:, None] + offsets[None, :]
        inside = (pos >= 0) & (pos < size[:, None])
        pos = torch.where(inside, pos, logical[:, None])
        flat = self._flat(stream[:, None].expand_as(pos), pos)
        episode = self._data[_EPISODE].view(-1)
        anchor = episode[self._flat(stream, logical)]
        mask = inside & (episode[flat] == anchor[:, None])
        return flat, mask

    def _gather(
        self, name: str, flat: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``self._data[name]`` at ``flat`` (any shape), zero (False) where ``mask`` is False."""
        src = self._data[name]
        src = src.view(-1, *src.shape[2:])
        out = src.index_select(0, flat.reshape(-1)).view(*flat.shape, *src.shape[1:])
        if mask is not None:
            m = mask.view(*mask.shape, *([1] * (out.dim() - mask.dim())))
            out = out * m if out.is_floating_point() else out & m
        return out

    def _final_index(self) -> torch.Tensor:
        """Flat indices of rows whose ``next_state`` is no other row's ``state``.

        Those are the rows that end an episode and the newest row of every stream.
        """
        if self._final_rows is None:
            n, c = self.num_streams, self.stream_capacity
            size = self._index_meta()["size"]
            stored = torch.arange(c, device=self.device)[None, :] < size[:, None]
            final = (self._data["terminated"] | self._data["truncated"]) & stored
            for i in range(n):
                if self._size[i] > 0:
                    final[i, (self._pos[i] - 1) % c] = True
            self._final_rows = final.view(-1).nonzero().squeeze(1)
        return self._final_rows

    def sample_state_obs(
        self,
        batch_size: int = 256,
        generator: torch.Generator | None = None,
        include_final: bool = True,
    ) -> dict[str, torch.Tensor]:
        """State-observation pairs ``(s_t, o_t)`` for the state decoder (eq. 22; Table 4: 256).

        With ``include_final`` the pool is every row's ``(state, obs)`` plus the
        ``(next_state, next_obs)`` of rows whose next state is stored nowhere else (the last row
        of each episode, and the newest row of each stream), so final states are learned too;
        every distinct stored state is then equally likely. Without it, only rows' ``state``.

        Returns:
            ``{"state": [B, S], "obs": [B, O]}``.
        """
        self._check_sample_args(batch_size)
        n_rows = len(self)
        finals = self._final_index() if include_final else None
        n_final = 0 if finals is None else int(finals.numel())
        u = self._randint(n_rows + n_final, batch_size, generator)
        stream, logical = self._locate(u.clamp(max=n_rows - 1))
        flat = self._flat(stream, logical)
        state = self._gather("state", flat)
        obs = self._gather("obs", flat)
        if finals is not None and n_final > 0:
            is_final = u >= n_rows
            final_flat = finals[(u - n_rows).clamp(min=0, max=n_final - 1)]
            state = torch.where(is_final[:, None], self._gather("next_state", final_flat), state)
            obs = torch.where(is_final[:, None], self._gather("next_obs", final_flat), obs)
        return {"state": state, "obs": obs}

    def sample_dynamics(
        self,
        batch_size: int = 64,
        context: int = 3,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Windows for the diffusion dynamics model (eq. 9, ``L = 3``; Table 4: batch 64).

        The anchor ``t`` is any stored row; the window holds ``s_{t-L+1..t}`` and
        ``a_{t-L+1..t}`` of the same episode, zero padded before the episode's first stored row
        (as the official code does), and the target ``s_{t+1}``.

        Returns:
            ``{"states": [B, L, S], "actions": [B, L, A] (the last is the current joint action),
            "mask": [B, L] bool (False where padded), "next_state": [B, S]}``.
        """
        self._check_sample_args(batch_size, context=context)
        stream, logical = self._sample_rows(batch_size, generator)
        offsets = torch.arange(1 - context, 1, device=self.device)
        flat, mask = self._window(stream, logical, offsets)
        return {
            "states": self._gather("state", flat, mask),
            "actions": self._gather("action", flat, mask),
            "mask": mask,
            "next_state": self._gather("next_state", flat[:, -1]),
        }

    def sample_sequences(
        self,
        batch_size: int = 128,
        length: int = 15,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Sequences for the reward/termination model (eq. 23; Table 4: batch 128, H = 15).

        The start ``t`` is any stored row, uniformly; the window ``t .. t+H-1`` stops at the
        end of the episode (the row with ``terminated`` or ``truncated``, which is included) or
        at the stream's newest row, and is **padded at the end**: padded steps have
        ``mask = False`` and zero states, actions, rewards and ``terminated = False``. Episodes
        shorter than ``H`` are therefore used in full.

        Returns:
            ``{"states": [B, H, S], "actions": [B, H, A], "rewards": [B, H],
            "terminated": [B, H] bool, "mask": [B, H] bool}``.
        """
        self._check_sample_args(batch_size, length=length)
        stream, logical = self._sample_rows(batch_size, generator)
        offsets = torch.arange(length, device=self.device)
        flat, mask = self._window(stream, logical, offsets)
        return {
            "states": self._gather("state", flat, mask),
            "actions": self._gather("action", flat, mask),
            "rewards": self._gather("reward", flat, mask),
            "terminated": self._gather("terminated", flat, mask),
            "mask": mask,
        }

    def sample_start_contexts(
        self,
        batch_size: int = 600,
        context: int = 3,
        generator: torch.Generator | None = None,
        recent: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Starting points of imagined rollouts (Algorithm 1; Table 4: 600 rollouts).

        The start ``t`` is any stored row, uniformly (its ``state`` is never terminal), or with
        ``recent`` one of each stream's ``recent`` newest rows, uniformly over their union (a
        stream holding fewer gives all of its rows; not in the paper, see
        ``ImaginationConfig.recent_starts``). The context ``s_{t-L+1..t}``, ``a_{t-L+1..t-1}``
        is zero padded before the episode's first stored row; ``mask[:, :-1]`` is also the mask
        of ``actions``.

        Returns:
            ``{"states": [B, L, S], "actions": [B, L-1, A], "obs": [B, O] (o_t),
            "mask": [B, L] bool}``.
        """
        self._check_sample_args(batch_size, context=context)
        if recent is None:
            stream, logical = self._sample_rows(batch_size, generator)
        else:
            _positive_int("recent", recent)
            stream, logical = self._sample_recent_rows(batch_size, recent, generator)
        offsets = torch.arange(1 - context, 1, device=self.device)
        flat, mask = self._window(stream, logical, offsets)
        return {
            "states": self._gather("state", flat, mask),
            "actions": self._gather("action", flat[:, :-1], mask[:, :-1]),
            "obs": self._gather("obs", flat[:, -1]),
            "mask": mask,
        }

    # ----------------------------------------------------------- persistence
    # ---------------------------------------------------------- block access
    @property
    def num_blocks(self) -> int:
        """Blocks of :data:`BLOCK_ROWS` ring positions holding data (all streams together)."""
        return -(-max(self._size) // BLOCK_ROWS)

    def dirty_blocks(self) -> list[int]:
        """Blocks written since the last :meth:`mark_clean` (or since creation / loading)."""
        return sorted(k for k in self._dirty if k < self.num_blocks)

    def mark_clean(self, blocks: Sequence[int]) -> None:
        """Forget that ``blocks`` were written (call once they are safely stored)."""
        self._dirty.difference_update(blocks)

    def block(self, k: int) -> dict[str, torch.Tensor]:
        """Copy of ring positions ``[k * BLOCK_ROWS, (k + 1) * BLOCK_ROWS)`` of every stream, on
        CPU: ``{field: [num_streams, rows, ...]}`` (the last block may be shorter)."""
        if not isinstance(k, int) or not 0 <= k < self.num_blocks:
            raise ValueError(f"k: expected a block index in [0, {self.num_blocks}), received {k!r}")
        used = max(self._size)
        lo, hi = k * BLOCK_ROWS, min((k + 1) * BLOCK_ROWS, used)
        return {name: t[:, lo:hi].cpu().clone() for name, t in self._data.items()}

    def bookkeeping(self) -> dict[str, Any]:
        """:meth:`state_dict` without the rows: the spec, sizes and ring/episode counters."""
        return {
            "spec": self.spec.to_dict(),
            "num_streams": self.num_streams,
            "stream_capacity": self.stream_capacity,
            "pos": list(self._pos),
            "size": list(self._size),
            "episode": list(self._episode),
            "next_episode": self._next_episode,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed for an exact copy, on CPU (rows never written are not included)."""
        used = max(self._size)
        data = {name: t[:, :used].cpu().clone() for name, t in self._data.items()}
        return {**self.bookkeeping(), "data": data}

    @classmethod
    def from_state_dict(
        cls,
        state: dict[str, Any],
        device: torch.device | str | None = None,
        spec: MultiAgentSpec | None = None,
    ) -> ReplayBuffer:
        """Inverse of :meth:`state_dict`; ``spec``, when given, must equal the stored one."""
        try:
            stored = MultiAgentSpec.from_dict(state["spec"])
            n, c = int(state["num_streams"]), int(state["stream_capacity"])
            data, pos, size = state["data"], list(state["pos"]), list(state["size"])
            episode = list(state["episode"])
            next_episode = int(state["next_episode"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"state: not a ReplayBuffer state ({err!r})") from err
        if spec is not None and spec != stored:
            raise ValueError(f"spec: expected the stored spec {stored}, received {spec}")
        buf = cls(stored, capacity=n * c, num_streams=n, device=device or "cpu")
        if not (len(pos) == len(size) == len(episode) == n):
            raise ValueError(f"state: expected bookkeeping for {n} streams")
        if not all(0 <= p < c and 0 <= s <= c for p, s in zip(pos, size, strict=True)):
            raise ValueError(f"state: ring positions/sizes out of range for capacity {c}")
        used = max(size)
        for name, target in buf._data.items():
            t = data.get(name) if isinstance(data, dict) else None
            if not isinstance(t, torch.Tensor) or t.shape != (n, used, *target.shape[2:]):
                found = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(
                    f"state: field {name!r} expected shape {(n, used, *target.shape[2:])}, "
                    f"received {found}"
                )
            if t.dtype != target.dtype:
                raise ValueError(f"state: field {name!r} expected {target.dtype}, got {t.dtype}")
            target[:, :used] = t.to(buf.device)
        buf._pos, buf._size = [int(p) for p in pos], [int(s) for s in size]
        buf._episode = [int(e) for e in episode]
        buf._next_episode = next_episode
        buf._dirty = set(range(buf.num_blocks))
        return buf

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the buffer atomically (versioned ``replay_buffer`` file); returns the path."""
        out = atomic_save(self.state_dict(), path, kind=_KIND, version=_VERSION)
        logger.info("saved replay buffer (%d transitions) to %s", len(self), out)
        return out

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        device: torch.device | str | None = None,
        spec: MultiAgentSpec | None = None,
    ) -> ReplayBuffer:
        """Read a file written by :meth:`save` onto ``device`` (default CPU).

        Raises ``ValueError`` if the file is not a replay buffer of this format version, is
        inconsistent, or (when ``spec`` is given) holds another spec.
        """
        blob = load_versioned(path, kind=_KIND, version=_VERSION, map_location="cpu")
        return cls.from_state_dict(blob, device=device, spec=spec)
