"""MAPPO for learning in imagination: DIMA's behaviour learner (paper App. C, eq. 19–21).

Read top to bottom:

1. :class:`MAPPOConfig` — the paper's hyperparameters (Tables 1 and 4) and the official code's.
2. :class:`MAPPO` — optimisers, :meth:`MAPPO.collect_imagined_rollout` (paper Algorithm 1,
   ``update_actor_critic``, first half) and :meth:`MAPPO.update` (second half).

Its parts live in their own modules (all re-exported here):

* :mod:`dimalib.algorithms.networks` — :class:`ValueNorm` (MAPPO's running normaliser of value
  targets), :class:`Actor` (one policy shared by all agents, batched over agents; the policy
  spaces and the padding of heterogeneous agents are described there) and :class:`Critic`
  (``V(s)`` on the global state, in ValueNorm's normalised units);
* :mod:`dimalib.algorithms.returns` — :func:`lambda_returns` (eq. 19);
* :mod:`dimalib.algorithms.losses` — :func:`ppo_losses` (eq. 20–21, with MAPPO's practical
  changes: Huber loss, clipped value loss, normalised advantages);
* :mod:`dimalib.algorithms.protocols` — :class:`ImaginationEnvLike` (what the rollout needs) and
  :class:`~dimalib.algorithms.protocols.Learner` (what the trainer needs; MAPPO is one).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from einops import rearrange
from torch import nn

from dimalib.algorithms.losses import ppo_losses
from dimalib.algorithms.networks import (
    Actor,
    ActorOutput,
    Critic,
    PolicyKind,
    ValueNorm,
    masked_mean,
)
from dimalib.algorithms.protocols import ImaginationEnvLike
from dimalib.algorithms.returns import lambda_returns
from dimalib.algorithms.rollout import check_rollout, imagine_rollout
from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import NonFiniteTrainingError, check_finite, check_int, check_tensor
from dimalib.utils.optim import fused_available, load_optimizer_state

__all__ = [
    "MAPPO",
    "Actor",
    "ActorOutput",
    "Critic",
    "ImaginationEnvLike",
    "MAPPOConfig",
    "ValueNorm",
    "lambda_returns",
    "ppo_losses",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class MAPPOConfig:
    """Hyperparameters of DIMA's MAPPO. Defaults: MAMuJoCo (paper Tables 1 and 4).

    Use :meth:`mamujoco` or :meth:`bidexhands` for the two presets of Table 1.

    Notes on the choices the paper leaves open (from the official code where the design notes
    record it, otherwise MAPPO/HARL's defaults):

    * ``num_layers=3, hidden_dim=128``: App. C says "3-layer MLPs with ReLU and Layer
      Normalization"; the official code's MLPs are 3 × 128. Each layer is
      ``Linear → ReLU → LayerNorm`` after an input LayerNorm (``feature_norm``), with orthogonal
      initialisation (gain √2, output gain 0.01 actor / 1 critic) — MAPPO/HARL's layout.
    * ``num_minibatches=1``: HARL's MAMuJoCo setting (one minibatch = the whole imagined batch,
      600 × 15 = 9000 samples), so one :meth:`MAPPO.update` makes ``ppo_epochs`` gradient steps.
    * ``value_clip=0.1``: MAPPO clips the value update with the PPO clip parameter.
    * ``huber_delta=10``: MAPPO's Huber loss on normalised targets (eq. 20 writes the squared
      error; ``huber_delta=None`` gives ``½ e²``).
    """

    # networks
    hidden_dim: int = 128  # App. C / official code: MLP width 128
    num_layers: int = 3  # App. C: 3-layer MLPs with ReLU and LayerNorm
    feature_norm: bool = True  # MAPPO/HARL default: LayerNorm on the network input
    policy: PolicyKind = "gaussian"  # or "beta", both offered by the official code
    std_init: float = 1.0  # Gaussian: σ = sigmoid(θ_σ)·std_scale, θ_σ starts here (HARL)
    std_scale: float = 0.5  # Gaussian: the official code's 0.5 (σ ≤ 0.5)
    # optimisation (Table 4)
    actor_lr: float = 5e-4  # Table 4: Adam, 0.0005 for actor and critic
    critic_lr: float = 5e-4  # Table 4
    adam_eps: float = 1e-5  # official code
    max_grad_norm: float = 10.0  # Table 4: gradient clipping for actor & critic
    ppo_epochs: int = 5  # Table 4
    num_minibatches: int = 1  # HARL MAMuJoCo setting (see the class notes)
    # objectives (Table 1)
    clip: float = 0.1  # Table 1 / Table 4: PPO clipping parameter ε
    value_clip: float | None = 0.1  # MAPPO: value clip = PPO clip; None disables
    entropy_coef: float = 0.001  # Table 1: η, MAMuJoCo (0.01 Bi-DexHands)
    gamma: float = 0.99  # Table 1: γ, MAMuJoCo (0.95 Bi-DexHands)
    lam: float = 0.95  # Table 1 / Table 4: λ of the λ-return
    huber_delta: float | None = 10.0  # official code/MAPPO: Huber δ = 10; None: ½ e²
    value_norm: bool = True  # official code/MAPPO: ValueNorm on the critic's targets
    value_norm_beta: float = 0.99999  # MAPPO's ValueNorm β
    normalize_advantages: bool = True  # official code/MAPPO: team advantage normalised per batch

    def __post_init__(self) -> None:
        positive_ints = ("hidden_dim", "num_layers", "ppo_epochs", "num_minibatches")
        for name in positive_ints:
            check_int(name, getattr(self, name))
        for name in ("actor_lr", "critic_lr", "adam_eps", "max_grad_norm", "clip", "std_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"{name}: expected a positive number, received {getattr(self, name)!r}"
                )
        for name in ("value_clip", "huber_delta"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name}: expected a positive number or None, received {value!r}")
        if not self.entropy_coef >= 0:
            raise ValueError(f"entropy_coef: expected >= 0, received {self.entropy_coef!r}")
        for name in ("gamma", "lam"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f"{name}: expected a value in [0, 1], received {getattr(self, name)!r}"
                )
        if not 0.0 < self.value_norm_beta < 1.0:
            raise ValueError(
                f"value_norm_beta: expected a value in (0, 1), received {self.value_norm_beta!r}"
            )
        if self.policy not in ("gaussian", "beta"):
            raise ValueError(f"policy: expected 'gaussian' or 'beta', received {self.policy!r}")

    @classmethod
    def mamujoco(cls, **overrides: Any) -> MAPPOConfig:
        """Table 1, MAMuJoCo: γ = 0.99, η = 0.001."""
        return cls(**{"gamma": 0.99, "entropy_coef": 0.001, **overrides})

    @classmethod
    def bidexhands(cls, **overrides: Any) -> MAPPOConfig:
        """Table 1, Bi-DexHands: γ = 0.95, η = 0.01."""
        return cls(**{"gamma": 0.95, "entropy_coef": 0.01, **overrides})


# --------------------------------------------------------------------- the learner
class MAPPO:
    """DIMA's MAPPO: shared actor on observations, critic on the global state, λ-returns.

    A :class:`~dimalib.algorithms.protocols.Learner`: what :class:`~dimalib.training.Trainer`
    drives (:meth:`act`, :meth:`eval`, :meth:`collect_imagined_rollout`, :meth:`update`,
    :meth:`state_dict`, :meth:`load_state_dict`).

    **Rollout dict** (``T`` steps of ``B`` parallel rollouts; what :meth:`update` consumes and
    :meth:`collect_imagined_rollout` produces):

    ======================  =================  ===================================================
    key                     shape              meaning
    ======================  =================  ===================================================
    ``obs``                 ``[T, B, O]``      joint observation ``o_t`` the action was taken on
    ``state``               ``[T+1, B, S]``    global states ``s_0 … s_T`` (``s_T`` bootstraps)
    ``actions``             ``[T, B, A]``      policy-space actions (``ActorOutput.policy_action``)
    ``log_probs``           ``[T, B, n]``      their log-probabilities when collected
    ``rewards``             ``[T, B]``         team reward ``r_t``
    ``termination_prob``    ``[T, B]``         predicted ``p_t``; discount ``d_t = γ (1 − p_t)``
    ``discounts``           ``[T, B]``         or give ``d_t`` directly (exactly one of the two)
    ``mask`` (optional)     ``[T, B]``         bool/float, 1 where the step counts (rollout alive)
    ======================  =================  ===================================================

    Other keys are ignored (``collect_imagined_rollout`` adds ``env_actions`` and ``terminated``).

    Args:
        spec: the team.
        config: hyperparameters (default: :meth:`MAPPOConfig.mamujoco`).
        device: where the networks live (default: CPU); rollouts are moved there.
    """

    def __init__(
        self,
        spec: MultiAgentSpec,
        config: MAPPOConfig | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(spec, MultiAgentSpec):
            raise ValueError(f"spec: expected a MultiAgentSpec, received {type(spec).__name__}")
        if config is not None and not isinstance(config, MAPPOConfig):
            raise ValueError(f"config: expected a MAPPOConfig, received {type(config).__name__}")
        self.spec = spec
        self.config = cfg = config or MAPPOConfig()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.actor = Actor(spec, cfg).to(self.device)
        self.critic = Critic(spec, cfg).to(self.device)
        # one fused kernel per step on CPU/CUDA: the for-loop Adam reads its step count back to
        # the host for every parameter tensor (176 syncs per update at the cpu preset)
        fused = fused_available(self.device)
        self.actor_optim = torch.optim.Adam(
            self.actor.parameters(), lr=cfg.actor_lr, eps=cfg.adam_eps, fused=fused
        )
        self.critic_optim = torch.optim.Adam(
            self.critic.parameters(), lr=cfg.critic_lr, eps=cfg.adam_eps, fused=fused
        )

    # ---------------------------------------------------------------- acting
    def eval(self) -> MAPPO:
        """Put the actor and the critic in inference mode (as ``nn.Module.eval``); returns self.

        :meth:`update` puts them back in training mode. (Their layers behave the same in both
        modes; this is for learners or subclasses whose layers do not.)
        """
        self.actor.eval()
        self.critic.eval()
        return self

    @torch.no_grad()
    def act(
        self,
        joint_obs: torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``[..., O]`` joint observation → ``[..., A]`` joint action in environment units.

        A sample of the policy (from ``generator``, default: the global RNG; collection), or its
        mean with ``deterministic=True`` (evaluation).

        The env-to-policy boundary: a floating observation of any precision, on any device, is
        converted to float32 on the learner's device (explicitly, here); NaN/inf is refused (one
        host check per call: this is the real-env path, whose observations come from the host;
        the imagination loop calls the actor directly).
        """
        joint_obs = check_tensor(
            "joint_obs", joint_obs, last_dim=self.spec.joint_obs_dim, floating=True
        )
        obs = check_finite("joint_obs", joint_obs.to(device=self.device, dtype=torch.float32))
        return self.actor.act(obs, deterministic, generator).action

    @torch.no_grad()
    def collect_imagined_rollout(
        self,
        imagination_env: ImaginationEnvLike,
        horizon: int | None = None,
        generator: torch.Generator | None = None,
        *,
        seed: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Reset ``imagination_env`` and roll the actor out for ``horizon`` steps.

        Paper Algorithm 1, ``update_actor_critic``: start from real contexts, sample every
        agent's action from its imagined observation, step the world model. Everything stays on
        the devices (no host synchronisation per step).

        Args:
            imagination_env: an :class:`~dimalib.imagination.ImaginationEnv` (or anything with
                ``horizon``, ``reset(seed=)`` and ``step(joint_action)`` returning the fields
                of :class:`~dimalib.imagination.ImaginedStep`).
            horizon: steps to take (default and maximum: the env's horizon).
            generator: for the actor's sampling, on this learner's device.
            seed: passed to ``imagination_env.reset``.

        Returns:
            the rollout dict of the class docstring, with ``termination_prob`` and
            ``mask`` (True while the rollout had not terminated before step ``t``), plus
            ``env_actions [T, B, A]`` (what the env received) and ``terminated [T, B]``.
        """
        return imagine_rollout(
            lambda obs: self.actor.act(obs, generator=generator),
            imagination_env,
            horizon,
            seed=seed,
            device=self.device,
        )

    # -------------------------------------------------------------- learning
    @torch.no_grad()
    def prepare_batch(self, rollout: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """λ-returns, team advantages and critic targets for a rollout, flattened to ``N = T·B``.

        Steps: ``V(s_0..s_T)`` from the critic (return units) → ``d_t = γ (1 − p_t)`` unless
        ``discounts`` are given → :func:`lambda_returns` → advantage ``A_t = V^λ_t − V(s_t)``,
        normalised over the masked steps (``(A − mean) / (std + 1e-5)``, MAPPO) → ValueNorm
        updated with the masked λ-returns, which then become the normalised critic targets.

        Returns:
            dict of ``[N, ...]`` tensors: ``obs``, ``state``, ``actions``, ``log_probs``,
            ``advantages``, ``returns`` (normalised targets), ``old_values`` (critic outputs,
            normalised units), ``mask`` (float), ``lambda_returns`` and ``values`` (the
            critic's ``V(s_t)`` used for the advantages; both in return units).
        """
        r = check_rollout(rollout, self.spec, self.device)
        cfg, critic = self.config, self.critic
        rewards = r["rewards"]
        T = rewards.shape[0]
        mask = r["mask"].to(rewards.dtype) if "mask" in r else torch.ones_like(rewards)
        if "discounts" in r:
            discounts = r["discounts"]
        else:
            discounts = cfg.gamma * (1.0 - r["termination_prob"].clamp(0.0, 1.0))
        raw_values = critic(r["state"])  # (T+1, B) normalised units
        values = critic.denormalize(raw_values)  # (T+1, B) return units
        returns = lambda_returns(rewards, values, discounts, cfg.lam)  # (T, B)
        advantages = returns - values[:T]  # (T, B)
        if cfg.normalize_advantages:
            mean = masked_mean(advantages, mask)
            std = masked_mean((advantages - mean).square(), mask).sqrt()
            advantages = (advantages - mean) / (std + 1e-5)
        if critic.value_norm is not None:
            critic.value_norm.update(returns, mask)
        batch = {
            "obs": r["obs"],
            "state": r["state"][:T],
            "actions": r["actions"],
            "log_probs": r["log_probs"],
            "advantages": advantages,
            "returns": critic.normalize(returns),
            "old_values": raw_values[:T],
            "mask": mask,
            "lambda_returns": returns,
            "values": values[:T],
        }
        return {k: rearrange(v, "t b ... -> (t b) ...") for k, v in batch.items()}

    def compute_losses(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """:func:`ppo_losses` of the current actor and critic on (a minibatch of) a prepared batch."""
        log_probs, entropy = self.actor.evaluate(batch["obs"], batch["actions"])  # (N, n) each
        values = self.critic(batch["state"])  # (N,)
        cfg = self.config
        return ppo_losses(
            log_probs,
            batch["log_probs"],
            batch["advantages"],
            entropy,
            values,
            batch["old_values"],
            batch["returns"],
            clip=cfg.clip,
            entropy_coef=cfg.entropy_coef,
            value_clip=cfg.value_clip,
            huber_delta=cfg.huber_delta,
            mask=batch["mask"],
        )

    def update(
        self, rollout: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> dict[str, float]:
        """``ppo_epochs`` epochs of minibatch PPO on one rollout (see the class docstring).

        Args:
            rollout: the rollout dict.
            generator: for the minibatch shuffling (default: the global RNG).

        Returns:
            means over all minibatch steps of the :func:`ppo_losses` terms, plus
            ``actor_grad_norm`` and ``critic_grad_norm`` (before clipping), ``return_mean`` and
            ``value_mean`` (return units, masked). One host synchronisation per call.
        """
        batch = self.prepare_batch(rollout)
        cfg = self.config
        self.actor.train()
        self.critic.train()
        N = batch["mask"].shape[0]
        sums: dict[str, torch.Tensor] = {}
        n_steps = skipped = 0
        for _ in range(cfg.ppo_epochs):
            if cfg.num_minibatches == 1:
                chunks = [torch.arange(N, device=self.device)]
            else:
                perm_device = generator.device if generator is not None else self.device
                perm = torch.randperm(N, generator=generator, device=perm_device).to(self.device)
                chunks = list(perm.chunk(cfg.num_minibatches))
            for idx in chunks:
                minibatch = {k: v[idx] for k, v in batch.items()}
                losses = self.compute_losses(minibatch)
                self.actor_optim.zero_grad(set_to_none=True)
                self.critic_optim.zero_grad(set_to_none=True)
                total = losses["actor_loss"] + losses["critic_loss"]
                total.backward()  # disjoint parameters
                actor_norm = nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.max_grad_norm)
                critic_norm = nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.max_grad_norm)
                finite = torch.isfinite(torch.stack([total.detach(), actor_norm, critic_norm]))
                if not bool(finite.all()):  # one sync per minibatch: skip the update, count it
                    skipped += 1
                    continue
                self.actor_optim.step()
                self.critic_optim.step()
                terms = {k: v.detach() for k, v in losses.items()}
                terms["actor_grad_norm"], terms["critic_grad_norm"] = actor_norm, critic_norm
                for k, v in terms.items():
                    sums[k] = sums.get(k, torch.zeros((), device=self.device)) + v.float()
                n_steps += 1
        if n_steps == 0:
            raise NonFiniteTrainingError(
                f"MAPPO: all {skipped} minibatch updates had a non-finite loss or gradient norm "
                "(NaN/inf); no optimiser step was taken (the critic's ValueNorm has seen this "
                "rollout's returns). Check the rollout "
                "(rewards, values) or lower the learning rates"
            )
        stats = {k: v / n_steps for k, v in sums.items()}
        stats["return_mean"] = masked_mean(batch["lambda_returns"], batch["mask"])
        stats["value_mean"] = masked_mean(batch["values"], batch["mask"])
        numbers = torch.stack([v.float() for v in stats.values()]).tolist()  # one sync
        metrics = dict(zip(stats, numbers, strict=True))
        metrics["skipped_updates"] = float(skipped)
        logger.debug("MAPPO update: %s", metrics)
        return metrics

    # ----------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Actor, critic (with ValueNorm), both optimisers, the spec and the config."""
        return {
            "spec": self.spec.to_dict(),
            "config": asdict(self.config),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_optim": self.actor_optim.state_dict(),
            "critic_optim": self.critic_optim.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (the spec must match; the config is not changed)."""
        missing = [
            k for k in ("spec", "actor", "critic", "actor_optim", "critic_optim") if k not in state
        ]
        if missing:
            raise ValueError(f"state: missing keys {missing}")
        spec = MultiAgentSpec.from_dict(state["spec"])
        if spec != self.spec:
            raise ValueError(f"state: saved for spec {spec}, this learner has {self.spec}")
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        # optimisers keep the given tensors: copy them so two learners never share moments
        # (copies, with this learner's fused/foreach kernel whatever the saving one used)
        load_optimizer_state(self.actor_optim, state["actor_optim"])
        load_optimizer_state(self.critic_optim, state["critic_optim"])

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, Any], device: torch.device | str | None = None
    ) -> MAPPO:
        """A learner built with the saved spec and config, then :meth:`load_state_dict`."""
        if "spec" not in state or "config" not in state:
            raise ValueError("state: expected the keys 'spec' and 'config' of MAPPO.state_dict()")
        learner = cls(
            MultiAgentSpec.from_dict(state["spec"]), MAPPOConfig(**state["config"]), device
        )
        learner.load_state_dict(state)
        return learner
