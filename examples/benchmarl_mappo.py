"""BenchMARL's MAPPO inside a dimalib world model: a custom BenchMARL task over imagined rollouts.

1. a world model and real start contexts: by default, random-action data from a real env
   (``--env toy``, the analytic ``CoupledPointMasses``, 3 agents) and a tiny ``DIMAWorldModel``
   trained on it for ``--wm-steps`` steps; or ``--world-model PATH``: a ``world_model.pt`` saved
   by ``examples/train_world_model.py`` (start contexts collected from ``--env``, which must be
   the env it was trained on) or a trainer checkpoint of ``dimalib train`` / ``Trainer`` (its own
   world model and replay buffer);
2. both are saved under ``--out`` and named in the config of a BenchMARL task,
   ``DimaTask.IMAGINATION``, whose env is ``TorchRLImaginationEnv``: ``--rollouts`` imagined
   rollouts of ``--horizon`` steps, restarted from fresh real contexts when the world model
   predicts a termination (``ImaginationConfig(autoreset=True)``);
3. BenchMARL runs MAPPO (an MLP actor per group, a centralised critic on the global state) for
   ``--iters`` iterations of ``rollouts × horizon`` imagined frames each, on the CPU, with no
   logger, evaluation, rendering or checkpoint; the mean imagined reward per step and the mean
   imagined episode return of every iteration are printed.

It shows the plumbing, not a result: no real-env evaluation (``examples/dima_mappo.py`` and
``dimalib train`` do that with dimalib's own MAPPO).

Install (the versions that work together; BenchMARL 1.5.2 needs ``torchrl<0.12``)::

    pip install torch==2.13.0 "dimalib[torchrl]" benchmarl==1.5.2  # torchrl 0.11.1, tensordict 0.11
    pip uninstall -y torchvision

Always pin torch in the same command as BenchMARL, or pip may replace it. BenchMARL requires
torchvision but never uses it here; PyPI's torchvision next to a CPU-only torch breaks the import
of TorchRL (``operator torchvision::nms does not exist``), hence the uninstall. To keep
torchvision instead, install the build of your torch from PyTorch's index, e.g.
``pip install torchvision==0.28.0 --index-url https://download.pytorch.org/whl/cpu``.

Run (``--help`` for the options; the defaults take about two minutes on one busy CPU core)::

    python examples/benchmarl_mappo.py
    python examples/train_world_model.py --env toy --env-steps 3000 --epochs 2
    python examples/benchmarl_mappo.py --world-model runs/world_model-toy-0/world_model.pt --env toy
    python examples/benchmarl_mappo.py --world-model runs/dima_mappo-HalfCheetah-2x3-0/checkpoint.pt

(MAMuJoCo envs and checkpoints also need ``pip install "dimalib[mamujoco]"``.)
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path
from typing import Any

import torch
from benchmarl.algorithms import MappoConfig
from benchmarl.environments.common import Task, TaskClass
from benchmarl.experiment import Experiment, ExperimentConfig
from benchmarl.experiment.callback import Callback
from benchmarl.models.mlp import MlpConfig
from tensordict import TensorDictBase
from torch import nn
from torchrl.data import Composite
from torchrl.envs import EnvBase

from dimalib.data.buffer import ReplayBuffer
from dimalib.envs import collect
from dimalib.imagination import ImaginationConfig, ImaginationEnv
from dimalib.imagination.torchrl_env import TorchRLImaginationEnv
from dimalib.training import Trainer, make_vector_env
from dimalib.world_model import (
    DIMAWorldModel,
    RewardTerminationConfig,
    StateDecoderConfig,
    WorldModelConfig,
)
from dimalib.world_model.dynamics import DenoiserConfig


# --------------------------------------------------------------------------- 1. world model
def collect_start_contexts(args: argparse.Namespace) -> ReplayBuffer:
    """Random-action transitions from ``--real-envs`` copies of the real env ``--env``."""
    venv = make_vector_env(
        args.env, args.real_envs, seed=args.seed, max_episode_steps=args.episode_steps
    )
    spec = venv.spec
    buffer = ReplayBuffer(
        spec, capacity=args.real_envs * args.collect_steps, num_streams=args.real_envs
    )
    low, high = spec.action_bounds()
    gen = torch.Generator().manual_seed(args.seed)

    def random_policy(obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return low + (high - low) * torch.rand(obs.shape[0], spec.joint_action_dim, generator=gen)

    collect(venv, random_policy, args.collect_steps, buffer, seed=args.seed)
    venv.close()
    print(f"[1] collected {len(buffer)} real transitions from {args.env} with random actions")
    return buffer


def train_tiny_world_model(buffer: ReplayBuffer, args: argparse.Namespace) -> DIMAWorldModel:
    """A tiny DIMA world model, briefly trained (dynamics, reward/termination, decoder)."""
    config = WorldModelConfig(
        dynamics=DenoiserConfig(channels=(32, 32), depths=(1, 1), cond_dim=64, action_token_dim=32),
        reward=RewardTerminationConfig(
            n_layer=2, n_head=2, n_embd=64, head_hidden=64, max_steps=max(args.horizon, 8)
        ),
        decoder=StateDecoderConfig(hidden_dim=64),
    )
    wm = DIMAWorldModel(buffer.spec, config)
    wm.update_normalizer(buffer.sample_state_obs(len(buffer))["state"])
    opt = torch.optim.Adam(wm.parameters(), lr=3e-3)
    wm.train()
    for step in range(1, args.wm_steps + 1):
        losses = [
            wm.dynamics_loss(buffer.sample_dynamics(128))[0],
            wm.reward_loss(buffer.sample_sequences(32, length=8))[0],
            wm.decoder_loss(buffer.sample_state_obs(128))[0],
        ]
        opt.zero_grad()
        torch.stack(losses).sum().backward()
        opt.step()
        if step % max(1, args.wm_steps // 2) == 0 or step == args.wm_steps:
            print(
                f"[1] world model step {step}: dynamics / reward / decoder loss "
                + " / ".join(f"{v.item():.3f}" for v in losses)
            )
    return wm.eval()


def load_world_model(args: argparse.Namespace) -> tuple[DIMAWorldModel, ReplayBuffer]:
    """``--world-model PATH``: a ``DIMAWorldModel.save`` file or a trainer checkpoint."""
    try:
        wm = DIMAWorldModel.load(args.world_model)
    except ValueError as not_a_world_model:
        try:  # a trainer checkpoint: its world model and its replay buffer of real data
            trainer = Trainer.resume(args.world_model, device="cpu", tensorboard=False)
        except ValueError as err:
            raise SystemExit(
                f"--world-model: {args.world_model} is neither a world model file "
                f"({not_a_world_model}) nor a trainer checkpoint ({err})"
            ) from err
        wm, buffer = trainer.world_model, trainer.buffer
        trainer.close()
        print(f"[1] loaded the world model and {len(buffer)} real transitions of a checkpoint")
        return wm.eval(), buffer
    buffer = collect_start_contexts(args)
    if buffer.spec != wm.spec:
        raise SystemExit(
            f"--env {args.env} has the spec {buffer.spec}, the world model {wm.spec}: pass the "
            "env the world model was trained on"
        )
    print(f"[1] loaded the world model {args.world_model}")
    return wm.eval(), buffer


# --------------------------------------------------------------------------- 2. BenchMARL task
def _unwrap(env: EnvBase) -> TorchRLImaginationEnv:
    """BenchMARL hands the task its env inside a ``TransformedEnv``."""
    while not isinstance(env, TorchRLImaginationEnv):
        env = env.base_env
    return env


class ImaginationTaskClass(TaskClass):
    """A BenchMARL task whose env is imagined by a saved dimalib world model.

    ``config``: ``world_model`` (a ``DIMAWorldModel.save`` file), ``start_contexts`` (a
    ``ReplayBuffer.save`` file of real transitions), ``horizon``, ``group_map`` (the
    ``TorchRLImaginationEnv`` argument). Plain values only, so BenchMARL can log and pickle it.
    """

    def get_env_fun(
        self, num_envs: int, continuous_actions: bool, seed: int | None, device: Any
    ) -> Any:
        config = dict(self.config)

        def make_env() -> TorchRLImaginationEnv:
            wm = DIMAWorldModel.load(config["world_model"], map_location=device)
            buffer = ReplayBuffer.load(config["start_contexts"], device=device, spec=wm.spec)
            imagination = ImaginationConfig(
                num_envs=num_envs, horizon=config["horizon"], autoreset=True
            )
            env = ImaginationEnv(wm, buffer, imagination, seed=seed)
            return TorchRLImaginationEnv(env, group_map=config["group_map"])

        return make_env

    def supports_continuous_actions(self) -> bool:
        return True

    def supports_discrete_actions(self) -> bool:
        return False

    def has_render(self, env: EnvBase) -> bool:
        return False

    def max_steps(self, env: EnvBase) -> int:
        return int(self.config["horizon"])

    def group_map(self, env: EnvBase) -> dict[str, list[str]]:
        base = _unwrap(env)
        names = list(base.multi_agent_spec.agent_names)
        if base.group_map == "all_in_one":
            return {"agents": names}
        return {name: [name] for name in names}

    def observation_spec(self, env: EnvBase) -> Composite:
        spec = env.full_observation_spec_unbatched.clone()
        del spec["state"], spec["termination_prob"]  # the state goes to the critic, below
        return spec

    def state_spec(self, env: EnvBase) -> Composite | None:
        return Composite({"state": env.full_observation_spec_unbatched["state"].clone()})

    def action_spec(self, env: EnvBase) -> Composite:
        return env.full_action_spec_unbatched

    def info_spec(self, env: EnvBase) -> Composite | None:
        return None

    def action_mask_spec(self, env: EnvBase) -> Composite | None:
        return None

    @staticmethod
    def env_name() -> str:
        return "dimalib"

    @staticmethod
    def log_info(batch: TensorDictBase) -> dict[str, float]:
        return {"collection/termination_prob": batch["next", "termination_prob"].mean().item()}


class DimaTask(Task):
    """BenchMARL's enum of dimalib tasks (pass the config to ``get_task``)."""

    IMAGINATION = None

    @staticmethod
    def associated_class() -> type[TaskClass]:
        return ImaginationTaskClass


