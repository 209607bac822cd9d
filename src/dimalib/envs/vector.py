"""Batched collection from ``N`` copies of a PettingZoo ``ParallelEnv`` with ``state()``.

:class:`VectorMultiAgentEnv` steps ``N`` copies of an environment (MAMuJoCo, the toy env, any
PettingZoo parallel env with a global ``state()``) with one ``[N, A]`` joint-action tensor and
returns ``[N, ...]`` float32 tensors; :func:`collect` drives it with a batched policy and writes the
transitions into a replay buffer.

Auto-reset. When copy ``i`` ends at a step (terminated or truncated), it is reset inside that same
:meth:`VectorMultiAgentEnv.step`:

* ``next_state[i]`` / ``next_obs[i]`` are the **first** state/observation of the new episode, i.e.
  what the policy should act on next;
* ``final_state[i]`` / ``final_obs[i]`` are the **true last** state/observation of the episode that
  ended. For copies that did not end, ``final_*`` equals ``next_*``, so ``final_*`` is always the
  correct successor of the transition just taken (what a replay buffer stores as next state).

Seeding. ``reset(seed=s)`` resets copy ``i`` with ``seed=s + i``; later auto-resets pass no seed, so
each copy continues its own RNG stream. ``N`` collected copies therefore equal ``N`` separate envs
run with seeds ``s, s+1, ...`` (reset with the seed once, then ``reset()`` after every episode).

Team reward and episode ends. The reward is the agents' shared reward (the mean of the agents'
rewards when an env gives them different ones). A copy's episode ends when any agent terminates or
is truncated; ``terminated`` wins when both are set (``truncated`` means a time limit was hit
without a true terminal state, so value bootstrapping is allowed).

Modes. ``"inprocess"`` steps the copies one after another in this process. ``"subprocess"`` splits
them over ``num_workers`` worker processes (multiprocessing ``spawn`` or ``forkserver``, pipes),
each stepping its contiguous share; the policy still runs once per step, in this process.
Both modes give identical values.

Conversion. Actions are split into per-agent dict entries as views of one ``[N, A]`` array and
observations are concatenated straight into preallocated ``[N, O]`` arrays (one
``np.concatenate(..., out=row)`` per copy); tensors wrap those arrays without copying.

Fast path. An env may skip the dicts altogether by offering a ``flat_stepper()`` method that
returns a :class:`FlatStepper` (array in, arrays out, the very values of its dict API) or ``None``
(keep the dicts); :class:`VectorMultiAgentEnv` calls it once per copy (``fast_path=True``, the
default). The MuJoCo Bi-DexHands tasks offer one
(:meth:`dimalib.envs.mj_dexhands.MjDexHandsEnv.flat_stepper`), and so do the MAMuJoCo envs that
:func:`dimalib.envs.mamujoco.make_mamujoco` builds, where
:func:`dimalib.envs.mamujoco.flat_stepper` verifies that the array-level path gives identical
values.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing as mp
import traceback
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal, Protocol

import numpy as np
import torch

from dimalib.envs.parallel import spec_from_env, team_reward
from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import check_finite, check_int, check_tensor

__all__ = [
    "BatchedMultiAgentEnv",
    "CollectResult",
    "FlatStepper",
    "RealVectorEnv",
    "StepResult",
    "TransitionSink",
    "VectorMultiAgentEnv",
    "collect",
]

logger = logging.getLogger(__name__)

EnvFn = Callable[[], Any]
Policy = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StepResult:
    """One batched step of :class:`VectorMultiAgentEnv` (``N`` copies).

    Attributes:
        next_state: ``[N, S]`` float32, state to act on next (new episode's first where it ended).
        next_obs: ``[N, O]`` float32, joint observation to act on next (likewise).
        reward: ``[N]`` float32 team reward of the transition.
        terminated: ``[N]`` bool, the episode reached a terminal state.
        truncated: ``[N]`` bool, the episode was cut (time limit) without a terminal state.
        final_state: ``[N, S]`` float32, the true successor state of this transition (the episode's
            last state where it ended, else equal to ``next_state``).
        final_obs: ``[N, O]`` float32, likewise for the joint observation.
        episode_return: ``[N]`` float32, return of the current episode up to and including this
            step (the finished episode's total where it ended).
        episode_length: ``[N]`` int64, likewise the number of steps.

    Where no copy ended, ``final_state``/``final_obs`` may share memory with
    ``next_state``/``next_obs`` (they are equal anyway); copy before modifying in place.
    """

    next_state: torch.Tensor
    next_obs: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_state: torch.Tensor
    final_obs: torch.Tensor
    episode_return: torch.Tensor
    episode_length: torch.Tensor

    @property
    def done(self) -> torch.Tensor:
        """``[N]`` bool, the episode ended (terminated or truncated) and the copy was reset."""
        return self.terminated | self.truncated


# --------------------------------------------------------------------------- numpy env group
class FlatStepper(Protocol):
    """An env's array-level step, what its ``flat_stepper()`` method returns (the fast path).

    ``step`` must give exactly what the env's dict API gives for the same joint action (same
    state, observations, reward and episode end), and it advances the same env: the vector env
    then calls ``env.reset()`` and ``env.state()`` as usual.
    """

    def step(self, joint_action: np.ndarray) -> tuple[Any, Any, float, bool, bool]:
        """``joint_action [A]`` (agent order) → ``(state [S], joint_obs [O], team reward,
        terminated, truncated)``."""
        ...


def _flat_stepper(env: Any) -> FlatStepper | None:
    """The env's own array-level stepper where it offers one (a ``flat_stepper()`` method that
    returns a :class:`FlatStepper` or ``None``), else ``None``."""
    method = getattr(env, "flat_stepper", None)
    if not callable(method):
        return None
    flat: FlatStepper | None = method()
    return flat


_STEP_FIELDS = (
    "next_state",
    "next_obs",
    "reward",
    "terminated",
    "truncated",
    "final_state",
    "final_obs",
    "episode_return",
    "episode_length",
)


class _EnvGroup:
    """Steps a list of env copies in this process; numpy in, numpy out (no torch on this path).

    Used directly by the in-process mode and inside each worker of the subprocess mode.
    """

    def __init__(self, env_fns: Sequence[EnvFn], fast_path: bool = True) -> None:
        self.envs = [fn() for fn in env_fns]
        self.spec = spec_from_env(self.envs[0])
        for i, env in enumerate(self.envs[1:], start=1):
            other = spec_from_env(env)
            if other != self.spec:
                raise ValueError(
                    f"env_fns: expected every copy to have the same spec, copy {i} has {other} "
                    f"but copy 0 has {self.spec}"
                )
        spec = self.spec
        self.names = spec.agent_names
        self.n = len(self.envs)
        self._act_items = tuple(zip(self.names, spec.action_slices, strict=True))
        self._obs_items = tuple(zip(self.names, spec.obs_slices, strict=True))
        self._ret = np.zeros(self.n, np.float64)
        self._len = np.zeros(self.n, np.int64)
        self._flat = [_flat_stepper(env) if fast_path else None for env in self.envs]

    @property
    def num_fast(self) -> int:
        """How many copies use a verified array-level fast path instead of the dict API."""
        return sum(f is not None for f in self._flat)

    # -- conversion helpers (the per-step dict <-> array boundary)
    def _write_obs(self, obs: Mapping[str, Any], out: np.ndarray) -> None:
        try:
            np.concatenate([obs[name] for name in self.names], out=out)
            return
        except KeyError:
            pass  # an agent is missing (finished early): slow path below
        except ValueError as exc:
            sizes = {name: np.shape(obs[name]) for name in self.names if name in obs}
            raise ValueError(
                f"env observation: expected per-agent sizes {dict(zip(self.names, self.spec.obs_dims, strict=True))}"
                f", received {sizes}"
            ) from exc
        for name, sl in self._obs_items:
            out[sl] = obs.get(name, 0.0)

    def reset(self, seeds: Sequence[int | None]) -> tuple[np.ndarray, np.ndarray]:
        state = np.empty((self.n, self.spec.state_dim), np.float32)
        obs = np.empty((self.n, self.spec.joint_obs_dim), np.float32)
        for i, (env, seed) in enumerate(zip(self.envs, seeds, strict=True)):
            obs_d, _ = env.reset(seed=seed)
            self._write_obs(obs_d, obs[i])
            state[i] = env.state()
        self._ret[:] = 0.0
        self._len[:] = 0
        return state, obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        """Step every copy with ``actions [n, A]``; returns the arrays of :data:`_STEP_FIELDS`.

        ``next_*`` is the same array object as ``final_*`` when no copy ended.
        """
        n, spec = self.n, self.spec
        final_state = np.empty((n, spec.state_dim), np.float32)
        final_obs = np.empty((n, spec.joint_obs_dim), np.float32)
        reward = np.empty(n, np.float64)
        terminated = np.zeros(n, np.bool_)
        truncated = np.zeros(n, np.bool_)
        ended: list[int] = []
        items = self._act_items
        names = self.names
        for i, env in enumerate(self.envs):
            flat = self._flat[i]
            if flat is not None:
                state, joint_obs, r, term, trunc = flat.step(actions[i])
                final_state[i] = state
                final_obs[i] = joint_obs
                reward[i] = r
            else:
                row = actions[i]
                obs_d, rew_d, term_d, trunc_d, _ = env.step({nm: row[sl] for nm, sl in items})
                try:  # the common case inline: every agent present, sizes right
                    np.concatenate([obs_d[nm] for nm in names], out=final_obs[i])
                except (KeyError, ValueError):
                    self._write_obs(obs_d, final_obs[i])
                final_state[i] = env.state()
                reward[i] = team_reward(rew_d)
                term = any(term_d.values())
                trunc = any(trunc_d.values())
            if term:
                terminated[i] = True
                ended.append(i)
            elif trunc:
                truncated[i] = True
                ended.append(i)
        self._ret += reward
        self._len += 1
        ep_return = self._ret.astype(np.float32)
        ep_length = self._len.copy()
        next_state, next_obs = final_state, final_obs
        if ended:
            next_state, next_obs = final_state.copy(), final_obs.copy()
            for i in ended:
                obs_d, _ = self.envs[i].reset()
                self._write_obs(obs_d, next_obs[i])
                next_state[i] = self.envs[i].state()
            self._ret[ended] = 0.0
            self._len[ended] = 0
        return (
            next_state,
            next_obs,
            reward.astype(np.float32),
            terminated,
            truncated,
            final_state,
            final_obs,
            ep_return,
            ep_length,
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()


# --------------------------------------------------------------------------- subprocess workers
def _worker_main(conn: Connection, payload: bytes) -> None:
    """Worker loop: build the group, then answer ``(command, argument)`` messages."""
    import pickle

    group: _EnvGroup | None = None
    try:
        env_fns, fast_path = pickle.loads(payload)
        group = _EnvGroup(env_fns, fast_path)
        conn.send(("ok", group.spec))
        while True:
            cmd, arg = conn.recv()
            if cmd == "step":
                conn.send(("ok", group.step(arg)))
            elif cmd == "reset":
                conn.send(("ok", group.reset(arg)))
            elif cmd == "close":
                group.close()
                group = None
                conn.send(("ok", None))
                break
            else:  # pragma: no cover - protocol error
                raise RuntimeError(f"unknown command {cmd!r}")
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass
    except BaseException:
        with contextlib.suppress(OSError, BrokenPipeError):
            conn.send(("error", traceback.format_exc()))
    finally:
        if group is not None:
            with contextlib.suppress(Exception):  # best effort on the way out
                group.close()
        conn.close()


def _dumps(obj: Any) -> bytes:
    try:
        import cloudpickle  # gymnasium depends on it; lets lambdas cross the process boundary

        return bytes(cloudpickle.dumps(obj))
    except ImportError:  # pragma: no cover
        import pickle

        return pickle.dumps(obj)


class _Worker:
    def __init__(self, ctx: Any, env_fns: Sequence[EnvFn], fast_path: bool, index: int) -> None:
        self.index = index
        self.conn, child = ctx.Pipe(duplex=True)
        payload = _dumps((list(env_fns), fast_path))
        self.proc = ctx.Process(target=_worker_main, args=(child, payload), daemon=True)
        self.proc.start()
        child.close()

    def send(self, cmd: str, arg: Any) -> None:
        try:
            self.conn.send((cmd, arg))
        except (BrokenPipeError, OSError) as exc:
            raise RuntimeError(f"env worker {self.index} is gone ({exc!r})") from exc

    def recv(self) -> Any:
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise RuntimeError(
                f"env worker {self.index} exited unexpectedly (exit code {self.proc.exitcode})"
            ) from exc
        if status == "error":
            raise RuntimeError(f"env worker {self.index} failed:\n{value}")
        return value


def _shutdown(workers: list[_Worker], timeout: float = 10.0) -> None:
    """Ask every worker to close its envs, wait for the acknowledgement, then for the exit."""
    for w in workers:
        with contextlib.suppress(BrokenPipeError, OSError):
            w.conn.send(("close", None))
    for w in workers:
        acked = False
        try:
            if w.conn.poll(timeout):
                w.conn.recv()
                acked = True
        except (EOFError, OSError):
            pass
        w.proc.join(timeout)
        if w.proc.is_alive():  # pragma: no cover - a hung env or a very slow interpreter exit
            if acked:  # its envs are closed already; only the interpreter teardown is pending
                logger.debug("env worker %d slow to exit after closing; terminating it", w.index)
            else:
                logger.warning(
                    "env worker %d did not close in %.0fs; terminating it", w.index, timeout
                )
            w.proc.terminate()
            w.proc.join(timeout)
        w.conn.close()


# --------------------------------------------------------------------------- public vector env
class VectorMultiAgentEnv:
    """``N`` copies of a multi-agent env stepped with one batched joint action.

    Args:
        env_fns: one zero-argument factory per copy, each returning a PettingZoo ``ParallelEnv``
            with ``state()``; all copies must share the same spec. In ``"subprocess"`` mode they are
            sent to the workers with cloudpickle (lambdas and ``functools.partial`` work).
        mode: ``"inprocess"`` or ``"subprocess"``.
        num_workers: subprocess mode only; number of worker processes (default
            ``min(N, os.cpu_count())``), each stepping a contiguous share of the copies.
        start_method: subprocess mode only; ``"spawn"`` (default) or ``"forkserver"``. Scripts that
            use the subprocess mode need the usual ``if __name__ == "__main__":`` guard.
        device: device of the returned tensors.
        fast_path: step copies whose env offers an array-level path (a ``flat_stepper()``
            method returning a :class:`FlatStepper`: same values as the dict API, without its
            per-agent Python loops; MAMuJoCo where verified, the MuJoCo Bi-DexHands tasks) through
            it; ``False`` always uses the PettingZoo dicts.

    Examples:
        >>> from dimalib.envs import make_env
        >>> venv = VectorMultiAgentEnv([lambda: make_env("HalfCheetah-2x3")] * 4)
        >>> state, obs = venv.reset(seed=0)
        >>> tuple(state.shape), tuple(obs.shape)
        ((4, 17), (4, 24))
        >>> out = venv.step(torch.zeros(4, 6))       # StepResult of [4, ...] tensors
        >>> tuple(out.reward.shape)
        (4,)
        >>> venv.close()
    """

    #: ``reset(seed=s)`` seeds the copies (``s + i``); see :class:`RealVectorEnv`.
    seedable: bool = True

    def __init__(
        self,
        env_fns: Sequence[EnvFn],
        mode: Literal["inprocess", "subprocess"] = "inprocess",
        *,
        num_workers: int | None = None,
        start_method: Literal["spawn", "forkserver"] = "spawn",
        device: torch.device | str = "cpu",
        fast_path: bool = True,
    ) -> None:
        fns = list(env_fns)
        if not fns:
            raise ValueError("env_fns: expected at least one env factory, received none")
        if not all(callable(f) for f in fns):
            raise ValueError("env_fns: expected zero-argument callables returning envs")
        if mode not in ("inprocess", "subprocess"):
            raise ValueError(f"mode: expected 'inprocess' or 'subprocess', received {mode!r}")
        self.num_envs = len(fns)
        self.mode = mode
        self.device = torch.device(device)
        self._group: _EnvGroup | None = None
        self._workers: list[_Worker] = []
        self._bounds: list[tuple[int, int]] = []
        self._closed = False
        self._state: torch.Tensor | None = None
        self._obs: torch.Tensor | None = None
        if mode == "inprocess":
            self._group = _EnvGroup(fns, fast_path)
            self.spec: MultiAgentSpec = self._group.spec
        else:
            self.spec = self._start_workers(fns, num_workers, start_method, fast_path)
        self._finalizer = weakref.finalize(self, _close_resources, self._group, self._workers)

    def _start_workers(
        self, fns: list[EnvFn], num_workers: int | None, start_method: str, fast_path: bool
    ) -> MultiAgentSpec:
        import os

        if start_method not in ("spawn", "forkserver"):
            raise ValueError(
                f"start_method: expected 'spawn' or 'forkserver', received {start_method!r}"
            )
        if num_workers is not None:
            check_int("num_workers", num_workers)
        n_workers = min(len(fns), num_workers or (os.cpu_count() or 1))
        ctx = mp.get_context(start_method)
        edges = np.linspace(0, len(fns), n_workers + 1).round().astype(int)
        self._bounds = [(int(a), int(b)) for a, b in itertools.pairwise(edges)]
        try:
            for k, (a, b) in enumerate(self._bounds):
                self._workers.append(_Worker(ctx, fns[a:b], fast_path, k))
            specs = [w.recv() for w in self._workers]
        except BaseException:
            _shutdown(self._workers, timeout=1.0)
            raise
        for k, s in enumerate(specs[1:], start=1):
            if s != specs[0]:
                _shutdown(self._workers, timeout=1.0)
                raise ValueError(
                    f"env_fns: expected every copy to have the same spec, worker {k} has {s} "
                    f"but worker 0 has {specs[0]}"
                )
        spec: MultiAgentSpec = specs[0]
        return spec

    # ------------------------------------------------------------------ properties
    @property
    def state(self) -> torch.Tensor:
        """``[N, S]`` current global states (what the policy acts on next)."""
        if self._state is None:
            raise RuntimeError("VectorMultiAgentEnv: call reset() before reading state")
        return self._state

    @property
    def obs(self) -> torch.Tensor:
        """``[N, O]`` current joint observations (what the policy acts on next)."""
        if self._obs is None:
            raise RuntimeError("VectorMultiAgentEnv: call reset() before reading obs")
        return self._obs

    @property
    def needs_reset(self) -> bool:
        """True until :meth:`reset` has been called."""
        return self._state is None

    # ------------------------------------------------------------------ API
    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x)
        return t if self.device.type == "cpu" else t.to(self.device)

    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reset every copy (copy ``i`` with ``seed + i``; no seed when ``seed`` is None).

        Returns:
            ``(state [N, S], obs [N, O])`` float32 tensors.
        """
        self._check_open()
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError(f"seed: expected an int or None, received {seed!r}")
        seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        if self._group is not None:
            state, obs = self._group.reset(seeds)
        else:
            for w, (a, b) in zip(self._workers, self._bounds, strict=True):
                w.send("reset", seeds[a:b])
            parts = [w.recv() for w in self._workers]
            state = np.concatenate([p[0] for p in parts])
            obs = np.concatenate([p[1] for p in parts])
        self._state, self._obs = self._tensor(state), self._tensor(obs)
        return self._state, self._obs

    def step(self, joint_action: torch.Tensor) -> StepResult:
        """Apply ``joint_action [N, A]`` (agent actions concatenated in agent order) to all copies.

        Actions are passed to the envs as float32 as given (MuJoCo clamps controls to its own
        ranges); out-of-bound values are not clipped here.

        Raises:
            ValueError: ``joint_action`` is not a floating tensor of shape ``[N, A]`` or holds
                NaN/inf.
            RuntimeError: :meth:`reset` was not called, or a worker failed.
        """
        self._check_open()
        if self._state is None:
            raise RuntimeError("VectorMultiAgentEnv: call reset() before step()")
        check_tensor(
            "joint_action",
            joint_action,
            (self.num_envs, self.spec.joint_action_dim),
            floating=True,
        )
        if joint_action.dtype == torch.float32 and joint_action.device.type == "cpu":
            actions = joint_action.detach().numpy()
        else:
            actions = joint_action.detach().to(device="cpu", dtype=torch.float32).numpy()
        if not np.isfinite(actions.sum()):  # one reduction; the exact check only on failure
            check_finite("joint_action", joint_action)
        if self._group is not None:
            arrays = self._group.step(actions)
        else:
            for w, (a, b) in zip(self._workers, self._bounds, strict=True):
                w.send("step", actions[a:b])
            parts = [w.recv() for w in self._workers]
            arrays = tuple(np.concatenate([p[k] for p in parts]) for k in range(len(_STEP_FIELDS)))
        tensors = [torch.from_numpy(x) for x in arrays]
        if self.device.type != "cpu":
            tensors = [t.to(self.device) for t in tensors]
        result = StepResult(*tensors)
        self._state, self._obs = result.next_state, result.next_obs
        return result

    def close(self) -> None:
        """Close every env copy and stop the workers (idempotent)."""
        if not self._closed:
            self._closed = True
            self._finalizer()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("VectorMultiAgentEnv: the env is closed")

    def __enter__(self) -> VectorMultiAgentEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"VectorMultiAgentEnv(num_envs={self.num_envs}, mode={self.mode!r}, "
            f"agents={list(self.spec.agent_names)})"
        )


