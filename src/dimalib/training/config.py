"""Settings of a whole DIMA run (paper Algorithm 1) and its two presets.

:class:`TrainerConfig` gathers everything :class:`~dimalib.training.trainer.Trainer` needs: the
schedule of Algorithm 1 (env steps, world-model updates and policy updates per epoch, warm-up),
the three world-model networks (Table 3), their optimisation (Table 4), imagination (Table 4),
DIMA's MAPPO (Tables 1 and 4) and evaluation (§5.1). Every field cites where its value comes from.

Presets (:func:`trainer_config`):

* ``"paper"`` — the paper's values. Per epoch: 200 real env steps (MAMuJoCo; 500 Bi-DexHands),
  200 updates of each world-model component, 4 policy updates on 600 imagined rollouts of
  horizon 15. World-model training starts once 5000 transitions are stored and policy learning
  after 10 epochs of world-model training (both from the official code, see the design notes).
  Meant for a GPU: one full epoch on HalfCheetah-2x3 took 417 s on this project's 2-core CPU
  (1 torch thread; 385 s world model, 31 s imagination + PPO), i.e. about 1.7k env steps per hour.
  Its reveal schedule is the paper's too (one agent per denoising step, eq. 9), so it reproduces
  the published method; ``with_reveal(config, RevealSchedule("cumulative"))`` (the CLI's
  ``--reveal cumulative``) gives the schedule that keeps every agent's effect.
* ``"cpu"`` — the same algorithm (same schedule, warm-up, losses, optimisers, learning rates,
  horizon, MAPPO and evaluation) with a cheaper epoch: 50 instead of 200 updates per world-model
  component, a reward-model batch of 64 instead of 128, narrower/shallower networks (0.3M instead
  of 7.4M world-model parameters on HalfCheetah-2x3) and 200 instead of 600 imagined rollouts,
  the **cumulative** reveal schedule instead of the paper's one agent per step (measured
  more accurate, see docs/design.md "Reveal schedules"; ``--reveal sequential`` restores it),
  and a dynamics learning rate of 3e-3 instead of Table 4's 1e-4 (at 1e-4 and this budget the
  small denoiser has not learned the actions' effects when policy learning starts, and the
  policy exploits it; see docs/benchmarks.md "Learning evidence").
  Measured on HalfCheetah-2x3 on the same 2-core CPU, shared with other jobs (load 2-6), 1 torch
  thread, niced: a 30k-env-step run took 19.2 min (about 94k env steps per hour, warm-up
  included); epochs with policy learning took 7.0 s median, 9.4 s mean (about 77k-100k env steps
  per hour). Raise ``wm_training.steps_per_epoch`` if your machine has room.

Measured with ``examples/dima_mappo.py --env HalfCheetah-2x3 --preset cpu --total-env-steps 30000``
and, for the paper epoch, ``--preset paper --total-env-steps 1000 --set wm_warmup_transitions=1000
--set policy_warmup_wm_epochs=0`` (the 5th epoch is a full one).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from dimalib.algorithms.mappo import MAPPOConfig
from dimalib.envs.registry import UnknownEnvError, lookup
from dimalib.imagination.env import ImaginationConfig
from dimalib.spec import MultiAgentSpec
from dimalib.training.world_model_trainer import WorldModelTrainingConfig
from dimalib.utils.io import restore_fields
from dimalib.world_model.aggregate import WorldModelConfig
from dimalib.world_model.decoder import StateDecoderConfig
from dimalib.world_model.dynamics.denoiser import DenoiserConfig
from dimalib.world_model.dynamics.reveal import RevealSchedule
from dimalib.world_model.dynamics.sampler import EulerSampler, SamplerConfig
from dimalib.world_model.reward_termination import RewardTerminationConfig

__all__ = [
    "PRESETS",
    "ConfigError",
    "EnvFamily",
    "Preset",
    "TrainerConfig",
    "env_family",
    "trainer_config",
    "with_reveal",
]

EnvFamily = Literal["mamujoco", "bidexhands"]  # dimalib.envs.registry.ENV_FAMILIES
Preset = Literal["paper", "cpu"]
PRESETS: tuple[Preset, ...] = ("paper", "cpu")


def _positive_int(name: str, value: object, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, received {value!r}")


class ConfigError(ValueError):
    """A valid config that does not fit the environment it is used with (e.g. an imagination
    order naming agents the team does not have)."""


@dataclass(frozen=True)
class TrainerConfig:
    """Everything a DIMA run needs besides the env name, the seed and the device.

    Defaults are the ``"paper"`` preset for MAMuJoCo. Schedule of one epoch (Algorithm 1)::

        collect env_steps_per_epoch real transitions (actor, stochastic)
        if len(buffer) >= wm_warmup_transitions:
            wm_training.steps_per_epoch updates of the decoder, then the dynamics model,
            then the reward/termination model
            if more than policy_warmup_wm_epochs world-model epochs are done:
                policy_updates_per_epoch x (imagine imagination.num_envs rollouts of
                imagination.horizon steps, one MAPPO update)
        evaluate every eval_every_env_steps env steps (eval_episodes episodes, mean action)

    Attributes:
        env_steps_per_epoch: real transitions collected per epoch (Table 4: 200 MAMuJoCo,
            500 Bi-DexHands); must be a multiple of ``num_envs``.
        num_envs: env copies stepped together during collection (not in the paper; 1 keeps
            Algorithm 1's single ``env``; Bi-DexHands runs its copies inside Isaac Gym).
        wm_warmup_transitions: world-model training starts once the buffer holds this many
            transitions (official code: 5000, see the design notes).
        policy_warmup_wm_epochs: policy learning starts once this many world-model epochs are
            done (official code: 10 rounds, see the design notes).
        buffer_capacity: replay buffer size in transitions (Table 4: 2.5e5).
        reset_envs_each_epoch: Algorithm 1's ``collect_experience`` starts with ``env.reset()``.
            dimalib does exactly that: at the start of every epoch the running episodes are closed
            in the buffer (``ReplayBuffer.end_episodes``) and the envs are reset with a seed
            derived from ``(seed, epoch)``. It is also what makes a resumed run identical to an
            uninterrupted one (a MuJoCo env's state cannot be checkpointed). With ``False``,
            episodes run across epochs (longer episodes than ``env_steps_per_epoch``) and a
            resumed run starts new episodes where it resumes (then not bit-identical). Measured
            on HalfCheetah-2x3 (cpu preset, 5 seeds): ``False`` raised the 100k IQM from 1043
            to 1510, 95% CIs overlapping (docs/benchmarks.md, "Episodes across epochs").
        collect_policy: ``"actor"`` (Algorithm 1: sample ``a ~ π_ψ``, stochastic, from the
            start) or ``"random"`` (uniform random actions until policy learning starts, then
            the actor; not the paper's, a common warm-up choice).
        max_episode_steps: time limit of the real env (None: the env's default, 1000 for
            MAMuJoCo, the task's for Bi-DexHands, 100 for the toy env).
        world_model: the three networks (Table 3; the ``"cpu"`` preset shrinks them).
        wm_training: batches, AdamW settings and ``steps_per_epoch`` updates per component and
            epoch (Table 4).
        imagination: imagined rollouts per policy update and horizon (Table 4: 600, 15).
        mappo: DIMA's MAPPO (Tables 1 and 4; γ and η differ between MAMuJoCo and Bi-DexHands).
        policy_updates_per_epoch: imagine-then-update rounds per epoch (Table 4: 4).
        eval_every_env_steps: evaluate the deterministic actor in separate real env copies
            whenever the env-step counter crosses a multiple of this (§5.1: "fixed intervals of
            environment steps"; the interval is not given, dimalib's choice: 10k of a 1M budget).
        eval_episodes: episodes per evaluation (§5.1: 10).
        fidelity_windows: at every evaluation, measure on this many replay windows and start
            states how the dynamics model's next state answers each agent's action
            (``fidelity/ratio_<agent>``, ``fidelity/cosine_<agent>``) and how the deterministic
            actor's imagined ``H``-step return compares with its real one from the same starts
            (``bias/imagined_return``, ``bias/real_return``, ``bias/gap``), against the real
            MuJoCo simulator (MAMuJoCo) or the exact dynamics (``"toy"``); other envs skip it
            (:mod:`dimalib.training.diagnostics`). 0 turns it off. A diagnostic, not in the
            paper; it does not change training.
        eval_sampled_actions: also evaluate the actor's *sampled* actions (as collection acts)
            in the same ``eval_episodes`` episodes' reset seeds, logged as
            ``eval/sampled_return_mean`` and ``eval/sampled_return_std`` next to the mean
            action's ``eval/return_*``; the samples come from their own generator, so training is
            unchanged. A diagnostic, not in the paper (off: evaluation costs twice the env steps).
    """

    # Algorithm 1 schedule
    env_steps_per_epoch: int = 200  # Table 4: sampling env steps per epoch (MAMuJoCo)
    num_envs: int = 1  # not in the paper: Algorithm 1 steps one env
    wm_warmup_transitions: int = 5000  # official code (design notes)
    policy_warmup_wm_epochs: int = 10  # official code (design notes)
    buffer_capacity: int = 250_000  # Table 4: buffer size 2.5e5
    reset_envs_each_epoch: bool = True  # Algorithm 1: collect_experience starts with env.reset()
    collect_policy: Literal["actor", "random"] = "actor"  # Algorithm 1: a ~ π_ψ
    max_episode_steps: int | None = None  # env default (MAMuJoCo: 1000)
    # world model (Tables 3 and 4)
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)  # Table 3
    wm_training: WorldModelTrainingConfig = field(
        default_factory=WorldModelTrainingConfig
    )  # Table 4: batches 256/64/128, AdamW, 200 training steps per epoch
    # behaviour learning (Tables 1 and 4)
    imagination: ImaginationConfig = field(default_factory=ImaginationConfig)  # Table 4: 600, 15
    mappo: MAPPOConfig = field(default_factory=MAPPOConfig.mamujoco)  # Tables 1 and 4
    policy_updates_per_epoch: int = 4  # Table 4: training steps per epoch for policy learning
    # evaluation (§5.1)
    eval_every_env_steps: int = 10_000  # §5.1: fixed intervals (value not given; dimalib)
    eval_episodes: int = 10  # §5.1: 10 evaluation episodes
    fidelity_windows: int = 64  # dimalib diagnostic (0: off)
    eval_sampled_actions: bool = False  # dimalib diagnostic: also evaluate sampled actions
    # dimalib (issue "scale"): the env team's agent groups (MultiAgentSpec.groups), k groups of
    # consecutive agents or named ones ((name, (agent, ...)), ...); None: one group per agent
    agent_groups: int | tuple[tuple[str, tuple[str, ...]], ...] | None = None

    def __post_init__(self) -> None:
        _positive_int("env_steps_per_epoch", self.env_steps_per_epoch)
        _positive_int("num_envs", self.num_envs)
        if self.env_steps_per_epoch % self.num_envs:
            raise ValueError(
                f"env_steps_per_epoch: expected a multiple of num_envs={self.num_envs}, "
                f"received {self.env_steps_per_epoch}"
            )
        _positive_int("wm_warmup_transitions", self.wm_warmup_transitions)
        _positive_int("policy_warmup_wm_epochs", self.policy_warmup_wm_epochs, minimum=0)
        _positive_int("buffer_capacity", self.buffer_capacity, minimum=self.num_envs)
        if self.wm_warmup_transitions > self.buffer_capacity:
            raise ValueError(
                f"wm_warmup_transitions: expected at most buffer_capacity={self.buffer_capacity}, "
                f"received {self.wm_warmup_transitions}"
            )
        _positive_int("policy_updates_per_epoch", self.policy_updates_per_epoch, minimum=0)
        _positive_int("eval_every_env_steps", self.eval_every_env_steps)
        _positive_int("eval_episodes", self.eval_episodes)
        _positive_int("fidelity_windows", self.fidelity_windows, minimum=0)
        if not isinstance(self.eval_sampled_actions, bool):
            raise ValueError(
                f"eval_sampled_actions: expected a bool, received {self.eval_sampled_actions!r}"
            )
        if self.max_episode_steps is not None:
            _positive_int("max_episode_steps", self.max_episode_steps)
        if isinstance(self.agent_groups, numbers.Integral) and not isinstance(
            self.agent_groups, bool
        ):
            _positive_int("agent_groups", self.agent_groups)
        elif self.agent_groups is not None:
            groups = self.agent_groups
            if isinstance(groups, Mapping):
                groups = tuple(groups.items())
            if isinstance(groups, (str, bool)) or not isinstance(groups, Sequence):
                raise ValueError(
                    "agent_groups: expected a number of groups, (name, agents) pairs or None, "
                    f"received {self.agent_groups!r}"
                )
            pairs = tuple((str(name), tuple(members)) for name, members in groups)
            object.__setattr__(self, "agent_groups", pairs)
        if self.collect_policy not in ("actor", "random"):
            raise ValueError(
                f"collect_policy: expected 'actor' or 'random', received {self.collect_policy!r}"
            )
        for name, kind in (
            ("world_model", WorldModelConfig),
            ("wm_training", WorldModelTrainingConfig),
            ("imagination", ImaginationConfig),
            ("mappo", MAPPOConfig),
        ):
            value = getattr(self, name)
            if not isinstance(value, kind):
                raise ValueError(
                    f"{name}: expected a {kind.__name__}, received {type(value).__name__}"
                )
        max_steps = self.world_model.reward.max_steps
        if self.imagination.horizon > max_steps:
            raise ValueError(
                f"imagination.horizon: expected at most the reward model's max_steps={max_steps}, "
                f"received {self.imagination.horizon}"
            )

    def __setstate__(self, state: dict[str, Any]) -> None:
        restore_fields(self, state)  # checkpoints saved before newer fields take their defaults

    def check_spec(self, spec: MultiAgentSpec) -> None:
        """Raise :class:`ConfigError` (a ``ValueError``) when a setting does not fit the team
        ``spec``: the imagination
        order and the dynamics model's reveal schedule must name its agents (checked by building
        the sampler's schedule once, so a bad order fails before training, not at the first
        policy epoch)."""
        if self.agent_groups is not None:
            try:
                spec = spec.with_groups(self.agent_groups)
            except ValueError as exc:
                raise ConfigError(f"agent_groups: {exc}") from exc
        dynamics = self.world_model.dynamics.sampler
        sampler = EulerSampler(dataclasses.replace(dynamics, reveal=dynamics.reveal.for_team(spec)))
        try:
            sampler.schedule(spec.n_agents, 1, agent_names=spec.agent_names)
            sampler.schedule(
                spec.n_agents, 1, order=self.imagination.order, agent_names=spec.agent_names
            )
        except ValueError as exc:
            raise ConfigError(f"imagination.order / world_model.dynamics.sampler: {exc}") from exc

    @property
    def wm_updates_per_epoch(self) -> int:
        """Updates of each world-model component per epoch (Table 4: 200)."""
        return self.wm_training.steps_per_epoch

    def replace(self, **changes: Any) -> TrainerConfig:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (nested dicts), for logs and ``config.json``."""
        return dataclasses.asdict(self)


def env_family(env_name: str) -> EnvFamily:
    """The preset family of a registered env name (:attr:`dimalib.envs.registry.EnvEntry.family`):
    ``"bidexhands"`` for the Bi-DexHands tasks (Isaac Gym) and their MuJoCo re-implementations
    (``"MjShadowHand..."``), ``"mamujoco"`` for MAMuJoCo and the toy env. A name that is not
    registered gets ``"mamujoco"`` (the name itself is checked where the env is built)."""
    try:
        entry = lookup(env_name)
    except UnknownEnvError:
        return "mamujoco"
    return cast(EnvFamily, entry.family)  # one of ENV_FAMILIES (EnvEntry checks)


def with_reveal(config: TrainerConfig, reveal: RevealSchedule) -> TrainerConfig:
    """``config`` with the dynamics model's reveal schedule replaced."""
    dynamics = config.world_model.dynamics
    sampler = dataclasses.replace(dynamics.sampler, reveal=reveal)
    world_model = dataclasses.replace(
        config.world_model, dynamics=dataclasses.replace(dynamics, sampler=sampler)
    )
    return config.replace(world_model=world_model)


#: The paper's scheme (§3.1, eq. 9): one agent revealed per denoising step.
PAPER_REVEAL = RevealSchedule("sequential")


def _paper(family: EnvFamily) -> TrainerConfig:
    # The paper preset reproduces the paper, its reveal schedule included (eq. 9, one agent per
    # denoising step); `with_reveal` / the CLI's --reveal gives the cumulative one.
    world_model = WorldModelConfig(
        dynamics=DenoiserConfig(sampler=SamplerConfig(reveal=PAPER_REVEAL))
    )
    if family == "bidexhands":
        return TrainerConfig(
            env_steps_per_epoch=500,  # Table 4: 500 in Bi-DexHands
            world_model=world_model,
            mappo=MAPPOConfig.bidexhands(),  # Table 1: γ 0.95, η 0.01
        )
    return TrainerConfig(world_model=world_model)  # Table 4 / Table 1: the defaults


def _cpu(family: EnvFamily) -> TrainerConfig:
    """The paper's schedule with a cheaper epoch (see the module docstring)."""
    paper = _paper(family)
    world_model = WorldModelConfig(
        # Table 3: [2,2,2] blocks of 64 channels, cond 256; here 2 levels of 1 block, 32 channels.
        # Reveal schedule: cumulative (every agent's action reaches the next state; the paper's
        # one-agent-per-step scheme loses part of it, see docs/design.md "Reveal schedules")
        dynamics=DenoiserConfig(
            channels=(32, 32),
            depths=(1, 1),
            cond_dim=64,
            action_token_dim=32,
            sampler=SamplerConfig(reveal=RevealSchedule("cumulative")),
        ),
        # Table 3: 6 layers, 4 heads, 256 wide (dropouts 0.1 kept); max_steps = H = 15 kept
        reward=RewardTerminationConfig(n_layer=2, n_head=2, n_embd=64, head_hidden=64),
        # Table 3: 3 layers of 512 (FSQ levels [8, 6, 5] kept); here 3 layers of 128
        decoder=StateDecoderConfig(hidden_dim=128),
    )
    return paper.replace(
        world_model=world_model,
        # Table 4: 200 updates per component, a reward batch of 128 and a dynamics learning rate
        # of 1e-4 (the other learning rates, clips, weight decay and batches kept). At 1e-4 this
        # small denoiser ignores the actions when policy learning starts (action-effect ratio
        # 0.01-0.02 after 1,250 updates; 0.88-0.94 at 3e-3), which the policy then exploits:
        # docs/benchmarks.md "Learning evidence"
        wm_training=WorldModelTrainingConfig(steps_per_epoch=50, reward_batch=64, dynamics_lr=3e-3),
        # Table 4: 600 rollouts (horizon 15 kept)
        imagination=ImaginationConfig(num_envs=200, horizon=15),
        # evaluation: 10 episodes (§5.1) every 5k env steps, so short CPU runs get a curve
        eval_every_env_steps=5_000,
    )


def trainer_config(preset: Preset | str, env_name: str = "HalfCheetah-2x3") -> TrainerConfig:
    """The ``"paper"`` or ``"cpu"`` preset for an environment (its family, :func:`env_family`,
    picks Table 1/4 values).

    Raises:
        ValueError: unknown preset.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {list(PRESETS)}, received {preset!r}")
    family = env_family(env_name)
    return _paper(family) if preset == "paper" else _cpu(family)
