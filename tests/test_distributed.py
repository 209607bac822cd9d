"""Two gloo processes train the world model like one process on the concatenated batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dimalib.spec import MultiAgentSpec
from dimalib.training.distributed import distributed_trainer, rank_config
from dimalib.training.trainer import Trainer
from dimalib.training.world_model_trainer import WorldModelTrainer, WorldModelTrainingConfig
from dimalib.world_model import DIMAWorldModel, WorldModelConfig
from dimalib.world_model.reward_termination import RewardTerminationConfig

SPEC = MultiAgentSpec(("a", "b"), (3, 2), (1, 2), state_dim=4)
CFG = WorldModelTrainingConfig(decoder_batch=8, reward_batch=4, dynamics_batch=4)


def _model() -> DIMAWorldModel:
    torch.manual_seed(0)
    reward = RewardTerminationConfig(
        n_layer=1, n_head=2, n_embd=16, max_steps=5, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0
    )
    return DIMAWorldModel(SPEC, WorldModelConfig(reward=reward))


def _batches() -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    return {
        "decoder": {"state": torch.randn(8, 4, generator=g), "obs": torch.randn(8, 5, generator=g)},
        "reward": {
            "states": torch.randn(4, 5, 4, generator=g),
            "actions": torch.rand(4, 5, 3, generator=g) * 2 - 1,
            "rewards": torch.randn(4, 5, generator=g),
            "terminated": torch.rand(4, 5, generator=g) < 0.2,
            "mask": torch.ones(4, 5, dtype=torch.bool),
        },
        "dynamics": {
            "states": torch.randn(4, 3, 4, generator=g),
            "actions": torch.rand(4, 3, 3, generator=g) * 2 - 1,
            "mask": torch.ones(4, 3, dtype=torch.bool),
            "next_state": torch.randn(4, 4, generator=g),
        },
    }


class _FixedBatches:
    """The sampling side of a ReplayBuffer, returning this rank's rows of fixed batches."""

    def __init__(self, rows: slice) -> None:
        self.data, self.rows = _batches(), rows

    def __len__(self) -> int:
        return 1

    def sample_state_obs(self, n: int, generator: Any = None) -> dict[str, torch.Tensor]:
        return {k: v[self.rows] for k, v in self.data["decoder"].items()}

    def sample_sequences(
        self, n: int, length: int, generator: Any = None
    ) -> dict[str, torch.Tensor]:
        return {k: v[self.rows] for k, v in self.data["reward"].items()}

    def sample_dynamics(
        self, n: int, context: int, generator: Any = None
    ) -> dict[str, torch.Tensor]:
        return {k: v[self.rows] for k, v in self.data["dynamics"].items()}


def _grads_and_params(model: DIMAWorldModel) -> dict[str, torch.Tensor]:
    out = {}
    for part in ("decoder", "reward_model", "dynamics"):
        for name, p in getattr(model, part).named_parameters():
            out[f"{part}.{name}"] = p.detach().clone()
            if p.grad is not None:
                out[f"{part}.{name}.grad"] = p.grad.detach().clone()
    return out


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = _model()
        if rank == 1:  # rank 0's weights must win the broadcast
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(1.0)
        trainer = distributed_trainer(model, CFG)
        half = slice(rank * 4, (rank + 1) * 4), slice(rank * 2, (rank + 1) * 2)
        trainer.train_decoder(_FixedBatches(half[0]), 2)  # type: ignore[arg-type]
        trainer.train_reward(_FixedBatches(half[1]), 2)  # type: ignore[arg-type]
        # the dynamics loss draws noise per rank (own generator): ranks must stay identical
        trainer.generator = torch.Generator().manual_seed(100 + rank)
        trainer.train_dynamics(_FixedBatches(half[1]), 2)  # type: ignore[arg-type]
        state = _grads_and_params(model)
        state.update(
            {f"normalizer.{k}": v.clone() for k, v in model.normalizer.state_dict().items()}
        )
        torch.save(state, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_gloo_ranks_equal_one_process_on_the_concatenated_batch(tmp_path: Path) -> None:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    single = _model()
    trainer = WorldModelTrainer(single, CFG)
    trainer.train_decoder(_FixedBatches(slice(0, 8)), 2)  # type: ignore[arg-type]
    trainer.train_reward(_FixedBatches(slice(0, 4)), 2)  # type: ignore[arg-type]
    expected = {k: v for k, v in _grads_and_params(single).items() if not k.startswith("dynamics")}
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for key in ranks[0]:  # every parameter, gradient and normaliser statistic
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0)  # identical ranks
    for key, value in expected.items():  # decoder and reward model: the concatenated batch
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-5, atol=1e-6)
    assert any(k.startswith("dynamics") and k.endswith(".grad") for k in ranks[0])


