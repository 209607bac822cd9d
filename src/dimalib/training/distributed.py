"""World-model training on several processes with ``torch.distributed`` (gloo on CPU, NCCL on CUDA).

Data-parallel training of the three world-model components: every process (rank) holds a full
copy of the world model, samples its share of each batch from its replay buffer, and the
gradients are averaged over the ranks after every backward pass — what
``DistributedDataParallel`` does, here as an explicit hook (:func:`all_reduce_gradients`) because
the world model is trained through its loss methods rather than one ``forward``. With equal
shares and mean losses, one update on ``R`` ranks equals one update of a single process on the
concatenated batch (tested with two gloo processes: gradients and parameters agree to 1e-6).

Run it with ``torchrun --nproc-per-node N your_script.py`` (the launcher sets ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``); in the script::

    rank, world = init_from_env()                        # gloo on CPU, nccl with CUDA
    trainer = distributed_trainer(world_model, WorldModelTrainingConfig(), generator=g)
    trainer.train_epoch(buffer)                          # each rank: its share of every batch

On a multi-GPU node pick the device per rank (``torch.device("cuda", rank % torch.cuda.device_count())``)
before building the model; rank 0 alone should collect, log and checkpoint.

**The whole loop** (:meth:`Trainer.distribute <dimalib.training.trainer.Trainer.distribute>`,
``torchrun ... dimalib train`` / ``examples/dima_mappo.py``): rank 0 alone steps the real envs;
after every collection its new transitions go to every rank in one broadcast
(:class:`TransitionRecorder`, :func:`send_transitions`, :func:`receive_transitions`), so all
replay buffers stay equal; every rank trains the world model on its share of each batch; rank 0
learns the policy in imagination, evaluates, logs and checkpoints.

The dynamics model's running state statistics (``RunningNormalizer``) are updated from each
rank's own share; after every dynamics update rank 0's statistics are broadcast, so every rank
normalises with the same numbers (estimated from rank 0's share of the data).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from dimalib.envs.vector import TransitionSink
from dimalib.spec import MultiAgentSpec
from dimalib.training.world_model_trainer import WorldModelTrainer, WorldModelTrainingConfig
from dimalib.world_model.aggregate import DIMAWorldModel

__all__ = [
    "TransitionRecorder",
    "all_reduce_gradients",
    "broadcast_module",
    "distributed_trainer",
    "init_from_env",
    "rank_config",
    "receive_transitions",
    "send_transitions",
    "sync_flag",
]


def init_from_env(
    backend: str | None = None,
    *,
    device: torch.device | None = None,
    timeout: datetime.timedelta | None = None,
) -> tuple[int, int]:
    """Join the process group ``torchrun`` describes in the environment; ``(rank, world_size)``.

    ``backend`` defaults to NCCL when CUDA is available, else gloo. With a CUDA ``device`` that
    device becomes this process's current one before joining (NCCL's collectives run on it).
    ``timeout``: how long a collective waits for the other ranks (torch's default, 10 min for
    NCCL, may be short when rank 0 alone runs a long policy phase). Already initialised: the
    existing group is used.
    """
    if not dist.is_initialized():
        missing = [
            k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ
        ]
        if missing:
            raise RuntimeError(
                f"init_from_env: expected the torchrun variables, {missing} not set; launch with "
                "`torchrun --nproc-per-node N script.py`"
            )
        if device is not None and device.type == "cuda":
            torch.cuda.set_device(device)
        kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        dist.init_process_group(
            backend or ("nccl" if torch.cuda.is_available() else "gloo"), **kwargs
        )
    return dist.get_rank(), dist.get_world_size()


def all_reduce_gradients(module: nn.Module, group: dist.ProcessGroup | None = None) -> None:
    """Average ``module``'s gradients over the ranks, in one flat all-reduce per dtype."""
    world = dist.get_world_size(group)
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    for dtype in sorted({g.dtype for g in grads}, key=str):  # the same order on every rank
        same = [g for g in grads if g.dtype == dtype]
        flat = torch.cat([g.reshape(-1) for g in same])  # (P,)
        dist.all_reduce(flat, group=group)
        flat /= world
        for g, part in zip(same, flat.split([g.numel() for g in same]), strict=True):
            g.copy_(part.view_as(g))


