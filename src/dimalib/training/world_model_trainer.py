"""Training the three world-model components from a replay buffer (paper Algorithm 1, Table 4).

One epoch of Algorithm 1 runs ``steps_per_epoch`` updates of the state decoder, then of the
dynamics model, then of the reward/termination model, each on its own batches sampled from the
replay buffer and with its own AdamW optimiser, learning rate and gradient clip (Table 4).
Per-step losses stay on the device; they are averaged with one host transfer per phase.

**Non-finite updates.** An update whose loss or gradient norm is NaN/inf is skipped: parameters,
AdamW moments and the step count stay as they were (the fused optimiser's ``found_inf`` flag, so
no host sync per step). The phase reports ``{component}/skipped_updates`` and its means cover the
finite updates only; a phase in which *every* update was skipped raises
:class:`NonFiniteTrainingError` (training cannot make progress; the last checkpoint is intact).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dimalib.data.buffer import ReplayBuffer
from dimalib.utils.checks import NonFiniteTrainingError
from dimalib.utils.optim import fused_available, load_optimizer_state
from dimalib.world_model.aggregate import DIMAWorldModel

__all__ = ["NonFiniteTrainingError", "WorldModelTrainer", "WorldModelTrainingConfig"]


@dataclass(frozen=True)
class WorldModelTrainingConfig:
    """Optimisation of the world model. Defaults: Table 4."""

    decoder_batch: int = 256  # Table 4
    dynamics_batch: int = 64  # Table 4
    reward_batch: int = 128  # Table 4
    decoder_lr: float = 3e-4  # Table 4 (AdamW)
    dynamics_lr: float = 1e-4  # Table 4 (AdamW)
    reward_lr: float = 1e-4  # Table 4 (AdamW)
    decoder_grad_clip: float = 10.0  # Table 4
    dynamics_grad_clip: float = 1.0  # Table 4
    reward_grad_clip: float = 10.0  # Table 4
    weight_decay: float = 0.01  # Table 4, all three models
    steps_per_epoch: int = 200  # Table 4: "training steps per epoch", for each model

    def __post_init__(self) -> None:
        for name in ("decoder_batch", "dynamics_batch", "reward_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, received {getattr(self, name)}")
        if self.steps_per_epoch < 0:
            raise ValueError(f"steps_per_epoch: expected >= 0, received {self.steps_per_epoch}")


def _adamw(module: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    params = [p for p in module.parameters() if p.requires_grad]
    device = params[0].device
    fused = fused_available(device)  # one fused kernel instead of a loop over tensors
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)


class WorldModelTrainer:
    """AdamW optimisers and update loops of the decoder, the dynamics model and the reward model.

    Args:
        world_model: the model to train (its device is where batches are moved).
        config: Table 4 settings.
        generator: makes the batch sampling reproducible (on the buffer's device).
        gradient_sync: called with each model after its backward pass and before clipping, e.g.
            :func:`dimalib.training.distributed.all_reduce_gradients` to average the gradients
            of several processes (:func:`~dimalib.training.distributed.distributed_trainer`).
        after_step: called with each model after its optimiser step (e.g. to keep running
            statistics equal across processes).
    """

    def __init__(
        self,
        world_model: DIMAWorldModel,
        config: WorldModelTrainingConfig | None = None,
        *,
        generator: torch.Generator | None = None,
        gradient_sync: Callable[[nn.Module], None] | None = None,
        after_step: Callable[[nn.Module], None] | None = None,
    ) -> None:
        self.world_model = world_model
        self.gradient_sync = gradient_sync
        self.after_step = after_step
        self.config = cfg = config or WorldModelTrainingConfig()
        self.generator = generator
        wd = cfg.weight_decay
        self.optimizers = {
            "decoder": _adamw(world_model.decoder, cfg.decoder_lr, wd),
            "dynamics": _adamw(world_model.dynamics, cfg.dynamics_lr, wd),
            "reward": _adamw(world_model.reward_model, cfg.reward_lr, wd),
        }
        self.device = next(world_model.parameters()).device

    def _to_device(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _run(
        self,
        name: str,
        steps: int,
        sample: Callable[[], Mapping[str, torch.Tensor]],
        loss_fn: Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, torch.Tensor]]],
        module: nn.Module,
        clip: float,
    ) -> dict[str, float]:
        opt = self.optimizers[name]
        fused = any(g.get("fused") for g in opt.param_groups)
        self.world_model.train()
        totals: dict[str, torch.Tensor] = {}
        skipped = torch.zeros((), device=self.device)
        for _ in range(steps):
            loss, info = loss_fn(self._to_device(sample()))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.gradient_sync is not None:
                self.gradient_sync(module)
            grad_norm = nn.utils.clip_grad_norm_(module.parameters(), clip)
            bad = ~(torch.isfinite(grad_norm) & torch.isfinite(loss.detach()))
            if fused:  # the fused kernel leaves everything untouched when found_inf is 1
                opt.found_inf = bad.float()  # type: ignore[attr-defined]
                try:
                    opt.step()
                finally:
                    del opt.found_inf  # type: ignore[attr-defined]
            elif not bool(bad):  # unfused optimisers (e.g. on MPS): one sync per step
                opt.step()
            if self.after_step is not None:
                self.after_step(module)
            skipped += bad
            scalars = {"loss": loss.detach(), "grad_norm": grad_norm.detach()}
            scalars.update({k: v for k, v in info.items() if v.dim() == 0 and k != "loss"})
            for k, v in scalars.items():
                v = torch.where(bad, torch.zeros_like(v), v)
                totals[k] = totals[k] + v if k in totals else v.clone()
        if steps == 0:
            return {}
        totals["skipped_updates"] = skipped
        values = torch.stack([v.float() for v in totals.values()]).tolist()  # one host sync
        n_skipped = int(values[-1])
        if n_skipped == steps:
            raise NonFiniteTrainingError(
                f"{name}: all {steps} updates of this epoch had a non-finite loss or gradient "
                f"norm (NaN/inf); the parameters were left as they were. Lower the learning "
                f"rate or check the data"
            )
        kept = steps - n_skipped
        out = {f"{name}/{k}": v / kept for k, v in zip(totals, values[:-1], strict=False)}
        out[f"{name}/skipped_updates"] = float(n_skipped)
        return out

    def train_decoder(self, buffer: ReplayBuffer, steps: int) -> dict[str, float]:
        """``steps`` updates of eq. 22 on batches of ``decoder_batch`` state-observation pairs."""
        wm, cfg = self.world_model, self.config
        return self._run(
            "decoder",
            steps,
            lambda: buffer.sample_state_obs(cfg.decoder_batch, generator=self.generator),
            wm.decoder_loss,
            wm.decoder,
            cfg.decoder_grad_clip,
        )

    def train_dynamics(self, buffer: ReplayBuffer, steps: int) -> dict[str, float]:
        """``steps`` updates of eq. 9 on ``dynamics_batch`` windows of ``L`` steps."""
        wm, cfg = self.world_model, self.config
        return self._run(
            "dynamics",
            steps,
            lambda: buffer.sample_dynamics(
                cfg.dynamics_batch, context=wm.context, generator=self.generator
            ),
            wm.dynamics_loss,
            wm.dynamics,
            cfg.dynamics_grad_clip,
        )

    def train_reward(self, buffer: ReplayBuffer, steps: int) -> dict[str, float]:
        """``steps`` updates of eq. 23 on ``reward_batch`` sequences of the GPT's ``max_steps``."""
        wm, cfg = self.world_model, self.config
        length = wm.reward_model.config.max_steps
        return self._run(
            "reward",
            steps,
            lambda: buffer.sample_sequences(
                cfg.reward_batch, length=length, generator=self.generator
            ),
            wm.reward_loss,
            wm.reward_model,
            cfg.reward_grad_clip,
        )

    def train_epoch(
        self,
        buffer: ReplayBuffer,
        steps: int | None = None,
        *,
        on_phase: Callable[[str], None] | None = None,
    ) -> dict[str, float]:
        """Decoder, then dynamics, then reward model: ``steps`` (default Table 4's 200) each.

        ``on_phase(name)`` is called before each phase (``"decoder"``, ``"dynamics"``,
        ``"reward"``), e.g. for a progress display.
        """
        if len(buffer) == 0:
            raise ValueError("buffer: expected stored transitions, received an empty buffer")
        n = self.config.steps_per_epoch if steps is None else steps
        metrics: dict[str, float] = {}
        for name, phase in (
            ("decoder", self.train_decoder),
            ("dynamics", self.train_dynamics),
            ("reward", self.train_reward),
        ):
            if on_phase is not None:
                on_phase(name)
            metrics.update(phase(buffer, n))
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """Optimiser states (the model's weights are saved by the model)."""
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, opt in self.optimizers.items():
            load_optimizer_state(opt, state[name])  # keeps this optimiser's kernel
