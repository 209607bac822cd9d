"""`DIMAWorldModel`: the dynamics denoiser, the reward/termination GPT and the state decoder.

The three models of paper §3 in one module, with one state normaliser (the dynamics model's
running mean/std), the three training losses computed from replay-buffer batches, and atomic,
versioned save/load so a trained world model can be shipped to another program.

The reward model and the decoder receive the **normalised** global state (the same statistics
the dynamics model uses); their targets (rewards, observations) stay in environment units.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import check_keys, check_tensor
from dimalib.utils.io import atomic_save, load_versioned
from dimalib.world_model.decoder import FSQStateDecoder, StateDecoderConfig
from dimalib.world_model.dynamics.denoiser import (
    DenoiserConfig,
    JointActionDenoiser,
    SequentialAgentDenoiser,
)
from dimalib.world_model.normalizer import RunningNormalizer
from dimalib.world_model.parts import WorldModelParts
from dimalib.world_model.reward_termination import (
    RewardTerminationConfig,
    RewardTerminationGPT,
)

__all__ = ["DIMAWorldModel", "WorldModelConfig"]

_KIND = "dima_world_model"
_VERSION = 1


@dataclass(frozen=True)
class WorldModelConfig:
    """Settings of the three models. Defaults: the paper's (Tables 3 and 4)."""

    dynamics: DenoiserConfig = field(default_factory=DenoiserConfig)  # Table 3 (U-Net)
    reward: RewardTerminationConfig = field(default_factory=RewardTerminationConfig)  # Table 3
    decoder: StateDecoderConfig = field(default_factory=StateDecoderConfig)  # Table 3
    conditioning: Literal["sequential", "joint"] = "sequential"  # "joint": Fig. 8 ablation

    def __post_init__(self) -> None:
        if self.conditioning not in ("sequential", "joint"):
            raise ValueError(
                f"conditioning: expected 'sequential' or 'joint', received {self.conditioning!r}"
            )


class DIMAWorldModel(WorldModelParts, nn.Module):
    """The world model of DIMA.

    The :class:`~dimalib.world_model.protocols.WorldModel` methods (``predict_next_state``,
    ``init_rollout``, ``predict_reward``, ``decode``, ...) come from
    :class:`~dimalib.world_model.parts.WorldModelParts`.

    Attributes:
        dynamics: :class:`SequentialAgentDenoiser` (or :class:`JointActionDenoiser`).
        reward_model: :class:`RewardTerminationGPT`.
        decoder: :class:`FSQStateDecoder`.

    Examples:
        >>> spec = MultiAgentSpec(("a", "b"), (4, 4), (2, 2), state_dim=6)
        >>> wm = DIMAWorldModel(spec)
        >>> wm.dynamics.config.context
        3
    """

    def __init__(self, spec: MultiAgentSpec, config: WorldModelConfig | None = None) -> None:
        super().__init__()
        if not isinstance(spec, MultiAgentSpec):
            raise ValueError(f"spec: expected a MultiAgentSpec, received {type(spec).__name__}")
        self.spec = spec
        self.config = config = config or WorldModelConfig()
        dynamics_cls = (
            SequentialAgentDenoiser if config.conditioning == "sequential" else JointActionDenoiser
        )
        self.dynamics: SequentialAgentDenoiser | JointActionDenoiser = dynamics_cls(
            spec, config.dynamics
        )
        self.reward_model = RewardTerminationGPT(spec, config.reward)
        self.decoder = FSQStateDecoder(spec, config.decoder)

    # ----------------------------------------------------------- normaliser
    @property
    def normalizer(self) -> RunningNormalizer:
        """The running state statistics shared by the three models."""
        return self.dynamics.normalizer

    @torch.no_grad()
    def update_normalizer(self, states: torch.Tensor) -> None:
        """Merge new real states ``[..., S]`` into the running statistics."""
        self.normalizer.update(states)

    # ---------------------------------------------------------------- losses
    def dynamics_loss(
        self, batch: Mapping[str, torch.Tensor], *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 9 on a ``ReplayBuffer.sample_dynamics`` batch (see :meth:`_Denoiser.loss`)."""
        return self.dynamics.loss(batch, generator=generator)

    def reward_loss(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 23 (SmoothL1 + BCE) on a ``ReplayBuffer.sample_sequences`` batch."""
        _require(batch, ("states", "actions", "rewards", "terminated"))
        return self.reward_model.loss(
            self.normalize_state(batch["states"]),
            batch["actions"],
            batch["rewards"],
            batch["terminated"],
            batch.get("mask"),
        )

    def decoder_loss(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 22 on a ``ReplayBuffer.sample_state_obs`` batch."""
        _require(batch, ("state", "obs"))
        state = check_tensor("batch['state']", batch["state"], (None, self.spec.state_dim))
        return self.decoder.loss(self.normalize_state(state), batch["obs"])

    # ----------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str], **extra: Any) -> Path:
        """Write spec, config and weights atomically (temp file + rename), versioned."""
        payload = {
            "spec": self.spec.to_dict(),
            "config": self.config,
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "extra": extra,
        }
        return atomic_save(payload, path, kind=_KIND, version=_VERSION)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, map_location: str | torch.device | None = "cpu"
    ) -> DIMAWorldModel:
        """Rebuild a world model written by :meth:`save` (version-checked)."""
        blob = load_versioned(path, kind=_KIND, version=_VERSION, map_location=map_location)
        config = blob["config"]
        if not isinstance(config, WorldModelConfig):
            raise ValueError(f"path: the file's config is a {type(config).__name__}")
        model = cls(MultiAgentSpec.from_dict(blob["spec"]), config)
        model.load_state_dict(blob["state_dict"])
        return model.to(map_location) if map_location is not None else model

    def config_dict(self) -> dict[str, Any]:
        """The configuration as plain Python values (for logs)."""
        return dataclasses.asdict(self.config)


def _require(batch: Mapping[str, torch.Tensor], keys: tuple[str, ...]) -> None:
    check_keys("batch", batch, keys)
