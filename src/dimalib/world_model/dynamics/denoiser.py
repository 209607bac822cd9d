"""The dynamics model: an EDM-preconditioned denoiser of the next global state.

``SequentialAgentDenoiser`` is DIMA's ``D_θ(s^σ_{t+1}; σ, s_{t−L+1:t}, a_{t−L+1:t−1}, a^R_t)``
(paper eq. 9–10, App. G.1): every denoising step sees the past states and joint actions and the
current actions of the agents ``R`` its reveal schedule (:mod:`dimalib.world_model.dynamics.reveal`) names
for that step: one agent ``k`` in the paper's ``"sequential"`` schedule (eq. 9), a growing set in
the ``"cumulative"`` one. ``JointActionDenoiser`` is the conventional model of paper Fig. 2 (all
agents' current actions at every step, the ``"joint"`` schedule), on the same network for
like-for-like comparisons (Fig. 8).

Units: the public methods take and return states in the environment's units. Inside, states are
normalised by a running mean/std (kept in the ``state_dict``) and multiplied by ``σ_data``, as
DIMA's code does; this is the "model space" the diffusion runs in.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import check_keys, check_tensor
from dimalib.utils.io import restore_fields
from dimalib.utils.linear import Linear, linear
from dimalib.world_model.dynamics.conditioning import ActionContext, AgentActionEncoder
from dimalib.world_model.dynamics.edm import EDMCoefficients, EDMConfig, EDMPreconditioner
from dimalib.world_model.dynamics.reveal import Order, RevealSchedule
from dimalib.world_model.dynamics.sampler import EulerSampler, SamplerConfig
from dimalib.world_model.dynamics.unet1d import FourierFeatures, UNet1D
from dimalib.world_model.normalizer import RunningNormalizer

__all__ = ["DenoiserConfig", "JointActionDenoiser", "SequentialAgentDenoiser"]


@dataclass(frozen=True)
class DenoiserConfig:
    """Dynamics model settings; defaults are the paper's (cited per field)."""

    context: int = 3  # L: states s_{t-2:t} and actions a_{t-2:t} (App. G.1, eq. 9 with L = 3)
    channels: tuple[int, ...] = (64, 64, 64)  # Table 3: residual block channels
    depths: tuple[int, ...] = (2, 2, 2)  # Table 3: residual block layers
    cond_dim: int = 256  # Table 3: residual block conditioning dimension
    action_token_dim: int = 128  # dimalib: width of one agent's action token
    edm: EDMConfig = field(default_factory=EDMConfig)  # App. B
    sampler: SamplerConfig = field(default_factory=SamplerConfig)  # Table 4; reveal schedule
    update_normalizer: bool = True  # loss() in train mode updates the running state statistics
    normalizer_min_std: float = 1e-2
    # dimalib (issue "scale"): agents revealed together (the reveal schedule's groups, else the
    # spec's groups) with equal action sizes share one linear action encoder; off in the paper
    share_action_encoder: bool = False

    def __post_init__(self) -> None:
        if self.context < 1:
            raise ValueError(f"context: expected >= 1, received {self.context}")

    def __setstate__(self, state: dict[str, Any]) -> None:
        restore_fields(self, state)  # configs pickled before share_action_encoder: False


