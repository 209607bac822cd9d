"""Deprecated alias of :mod:`dimalib.world_model` for the reward model, decoder and ensemble.

``dimalib.models.reward_termination``, ``dimalib.models.state_decoder`` and
``dimalib.models.mlp_ensemble`` name the modules that moved in 0.2 to
:mod:`dimalib.world_model.reward_termination`, :mod:`dimalib.world_model.decoder` and
:mod:`dimalib.world_model.ensemble`.
"""

from dimalib._compat import alias_modules
from dimalib.world_model.decoder import FSQStateDecoder, StateDecoderConfig
from dimalib.world_model.ensemble import EnsembleConfig, ProbabilisticEnsemble
from dimalib.world_model.reward_termination import (
    KVCache,
    RewardTerminationConfig,
    RewardTerminationGPT,
)

__all__ = [
    "EnsembleConfig",
    "FSQStateDecoder",
    "KVCache",
    "ProbabilisticEnsemble",
    "RewardTerminationConfig",
    "RewardTerminationGPT",
    "StateDecoderConfig",
]

alias_modules(
    __name__,
    {
        "reward_termination": "dimalib.world_model.reward_termination",
        "state_decoder": "dimalib.world_model.decoder",
        "mlp_ensemble": "dimalib.world_model.ensemble",
    },
)