def _close_resources(group: _EnvGroup | None, workers: list[_Worker]) -> None:
    if group is not None:
        group.close()
    if workers:
        _shutdown(workers)


# --------------------------------------------------------------------------- collection
class BatchedMultiAgentEnv(Protocol):
    """What :func:`collect` steps: :class:`VectorMultiAgentEnv` or
    :class:`dimalib.envs.bidexhands.BiDexHandsVecEnv`."""

    num_envs: int

    @property
    def needs_reset(self) -> bool: ...

    @property
    def state(self) -> torch.Tensor: ...

    @property
    def obs(self) -> torch.Tensor: ...

    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]: ...

    def step(self, joint_action: torch.Tensor) -> StepResult: ...


class RealVectorEnv(BatchedMultiAgentEnv, Protocol):
    """A batched real env with its spec and ``close``: :class:`VectorMultiAgentEnv`,
    :class:`dimalib.envs.bidexhands.BiDexHandsVecEnv`, or what a registered env's batched factory
    returns (:func:`dimalib.envs.registry.make_vector_env`).

    An env whose ``reset(seed=...)`` cannot seed it (Isaac Gym is seeded once, when built) says so
    with a ``seedable = False`` attribute; without the attribute it counts as seedable.
    """

    spec: MultiAgentSpec

    def close(self) -> None: ...


