"""Diffusion dynamics: EDM preconditioning, reveal schedules, the sampler, the U-Net, denoisers."""

from dimalib.diffusion.conditioning import AgentActionEncoder
from dimalib.diffusion.denoiser import DenoiserConfig, JointActionDenoiser, SequentialAgentDenoiser
from dimalib.diffusion.edm import EDMCoefficients, EDMConfig, EDMPreconditioner
from dimalib.diffusion.reveal import REVEAL_KINDS, RevealKind, RevealSchedule
from dimalib.diffusion.sampler import (
    EulerSampler,
    Order,
    SamplerConfig,
    agent_schedule,
    default_num_steps,
    karras_sigmas,
)
from dimalib.diffusion.unet1d import UNet1D

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
    "default_num_steps",
    "karras_sigmas",
]