def test_rank_config_splits_the_global_batches() -> None:
    assert rank_config(CFG, 2).decoder_batch == 4 and rank_config(CFG, 4).reward_batch == 1
    with pytest.raises(ValueError, match=r"config\.decoder_batch: expected a multiple of the 3"):
        rank_config(CFG, 3)


# ----------------------------------------------------------------- the whole loop (Trainer)
def _trainer_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """Each rank: the same tiny toy trainer, distributed; 3 epochs (collection only, then world
    model, then world model and policy)."""
    from tests.test_trainer import comparable, tiny_config

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        with Trainer("toy", tiny_config(), seed=3, log_dir=Path(out_dir) / "log") as trainer:
            trainer.distribute()
            history = [comparable(trainer.run_epoch()) for _ in range(3)]
            result: dict[str, Any] = {
                "history": history,
                "params": {k: v.clone() for k, v in trainer.world_model.state_dict().items()},
                "buffer": {
                    k: v.clone() for k, v in trainer.buffer.stream_data(0).items()
                },  # stream 0 of the shared buffer
                "buffer_size": len(trainer.buffer),
                "log_dir": trainer.log_dir,
                "policy_epochs": trainer.policy_epochs,
            }
            if rank == 0:
                trainer.save_checkpoint(Path(out_dir) / "ckpt.pt")
            else:
                with pytest.raises(RuntimeError, match="only rank 0 saves"):
                    trainer.save_checkpoint(Path(out_dir) / "other.pt")
        torch.save(result, Path(out_dir) / f"trainer{world}-{rank}.pt")
    finally:
        dist.destroy_process_group()


def _spawn(world: int, out_dir: Path) -> list[dict[str, Any]]:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    mp.spawn(_trainer_worker, args=(world, _free_port(), str(out_dir)), nprocs=world, join=True)
    return [
        torch.load(out_dir / f"trainer{world}-{r}.pt", weights_only=False) for r in range(world)
    ]


def test_one_rank_distributed_trainer_equals_the_plain_trainer(tmp_path: Path) -> None:
    from tests.test_trainer import comparable, tiny_config

    (only,) = _spawn(1, tmp_path)
    with Trainer("toy", tiny_config(), seed=3) as plain:
        history = [comparable(plain.run_epoch()) for _ in range(3)]
        params = plain.world_model.state_dict()
    assert only["history"] == history  # every metric, bit for bit
    for key, value in params.items():
        torch.testing.assert_close(only["params"][key], value, rtol=0, atol=0)


def test_two_rank_trainer_shares_rank0s_data_and_keeps_the_model_equal(tmp_path: Path) -> None:
    from tests.test_trainer import tiny_config

    zero, one = _spawn(2, tmp_path)
    assert zero["buffer_size"] == one["buffer_size"] == 120  # 3 epochs × 40 transitions
    for key, value in zero["buffer"].items():  # rank 1's buffer: rank 0's transitions, in order
        torch.testing.assert_close(one["buffer"][key], value, rtol=0, atol=0)
    for key, value in zero["params"].items():  # averaged gradients: identical world models
        torch.testing.assert_close(one["params"][key], value, rtol=0, atol=0)
    # rank 0 collected what a one-process run with the same seed collects in its first epoch
    # (random warm-up actions: the policy has not changed anything yet); the second collection
    # closes the first one's episodes in the buffer
    with Trainer("toy", tiny_config(), seed=3) as plain:
        plain.collect()
        plain.collect()
        first = {k: v[:20] for k, v in plain.buffer.stream_data(0).items()}  # 40 per epoch / 2
    for key, value in first.items():
        torch.testing.assert_close(zero["buffer"][key][:20], value, rtol=0, atol=0)
    assert zero["policy_epochs"] > 0 and one["policy_epochs"] == 0  # the policy lives on rank 0
    rows0, rows1 = zero["history"], one["history"]
    assert "eval/return_mean" in rows0[1] and not any("eval/return_mean" in r for r in rows1)
    assert "wm/dynamics/loss" in rows1[1] and "policy/actor_loss" not in rows1[2]
    assert one["log_dir"] is None and (tmp_path / "log" / "metrics.csv").is_file()
    with Trainer.resume(tmp_path / "ckpt.pt") as resumed:  # rank 0's checkpoint is a plain one
        assert resumed.env_steps == 120 and len(resumed.buffer) == 120
