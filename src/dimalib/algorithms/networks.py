"""MAPPO's networks: the shared actor, the critic and ValueNorm (paper App. C).

Read top to bottom:

1. :func:`mlp` and :func:`linear_head` — MAPPO/HARL's layers (orthogonal initialisation).
2. :func:`masked_mean` — the masked reduction used by ValueNorm, the losses and the learner.
3. :class:`ValueNorm` — MAPPO's running normaliser of value targets.
4. :class:`Actor` — one policy shared by all agents (parameter sharing), batched over agents.
5. :func:`sample_gamma` / :func:`sample_beta` — Beta sampling from an explicit generator.
6. :class:`Critic` — ``V(s)`` on the global state, in ValueNorm's normalised units.

The networks are sized by :class:`~dimalib.algorithms.mappo.MAPPOConfig` (its ``hidden_dim``,
``num_layers``, ``feature_norm``, ``policy``, ``std_*`` and ``value_norm*`` fields).

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

from typing import TYPE_CHECKING, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Beta, Normal

from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import check_tensor
from dimalib.utils.linear import Linear

if TYPE_CHECKING:
    from dimalib.algorithms.mappo import MAPPOConfig

__all__ = [
    "BETA_EPS",
    "Actor",
    "ActorOutput",
    "Critic",
    "PolicyKind",
    "ValueNorm",
    "linear_head",
    "masked_mean",
    "mlp",
    "sample_beta",
    "sample_gamma",
]

PolicyKind = Literal["gaussian", "beta"]

BETA_EPS = 1e-6  # Beta samples are kept in [eps, 1 - eps] so their log-probability is finite


def _default_config() -> MAPPOConfig:
    # deferred: dimalib.algorithms.mappo imports this module (MAPPOConfig must stay defined there,
    # pickled checkpoints name it)
    from dimalib.algorithms.mappo import MAPPOConfig

    return MAPPOConfig()


# ------------------------------------------------------------------------ layers
def mlp(in_dim: int, hidden_dim: int, num_layers: int, feature_norm: bool) -> nn.Sequential:
    """``[LayerNorm(in)] → (Linear → ReLU → LayerNorm) × num_layers``, orthogonal init (HARL)."""
    layers: list[nn.Module] = [nn.LayerNorm(in_dim)] if feature_norm else []
    dim = in_dim
    for _ in range(num_layers):
        linear = Linear(dim, hidden_dim)
        nn.init.orthogonal_(linear.weight, gain=nn.init.calculate_gain("relu"))
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU(), nn.LayerNorm(hidden_dim)]
        dim = hidden_dim
    return nn.Sequential(*layers)


def linear_head(in_dim: int, out_dim: int, gain: float) -> nn.Linear:
    """Output layer ``Linear(in_dim, out_dim)``: orthogonal weights of gain ``gain``, zero bias."""
    linear = Linear(in_dim, out_dim)
    nn.init.orthogonal_(linear.weight, gain=gain)
    nn.init.zeros_(linear.bias)
    return linear


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` (broadcast to ``x``) is nonzero."""
    if mask is None:
        return x.mean()
    weight = mask.to(x.dtype).expand_as(x)
    return (x * weight).sum() / weight.sum().clamp_min(1.0)


# ------------------------------------------------------------------------ networks
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
        batch_mean = masked_mean(x, mask)
        batch_mean_sq = masked_mean(x.square(), mask)
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
        self.config = cfg = config or _default_config()
        self.policy: PolicyKind = cfg.policy
        n, m = spec.n_agents, spec.max_action_dim
        self.in_dim = spec.max_obs_dim + n
        self.body = mlp(self.in_dim, cfg.hidden_dim, cfg.num_layers, cfg.feature_norm)
        if cfg.policy == "gaussian":
            self.head = linear_head(cfg.hidden_dim, m, gain=0.01)  # HARL: small initial actions
            self.std_param = nn.Parameter(torch.full((m,), float(cfg.std_init)))
        else:
            self.head = linear_head(cfg.hidden_dim, 2 * m, gain=0.01)
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
                sample = sample_beta(p1, p2, generator)
            sample = sample.clamp(BETA_EPS, 1.0 - BETA_EPS)
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
            padded = padded.clamp(BETA_EPS, 1.0 - BETA_EPS)
        mask = self.action_mask
        entropy = torch.where(mask, self._per_dim(p1, p2).entropy(), 0.0).sum(-1)  # (..., n)
        return self._log_prob(p1, p2, padded), entropy

    def _log_prob(self, p1: torch.Tensor, p2: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """Sum of per-entry log-probabilities over each agent's real entries → ``[..., n]``."""
        mask = self.action_mask
        safe = torch.where(mask, sample, 0.0 if self.policy == "gaussian" else 0.5)
        return torch.where(mask, self._per_dim(p1, p2).log_prob(safe), 0.0).sum(-1)


def sample_gamma(
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


def sample_beta(
    alpha: torch.Tensor, beta: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Beta(α, β) = X / (X + Y) with X ~ Gamma(α), Y ~ Gamma(β) (α, β ≥ 1)."""
    x = sample_gamma(alpha, generator)
    y = sample_gamma(beta, generator)
    return x / (x + y)


class Critic(nn.Module):
    """``V_ξ(s)`` on the global state (App. C), 3-layer MLP with ReLU and LayerNorm.

    The network predicts values in :class:`ValueNorm`'s normalised units (``forward``);
    :meth:`value` denormalises. With ``config.value_norm=False`` both are the same.
    """

    def __init__(self, spec: MultiAgentSpec, config: MAPPOConfig | None = None) -> None:
        super().__init__()
        self.spec = spec
        cfg = config or _default_config()
        self.body = mlp(spec.state_dim, cfg.hidden_dim, cfg.num_layers, cfg.feature_norm)
        self.head = linear_head(cfg.hidden_dim, 1, gain=1.0)
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