def broadcast_module(
    module: nn.Module, src: int = 0, group: dist.ProcessGroup | None = None
) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (e.g. after building a model)."""
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src, group=group)


def rank_config(config: WorldModelTrainingConfig, world_size: int) -> WorldModelTrainingConfig:
    """The per-rank batch sizes of a global ``config``: each batch divided by ``world_size``."""
    sizes = {}
    for name in ("decoder_batch", "dynamics_batch", "reward_batch"):
        total = getattr(config, name)
        if total % world_size:
            raise ValueError(
                f"config.{name}: expected a multiple of the {world_size} processes, received {total}"
            )
        sizes[name] = total // world_size
    return dataclasses.replace(config, **sizes)


def distributed_trainer(
    world_model: DIMAWorldModel,
    config: WorldModelTrainingConfig | None = None,
    *,
    generator: torch.Generator | None = None,
    group: dist.ProcessGroup | None = None,
) -> WorldModelTrainer:
    """A :class:`WorldModelTrainer` for this rank: rank 0's weights broadcast to all, per-rank
    batch shares of ``config``'s global batches (:func:`rank_config`), averaged gradients, and
    the normaliser kept equal. Give each rank its own ``generator`` seed (different samples)."""
    world = dist.get_world_size(group)
    broadcast_module(world_model, src=_src(group), group=group)
    normalizer = world_model.normalizer

    def sync_statistics(module: nn.Module) -> None:
        if module is world_model.dynamics:
            broadcast_module(normalizer, src=_src(group), group=group)

    return WorldModelTrainer(
        world_model,
        rank_config(config or WorldModelTrainingConfig(), world),
        generator=generator,
        gradient_sync=lambda m: all_reduce_gradients(m, group),
        after_step=sync_statistics,
    )


# ------------------------------------------------------------------ sharing rank 0's data
def _comm_device(group: dist.ProcessGroup | None, device: torch.device) -> torch.device:
    """Where collectives run: the CUDA device for NCCL, the CPU otherwise."""
    if dist.get_backend(group) == "nccl":
        return (
            device if device.type == "cuda" else torch.device("cuda", torch.cuda.current_device())
        )
    return torch.device("cpu")


def _src(group: dist.ProcessGroup | None) -> int:
    return 0 if group is None else dist.get_global_rank(group, 0)


def sync_flag(
    value: bool, group: dist.ProcessGroup | None = None, *, device: torch.device | None = None
) -> bool:
    """Rank 0's ``value`` on every rank (one broadcast of one byte)."""
    comm = _comm_device(group, device or torch.device("cpu"))
    flag = torch.tensor([1 if value else 0], dtype=torch.uint8, device=comm)
    dist.broadcast(flag, src=_src(group), group=group)
    return bool(flag.item())


def _width(spec: MultiAgentSpec) -> int:
    # state, obs, action, reward, terminated, truncated, next_state, next_obs
    return 2 * (spec.state_dim + spec.joint_obs_dim) + spec.joint_action_dim + 3


class TransitionRecorder:
    """A ``TransitionSink`` that forwards every batch of transitions to ``sink`` and keeps a
    packed copy (``[N, F]`` float32 rows) for :func:`send_transitions`."""

    def __init__(self, sink: TransitionSink) -> None:
        self.sink = sink
        self.steps: list[torch.Tensor] = []

    def add(
        self,
        state: torch.Tensor,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        next_state: torch.Tensor,
        next_obs: torch.Tensor,
    ) -> None:
        self.sink.add(state, obs, action, reward, terminated, truncated, next_state, next_obs)
        flags = torch.stack([reward.float(), terminated.float(), truncated.float()], dim=-1)
        parts = (state, obs, action, flags, next_state, next_obs)
        self.steps.append(torch.cat([p.float() for p in parts], dim=-1))  # (N, F)


def send_transitions(
    recorder: TransitionRecorder, spec: MultiAgentSpec, group: dist.ProcessGroup | None = None
) -> None:
    """Rank 0: broadcast the recorded transitions (``[T, N, F]``, one collective)."""
    if not recorder.steps:
        return
    packed = torch.stack(recorder.steps)  # (T, N, F)
    if packed.shape[-1] != _width(spec):
        raise ValueError(
            f"recorder: expected rows of {_width(spec)} values, received {packed.shape[-1]}"
        )
    comm = _comm_device(group, packed.device)
    dist.broadcast(packed.to(comm), src=_src(group), group=group)


def receive_transitions(
    sink: TransitionSink,
    spec: MultiAgentSpec,
    steps: int,
    num_envs: int,
    *,
    device: torch.device,
    group: dist.ProcessGroup | None = None,
) -> None:
    """Every other rank: receive rank 0's ``steps`` batches of ``num_envs`` transitions and add
    them to ``sink`` in rank 0's order (the buffers then hold the same data)."""
    if steps == 0:
        return
    comm = _comm_device(group, device)
    packed = torch.empty(steps, num_envs, _width(spec), device=comm)
    dist.broadcast(packed, src=_src(group), group=group)
    S, Ob, A = spec.state_dim, spec.joint_obs_dim, spec.joint_action_dim
    state, obs, action, flags, next_state, next_obs = torch.split(
        packed.to(device), [S, Ob, A, 3, S, Ob], dim=-1
    )
    for t in range(steps):  # one add per vector step, as rank 0 made them
        sink.add(
            state[t],
            obs[t],
            action[t],
            flags[t, :, 0],
            flags[t, :, 1] > 0.5,
            flags[t, :, 2] > 0.5,
            next_state[t],
            next_obs[t],
        )
