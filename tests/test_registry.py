"""dimalib.envs.registry: one table of env names behind make_env, the trainer and the presets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import gymnasium
import numpy as np
import pytest
import torch

from dimalib.envs import (
    BIDEXHANDS_TASKS,
    MAMUJOCO_TASKS,
    MJ_DEXHANDS_TASK_NAMES,
    VectorMultiAgentEnv,
    known_env_names,
)
from dimalib.envs import make_env as envs_make_env
from dimalib.envs.bidexhands import BiDexHandsVecEnv
from dimalib.envs.episodes import is_seedable
from dimalib.envs.registry import (
    ENV_FAMILIES,
    TOY_ENV,
    EnvEntry,
    UnknownEnvError,
    entries,
    known_names,
    lookup,
    make_env,
    make_vector_env,
    register_env,
    unregister_env,
)
from dimalib.envs.toy import CoupledPointMasses, ExactToyDynamics
from dimalib.testing.fake_bidexhands import FakeMultiVecTaskPython
from dimalib.training.config import EnvFamily, env_family, trainer_config
from dimalib.training.diagnostics import true_dynamics
from dimalib.training.trainer import (
    Trainer,
    check_env_name,
    known_trainer_envs,
)
from dimalib.training.trainer import make_vector_env as trainer_make_vector_env
from tests.test_trainer import tiny_config

DOCS = Path(__file__).resolve().parents[1] / "docs"


class TwoCarts:
    """A tiny PettingZoo-style ParallelEnv with ``state()``: two carts on a line, one agent each.

    State ``[x0, v0, x1, v1]``; agent ``i`` observes its own cart and the other's position and
    pushes its cart with ``a_i in [-1, 1]``; shared reward ``-(|x0| + |x1|)``; no termination,
    truncation after ``max_episode_steps``.
    """

    metadata: dict[str, Any] = {"name": "two_carts_v0"}  # noqa: RUF012 - PettingZoo's convention

    def __init__(self, max_episode_steps: int | None = None) -> None:
        self.possible_agents = ["left", "right"]
        self.agents: list[str] = []
        self.max_episode_steps = max_episode_steps or 20
        self._s = np.zeros(4)
        self._t = 0
        self._rng = np.random.default_rng()

    def observation_space(self, agent: str) -> Any:
        return gymnasium.spaces.Box(-np.inf, np.inf, (3,), np.float32)

    def action_space(self, agent: str) -> Any:
        return gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        x0, v0, x1, v1 = self._s
        return {
            "left": np.array([x0, v0, x1], np.float32),
            "right": np.array([x1, v1, x0], np.float32),
        }

    def reset(self, seed: int | None = None, options: Any = None) -> Any:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._s = np.array([self._rng.uniform(-1, 1), 0.0, self._rng.uniform(-1, 1), 0.0])
        self._t = 0
        self.agents = list(self.possible_agents)
        return self._obs(), {a: {} for a in self.agents}

    def _advance(self, a0: float, a1: float) -> tuple[float, bool]:
        x0, v0, x1, v1 = self._s
        v0, v1 = 0.9 * v0 + 0.1 * np.clip(a0, -1, 1), 0.9 * v1 + 0.1 * np.clip(a1, -1, 1)
        self._s = np.array([x0 + 0.1 * v0, v0, x1 + 0.1 * v1, v1])
        self._t += 1
        return -(abs(self._s[0]) + abs(self._s[2])), self._t >= self.max_episode_steps

    def step(self, actions: dict[str, np.ndarray]) -> Any:
        reward, trunc = self._advance(float(actions["left"][0]), float(actions["right"][0]))
        agents = self.possible_agents
        return (
            self._obs(),
            dict.fromkeys(agents, reward),
            dict.fromkeys(agents, False),
            dict.fromkeys(agents, trunc),
            {a: {} for a in agents},
        )

    def state(self) -> np.ndarray:
        return self._s.astype(np.float32)

    def close(self) -> None:
        pass


class FastTwoCarts(TwoCarts):
    """:class:`TwoCarts` with the vector env's fast-path capability (``flat_stepper()``)."""

    def flat_stepper(self) -> Any:
        env = self

        class Stepper:
            def step(self, joint_action: np.ndarray) -> tuple[Any, Any, float, bool, bool]:
                reward, trunc = env._advance(float(joint_action[0]), float(joint_action[1]))
                obs = env._obs()
                return (
                    env.state(),
                    np.concatenate([obs["left"], obs["right"]]),
                    reward,
                    False,
                    trunc,
                )

        return Stepper()


