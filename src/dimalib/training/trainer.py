"""`Trainer`: DIMA paired with learning in imagination (paper Algorithm 1, App. F).

One call of :meth:`Trainer.run_epoch` is one iteration of Algorithm 1's ``training_loop``:

1. **collect_experience** — the envs are reset (Algorithm 1 resets at the start of every
   collection; see *Determinism* below) and ``env_steps_per_epoch`` real transitions are collected
   with the learner's stochastic actions (:meth:`Trainer.collect`) into the replay buffer;
2. **world model** — once the buffer holds ``wm_warmup_transitions``: ``steps_per_epoch`` updates
   of the state decoder, then of the diffusion dynamics model, then of the reward/termination
   model (:class:`~dimalib.training.world_model_trainer.WorldModelTrainer`, Table 4 optimisers;
   :meth:`Trainer.train_world_model`);
3. **update_actor_critic** — once more than ``policy_warmup_wm_epochs`` world-model epochs are
   done: ``policy_updates_per_epoch`` times, imagine ``num_envs`` rollouts of ``horizon`` steps
   from real start contexts and make one learner update on them
   (:meth:`Trainer.learn_in_imagination`);
4. **evaluation** — whenever the env-step counter crosses a multiple of ``eval_every_env_steps``:
   ``eval_episodes`` episodes of the deterministic actor (its mean action) in separate env copies
   (:meth:`Trainer.evaluate`, :meth:`Trainer.world_model_fidelity`).

The learner is DIMA's MAPPO unless ``Trainer(..., learner=...)`` gives another
:class:`~dimalib.algorithms.protocols.Learner`. The metrics file is
:class:`~dimalib.training.metrics.MetricsLogger`'s; the checkpoint format is
:mod:`dimalib.training.checkpoint`'s.

Every epoch's metrics go to ``history``, to ``LOG_DIR/metrics.csv`` (always, when a ``log_dir``
is given) and to TensorBoard under ``LOG_DIR/tb`` (only when ``torch.utils.tensorboard`` imports,
i.e. when the ``tensorboard`` package is installed), against the env-step counter.

**Determinism and resuming.** A run is a function of its seed: the envs are reset with seeds
derived from ``(seed, epoch)``, the actor samples from ``torch.Generator`` s, the replay sampling
and imagination use their own generators, and the global torch / numpy / ``random`` RNGs are seeded
at construction. A MuJoCo env's internal state cannot be checkpointed, so dimalib never needs to:
at the start of **every** epoch the running episodes are closed in the buffer
(``ReplayBuffer.end_episodes``) and the envs are reset with the epoch's seed — identically in an
uninterrupted and in a resumed run. :meth:`Trainer.save_checkpoint` writes (atomically, versioned)
the world model, its three optimisers, the learner (MAPPO: actor, critic with ValueNorm, both
optimisers), the replay buffer, the counters, every RNG state and the config; :meth:`Trainer.resume`
restores them, so the next epoch's metrics equal those of the uninterrupted run exactly (timings
aside). With ``reset_envs_each_epoch=False`` episodes run across epochs and a resumed run starts
new episodes at the resume point (then not bit-identical). Bi-DexHands (Isaac Gym) envs are seeded
once, when built, and cannot be reset with a seed: runs there are not reproducible bit for bit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
import warnings
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist

from dimalib.algorithms.mappo import MAPPO
from dimalib.algorithms.protocols import Learner
from dimalib.data.buffer import ReplayBuffer
from dimalib.data.buffer_store import BufferStore
from dimalib.envs import collect
from dimalib.envs import registry as env_registry
from dimalib.envs.episodes import evaluate_policy, is_seedable
from dimalib.envs.vector import RealVectorEnv as _RealVectorEnv
from dimalib.imagination.env import ImaginationEnv
from dimalib.spec import MultiAgentSpec
from dimalib.training import distributed
from dimalib.training.checkpoint import BUFFER_SUFFIX as BUFFER_SUFFIX
from dimalib.training.checkpoint import (
    LEARNER_KEY,
    buffer_folder,
    global_rng_state,
    load_buffer,
    read_checkpoint,
    set_global_rng_state,
    write_checkpoint,
)
from dimalib.training.config import TrainerConfig, trainer_config
from dimalib.training.diagnostics import true_dynamics, world_model_diagnostics
from dimalib.training.metrics import MetricsLogger
from dimalib.training.world_model_trainer import WorldModelTrainer
from dimalib.utils.checks import check_device, check_int
from dimalib.utils.precision import native_bf16
from dimalib.world_model import DIMAWorldModel

__all__ = [
    "TOY_ENV",
    "MetricsLogger",
    "RealVectorEnv",
    "Trainer",
    "check_env_name",
    "evaluate_policy",
    "known_trainer_envs",
    "make_vector_env",
]

logger = logging.getLogger(__name__)

TOY_ENV = env_registry.TOY_ENV
"""Name of the fast analytic test env: :class:`~dimalib.envs.toy.CoupledPointMasses` with three
agents of action sizes 1, 2 and 3 (episodes of 100 steps unless ``max_episode_steps`` says)."""


# --------------------------------------------------------------------------- environments
# Env names resolve in dimalib.envs.registry; these are the trainer's names for its functions.
class RealVectorEnv(_RealVectorEnv, Protocol):
    """A batched real env with its spec (:class:`dimalib.envs.vector.RealVectorEnv`):
    ``VectorMultiAgentEnv``, ``BiDexHandsVecEnv`` or a registered env's own batch."""


