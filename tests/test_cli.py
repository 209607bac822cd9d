"""The ``dimalib`` command (``dimalib.cli``): tyro flags for every TrainerConfig field, presets as
their defaults, the ``--set`` alias, usage errors before anything is written, a tiny run."""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from dimalib import RevealSchedule
from dimalib.cli import main, train_main
from dimalib.cli.args import parse_args
from dimalib.cli.train import build_trainer
from dimalib.training.config import trainer_config
from dimalib.training.trainer import Trainer

TINY = (
    "--wm-warmup-transitions", "200", "--policy-warmup-wm-epochs", "1",
    "--wm-training.steps-per-epoch", "2", "--imagination.num-envs", "16",
    "--world-model.dynamics.channels", "16", "16", "--world-model.reward.n-layer", "1",
    "--eval-every-env-steps", "400", "--max-episode-steps", "50",
    "--no-tensorboard", "--threads", "1",
)  # fmt: skip


def test_top_level_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "train" in capsys.readouterr().out
    assert main([]) == 2
    assert main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


def test_help_lists_nested_fields_with_their_docstrings_and_the_presets_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dimalib train")
    for flag in ("--env ENV", "--preset", "--set FIELD=VALUE", "--resume PATH", "-v, --verbose",
                 "--mappo.actor-lr FLOAT", "--imagination.horizon INT",
                 "--world-model.dynamics.sampler.reveal.kind", "--wm-training.dynamics-lr"):  # fmt: skip
        assert flag in out, flag
    assert "imagination horizon H" in out  # ImaginationConfig.horizon's comment
    cpu = out
    assert train_main(["--preset", "paper", "--help"], prog="dimalib train") == 0
    paper = capsys.readouterr().out
    # the defaults shown are the preset's: the cpu preset's 200 imagined rollouts, the paper's 600
    assert "(default: 200)" in cpu.split("--imagination.num-envs")[1].split("--")[0]
    assert "(default: 600)" in paper.split("--imagination.num-envs")[1].split("--")[0]


def test_flags_start_from_the_preset_and_reach_the_trainer(tmp_path: Path) -> None:
    args, changed = parse_args(["--env", "toy", "--preset", "paper"], "t")
    assert args.config == trainer_config("paper", "toy") and not changed
    args, _ = parse_args(["--env", "toy"], "t")  # a CPU device: the cpu preset
    assert args.config == trainer_config("cpu", "toy")
    argv = ["--env", "toy", "--out", str(tmp_path / "run"), "--mappo.actor-lr", "1e-3",
            "--imagination.horizon", "7", "--imagination.order", "2", "0", "1",
            "--world-model.dynamics.channels", "16", "16", "--reveal", "sequential"]  # fmt: skip
    args, changed = parse_args(argv, "t")
    assert changed
    trainer, out = build_trainer(args, changed)
    with trainer:
        cfg = trainer.config
        assert cfg.mappo.actor_lr == 1e-3 and cfg.imagination.horizon == 7
        assert cfg.imagination.order == (2, 0, 1)  # a tuple, as the presets and --set write it
        assert cfg.world_model.dynamics.channels == (16, 16)
        assert cfg.world_model.dynamics.sampler.reveal == RevealSchedule("sequential")
        assert cfg.wm_training == trainer_config("cpu", "toy").wm_training  # the rest: the preset
    assert out == tmp_path / "run" and not out.exists()  # building writes nothing


def test_set_alias_and_explicit_reveal_sets(tmp_path: Path) -> None:
    argv = ["--env", "toy", "--imagination.horizon", "5", "--set", "imagination.horizon=9",
            "--set", "mappo.actor_lr=2e-4",
            "--world-model.dynamics.sampler.reveal.kind", "explicit",
            "--world-model.dynamics.sampler.reveal.sets", "((0,), (0, 1), (0, 1, 2))"]  # fmt: skip
    args, _ = parse_args(argv, "t")
    assert args.set == ["imagination.horizon=9", "mappo.actor_lr=2e-4"]
    reveal = args.config.world_model.dynamics.sampler.reveal
    assert reveal.kind == "explicit" and reveal.sets == ((0,), (0, 1), (0, 1, 2))
    trainer, _ = build_trainer(args)
    with trainer:  # --set is applied after the flags
        assert trainer.config.imagination.horizon == 9 and trainer.config.mappo.actor_lr == 2e-4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--imagination.horizon", "-1"], "horizon: expected >= 1"),
        (["--imagination.horizon", "99"], "imagination.horizon: expected at most"),
        (["--mappo.actor-lr", "fast"], "--mappo.actor-lr"),
        (["--mappo.policy", "cauchy"], "--mappo.policy"),
        (["--mappo.no-such-field", "1"], "--mappo.no-such-field"),
        (["--world-model.dynamics.sampler.reveal.sets", "((0,"], "reveal.sets"),
        (["--set", "mappo.actor_lr=-1"], "--set mappo.actor_lr=-1: actor_lr: expected a positive"),
        (["--set", "mappo.nope=1"], "unknown field 'nope'"),
    ],
)
def test_bad_values_exit_2_naming_the_field_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--env", "toy", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.replace("│", " ").split()), err  # tyro boxes its messages
    assert "Traceback" not in err and not out.exists()


def test_tiny_toy_run_through_the_entry_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--env", "toy", "--total-env-steps", "400", "--out", str(out), *TINY,
            "--mappo.actor-lr", "3e-4", "--set", "imagination.horizon=10"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "env steps 400/400" in captured.err and "done: 400 env steps" in captured.out
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["env_steps"] for r in rows] == ["200", "400"]
    assert rows[-1]["policy/actor_loss"] != "" and rows[-1]["eval/return_mean"] != ""
    with Trainer.resume(out / "checkpoint.pt") as trainer:
        cfg = trainer.config
        assert cfg.mappo.actor_lr == 3e-4 and cfg.imagination.horizon == 10
        assert cfg.imagination.num_envs == 16 and cfg.world_model.dynamics.channels == (16, 16)
    assert '"actor_lr": 0.0003' in (out / "config.json").read_text()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with caplog.at_level(logging.WARNING, logger="dimalib.cli"):  # config flags: the checkpoint's
        again = ["train", "--resume", str(out / "checkpoint.pt"), "--total-env-steps", "400",
                 "--mappo.actor-lr", "1e-2"]  # fmt: skip
        assert main(again) == 0
    assert "config flags are ignored with --resume" in caplog.text
    assert "nothing to do" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.skipif(
    shutil.which("dimalib") is None, reason="package not installed (pip install -e .)"
)
def test_console_script_is_installed() -> None:
    res = subprocess.run(["dimalib", "train", "--help"], capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    assert res.returncode == 0 and "--imagination.horizon" in res.stdout
