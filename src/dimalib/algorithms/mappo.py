"""MAPPO for learning in imagination: DIMA's behaviour learner (paper App. C, eq. 19–21).

Read top to bottom:

1. :class:`MAPPOConfig` — the paper's hyperparameters (Tables 1 and 4) and the official code's.
2. :class:`ValueNorm` — MAPPO's running normaliser of value targets.
3. :class:`Actor` — one policy shared by all agents (parameter sharing), batched over agents.
4. :class:`Critic` — ``V(s)`` on the global state, in ValueNorm's normalised units.
5. :func:`lambda_returns` (eq. 19) and :func:`ppo_losses` (eq. 20–21, with MAPPO's practical
   changes: Huber loss, clipped value loss, normalised advantages).
6. :class:`MAPPO` — optimisers, :meth:`MAPPO.collect_imagined_rollout` (paper Algorithm 1,
   ``update_actor_critic``, first half) and :meth:`MAPPO.update` (second half).

**Policy spaces.** The actor works in a *policy space* and maps to environment units last:

* ``"gaussian"`` (default): ``u ~ N(μ(o), σ²)`` with a state-independent
  ``σ = sigmoid(θ_σ) · 0.5`` (the official code's parametrisation; ``θ_σ`` starts at 1 as in
  HARL, so ``σ ≈ 0.37``). ``u`` lives in the normalised box ``[-1, 1]``; the environment receives
  ``low + (clip(u, -1, 1) + 1) / 2 · (high − low)``. As in standard MAPPO, the log-probability
  is that of the **unclipped** sample ``u``, which is what rollouts store as ``"actions"``.
* ``"beta"``: ``x ~ Beta(α(o), β(o))`` with ``α, β = 1 + softplus(·)`` (unimodal), on ``(0, 1)``;
  the environment receives ``low + x · (high − low)``.

**Heterogeneous agents.** Each agent's observation is zero-padded to ``max_obs_dim`` and tagged
with a one-hot agent id; actions are padded to ``max_action_dim`` and log-probabilities and
entropies are summed over the real entries only (``spec.action_mask()``). All agents go through
the network in one batched forward: no Python loop over agents.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.distributions import Beta, Normal

from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import NonFiniteTrainingError, check_finite, check_tensor

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

PolicyKind = Literal["gaussian", "beta"]

_BETA_EPS = 1e-6  # Beta samples are kept in [eps, 1 - eps] so their log-probability is finite
_ROLLOUT_KEYS = ("obs", "state", "actions", "log_probs", "rewards")


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
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, received {value!r}")
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


# ------------------------------------------------------------------------ networks
def _mlp(in_dim: int, hidden_dim: int, num_layers: int, feature_norm: bool) -> nn.Sequential:
    """``[LayerNorm(in)] → (Linear → ReLU → LayerNorm) × num_layers``, orthogonal init (HARL)."""
    layers: list[nn.Module] = [nn.LayerNorm(in_dim)] if feature_norm else []
    dim = in_dim
    for _ in range(num_layers):
        linear = nn.Linear(dim, hidden_dim)
        nn.init.orthogonal_(linear.weight, gain=nn.init.calculate_gain("relu"))
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU(), nn.LayerNorm(hidden_dim)]
        dim = hidden_dim
    return nn.Sequential(*layers)


def _head(in_dim: int, out_dim: int, gain: float) -> nn.Linear:
    linear = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(linear.weight, gain=gain)
    nn.init.zeros_(linear.bias)
    return linear


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` (broadcast to ``x``) is nonzero."""
    if mask is None:
        return x.mean()
    weight = mask.to(x.dtype).expand_as(x)
    return (x * weight).sum() / weight.sum().clamp_min(1.0)