class TransitionSink(Protocol):
    """What :func:`collect` writes into: ``dimalib.data.buffer.ReplayBuffer`` or anything with
    the same ``add`` (rows are the ``N`` env streams)."""

    def add(
        self,
        state: torch.Tensor,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        next_state: torch.Tensor,
        next_obs: torch.Tensor,
    ) -> Any: ...


@dataclass(frozen=True)
class CollectResult:
    """What :func:`collect` gathered.

    Attributes:
        env_steps: transitions collected (``steps × N``).
        episode_returns: ``[E]`` float32, returns of the episodes that ended during the call (an
            episode that began in an earlier call counts whole).
        episode_lengths: ``[E]`` int64, their lengths.
    """

    env_steps: int
    episode_returns: torch.Tensor
    episode_lengths: torch.Tensor

    @property
    def num_episodes(self) -> int:
        return int(self.episode_returns.numel())

    @property
    def mean_return(self) -> float:
        """Mean finished-episode return (NaN when no episode ended)."""
        if self.num_episodes == 0:
            return float("nan")
        return float(self.episode_returns.mean())


def collect(
    venv: BatchedMultiAgentEnv,
    policy: Policy,
    steps: int,
    buffer: TransitionSink | None = None,
    *,
    seed: int | None = None,
) -> CollectResult:
    """Step ``venv`` ``steps`` times with ``policy`` and store the transitions in ``buffer``.

    Each step calls ``policy(obs [N, O], state [N, S]) -> joint_action [N, A]`` once for the whole
    batch (under ``torch.no_grad()``), steps the copies and calls ``buffer.add(state, obs, action,
    reward, terminated, truncated, next_state, next_obs)`` with ``[N, ...]`` rows, where
    ``next_*`` are the true successors (``final_*`` of :class:`StepResult`, so the last state of an
    episode that ended, not the reset state). Collection continues from the venv's current state;
    it is reset (with ``seed``) only if it never was.

    Args:
        venv: the vector env (:class:`VectorMultiAgentEnv` or the Bi-DexHands adapter).
        policy: batched policy.
        steps: number of batched steps (``steps × N`` transitions).
        buffer: optional sink with the ``ReplayBuffer.add`` signature.
        seed: seed of the first reset if the venv was never reset.

    Raises:
        ValueError: ``steps`` negative, or the policy output is not a finite ``[N, A]`` tensor.
    """
    check_int("steps", steps, minimum=0)
    if venv.needs_reset:
        venv.reset(seed=seed)
    state, obs = venv.state, venv.obs
    # per-step episode bookkeeping stays lazy (no device sync per step): reduced once at the end
    ends: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    with torch.no_grad():
        for _ in range(steps):
            action = policy(obs, state)
            result = venv.step(action)
            if buffer is not None:
                if action.dtype != torch.float32 or action.device != result.reward.device:
                    action = action.to(device=result.reward.device, dtype=torch.float32)
                buffer.add(
                    state=state,
                    obs=obs,
                    action=action,
                    reward=result.reward,
                    terminated=result.terminated,
                    truncated=result.truncated,
                    next_state=result.final_state,
                    next_obs=result.final_obs,
                )
            ends.append(
                (result.terminated, result.truncated, result.episode_return, result.episode_length)
            )
            state, obs = result.next_state, result.next_obs
    if ends:
        term, trunc, ret, length = (torch.stack(x) for x in zip(*ends, strict=True))
        done = term | trunc  # [steps, N], time-major: episodes listed in the order they ended
        returns, lengths = ret[done], length[done]
    else:
        returns = torch.zeros(0)
        lengths = torch.zeros(0, dtype=torch.int64)
    return CollectResult(
        env_steps=steps * venv.num_envs, episode_returns=returns, episode_lengths=lengths
    )
