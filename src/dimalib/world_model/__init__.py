"""The world model of DIMA (paper §3) and its parts, behind the protocols of :mod:`.protocols`.

* :mod:`.dynamics` — the diffusion dynamics model: EDM preconditioning, reveal schedules, the
  Euler sampler, the 1-D U-Net, action conditioning, the denoisers and the closed-form
  linear-Gaussian denoiser;
* :mod:`.reward_termination` — :class:`RewardTerminationGPT` (§3.2, eq. 23) with its KV cache;
* :mod:`.decoder` — :class:`FSQStateDecoder` (eq. 22);
* :mod:`.ensemble` — the MBPO :class:`ProbabilisticEnsemble`, a non-diffusion dynamics baseline;
* :mod:`.normalizer` — the running state statistics the models share;
* :mod:`.aggregate` — :class:`DIMAWorldModel`, the three models behind one object;
* :mod:`.parts` — :class:`WorldModelParts`, the protocol's methods written once over the parts;
* :mod:`.composed` — :class:`ComposedWorldModel`: any dynamics model (e.g. the MBPO ensemble) with
  a reward model and decoder, as one world model;
* :mod:`.protocols` — :class:`DynamicsModel` and :class:`WorldModel`, what the rest of dimalib
  (imagination, evaluation) depends on.
"""

from dimalib.world_model.aggregate import DIMAWorldModel, WorldModelConfig
from dimalib.world_model.composed import ComposedWorldModel
from dimalib.world_model.decoder import FSQStateDecoder, StateDecoderConfig
from dimalib.world_model.ensemble import EnsembleConfig, ProbabilisticEnsemble
from dimalib.world_model.normalizer import RunningNormalizer
from dimalib.world_model.protocols import DynamicsModel, RolloutCache, WorldModel
from dimalib.world_model.reward_termination import (
    KVCache,
    RewardTerminationConfig,
    RewardTerminationGPT,
)

__all__ = [
    "ComposedWorldModel",
    "DIMAWorldModel",
    "DynamicsModel",
    "EnsembleConfig",
    "FSQStateDecoder",
    "KVCache",
    "ProbabilisticEnsemble",
    "RewardTerminationConfig",
    "RewardTerminationGPT",
    "RolloutCache",
    "RunningNormalizer",
    "StateDecoderConfig",
    "WorldModel",
    "WorldModelConfig",
]
