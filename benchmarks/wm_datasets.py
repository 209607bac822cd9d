"""Record world-model datasets: a mixture of random and (partially) trained MAPPO policies.

The transitions are collected with dimalib's own :func:`~dimalib.envs.collect` from ``--num-envs``
copies of a real MAMuJoCo task and stored in the replay buffer's file format. Every source (the
uniform random policy, then each ``--policy`` learner file written by ``examples/mappo.py``,
sampled stochastically) contributes the same number of transitions. The held-out part is
recorded the same way with other env seeds, so train and held-out data never share an episode
(split by episode).

    python examples/mappo.py --env HalfCheetah-2x3 --total-env-steps 50000 --out runs/mappo-hc
    python benchmarks/wm_datasets.py --env HalfCheetah-2x3 --policy runs/mappo-hc/mappo.pt \\
        --out runs/wm_data/HalfCheetah-2x3

Writes ``OUT/train.pt`` and ``OUT/heldout.pt`` (``ReplayBuffer.load`` reads them) and
``OUT/meta.json`` (sources, transitions and mean episode return per source).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dimalib.algorithms.mappo import MAPPO, MAPPOConfig
from dimalib.data import ReplayBuffer
from dimalib.envs import VectorMultiAgentEnv, collect, make_env
from dimalib.spec import MultiAgentSpec
from dimalib.utils.io import load_versioned

Policy = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def random_policy(spec: MultiAgentSpec, generator: torch.Generator) -> Policy:
    low, high = spec.action_bounds()

    def act(obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        u = torch.rand(obs.shape[0], spec.joint_action_dim, generator=generator)
        return low + (high - low) * u

    return act


def mappo_policy(path: str, spec: MultiAgentSpec, generator: torch.Generator) -> Policy:
    """The stochastic actor of a learner saved by ``examples/mappo.py``."""
    blob = load_versioned(path, kind="mappo_baseline", version=1)
    mappo = MAPPO(spec, MAPPOConfig.mamujoco())
    mappo.load_state_dict(blob["mappo"])

    def act(obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return mappo.act(obs, generator=generator)

    return act


def record(
    venv: VectorMultiAgentEnv,
    policies: dict[str, Policy],
    transitions: int,
    seed: int,
) -> tuple[ReplayBuffer, dict[str, Any]]:
    """``transitions`` split equally between ``policies``, each from freshly reset envs."""
    n = venv.num_envs
    steps = max(1, transitions // (n * len(policies)))
    buffer = ReplayBuffer(venv.spec, capacity=steps * n * len(policies), num_streams=n)
    info: dict[str, Any] = {}
    for i, (name, policy) in enumerate(policies.items()):
        buffer.end_episodes()
        venv.reset(seed=seed + 1000 * i)
        res = collect(venv, policy, steps, buffer)
        info[name] = {"transitions": res.env_steps, "mean_episode_return": res.mean_return,
                      "episodes_ended": res.num_episodes}  # fmt: skip
    buffer.end_episodes()
    return buffer, info


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="HalfCheetah-2x3")
    p.add_argument("--policy", action="append", default=[], help="examples/mappo.py learner file")
    p.add_argument("--train-steps", type=int, default=40_000, help="training transitions")
    p.add_argument("--heldout-steps", type=int, default=8_000, help="held-out transitions")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--episode-len", type=int, default=200, help="time limit of an episode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    make = functools.partial(make_env, args.env, max_episode_steps=args.episode_len)
    venv = VectorMultiAgentEnv([make] * args.num_envs)
    spec = venv.spec
    g = torch.Generator().manual_seed(args.seed)
    policies: dict[str, Policy] = {"random": random_policy(spec, g)}
    for path in args.policy:
        policies[f"mappo:{path}"] = mappo_policy(path, spec, g)
    t0 = time.perf_counter()
    train, train_info = record(venv, policies, args.train_steps, seed=args.seed)
    heldout, heldout_info = record(venv, policies, args.heldout_steps, seed=args.seed + 500_000)
    venv.close()
    out.mkdir(parents=True, exist_ok=True)
    train.save(out / "train.pt")
    heldout.save(out / "heldout.pt")
    meta = {
        "env": args.env,
        "episode_len": args.episode_len,
        "num_envs": args.num_envs,
        "seed": args.seed,
        "train": train_info,
        "heldout": heldout_info,
        "seconds": time.perf_counter() - t0,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta, indent=2))
    print(f"wrote {out / 'train.pt'} ({len(train)} transitions) and {out / 'heldout.pt'} "
          f"({len(heldout)})")  # fmt: skip


if __name__ == "__main__":
    main()
