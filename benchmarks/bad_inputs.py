"""Bad inputs tried through the public API, and the errors they get (docs/reliability.md).

    python benchmarks/bad_inputs.py            # prints a markdown table

Every row is run for real against the current code; a row whose call does not raise prints
"ACCEPTED" so a regression shows in the table.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from dimalib import MultiAgentSpec
from dimalib.algorithms.mappo import MAPPO
from dimalib.data.buffer import ReplayBuffer
from dimalib.imagination import ImaginationConfig, ImaginationEnv
from dimalib.training.trainer import Trainer
from dimalib.utils.checks import check_device
from dimalib.world_model import (
    DIMAWorldModel,
    RewardTerminationConfig,
    RewardTerminationGPT,
    StateDecoderConfig,
    WorldModelConfig,
)
from dimalib.world_model.decoder import FSQStateDecoder
from dimalib.world_model.dynamics import DenoiserConfig, RevealSchedule, SamplerConfig
from dimalib.world_model.dynamics.denoiser import SequentialAgentDenoiser

SPEC = MultiAgentSpec(("left", "right"), (4, 5), (2, 3), state_dim=6)
DYN = DenoiserConfig(channels=(16, 16), depths=(1, 1), cond_dim=32, action_token_dim=16)
GPT = RewardTerminationConfig(n_layer=1, n_head=2, n_embd=16, head_hidden=16, max_steps=5)
DEC = StateDecoderConfig(hidden_dim=16)


def _cases() -> list[tuple[str, Callable[[], object]]]:
    den = SequentialAgentDenoiser(SPEC, DYN)
    gpt = RewardTerminationGPT(SPEC, GPT)
    dec = FSQStateDecoder(SPEC, DEC)
    buf = ReplayBuffer(SPEC, capacity=10)
    wm = DIMAWorldModel(SPEC, WorldModelConfig(dynamics=DYN, reward=GPT, decoder=DEC)).eval()
    ctx = {
        "states": torch.randn(2, 3, 6),
        "actions": torch.rand(2, 2, 5),
        "mask": torch.ones(2, 3, dtype=torch.bool),
        "obs": torch.randn(2, 9),
    }
    env = ImaginationEnv(wm, ctx, ImaginationConfig(num_envs=2, horizon=4, check_actions="step"))
    env.reset()
    s, a = torch.randn(4, 3, 6), torch.rand(4, 3, 5)
    batch = {"states": s, "actions": a, "next_state": torch.randn(4, 6)}
    row = {
        "state": torch.zeros(1, 6), "obs": torch.zeros(1, 9), "action": torch.zeros(1, 5),
        "reward": torch.zeros(1), "terminated": torch.zeros(1, dtype=torch.bool),
        "truncated": torch.zeros(1, dtype=torch.bool), "next_state": torch.zeros(1, 6),
        "next_obs": torch.zeros(1, 9),
    }  # fmt: skip
    return [
        (
            "`MultiAgentSpec(agent_names='ab', ...)`",
            lambda: MultiAgentSpec("ab", (1, 1), (1, 1), 2),
        ),  # type: ignore[arg-type]
        ("`MultiAgentSpec(..., state_dim=-3)`", lambda: MultiAgentSpec(("a",), (1,), (1,), -3)),
        (
            "`MultiAgentSpec(..., action_dims=(1.5,))`",
            lambda: MultiAgentSpec(("a",), (1,), (1.5,), 2),
        ),  # type: ignore[arg-type]
        ("`SamplerConfig(order='desc')`", lambda: SamplerConfig(order="desc")),  # type: ignore[arg-type]
        ("`ImaginationConfig(order=(0, None))`", lambda: ImaginationConfig(order=(0, None))),  # type: ignore[arg-type]
        ("`RevealSchedule(kind='halfway')`", lambda: RevealSchedule(kind="halfway")),  # type: ignore[arg-type]
        ("`RevealSchedule(kind='explicit')` without sets", lambda: RevealSchedule(kind="explicit")),
        (
            "denoiser `loss`: states of 2 steps (context 3)",
            lambda: den.loss({**batch, "states": s[:, :2]}),
        ),
        ("denoiser `loss`: integer actions", lambda: den.loss({**batch, "actions": a.long()})),
        (
            "denoiser `loss`: NaN in next_state",
            lambda: den.loss({**batch, "next_state": torch.full((4, 6), float("nan"))}),
        ),
        ("denoiser `loss`: empty batch", lambda: den.loss({k: v[:0] for k, v in batch.items()})),
        ("denoiser `loss`: missing key", lambda: den.loss({"states": s, "actions": a})),
        (
            "denoiser `predict_next_state`: states on another device",
            lambda: den.predict_next_state(s.to("meta"), a),
        ),
        (
            "denoiser `predict_next_state(order=('left', 'left'))`",
            lambda: den.predict_next_state(s, a, order=("left", "left")),
        ),
        (
            "GPT `loss`: rewards of another length",
            lambda: gpt.loss(s, a, torch.zeros(4, 2), torch.zeros(4, 3, dtype=torch.bool)),
        ),
        (
            "GPT `loss`: terminations outside [0, 1]",
            lambda: gpt.loss(s, a, torch.zeros(4, 3), torch.full((4, 3), 2.0)),
        ),
        (
            "decoder `loss`: joint_obs of 8 entries (9 expected)",
            lambda: dec.loss(torch.zeros(4, 6), torch.zeros(4, 8)),
        ),
        (
            "`ReplayBuffer.add`: inf reward",
            lambda: buf.add(**{**row, "reward": torch.tensor([float("inf")])}),
        ),
        (
            "`ReplayBuffer.add`: float terminated",
            lambda: buf.add(**{**row, "terminated": torch.zeros(1)}),
        ),
        ("`ReplayBuffer.add`: a list", lambda: buf.add(**{**row, "state": [0.0] * 6})),
        (
            "`ImaginationEnv.step`: 4 action entries (5 expected)",
            lambda: env.step(torch.zeros(2, 4)),
        ),
        (
            "`ImaginationEnv.step`: NaN (check_actions='step')",
            lambda: env.step(torch.full((2, 5), float("nan"))),
        ),
        (
            "`ImaginationEnv.step`: integer actions",
            lambda: env.step(torch.zeros(2, 5, dtype=torch.long)),
        ),
        ("`MAPPO.act`: NaN observation", lambda: MAPPO(SPEC).act(torch.full((2, 9), float("nan")))),
        ("`check_device('gpu0')`", lambda: check_device("device", "gpu0")),
        (
            "`Trainer('toy', device='cuda')` on a machine without CUDA",
            lambda: Trainer("toy", device="cuda") if not torch.cuda.is_available() else None,
        ),
        ("`Trainer('Nope-1x1')`", lambda: Trainer("Nope-1x1")),
        (
            "`MultiAgentSpec` with numpy sizes (accepted)",
            lambda: MultiAgentSpec(("a",), np.array([2]), (np.int64(1),), np.int32(3)),
        ),  # type: ignore[arg-type]
    ]


def main() -> None:
    print("| input | error |")
    print("|---|---|")
    for label, call in _cases():
        try:
            call()
            result = "accepted (no error)"
        except (ValueError, TypeError) as exc:
            result = f"`{type(exc).__name__}: {str(exc).replace('|', '/')}`"
        print(f"| {label} | {result} |")


if __name__ == "__main__":
    main()