def make_carts(name: str, **kwargs: Any) -> TwoCarts:
    return TwoCarts(**kwargs)


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """Names registered by a test, unregistered afterwards (the registry is process-wide)."""
    names: list[str] = []
    yield names
    for name in names:
        unregister_env(name)


# --------------------------------------------------------------------------- your own env
def test_a_user_env_registered_in_one_call_builds_batches_and_trains(
    registered: list[str],
) -> None:
    entry = register_env("two-carts", make_carts, description="two carts on a line")
    registered.append("two-carts")
    assert lookup("two-carts") is entry and entry.family == "mamujoco" and entry.seedable
    assert "two-carts" in known_names() and "two-carts" in known_env_names()
    assert "two-carts" in known_trainer_envs()
    check_env_name("two-carts")
    assert isinstance(make_env("two-carts"), TwoCarts)
    assert isinstance(envs_make_env("two-carts", max_episode_steps=3), TwoCarts)

    with make_vector_env("two-carts", 3, max_episode_steps=5) as venv:
        assert isinstance(venv, VectorMultiAgentEnv) and is_seedable(venv)
        assert venv.spec.agent_names == ("left", "right") and venv.spec.state_dim == 4
        state, obs = venv.reset(seed=0)
        assert state.shape == (3, 4) and obs.shape == (3, 6)
        for _ in range(5):
            out = venv.step(torch.zeros(3, 2))
        assert out.truncated.all() and (out.episode_length == 5).all()

    cfg = tiny_config(wm_warmup_transitions=40, eval_every_env_steps=40)
    trainer = Trainer("two-carts", cfg, seed=0, tensorboard=False)
    try:
        assert trainer.config.max_episode_steps == 30
        row = trainer.run_epoch()
    finally:
        trainer.close()
    assert row["env_steps"] == 40 and row["wm_epochs"] == 1
    assert np.isfinite(row["eval/return_mean"])
    assert not any(k.startswith("fidelity/") for k in row)  # no true dynamics registered


def test_a_user_env_with_true_dynamics_feeds_the_diagnostics(registered: list[str]) -> None:
    def make(name: str, *, max_episode_steps: int | None = None) -> CoupledPointMasses:
        return CoupledPointMasses(n_agents=2, max_steps=max_episode_steps or 50)

    register_env(
        "points-2",
        make,
        true_dynamics=lambda name, max_episode_steps=None: ExactToyDynamics(make(name)),
    )
    registered.append("points-2")
    dyn = true_dynamics("points-2")
    assert isinstance(dyn, ExactToyDynamics) and dyn.env.config.n_agents == 2
    cfg = tiny_config(wm_warmup_transitions=40, eval_every_env_steps=40, fidelity_windows=4)
    trainer = Trainer("points-2", cfg, seed=0, tensorboard=False)
    try:
        row = trainer.run_epoch()
    finally:
        trainer.close()
    assert {"fidelity/ratio_agent_0", "fidelity/ratio_agent_1", "bias/gap"} <= set(row)


def test_a_user_pattern_entry_resolves_every_name_it_matches(registered: list[str]) -> None:
    register_env(
        "<points-N>",
        lambda name, **kw: CoupledPointMasses(n_agents=int(name.split("-")[1]), **kw),
        match=lambda name: re.fullmatch(r"points-[1-9]", name) is not None,
        description="'points-N' name",
        examples=("points-3",),
    )
    registered.append("<points-N>")
    assert lookup("points-4").name == "<points-N>" and "<points-N>" not in known_names()
    assert make_env("points-4").possible_agents == [f"agent_{i}" for i in range(4)]
    with make_vector_env("points-3", 2) as venv:
        assert venv.spec.n_agents == 3
    with pytest.raises(UnknownEnvError, match=r"or a 'points-N' name \(e\.g\. 'points-3'\)"):
        lookup("points-X")


def test_a_batched_only_env_and_its_seedability(registered: list[str]) -> None:
    def make_vector(name: str, num_envs: int, **_: Any) -> BiDexHandsVecEnv:
        return BiDexHandsVecEnv(FakeMultiVecTaskPython(num_envs, "ShadowHandPen"))

    register_env("fake-pen", family="bidexhands", make_vector=make_vector, seedable=False)
    registered.append("fake-pen")
    venv = make_vector_env("fake-pen", 2, seed=3)
    assert isinstance(venv, BiDexHandsVecEnv) and venv.num_envs == 2
    assert not is_seedable(venv) and not lookup("fake-pen").seedable
    assert trainer_config("paper", "fake-pen").env_steps_per_epoch == 500  # Bi-DexHands preset
    with pytest.raises(ValueError, match="batched env only"):
        make_env("fake-pen")


