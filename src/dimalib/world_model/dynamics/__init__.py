"""Diffusion dynamics: EDM preconditioning, reveal schedules, the sampler, the U-Net, denoisers."""

from dimalib.world_model.dynamics.conditioning import AgentActionEncoder
from dimalib.world_model.dynamics.denoiser import (
    DenoiserConfig,
    JointActionDenoiser,
    SequentialAgentDenoiser,
)
from dimalib.world_model.dynamics.edm import EDMCoefficients, EDMConfig, EDMPreconditioner
from dimalib.world_model.dynamics.reveal import (
    REVEAL_KINDS,
    RevealKind,
    RevealSchedule,
    contiguous_groups,
)
from dimalib.world_model.dynamics.sampler import (
    EulerSampler,
    Order,
    SamplerConfig,
    agent_schedule,
    default_num_steps,
    karras_sigmas,
)
from dimalib.world_model.dynamics.unet1d import UNet1D

__all__ = [
    "REVEAL_KINDS",
    "AgentActionEncoder",
    "DenoiserConfig",
    "EDMCoefficients",
    "EDMConfig",
    "EDMPreconditioner",
    "EulerSampler",
    "JointActionDenoiser",
    "Order",
    "RevealKind",
    "RevealSchedule",
    "SamplerConfig",
    "SequentialAgentDenoiser",
    "UNet1D",
    "agent_schedule",
    "contiguous_groups",
    "default_num_steps",
    "karras_sigmas",
]
