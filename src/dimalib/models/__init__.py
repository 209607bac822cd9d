"""Learned components of DIMA besides the diffusion model.

* :class:`RewardTerminationGPT` — the reward and termination transformer ``f_ϕ`` (§3.2, eq. 23),
  with a key/value cache for imagination rollouts;
* :class:`FSQStateDecoder` — the quantized state-to-observation autoencoder ``g_φ`` (eq. 22);
* :class:`ProbabilisticEnsemble` — an MBPO-style Gaussian MLP ensemble, the non-diffusion
  dynamics baseline of the world-model benchmarks.
"""

from dimalib.models.mlp_ensemble import EnsembleConfig, ProbabilisticEnsemble
from dimalib.models.reward_termination import (
    KVCache,
    RewardTerminationConfig,
    RewardTerminationGPT,
)
from dimalib.models.state_decoder import FSQStateDecoder, StateDecoderConfig

__all__ = [
    "EnsembleConfig",
    "FSQStateDecoder",
    "KVCache",
    "ProbabilisticEnsemble",
    "RewardTerminationConfig",
    "RewardTerminationGPT",
    "StateDecoderConfig",
]