def test_duplicates_and_bad_entries_are_rejected(registered: list[str]) -> None:
    toy = lookup(TOY_ENV)
    with pytest.raises(ValueError, match="entry_or_name: an env named 'toy' is registered already"):
        register_env(TOY_ENV, make_carts)
    register_env("two-carts", make_carts)
    registered.append("two-carts")
    with pytest.raises(ValueError, match="entry_or_name: an env named 'two-carts'"):
        register_env(EnvEntry("two-carts", make_carts))
    replaced = register_env("two-carts", make_carts, overwrite=True, description="again")
    assert lookup("two-carts") is replaced and replaced.description == "again"
    assert lookup(TOY_ENV) is toy  # untouched

    with pytest.raises(ValueError, match=r"family: expected one of \['mamujoco', 'bidexhands'\]"):
        register_env("x", make_carts, family="atari")
    with pytest.raises(ValueError, match="make: env 'x' needs make, make_vector or both"):
        register_env("x")
    with pytest.raises(ValueError, match="seedable: expected a bool"):
        register_env("x", make_carts, seedable="no")
    with pytest.raises(ValueError, match="frobnicate: not a field of EnvEntry"):
        register_env("x", make_carts, frobnicate=1)
    with pytest.raises(ValueError, match=r"an EnvEntry carries its own fields; .*\['family'\]"):
        register_env(EnvEntry("x", make_carts), family="bidexhands")
    with pytest.raises(ValueError, match="name: expected a non-empty string"):
        register_env("", make_carts)
    with pytest.raises(ValueError, match="make: expected a callable"):
        register_env("x", "not callable")
    assert "x" not in known_names()
    with pytest.raises(UnknownEnvError, match="no env registered under 'x'"):
        unregister_env("x")


# --------------------------------------------------------------------------- unknown names
def test_unknown_names_get_the_known_list_and_a_did_you_mean(registered: list[str]) -> None:
    with pytest.raises(UnknownEnvError) as info:
        lookup("Pong")
    assert str(info.value) == (
        f"name: expected one of {known_names()} or a MAMuJoCo 'Scenario-Conf' name "
        "(e.g. 'Hopper-3x1', 'Pusher-3p'), received 'Pong'"
    )
    for wrong, right in [
        ("halfcheetah-2x3", "HalfCheetah-2x3"),
        ("Tyo", "toy"),
        ("MjShadowHandPenn", "MjShadowHandPen"),
        ("Pusher-3x", "Pusher-3p"),
        ("Hoper-3x1", "Hopper-3x1"),
    ]:
        with pytest.raises(UnknownEnvError, match=re.escape(f"(did you mean {right!r}?)")):
            make_env(wrong)
    register_env("two-carts", make_carts)
    registered.append("two-carts")
    with pytest.raises(UnknownEnvError, match=re.escape("(did you mean 'two-carts'?)")):
        lookup("two-cart")
    with pytest.raises(ValueError, match="name: expected a string, received int"):
        lookup(3)  # type: ignore[arg-type]

    with pytest.raises(ValueError) as trainer_info:
        check_env_name("halfcheetah-2x3")
    assert str(trainer_info.value) == (
        f"env: unknown environment 'halfcheetah-2x3'; expected one of {known_trainer_envs()} "
        "(or another MAMuJoCo 'Scenario-Conf' name such as 'Hopper-3x1' or 'Pusher-3p')"
        " (did you mean 'HalfCheetah-2x3'?)"
    )
    with pytest.raises(ValueError, match="env: unknown environment 'Nope-1x1'"):
        trainer_make_vector_env("Nope-1x1", 2)
    with pytest.raises(ValueError, match="env: expected a string"):
        check_env_name(None)  # type: ignore[arg-type]
    assert env_family("Nope-1x1") == "mamujoco"  # as before: the name is checked when built


# --------------------------------------------------------------------------- built-in entries
BUILTIN_FAMILIES: dict[str, str] = {
    TOY_ENV: "mamujoco",
    **dict.fromkeys(MAMUJOCO_TASKS, "mamujoco"),
    **dict.fromkeys(BIDEXHANDS_TASKS, "bidexhands"),
    **dict.fromkeys(MJ_DEXHANDS_TASK_NAMES, "bidexhands"),
}


