"""The learner seam: the `Learner` protocol, and a learner other than MAPPO trained by `Trainer`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from dimalib.algorithms import MAPPO, Learner, MAPPOConfig
from dimalib.algorithms.protocols import ImaginationEnvLike
from dimalib.spec import MultiAgentSpec
from dimalib.training import MetricsLogger as PackageMetricsLogger
from dimalib.training.checkpoint import CHECKPOINT_KIND, LEARNER_KEY, READABLE_VERSIONS
from dimalib.training.metrics import MetricsLogger
from dimalib.training.trainer import MetricsLogger as TrainerMetricsLogger
from dimalib.training.trainer import Trainer
from dimalib.utils.io import load_versioned
from tests.test_trainer import comparable, tiny_config


class GaussianLearner:
    """A linear-Gaussian policy ``a = tanh(W o + b + σ ε)`` scaled to the bounds, whose "update"
    moves ``b`` a little towards the imagined actions of the better half of the rollouts. It keeps
    a log of every protocol call the trainer makes (``calls``)."""

    def __init__(self, spec: MultiAgentSpec, device: torch.device, std: float = 0.3) -> None:
        self.spec, self.device, self.std = spec, device, std
        gen = torch.Generator().manual_seed(0)
        obs_dim, act_dim = spec.joint_obs_dim, spec.joint_action_dim
        self.weight = (0.01 * torch.randn(obs_dim, act_dim, generator=gen)).to(device)  # (O, A)
        self.bias = torch.zeros(act_dim, device=device)  # (A,)
        self.low, self.high = spec.action_bounds(device=device)  # (A,) each
        self.num_updates = 0
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _sample(self, obs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        noise = torch.randn(
            obs.shape[0], self.bias.shape[0], generator=generator, device=obs.device
        )
        u = obs @ self.weight + self.bias + self.std * noise  # (N, A)
        return self.low + (torch.tanh(u) + 1.0) * 0.5 * (self.high - self.low)  # (N, A)

    # ------------------------------------------------------------------ the protocol
    def act(
        self,
        joint_obs: torch.Tensor,
        *,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        self.calls.append(
            ("act", {"shape": tuple(joint_obs.shape), "deterministic": deterministic,
                     "generator": generator})
        )  # fmt: skip
        obs = joint_obs.to(self.device, torch.float32)
        if deterministic:
            u = obs @ self.weight + self.bias
            return self.low + (torch.tanh(u) + 1.0) * 0.5 * (self.high - self.low)
        return self._sample(obs, generator)

    def eval(self) -> GaussianLearner:
        self.calls.append(("eval", {}))
        return self

    def collect_imagined_rollout(
        self,
        imagination_env: ImaginationEnvLike,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> dict[str, torch.Tensor]:
        self.calls.append(
            ("collect_imagined_rollout", {"env": imagination_env, "generator": generator,
                                          "seed": seed})
        )  # fmt: skip
        obs, _ = imagination_env.reset(seed=seed)  # (B, O), (B, S)
        steps: dict[str, list[torch.Tensor]] = {"actions": [], "rewards": [], "terminated": []}
        for _ in range(imagination_env.horizon):
            action = self._sample(obs.to(self.device), generator)  # (B, A)
            step = imagination_env.step(action)
            steps["actions"].append(action)
            steps["rewards"].append(step.reward.float())  # (B,)
            steps["terminated"].append(step.terminated)  # (B,)
            obs = step.obs
        return {k: torch.stack(v) for k, v in steps.items()}  # (H, B, ...)

    def update(
        self, rollout: Mapping[str, torch.Tensor], *, generator: torch.Generator | None = None
    ) -> dict[str, float]:
        self.calls.append(("update", {"rollout": rollout, "generator": generator}))
        returns = rollout["rewards"].sum(0)  # (B,)
        better = returns >= returns.median()  # (B,)
        target = rollout["actions"][:, better].mean((0, 1))  # (A,)
        self.bias = self.bias + 0.1 * (target - self.bias)
        self.num_updates += 1
        return {"return_mean": float(returns.mean()), "num_updates": float(self.num_updates)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight.cpu().clone(),
            "bias": self.bias.cpu().clone(),
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.weight = state["weight"].to(self.device).clone()
        self.bias = state["bias"].to(self.device).clone()
        self.num_updates = int(state["num_updates"])


def calls_of(learner: GaussianLearner, name: str) -> list[dict[str, Any]]:
    return [info for method, info in learner.calls if method == name]


# --------------------------------------------------------------------------- the protocol
def test_mappo_and_the_test_learner_are_learners() -> None:
    spec = MultiAgentSpec(("left", "right"), (3, 4), (1, 2), state_dim=5)
    assert isinstance(MAPPO(spec, MAPPOConfig(hidden_dim=8)), Learner)
    assert isinstance(GaussianLearner(spec, torch.device("cpu")), Learner)
    assert not isinstance(object(), Learner)
    assert not isinstance(lambda spec, device: None, Learner)  # a factory is not a learner


def test_mappo_act_keeps_its_positional_signature_and_eval_returns_itself() -> None:
    spec = MultiAgentSpec(("left", "right"), (3, 4), (1, 2), state_dim=5)
    mappo = MAPPO(spec, MAPPOConfig(hidden_dim=8))
    obs = torch.randn(6, spec.joint_obs_dim)
    assert mappo.eval() is mappo and not mappo.actor.training and not mappo.critic.training
    a = mappo.act(obs, True)  # positional `deterministic`, as before the protocol
    b = mappo.act(obs, deterministic=True, generator=torch.Generator().manual_seed(1))
    assert a.shape == (6, spec.joint_action_dim) and torch.equal(a, b)


def test_metrics_logger_moved_and_stays_importable_from_the_trainer() -> None:
    assert TrainerMetricsLogger is MetricsLogger is PackageMetricsLogger


# --------------------------------------------------------------------------- through Trainer
def test_another_learner_trains_through_the_trainer_and_resumes(tmp_path: Path) -> None:
    cfg = tiny_config()
    built: list[GaussianLearner] = []

    def factory(spec: MultiAgentSpec, device: torch.device) -> GaussianLearner:
        built.append(GaussianLearner(spec, device))
        return built[-1]

    with Trainer("toy", cfg, seed=1, learner=factory) as trainer:
        (learner,) = built
        assert trainer.learner is learner and trainer.mappo is learner
        rows = [trainer.run_epoch() for _ in range(4)]  # world model from 2, policy from 3
        spec = trainer.spec
        obs_dim, act_dim = spec.joint_obs_dim, spec.joint_action_dim

        # collection: stochastic actions from the collect generator, one call per batched step
        collect = [c for c in calls_of(learner, "act") if not c["deterministic"]]
        assert len(collect) == 4 * cfg.env_steps_per_epoch // cfg.num_envs
        assert {c["shape"] for c in collect} == {(cfg.num_envs, obs_dim)}
        assert all(c["generator"] is trainer.collect_generator for c in collect)
        # evaluation (and the fidelity diagnostics): deterministic, after eval()
        evaluation = [c for c in calls_of(learner, "act") if c["deterministic"]]
        assert evaluation and all(
            len(c["shape"]) == 2 and c["shape"][1] == obs_dim for c in evaluation
        )
        assert (cfg.eval_episodes, obs_dim) in {c["shape"] for c in evaluation}
        first_act = next(i for i, (m, _) in enumerate(learner.calls) if m == "act")
        assert any(m == "eval" for m, _ in learner.calls[:first_act])

        # learning in imagination: rollouts of the trainer's imagination env, then one update each
        rollouts = calls_of(learner, "collect_imagined_rollout")
        updates = calls_of(learner, "update")
        assert trainer.policy_epochs == 2
        assert len(rollouts) == len(updates) == 2 * cfg.policy_updates_per_epoch
        H, B = cfg.imagination.horizon, cfg.imagination.num_envs
        for r, u in zip(rollouts, updates, strict=True):
            assert r["env"] is trainer.imagination and isinstance(r["seed"], int)
            assert r["generator"] is u["generator"] is trainer.policy_generator
            rollout = u["rollout"]
            assert rollout["rewards"].shape == rollout["terminated"].shape == (H, B)
            assert rollout["actions"].shape == (H, B, act_dim)
        # its update stats reach the metrics, averaged over the epoch's updates
        last = rows[-1]
        assert last["policy/num_updates"] == pytest.approx(3.5)  # mean of its updates 3 and 4
        assert math.isfinite(last["policy/return_mean"])
        assert "policy/imagined_return" in last and "policy/imagined_terminated" in last
        assert "eval/return_mean" in last

        # the checkpoint holds its state under the learner key; resume restores it exactly
        path = trainer.save_checkpoint(tmp_path / "checkpoint.pt")
        saved = learner.state_dict()
        blob = load_versioned(path, kind=CHECKPOINT_KIND, version=READABLE_VERSIONS)
        assert LEARNER_KEY == "mappo" and blob[LEARNER_KEY]["num_updates"] == 4
        assert torch.equal(blob[LEARNER_KEY]["bias"], saved["bias"])
        straight = trainer.run_epoch()

    with Trainer.resume(path, learner=factory) as resumed:
        twin = built[-1]
        assert resumed.learner is twin and twin is not learner
        assert twin.num_updates == 4 and torch.equal(twin.state_dict()["bias"], saved["bias"])
        assert comparable(resumed.run_epoch()) == comparable(straight)


def test_a_learner_instance_is_used_as_is_and_bad_learners_are_refused() -> None:
    cfg = tiny_config()
    with Trainer("toy", cfg, seed=0) as default:
        assert isinstance(default.learner, MAPPO) and default.learner.config == cfg.mappo
        spec = default.spec
    mine = GaussianLearner(spec, torch.device("cpu"))
    with Trainer("toy", cfg, seed=0, learner=mine) as trainer:
        assert trainer.learner is mine
        trainer.collect()
        assert len(calls_of(mine, "act")) == cfg.env_steps_per_epoch // cfg.num_envs
    with pytest.raises(ValueError, match="learner: expected a Learner"):
        Trainer("toy", cfg, learner=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="learner: the factory returned a dict"):
        Trainer("toy", cfg, learner=lambda spec, device: {})  # type: ignore[arg-type,return-value]
    with pytest.raises(AttributeError):
        trainer.mappo = mine  # type: ignore[misc]  # read-only alias