class ValueNorm(nn.Module):
    """MAPPO's ValueNorm: a debiased exponential moving average of the value targets.

    Each :meth:`update` call counts as one batch, whatever its size. After ``k`` updates with
    batch means ``m_i`` and batch mean squares ``q_i``::

        mean = Σ_i β^(k−i) m_i / Σ_i β^(k−i)        (the debiasing term is 1 − β^k)
        var  = max(Σ_i β^(k−i) q_i / Σ_i β^(k−i) − mean², min_var)

    so with one update the statistics are exactly the batch's, and with ``β = 0.99999`` (MAPPO's
    default) the first ~10⁴ batches are weighted almost equally while old ones fade out slowly, as
    the value scale of a learning policy drifts. Statistics are float64 buffers (``state_dict``).

    Args:
        beta: EMA factor β in (0, 1).
        epsilon: floor on the debiasing term (before the first update).
        min_var: floor on the variance (MAPPO: 1e-2).
    """

    running_mean: torch.Tensor
    running_mean_sq: torch.Tensor
    debiasing_term: torch.Tensor

    def __init__(self, beta: float = 0.99999, epsilon: float = 1e-5, min_var: float = 1e-2) -> None:
        super().__init__()
        if not 0.0 < beta < 1.0:
            raise ValueError(f"beta: expected a value in (0, 1), received {beta!r}")
        self.beta, self.epsilon, self.min_var = beta, epsilon, min_var
        self.register_buffer("running_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("running_mean_sq", torch.zeros((), dtype=torch.float64))
        self.register_buffer("debiasing_term", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Fold the (masked) mean and mean square of ``x`` (any shape) into the statistics."""
        check_tensor("x", x, floating=True)
        x = x.to(torch.float64)
        if mask is not None:
            check_tensor("mask", mask, tuple(x.shape))
        batch_mean = _masked_mean(x, mask)
        batch_mean_sq = _masked_mean(x.square(), mask)
        b = self.beta
        self.running_mean.mul_(b).add_(batch_mean * (1.0 - b))
        self.running_mean_sq.mul_(b).add_(batch_mean_sq * (1.0 - b))
        self.debiasing_term.mul_(b).add_(1.0 - b)

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Debiased ``(mean, var)`` as float64 scalars."""
        debias = self.debiasing_term.clamp_min(self.epsilon)
        mean = self.running_mean / debias
        mean_sq = self.running_mean_sq / debias
        return mean, (mean_sq - mean.square()).clamp_min(self.min_var)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x − mean) / std`` in ``x``'s dtype."""
        mean, var = self.mean_var()
        return (x - mean.to(x.dtype)) / var.sqrt().to(x.dtype)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`."""
        mean, var = self.mean_var()
        return x * var.sqrt().to(x.dtype) + mean.to(x.dtype)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, epsilon={self.epsilon}, min_var={self.min_var}"


class ActorOutput(NamedTuple):
    """What :meth:`Actor.act` returns (leading dims ``[...]``, e.g. ``[B]``)."""

    action: torch.Tensor  # (..., A) joint action in environment units, within the bounds
    policy_action: torch.Tensor  # (..., A) the sample in policy space (store it for PPO)
    log_prob: torch.Tensor  # (..., n) log π(policy_action | o) per agent


class Actor(nn.Module):
    """Policy ``π_ψ(a^i | o^i)`` shared by all agents (App. C), batched over agents.

    Input of agent ``i``: its observation zero-padded to ``max_obs_dim``, then a one-hot id of
    length ``n``; so ``in_dim = max_obs_dim + n``. See the module docstring for the two policy
    spaces and the bounds.

    Args:
        spec: the team.
        config: network sizes and policy kind.
    """

    obs_index: torch.Tensor
    obs_mask: torch.Tensor
    agent_ids: torch.Tensor
    action_mask: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, spec: MultiAgentSpec, config: MAPPOConfig | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.config = cfg = config or MAPPOConfig()
        self.policy: PolicyKind = cfg.policy
        n, m = spec.n_agents, spec.max_action_dim
        self.in_dim = spec.max_obs_dim + n
        self.body = _mlp(self.in_dim, cfg.hidden_dim, cfg.num_layers, cfg.feature_norm)
        if cfg.policy == "gaussian":
            self.head = _head(cfg.hidden_dim, m, gain=0.01)  # HARL: small initial actions
            self.std_param = nn.Parameter(torch.full((m,), float(cfg.std_init)))
        else:
            self.head = _head(cfg.hidden_dim, 2 * m, gain=0.01)
        # index of every padded observation slot in the joint observation (0 for padding)
        offsets = [0]
        for d in spec.obs_dims:
            offsets.append(offsets[-1] + d)
        obs_index = [
            [offsets[i] + j if j < d else 0 for j in range(spec.max_obs_dim)]
            for i, d in enumerate(spec.obs_dims)
        ]
        self.register_buffer("obs_index", torch.tensor(obs_index), persistent=False)  # (n, Om)
        dims = torch.tensor(spec.obs_dims)
        obs_mask = torch.arange(spec.max_obs_dim)[None, :] < dims[:, None]
        self.register_buffer("obs_mask", obs_mask, persistent=False)  # (n, Om)
        self.register_buffer("agent_ids", torch.eye(n), persistent=False)  # (n, n)
        self.register_buffer("action_mask", spec.action_mask(), persistent=False)  # (n, m)
        low, high = spec.action_bounds()
        self.register_buffer("low", low, persistent=False)  # (A,)
        self.register_buffer("high", high, persistent=False)  # (A,)

    # ------------------------------------------------------------------ inputs
    def agent_inputs(self, joint_obs: torch.Tensor) -> torch.Tensor:
        """``[..., O]`` joint observation → ``[..., n, max_obs_dim + n]`` network inputs."""
        check_tensor("joint_obs", joint_obs, last_dim=self.spec.joint_obs_dim, floating=True)
        padded = joint_obs[..., self.obs_index] * self.obs_mask.to(joint_obs.dtype)  # (..., n, Om)
        ids = self.agent_ids.to(joint_obs.dtype).expand(*padded.shape[:-1], self.spec.n_agents)
        return torch.cat([padded, ids], dim=-1)  # (..., n, Om + n)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distribution parameters from per-agent inputs ``[..., in_dim]``.

        Returns:
            ``(mean, std)`` for ``"gaussian"``, ``(α, β)`` for ``"beta"``; each ``[..., m]`` with
            ``m = max_action_dim`` (entries past an agent's action size are unused).
        """
        out = self.head(self.body(inputs))
        if self.policy == "gaussian":
            std = torch.sigmoid(self.std_param) * self.config.std_scale  # (m,)
            return out, std.expand_as(out)
        alpha, beta = out.chunk(2, dim=-1)
        return 1.0 + F.softplus(alpha), 1.0 + F.softplus(beta)

    def _per_dim(self, p1: torch.Tensor, p2: torch.Tensor) -> Normal | Beta:
        # no argument validation: it costs a host sync per call, and non-finite parameters are
        # caught where they matter (MAPPO.update skips non-finite updates)
        if self.policy == "gaussian":
            return Normal(p1, p2, validate_args=False)
        return Beta(p1, p2, validate_args=False)

    # ------------------------------------------------------------- actions
    def to_env_action(self, policy_action: torch.Tensor) -> torch.Tensor:
        """Policy-space joint action ``[..., A]`` → environment units, within the bounds."""
        low, high = self.low.to(policy_action.dtype), self.high.to(policy_action.dtype)
        if self.policy == "gaussian":
            unit = (policy_action.clamp(-1.0, 1.0) + 1.0) * 0.5
        else:
            unit = policy_action.clamp(0.0, 1.0)
        return low + unit * (high - low)

    def act(
        self,
        joint_obs: torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> ActorOutput:
        """Sample (or take the mean of) every agent's action from the joint observation.

        Args:
            joint_obs: ``[..., O]``.
            deterministic: the distribution's mean instead of a sample.
            generator: random generator on the actor's device (default: the global RNG).

        Returns:
            :class:`ActorOutput` with ``action [..., A]``, ``policy_action [..., A]`` and
            ``log_prob [..., n]``.
        """
        p1, p2 = self(self.agent_inputs(joint_obs))  # (..., n, m) each
        if self.policy == "gaussian":
            if deterministic:
                sample = p1
            else:
                noise = torch.randn(p1.shape, generator=generator, device=p1.device, dtype=p1.dtype)
                sample = p1 + p2 * noise
        else:
            if deterministic:
                sample = p1 / (p1 + p2)
            elif generator is None:
                sample = Beta(p1, p2, validate_args=False).sample()
            else:
                sample = _sample_beta(p1, p2, generator)
            sample = sample.clamp(_BETA_EPS, 1.0 - _BETA_EPS)
        sample = sample.detach()  # PPO: a sample, not a reparameterised path
        log_prob = self._log_prob(p1, p2, sample)  # (..., n)
        policy_action = self.spec.unpad_actions(sample)  # (..., A)
        return ActorOutput(self.to_env_action(policy_action), policy_action, log_prob)

    def evaluate(
        self, joint_obs: torch.Tensor, policy_action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy of stored policy-space actions.

        Args:
            joint_obs: ``[..., O]``.
            policy_action: ``[..., A]``, as returned in :attr:`ActorOutput.policy_action`.

        Returns:
            ``(log_prob [..., n], entropy [..., n])``, each summed over the agent's real
            action entries.
        """
        check_tensor("policy_action", policy_action, floating=True)
        if tuple(policy_action.shape[:-1]) != tuple(joint_obs.shape[:-1]):
            raise ValueError(
                f"policy_action: expected leading shape {tuple(joint_obs.shape[:-1])} (as "
                f"joint_obs), received shape {tuple(policy_action.shape)}"
            )
        p1, p2 = self(self.agent_inputs(joint_obs))  # (..., n, m)
        padded = self.spec.pad_actions(policy_action)  # (..., n, m), zeros at padding
        if self.policy == "beta":
            padded = padded.clamp(_BETA_EPS, 1.0 - _BETA_EPS)
        mask = self.action_mask
        entropy = torch.where(mask, self._per_dim(p1, p2).entropy(), 0.0).sum(-1)  # (..., n)
        return self._log_prob(p1, p2, padded), entropy

    def _log_prob(self, p1: torch.Tensor, p2: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """Sum of per-entry log-probabilities over each agent's real entries → ``[..., n]``."""
        mask = self.action_mask
        safe = torch.where(mask, sample, 0.0 if self.policy == "gaussian" else 0.5)
        return torch.where(mask, self._per_dim(p1, p2).log_prob(safe), 0.0).sum(-1)


def _sample_gamma(
    alpha: torch.Tensor, generator: torch.Generator, attempts: int = 16
) -> torch.Tensor:
    """Gamma(α, 1) for α ≥ 1 by Marsaglia–Tsang, drawing from ``generator`` (vectorised).

    Every element gets ``attempts`` proposals (acceptance ≥ 0.95 each for α ≥ 1); an element
    rejected every time (probability < 1e-20) falls back to the mean α.
    """
    d = alpha - 1.0 / 3.0
    c = torch.rsqrt(9.0 * d)
    out = alpha.clone()
    done = torch.zeros_like(alpha, dtype=torch.bool)
    for _ in range(attempts):
        x = torch.randn(alpha.shape, generator=generator, device=alpha.device, dtype=alpha.dtype)
        u = torch.rand(alpha.shape, generator=generator, device=alpha.device, dtype=alpha.dtype)
        v = (1.0 + c * x) ** 3
        log_v = torch.log(v.clamp_min(torch.finfo(v.dtype).tiny))
        ok = (v > 0) & (torch.log(u) < 0.5 * x.square() + d - d * v + d * log_v)
        out = torch.where(ok & ~done, d * v, out)
        done = done | ok
    return out


def _sample_beta(
    alpha: torch.Tensor, beta: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Beta(α, β) = X / (X + Y) with X ~ Gamma(α), Y ~ Gamma(β) (α, β ≥ 1)."""
    x = _sample_gamma(alpha, generator)
    y = _sample_gamma(beta, generator)
    return x / (x + y)


class Critic(nn.Module):
    """``V_ξ(s)`` on the global state (App. C), 3-layer MLP with ReLU and LayerNorm.

    The network predicts values in :class:`ValueNorm`'s normalised units (``forward``);
    :meth:`value` denormalises. With ``config.value_norm=False`` both are the same.
    """

    def __init__(self, spec: MultiAgentSpec, config: MAPPOConfig | None = None) -> None:
        super().__init__()
        self.spec = spec
        cfg = config or MAPPOConfig()
        self.body = _mlp(spec.state_dim, cfg.hidden_dim, cfg.num_layers, cfg.feature_norm)
        self.head = _head(cfg.hidden_dim, 1, gain=1.0)
        self.value_norm = ValueNorm(cfg.value_norm_beta) if cfg.value_norm else None

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """``[..., S]`` → ``[...]`` value in normalised units."""
        check_tensor("state", state, last_dim=self.spec.state_dim, floating=True)
        return self.head(self.body(state)).squeeze(-1)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.value_norm is None else self.value_norm.normalize(x)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.value_norm is None else self.value_norm.denormalize(x)

    def value(self, state: torch.Tensor) -> torch.Tensor:
        """``[..., S]`` → ``[...]`` value in return units."""
        return self.denormalize(self(state))


# ----------------------------------------------------------------------- objectives
def lambda_returns(
    rewards: torch.Tensor, values: torch.Tensor, discounts: torch.Tensor, lam: float
) -> torch.Tensor:
    """λ-returns of eq. 19 (DreamerV1's form), computed backwards in time.

    With ``T`` imagined steps, step ``t`` (0-based) takes action ``a_t`` in state ``s_t`` and
    receives ``r_t`` and ``d_t``; ``values[t] = V(s_t)`` for ``t = 0..T`` (``values[T]`` is the
    state after the last action, used only to bootstrap)::

        V^λ_T = V(s_T)
        V^λ_t = r_t + d_t · ((1 − λ) · V(s_{t+1}) + λ · V^λ_{t+1}),   t = T−1, …, 0

    Index map to the paper: its trajectory ``t = 1..H`` holds ``H = T + 1`` states; eq. 19's
    ``t < H`` branch is our ``t = 0..T−1`` and its ``t = H`` branch our ``V^λ_T``. Eq. 19 as
    printed writes ``(1 − λ) V_ξ(ŝ_t)``; we follow DreamerV1 (eq. 6 of the cited paper),
    ``(1 − λ) V(s_{t+1})``, which makes ``λ = 0`` the one-step TD target and ``λ = 1`` the
    bootstrapped discounted return. In DIMA ``d_t = γ · (1 − p_t)`` where ``p_t`` is the reward
    model's predicted termination probability of step ``t`` (its ``γ̂_t``), so a likely terminal
    transition stops bootstrapping (see :meth:`MAPPO.prepare_batch`).

    Args:
        rewards: ``[T, *]`` rewards ``r_t``.
        values: ``[T + 1, *]`` ``V(s_t)`` in return units (not normalised).
        discounts: ``[T, *]`` ``d_t``.
        lam: λ in [0, 1].

    Returns:
        ``[T, *]`` targets ``V^λ_t``.
    """
    check_tensor("rewards", rewards, floating=True)
    if rewards.dim() < 1:
        raise ValueError("rewards: expected shape (T, *), received a 0-d tensor")
    T, rest = rewards.shape[0], tuple(rewards.shape[1:])
    check_tensor("values", values, (T + 1, *rest), floating=True)
    check_tensor("discounts", discounts, (T, *rest), floating=True)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam: expected a value in [0, 1], received {lam!r}")
    out = torch.empty_like(rewards)
    next_return = values[T]
    for t in reversed(range(T)):
        next_return = rewards[t] + discounts[t] * ((1.0 - lam) * values[t + 1] + lam * next_return)
        out[t] = next_return
    return out


def ppo_losses(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    *,
    clip: float = 0.1,
    entropy_coef: float = 0.001,
    value_clip: float | None = 0.1,
    huber_delta: float | None = 10.0,
    mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Actor loss (eq. 21) and critic loss (eq. 20 with MAPPO's Huber and value clipping).

    The team advantage ``A_t`` is shared by every agent (App. C): it is broadcast over the agent
    axis. Means run over every (sample, agent) pair where ``mask`` is set, i.e. the mean of the
    per-agent losses ``L^i_ψ`` of eq. 21 over agents.

    Actor::

        ρ = exp(log π − log π_old)
        policy_loss  = −mean(min(ρ A, clip(ρ, 1 − ε, 1 + ε) A))
        entropy_loss = −η · mean(H)
        actor_loss   = policy_loss + entropy_loss

    Critic (all in ValueNorm's normalised units)::

        v_clip      = v_old + clip(v − v_old, −ε_v, ε_v)
        value_loss  = mean(max(ℓ(R − v), ℓ(R − v_clip)))     (no max when value_clip is None)
        ℓ(e) = Huber_δ(e) = ½ e² if |e| ≤ δ else δ (|e| − ½ δ)   (½ e² when huber_delta is None)

    Args:
        log_probs: ``[*, n]`` log-probabilities under the current policy (with gradient).
        old_log_probs: ``[*, n]`` log-probabilities when the data was collected.
        advantages: ``[*]`` team advantages (already normalised if desired).
        entropy: ``[*, n]`` per-agent policy entropies.
        values: ``[*]`` current critic outputs (with gradient).
        old_values: ``[*]`` critic outputs when the batch was prepared.
        returns: ``[*]`` critic targets (normalised λ-returns).
        clip: PPO ε.
        entropy_coef: η.
        value_clip: ε_v, or None for the unclipped loss.
        huber_delta: δ, or None for ½ e².
        mask: ``[*]`` bool/float weights (steps to count); None counts everything.

    Returns:
        dict with scalar tensors ``actor_loss``, ``policy_loss``, ``entropy_loss``, ``entropy``,
        ``critic_loss`` (= ``value_loss``), ``value_loss``, ``ratio`` (mean), ``clip_fraction``
        (share of ratios outside ``[1 − ε, 1 + ε]``) and ``approx_kl`` (mean of
        ``(ρ − 1) − log ρ``, an estimator of KL(π_old ‖ π)).
    """
    check_tensor("log_probs", log_probs, floating=True)
    if log_probs.dim() < 1:
        raise ValueError("log_probs: expected shape (*, n), received a 0-d tensor")
    lead = tuple(log_probs.shape[:-1])
    check_tensor("old_log_probs", old_log_probs, tuple(log_probs.shape), floating=True)
    check_tensor("entropy", entropy, tuple(log_probs.shape), floating=True)
    for name, x in (
        ("advantages", advantages),
        ("values", values),
        ("old_values", old_values),
        ("returns", returns),
    ):
        check_tensor(name, x, lead, floating=True)
    if mask is not None:
        check_tensor("mask", mask, lead)
    if not clip > 0:
        raise ValueError(f"clip: expected a positive number, received {clip!r}")

    agent_mask = None if mask is None else mask[..., None]  # (*, 1) broadcast over agents
    log_ratio = log_probs - old_log_probs  # (*, n)
    ratio = log_ratio.exp()
    adv = advantages[..., None]  # (*, 1) the team advantage, shared by all agents
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)
    policy_loss = -_masked_mean(surrogate, agent_mask)
    mean_entropy = _masked_mean(entropy, agent_mask)
    entropy_loss = -entropy_coef * mean_entropy

    def error_loss(err: torch.Tensor) -> torch.Tensor:
        if huber_delta is None:
            return 0.5 * err.square()
        return F.huber_loss(err, torch.zeros_like(err), reduction="none", delta=huber_delta)

    loss = error_loss(returns - values)
    if value_clip is not None:
        clipped = old_values + (values - old_values).clamp(-value_clip, value_clip)
        loss = torch.maximum(loss, error_loss(returns - clipped))
    value_loss = _masked_mean(loss, mask)

    with torch.no_grad():
        ratio_mean = _masked_mean(ratio, agent_mask)
        clip_fraction = _masked_mean(((ratio - 1.0).abs() > clip).to(ratio.dtype), agent_mask)
        approx_kl = _masked_mean((ratio - 1.0) - log_ratio, agent_mask)
    return {
        "actor_loss": policy_loss + entropy_loss,
        "policy_loss": policy_loss,
        "entropy_loss": entropy_loss,
        "entropy": mean_entropy,
        "critic_loss": value_loss,
        "value_loss": value_loss,
        "ratio": ratio_mean,
        "clip_fraction": clip_fraction,
        "approx_kl": approx_kl,
    }


# --------------------------------------------------------------------- the learner
class _StepLike(Protocol):
    """The fields of :class:`dimalib.imagination.ImaginedStep` that MAPPO reads."""

    @property
    def obs(self) -> torch.Tensor: ...  # (B, O)
    @property
    def state(self) -> torch.Tensor: ...  # (B, S)
    @property
    def reward(self) -> torch.Tensor: ...  # (B,)
    @property
    def terminated(self) -> torch.Tensor: ...  # (B,) bool, sticky
    @property
    def termination_prob(self) -> torch.Tensor: ...  # (B,)


class ImaginationEnvLike(Protocol):
    """What :meth:`MAPPO.collect_imagined_rollout` needs: :class:`ImaginationEnv` fits."""

    @property
    def horizon(self) -> int: ...

    def reset(self, *, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]: ...

    def step(self, joint_action: torch.Tensor) -> _StepLike: ...


class MAPPO:
    """DIMA's MAPPO: shared actor on observations, critic on the global state, λ-returns.

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
        self.actor_optim = torch.optim.Adam(
            self.actor.parameters(), lr=cfg.actor_lr, eps=cfg.adam_eps
        )
        self.critic_optim = torch.optim.Adam(
            self.critic.parameters(), lr=cfg.critic_lr, eps=cfg.adam_eps
        )

    # ---------------------------------------------------------------- acting
    @torch.no_grad()
    def act(
        self,
        joint_obs: torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``[..., O]`` joint observation → ``[..., A]`` joint action in environment units.

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
        max_horizon = int(imagination_env.horizon)
        horizon = max_horizon if horizon is None else horizon
        if not isinstance(horizon, int) or not 1 <= horizon <= max_horizon:
            raise ValueError(
                f"horizon: expected an integer in [1, {max_horizon}] (the env's horizon), "
                f"received {horizon!r}"
            )
        obs, state = imagination_env.reset(seed=seed)
        obs, state = obs.to(self.device), state.to(self.device)
        alive = torch.ones(obs.shape[0], dtype=torch.bool, device=self.device)
        steps: dict[str, list[torch.Tensor]] = {}
        for _ in range(horizon):
            out = self.actor.act(obs, generator=generator)
            step = imagination_env.step(out.action)
            record = {
                "obs": obs,  # (B, O) o_t
                "state": state,  # (B, S) s_t
                "actions": out.policy_action,  # (B, A)
                "env_actions": out.action,  # (B, A)
                "log_probs": out.log_prob,  # (B, n)
                "mask": alive,  # (B,) not terminated before step t
                "rewards": step.reward,  # (B,) r_t
                "termination_prob": step.termination_prob,  # (B,) p_t
                "terminated": step.terminated,  # (B,) after step t
            }
            for key, value in record.items():
                steps.setdefault(key, []).append(value.to(self.device))
            obs, state = step.obs.to(self.device), step.state.to(self.device)
            alive = ~step.terminated.to(self.device)
        steps["state"].append(state)  # s_T, for bootstrapping
        rollout = {k: torch.stack(v) for k, v in steps.items()}
        rollout["rewards"] = rollout["rewards"].float()
        rollout["termination_prob"] = rollout["termination_prob"].float()
        return rollout

    # -------------------------------------------------------------- learning
    def _check_rollout(self, rollout: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not isinstance(rollout, Mapping):
            raise ValueError(
                f"rollout: expected a mapping of tensors, received {type(rollout).__name__}"
            )
        missing = [k for k in _ROLLOUT_KEYS if k not in rollout]
        if missing:
            raise ValueError(f"rollout: missing keys {missing}; received keys {sorted(rollout)}")
        has_d, has_p = "discounts" in rollout, "termination_prob" in rollout
        if has_d == has_p:
            raise ValueError(
                "rollout: expected exactly one of 'discounts' and 'termination_prob', received "
                f"{'both' if has_d else 'neither'}"
            )
        rewards = check_tensor(
            "rollout['rewards']", rollout["rewards"], (None, None), floating=True
        )
        T, B = rewards.shape
        spec = self.spec
        shapes = {
            "obs": (T, B, spec.joint_obs_dim),
            "state": (T + 1, B, spec.state_dim),
            "actions": (T, B, spec.joint_action_dim),
            "log_probs": (T, B, spec.n_agents),
            "discounts": (T, B),
            "termination_prob": (T, B),
        }
        out: dict[str, torch.Tensor] = {"rewards": rewards}
        for key, shape in shapes.items():
            if key in rollout:
                out[key] = check_tensor(f"rollout[{key!r}]", rollout[key], shape, floating=True)
        for key, value in out.items():
            check_finite(f"rollout[{key!r}]", value)
        if "mask" in rollout:
            out["mask"] = check_tensor("rollout['mask']", rollout["mask"], (T, B))
        return {k: v.to(self.device) for k, v in out.items()}

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
        r = self._check_rollout(rollout)
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
            mean = _masked_mean(advantages, mask)
            std = _masked_mean((advantages - mean).square(), mask).sqrt()
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
        stats["return_mean"] = _masked_mean(batch["lambda_returns"], batch["mask"])
        stats["value_mean"] = _masked_mean(batch["values"], batch["mask"])
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
        self.actor_optim.load_state_dict(copy.deepcopy(state["actor_optim"]))
        self.critic_optim.load_state_dict(copy.deepcopy(state["critic_optim"]))

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
