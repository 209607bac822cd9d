"""examples/benchmarl_mappo.py: BenchMARL's MAPPO on a custom task over TorchRLImaginationEnv.

Needs BenchMARL (``nox -s benchmarl`` installs it: torch 2.13.0, torchrl 0.11.1, benchmarl 1.5.2,
no torchvision); skipped without it.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

pytest.importorskip("benchmarl")
pytest.importorskip("torchrl")

from torchrl.envs.utils import check_env_specs

from dimalib.data.buffer import ReplayBuffer
from dimalib.imagination import ImaginationConfig, ImaginationEnv
from dimalib.world_model import DIMAWorldModel

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "benchmarl_mappo.py"
ROLLOUTS, HORIZON, ITERS = 4, 3, 2
TINY = ["--real-envs", "2", "--collect-steps", "20", "--episode-steps", "10", "--wm-steps", "2",
        "--rollouts", str(ROLLOUTS), "--horizon", str(HORIZON), "--iters", str(ITERS),
        "--epochs", "2", "--minibatches", "2", "--hidden", "16"]  # fmt: skip


def _example() -> ModuleType:
    """The example as a module (registered, so BenchMARL can pickle its task class)."""
    name = "benchmarl_mappo_example"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module", params=["one_per_agent", "all_in_one"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp(f"benchmarl-{request.param}")
    return _example().main([*TINY, "--group-map", request.param, "--out", str(out)])


def test_mappo_collects_the_configured_frames_of_finite_imagined_rewards(run: Any) -> None:
    experiment, rewards = run["experiment"], run["rewards"]
    frames = ROLLOUTS * HORIZON  # one imagined episode per rollout per iteration
    assert experiment.n_iters_performed == ITERS
    assert rewards.frames == [frames] * ITERS
    assert experiment.total_frames == ITERS * frames
    assert all(math.isfinite(r) for r in rewards.reward_per_step)
    assert run["final_reward"] == rewards.reward_per_step[-1]
    assert rewards.policy_change() > 0  # MAPPO's updates reached the collection policy
    checked = 0
    for r, ret, ended in zip(
        rewards.reward_per_step, rewards.episode_return, rewards.terminations, strict=True
    ):
        if ended == 0:  # every episode of the batch lasted the horizon: return = H × mean reward
            assert ret == pytest.approx(HORIZON * r, rel=1e-5, abs=1e-6)
            checked += 1
    assert checked > 0


def test_groups_and_specs_follow_the_dimalib_spec(run: Any) -> None:
    experiment, spec = run["experiment"], run["spec"]
    names = list(spec.agent_names)
    low, high = spec.action_bounds()
    if run["task"].config["group_map"] == "all_in_one":
        assert experiment.group_map == {"agents": names}
        assert experiment.observation_spec["agents", "observation"].shape == (
            spec.n_agents,
            spec.max_obs_dim,
        )
        action = experiment.action_spec["agents", "action"]
        assert action.shape == (spec.n_agents, spec.max_action_dim)
        mask = spec.action_mask()
        assert torch.equal(action.space.low[mask], low)
        assert torch.equal(action.space.high[mask], high)
    else:
        assert experiment.group_map == {name: [name] for name in names}
        for i, name in enumerate(names):
            assert experiment.observation_spec[name, "observation"].shape == (1, spec.obs_dims[i])
            action = experiment.action_spec[name, "action"]
            assert action.shape == (1, spec.action_dims[i])
            assert torch.equal(action.space.low[0], low[spec.action_slices[i]])
            assert torch.equal(action.space.high[0], high[spec.action_slices[i]])
    assert set(experiment.observation_spec.keys()) == set(experiment.group_map)  # no root keys
    assert experiment.state_spec["state"].shape == (spec.state_dim,)
    assert experiment.max_steps == HORIZON
    assert experiment.task.env_name() == "dimalib"


def test_task_env_imagines_what_the_imagination_env_does(run: Any) -> None:
    """The task's env, stepped with given actions, equals dimalib's ImaginationEnv."""
    task, spec = run["task"], run["spec"]
    env = task.get_env_fun(num_envs=3, continuous_actions=True, seed=5, device="cpu")()
    check_env_specs(env)
    wm = DIMAWorldModel.load(task.config["world_model"])
    contexts = ReplayBuffer.load(task.config["start_contexts"], spec=spec)
    ref = ImaginationEnv(
        wm, contexts, ImaginationConfig(num_envs=3, horizon=HORIZON, autoreset=True), seed=5
    )
    env = task.get_env_fun(num_envs=3, continuous_actions=True, seed=5, device="cpu")()
    td = env.reset()
    obs, state = ref.reset()
    groups = task.group_map(env)

    def same_obs(td: Any, obs: torch.Tensor) -> None:
        if list(groups) == ["agents"]:
            torch.testing.assert_close(td["agents", "observation"], spec.pad_obs(obs))
        else:
            for name, part in zip(groups, spec.split_obs(obs), strict=True):
                torch.testing.assert_close(td[name, "observation"][:, 0], part)

    assert torch.equal(td["state"], state)
    same_obs(td, obs)
    g = torch.Generator().manual_seed(0)
    for _ in range(HORIZON):
        joint = torch.rand(3, spec.joint_action_dim, generator=g) * 2 - 1
        if list(groups) == ["agents"]:
            td["agents", "action"] = spec.pad_actions(joint)
        else:
            for i, name in enumerate(groups):
                td[name, "action"] = joint[:, None, spec.action_slices[i]]
        td = env.step(td)
        step = ref.step(joint)
        for name in groups:
            torch.testing.assert_close(td["next", name, "reward"][:, 0, 0], step.reward)
        torch.testing.assert_close(td["next", "state"], step.state)
        same_obs(td["next"], step.obs)
        assert torch.equal(td["next", "truncated"][:, 0], step.truncated)
        td = td["next"]


def test_runs_from_a_trainer_checkpoint_or_a_world_model_file(tmp_path: Path) -> None:
    """``--world-model CHECKPOINT``: the run's own world model and replay buffer;
    ``--world-model world_model.pt``: that model, start contexts collected from ``--env``."""
    from dimalib.algorithms import MAPPOConfig
    from dimalib.training import Trainer, TrainerConfig, WorldModelTrainingConfig
    from dimalib.world_model import RewardTerminationConfig, StateDecoderConfig, WorldModelConfig
    from dimalib.world_model.dynamics import DenoiserConfig

    config = TrainerConfig(
        env_steps_per_epoch=40,
        num_envs=2,
        wm_warmup_transitions=40,
        policy_warmup_wm_epochs=1,
        buffer_capacity=200,
        world_model=WorldModelConfig(
            dynamics=DenoiserConfig(channels=(16, 16), depths=(1, 1), cond_dim=32),
            reward=RewardTerminationConfig(n_layer=1, n_head=2, n_embd=32, max_steps=5),
            decoder=StateDecoderConfig(hidden_dim=32),
        ),
        wm_training=WorldModelTrainingConfig(
            steps_per_epoch=2, decoder_batch=8, dynamics_batch=8, reward_batch=8
        ),
        imagination=ImaginationConfig(num_envs=4, horizon=HORIZON),
        mappo=MAPPOConfig(hidden_dim=16, ppo_epochs=1),
        eval_every_env_steps=10_000,
        max_episode_steps=30,
    )
    with Trainer("toy", config, seed=0, tensorboard=False) as trainer:
        trainer.train(40)
        checkpoint = trainer.save_checkpoint(tmp_path / "checkpoint.pt")
        model_file = trainer.world_model.save(tmp_path / "world_model.pt", env="toy")
        saved = {k: v.clone() for k, v in trainer.world_model.state_dict().items()}
        n_real = len(trainer.buffer)
    for path, n_contexts in ((checkpoint, n_real), (model_file, 2 * 20)):
        out = tmp_path / f"out-{path.stem}"
        result = _example().main([*TINY, "--iters", "1", "--world-model", str(path),
                                  "--out", str(out)])  # fmt: skip
        assert result["experiment"].total_frames == ROLLOUTS * HORIZON
        loaded = DIMAWorldModel.load(result["task"].config["world_model"]).state_dict()
        assert loaded.keys() == saved.keys()
        assert all(torch.equal(loaded[k], saved[k]) for k in saved)
        contexts = ReplayBuffer.load(result["task"].config["start_contexts"])
        assert len(contexts) == n_contexts
    assert n_real == 40
