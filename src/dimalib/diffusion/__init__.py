"""Diffusion dynamics: EDM preconditioning, the sampler, the U-Net and the denoisers."""

from dimalib.diffusion.conditioning import AgentActionEncoder
from dimalib.diffusion.denoiser import DenoiserConfig, JointActionDenoiser, SequentialAgentDenoiser
from dimalib.diffusion.edm import EDMCoefficients, EDMConfig, EDMPreconditioner
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
    "AgentActionEncoder",
    "DenoiserConfig",
    "EDMCoefficients",
    "EDMConfig",
    "EDMPreconditioner",
    "EulerSampler",
    "JointActionDenoiser",
    "Order",
    "SamplerConfig",
    "SequentialAgentDenoiser",
    "UNet1D",
    "agent_schedule",
    "default_num_steps",
    "karras_sigmas",
]