class _Denoiser(nn.Module):
    """Shared machinery of the sequential and the joint-action denoisers."""

    def __init__(self, spec: MultiAgentSpec, config: DenoiserConfig | None = None) -> None:
        super().__init__()
        self.spec = spec
        config = config or DenoiserConfig()
        # groups="spec" becomes this team's groups, so the saved config names them explicitly
        reveal = config.sampler.reveal.for_team(spec)
        if reveal is not config.sampler.reveal:
            config = dataclasses.replace(
                config, sampler=dataclasses.replace(config.sampler, reveal=reveal)
            )
        self.config = config
        # set only inside sampling(): (Σ2C × D_tok weight, Σ2C bias, Σ2C × D noise weight)
        self._folded: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.edm = EDMPreconditioner(config.edm)
        self.sampler = EulerSampler(config.sampler)
        self.normalizer = RunningNormalizer(spec.state_dim, min_std=config.normalizer_min_std)
        self.action_encoder = AgentActionEncoder(
            spec,
            config.context,
            config.action_token_dim,
            config.cond_dim,
            share_groups=self._encoder_groups(spec, config),
        )
        self.noise_embedding = nn.Sequential(
            FourierFeatures(config.cond_dim),
            Linear(config.cond_dim, config.cond_dim),
            nn.SiLU(),
            Linear(config.cond_dim, config.cond_dim),
        )
        # input channels: the state's features plus a flag that is 0 on padded context steps
        self.unet = UNet1D(
            spec.state_dim + 1, spec.state_dim, config.cond_dim, config.depths, config.channels
        )

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_folded": None}  # a copy starts outside sampling()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_folded", None)  # pickled before sampling()

    @staticmethod
    def _encoder_groups(
        spec: MultiAgentSpec, config: DenoiserConfig
    ) -> tuple[tuple[int, ...], ...] | None:
        """The agent groups that share an action encoder (None: one encoder per agent)."""
        if not config.share_action_encoder:
            return None
        reveal = config.sampler.reveal
        if reveal.groups is None:
            return spec.group_members
        member = reveal.membership(spec.n_agents, spec.agent_names)  # (G, n)
        return tuple(tuple(int(j) for j in row.nonzero().flatten()) for row in member)

    @property
    def context(self) -> int:
        """``L``: the number of past states and joint actions a prediction takes."""
        return self.config.context

    @property
    def reveal(self) -> RevealSchedule:
        """The reveal schedule this model trains with and samples with by default."""
        return self.config.sampler.reveal

    # ------------------------------------------------------------------ units
    def to_model_space(self, states: torch.Tensor) -> torch.Tensor:
        """Environment units → normalised and scaled by σ_data."""
        return self.normalizer.normalize(states) * self.edm.sigma_data

    def from_model_space(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_model_space`."""
        return self.normalizer.denormalize(x / self.edm.sigma_data)

    # ------------------------------------------------------------- checking
    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype: floating inputs are converted to it (utils.checks)."""
        return next(self.noise_embedding.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.noise_embedding.parameters()).device

    def _check(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        mask: torch.Tensor | None,
        *,
        n_actions: int,
        finite: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Validated ``(states, actions, mask)``, floats converted to the model's dtype."""
        L, S, A = self.config.context, self.spec.state_dim, self.spec.joint_action_dim
        dtype, device = self.dtype, self.device
        states = check_tensor(
            "states", states, (None, L, S), finite=finite, cast=dtype, device=device, nonempty=True
        )
        B = states.shape[0]
        actions = check_tensor(
            "actions", actions, (B, n_actions, A), finite=finite, cast=dtype, device=device
        )
        if mask is None:
            mask = torch.ones(B, L, dtype=torch.bool, device=states.device)
        check_tensor("mask", mask, (B, L), dtype=torch.bool, device=self.device)
        return states, actions, mask

    # --------------------------------------------------------------- network
    def encode_actions(self, actions: torch.Tensor, mask: torch.Tensor) -> ActionContext:
        """Per-prediction action tokens (``actions [B, L, A]`` ends with the current action)."""
        return self.action_encoder.encode_context(actions, mask)

    def denoise(
        self,
        noisy: torch.Tensor,
        sigma: torch.Tensor,
        context: torch.Tensor,
        mask: torch.Tensor,
        actions: ActionContext,
        revealed: torch.Tensor,
    ) -> torch.Tensor:
        """``D_θ`` in model space (eq. 10).

        Args:
            noisy: ``[B, S]`` noisy next state ``s^σ_{t+1}``.
            sigma: ``[B]`` noise levels (one level expanded over the batch, as the sampler
                passes it, is embedded once).
            context: ``[B, L, S]`` past states in model space.
            mask: ``[B, L]`` bool, False on padded context steps.
            actions: the tokens of :meth:`encode_actions`.
            revealed: ``[B, n]`` bool, the agents whose current action is revealed.

        Returns:
            ``[B, S]`` the denoised next state in model space.
        """
        return self.edm.denoised(
            noisy, *self._network(noisy, sigma, context, mask, actions, revealed)
        )

    def _network(
        self,
        noisy: torch.Tensor,
        sigma: torch.Tensor,
        context: torch.Tensor,
        mask: torch.Tensor,
        actions: ActionContext,
        revealed: torch.Tensor,
    ) -> tuple[torch.Tensor, EDMCoefficients]:
        coeffs = self.edm.coefficients(sigma[:, None])  # each (B, 1)
        c_noise = coeffs.c_noise[:, 0]  # (B,)
        if sigma.dim() == 1 and sigma.shape[0] > 1 and sigma.stride(0) == 0:
            c_noise = c_noise[:1]  # the sampler's one σ expanded over the batch: embed it once
        noise = self.noise_embedding(c_noise)  # (B or 1, D)
        valid = mask.to(context.dtype)[..., None]  # (B, L, 1)
        past = torch.cat([context * valid, valid], dim=-1)  # (B, L, S+1)
        current = torch.cat([coeffs.c_in * noisy, torch.ones_like(noisy[:, :1])], dim=-1)
        seq = rearrange(torch.cat([past, current[:, None]], dim=1), "b t c -> b c t")
        if self._folded is None or torch.is_grad_enabled():
            cond = noise + self.action_encoder.pool(actions, revealed)  # (B, D)
            out = self.unet(seq, cond)  # (B, S, L+1)
        else:  # inside sampling(): the norms' condition projection folded into the pool's
            act_weight, act_bias, noise_weight = self._folded
            pooled = F.silu(self.action_encoder.mean_token(actions, revealed))  # (B, D_tok)
            onednn = self.unet.onednn
            noise_part = linear(noise, noise_weight, onednn=onednn)  # (B or 1, Σ2C)
            if noise_part.shape[0] == 1:  # one σ: a bias (no pass over a [B, Σ2C] tensor)
                projected = linear(pooled, act_weight, act_bias + noise_part[0], onednn=onednn)
            else:
                projected = linear(pooled, act_weight, act_bias, onednn=onednn).add_(noise_part)
            out = self.unet.forward_projected(seq, projected)  # (B, S, L+1)
        return out[..., -1], coeffs  # (B, S)

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        """Within this block the parameters are promised not to change and no gradient is
        recorded (the sampler's steps of one prediction): the U-Net's matrices are built once
        (:meth:`UNet1D.frozen`) and the norms' stacked condition projection ``(W, b)`` is
        folded into the action pool's output layer ``(W_out, b_out)``. With ``u =
        silu(mean token)`` ``[B, D_tok]`` and the noise embedding ``e(σ)`` ``[cond_dim]``:
        ``W·(e(σ) + W_out·u + b_out) + b = (W·W_out)·u + (W·e(σ) + W·b_out + b)``, one product
        with ``D_tok`` instead of ``cond_dim`` inputs per sample and the sampler's one σ in its
        bias (the same function up to float rounding). Used by :meth:`predict_next_state`;
        a nested block reuses the outer one's.

        Raises:
            RuntimeError: entered while gradients are enabled.
        """
        if self._folded is not None:  # nested: the outer block's fold and matrices hold
            yield
            return
        with self.unet.frozen():
            weight, bias, _ = self.unet.condition_weights()  # (Σ2C, D), (Σ2C,)
            out = cast(Linear, self.action_encoder.out[-1])  # AgentActionEncoder: SiLU, Linear
            # in the parameters' dtype whatever autocast the caller runs under
            with torch.autocast(weight.device.type, enabled=False):
                act_weight = weight @ out.weight  # (Σ2C, D_tok)
                act_bias = torch.addmv(bias, weight, cast(torch.Tensor, out.bias))  # (Σ2C,)
            self._folded = (act_weight, act_bias, weight)
            try:
                yield
            finally:
                self._folded = None

    # ------------------------------------------------------------------ loss
    def sample_revealed(
        self, sigma: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``[B, n]`` bool: the revealed agents of training samples at noise levels ``sigma [B]``,
        drawn as the reveal schedule prescribes (eq. 9: one agent ``k ~ U{0..n−1}``)."""
        n = self.spec.n_agents
        # on the CPU: no device sync on the hot path
        sampler_sigmas = self.sampler.sigmas(n, reveal=self.reveal)
        return self.reveal.training_masks(
            n, sigma, sampler_sigmas, agent_names=self.spec.agent_names, generator=generator
        )

    def loss(
        self, batch: Mapping[str, torch.Tensor], *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Denoising loss of eq. 9 with EDM's weighting, on a batch from the replay buffer.

        Args:
            batch: ``states [B, L, S]`` (``s_{t−L+1..t}``), ``actions [B, L, A]`` (``a_{t−L+1..t}``,
                the last being the current joint action), ``next_state [B, S]`` and optionally
                ``mask [B, L]`` (False on steps padded before an episode start).
            generator: makes σ, the noise and the revealed agents reproducible.

        Returns:
            ``(loss, info)``: the scalar loss ``mean λ(σ)·||D − s_{t+1}||²`` (computed as DIAMOND
            does, as the MSE of ``F`` against ``(x₀ − c_skip·x_σ)/c_out``) and detached diagnostics:
            ``denoising_mse`` (unweighted, model space), ``sigma [B]`` and ``revealed [B, n]``
            (bool, the agents whose current action each sample saw).
        """
        check_keys("batch", batch, ("states", "actions", "next_state"))
        states, actions, mask = self._check(
            batch["states"], batch["actions"], batch.get("mask"), n_actions=self.config.context
        )
        next_state = check_tensor(
            "next_state",
            batch["next_state"],
            (states.shape[0], self.spec.state_dim),
            finite=True,
            cast=self.dtype,
            device=self.device,
        )
        if self.training and self.config.update_normalizer:
            self.normalizer.update(next_state)
        B, device, dtype = states.shape[0], states.device, states.dtype
        clean = self.to_model_space(next_state)  # (B, S)
        context = self.to_model_space(states)  # (B, L, S)
        sigma = self.edm.sample_sigma(B, device=device, dtype=dtype, generator=generator)
        noise = torch.randn(clean.shape, device=device, dtype=dtype, generator=generator)
        noisy = clean + sigma[:, None] * noise
        revealed = self.sample_revealed(sigma, generator=generator)  # (B, n)
        tokens = self.encode_actions(actions, mask)
        out, coeffs = self._network(noisy, sigma, context, mask, tokens, revealed)
        target = self.edm.network_target(clean, noisy, coeffs)
        loss = F.mse_loss(out, target)
        with torch.no_grad():
            denoised = self.edm.denoised(noisy, out, coeffs)
            info = {
                "denoising_mse": F.mse_loss(denoised, clean),
                "sigma": sigma.detach(),
                "revealed": revealed,
            }
        return loss, info

    # ------------------------------------------------------------ prediction
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
        """Sample ``s_{t+1}`` with the sampler, revealing agents as the schedule says.

        Args:
            states: ``[B, L, S]`` states ``s_{t−L+1..t}`` (environment units).
            actions: ``[B, L, A]`` joint actions ``a_{t−L+1..t}`` (the last is the current one).
            mask: ``[B, L]`` bool, False on padded steps (default: all valid).
            order: conditioning order (default: the sampler config's, ``"descending"``).
            reveal: reveal schedule (default: the model's, :attr:`reveal`); a schedule other than
                the one the model was trained with asks for sets it may not have seen.
            generator: makes the start noise (and a random order) reproducible.
            check_inputs: validate shapes and finiteness (one host sync); hot loops that validated
                their inputs once may pass False.

        Returns:
            ``[B, S]`` the predicted next state in environment units (an inference tensor:
            ``clone()`` it before using it in autograd).
        """
        if check_inputs:
            states, actions, mask = self._check(
                states, actions, mask, n_actions=self.config.context
            )
        elif mask is None:
            mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        context = self.to_model_space(states)
        tokens = self.encode_actions(actions, mask)

        def denoise(x: torch.Tensor, sigma: torch.Tensor, revealed: torch.Tensor) -> torch.Tensor:
            return self.denoise(x, sigma, context, mask, tokens, revealed)

        with self.sampling():  # the weights are fixed for the sampler's steps
            x = self.sampler.sample(
                denoise,
                (states.shape[0], self.spec.state_dim),
                self.spec.n_agents,
                order=order,
                reveal=None if reveal is None else reveal.for_team(self.spec),
                agent_names=self.spec.agent_names,
                generator=generator,
                device=states.device,
                dtype=states.dtype,
            )
        return self.from_model_space(x)

    # ----------------------------------------------------------- relabelling
    def permute_agents(self, order: Sequence[int]) -> _Denoiser:
        """A copy with the agents relabelled: new agent ``j`` is this model's agent ``order[j]``.

        The copy computes the same function once joint actions and conditioning orders are
        relabelled the same way (used to test permutation invariance). Reveal groups keep their
        agents (they are rewritten by name).
        """
        new = copy.deepcopy(self)
        if self.reveal.groups is not None:
            sampler = dataclasses.replace(
                self.config.sampler, reveal=self.reveal.by_name(self.spec)
            )
            new.config = dataclasses.replace(self.config, sampler=sampler)
            new.sampler = EulerSampler(sampler)
        new.spec = self.spec.permuted(order)
        new.action_encoder.permute_agents_(order, new.spec)
        return new


class SequentialAgentDenoiser(_Denoiser):
    """DIMA's dynamics model: agents' current actions revealed step by step (paper §3.1).

    The reveal schedule is ``config.sampler.reveal``: a cumulative set (``RevealSchedule()``,
    the default: every agent's effect kept, see docs/design.md) or the paper's one agent per
    step (eq. 9, ``RevealSchedule("sequential")``).

    Examples:
        >>> spec = MultiAgentSpec(("a", "b"), (4, 4), (2, 3), state_dim=6)
        >>> model = SequentialAgentDenoiser(spec)
        >>> s, a = torch.zeros(5, 3, 6), torch.zeros(5, 3, 5)
        >>> model.predict_next_state(s, a).shape
        torch.Size([5, 6])
    """


class JointActionDenoiser(_Denoiser):
    """The conventional ablation (paper Fig. 2, Fig. 8): every agent's current action at every step.

    Same network and training as :class:`SequentialAgentDenoiser`, with the ``"joint"`` reveal
    schedule: the config's schedule is replaced by it, so one config serves both models.
    """

    def __init__(self, spec: MultiAgentSpec, config: DenoiserConfig | None = None) -> None:
        config = config or DenoiserConfig()
        sampler = dataclasses.replace(config.sampler, reveal=RevealSchedule("joint"))
        super().__init__(spec, dataclasses.replace(config, sampler=sampler))