def test_the_builtin_names_in_order() -> None:
    assert known_names() == list(BUILTIN_FAMILIES)  # toy first, as known_trainer_envs was
    assert known_trainer_envs() == known_env_names() == known_names()
    patterns = [e for e in entries() if e.is_pattern]
    assert [e.name for e in patterns] == ["<MAMuJoCo Scenario-Conf>"]
    assert get_args(EnvFamily) == ENV_FAMILIES


@pytest.mark.parametrize("name", list(BUILTIN_FAMILIES))
def test_every_builtin_name_resolves_with_its_family(name: str) -> None:
    entry = lookup(name)
    assert entry.name == name and not entry.is_pattern and entry.description
    assert entry.family == BUILTIN_FAMILIES[name] == env_family(name)
    native = name in BIDEXHANDS_TASKS  # Isaac Gym batches (and seeds) itself
    assert entry.seedable is not native and (entry.make_vector is not None) is native
    has_true = name == TOY_ENV or name in MAMUJOCO_TASKS
    assert (entry.true_dynamics is not None) is has_true


@pytest.mark.parametrize(
    ("name", "n_agents"), [("Hopper-3x1", 3), ("Pusher-3p", 3), ("HalfCheetah-6x1", 6)]
)
def test_mamujoco_pattern_names_resolve_and_build(name: str, n_agents: int) -> None:
    entry = lookup(name)
    assert entry.family == "mamujoco" and entry.seedable
    assert entry.is_pattern is (name not in MAMUJOCO_TASKS)
    env = make_env(name, max_episode_steps=4)
    assert len(env.possible_agents) == n_agents
    assert callable(env.flat_stepper)  # the vector env's fast-path capability
    env.close()


def test_builtin_vector_envs_and_true_dynamics() -> None:
    with make_vector_env(TOY_ENV, 2, max_episode_steps=7) as venv:
        assert isinstance(venv, VectorMultiAgentEnv) and is_seedable(venv)
        assert venv.spec.action_dims == (1, 2, 3)
        venv.reset(seed=0)
        for _ in range(7):
            out = venv.step(torch.zeros(2, 6))
        assert out.truncated.all()
    assert isinstance(true_dynamics(TOY_ENV), ExactToyDynamics)
    assert true_dynamics("MjShadowHandPen") is None and true_dynamics("ShadowHandPen") is None
    from dimalib.envs.mamujoco_dynamics import MuJoCoStepper

    assert isinstance(true_dynamics("Hopper-3x1"), MuJoCoStepper)
    with pytest.raises(ValueError, match="num_envs: expected a positive integer"):
        make_vector_env(TOY_ENV, 0)


@pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("isaacgym") is not None,
    reason="Isaac Gym is installed here",
)
def test_bidexhands_names_go_to_isaac_gym_batched() -> None:
    with pytest.raises(ImportError, match="isaacgym"):
        make_vector_env("ShadowHandPen", 2)


# --------------------------------------------------------------------------- fast path
def test_the_vector_fast_path_is_a_capability_of_the_env() -> None:
    def run(make: Any, fast_path: bool) -> list[Any]:
        with VectorMultiAgentEnv([make] * 2, fast_path=fast_path) as venv:
            num_fast = venv._group.num_fast if venv._group is not None else -1
            venv.reset(seed=1)
            g = torch.Generator().manual_seed(0)
            outs = [venv.step(torch.rand(2, 2, generator=g) * 2 - 1) for _ in range(25)]
        return [num_fast, *outs]

    fast, slow, plain = run(FastTwoCarts, True), run(FastTwoCarts, False), run(TwoCarts, True)
    assert (fast[0], slow[0], plain[0]) == (2, 0, 0)
    for a, b, c in zip(fast[1:], slow[1:], plain[1:], strict=True):
        for field in ("next_state", "next_obs", "reward", "truncated", "final_obs"):
            assert torch.equal(getattr(a, field), getattr(b, field)), field
            assert torch.equal(getattr(a, field), getattr(c, field)), field


# --------------------------------------------------------------------------- docs
def test_the_registration_example_of_the_own_env_tutorial_runs() -> None:
    text = (DOCS / "tutorials" / "own_env.md").read_text()
    (code,) = re.findall(r"```py\n(.*?)```", text, flags=re.S)  # the registration section
    try:
        exec(compile(code, "own_env.md", "exec"), {"__name__": "tutorial"})
    finally:
        for name in ("points-4",):
            if name in known_names():
                unregister_env(name)
