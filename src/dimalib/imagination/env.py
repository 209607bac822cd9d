"""`ImaginationEnv`: a batch of rollouts inside a trained DIMA world model.

Paper Algorithm 1, ``update_actor_critic``: rollouts start from real contexts (the last ``L`` real
states and the ``L − 1`` joint actions between them, plus the real observation ``o_t``); each
``step(a_t)``

1. predicts ``s_{t+1}`` with the dynamics model's sampler, one agent revealed per denoising step
   in the configured conditioning order;
2. predicts ``r_t`` and the termination probability ``γ_t`` with the reward model, whose KV cache
   holds the rollout so far (the cache starts empty at ``reset``: the reward model is trained on
   windows that start anywhere in an episode, so it needs no real prefix);
3. decodes every agent's observation ``o_{t+1}`` from ``s_{t+1}``.

**Termination rule (masked and kept).** A rollout whose predicted ``γ_t`` exceeds
``termination_threshold`` is *terminated*: the flag stays True until ``reset``, the rollout keeps
being simulated (so the batch keeps its shape), but its later rewards are reported as 0. The raw
probability is returned too, for learners that use it as a soft discount (DIMA's MAPPO does).
All rollouts are truncated together after ``horizon`` steps; ``step`` then refuses until ``reset``.
``reset`` puts the world model in eval mode (no dropout in imagination).

**Autoreset (``autoreset=True``, off by default).** A rollout that terminates is restarted on the
*next* step from a fresh start context (Gymnasium's ``NEXT_STEP`` rule, as DIAMOND's and the
official code's imagination envs restart episodes): that step ignores the rollout's action and
returns the new start observation and state with reward 0, ``terminated`` False and
``termination_prob`` 0; :attr:`ImaginationEnv.restarted` marks those rows. The reward model's KV
cache forgets the row (``KVCache.reset_rows``), so the new episode is predicted as a fresh one.
Fresh contexts come from the replay buffer (sampled at ``reset``, up to ``horizon // 2`` per
rollout) or, for given tensors, are the rollout's own start again. The horizon still truncates
every rollout together, except one restarting on the last step (its new episode has not begun).
Standard episode counters (Gymnasium ``RecordEpisodeStatistics``, TorchRL ``RewardSum``) then
count imagined episodes right; dimalib's MAPPO uses the default (masked and kept).

**Disagreement penalty (optional, off by default; not in the paper).** With
``disagreement_penalty = λ > 0`` every step also draws a second next state from an independent
start noise and subtracts ``λ·d_t`` from the reward, ``d_t`` the root mean square over state
entries of the two samples' difference in state stds (the dynamics model's normaliser). In a
deterministic env a spread between samples is the model's own uncertainty, so the penalty makes
the learner pessimistic where the model does not know (a remedy for model exploitation); it
costs one more sampling per step. ``last_disagreement`` holds ``d_t`` of the last step.

**Recent starts (optional, off by default; not in the paper).** With ``recent_starts = ρ > 0``
a fraction ρ of the start contexts (rounded; the rest uniform over the buffer, as Algorithm 1)
comes from the replay buffer's ``recent_window`` newest rows of each stream, which the current
policy's collection wrote: imagination then also starts where the policy now goes, instead of
mostly from older policies' states (a remedy tried for the early dip of the learning-evidence
issue, docs/benchmarks.md). It changes only which rows start; given tensors are used as given.

Everything runs on the world model's device under ``torch.inference_mode()`` with no host
synchronisation per step: non-finite actions are detected on the device and reported by the
``ValueError`` raised at the end of the rollout (``check_actions="rollout"``, default), or at once
(``"step"``, one sync per step). Out-of-bound actions are clipped to the spec's bounds
(``out_of_bounds="clip"``, default) or rejected (``"error"``, one sync per step).
Returned tensors are ordinary tensors (copied out of inference mode), safe to use in autograd.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch

from dimalib.data.buffer import ReplayBuffer
from dimalib.utils.checks import check_finite, check_tensor
from dimalib.utils.io import restore_fields
from dimalib.world_model.dynamics.reveal import Order, check_order
from dimalib.world_model.protocols import RolloutCache, WorldModel

__all__ = ["ImaginationConfig", "ImaginationEnv", "ImaginedStep", "StartContext"]

StartContext = Mapping[str, torch.Tensor]
"""``states [B, L, S]``, ``actions [B, L-1, A]``, optional ``mask [B, L]`` and ``obs [B, O]``."""


@dataclass(frozen=True)
class ImaginationConfig:
    """Imagination settings. Defaults: Table 4 (600 rollouts, horizon 15) and §3.1 (order)."""

    num_envs: int = 600  # Table 4: number of imagined rollouts
    horizon: int = 15  # Table 4 / Table 1: imagination horizon H
    order: Order = "descending"  # §3.1: agent n first, agent 1 on the last denoising step
    termination_threshold: float = 0.5  # γ_t > threshold ends a rollout (masked and kept)
    check_actions: Literal["rollout", "step"] = "rollout"
    out_of_bounds: Literal["clip", "error"] = "clip"
    disagreement_penalty: float = 0.0  # dimalib, not in the paper: 0 = off (see the class doc)
    autoreset: bool = False  # restart terminated rollouts on the next step (see the module doc)
    recent_starts: float = 0.0  # dimalib, not in the paper: fraction of starts from recent rows
    recent_window: int = 2000  # dimalib: the newest rows per buffer stream counted as recent

    def __post_init__(self) -> None:
        if self.num_envs < 1:
            raise ValueError(f"num_envs: expected >= 1, received {self.num_envs}")
        check_order(self.order)
        if self.horizon < 1:
            raise ValueError(f"horizon: expected >= 1, received {self.horizon}")
        if not 0.0 < self.termination_threshold < 1.0:
            raise ValueError(
                f"termination_threshold: expected a value in (0, 1), "
                f"received {self.termination_threshold}"
            )
        if self.check_actions not in ("rollout", "step"):
            raise ValueError(
                f"check_actions: expected 'rollout' or 'step', received {self.check_actions!r}"
            )
        if self.out_of_bounds not in ("clip", "error"):
            raise ValueError(
                f"out_of_bounds: expected 'clip' or 'error', received {self.out_of_bounds!r}"
            )
        p = self.disagreement_penalty
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not p >= 0:
            raise ValueError(f"disagreement_penalty: expected a number >= 0, received {p!r}")
        if not isinstance(self.autoreset, bool):
            raise ValueError(f"autoreset: expected a bool, received {self.autoreset!r}")
        rho = self.recent_starts
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0.0 <= rho <= 1.0:
            raise ValueError(f"recent_starts: expected a number in [0, 1], received {rho!r}")
        w = self.recent_window
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise ValueError(f"recent_window: expected an integer >= 1, received {w!r}")

    def __setstate__(self, state: dict[str, Any]) -> None:
        restore_fields(self, state)  # configs saved before newer fields take their defaults


class ImaginedStep(NamedTuple):
    """What :meth:`ImaginationEnv.step` returns (``B = num_envs``)."""

    obs: torch.Tensor  # (B, O) decoded joint observation o_{t+1}
    state: torch.Tensor  # (B, S) predicted global state s_{t+1}
    reward: torch.Tensor  # (B,) predicted r_t, 0 once the rollout has terminated
    terminated: torch.Tensor  # (B,) bool, sticky until reset
    truncated: torch.Tensor  # (B,) bool, True for every rollout at step `horizon`
    termination_prob: torch.Tensor  # (B,) predicted γ_t in [0, 1]


class ImaginationEnv:
    """Batched imagined environment over a world model.

    Args:
        world_model: the trained model: a :class:`~dimalib.world_model.DIMAWorldModel` or any
            :class:`~dimalib.world_model.protocols.WorldModel`; its device is where everything
            runs.
        source: default start contexts: a :class:`ReplayBuffer` (sampled at every ``reset``) or
            a mapping of tensors (see :data:`StartContext`).
        config: rollout count, horizon, order and the rules above.
        seed: seeds the generators of the start-context sampling and of the sampler's noise.

    Examples:
        >>> env = ImaginationEnv(world_model, buffer)  # doctest: +SKIP
        >>> obs, state = env.reset(seed=0)  # doctest: +SKIP
        >>> out = env.step(policy(obs))  # doctest: +SKIP
    """

    def __init__(
        self,
        world_model: WorldModel[Any],
        source: ReplayBuffer | StartContext | None = None,
        config: ImaginationConfig | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        if not isinstance(world_model, WorldModel):
            raise ValueError(
                "world_model: expected a WorldModel (dimalib.world_model.protocols: e.g. a "
                f"DIMAWorldModel), received {type(world_model).__name__}"
            )
        if config is not None and not isinstance(config, ImaginationConfig):
            raise ValueError(
                f"config: expected an ImaginationConfig, received {type(config).__name__}"
            )
        self.world_model = world_model
        self.spec = world_model.spec
        self.config = config or ImaginationConfig()
        max_steps = world_model.max_rollout_steps
        if self.config.horizon > max_steps:
            raise ValueError(
                f"config.horizon: expected at most the reward model's max_steps={max_steps}, "
                f"received {self.config.horizon}"
            )
        self.source = source
        self.device = torch.device(world_model.device)
        self._generators: dict[object, torch.Generator] = {}
        self.last_disagreement: torch.Tensor | None = None
        self._seed(seed)
        self._cache: RolloutCache | None = None
        # True where the last step restarted a rollout (``autoreset``; all False otherwise)
        self.restarted = torch.zeros(self.config.num_envs, dtype=torch.bool, device=self.device)
        self._t = -1  # steps taken since reset; -1 before the first reset
        low, high = self.spec.action_bounds(device=self.device)
        self._low, self._high = low, high

    # ---------------------------------------------------------------- sizes
    @property
    def num_envs(self) -> int:
        return self.config.num_envs

    @property
    def horizon(self) -> int:
        return self.config.horizon

    @property
    def t(self) -> int:
        """Steps taken since the last reset."""
        return self._t

    # ------------------------------------------------------------ generators
    def _seed(self, seed: int | None) -> None:
        self._base_seed = seed
        self._generators.clear()

    def _generator(self, device: torch.device, stream: str = "") -> torch.Generator | None:
        if self._base_seed is None:
            return None
        key = (stream, device)
        if key not in self._generators:
            gen = torch.Generator(device=device)
            gen.manual_seed(self._base_seed + 1000 * len(self._generators))
            self._generators[key] = gen
        return self._generators[key]

    # ----------------------------------------------------------------- reset
    def reset(
        self, source: ReplayBuffer | StartContext | None = None, *, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Start ``num_envs`` rollouts from real contexts.

        Args:
            source: start contexts for this reset (default: the one given at construction).
            seed: reseeds the generators (start-context sampling and sampler noise).

        Returns:
            ``(obs [B, O], state [B, S])``: the real observation and state at the start.

        Raises:
            ValueError: when no start context is available, or the given tensors are malformed.
        """
        if seed is not None:
            self._seed(seed)
        source = self.source if source is None else source
        if source is None:
            raise ValueError(
                "source: no start context; pass a ReplayBuffer or a mapping with 'states' "
                "[B, L, S] and 'actions' [B, L-1, A] to reset() or to the constructor"
            )
        B = self.num_envs
        ctx: StartContext
        if isinstance(source, ReplayBuffer):
            if len(source) == 0:
                raise ValueError("source: the replay buffer is empty")
            ctx = self._sample_starts(source, B)
        else:
            ctx = source
        states, actions, mask, obs = self._check_context(ctx)
        if self.config.autoreset:
            self._init_restarts(source, ctx, states, actions, mask, obs)
        wm = self.world_model.eval()  # imagination is inference: no dropout
        with torch.inference_mode():
            self._states = states.to(self.device, torch.float32)  # (B, L, S)
            self._actions = actions.to(self.device, torch.float32)  # (B, L-1, A)
            self._mask = mask.to(self.device)  # (B, L)
            if obs is None:
                obs = wm.decode(self._states[:, -1])
            self._obs = obs.to(self.device, torch.float32)
            if self._cache is None or self._cache.batch_size != B:
                self._cache = wm.init_rollout(B)
            self._cache.reset()
            self._terminated = torch.zeros(B, dtype=torch.bool, device=self.device)
            self.restarted = torch.zeros(B, dtype=torch.bool, device=self.device)
            # first step with a non-finite action (-1: none), kept on the device: no sync per step
            self._bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        self._t = 0
        return self._obs.clone(), self._states[:, -1].clone()

    def _sample_starts(self, buffer: ReplayBuffer, n: int) -> dict[str, torch.Tensor]:
        """``n`` start contexts from ``buffer``: uniform rows, and with ``recent_starts = ρ``
        the last ``round(ρ·n)`` of them from each stream's ``recent_window`` newest rows."""
        L, gen = self.world_model.context, self._generator(buffer.device)
        k = round(self.config.recent_starts * n)
        if k == 0:  # the paper's sampling, the same draws as without the option
            return buffer.sample_start_contexts(n, context=L, generator=gen)
        recent = buffer.sample_start_contexts(
            k, context=L, generator=gen, recent=self.config.recent_window
        )
        if k == n:
            return recent
        uniform = buffer.sample_start_contexts(n - k, context=L, generator=gen)
        return {key: torch.cat([uniform[key], recent[key]]) for key in uniform}

    def _init_restarts(
        self,
        source: ReplayBuffer | StartContext,
        ctx: StartContext,
        states: torch.Tensor,
        actions: torch.Tensor,
        mask: torch.Tensor,
        obs: torch.Tensor | None,
    ) -> None:
        """The start contexts of later restarts (``autoreset``): from a buffer, fresh samples for
        up to ``horizon // 2`` restarts per rollout (a restart takes a step, so no rollout can
        need more); from given tensors, each rollout's own start again."""
        B = self.num_envs
        rounds = 1
        if isinstance(source, ReplayBuffer):
            rounds = max(1, self.horizon // 2)
            pool = self._sample_starts(source, B * rounds)
            states, actions, mask, obs = self._check_context(pool, rows=B * rounds)
        with torch.inference_mode():
            self._pool_states = states.to(self.device, torch.float32)  # (P, L, S), P = B * rounds
            self._pool_actions = actions.to(self.device, torch.float32)  # (P, L-1, A)
            self._pool_mask = mask.to(self.device)  # (P, L)
            if obs is None:
                obs = self.world_model.decode(self._pool_states[:, -1])
            self._pool_obs = obs.to(self.device, torch.float32)  # (P, O)
            self._pool_rounds = rounds
            self._restarts = torch.zeros(B, dtype=torch.long, device=self.device)

    def _check_context(
        self, ctx: StartContext, rows: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        B, L = self.num_envs if rows is None else rows, self.world_model.context
        S, A = self.spec.state_dim, self.spec.joint_action_dim
        for key in ("states", "actions"):
            if key not in ctx:
                raise ValueError(f"source: missing key {key!r}; received keys {sorted(ctx)}")
        states = check_tensor("source['states']", ctx["states"], (B, L, S), floating=True)
        actions = check_tensor("source['actions']", ctx["actions"], (B, L - 1, A), floating=True)
        check_finite("source['states']", states)
        check_finite("source['actions']", actions)
        mask = ctx.get("mask")
        if mask is None:
            mask = torch.ones(B, L, dtype=torch.bool, device=states.device)
        check_tensor("source['mask']", mask, (B, L), dtype=torch.bool)
        obs = ctx.get("obs")
        if obs is not None:
            check_tensor(
                "source['obs']", obs, (B, self.spec.joint_obs_dim), floating=True, finite=True
            )
        return states, actions, mask, obs

    def _fresh(
        self,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each rollout's next restart context: ``states [B, L, S]``, ``actions [B, L-1, A]``,
        ``mask [B, L]``, ``obs [B, O]`` (round ``restarts[b]`` of the pool, on the device)."""
        B = self.num_envs
        k = self._restarts.clamp(max=self._pool_rounds - 1)
        row = k * B + torch.arange(B, device=self.device)  # (B,)
        return (
            self._pool_states[row],
            self._pool_actions[row],
            self._pool_mask[row],
            self._pool_obs[row],
        )

    def restart(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Restart the rollouts where ``rows [B]`` (bool) is True *now*, from fresh contexts
        (a partial reset, as TorchRL's ``_reset`` asks); the others continue. Needs
        ``ImaginationConfig(autoreset=True)``.

        Returns:
            ``(obs [B, O], state [B, S])`` of every rollout after the restart.
        """
        if not self.config.autoreset:
            raise ValueError(
                "restart: restarting single rollouts needs ImaginationConfig(autoreset=True)"
            )
        if self._t < 0:
            raise ValueError("restart: call reset() before restart()")
        rows = check_tensor("rows", rows, (self.num_envs,), dtype=torch.bool, device=self.device)
        assert self._cache is not None
        with torch.inference_mode():
            states, actions, mask, obs = self._fresh()
            r1, r2 = rows[:, None], rows[:, None, None]
            self._states = torch.where(r2, states, self._states)
            self._actions = torch.where(r2, actions, self._actions)
            self._mask = torch.where(r1, mask, self._mask)
            self._obs = torch.where(r1, obs, self._obs)
            self._terminated = self._terminated & ~rows
            self._cache.reset_rows(rows)
            self._restarts += rows.long()
        return self._obs.clone(), self._states[:, -1].clone()

    # ------------------------------------------------------------------ step
    def step(self, joint_action: torch.Tensor, *, order: Order | None = None) -> ImaginedStep:
        """Advance every rollout by one step with ``joint_action [B, A]`` (environment units).

        Args:
            joint_action: the agents' actions concatenated in spec order.
            order: conditioning order for this step (default: the config's).

        Floating actions of any precision are converted to float32; a tensor on another device
        than :attr:`device` is refused (no hidden copies).

        Raises:
            ValueError: wrong shape, dtype or device; out-of-bound actions with ``out_of_bounds="error"``;
                non-finite actions (at once with ``check_actions="step"``, else when the rollout
                ends); ``step`` before ``reset`` or after the horizon.
        """
        if self._t < 0:
            raise ValueError("step: call reset() before step()")
        if self._t >= self.horizon:
            raise ValueError(f"step: the rollouts reached the horizon {self.horizon}; call reset()")
        B, A = self.num_envs, self.spec.joint_action_dim
        action = check_tensor(
            "joint_action", joint_action, (B, A), cast=torch.float32, device=self.device
        )
        cfg, wm = self.config, self.world_model
        with torch.inference_mode():
            if cfg.check_actions == "step":
                check_finite("joint_action", action)
            else:  # remember on the device; reported when the rollout ends
                bad = ~torch.isfinite(action).all()
                first = (self._bad_step < 0) & bad
                self._bad_step = torch.where(first, self._t, self._bad_step)
            if cfg.out_of_bounds == "error":
                outside = (action < self._low) | (action > self._high)
                if bool(outside.any()):
                    idx = outside.nonzero()[0].tolist()
                    raise ValueError(
                        f"joint_action: expected values within the spec's bounds, received "
                        f"{float(action[idx[0], idx[1]])} at rollout {idx[0]}, entry {idx[1]} "
                        f"(bounds [{float(self._low[idx[1]])}, {float(self._high[idx[1]])}])"
                    )
            action = torch.nan_to_num(action).clamp(self._low, self._high)

            state = self._states[:, -1]  # (B, S) s_t
            actions = torch.cat([self._actions, action[:, None]], dim=1)  # (B, L, A)
            next_state = wm.predict_next_state(
                self._states,
                actions,
                self._mask,
                order=cfg.order if order is None else order,
                generator=self._generator(self.device),
                check_inputs=False,
            )
            if cfg.disagreement_penalty > 0:
                other = wm.predict_next_state(
                    self._states,
                    actions,
                    self._mask,
                    order=cfg.order if order is None else order,
                    generator=self._generator(self.device, "disagreement"),
                    check_inputs=False,
                )
                std = wm.state_std.to(next_state.dtype)
                spread = ((next_state - other) / std).square().mean(dim=1).sqrt()  # (B,)
                self.last_disagreement = spread.clone()
            assert self._cache is not None
            reward, term_prob = wm.predict_reward(self._cache, state, action, check_inputs=False)
            next_obs = wm.decode(next_state, check_inputs=False)

            if cfg.disagreement_penalty > 0:
                reward = reward - cfg.disagreement_penalty * spread
            states = torch.cat([self._states[:, 1:], next_state[:, None]], dim=1)  # (B, L, S)
            mask = torch.cat([self._mask[:, 1:], self._mask.new_ones(B, 1)], dim=1)  # (B, L)
            self._actions = actions[:, 1:]  # (B, L-1, A): the window slides by one
            if cfg.autoreset:
                # rollouts that terminated on the previous step restart from a fresh context
                restart = self._terminated  # (B,)
                fresh_states, fresh_actions, fresh_mask, fresh_obs = self._fresh()
                r1, r2 = restart[:, None], restart[:, None, None]
                next_state = torch.where(r1, fresh_states[:, -1], next_state)
                next_obs = torch.where(r1, fresh_obs, next_obs)
                states = torch.where(r2, fresh_states, states)
                self._actions = torch.where(r2, fresh_actions, self._actions)
                mask = torch.where(r1, fresh_mask, mask)
                reward = torch.where(restart, torch.zeros_like(reward), reward)
                term_prob = torch.where(restart, torch.zeros_like(term_prob), term_prob)
                self._terminated = term_prob > cfg.termination_threshold
                self._cache.reset_rows(restart)  # the reward model forgets those rows
                self._restarts += restart.long()
                self.restarted = restart
            else:
                reward = torch.where(self._terminated, torch.zeros_like(reward), reward)
                self._terminated |= term_prob > cfg.termination_threshold
            self._states, self._mask = states, mask
            self._obs = next_obs
        self._t += 1
        truncated = self._t >= self.horizon
        if truncated and cfg.check_actions == "rollout" and int(self._bad_step) >= 0:
            self._t = self.horizon
            raise ValueError(
                f"joint_action: expected finite values, received NaN or inf at step "
                f"{int(self._bad_step)} of this rollout (first occurrence; the rollout used 0 "
                f"in their place)"
            )
        return ImaginedStep(
            obs=next_obs.clone(),
            state=next_state.clone(),
            reward=reward.clone(),
            terminated=self._terminated.clone(),
            # a rollout that restarts on the last step has just begun: not truncated
            truncated=torch.full((B,), truncated, dtype=torch.bool, device=self.device)
            & ~self.restarted,
            termination_prob=term_prob.clone(),
        )
