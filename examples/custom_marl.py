"""Bring your own MARL algorithm: train a learner that is not dimalib's inside a DIMA world model.

1. collect random-action data from the real toy env ``CoupledPointMasses`` (2 agents);
2. train a tiny ``DIMAWorldModel`` on it (800 gradient steps by default);
3. train *independent REINFORCE* (one linear Gaussian policy per agent, each updated only through
   its own log-probability, with the shared reward-to-go) inside ``ImaginationEnv``, through the
   Gymnasium vector view ``VectorImaginationEnv`` (NEXT_STEP autoreset; ``infos["active"]`` masks
   the steps that are not part of a live episode);
4. evaluate in the real env: zero actions, the policy before training and after (mean actions).

Run ``python examples/custom_marl.py --help`` for the options. The defaults take about one to two
minutes on a small CPU (``--threads 1`` is fastest for models this small). The world model is tiny
and briefly trained, so how much the real return improves varies with ``--seed``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from dimalib.data.buffer import ReplayBuffer
from dimalib.envs import VectorMultiAgentEnv, collect
from dimalib.envs.toy import CoupledPointMasses
from dimalib.imagination import ImaginationConfig, ImaginationEnv
from dimalib.imagination.adapters import VectorImaginationEnv
from dimalib.world_model import (
    DIMAWorldModel,
    RewardTerminationConfig,
    StateDecoderConfig,
    WorldModelConfig,
)
from dimalib.world_model.dynamics import DenoiserConfig


class IndependentGaussian(nn.Module):
    """One linear Gaussian policy per agent: ``a_i ~ N(W_i o_i + b_i, exp(log_std_i)^2)``."""

    def __init__(self, obs_dims: tuple[int, ...], action_dims: tuple[int, ...]) -> None:
        super().__init__()
        self.obs_dims = list(obs_dims)
        self.means = nn.ModuleList(
            nn.Linear(o, a) for o, a in zip(obs_dims, action_dims, strict=True)
        )
        self.log_stds = nn.ParameterList(nn.Parameter(torch.full((a,), -0.5)) for a in action_dims)

    def forward(self, joint_obs: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, ...]:
        """``[B, O]`` → (joint action ``[B, A]``, per-agent log-probabilities ``[B, n]``)."""
        actions, logps = [], []
        for o, mean, log_std in zip(
            joint_obs.split(self.obs_dims, -1), self.means, self.log_stds, strict=True
        ):
            dist = torch.distributions.Normal(mean(o), log_std.exp())
            a = dist.sample() if sample else dist.mean
            actions.append(a)
            logps.append(dist.log_prob(a).sum(-1))
        return torch.cat(actions, -1), torch.stack(logps, -1)


def train_world_model(args: argparse.Namespace, env: CoupledPointMasses) -> ReplayBuffer:
    """Collect random data, train a tiny world model; return the buffer (start contexts)."""
    n = args.real_envs
    venv = VectorMultiAgentEnv([lambda: CoupledPointMasses(max_steps=args.episode_steps)] * n)
    buffer = ReplayBuffer(env.spec, capacity=n * args.collect_steps, num_streams=n)
    gen = torch.Generator().manual_seed(args.seed)
    A = env.spec.joint_action_dim
    collect(
        venv,
        lambda o, s: torch.rand(o.shape[0], A, generator=gen) * 2 - 1,
        args.collect_steps,
        buffer,
        seed=args.seed,
    )
    venv.close()
    print(f"[1] collected {len(buffer)} real transitions with random actions")
    return buffer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--real-envs", type=int, default=8, help="toy env copies used for collection")
    p.add_argument("--collect-steps", type=int, default=250, help="batched collection steps")
    p.add_argument("--episode-steps", type=int, default=50, help="real episode length")
    p.add_argument("--wm-steps", type=int, default=800, help="world-model gradient steps")
    p.add_argument("--wm-lr", type=float, default=3e-3, help="world-model learning rate")
    p.add_argument("--rollouts", type=int, default=128, help="imagined rollouts per iteration")
    p.add_argument("--horizon", type=int, default=10, help="imagination horizon")
    p.add_argument("--iters", type=int, default=40, help="REINFORCE iterations in imagination")
    p.add_argument("--eval-episodes", type=int, default=5, help="real episodes per evaluation")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny models: 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.time()
    env = CoupledPointMasses(max_steps=args.episode_steps)
    spec = env.spec
    buffer = train_world_model(args, env)

    cfg = WorldModelConfig(  # tiny, for a quick demonstration
        dynamics=DenoiserConfig(channels=(32, 32), depths=(1, 1), cond_dim=64, action_token_dim=32),
        reward=RewardTerminationConfig(
            n_layer=2, n_head=2, n_embd=64, head_hidden=64, max_steps=max(args.horizon, 8)
        ),
        decoder=StateDecoderConfig(hidden_dim=64),
    )
    wm = DIMAWorldModel(spec, cfg)
    wm.update_normalizer(buffer.sample_state_obs(len(buffer))["state"])
    opt = torch.optim.Adam(wm.parameters(), lr=args.wm_lr)
    wm.train()
    for step in range(1, args.wm_steps + 1):
        losses = [
            wm.dynamics_loss(buffer.sample_dynamics(128))[0],
            wm.reward_loss(buffer.sample_sequences(32, length=8))[0],
            wm.decoder_loss(buffer.sample_state_obs(128))[0],
        ]
        opt.zero_grad()
        sum(losses).backward()
        opt.step()
        if step % max(1, args.wm_steps // 3) == 0 or step == args.wm_steps:
            print(
                f"[2] world model step {step}: dynamics/reward/decoder losses "
                + " / ".join(f"{v.item():.3f}" for v in losses)
            )

    imagined = ImaginationEnv(
        wm, buffer, ImaginationConfig(num_envs=args.rollouts, horizon=args.horizon), seed=args.seed
    )
    # any Gymnasium-vector learner plugs in here; torch outputs for this torch learner
    venv = VectorImaginationEnv(imagined, as_numpy=False)
    policy = IndependentGaussian(spec.obs_dims, spec.action_dims)
    initial = IndependentGaussian(spec.obs_dims, spec.action_dims)
    initial.load_state_dict(policy.state_dict())
    opt = torch.optim.Adam(policy.parameters(), lr=3e-2)
    obs, _ = venv.reset(seed=args.seed)
    for it in range(1, args.iters + 1):
        logps, rewards, active = [], [], []
        for _ in range(args.horizon):
            action, logp = policy(obs)
            obs, reward, _, _, info = venv.step(action)
            logps.append(logp)
            rewards.append(reward * info["active"])
            active.append(info["active"].float())
        obs, *_ = venv.step(torch.zeros(args.rollouts, spec.joint_action_dim))  # autoreset step
        mask = torch.stack(active)  # [H, B]
        returns = torch.stack(rewards).flip(0).cumsum(0).flip(0)  # reward-to-go, [H, B]
        adv = (returns - returns.mean(1, keepdim=True)) / (returns.std(1, keepdim=True) + 1e-6)
        # summing the agents' log-probabilities: each policy's gradient uses only its own term
        loss = -(torch.stack(logps).sum(-1) * adv * mask).sum() / mask.sum().clamp(min=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % max(1, args.iters // 4) == 0 or it == 1:
            mean_return = float(torch.stack(rewards).sum(0).mean())
            print(f"[3] REINFORCE iter {it}: imagined return {mean_return:.3f}")

    def evaluate(pol: IndependentGaussian | None) -> float:
        """Mean real return of the policy's mean action (``None``: zero actions)."""
        total = 0.0
        for ep in range(args.eval_episodes):
            o, _ = env.reset(seed=10_000 + ep)
            while env.agents:
                joint = torch.from_numpy(np.concatenate([o[a] for a in env.possible_agents]))
                with torch.no_grad():
                    a = (
                        torch.zeros(1, spec.joint_action_dim)
                        if pol is None
                        else pol(joint[None], sample=False)[0]
                    )
                parts = a[0].split(list(spec.action_dims))
                o, r, *_ = env.step(
                    {k: v.numpy() for k, v in zip(env.possible_agents, parts, strict=True)}
                )
                total += r[env.possible_agents[0]]
        return total / args.eval_episodes

    print(
        f"[4] real env, mean return over {args.eval_episodes} episodes of {args.episode_steps} "
        f"steps: zero actions {evaluate(None):.2f}, policy before training "
        f"{evaluate(initial):.2f}, after {evaluate(policy):.2f}"
    )
    print(f"done in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
