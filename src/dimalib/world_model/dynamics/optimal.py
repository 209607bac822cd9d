"""The closed-form optimal denoiser of a linear-Gaussian multi-agent system.

For ``s' = A s_t + Σ_i B_i a^i_t + ε`` with ``a^j ~ N(m_j, Σ_j)`` independent and
``ε ~ N(0, Σ_ε)``, the next state given the context and the current actions of a revealed set
``R`` of agents is Gaussian:

    s' | s_t, a^R ~ N(μ_R, C_R),   μ_R = A s_t + Σ_{i∈R} B_i a^i + Σ_{j∉R} B_j m_j,
                                   C_R = Σ_ε + Σ_{j∉R} B_j Σ_j B_jᵀ.

In the denoisers' model space ``x = T (s − μ_n)`` (``T = diag(σ_data / σ_n)``, the normaliser's
statistics) the MMSE denoiser of ``x_σ = x_0 + σ n`` is therefore

    D(x_σ; σ, R) = m + P (P + σ² I)⁻¹ (x_σ − m),   m = T (μ_R − μ_n),  P = T C_R T,

the best any network trained with the loss of eq. 9 (``R = {k}``), of the cumulative schedule
(``R`` a subset) or of the joint model (``R`` = all) can learn. Put through the library's own
:class:`~dimalib.world_model.dynamics.sampler.EulerSampler`, it gives the exact error floor of a reveal
schedule (:meth:`LinearGaussianDenoiser.predict_next_state`), with no training noise in the way.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import torch

from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import check_tensor
from dimalib.world_model.dynamics.reveal import Order, RevealSchedule
from dimalib.world_model.dynamics.sampler import EulerSampler, SamplerConfig

__all__ = ["LinearGaussianDenoiser", "LinearGaussianLaw"]


class LinearGaussianLaw(Protocol):
    """What :meth:`LinearGaussianDenoiser.from_system` reads (e.g.
    :class:`~dimalib.envs.linear.LinearGaussianSystem`)."""

    spec: MultiAgentSpec
    A: torch.Tensor
    B: torch.Tensor
    noise_std: float
    action_std: float

    @property
    def state_mean(self) -> torch.Tensor: ...

    @property
    def state_std(self) -> torch.Tensor: ...


class LinearGaussianDenoiser:
    """MMSE denoiser of a linear-Gaussian system, with the learned denoisers' prediction API.

    Args:
        spec: the team.
        A: ``[S, S]``; B: ``[S, A]``.
        noise_cov: ``[S, S]`` covariance ``Σ_ε`` of the next-state noise.
        action_mean: ``[A]`` mean of the data's actions; action_var: ``[A]`` their variance
            (independent entries).
        state_mean: ``[S]`` the model-space normalisation's mean (use the data's statistics, as
            a learned denoiser's running normaliser would).
        state_std: ``[S]`` its standard deviation.
        sigma_data: EDM's ``σ_data`` (App. B: 0.5).
        sampler: the sampler settings (steps, σs, order, reveal schedule).
        context: ``L`` (only the last state matters; kept for the prediction API).
    """

    def __init__(
        self,
        spec: MultiAgentSpec,
        A: torch.Tensor,
        B: torch.Tensor,
        noise_cov: torch.Tensor,
        action_mean: torch.Tensor,
        action_var: torch.Tensor,
        state_mean: torch.Tensor,
        state_std: torch.Tensor,
        *,
        sigma_data: float = 0.5,
        sampler: SamplerConfig | None = None,
        context: int = 3,
    ) -> None:
        S, Ad = spec.state_dim, spec.joint_action_dim
        for name, value, shape in (
            ("A", A, (S, S)),
            ("B", B, (S, Ad)),
            ("noise_cov", noise_cov, (S, S)),
            ("action_mean", action_mean, (Ad,)),
            ("action_var", action_var, (Ad,)),
            ("state_mean", state_mean, (S,)),
            ("state_std", state_std, (S,)),
        ):
            check_tensor(name, value, shape, floating=True, finite=True)
        self.spec = spec
        sampler = sampler or SamplerConfig()
        self.sampler = EulerSampler(
            dataclasses.replace(sampler, reveal=sampler.reveal.for_team(spec))
        )
        self.sigma_data = sigma_data
        self._context = context
        f64 = torch.float64
        self.A, self.B = A.to(f64), B.to(f64)
        self.action_mean = action_mean.to(f64)
        self.state_mean = state_mean.to(f64)
        self.scale = sigma_data / state_std.to(f64)  # T = diag(scale)
        T = torch.diag(self.scale)
        # P_j = T B_j Σ_j B_jᵀ T, the model-space covariance agent j adds while hidden: (n, S, S)
        per_agent = []
        for sl in spec.action_slices:
            b = self.B[:, sl]
            per_agent.append(T @ b @ torch.diag(action_var.to(f64)[sl]) @ b.T @ T)
        self.agent_cov = torch.stack(per_agent)
        self.noise_cov = T @ noise_cov.to(f64) @ T
        # the agent of every joint-action entry: (A,)
        self.entry_agent = torch.arange(spec.n_agents).repeat_interleave(
            torch.tensor(spec.action_dims)
        )

    @classmethod
    def from_system(
        cls, system: LinearGaussianLaw, *, sampler: SamplerConfig | None = None, context: int = 3
    ) -> LinearGaussianDenoiser:
        """The optimal denoiser of a :class:`~dimalib.envs.linear.LinearGaussianSystem`."""
        S, A = system.spec.state_dim, system.spec.joint_action_dim
        f64 = torch.float64
        return cls(
            system.spec,
            system.A,
            system.B,
            system.noise_std**2 * torch.eye(S, dtype=f64),
            torch.zeros(A, dtype=f64),
            torch.full((A,), system.action_std**2, dtype=f64),
            system.state_mean,
            system.state_std,
            sampler=sampler,
            context=context,
        )

    @property
    def context(self) -> int:
        return self._context

    @property
    def reveal(self) -> RevealSchedule:
        return self.sampler.config.reveal

    def eval(self) -> LinearGaussianDenoiser:
        """No-op (the prediction API of the learned models)."""
        return self

    def denoise(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        state: torch.Tensor,
        action: torch.Tensor,
        revealed: torch.Tensor,
    ) -> torch.Tensor:
        """``D(x_σ; σ, R)`` in model space.

        Args:
            x: ``[B, S]`` noisy next state (model space); sigma: ``[B]``.
            state: ``[B, S]`` ``s_t`` (environment units); action: ``[B, A]`` ``a_t``.
            revealed: ``[B, n]`` bool.
        """
        f64, dev = torch.float64, x.device
        A, B, entry_agent = self.A.to(dev), self.B.to(dev), self.entry_agent.to(dev)
        hidden = (~revealed).to(f64)  # (B, n)
        joint_hidden = hidden[:, entry_agent]  # (B, A)
        act = action.to(f64) * (1 - joint_hidden) + self.action_mean.to(dev) * joint_hidden
        mu = state.to(f64) @ A.T + act @ B.T  # (B, S) μ_R
        m = (mu - self.state_mean.to(dev)) * self.scale.to(dev)
        agent_cov = torch.einsum("bn,nij->bij", hidden, self.agent_cov.to(dev))
        P = self.noise_cov.to(dev) + agent_cov  # (B, S, S)
        eye = torch.eye(P.shape[-1], dtype=f64, device=dev)
        v = torch.linalg.solve(P + sigma.to(f64)[:, None, None] ** 2 * eye, x.to(f64) - m)
        return (m + torch.einsum("bij,bj->bi", P, v)).to(x.dtype)

    @torch.inference_mode()
    def predict_next_state(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        order: Order | None = None,
        reveal: RevealSchedule | None = None,
        generator: torch.Generator | None = None,
        check_inputs: bool = True,
    ) -> torch.Tensor:
        """Sample ``s_{t+1}`` with the library's sampler and this exact denoiser.

        Same arguments as :meth:`SequentialAgentDenoiser.predict_next_state
        <dimalib.world_model.dynamics.SequentialAgentDenoiser.predict_next_state>` (``mask`` is not needed:
        the system is Markov).
        """
        S, Ad = self.spec.state_dim, self.spec.joint_action_dim
        if check_inputs:
            check_tensor("states", states, (None, None, S), floating=True, finite=True)
            check_tensor(
                "actions", actions, (states.shape[0], None, Ad), floating=True, finite=True
            )
        state, action = states[:, -1], actions[:, -1]

        def denoise(x: torch.Tensor, sigma: torch.Tensor, revealed: torch.Tensor) -> torch.Tensor:
            return self.denoise(x, sigma, state, action, revealed)

        x = self.sampler.sample(
            denoise,
            (states.shape[0], S),
            self.spec.n_agents,
            order=order,
            reveal=None if reveal is None else reveal.for_team(self.spec),
            agent_names=self.spec.agent_names,
            generator=generator,
            device=states.device,
            dtype=torch.float64,
        )
        scale, mean = self.scale.to(x.device), self.state_mean.to(x.device)
        return (x / scale + mean).to(states.dtype)
