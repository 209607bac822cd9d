"""The GPU path: every component, imagination, MAPPO and the trainer on a CUDA device.

Skipped without CUDA (CI has none); `benchmarks/device_check.sh` runs them on a GPU machine with
``pytest -m cuda``. ``DIMALIB_TEST_DEVICE=cpu`` runs the same checks on the CPU (to test the tests):
each compares the device's result with the CPU's for the same weights and inputs, or checks that
outputs stay on the device and are finite.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

from dimalib import MultiAgentSpec
from dimalib.algorithms.mappo import MAPPO, MAPPOConfig
from dimalib.imagination import ImaginationConfig, ImaginationEnv
from dimalib.training.trainer import Trainer
from dimalib.world_model import DIMAWorldModel, RewardTerminationGPT
from dimalib.world_model.decoder import FSQStateDecoder
from dimalib.world_model.dynamics.denoiser import SequentialAgentDenoiser
from tests.test_imagination import TINY
from tests.test_trainer import tiny_config

DEVICE = os.environ.get("DIMALIB_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"
    ),
]
SPEC = MultiAgentSpec(("left", "right"), (4, 5), (2, 3), state_dim=6)


def _inputs(B: int = 8, L: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, L, 6, generator=g), torch.rand(B, L, 5, generator=g) * 2 - 1


def _randomised(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():  # zero-initialised output layers would hide differences
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return module


def test_components_give_the_cpu_result_on_the_device() -> None:
    states, actions = _inputs()
    gpt = _randomised(RewardTerminationGPT(SPEC, TINY.reward)).eval()
    dev_gpt = copy.deepcopy(gpt).to(DEVICE)
    r_cpu, p_cpu = gpt.predict(states, actions)
    r_dev, p_dev = dev_gpt.predict(states.to(DEVICE), actions.to(DEVICE))
    assert r_dev.device.type == torch.device(DEVICE).type
    torch.testing.assert_close(r_dev.cpu(), r_cpu, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(p_dev.cpu(), p_cpu, rtol=1e-4, atol=1e-4)

    dec = _randomised(FSQStateDecoder(SPEC, TINY.decoder)).eval()
    out = copy.deepcopy(dec).to(DEVICE)(states[:, -1].to(DEVICE))
    torch.testing.assert_close(out.cpu(), dec(states[:, -1]), rtol=1e-4, atol=1e-4)

    den = _randomised(SequentialAgentDenoiser(SPEC, TINY.dynamics)).eval()
    den.normalizer.update(torch.randn(100, 6) * 2)
    dev_den = copy.deepcopy(den).to(DEVICE)
    noise = torch.randn(8, 6, generator=torch.Generator().manual_seed(3))
    sigma = torch.full((8,), 0.7)
    revealed = torch.ones(8, 2, dtype=torch.bool)
    mask = torch.ones(8, 3, dtype=torch.bool)

    def d(model: SequentialAgentDenoiser, device: str) -> torch.Tensor:
        ctx = model.to_model_space(states.to(device))
        tokens = model.encode_actions(actions.to(device), mask.to(device))
        return model.denoise(noise.to(device), sigma.to(device), ctx, mask.to(device), tokens,
                             revealed.to(device))  # fmt: skip

    with torch.no_grad():
        torch.testing.assert_close(d(dev_den, DEVICE).cpu(), d(den, "cpu"), rtol=1e-4, atol=1e-4)


def test_losses_backward_and_sampling_run_on_the_device() -> None:
    wm = DIMAWorldModel(SPEC, TINY).to(DEVICE).train()
    states, actions = _inputs(16)
    batch = {"states": states.to(DEVICE), "actions": actions.to(DEVICE),
             "next_state": torch.randn(16, 6, device=DEVICE)}  # fmt: skip
    loss, _ = wm.dynamics_loss(batch)
    loss.backward()
    assert all(p.grad is None or p.grad.device.type == loss.device.type for p in wm.parameters())
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    with torch.inference_mode():
        nxt = wm.dynamics.predict_next_state(batch["states"], batch["actions"], generator=gen)
    assert nxt.device.type == torch.device(DEVICE).type and bool(torch.isfinite(nxt).all())


def test_imagination_and_mappo_stay_on_the_device() -> None:
    wm = DIMAWorldModel(SPEC, TINY).to(DEVICE).eval()
    g = torch.Generator().manual_seed(1)
    ctx = {
        "states": torch.randn(64, 3, 6, generator=g).to(DEVICE),
        "actions": (torch.rand(64, 2, 5, generator=g) * 2 - 1).to(DEVICE),
        "mask": torch.ones(64, 3, dtype=torch.bool, device=DEVICE),
        "obs": torch.randn(64, 9, generator=g).to(DEVICE),
    }
    env = ImaginationEnv(wm, ctx, ImaginationConfig(num_envs=64, horizon=5), seed=0)
    mappo = MAPPO(SPEC, MAPPOConfig(hidden_dim=16, ppo_epochs=2), DEVICE)
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    rollout = mappo.collect_imagined_rollout(env, generator=gen, seed=0)
    assert all(v.device.type == torch.device(DEVICE).type for v in rollout.values())
    metrics = mappo.update(rollout, generator=gen)
    assert metrics["skipped_updates"] == 0.0
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def test_trainer_runs_checkpoints_and_resumes_on_the_device(tmp_path: Path) -> None:
    with Trainer("toy", tiny_config(), seed=0, device=DEVICE) as trainer:
        for _ in range(3):  # warm-up, world model, policy
            row = trainer.run_epoch(force_eval=True)
        path = trainer.save_checkpoint(tmp_path / "checkpoint.pt")
        nxt = trainer.run_epoch()
    assert row["policy_epochs"] == 1 and torch.isfinite(torch.tensor(row["policy/actor_loss"]))
    with Trainer.resume(path) as again:
        assert again.device.type == torch.device(DEVICE).type
        assert again.run_epoch()["wm/dynamics/loss"] == nxt["wm/dynamics/loss"]
