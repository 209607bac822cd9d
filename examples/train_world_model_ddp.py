"""Train a DIMA world model on several processes (``torch.distributed``, gloo or NCCL).

Each rank collects its own random-policy transitions (its own env seeds) into its replay buffer,
then every update averages the ranks' gradients (:mod:`dimalib.training.distributed`), so the
global batch of Table 4 is split across the ranks. Rank 0 prints the losses and saves the model.
The whole DIMA+MAPPO loop (rank 0 collecting for every rank) runs under torchrun with
``torchrun --nproc-per-node N examples/dima_mappo.py ...`` (``Trainer.distribute``).

    torchrun --nproc-per-node 2 examples/train_world_model_ddp.py --env toy --epochs 2
    torchrun --nproc-per-node 8 examples/train_world_model_ddp.py --env HalfCheetah-2x3 --device cuda
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.distributed as dist

from dimalib.data import ReplayBuffer
from dimalib.envs import collect
from dimalib.envs.registry import make_vector_env
from dimalib.training import WorldModelTrainingConfig
from dimalib.training.config import trainer_config
from dimalib.training.distributed import distributed_trainer, init_from_env
from dimalib.world_model import DIMAWorldModel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="toy")
    p.add_argument("--env-steps", type=int, default=4000, help="per rank")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps-per-epoch", type=int, default=50)
    p.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU per rank)")
    p.add_argument("--out", type=Path, default=Path("runs/wm_ddp"))
    args = p.parse_args()
    rank, world = init_from_env()
    torch.set_num_threads(1)
    device = (
        torch.device("cuda", rank % torch.cuda.device_count())
        if args.device == "cuda"
        else torch.device("cpu")
    )
    cfg = trainer_config("cpu", args.env)
    venv = make_vector_env(args.env, 4, seed=1000 * rank, max_episode_steps=cfg.max_episode_steps)
    spec = venv.spec
    buffer = ReplayBuffer(spec, args.env_steps, num_streams=4)
    low, high = spec.action_bounds()
    g = torch.Generator().manual_seed(rank)

    def policy(obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return low + (high - low) * torch.rand(obs.shape[0], spec.joint_action_dim, generator=g)

    venv.reset(seed=1000 * rank)
    collect(venv, policy, args.env_steps // 4, buffer)
    venv.close()
    torch.manual_seed(0)  # the same initial weights on every rank (rank 0's are broadcast anyway)
    model = DIMAWorldModel(spec, cfg.world_model).to(device)
    model.update_normalizer(buffer.stream_data(0)["state"].to(device))
    training = WorldModelTrainingConfig(
        **{**cfg.wm_training.__dict__, "steps_per_epoch": args.steps_per_epoch}
    )
    trainer = distributed_trainer(
        model, training, generator=torch.Generator().manual_seed(10 + rank)
    )
    for epoch in range(args.epochs):
        metrics = trainer.train_epoch(buffer)
        if rank == 0:
            keys = ("decoder/loss", "dynamics/loss", "reward/loss")
            print(
                f"epoch {epoch + 1}: " + ", ".join(f"{k} {metrics[k]:.4f}" for k in keys),
                flush=True,
            )
    if rank == 0:
        path = model.save(args.out / "world_model.pt", ranks=world)
        print(f"saved {path} ({world} ranks)")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
