"""Train a DIMA world model on real multi-agent data, measure it, and imagine with it.

1. collect transitions with a uniform random joint policy from N copies of a real environment
   (MAMuJoCo through gymnasium-robotics, or the analytic `toy` env), plus held-out episodes;
2. train the state decoder, the sequential-agent dynamics denoiser and the reward/termination
   GPT (paper Algorithm 1's three update phases, Table 4 optimisers);
3. report on held-out data: one-step error, open-loop cumulative L1 error over the horizon for
   three conditioning orders, decoder and reward errors; time 600 imagined rollouts;
4. save the world model (atomic, versioned) and the metrics as JSON under --out.

    python examples/train_world_model.py --env HalfCheetah-2x3
    python examples/train_world_model.py --env toy --env-steps 3000 --epochs 2
    python examples/train_world_model.py --env Ant-2x4 --preset paper --epochs 10
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time
from pathlib import Path

import torch

from dimalib import MultiAgentSpec
from dimalib.data import ReplayBuffer
from dimalib.envs import VectorMultiAgentEnv, collect, known_env_names, make_env
from dimalib.evaluation import cumulative_l1, open_loop_states, real_segments
from dimalib.imagination import ImaginationConfig, ImaginationEnv
from dimalib.training import WorldModelTrainer, WorldModelTrainingConfig
from dimalib.world_model import (
    DIMAWorldModel,
    RewardTerminationConfig,
    StateDecoderConfig,
    WorldModelConfig,
)
from dimalib.world_model.dynamics import DenoiserConfig, RevealSchedule

PRESETS = {
    # Table 3 sizes (the reveal schedule comes from --reveal; the paper's is "sequential")
    "paper": WorldModelConfig(),
    # a smaller model for a quick CPU run (same structure, narrower and shallower)
    "small": WorldModelConfig(
        dynamics=DenoiserConfig(channels=(48, 48), depths=(1, 1), cond_dim=128),
        reward=RewardTerminationConfig(n_layer=2, n_head=4, n_embd=128, head_hidden=128),
        decoder=StateDecoderConfig(hidden_dim=256),
    ),
}


def make(name: str, max_episode_steps: int) -> object:
    return make_env(name, max_episode_steps=max_episode_steps)  # any registered name


def random_policy(spec: MultiAgentSpec, generator: torch.Generator):  # type: ignore[no-untyped-def]
    low, high = spec.action_bounds()

    def act(obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        u = torch.rand(obs.shape[0], spec.joint_action_dim, generator=generator)
        return low + (high - low) * u

    return act


def gather(name: str, spec_steps: int, num_envs: int, seed: int, episode_len: int,
           capacity: int) -> tuple[ReplayBuffer, float]:  # fmt: skip
    venv = VectorMultiAgentEnv([functools.partial(make, name, episode_len)] * num_envs)
    buffer = ReplayBuffer(venv.spec, capacity=capacity, num_streams=num_envs)
    policy = random_policy(venv.spec, torch.Generator().manual_seed(seed))
    t0 = time.perf_counter()
    collect(venv, policy, spec_steps // num_envs, buffer, seed=seed)
    rate = len(buffer) / (time.perf_counter() - t0)
    venv.close()
    return buffer, rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--env",
        default="HalfCheetah-2x3",
        help=f"one of {known_env_names()} or a MAMuJoCo 'Scenario-Conf' name",
    )
    p.add_argument("--env-steps", type=int, default=8000, help="training transitions")
    p.add_argument("--heldout-steps", type=int, default=2000, help="held-out transitions")
    p.add_argument("--num-envs", type=int, default=4, help="parallel env copies")
    p.add_argument("--episode-len", type=int, default=200, help="time limit of an episode")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument(
        "--reveal",
        choices=["sequential", "cumulative", "joint"],
        default="cumulative",
        help="reveal schedule of the dynamics model (paper: sequential, eq. 9)",
    )
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--steps-per-epoch", type=int, default=200, help="updates per model (Table 4)")
    p.add_argument("--horizon", type=int, default=15, help="open-loop / imagination horizon")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="output folder (default runs/world_model-ENV-SEED)")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    out = Path(args.out or f"runs/world_model-{args.env}-{args.seed}")

    print(f"collecting {args.env_steps} + {args.heldout_steps} random-policy transitions "
          f"from {args.num_envs} copies of {args.env} ...")  # fmt: skip
    train_buf, rate = gather(args.env, args.env_steps, args.num_envs, args.seed,
                             args.episode_len, args.env_steps)  # fmt: skip
    test_buf, _ = gather(args.env, args.heldout_steps, args.num_envs, args.seed + 10_000,
                         args.episode_len, args.heldout_steps)  # fmt: skip
    spec = train_buf.spec
    print(f"  {len(train_buf)} train / {len(test_buf)} held-out transitions ({rate:,.0f} steps/s)")
    print(f"  spec: {spec.n_agents} agents, obs {spec.obs_dims}, actions {spec.action_dims}, "
          f"state {spec.state_dim}")  # fmt: skip

    config = PRESETS[args.preset]
    sampler = dataclasses.replace(config.dynamics.sampler, reveal=RevealSchedule(args.reveal))
    config = WorldModelConfig(
        dynamics=dataclasses.replace(config.dynamics, sampler=sampler),
        reward=RewardTerminationConfig(**{**config.reward.__dict__, "max_steps": args.horizon}),
        decoder=config.decoder,
    )
    wm = DIMAWorldModel(spec, config).to(device)
    wm.update_normalizer(train_buf.sample_state_obs(len(train_buf))["state"].to(device))
    trainer = WorldModelTrainer(
        wm, WorldModelTrainingConfig(steps_per_epoch=args.steps_per_epoch),
        generator=torch.Generator().manual_seed(args.seed),
    )  # fmt: skip
    n_params = sum(p.numel() for p in wm.parameters()) / 1e6
    print(f"training the world model ({args.preset} preset, {n_params:.2f}M parameters) ...")
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        m = trainer.train_epoch(train_buf)
        print(f"  epoch {epoch + 1}/{args.epochs} ({time.perf_counter() - t0:.0f} s): "
              f"decoder mse {m['decoder/mse']:.4f} | dynamics loss {m['dynamics/loss']:.4f} | "
              f"reward loss {m['reward/loss']:.4f}")  # fmt: skip

    print("held-out evaluation ...")
    g = torch.Generator().manual_seed(args.seed + 1)
    std = wm.normalizer.std.float().to(device)
    seg = real_segments(test_buf, 100, wm.context, args.horizon, generator=g)
    states, actions = seg["states"].to(device), seg["actions"].to(device)
    ctx, target = states[:, : wm.context], states[:, wm.context :]
    naive = cumulative_l1(ctx[:, -1:].expand_as(target), target, std)
    metrics: dict[str, object] = {"env": args.env, "preset": args.preset, "segments": len(states)}
    for order in ("descending", "ascending", "random"):
        pred = open_loop_states(wm, ctx, actions[:, :-1], args.horizon, order=order,
                                generator=torch.Generator(device).manual_seed(0))  # fmt: skip
        err = cumulative_l1(pred, target, std)
        metrics[f"cum_l1_{order}"] = err.tolist()
        print(f"  open-loop cumulative L1 per dim (in state stds), order {order:>10}: "
              f"h=1 {err[0]:.3f}  h=5 {err[min(4, len(err) - 1)]:.3f}  h={args.horizon} "
              f"{err[-1]:.3f}")  # fmt: skip
    metrics["cum_l1_copy_baseline"] = naive.tolist()
    print(f"  baseline 'state does not change':                        h=1 {naive[0]:.3f}  "
          f"h=5 {naive[min(4, len(naive) - 1)]:.3f}  h={args.horizon} {naive[-1]:.3f}")  # fmt: skip
    wm.eval()
    with torch.no_grad():
        pairs = test_buf.sample_state_obs(1000, generator=g)
        dec = wm.decoder_loss({k: v.to(device) for k, v in pairs.items()})[1]
        seqs = test_buf.sample_sequences(256, length=args.horizon, generator=g)
        rew = wm.reward_loss({k: v.to(device) for k, v in seqs.items()})[1]
        usage = wm.decoder.codebook_usage(wm.normalize_state(pairs["state"].to(device)))
    metrics.update(decoder_mse=float(dec["mse"]), reward_mae=float(rew["reward_mae"]),
                   termination_accuracy=float(rew["termination_accuracy"]), **usage)  # fmt: skip
    print(f"  decoder obs MSE {metrics['decoder_mse']:.4f} | FSQ code usage {usage['usage']:.0%} "
          f"| reward MAE {metrics['reward_mae']:.4f} (reward std "
          f"{float(seqs['rewards'][seqs['mask']].std()):.3f})")  # fmt: skip

    env = ImaginationEnv(wm, train_buf, ImaginationConfig(horizon=args.horizon), seed=args.seed)
    policy = random_policy(spec, torch.Generator().manual_seed(args.seed))
    obs, state = env.reset()
    t0 = time.perf_counter()
    for _ in range(args.horizon):
        step = env.step(policy(obs, state).to(device))
        obs, state = step.obs, step.state
    dt = time.perf_counter() - t0
    metrics["imagined_transitions_per_s"] = env.num_envs * args.horizon / dt
    print(f"imagined {env.num_envs} rollouts x {args.horizon} steps in {dt:.1f} s "
          f"({metrics['imagined_transitions_per_s']:,.0f} transitions/s)")  # fmt: skip

    out.mkdir(parents=True, exist_ok=True)
    wm.save(out / "world_model.pt", env=args.env)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"saved {out / 'world_model.pt'} and {out / 'metrics.json'}")


if __name__ == "__main__":
    main()