# --------------------------------------------------------------------------- 3. MAPPO
class ImaginedRewards(Callback):
    """Records every collected batch's size, mean reward per step and episode return, and how
    far training moved the policy's parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[int] = []
        self.reward_per_step: list[float] = []
        self.episode_return: list[float] = []
        self.terminations: list[int] = []
        self.initial_policy: list[torch.Tensor] = []

    def on_setup(self) -> None:
        self.initial_policy = [p.detach().clone() for p in self.experiment.policy.parameters()]

    def policy_change(self) -> float:
        """L2 distance of the policy's parameters now from before training."""
        squared = 0.0
        for p, p0 in zip(self.experiment.policy.parameters(), self.initial_policy, strict=True):
            squared += float((p.detach() - p0).square().sum())
        return squared**0.5

    def on_batch_collected(self, batch: TensorDictBase) -> None:
        groups = self.experiment.group_map
        rewards = torch.stack([batch["next", g, "reward"].mean() for g in groups])
        self.frames.append(batch.numel())
        self.reward_per_step.append(rewards.mean().item())
        self.episode_return.append(float(self.experiment.mean_return))  # BenchMARL's, this batch
        self.terminations.append(int(batch["next", "terminated"].sum()))


def run_mappo(task: TaskClass, args: argparse.Namespace) -> tuple[Experiment, ImaginedRewards]:
    """BenchMARL's MAPPO on ``task``: ``--iters`` iterations of ``rollouts × horizon`` frames."""
    frames = args.rollouts * args.horizon
    config = ExperimentConfig.get_from_yaml()
    config.sampling_device = config.train_device = config.buffer_device = "cpu"
    config.max_n_iters, config.max_n_frames = args.iters, None
    config.on_policy_n_envs_per_worker = args.rollouts  # the imagined batch
    config.on_policy_collected_frames_per_batch = frames  # one imagined episode per rollout
    config.on_policy_minibatch_size = max(1, frames // args.minibatches)
    config.on_policy_n_minibatch_iters = args.epochs
    config.lr = args.lr
    config.evaluation, config.render, config.evaluation_episodes = False, False, 2
    config.loggers, config.create_json = [], False
    config.checkpoint_interval, config.checkpoint_at_end = 0, False
    config.save_folder = str(args.out)

    algorithm = MappoConfig.get_from_yaml()
    model = MlpConfig(num_cells=[args.hidden, args.hidden], activation_class=nn.Tanh,
                      layer_class=nn.Linear)  # fmt: skip
    rewards = ImaginedRewards()
    experiment = Experiment(
        task=task,
        algorithm_config=algorithm,
        model_config=model,
        critic_model_config=model,
        seed=args.seed,
        config=config,
        callbacks=[rewards],
    )
    experiment.run()
    return experiment, rewards


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--env", default="toy", help="real env of the start contexts")
    p.add_argument("--world-model", default=None, help="world_model.pt or a trainer checkpoint")
    p.add_argument("--real-envs", type=int, default=8, help="real env copies for collection")
    p.add_argument("--collect-steps", type=int, default=250, help="batched collection steps")
    p.add_argument("--episode-steps", type=int, default=50, help="real episode length")
    p.add_argument("--wm-steps", type=int, default=300, help="world-model gradient steps")
    p.add_argument("--rollouts", type=int, default=64, help="imagined rollouts (env batch)")
    p.add_argument("--horizon", type=int, default=10, help="imagination horizon")
    p.add_argument(
        "--group-map",
        choices=["auto", "all_in_one", "one_per_agent"],
        default="auto",
        help="BenchMARL groups: one per agent, or one padded 'agents' group",
    )
    p.add_argument("--iters", type=int, default=10, help="BenchMARL iterations")
    p.add_argument("--epochs", type=int, default=4, help="PPO epochs per iteration")
    p.add_argument("--minibatches", type=int, default=4, help="PPO minibatches per epoch")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--hidden", type=int, default=64, help="MLP width (actor and critic)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny models: 1)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: a temp dir)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; returns what it printed (and the task and experiment) as a dict."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="dimalib-benchmarl-"))
    args.out.mkdir(parents=True, exist_ok=True)

    if args.world_model is None:
        buffer = collect_start_contexts(args)
        wm = train_tiny_world_model(buffer, args)
    else:
        wm, buffer = load_world_model(args)
    wm_path = wm.save(args.out / "world_model.pt")
    contexts_path = buffer.save(args.out / "start_contexts.pt")

    task = DimaTask.IMAGINATION.get_task(
        config={
            "world_model": str(wm_path),
            "start_contexts": str(contexts_path),
            "horizon": args.horizon,
            "group_map": args.group_map,
        }
    )
    print(f"[2] BenchMARL task {task.env_name()}/{task.name.lower()}: {args.rollouts} imagined "
          f"rollouts x {args.horizon} steps (files in {args.out})")  # fmt: skip
    experiment, rewards = run_mappo(task, args)
    print(f"[3] BenchMARL MAPPO, groups {experiment.group_map}")
    for i, (r, ret) in enumerate(zip(rewards.reward_per_step, rewards.episode_return, strict=True)):
        print(f"[3] iter {i + 1}: {rewards.frames[i]} imagined frames | mean imagined reward "
              f"{r:.4f} per step | mean imagined episode return {ret:.3f}")  # fmt: skip
    final = rewards.reward_per_step[-1]
    if not math.isfinite(final):
        raise SystemExit(f"the imagined rewards are not finite: {final}")
    print(f"[3] MAPPO moved the policy's parameters by {rewards.policy_change():.3f} (L2)")
    print(f"final mean imagined reward: {final:.4f} per step "
          f"({experiment.total_frames} frames in {experiment.n_iters_performed} iterations)")  # fmt: skip
    return {
        "task": task,
        "experiment": experiment,
        "rewards": rewards,
        "spec": wm.spec,
        "out": args.out,
        "final_reward": final,
    }


if __name__ == "__main__":
    main()
