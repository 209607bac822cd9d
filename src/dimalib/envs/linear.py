"""`LinearGaussianSystem`: a multi-agent system whose next-state law is known in closed form.

``s_{t+1} = A s_t + Σ_i B_i a^i_t + ε``, ``ε ~ N(0, noise_std² I)``, with every agent's action
drawn independently, ``a^i ~ N(0, action_std² I)`` (in the data; any action can be evaluated).
Because every law in it is Gaussian, the MMSE denoiser of its next state given any subset of the
agents' current actions is available in closed form
(:class:`~dimalib.world_model.dynamics.optimal.LinearGaussianDenoiser`): the error floor of any reveal
schedule can be computed exactly, and a learned dynamics model compared against it, agent by
agent (:func:`~dimalib.evaluation.action_effects`: the true effect of changing agent ``i``'s
action by ``δ`` is ``B_i δ``).

:meth:`LinearGaussianSystem.random` builds the system of the fidelity audit (docs/design.md):
``A = decay · Q`` with ``Q`` a random orthogonal matrix, and every ``B_i`` scaled so that each agent
adds the same variance to the next state. States are drawn from the stationary law, so every
window of :meth:`LinearGaussianSystem.windows` is a stretch of one long trajectory.

This is an evaluation instrument (no rewards, no episodes), not a task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from dimalib.spec import MultiAgentSpec

__all__ = ["LinearGaussianSystem"]


@dataclass(frozen=True, eq=False)
class LinearGaussianSystem:
    """``s' = A s + B a + ε`` with Gaussian actions and noise (see the module docstring).

    Args:
        spec: the team (its action bounds only scale the models' action encoders: actions are
            unbounded Gaussians, keep the bounds a few ``action_std`` wide).
        A: ``[S, S]`` state transition (spectral radius < 1 for a stationary law).
        B: ``[S, A]`` action matrix; agent ``i`` acts through ``B[:, spec.action_slices[i]]``.
        noise_std: std of every entry of ``ε``.
        action_std: std of every action entry in the data.
    """

    spec: MultiAgentSpec
    A: torch.Tensor
    B: torch.Tensor
    noise_std: float = 0.01
    action_std: float = 1.0
    stationary_cov: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        S, A = self.spec.state_dim, self.spec.joint_action_dim
        if tuple(self.A.shape) != (S, S):
            raise ValueError(f"A: expected shape ({S}, {S}), received {tuple(self.A.shape)}")
        if tuple(self.B.shape) != (S, A):
            raise ValueError(f"B: expected shape ({S}, {A}), received {tuple(self.B.shape)}")
        if not self.noise_std > 0 or not self.action_std > 0:
            raise ValueError(
                f"noise_std/action_std: expected > 0, received {self.noise_std}, {self.action_std}"
            )
        radius = float(torch.linalg.eigvals(self.A.double()).abs().max())
        if radius >= 1:
            raise ValueError(f"A: expected spectral radius < 1, received {radius:.4f}")
        object.__setattr__(self, "A", self.A.double())
        object.__setattr__(self, "B", self.B.double())
        # stationary covariance: P = A P Aᵀ + Q, Q = action_std² B Bᵀ + noise_std² I
        q = self.action_std**2 * self.B @ self.B.T + self.noise_std**2 * torch.eye(S).double()
        p = q.clone()
        for _ in range(10_000):
            nxt = self.A @ p @ self.A.T + q
            if torch.allclose(nxt, p, rtol=1e-12, atol=1e-14):
                break
            p = nxt
        object.__setattr__(self, "stationary_cov", (p + p.T) / 2)

    @classmethod
    def random(
        cls,
        action_dims: Sequence[int],
        state_dim: int = 10,
        *,
        decay: float = 0.9,
        noise_std: float = 0.01,
        action_std: float = 1.0,
        agent_variance: float = 0.1,
        seed: int = 0,
    ) -> LinearGaussianSystem:
        """The audit system: ``A = decay·Q`` (``Q`` random orthogonal), each agent adding
        ``agent_variance`` (summed over the state) to the next state's variance.

        Examples:
            >>> system = LinearGaussianSystem.random((2, 3), seed=0)
            >>> system.spec.action_dims, tuple(system.B.shape)
            ((2, 3), (10, 5))
        """
        g = torch.Generator().manual_seed(seed)
        n = len(action_dims)
        spec = MultiAgentSpec(
            tuple(f"agent_{i}" for i in range(n)),
            obs_dims=(state_dim,) * n,
            action_dims=tuple(action_dims),
            state_dim=state_dim,
            action_low=-4 * action_std,
            action_high=4 * action_std,
        )
        q, _ = torch.linalg.qr(torch.randn(state_dim, state_dim, generator=g, dtype=torch.float64))
        blocks = []
        for d in action_dims:
            b = torch.randn(state_dim, d, generator=g, dtype=torch.float64)
            # tr(action_std² b bᵀ) = agent_variance
            blocks.append(b * (agent_variance**0.5 / (action_std * b.norm())))
        return cls(spec, decay * q, torch.cat(blocks, dim=1), noise_std, action_std)

    # ------------------------------------------------------------- dynamics
    def mean_next_state(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``[..., S]``, ``[..., A]`` → the noiseless next state ``A s + B a``."""
        dtype = state.dtype
        return (state.double() @ self.A.T + action.double() @ self.B.T).to(dtype)

    def agent_matrix(self, agent: int) -> torch.Tensor:
        """``[S, d_i]``: how agent ``i``'s action moves the next state, ``B_i``."""
        return self.B[:, self.spec.action_slices[agent]]

    @property
    def state_mean(self) -> torch.Tensor:
        """``[S]`` mean of the stationary state law (zero)."""
        return torch.zeros(self.spec.state_dim, dtype=torch.float64)

    @property
    def state_std(self) -> torch.Tensor:
        """``[S]`` standard deviation of every state entry under the stationary law."""
        return self.stationary_cov.diagonal().sqrt()

    def windows(
        self,
        batch_size: int,
        context: int = 3,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> dict[str, torch.Tensor]:
        """Training windows in the replay buffer's ``sample_dynamics`` layout.

        Returns:
            ``states [B, L, S]`` (``s_{t−L+1..t}``, the first from the stationary law),
            ``actions [B, L, A]``, ``next_state [B, S]`` and ``mean_next_state [B, S]`` (the
            noiseless ``A s_t + B a_t``).
        """
        S, A = self.spec.state_dim, self.spec.joint_action_dim
        chol = torch.linalg.cholesky(self.stationary_cov)
        s = torch.randn(batch_size, S, generator=generator, dtype=torch.float64) @ chol.T
        states, actions = [], []
        mean = s
        for _ in range(context):
            a = torch.randn(batch_size, A, generator=generator, dtype=torch.float64)
            a = a * self.action_std
            states.append(s)
            actions.append(a)
            mean = self.mean_next_state(s, a)
            eps = torch.randn(batch_size, S, generator=generator, dtype=torch.float64)
            s = mean + self.noise_std * eps
        return {
            "states": torch.stack(states, dim=1).to(dtype),
            "actions": torch.stack(actions, dim=1).to(dtype),
            "next_state": s.to(dtype),
            "mean_next_state": mean.to(dtype),
        }