def known_trainer_envs() -> list[str]:
    """Env names :class:`Trainer` accepts by name (:func:`dimalib.envs.registry.known_names`):
    ``"toy"``, the seven MAMuJoCo tasks of the paper, the four Bi-DexHands tasks and their four
    MuJoCo re-implementations (``"MjShadowHand..."``), then the names you registered; any other
    MAMuJoCo ``"Scenario-Conf"`` works too."""
    return env_registry.known_names()


def check_env_name(name: str) -> None:
    """Raise ``ValueError`` listing the known names unless ``name`` is registered
    (:func:`dimalib.envs.registry.lookup`), i.e. one :func:`make_vector_env` can build."""
    if not isinstance(name, str):
        raise ValueError(f"env: expected a string, received {type(name).__name__}")
    try:
        env_registry.lookup(name)
    except env_registry.UnknownEnvError:
        patterns = "; ".join(
            f"or another {e.description} such as {' or '.join(map(repr, e.examples))}"
            for e in env_registry.entries()
            if e.is_pattern
        )
        raise ValueError(
            f"env: unknown environment {name!r}; expected one of {known_trainer_envs()}"
            + (f" ({patterns})" if patterns else "")
            + env_registry.suggest(name)
        ) from None


def make_vector_env(
    name: str,
    num_envs: int,
    *,
    seed: int = 0,
    max_episode_steps: int | None = None,
    device: torch.device | str = "cpu",
) -> RealVectorEnv:
    """``num_envs`` copies of a real env as one batched env
    (:func:`dimalib.envs.registry.make_vector_env`).

    ``"toy"``, MAMuJoCo names and the MuJoCo Bi-DexHands tasks (``"MjShadowHand..."``) give an
    in-process ``VectorMultiAgentEnv`` (seeded at each ``reset(seed=...)``); Bi-DexHands names
    give Isaac Gym's own batched env, seeded here with ``seed`` (it raises ``ImportError``
    explaining how to install Isaac Gym when it is missing).

    Raises:
        ValueError: unknown name.
        ImportError: a Bi-DexHands task without Isaac Gym.
    """
    check_env_name(name)
    return env_registry.make_vector_env(
        name, num_envs, seed=seed, max_episode_steps=max_episode_steps, device=device
    )


# --------------------------------------------------------------------------- seeds
def _derive_seed(seed: int, tag: str, *keys: int) -> int:
    """A seed for one purpose (``tag``) and moment (``keys``), independent of the others."""
    seq = np.random.SeedSequence([seed, zlib.crc32(tag.encode()), *keys])
    return int(seq.generate_state(1, dtype=np.uint32)[0]) % (2**31 - 2**16)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


class _RewardTally:
    """Forwards transitions to the buffer and sums their rewards (on the device, no sync)."""

    def __init__(self, buffer: ReplayBuffer) -> None:
        self.buffer = buffer
        self.total = torch.zeros((), dtype=torch.float64)
        self.count = 0

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
    ) -> None:
        self.buffer.add(state, obs, action, reward, terminated, truncated, next_state, next_obs)
        self.total = self.total.to(reward.device) + reward.double().sum()
        self.count += int(reward.numel())


