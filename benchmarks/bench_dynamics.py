"""Dynamics model speed: one training step and one full next-state sampling.

Paper network (Table 3) at the sizes of gymnasium-robotics' MAMuJoCo: HalfCheetah-2x3 (state 17,
2 agents × 3 actions, observations 12 each) and Ant-4x2 (state 105, 4 agents × 2, observations 42):
training step at batch 64 (Table 4: AdamW lr 1e-4, weight decay 0.01, grad clip 1), sampling
with the default step count (Table 4: 2n if n <= 2 else n) at batch 600 (600 imagined rollouts).

    python benchmarks/bench_dynamics.py [--device cpu|cuda] [--repeats 30]
"""

from __future__ import annotations

import argparse

import torch
from _common import machine, median_ms, print_table

from dimalib import MultiAgentSpec
from dimalib.world_model.dynamics import JointActionDenoiser, SequentialAgentDenoiser

TASKS = {
    "HalfCheetah-2x3": MultiAgentSpec(("a0", "a1"), (12, 12), (3, 3), 17),
    "Ant-4x2": MultiAgentSpec(("a0", "a1", "a2", "a3"), (42,) * 4, (2,) * 4, 105),
}


def bench(name: str, cls: type, device: torch.device, repeats: int) -> tuple[str, ...]:
    spec = TASKS[name]
    torch.manual_seed(0)
    model = cls(spec).to(device)
    L, S, A = model.config.context, spec.state_dim, spec.joint_action_dim
    batch = {
        "states": torch.randn(64, L, S, device=device),
        "actions": torch.rand(64, L, A, device=device) * 2 - 1,
        "mask": torch.ones(64, L, dtype=torch.bool, device=device),
        "next_state": torch.randn(64, S, device=device),
    }
    opt = torch.optim.AdamW(
        model.parameters(), lr=1e-4, weight_decay=0.01, fused=device.type in ("cpu", "cuda")
    )

    def train_step() -> None:
        loss, _ = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    model.train()
    train, train_iqr = median_ms(train_step, device, repeats=repeats)
    model.eval()
    states = torch.randn(600, L, S, device=device)
    actions = torch.rand(600, L, A, device=device) * 2 - 1
    steps = model.sampler.num_steps(spec.n_agents)
    sample, sample_iqr = median_ms(
        lambda: model.predict_next_state(states, actions, check_inputs=False),
        device,
        repeats=max(5, repeats // 3),
    )
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    return (
        name,
        cls.__name__,
        f"{n_params:.2f}M",
        f"{train:.1f} ± {train_iqr / 2:.1f}",
        f"{steps}",
        f"{sample:.0f} ± {sample_iqr / 2:.0f}",
        f"{600 / sample * 1e3:,.0f}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [
        bench(task, cls, device, args.repeats)
        for task in TASKS
        for cls in (SequentialAgentDenoiser, JointActionDenoiser)
    ]
    print_table(
        f"Dynamics model ({machine()})",
        rows,
        (
            "task",
            "model",
            "params",
            "train step @64 (ms)",
            "denoising steps",
            "sampling @600 (ms)",
            "next states/s",
        ),
    )


if __name__ == "__main__":
    main()
