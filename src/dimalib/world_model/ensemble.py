"""An MBPO-style probabilistic MLP ensemble: the standard baseline for proprioceptive dynamics.

Janner et al. (2019, "When to trust your model", MBPO) model ``p(s_{t+1} | s_t, a_t)`` with an
ensemble of MLPs, each predicting a diagonal Gaussian over the state change ``Δ = s_{t+1} − s_t``
and trained with the Gaussian negative log-likelihood. dimalib uses it as the strong
non-diffusion baseline for DIMA's dynamics model (issue "world-model evidence").

Details, as in MBPO's reference model:

* inputs: the last ``context`` states (normalised by a running normaliser, like the denoiser)
  and joint actions (rescaled from the spec's bounds to ``[-1, 1]``); ``context = 1`` is MBPO;
* outputs: mean and log-variance of ``Δ / std(s)`` per state dimension; the log-variance is
  softly bounded between two learned limits, ``logvar = max − softplus(max − h)`` then
  ``min + softplus(logvar − min)``, and the loss adds ``0.01·(Σ max − Σ min)`` so the limits
  tighten;
* members: ``E`` independent MLPs (SiLU, "swish" in MBPO) held as stacked weights ``[E, in, out]``
  and evaluated with one batched matmul per layer (no Python loop over members); every member
  sees the same batch (the members differ by their initialisation).

:meth:`ProbabilisticEnsemble.predict_next_state` has the denoisers' signature, so the evaluation
helpers (:func:`dimalib.evaluation.open_loop_states`) accept either model.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import check_keys, check_tensor
from dimalib.world_model.normalizer import RunningNormalizer

__all__ = ["EnsembleConfig", "ProbabilisticEnsemble"]

PredictMode = Literal["mean", "sample", "member_mean"]


@dataclass(frozen=True)
class EnsembleConfig:
    """Sizes of the ensemble. Defaults: MBPO's MuJoCo model (Janner et al. 2019, App. C)."""

    members: int = 5  # MBPO: 7 trained, 5 elites used; dimalib trains and uses 5
    hidden_dim: int = 200  # MBPO: 4 hidden layers of 200 units
    hidden_layers: int = 4
    context: int = 1  # states/actions fed to the MLP; 1 = MBPO's (s_t, a_t)
    init_max_logvar: float = 0.5  # MBPO's initial soft bounds of the log-variance
    init_min_logvar: float = -10.0
    logvar_bound_weight: float = 0.01  # MBPO: 0.01 * (Σ max_logvar − Σ min_logvar)
    normalizer_min_std: float = 1e-2

    def __post_init__(self) -> None:
        for name in ("members", "hidden_dim", "hidden_layers", "context"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, received {value!r}")


class _EnsembleLinear(nn.Module):
    """``E`` independent linear layers applied with one batched matmul: ``[E, B, i] → [E, B, o]``."""

    def __init__(self, members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        # PyTorch's nn.Linear initialisation, drawn independently for every member
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)  # (E, B, o)


class ProbabilisticEnsemble(nn.Module):
    """Ensemble of Gaussian MLP dynamics models over the state change (MBPO).

    Args:
        spec: the environment's agents, actions and global state.
        config: sizes (defaults: MBPO's).

    Examples:
        >>> spec = MultiAgentSpec(("a", "b"), (4, 4), (2, 3), state_dim=6)
        >>> model = ProbabilisticEnsemble(spec)
        >>> model.predict_next_state(torch.zeros(8, 3, 6), torch.zeros(8, 3, 5)).shape
        torch.Size([8, 6])
    """

    action_low: torch.Tensor
    action_high: torch.Tensor

    def __init__(self, spec: MultiAgentSpec, config: EnsembleConfig | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.config = cfg = config or EnsembleConfig()
        self.normalizer = RunningNormalizer(spec.state_dim, min_std=cfg.normalizer_min_std)
        S, A, E = spec.state_dim, spec.joint_action_dim, cfg.members
        dims = [cfg.context * (S + A)] + [cfg.hidden_dim] * cfg.hidden_layers
        self.layers = nn.ModuleList(_EnsembleLinear(E, i, o) for i, o in itertools.pairwise(dims))
        self.head = _EnsembleLinear(E, cfg.hidden_dim, 2 * S)  # mean and log-variance
        self.max_logvar = nn.Parameter(torch.full((S,), cfg.init_max_logvar))
        self.min_logvar = nn.Parameter(torch.full((S,), cfg.init_min_logvar))
        low, high = spec.action_bounds()
        self.register_buffer("action_low", low, persistent=False)
        self.register_buffer("action_high", high, persistent=False)

    @property
    def context(self) -> int:
        """``L``: the number of past steps the predictor takes (the batches' window length)."""
        return self.config.context

    # --------------------------------------------------------------- network
    def _inputs(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``states [B, L', S]``, ``actions [B, L', A]`` → ``[B, context·(S + A)]`` features."""
        c = self.config.context
        s = self.normalizer.normalize(states[:, -c:])
        low, high = self.action_low.to(actions.dtype), self.action_high.to(actions.dtype)
        a = 2 * (actions[:, -c:] - low) / (high - low) - 1
        return rearrange(torch.cat([s, a], dim=-1), "b l f -> b (l f)")

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every member's Gaussian over ``Δ / std(s)``.

        Args:
            states: ``[B, L, S]`` (``L >= context``; the last ``context`` steps are used).
            actions: ``[B, L, A]``, the last being the current joint action.

        Returns:
            ``(mean, logvar)``, each ``[E, B, S]``.
        """
        x = repeat(self._inputs(states, actions), "b f -> e b f", e=self.config.members)
        for layer in self.layers:
            x = F.silu(layer(x))
        mean, raw = self.head(x).chunk(2, dim=-1)  # each (E, B, S)
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def _check(
        self, states: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Validated inputs, floats converted to the parameters' dtype (utils.checks policy)."""
        S, A = self.spec.state_dim, self.spec.joint_action_dim
        p = next(self.parameters())
        states = check_tensor(
            "states",
            states,
            (None, None, S),
            finite=True,
            cast=p.dtype,
            device=p.device,
            nonempty=True,
        )
        if states.shape[1] < self.config.context:
            raise ValueError(
                f"states: expected at least context={self.config.context} steps, received "
                f"shape {tuple(states.shape)}"
            )
        actions = check_tensor(
            "actions",
            actions,
            (states.shape[0], states.shape[1], A),
            finite=True,
            cast=p.dtype,
            device=p.device,
        )
        return states, actions

    # ------------------------------------------------------------------ loss
    def loss(
        self, batch: Mapping[str, torch.Tensor], *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Gaussian NLL of ``Δ / std(s)`` averaged over members, batch and dimensions.

        ``nll = ½·mean[(μ − y)²·exp(−logvar) + logvar] + w·(Σ max_logvar − Σ min_logvar)``.

        Args:
            batch: as for the denoisers (:meth:`~dimalib.data.ReplayBuffer.sample_dynamics`):
                ``states [B, L, S]``, ``actions [B, L, A]``, ``next_state [B, S]``; in train mode
                the running normaliser is updated with ``next_state``.
            generator: unused (the loss is deterministic); accepted for a common signature.

        Returns:
            ``(loss, info)`` with the detached ``mse`` of the members' means (normalised units).
        """
        check_keys("batch", batch, ("states", "actions", "next_state"))
        states, actions = self._check(batch["states"], batch["actions"])
        next_state = check_tensor(
            "next_state",
            batch["next_state"],
            (states.shape[0], self.spec.state_dim),
            finite=True,
            cast=states.dtype,
            device=states.device,
        )
        if self.training:
            self.normalizer.update(next_state)
        target = (next_state - states[:, -1]) / self.normalizer.std.to(states.dtype)  # (B, S)
        mean, logvar = self(states, actions)  # each (E, B, S)
        nll = 0.5 * ((mean - target).square() * torch.exp(-logvar) + logvar).mean()
        bound = self.config.logvar_bound_weight * (self.max_logvar.sum() - self.min_logvar.sum())
        with torch.no_grad():
            info = {"nll": nll.detach(), "mse": (mean - target).square().mean()}
        return nll + bound, info

    # ------------------------------------------------------------ prediction
    @torch.inference_mode()
    def predict_next_state(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        order: object = None,
        reveal: object = None,
        generator: torch.Generator | None = None,
        check_inputs: bool = True,
        mode: PredictMode = "mean",
    ) -> torch.Tensor:
        """Predict ``s_{t+1}`` (same signature as the denoisers' ``predict_next_state``).

        Args:
            states: ``[B, L, S]`` states ``s_{t−L+1..t}`` (environment units).
            actions: ``[B, L, A]`` joint actions (the last is the current one).
            mask: ignored (MBPO's model looks at the last step only).
            order: ignored (no agent conditioning order).
            reveal: ignored (no reveal schedule).
            generator: for ``mode="sample"``.
            check_inputs: validate shapes and finiteness.
            mode: ``"mean"`` the average of the members' means (the lowest-error point
                prediction), ``"sample"`` MBPO's rollout rule (a random member per row, then a
                Gaussian sample), ``"member_mean"`` a random member's mean.

        Returns:
            ``[B, S]`` the predicted next state in environment units.
        """
        if check_inputs:
            states, actions = self._check(states, actions)
        mean, logvar = self(states, actions)  # each (E, B, S)
        if mode == "mean":
            delta = mean.mean(0)
        elif mode in ("sample", "member_mean"):
            E, B = mean.shape[:2]
            member = torch.randint(0, E, (B,), device=mean.device, generator=generator)
            rows = torch.arange(B, device=mean.device)
            delta = mean[member, rows]
            if mode == "sample":
                noise = torch.randn(
                    delta.shape, device=delta.device, dtype=delta.dtype, generator=generator
                )
                delta = delta + noise * torch.exp(0.5 * logvar[member, rows])
        else:
            raise ValueError(f"mode: expected 'mean', 'sample' or 'member_mean', received {mode!r}")
        return states[:, -1] + delta * self.normalizer.std.to(states.dtype)