# --------------------------------------------------------------------------- trainer
class Trainer:
    """DIMA + MAPPO on a real multi-agent env (Algorithm 1); see the module docstring.

    The learner is any :class:`~dimalib.algorithms.protocols.Learner` (default: DIMA's
    :class:`~dimalib.algorithms.mappo.MAPPO`); the trainer calls only the protocol's methods.

    Args:
        env: an env name (:func:`known_trainer_envs`).
        config: the run's settings (default: the ``"paper"`` preset for ``env``).
        seed: seeds everything (non-negative); the global torch, numpy and ``random`` RNGs are
            seeded with it here.
        device: where the networks, the replay buffer and imagination live.
        log_dir: folder of ``metrics.csv`` (and TensorBoard's ``tb/``); None logs nothing to disk.
        tensorboard: write TensorBoard events when ``torch.utils.tensorboard`` imports.
        learner: the learner, or a factory ``learner(spec, device) -> Learner`` called once the
            env's spec is known; None builds ``MAPPO(spec, config.mappo, device)``.

    Attributes:
        epoch: epochs completed. ``env_steps``: real transitions collected.
        wm_epochs: epochs with world-model training. ``policy_epochs``: epochs with policy updates.
        history: one metrics dict per completed epoch.
        learner: the :class:`~dimalib.algorithms.protocols.Learner` (``mappo`` is an alias).

    Examples:
        >>> trainer = Trainer("HalfCheetah-2x3", trainer_config("cpu"), log_dir="runs/x")  # doctest: +SKIP
        >>> while trainer.env_steps < 30_000:  # doctest: +SKIP
        ...     row = trainer.run_epoch()
        >>> trainer.save_checkpoint("runs/x/checkpoint.pt")  # doctest: +SKIP
    """

    def __init__(
        self,
        env: str,
        config: TrainerConfig | None = None,
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
        log_dir: str | os.PathLike[str] | None = None,
        tensorboard: bool = True,
        learner: Learner | Callable[[MultiAgentSpec, torch.device], Learner] | None = None,
    ) -> None:
        check_env_name(env)
        check_int("seed", seed, minimum=0)
        if config is not None and not isinstance(config, TrainerConfig):
            raise ValueError(f"config: expected a TrainerConfig, received {type(config).__name__}")
        if learner is not None and not (isinstance(learner, Learner) or callable(learner)):
            raise ValueError(
                "learner: expected a Learner or a factory (spec, device) -> Learner, received "
                f"{type(learner).__name__}"
            )
        device = check_device("device", device)
        self.env_name = env
        self.config = cfg = config or trainer_config("paper", env)
        if cfg.world_model.reward.autocast_bf16 and not native_bf16(device):
            warnings.warn(
                f"world_model.reward.autocast_bf16: {device} has no native bfloat16 matrix "
                "products (CPU: no avx512_bf16 or AMX), so they are emulated and slower than "
                "float32 (measured 45x on an AVX2-only CPU); set it to False here",
                RuntimeWarning,
                stacklevel=2,
            )
        self.seed = seed
        self.device = device
        self.log_dir = None if log_dir is None else Path(log_dir)
        self._tensorboard = tensorboard

        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)

        # real envs: one batch for collection, a separate one (one copy per episode) for evaluation
        self.venv = make_vector_env(
            env,
            cfg.num_envs,
            seed=seed,
            max_episode_steps=cfg.max_episode_steps,
            device=self.device,
        )
        try:
            self.eval_venv = make_vector_env(
                env,
                cfg.eval_episodes,
                seed=_derive_seed(seed, "eval-env"),
                max_episode_steps=cfg.max_episode_steps,
                device=self.device,
            )
        except BaseException:
            self.venv.close()
            raise
        self.spec = spec = self.venv.spec
        try:
            cfg.check_spec(spec)
            if cfg.agent_groups is not None:  # how the models treat the team (issue "scale")
                self.spec = spec = spec.with_groups(cfg.agent_groups)
            self.buffer = ReplayBuffer(
                spec, cfg.buffer_capacity, num_streams=cfg.num_envs, device=self.device
            )
            self._buffer_store: BufferStore | None = None  # set by the first save_checkpoint
            self.world_model = DIMAWorldModel(spec, cfg.world_model).to(self.device)
            # replay sampling runs on the CPU generator whatever the device (the buffer accepts it)
            self.wm_generator = _generator(torch.device("cpu"), _derive_seed(seed, "wm"))
            self.wm_trainer = WorldModelTrainer(
                self.world_model, cfg.wm_training, generator=self.wm_generator
            )
            self.imagination = ImaginationEnv(self.world_model, self.buffer, cfg.imagination)
            self.learner = self._make_learner(learner, spec)
            self.policy_generator = _generator(self.device, _derive_seed(seed, "policy"))
            self.collect_generator = _generator(self.device, _derive_seed(seed, "collect"))
        except BaseException:
            self.venv.close()
            self.eval_venv.close()
            raise

        # torch.distributed (:meth:`distribute`): this process's rank and the number of ranks
        self.rank, self.world_size = 0, 1
        self._group: Any = None
        self.epoch = 0
        self.env_steps = 0
        self.wm_epochs = 0
        self.policy_epochs = 0
        self.next_eval = cfg.eval_every_env_steps
        self.total_time = 0.0  # wall seconds of completed epochs, over all sessions
        self.history: list[dict[str, float]] = []
        self._metrics: MetricsLogger | None = None
        self._true_dynamics: Any = None  # built on first use by world_model_fidelity
        self._session_start = time.perf_counter()
        # called with the name of each phase as it starts ("collect", "world model: decoder",
        # ..., "imagination 2/4", "evaluation"): a progress display for long epochs
        self.on_phase: Callable[[str], None] | None = None
        self._session_steps = 0
        logger.info(
            "Trainer: %s, %d agents, obs %s, actions %s, state %d; world model %.2fM parameters",
            env,
            spec.n_agents,
            spec.obs_dims,
            spec.action_dims,
            spec.state_dim,
            sum(p.numel() for p in self.world_model.parameters()) / 1e6,
        )

    # ------------------------------------------------------------------ learner
    def _make_learner(
        self,
        learner: Learner | Callable[[MultiAgentSpec, torch.device], Learner] | None,
        spec: MultiAgentSpec,
    ) -> Learner:
        if learner is None:
            return MAPPO(spec, self.config.mappo, self.device)
        # a class has the protocol's methods as attributes too: it is a factory, not a learner
        if isinstance(learner, Learner) and not isinstance(learner, type):
            return learner
        built = learner(spec, self.device)
        if not isinstance(built, Learner):
            raise ValueError(
                "learner: the factory returned a "
                f"{type(built).__name__}, which lacks the Learner protocol's methods (act, eval, "
                "collect_imagined_rollout, update, state_dict, load_state_dict)"
            )
        return built

    @property
    def mappo(self) -> Learner:
        """The learner (:attr:`learner`; the name from when MAPPO was the only one)."""
        return self.learner

    # ------------------------------------------------------------------ phases
    def _collect_policy(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        cfg, spec = self.config, self.spec
        if cfg.collect_policy == "random" and self.policy_epochs == 0:
            low, high = spec.action_bounds(device=self.device)
            gen = self.collect_generator

            def random_policy(obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
                u = torch.rand(
                    obs.shape[0], spec.joint_action_dim, generator=gen, device=gen.device
                )
                return low + (high - low) * u.to(self.device)

            return random_policy

        def actor_policy(obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
            return self.learner.act(obs.to(self.device), generator=self.collect_generator)

        return actor_policy

    # -------------------------------------------------------------- distributed
    def distribute(self, group: Any = None) -> Trainer:
        """Run this trainer as one rank of ``torch.distributed`` (under ``torchrun``; call
        :func:`~dimalib.training.distributed.init_from_env` first). Every rank builds (or
        resumes) the same trainer and calls this; then rank 0 alone steps the real envs and
        broadcasts each epoch's transitions, so every replay buffer holds the same data; every
        rank trains the world model on its share of each batch (``wm_training`` batches divided
        by the number of ranks, gradients averaged: :func:`~dimalib.training.distributed.
        distributed_trainer`); rank 0 learns the policy in imagination, evaluates, logs
        (``log_dir`` is dropped on the other ranks) and checkpoints. On one rank the run equals
        the undistributed one exactly. A checkpoint holds rank 0's replay-sampling stream: after a
        resume the other ranks draw fresh streams, so a multi-rank run resumes equivalently, not
        bit for bit. Returns ``self``.

        Raises:
            RuntimeError: torch.distributed is not initialised, or the ranks' trainers differ
                (seed, env, counters or buffer size).
            ValueError: a world-model batch that the number of ranks does not divide.
        """
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "distribute: torch.distributed is not initialised; launch with torchrun and call "
                "dimalib.training.distributed.init_from_env() first"
            )
        rank, world = dist.get_rank(group), dist.get_world_size(group)
        config = zlib.crc32(repr(sorted(self.config.to_dict().items())).encode())
        mine = (self.env_name, self.seed, self.epoch, self.env_steps, len(self.buffer), config)
        every: list[Any] = [None] * world
        dist.all_gather_object(every, mine, group=group)
        if any(other != every[0] for other in every):
            raise RuntimeError(
                f"distribute: expected the same trainer on every rank (env, seed, epoch, env "
                f"steps, buffer size, config checksum), received {every}"
            )
        # rank 0 keeps its replay-sampling stream (one rank == the plain run); the others get theirs
        gen = self.wm_generator
        if rank != 0:
            gen = _generator(
                torch.device("cpu"), _derive_seed(self.seed, "wm-rank", rank, self.epoch)
            )
        wm_trainer = distributed.distributed_trainer(
            self.world_model, self.config.wm_training, generator=gen, group=group
        )
        wm_trainer.load_state_dict(self.wm_trainer.state_dict())
        self.wm_trainer, self.wm_generator = wm_trainer, gen
        self.rank, self.world_size, self._group = rank, world, group
        if rank != 0:
            self.log_dir = None
        return self

    def collect(self) -> dict[str, float]:
        """Algorithm 1 ``collect_experience``: reset, then ``env_steps_per_epoch`` transitions
        (the learner's stochastic actions, or uniform ones during a random warm-up)."""
        cfg = self.config
        reset = cfg.reset_envs_each_epoch or self.venv.needs_reset
        if self.world_size > 1:
            reset = distributed.sync_flag(reset, self._group, device=self.device)  # rank 0's
        if reset:
            self.buffer.end_episodes()  # the cut episode must not run into the next one
            if self.rank == 0:
                seed = _derive_seed(self.seed, "collect-reset", self.epoch)
                self.venv.reset(seed=seed if is_seedable(self.venv) else None)
        steps = cfg.env_steps_per_epoch // cfg.num_envs
        if self.rank != 0:  # rank 0's transitions, in its order
            distributed.receive_transitions(
                self.buffer, self.spec, steps, cfg.num_envs, device=self.device, group=self._group
            )
            self.env_steps += steps * cfg.num_envs
            self._session_steps += steps * cfg.num_envs
            return {"buffer/size": len(self.buffer)}
        tally = _RewardTally(self.buffer)
        sink = tally if self.world_size == 1 else distributed.TransitionRecorder(tally)
        self.learner.eval()
        result = collect(self.venv, self._collect_policy(), steps, sink)
        if isinstance(sink, distributed.TransitionRecorder):
            distributed.send_transitions(sink, self.spec, self._group)
        self.env_steps += result.env_steps
        self._session_steps += result.env_steps
        return {
            "collect/reward_mean": float(tally.total) / max(tally.count, 1),
            "collect/episodes": result.num_episodes,
            "collect/episode_return": result.mean_return,
            "buffer/size": len(self.buffer),
        }

    def _init_normalizer(self) -> None:
        """Seed the state statistics with every stored state before the first model update.

        The decoder and the reward model train before the dynamics model in an epoch and read the
        normalised state; without this their first epoch would see raw states. Afterwards the
        dynamics loss keeps updating the statistics (``DenoiserConfig.update_normalizer``).
        """
        states = [self.buffer.stream_data(i)["state"] for i in range(self.buffer.num_streams)]
        self.world_model.update_normalizer(torch.cat(states).to(self.device))

    def train_world_model(self) -> dict[str, float]:
        """Algorithm 1's world-model update: ``steps_per_epoch`` steps of the state decoder, the
        dynamics model and the reward/termination model; returns their ``wm/*`` metrics."""
        if self.wm_epochs == 0:
            self._init_normalizer()
        metrics = self.wm_trainer.train_epoch(
            self.buffer, on_phase=lambda name: self._phase(f"world model: {name}")
        )
        self.wm_epochs += 1
        return {f"wm/{k}": v for k, v in metrics.items()}

    def _phase(self, name: str) -> None:
        if self.on_phase is not None:
            self.on_phase(name)

    def learn_in_imagination(self) -> dict[str, float]:
        """Algorithm 1 ``update_actor_critic``, ``policy_updates_per_epoch`` times: the learner's
        update statistics and the imagined rewards, averaged, as ``policy/*``."""
        cfg = self.config
        sums: dict[str, float] = {}
        n = cfg.policy_updates_per_epoch
        for k in range(n):
            self._phase(f"imagination {k + 1}/{n}")
            rollout = self.learner.collect_imagined_rollout(
                self.imagination,
                generator=self.policy_generator,
                seed=_derive_seed(self.seed, "imagine", self.epoch, k),
            )
            stats = dict(self.learner.update(rollout, generator=self.policy_generator))
            stats["imagined_return"] = float(rollout["rewards"].sum(0).mean())
            # per imagined step, to compare with the real collect/reward_mean of the same actor
            stats["imagined_reward_mean"] = float(rollout["rewards"].mean())
            stats["imagined_terminated"] = float(rollout["terminated"][-1].float().mean())
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value
        self.policy_epochs += 1
        return {f"policy/{k}": v / n for k, v in sums.items()}

    def evaluate(self) -> dict[str, float]:
        """``eval_episodes`` real episodes of the learner's deterministic actions, one per
        separate env copy, reset with a seed derived from ``(seed, env_steps)``; with
        ``eval_sampled_actions`` also as many of its sampled actions from the same reset seeds
        (``eval/sampled_return_mean``, ``eval/sampled_return_std``), drawn from a generator of
        their own so that training's random streams are untouched."""
        self.learner.eval()
        seed = _derive_seed(self.seed, "eval", self.env_steps)
        result = evaluate_policy(
            self.eval_venv, lambda obs: self.learner.act(obs, deterministic=True), seed=seed
        )
        if self.config.eval_sampled_actions:
            gen = _generator(self.device, _derive_seed(self.seed, "eval_sampled", self.env_steps))
            sampled = evaluate_policy(
                self.eval_venv, lambda obs: self.learner.act(obs, generator=gen), seed=seed
            )
            for key in ("return_mean", "return_std"):
                result[f"eval/sampled_{key}"] = sampled[f"eval/{key}"]
        return result

    def world_model_fidelity(self) -> dict[str, float]:
        """Action effects and model bias of the world model against the true env
        (:func:`~dimalib.training.diagnostics.world_model_diagnostics`; see
        ``TrainerConfig.fidelity_windows``). Empty when off, before world-model training, or
        when the env has no true dynamics to compare with. Training is unaffected."""
        n = self.config.fidelity_windows
        if n == 0 or self.wm_epochs == 0:
            return {}
        if self._true_dynamics is None:
            self._true_dynamics = (
                true_dynamics(self.env_name, max_episode_steps=self.config.max_episode_steps)
                or False
            )
        if self._true_dynamics is False:
            return {}
        self.learner.eval()
        return world_model_diagnostics(
            self.world_model,
            self.buffer,
            lambda obs: self.learner.act(obs, deterministic=True),
            self._true_dynamics,
            windows=n,
            imagination=self.config.imagination,
            seed=_derive_seed(self.seed, "fidelity", self.env_steps),
        )

    # ------------------------------------------------------------------ the loop
    def run_epoch(self, *, force_eval: bool = False) -> dict[str, float]:
        """One iteration of Algorithm 1 (see the module docstring); returns the epoch's metrics.

        Args:
            force_eval: evaluate at the end of this epoch even off the evaluation schedule
                (e.g. the last epoch of a run).
        """
        cfg = self.config
        start = time.perf_counter()
        row: dict[str, float] = {}
        self._phase("collect")
        row.update(self.collect())
        t_collect = time.perf_counter()
        if len(self.buffer) >= cfg.wm_warmup_transitions:
            row.update(self.train_world_model())
        t_wm = time.perf_counter()
        learns = self.wm_epochs > cfg.policy_warmup_wm_epochs and cfg.policy_updates_per_epoch > 0
        if learns and self.rank == 0:  # the policy lives on rank 0 (distribute)
            row.update(self.learn_in_imagination())
        t_policy = time.perf_counter()
        self.epoch += 1
        if force_eval or self.env_steps >= self.next_eval:
            if self.rank == 0:
                self._phase("evaluation")
                row.update(self.evaluate())
                row.update(self.world_model_fidelity())
            while self.next_eval <= self.env_steps:
                self.next_eval += cfg.eval_every_env_steps
        end = time.perf_counter()
        self.total_time += end - start
        session = end - self._session_start
        row = {
            "epoch": self.epoch,
            "env_steps": self.env_steps,
            "wm_epochs": self.wm_epochs,
            "policy_epochs": self.policy_epochs,
            **row,
            "time/collect_s": t_collect - start,
            "time/world_model_s": t_wm - t_collect,
            "time/policy_s": t_policy - t_wm,
            "time/eval_s": end - t_policy,
            "time/epoch_s": end - start,
            "time/total_s": self.total_time,
            "perf/env_steps_per_s": self._session_steps / max(session, 1e-9),
        }
        self.history.append(row)
        if self.log_dir is not None:
            if self._metrics is None:
                self._metrics = MetricsLogger(
                    self.log_dir, tensorboard=self._tensorboard, history=self.history[:-1]
                )
            self._metrics.log(row)
        logger.debug("epoch %d: %s", self.epoch, row)
        return row

    def train(
        self,
        total_env_steps: int,
        callback: Callable[[Mapping[str, float]], bool | None] | None = None,
    ) -> list[dict[str, float]]:
        """Run epochs until ``env_steps >= total_env_steps``; the last one is evaluated.

        ``callback(row)`` is called after every epoch; returning ``False`` stops early.
        Returns :attr:`history`.
        """
        per_epoch = self.config.env_steps_per_epoch
        while self.env_steps < total_env_steps:
            last = self.env_steps + per_epoch >= total_env_steps
            row = self.run_epoch(force_eval=last)
            stop = callback is not None and callback(row) is False
            if self.world_size > 1:  # rank 0's callback decides for every rank
                stop = distributed.sync_flag(stop, self._group, device=self.device)
            if stop:
                break
        return self.history

    @property
    def last_eval(self) -> dict[str, float] | None:
        """The most recent evaluation: ``env_steps`` and the ``eval/*`` metrics (None if none)."""
        for row in reversed(self.history):
            if "eval/return_mean" in row:
                return {k: v for k, v in row.items() if k == "env_steps" or k.startswith("eval/")}
        return None

    # ------------------------------------------------------------------ checkpoints
    def _rng_state(self) -> dict[str, Any]:
        return {
            **global_rng_state(),
            "generators": {
                "wm": self.wm_generator.get_state(),
                "policy": self.policy_generator.get_state(),
                "collect": self.collect_generator.get_state(),
            },
            "device": str(self.device),
        }

    def _set_rng_state(self, state: Mapping[str, Any]) -> None:
        set_global_rng_state(state)
        gens = state["generators"]
        self.wm_generator.set_state(gens["wm"])
        if torch.device(state["device"]).type == self.device.type:
            self.policy_generator.set_state(gens["policy"])
            self.collect_generator.set_state(gens["collect"])
        else:
            logger.warning(
                "resuming on %s a run saved on %s: the policy's sampling generators restart from "
                "their seeds, so the run is not bit-identical to an uninterrupted one",
                self.device,
                state["device"],
            )

    def state_dict(self) -> dict[str, Any]:
        """The whole run state, the replay buffer included (tensors on the CPU where it matters).

        :meth:`save_checkpoint` writes this with the buffer replaced by the manifest of its
        incremental block files (:class:`~dimalib.data.buffer_store.BufferStore`)."""
        return {**self._state_without_buffer(), "buffer": self.buffer.state_dict()}

    def _state_without_buffer(self) -> dict[str, Any]:
        return {
            "env": self.env_name,
            "seed": self.seed,
            "device": str(self.device),
            "config": self.config,
            "config_dict": self.config.to_dict(),
            "spec": self.spec.to_dict(),
            "counters": {
                "epoch": self.epoch,
                "env_steps": self.env_steps,
                "wm_epochs": self.wm_epochs,
                "policy_epochs": self.policy_epochs,
                "next_eval": self.next_eval,
                "total_time": self.total_time,
            },
            "world_model": {k: v.detach().cpu() for k, v in self.world_model.state_dict().items()},
            "wm_optimizers": self.wm_trainer.state_dict(),
            LEARNER_KEY: self.learner.state_dict(),
            "rng": self._rng_state(),
            "history": [dict(r) for r in self.history],
        }

    def save_checkpoint(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole run state atomically (temp file, fsync, rename), versioned.

        Call it between epochs; :meth:`resume` continues exactly where this left off. The replay
        buffer goes to the folder ``<path>.buffer/`` beside it, incrementally: only the blocks of
        rows written since the previous save to the same path are written (a few MB per epoch
        instead of the whole buffer), so a checkpoint every epoch is cheap. The folder belongs to
        the checkpoint: copy or move both together. Under :meth:`distribute` only rank 0 saves.
        """
        if self.rank != 0:
            raise RuntimeError(
                f"save_checkpoint: only rank 0 saves a distributed run (this is rank {self.rank})"
            )
        t0 = time.perf_counter()
        path = Path(path)
        folder = buffer_folder(path)
        if self._buffer_store is None or self._buffer_store.folder != folder:
            self._buffer_store = BufferStore(folder)
        manifest = self._buffer_store.save(self.buffer)
        state = {**self._state_without_buffer(), "buffer": {"store": folder.name, **manifest}}
        out = write_checkpoint(state, path)
        self._buffer_store.commit(self.buffer)  # only now: the old files served the old file
        logger.info(
            "saved checkpoint at epoch %d / %d env steps to %s (%.1f s)",
            self.epoch,
            self.env_steps,
            out,
            time.perf_counter() - t0,
        )
        return out

    def _load(self, blob: Mapping[str, Any], path: Path) -> None:
        spec = MultiAgentSpec.from_dict(blob["spec"])
        if spec != self.spec:
            raise ValueError(f"checkpoint: saved for spec {spec}, the env now has {self.spec}")
        self.world_model.load_state_dict(blob["world_model"])
        self.wm_trainer.load_state_dict(blob["wm_optimizers"])
        self.learner.load_state_dict(blob[LEARNER_KEY])
        self.buffer, store = load_buffer(blob["buffer"], path, device=self.device, spec=spec)
        if store is not None:  # later saves to this path continue incrementally
            self._buffer_store = store
        self.imagination.source = self.buffer
        counters = blob["counters"]
        self.epoch = int(counters["epoch"])
        self.env_steps = int(counters["env_steps"])
        self.wm_epochs = int(counters["wm_epochs"])
        self.policy_epochs = int(counters["policy_epochs"])
        self.next_eval = int(counters["next_eval"])
        self.total_time = float(counters["total_time"])
        self.history = [dict(r) for r in blob["history"]]
        self._set_rng_state(blob["rng"])  # last: nothing after this may draw random numbers

    @classmethod
    def resume(
        cls,
        path: str | os.PathLike[str],
        *,
        device: torch.device | str | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        tensorboard: bool = True,
        learner: Learner | Callable[[MultiAgentSpec, torch.device], Learner] | None = None,
    ) -> Trainer:
        """Rebuild a trainer from :meth:`save_checkpoint`'s file (the file is only read).

        Args:
            path: the checkpoint.
            device: default: the device it was saved from.
            log_dir: where to continue ``metrics.csv``; its rows are rewritten from the
                checkpoint's history on the first epoch (rows written after the checkpoint by an
                interrupted run are dropped).
            tensorboard: as in the constructor.
            learner: as in the constructor: a learner of the kind that was saved (its
                ``load_state_dict`` receives the saved state); None: MAPPO.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a dimalib trainer checkpoint of this version, corrupt or incomplete.
        """
        if device is not None:
            device = check_device("device", device)
        blob = read_checkpoint(path)
        trainer = cls(
            str(blob["env"]),
            blob["config"],
            seed=int(blob["seed"]),
            device=blob["device"] if device is None else device,
            log_dir=log_dir,
            tensorboard=tensorboard,
            learner=learner,
        )
        try:
            trainer._load(blob, Path(path))
        except (KeyError, TypeError, RuntimeError, ValueError) as err:
            trainer.close()
            raise ValueError(f"path: {str(path)!r} is not a consistent checkpoint ({err})") from err
        logger.info(
            "resumed %s at epoch %d / %d env steps from %s",
            trainer.env_name,
            trainer.epoch,
            trainer.env_steps,
            path,
        )
        return trainer

    # ------------------------------------------------------------------ cleanup
    def close(self) -> None:
        """Close the envs and the log files (idempotent)."""
        for venv in (self.venv, self.eval_venv):
            with contextlib.suppress(Exception):
                venv.close()
        if hasattr(self._true_dynamics, "close"):
            self._true_dynamics.close()
        if self._metrics is not None:
            self._metrics.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
