"""FSQStateDecoder on recorded MAMuJoCo data (HalfCheetah-2x3, random policy).

Reconstruction of every agent's observation from the normalised global state, on held-out
states, to a stated error; FSQ code usage above 50% of the 240 codes.
"""

from __future__ import annotations

import functools

import pytest
import torch

from dimalib.data import ReplayBuffer, RunningNormalizer
from dimalib.world_model import FSQStateDecoder, StateDecoderConfig
from tests.test_state_decoder import fit_decoder, reconstruction_error

pytest.importorskip("gymnasium_robotics")


@functools.cache
def _recorded() -> ReplayBuffer:
    from dimalib.envs import VectorMultiAgentEnv, collect, make_env

    venv = VectorMultiAgentEnv([functools.partial(make_env, "HalfCheetah-2x3")] * 4)
    buf = ReplayBuffer(venv.spec, capacity=4000, num_streams=4)
    g = torch.Generator().manual_seed(0)
    low, high = venv.spec.action_bounds()

    def policy(obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return low + (high - low) * torch.rand(obs.shape[0], low.numel(), generator=g)

    collect(venv, policy, 1000, buf, seed=0)  # 4 copies x 1000 steps, seeds 0..3
    venv.close()
    return buf


def test_decoder_reconstructs_recorded_halfcheetah_observations() -> None:
    buf = _recorded()
    streams = [buf.stream_data(i) for i in range(4)]
    # train on the episodes of copies 0-2, evaluate on copy 3's (other seed, never seen)
    train_s = torch.cat([d["state"] for d in streams[:3]])
    train_o = torch.cat([d["obs"] for d in streams[:3]])
    test_s, test_o = streams[3]["state"], streams[3]["obs"]
    assert train_s.shape == (3000, 17) and test_o.shape == (1000, buf.spec.joint_obs_dim)
    norm = RunningNormalizer(17)
    norm.update(train_s)
    torch.manual_seed(0)
    decoder = FSQStateDecoder(buf.spec, StateDecoderConfig(hidden_dim=256))
    fit_decoder(decoder, norm.normalize(train_s), train_o, steps=600)
    decoder.eval()
    with torch.no_grad():
        error = reconstruction_error(decoder, norm.normalize(test_s), test_o)
    usage = decoder.codebook_usage(norm.normalize(torch.cat([train_s, test_s])))
    # measured 2026-11-25: held-out error 0.03 of the target variance, 100% of the codes used
    assert error < 0.08
    assert usage["usage"] > 0.5
