"""Trainer (paper Algorithm 1), its presets, checkpoints/resume, and the command-line scripts."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

import dimalib.training.trainer as trainer_module
from dimalib.algorithms.mappo import MAPPOConfig
from dimalib.imagination import ImaginationConfig
from dimalib.training import WorldModelTrainingConfig
from dimalib.training.config import TrainerConfig, trainer_config, with_reveal
from dimalib.training.trainer import MetricsLogger, Trainer, check_env_name
from dimalib.world_model import RewardTerminationConfig, StateDecoderConfig, WorldModelConfig
from dimalib.world_model.dynamics import DenoiserConfig, RevealSchedule

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "dima_mappo.py"

TINY_WM = WorldModelConfig(
    dynamics=DenoiserConfig(channels=(16, 16), depths=(1, 1), cond_dim=32, action_token_dim=16),
    reward=RewardTerminationConfig(n_layer=1, n_head=2, n_embd=32, head_hidden=32, max_steps=5),
    decoder=StateDecoderConfig(hidden_dim=32),
)


def tiny_config(**changes: object) -> TrainerConfig:
    """Algorithm 1's structure at toy scale: 40 env steps per epoch from 2 env copies, world-model
    training from 80 transitions on, policy learning after 1 world-model epoch."""
    cfg = TrainerConfig(
        env_steps_per_epoch=40,
        num_envs=2,
        wm_warmup_transitions=80,
        policy_warmup_wm_epochs=1,
        buffer_capacity=2000,
        world_model=TINY_WM,
        wm_training=WorldModelTrainingConfig(
            steps_per_epoch=3, decoder_batch=16, dynamics_batch=8, reward_batch=8
        ),
        imagination=ImaginationConfig(num_envs=16, horizon=5),
        mappo=MAPPOConfig(hidden_dim=16, ppo_epochs=2),
        policy_updates_per_epoch=2,
        eval_every_env_steps=80,
        eval_episodes=2,
        max_episode_steps=30,
    )
    return dataclasses.replace(cfg, **changes)  # type: ignore[arg-type]


def comparable(row: dict[str, float]) -> dict[str, object]:
    """A metrics row without timings, NaN made comparable with ==."""
    return {
        k: ("nan" if isinstance(v, float) and math.isnan(v) else v)
        for k, v in row.items()
        if not k.startswith(("time/", "perf/"))
    }


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- config
def test_paper_preset_holds_the_tables_values() -> None:
    cfg = trainer_config("paper", "HalfCheetah-2x3")
    assert cfg.env_steps_per_epoch == 200  # Table 4, MAMuJoCo
    assert cfg.wm_updates_per_epoch == 200  # Table 4
    assert (cfg.wm_training.decoder_batch, cfg.wm_training.dynamics_batch) == (256, 64)
    assert cfg.wm_training.reward_batch == 128
    assert cfg.policy_updates_per_epoch == 4  # Table 4
    assert (cfg.imagination.num_envs, cfg.imagination.horizon) == (600, 15)  # Table 4
    assert (cfg.wm_warmup_transitions, cfg.policy_warmup_wm_epochs) == (5000, 10)  # official code
    assert cfg.buffer_capacity == 250_000 and cfg.eval_episodes == 10
    assert (cfg.mappo.gamma, cfg.mappo.entropy_coef, cfg.mappo.lam) == (0.99, 0.001, 0.95)
    assert (cfg.mappo.clip, cfg.mappo.ppo_epochs, cfg.mappo.actor_lr) == (0.1, 5, 5e-4)
    assert cfg.world_model.reward == RewardTerminationConfig()  # Table 3 sizes
    assert cfg.world_model.decoder == StateDecoderConfig()
    paper_dyn = dataclasses.replace(cfg.world_model.dynamics, sampler=DenoiserConfig().sampler)
    assert paper_dyn == DenoiserConfig()
    # the paper's reveal schedule: one agent per denoising step (eq. 9)
    assert cfg.world_model.dynamics.sampler.reveal == RevealSchedule("sequential")
    bdh = trainer_config("paper", "ShadowHandPen")
    assert bdh.env_steps_per_epoch == 500  # Table 4, Bi-DexHands
    assert (bdh.mappo.gamma, bdh.mappo.entropy_coef) == (0.95, 0.01)  # Table 1


def test_cpu_preset_keeps_the_schedule_and_shrinks_the_epoch() -> None:
    paper, cpu = trainer_config("paper"), trainer_config("cpu")
    for name in ("env_steps_per_epoch", "wm_warmup_transitions", "policy_warmup_wm_epochs",
                 "policy_updates_per_epoch", "eval_episodes", "buffer_capacity"):  # fmt: skip
        assert getattr(cpu, name) == getattr(paper, name), name
    assert cpu.imagination.horizon == paper.imagination.horizon == 15
    assert cpu.mappo == paper.mappo
    assert cpu.world_model.dynamics.sampler.reveal.kind == "cumulative"  # docs/design.md
    swapped = with_reveal(cpu, RevealSchedule("sequential"))
    assert swapped.world_model.dynamics.sampler.reveal.kind == "sequential"
    assert dataclasses.replace(swapped, world_model=cpu.world_model) == cpu
    assert cpu.wm_updates_per_epoch < paper.wm_updates_per_epoch
    assert cpu.imagination.num_envs < paper.imagination.num_envs
    for lr in ("decoder_lr", "reward_lr"):
        assert getattr(cpu.wm_training, lr) == getattr(paper.wm_training, lr)
    # the small denoiser learns the actions' effects in time only at a higher rate (docs)
    assert (paper.wm_training.dynamics_lr, cpu.wm_training.dynamics_lr) == (1e-4, 3e-3)
    from dimalib.envs.toy import CoupledPointMasses
    from dimalib.world_model import DIMAWorldModel

    spec = CoupledPointMasses(n_agents=2).spec
    n_cpu = sum(p.numel() for p in DIMAWorldModel(spec, cpu.world_model).parameters())
    n_paper = sum(p.numel() for p in DIMAWorldModel(spec, paper.world_model).parameters())
    assert n_cpu < n_paper / 4


def test_config_validation_messages() -> None:
    with pytest.raises(ValueError, match="env_steps_per_epoch: expected a multiple of num_envs"):
        TrainerConfig(env_steps_per_epoch=201, num_envs=2)
    with pytest.raises(ValueError, match=r"imagination\.horizon: expected at most"):
        tiny_config(imagination=ImaginationConfig(num_envs=4, horizon=6))
    with pytest.raises(ValueError, match="preset: expected one of"):
        trainer_config("gpu")
    with pytest.raises(ValueError, match="env: unknown environment 'Nope-1x1'"):
        check_env_name("Nope-1x1")


def test_bad_order_fails_when_the_trainer_is_made_not_at_the_first_policy_epoch(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match=r"order: expected one of \['descending'"):
        ImaginationConfig(order="desc")  # type: ignore[arg-type]
    bad = tiny_config(imagination=ImaginationConfig(num_envs=4, horizon=5, order=(5, 0, 1)))
    with pytest.raises(ValueError, match=r"imagination\.order .*unknown agent 5"):
        Trainer("toy", bad, seed=0, log_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written


# --------------------------------------------------------------------------- end to end
def test_toy_run_follows_algorithm_1_and_writes_metrics_and_checkpoint(tmp_path: Path) -> None:
    cfg = tiny_config()
    with Trainer("toy", cfg, seed=0, log_dir=tmp_path) as trainer:
        history = trainer.train(280)
        ckpt = trainer.save_checkpoint(tmp_path / "checkpoint.pt")
    assert [int(r["env_steps"]) for r in history] == [40 * k for k in range(1, 8)]
    # world-model training from the epoch where the buffer reaches 80 transitions (epoch 2)
    assert [int(r["wm_epochs"]) for r in history] == [0, 1, 2, 3, 4, 5, 6]
    assert "wm/dynamics/loss" not in history[0] and "wm/dynamics/loss" in history[1]
    # policy learning once more than 1 world-model epoch is done (epoch 3 on)
    assert [int(r["policy_epochs"]) for r in history] == [0, 0, 1, 2, 3, 4, 5]
    assert "policy/actor_loss" not in history[1] and "policy/actor_loss" in history[2]
    # evaluation when the env-step counter crosses a multiple of 80, and at the last epoch
    evaluated = [int(r["env_steps"]) for r in history if "eval/return_mean" in r]
    assert evaluated == [80, 160, 240, 280]
    assert all(r["eval/episodes"] == 2 and r["eval/length_mean"] == 30 for r in history
               if "eval/return_mean" in r)  # fmt: skip
    for key in ("wm/decoder/loss", "wm/dynamics/loss", "wm/reward/loss", "policy/critic_loss"):
        assert math.isfinite(history[-1][key]), key
    # imagined reward per step beside the real one, and the world-model diagnostics (exact
    # toy dynamics) at every evaluation once the world model trains
    assert math.isfinite(history[-1]["policy/imagined_reward_mean"])
    agents = ("agent_0", "agent_1", "agent_2")
    for row in history:
        has = [f"fidelity/ratio_{a}" in row for a in agents]
        assert all(has) == ("eval/return_mean" in row and row["wm_epochs"] > 0), row["epoch"]
        if all(has):
            assert all(math.isfinite(row[f"fidelity/ratio_{a}"]) for a in agents)
            assert all(-1 <= row[f"fidelity/cosine_{a}"] <= 1 for a in agents)
            assert math.isfinite(row["bias/reward_model_return"])
            gap = row["bias/imagined_return"] - row["bias/real_return"]
            assert math.isfinite(gap) and row["bias/gap"] == pytest.approx(gap)
    rows = read_csv(tmp_path / "metrics.csv")
    assert [r["env_steps"] for r in rows] == [str(40 * k) for k in range(1, 8)]
    assert rows[0]["wm/dynamics/loss"] == "" and float(rows[-1]["wm/dynamics/loss"]) > 0
    assert float(rows[-1]["eval/return_mean"]) == history[-1]["eval/return_mean"]
    assert ckpt.is_file()
    resumed = Trainer.resume(ckpt)
    try:
        assert (resumed.epoch, resumed.env_steps, len(resumed.buffer)) == (7, 280, 280)
        assert resumed.config == cfg
    finally:
        resumed.close()


def test_evaluating_sampled_actions_leaves_training_unchanged() -> None:
    """``eval_sampled_actions`` adds the sampled actor's return at each evaluation and changes
    nothing else: every other metric of every epoch is bit-identical to a run without it."""
    rows = {}
    for flag in (False, True):
        with Trainer("toy", tiny_config(eval_sampled_actions=flag), seed=1) as trainer:
            rows[flag] = [comparable(r) for r in trainer.train(200)]
            if flag:
                again = trainer.evaluate()  # same env steps: same seeds, same episodes
    keys = {"eval/sampled_return_mean", "eval/sampled_return_std"}
    evaluated = [r for r in rows[True] if "eval/return_mean" in r]
    assert len(evaluated) == 3 and all(keys <= r.keys() for r in evaluated)
    assert not any(keys & r.keys() for r in rows[False])
    assert [{k: v for k, v in r.items() if k not in keys} for r in rows[True]] == rows[False]
    last = evaluated[-1]
    assert again["eval/sampled_return_mean"] == last["eval/sampled_return_mean"]
    assert again["eval/return_mean"] == last["eval/return_mean"]
    # the samples are not the mean action: the toy's returns differ
    assert all(r["eval/sampled_return_mean"] != r["eval/return_mean"] for r in evaluated)
    assert all(math.isfinite(float(r["eval/sampled_return_std"])) for r in evaluated)
    with pytest.raises(ValueError, match="eval_sampled_actions: expected a bool"):
        tiny_config(eval_sampled_actions=1)


def test_resume_reproduces_the_next_epochs_exactly(tmp_path: Path) -> None:
    cfg = tiny_config()
    with Trainer("toy", cfg, seed=3, log_dir=tmp_path / "straight") as straight:
        for _ in range(6):
            straight.run_epoch()
    with Trainer("toy", cfg, seed=3, log_dir=tmp_path / "resumed") as first:
        for _ in range(4):  # a checkpoint every epoch: the buffer's block files grow incrementally
            first.run_epoch()
            path = first.save_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
        first.run_epoch()  # a row written after the checkpoint (a crash): dropped on resume
    with Trainer.resume(path, log_dir=tmp_path / "resumed") as second:
        for _ in range(2):
            second.run_epoch()
    for epoch in (4, 5):  # 0-based: the 5th and 6th epochs
        expected, got = comparable(straight.history[epoch]), comparable(second.history[epoch])
        assert any(k.startswith("wm/") for k in got) and any(k.startswith("policy/") for k in got)
        assert got == expected
    assert "eval/return_mean" in second.history[5]  # the evaluation is reproduced too
    # the CSV: the rows of the uninterrupted run, without the row written after the checkpoint
    a = read_csv(tmp_path / "straight" / "metrics.csv")
    b = read_csv(tmp_path / "resumed" / "metrics.csv")
    assert [comparable(r) for r in a] == [comparable(r) for r in b]  # type: ignore[arg-type]
    # the comparison can fail: disturbing one RNG after resuming changes the next epoch
    with Trainer.resume(path) as disturbed:
        torch.manual_seed(12345)
        row = disturbed.run_epoch()
    assert comparable(row) != comparable(straight.history[4])


def test_a_copied_checkpoint_reads_its_own_buffer_folder(tmp_path: Path) -> None:
    import shutil

    cfg = tiny_config()
    live = tmp_path / "checkpoint.pt"
    with Trainer("toy", cfg, seed=2) as trainer:
        for _ in range(3):
            trainer.run_epoch()
        trainer.save_checkpoint(live)
        shutil.copy(live, tmp_path / "best.pt")
        shutil.copytree(tmp_path / "checkpoint.pt.buffer", tmp_path / "best.pt.buffer")
        shutil.copy(live, tmp_path / "alone.pt")  # the file without its folder
        rows = trainer.buffer.state_dict()["data"]["reward"].clone()
        for _ in range(2):  # the live run goes on: its commits delete the old blocks
            trainer.run_epoch()
            trainer.save_checkpoint(live)
    with Trainer.resume(tmp_path / "best.pt") as best:
        assert torch.equal(best.buffer.state_dict()["data"]["reward"], rows)
    with pytest.raises(ValueError, match=r"alone\.pt\.buffer.*does not exist.*copy or move"):
        Trainer.resume(tmp_path / "alone.pt")


def test_collection_policy_actor_or_random_warm_up() -> None:
    stds = {}
    for policy in ("actor", "random"):
        with Trainer("toy", tiny_config(collect_policy=policy), seed=0) as trainer:
            trainer.run_epoch()
            stds[policy] = float(trainer.buffer.stream_data(0)["action"].std())
    # the initial actor: N(0, 0.37) around the middle of [-1, 1]; uniform: std 1/sqrt(3)
    assert stds["actor"] < 0.45 < 0.5 < stds["random"]


def test_corrupt_or_foreign_checkpoint_is_refused_and_left_alone(tmp_path: Path) -> None:
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a readable dimalib file"):
        Trainer.resume(bad)
    assert bad.read_bytes() == b"not a checkpoint at all"
    from dimalib.utils.io import atomic_save

    atomic_save({"x": 1}, tmp_path / "other.pt", kind="replay_buffer", version=1)
    with pytest.raises(ValueError, match="expected a dimalib 'dima_trainer_checkpoint' file"):
        Trainer.resume(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        Trainer.resume(tmp_path / "missing.pt")


def test_halfcheetah_tiny_run_completes(tmp_path: Path) -> None:
    pytest.importorskip("gymnasium_robotics")
    cfg = tiny_config(env_steps_per_epoch=100, num_envs=1, wm_warmup_transitions=100,
                      max_episode_steps=40, eval_every_env_steps=200)  # fmt: skip
    with Trainer("HalfCheetah-2x3", cfg, seed=0, log_dir=tmp_path) as trainer:
        history = trainer.train(300)
        assert trainer.spec.n_agents == 2 and trainer.spec.state_dim == 17
    assert [int(r["env_steps"]) for r in history] == [100, 200, 300]
    assert "policy/actor_loss" in history[-1]
    assert history[-1]["eval/length_mean"] == 40 and math.isfinite(history[-1]["eval/return_mean"])
    assert len(read_csv(tmp_path / "metrics.csv")) == 3


def test_metrics_logger_widens_the_header_and_restarts_from_history(tmp_path: Path) -> None:
    log = MetricsLogger(tmp_path, tensorboard=False)
    log.log({"epoch": 1, "env_steps": 10, "time/epoch_s": 0.5, "a": 1.0})
    log.log({"epoch": 2, "env_steps": 20, "time/epoch_s": 0.5, "a": 2.0, "b": float("nan")})
    rows = read_csv(tmp_path / "metrics.csv")
    assert list(rows[0]) == ["epoch", "env_steps", "a", "b", "time/epoch_s"]  # timings last
    assert rows[0]["b"] == "" and rows[1]["b"] == "nan" and rows[1]["a"] == "2.0"
    # a resumed run rewrites the file from its history (here: the first row only)
    again = MetricsLogger(tmp_path, tensorboard=False, history=[{"epoch": 1, "env_steps": 10}])
    again.log({"epoch": 2, "env_steps": 20, "c": 0.25})
    assert [(r["epoch"], r["c"]) for r in read_csv(tmp_path / "metrics.csv")] == [
        ("1", ""), ("2", "0.25"),
    ]  # fmt: skip


def test_metrics_logger_writes_tensorboard_scalars_against_env_steps(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="extra 'tensorboard' not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLogger(tmp_path)  # tensorboard=True by default
    log.log({"epoch": 1, "env_steps": 200, "eval/return_mean": -3.5})
    log.log({"epoch": 2, "env_steps": 400, "eval/return_mean": 7.25, "wm/loss": 0.5})
    log.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    events = acc.Scalars("eval/return_mean")
    assert [(e.step, e.value) for e in events] == [(200, -3.5), (400, 7.25)]
    assert [(e.step, e.value) for e in acc.Scalars("wm/loss")] == [(400, 0.5)]


# --------------------------------------------------------------------------- command line
def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DIMALIB_TEST_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--threads", "1"],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env, check=False,
    )  # fmt: skip


def test_cli_unknown_env_is_a_usage_error(tmp_path: Path) -> None:
    res = run_cli("--env", "HalfCheetah-9x9", "--out", str(tmp_path / "run"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "no partition '9x9' for HalfCheetah; expected one of ['2x3', '3x2', '6x1']" in res.stderr
    assert not (tmp_path / "run").exists()
    res = run_cli("--env", "halfcheetah-2x3", "--out", str(tmp_path / "run"))
    assert res.returncode == 2 and "(did you mean 'HalfCheetah-2x3'?)" in res.stderr
    assert "Ant-2x4" in res.stderr and not (tmp_path / "run").exists()


def _cli_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("dima_mappo_cli", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--total-env-steps", "0"], "--total-env-steps: expected a positive integer, received 0"),
        (["--total-env-steps", "-5"], "--total-env-steps: expected a positive integer"),
        (["--threads", "0"], "--threads: expected a positive integer, received 0"),
        (["--threads", "-1"], "--threads: expected a positive integer, received -1"),
        (["--checkpoint-every", "-1"], "--checkpoint-every: expected an integer >= 0"),
        (["--device", "gpu0"], "--device: expected a torch device such as 'cpu'"),
        (["--seed", "-1"], "--seed: expected a non-negative integer"),
        (["--resume", "no-such.pt"], "--resume: expected a checkpoint file"),
        (["--set", "imagination.order=desc"], "--set imagination.order=desc: order: expected one"),
        (
            ["--set", "imagination.order=(0, 1, 7)"],
            "imagination.order / world_model.dynamics.sampler: order: unknown agent 7",
        ),
    ],
)
def test_cli_bad_arguments_are_usage_errors_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    cli = _cli_module()
    out = tmp_path / "run"
    argv = ["--env", "toy", "--out", str(out), *args]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not out.exists()


def test_cli_unavailable_device_and_a_file_as_out_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _cli_module()
    if not torch.cuda.is_available():
        assert cli.main(["--env", "toy", "--device", "cuda", "--out", str(tmp_path / "r")]) == 2
        assert "sees no CUDA device" in capsys.readouterr().err
    else:
        assert cli.main(["--env", "toy", "--device", "cuda:99", "--out", str(tmp_path / "r")]) == 2
        assert "expected a CUDA index below" in capsys.readouterr().err
    file = tmp_path / "a-file"
    file.write_text("keep me")
    assert cli.main(["--env", "toy", "--out", str(file)]) == 2
    assert "--out: expected a folder" in capsys.readouterr().err
    assert file.read_text() == "keep me"
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(importlib.util.find_spec("isaacgym") is not None, reason="isaacgym present")
def test_cli_bidexhands_without_isaacgym_explains_and_fails(tmp_path: Path) -> None:
    res = run_cli("--env", "ShadowHandPen", "--out", str(tmp_path / "run"))
    assert res.returncode == 1
    assert "error:" in res.stderr and "isaacgym" in res.stderr and "Python 3.6-3.8" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "run").exists()


def test_cli_corrupt_checkpoint_fails_and_changes_nothing(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"\x00garbage" * 100)
    before = sorted(p.name for p in tmp_path.iterdir())
    res = run_cli("--resume", str(ckpt), "--total-env-steps", "400")
    assert res.returncode == 1
    assert "error:" in res.stderr and "not a readable dimalib file" in res.stderr
    assert "Traceback" not in res.stderr
    assert ckpt.read_bytes() == b"\x00garbage" * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no metrics.csv, no config.json


TINY_CLI = (
    "--set", "wm_warmup_transitions=200", "--set", "policy_warmup_wm_epochs=1",
    "--set", "wm_training.steps_per_epoch=2", "--set", "imagination.num_envs=16",
    "--set", "world_model.dynamics.channels=(16,16)", "--set", "world_model.reward.n_layer=1",
    "--set", "eval_every_env_steps=400", "--set", "max_episode_steps=50",
    "--no-tensorboard",
)  # fmt: skip


@pytest.mark.slow
def test_cli_ctrl_c_saves_a_checkpoint_then_resume_finishes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--env", "toy", "--total-env-steps", "100000",
         "--out", str(out), "--threads", "1", *TINY_CLI],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "metrics.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "finishing the current epoch" in err
    with Trainer.resume(out / "checkpoint.pt") as trainer:
        epochs = trainer.epoch
    assert epochs >= 1
    res = run_cli("--resume", str(out / "checkpoint.pt"), "--total-env-steps",
                  str(200 * (epochs + 1)))  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = read_csv(out / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 2))
    assert rows[-1]["eval/return_mean"] != ""


def test_cli_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    args = ("--env", "toy", "--total-env-steps", "1400", "--seed", "1", *TINY_CLI)
    straight = run_cli(*args, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args, "--out", str(out), "--threads", "1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill -9 somewhere after the fourth epoch
        if (out / "metrics.csv").exists() and len(read_csv(out / "metrics.csv")) >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with Trainer.resume(out / "checkpoint.pt") as trainer:
        lost = len(read_csv(out / "metrics.csv")) - trainer.epoch
    assert trainer.epoch >= 3 and lost <= 1  # a checkpoint every epoch: at most one epoch lost
    res = run_cli("--resume", str(out / "checkpoint.pt"), "--total-env-steps", "1400")
    assert res.returncode == 0, res.stderr
    a, b = read_csv(tmp_path / "straight" / "metrics.csv"), read_csv(out / "metrics.csv")
    assert [comparable(r) for r in a] == [comparable(r) for r in b]  # type: ignore[arg-type]


def test_cli_existing_run_folder_is_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("epoch\n1\n")
    res = run_cli("--env", "toy", "--out", str(out), "--total-env-steps", "200")
    assert res.returncode == 2 and "already holds a run" in res.stderr
    assert (out / "metrics.csv").read_text() == "epoch\n1\n"


def test_cli_tiny_toy_run_writes_metrics_config_and_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = run_cli("--env", "toy", "--total-env-steps", "400", "--out", str(out),
                  "--checkpoint-every", "1", "--reveal", "sequential", *TINY_CLI)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "env steps 400/400" in res.stderr  # the per-epoch progress line
    expected = ["checkpoint.pt", "checkpoint.pt.buffer", "config.json", "metrics.csv"]
    if importlib.util.find_spec("matplotlib") is not None:  # the learning curve (extra "plot")
        expected.insert(2, "learning_curve.png")
    written = {p.name for p in out.iterdir()} - {"tensorboard"}  # TensorBoard logs if installed
    assert sorted(written) == sorted(expected)
    rows = read_csv(out / "metrics.csv")
    assert [r["env_steps"] for r in rows] == ["200", "400"]
    assert rows[-1]["policy/actor_loss"] != "" and rows[-1]["eval/return_mean"] != ""
    with Trainer.resume(out / "checkpoint.pt") as trainer:
        assert trainer.env_steps == 400 and trainer.config.imagination.num_envs == 16
        # --reveal replaced the cpu preset's cumulative schedule
        assert trainer.world_model.dynamics.reveal == RevealSchedule("sequential")
    saved = (out / "config.json").read_text()
    assert '"kind": "sequential"' in saved
    # resuming a finished run with a target it already reached changes no file
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = run_cli("--resume", str(out / "checkpoint.pt"), "--total-env-steps", "400")
    assert again.returncode == 0, again.stderr
    assert "nothing to do: the checkpoint holds 400 env steps" in again.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_model_free_mappo_baseline_runs(tmp_path: Path) -> None:
    out = tmp_path / "mappo"
    res = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mappo.py"), "--env", "toy",
         "--total-env-steps", "400", "--num-envs", "2", "--rollout-steps", "100",
         "--eval-every", "400", "--eval-episodes", "2", "--max-episode-steps", "60",
         "--out", str(out), "--threads", "1"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = read_csv(out / "metrics.csv")
    assert [r["env_steps"] for r in rows] == ["200", "400"]
    assert float(rows[-1]["eval/length_mean"]) == 60 and rows[0]["eval/return_mean"] == ""
    assert (out / "mappo.pt").is_file()


def test_on_phase_reports_every_phase_of_an_epoch_in_order() -> None:
    seen: list[str] = []
    with Trainer("toy", tiny_config(), seed=0) as trainer:
        trainer.on_phase = seen.append
        for _ in range(3):  # epoch 3: world model, policy learning and an evaluation
            seen.clear()
            trainer.run_epoch(force_eval=True)
    n = trainer.config.policy_updates_per_epoch
    assert seen == [
        "collect", "world model: decoder", "world model: dynamics", "world model: reward",
        *(f"imagination {k}/{n}" for k in range(1, n + 1)), "evaluation",
    ]  # fmt: skip


@pytest.mark.parametrize("native", [False, True])
def test_bf16_autocast_warns_where_bfloat16_is_emulated(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """autocast_bf16 on a device without native bf16 products warns (measured 45x slower)."""
    seen: list[torch.device] = []

    def fake_native(device: torch.device) -> bool:
        seen.append(torch.device(device))
        return native

    monkeypatch.setattr(trainer_module, "native_bf16", fake_native)
    cfg = tiny_config()
    reward = dataclasses.replace(cfg.world_model.reward, autocast_bf16=True)
    cfg = cfg.replace(world_model=dataclasses.replace(cfg.world_model, reward=reward))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer("toy", cfg, seed=0).close()
    ours = [w for w in caught if "autocast_bf16" in str(w.message)]
    assert seen == [torch.device("cpu")]
    if native:
        assert not ours
    else:
        assert len(ours) == 1 and issubclass(ours[0].category, RuntimeWarning)
        assert "no native bfloat16" in str(ours[0].message)
