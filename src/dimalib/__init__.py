"""dimalib: composable world-model components for multi-agent RL (DIMA, arXiv 2505.20922).

The public API:

* :class:`MultiAgentSpec` — the team (names, per-agent observation/action sizes, state size);
* :class:`EDMPreconditioner`, :class:`EulerSampler`, :class:`RevealSchedule` — EDM
  coefficients, the sampler and which agents' actions each denoising step sees;
* :class:`SequentialAgentDenoiser` (DIMA) and :class:`JointActionDenoiser` (the ablation);
* :class:`RewardTerminationGPT`, :class:`FSQStateDecoder`;
* :class:`DIMAWorldModel`, :class:`ImaginationEnv`;
* :class:`ReplayBuffer`, :func:`make_env`, :class:`VectorMultiAgentEnv`, :func:`collect`.
"""

from dimalib.data import ReplayBuffer, RunningNormalizer
from dimalib.envs import VectorMultiAgentEnv, collect, make_env, spec_from_env
from dimalib.imagination import ImaginationConfig, ImaginationEnv
from dimalib.spec import MultiAgentSpec
from dimalib.world_model import (
    DIMAWorldModel,
    FSQStateDecoder,
    RewardTerminationConfig,
    RewardTerminationGPT,
    StateDecoderConfig,
    WorldModelConfig,
)
from dimalib.world_model.dynamics import (
    DenoiserConfig,
    EDMConfig,
    EDMPreconditioner,
    EulerSampler,
    JointActionDenoiser,
    RevealSchedule,
    SamplerConfig,
    SequentialAgentDenoiser,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "DIMAWorldModel",
    "DenoiserConfig",
    "EDMConfig",
    "EDMPreconditioner",
    "EulerSampler",
    "FSQStateDecoder",
    "ImaginationConfig",
    "ImaginationEnv",
    "JointActionDenoiser",
    "MultiAgentSpec",
    "ReplayBuffer",
    "RevealSchedule",
    "RewardTerminationConfig",
    "RewardTerminationGPT",
    "RunningNormalizer",
    "SamplerConfig",
    "SequentialAgentDenoiser",
    "StateDecoderConfig",
    "VectorMultiAgentEnv",
    "WorldModelConfig",
    "__version__",
    "collect",
    "make_env",
    "spec_from_env",
]
