"""Bi-DexHands (PKU-MARL/DexterousHands) adapter over its ``MultiVecTaskPython`` (Isaac Gym).

The paper's four tasks are :data:`BIDEXHANDS_TASKS`. Two agents (one per Shadow hand), 26 actions
each (forearm force ``a[0:3]``, torque ``a[3:6]``, finger joint targets ``a[6:26]``), so the joint
action is ``[N, 52]``; per-agent observation 218 (221 for BottleCap), global state 417 (420).

:class:`BiDexHandsVecEnv` turns ``MultiVecTaskPython`` into the batched structures of
:class:`~dimalib.envs.vector.VectorMultiAgentEnv`: ``reset() -> (state [N, S], obs [N, O])`` and
``step(joint_action [N, A]) -> StepResult``. What ``MultiVecTaskPython`` does, and how it maps:

* ``step(actions)`` indexes ``actions[agent]`` and ``hstack``s them, so it takes the agent-major
  ``[2, N, 26]``; the adapter reshapes ``[N, 52] -> [N, 2, 26] -> [2, N, 26]``.
* it returns ``obs [N, 2, 218]``, ``state [N, 2, 417]`` (the full observation buffer, the same for
  both agents: the adapter keeps ``state[:, 0]``), ``reward [N, 2, 1]`` (shared: ``reward[:, 0, 0]``),
  ``done [N, 2]`` (``reset_buf``), ``info``, ``None``. Joint obs is ``obs.reshape(N, 436)``.
* ``done`` mixes time-outs and failures. The adapter reads the task's ``progress_buf`` and
  ``max_episode_length``: ``truncated = done & (progress >= max_episode_length)``, the rest is
  ``terminated`` (if the task lacks them, its own step counter against the episode length).
* Isaac Gym resets an ended env **inside the next** ``step``, before applying that step's action,
  and never returns the reset observation. So where a copy ended, ``next_*`` equals ``final_*``
  (the episode's last observation, the only one available), and the copy's next transition starts
  from the unobserved reset state: :attr:`BiDexHandsVecEnv.reset_in_last_step` marks those rows
  so a buffer or learner can drop them.
* ``reset()`` of ``MultiVecTaskPython`` is one step with small random actions (it resets the envs
  flagged for reset: all of them on the first call), so the first episode counted here is one
  step shorter than Isaac Gym's ``progress_buf`` says; Isaac Gym is seeded once, when the task is
  built (:func:`make_bidexhands`'s ``seed``).

Isaac Gym cannot be pip-installed: it needs Python 3.6–3.8, an NVIDIA GPU and a manual download
from NVIDIA; dimalib itself needs Python ≥ 3.10, so in practice ``MultiVecTaskPython`` runs in a
separate Python 3.8 process and reaches this adapter through a proxy object with the same
methods. :func:`make_bidexhands` builds it in-process when that is possible and otherwise raises
an ``ImportError`` saying what is missing. The adapter's logic is tested against
:class:`dimalib.testing.fake_bidexhands.FakeMultiVecTaskPython`, a fake with the same interface.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from dimalib.envs.vector import StepResult
from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import check_tensor

__all__ = [
    "BIDEXHANDS_TASKS",
    "BiDexHandsTask",
    "BiDexHandsVecEnv",
    "isaacgym_missing_message",
    "make_bidexhands",
    "make_bidexhands_vector",
]


@dataclass(frozen=True)
class BiDexHandsTask:
    """Sizes of one Bi-DexHands task (two agents, 26 actions each)."""

    obs_dim: int  # per agent
    state_dim: int
    episode_length: int
    action_dim: int = 26
    n_agents: int = 2


#: The paper's four Bi-DexHands tasks.
BIDEXHANDS_TASKS: dict[str, BiDexHandsTask] = {
    "ShadowHandPen": BiDexHandsTask(obs_dim=218, state_dim=417, episode_length=125),
    "ShadowHandBottleCap": BiDexHandsTask(obs_dim=221, state_dim=420, episode_length=125),
    "ShadowHandDoorOpenInward": BiDexHandsTask(obs_dim=218, state_dim=417, episode_length=250),
    "ShadowHandDoorOpenOutward": BiDexHandsTask(obs_dim=218, state_dim=417, episode_length=250),
}

AGENT_NAMES = ("right_hand", "left_hand")  # Bi-DexHands agent 0 (obs 0:199), agent 1 (199:398)


def isaacgym_missing_message(task: str, missing: str = "isaacgym") -> str:
    """The explanation raised when a Bi-DexHands task is selected without its dependencies."""
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return (
        f"Bi-DexHands task {task!r} needs the Python module {missing!r}, which is not installed.\n"
        "Bi-DexHands runs on NVIDIA Isaac Gym (Preview 4), which cannot be installed from PyPI:\n"
        "  * it supports Python 3.6-3.8 only (this interpreter is Python "
        f"{py}; dimalib needs >= 3.10, so run Isaac Gym in a separate Python 3.8 environment and\n"
        "    pass a MultiVecTaskPython proxy to dimalib.envs.bidexhands.BiDexHandsVecEnv);\n"
        "  * it needs an NVIDIA GPU with a recent driver;\n"
        "  * download it from NVIDIA (https://developer.nvidia.com/isaac-gym), then "
        "`pip install -e isaacgym/python`;\n"
        "  * then install Bi-DexHands: `git clone https://github.com/PKU-MARL/DexterousHands` and "
        "`pip install -e DexterousHands`;\n"
        "  * import isaacgym before torch (Isaac Gym refuses to load after PyTorch)."
    )


def _require(task: str) -> None:
    for module in ("isaacgym", "bidexhands"):
        if importlib.util.find_spec(module) is None:
            raise ImportError(isaacgym_missing_message(task, module))


@contextlib.contextmanager
def _argv_and_cwd(argv: list[str], cwd: str) -> Iterator[None]:
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = argv
    os.chdir(cwd)
    try:
        yield
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)


def make_bidexhands(
    task: str,
    *,
    num_envs: int = 1,
    seed: int = 0,
    rl_device: str = "cuda:0",
    sim_device: str = "cuda:0",
    episode_length: int | None = None,
    device: torch.device | str | None = None,
) -> BiDexHandsVecEnv:
    """Build a Bi-DexHands ``MultiVecTaskPython`` through Bi-DexHands' own config/parse_task path.

    Args:
        task: one of :data:`BIDEXHANDS_TASKS` (other Bi-DexHands two-hand task names are passed on).
        num_envs: number of parallel Isaac Gym envs ``N``.
        seed: Isaac Gym / task seed (applied once, at creation).
        rl_device, sim_device: Bi-DexHands' devices.
        episode_length: override of the task's episode length.
        device: device of the adapter's output tensors (default: the env's).

    Raises:
        ImportError: Isaac Gym or Bi-DexHands is not installed (the message says how to get them).
    """
    if task not in BIDEXHANDS_TASKS:
        raise ValueError(f"task: expected one of {list(BIDEXHANDS_TASKS)}, received {task!r}")
    _require(task)
    try:  # Isaac Gym must be imported before torch; dimalib has imported torch already
        import isaacgym  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{exc}\nImport isaacgym before torch and dimalib, e.g. `import isaacgym` as the "
            "first line of your script.\n" + isaacgym_missing_message(task)
        ) from exc
    import bidexhands
    from bidexhands.utils.config import get_args, load_cfg, parse_sim_params
    from bidexhands.utils.parse_task import parse_task

    argv = [
        "dimalib",
        f"--task={task}",
        "--algo=mappo",
        f"--seed={seed}",
        f"--num_envs={num_envs}",
        f"--rl_device={rl_device}",
        f"--sim_device={sim_device}",
        "--headless",
    ]
    if episode_length is not None:
        argv.append(f"--episode_length={episode_length}")
    with _argv_and_cwd(argv, os.path.dirname(os.path.abspath(bidexhands.__file__))):
        args = get_args()
        args.task_type = "MultiAgent"
        cfg, cfg_train, _ = load_cfg(args)
        sim_params = parse_sim_params(args, cfg, cfg_train)
        agent_index = [[[0, 1, 2, 3, 4, 5]], [[0, 1, 2, 3, 4, 5]]]
        _, vec_task = parse_task(args, cfg, cfg_train, sim_params, agent_index)
    return BiDexHandsVecEnv(vec_task, device=device)


def make_bidexhands_vector(
    task: str,
    num_envs: int,
    *,
    seed: int = 0,
    max_episode_steps: int | None = None,
    device: torch.device | str = "cpu",
) -> BiDexHandsVecEnv:
    """:func:`make_bidexhands` with :func:`dimalib.envs.registry.make_vector_env`'s arguments:
    ``num_envs`` Isaac Gym envs seeded once with ``seed``, ``max_episode_steps`` as the episode
    length, outputs on ``device`` (a CUDA ``device`` also runs the simulation and the RL tensors
    there)."""
    dev = torch.device(device)
    kwargs: dict[str, Any] = {"num_envs": num_envs, "seed": seed, "device": dev}
    if dev.type == "cuda":
        kwargs["rl_device"] = kwargs["sim_device"] = str(dev)
    if max_episode_steps is not None:
        kwargs["episode_length"] = max_episode_steps
    return make_bidexhands(task, **kwargs)


class BiDexHandsVecEnv:
    """``MultiVecTaskPython`` (or anything with its interface) as a dimalib vector env.

    Args:
        vec_task: a Bi-DexHands ``MultiVecTaskPython`` with two agents.
        device: device of the output tensors (default: the device of the env's observations).
        episode_length: used only when the task exposes no ``max_episode_length``.

    See the module docstring for how ``MultiVecTaskPython``'s outputs map to :class:`StepResult`.
    """

    #: Isaac Gym is seeded once, when built: :meth:`reset` takes no seed.
    seedable: bool = False

    def __init__(
        self,
        vec_task: Any,
        *,
        device: torch.device | str | None = None,
        episode_length: int | None = None,
    ) -> None:
        self.vec_task = vec_task
        self.num_envs = int(vec_task.num_envs)
        n_agents = int(vec_task.num_agents)
        if n_agents != 2:
            raise ValueError(
                f"vec_task: expected 2 agents (one per hand, agent_index "
                f"[[[0..5]], [[0..5]]]), received {n_agents}"
            )
        obs_dim = int(vec_task.num_obs)  # per-agent observation (num_obs - num_hand_obs)
        action_dim = int(vec_task.num_acts)
        state_dim = int(getattr(vec_task, "nums_share_observations", 0)) or int(
            vec_task.task.num_obs
        )
        clip = float(getattr(vec_task, "clip_actions", 1.0))
        self.spec = MultiAgentSpec(
            agent_names=AGENT_NAMES,
            obs_dims=(obs_dim, obs_dim),
            action_dims=(action_dim, action_dim),
            state_dim=state_dim,
            action_low=-clip,
            action_high=clip,
        )
        task = getattr(vec_task, "task", None)
        self._max_len = getattr(task, "max_episode_length", None)
        if self._max_len is None and episode_length is None:
            raise ValueError(
                "episode_length: the task exposes no max_episode_length; pass episode_length"
            )
        self._fallback_len = episode_length
        self.device = None if device is None else torch.device(device)
        self._state: torch.Tensor | None = None
        self._obs: torch.Tensor | None = None
        self._ret: torch.Tensor | None = None
        self._len: torch.Tensor | None = None
        self._ended: torch.Tensor | None = None
        #: ``[N]`` bool: the last step's transition of these copies started from an Isaac Gym
        #: reset that was never observed (they ended the step before); their ``state``/``obs``
        #: inputs were the previous episode's last ones.
        self.reset_in_last_step: torch.Tensor | None = None

    # ------------------------------------------------------------------ conversion
    def _out(self, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if self.device is None:
            self.device = x.device
        return x.to(device=self.device, dtype=dtype)

    def _convert(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, spec = self.num_envs, self.spec
        check_tensor("vec_task obs", obs, (n, spec.n_agents, spec.obs_dims[0]))
        check_tensor("vec_task state", state, (n, spec.n_agents, spec.state_dim))
        # obs first: it sets the default output device (MultiVecTaskPython moves obs to rl_device
        # but leaves state on the sim device)
        joint_obs = self._out(obs.reshape(n, spec.joint_obs_dim))
        return self._out(state[:, 0]), joint_obs

    @property
    def state(self) -> torch.Tensor:
        """``[N, S]`` current global states."""
        if self._state is None:
            raise RuntimeError("BiDexHandsVecEnv: call reset() before reading state")
        return self._state

    @property
    def obs(self) -> torch.Tensor:
        """``[N, O]`` current joint observations."""
        if self._obs is None:
            raise RuntimeError("BiDexHandsVecEnv: call reset() before reading obs")
        return self._obs

    @property
    def needs_reset(self) -> bool:
        return self._state is None

    # ------------------------------------------------------------------ API
    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``MultiVecTaskPython.reset()`` → ``(state [N, S], obs [N, O])``.

        Args:
            seed: must be None; Isaac Gym is seeded once, when the task is built.
        """
        if seed is not None:
            raise ValueError(
                "seed: Isaac Gym envs are seeded when built (make_bidexhands(seed=...)); "
                f"reset() takes no seed, received {seed!r}"
            )
        obs, state, _ = self.vec_task.reset()
        self._state, self._obs = self._convert(obs, state)
        dev = self._state.device
        self._ret = torch.zeros(self.num_envs, dtype=torch.float64, device=dev)
        self._len = torch.zeros(self.num_envs, dtype=torch.int64, device=dev)
        self._ended = torch.zeros(self.num_envs, dtype=torch.bool, device=dev)
        self.reset_in_last_step = self._ended.clone()
        return self._state, self._obs

    def step(self, joint_action: torch.Tensor) -> StepResult:
        """Apply ``joint_action [N, 52]``; see the module docstring for the auto-reset semantics.

        Raises:
            ValueError: ``joint_action`` is not a finite floating ``[N, 52]`` tensor.
        """
        if self._ret is None or self._len is None or self._ended is None:
            raise RuntimeError("BiDexHandsVecEnv: call reset() before step()")
        n, spec = self.num_envs, self.spec
        check_tensor(
            "joint_action", joint_action, (n, spec.joint_action_dim), floating=True, finite=True
        )
        env_device = getattr(self.vec_task, "rl_device", None) or joint_action.device
        per_agent = (
            joint_action.detach()
            .to(device=env_device, dtype=torch.float32)
            .reshape(n, spec.n_agents, spec.action_dims[0])
            .transpose(0, 1)
        )  # [2, N, 26]: MultiVecTaskPython.step indexes actions[agent]
        obs, state, reward, done, _info, _ = self.vec_task.step(per_agent)
        check_tensor("vec_task reward", reward, (n, spec.n_agents, 1))
        check_tensor("vec_task done", done, (n, spec.n_agents))
        next_state, next_obs = self._convert(obs, state)
        r = self._out(reward[:, 0, 0])
        ended = self._out(done[:, 0], torch.bool)
        timeout = self._timeout(ended.device)
        truncated = ended & timeout
        terminated = ended & ~timeout
        self.reset_in_last_step = self._ended
        self._ret = torch.where(self._ended, torch.zeros_like(self._ret), self._ret) + r.double()
        self._len = torch.where(self._ended, torch.zeros_like(self._len), self._len) + 1
        self._ended = ended
        self._state, self._obs = next_state, next_obs
        return StepResult(
            next_state=next_state,
            next_obs=next_obs,
            reward=r,
            terminated=terminated,
            truncated=truncated,
            final_state=next_state,
            final_obs=next_obs,
            episode_return=self._ret.float(),
            episode_length=self._len.clone(),
        )

    def _timeout(self, device: torch.device) -> torch.Tensor:
        task = getattr(self.vec_task, "task", None)
        progress = getattr(task, "progress_buf", None)
        if progress is not None and self._max_len is not None:
            return torch.as_tensor(progress, device=device) >= int(self._max_len)
        assert self._len is not None and self._ended is not None and self._fallback_len
        steps = torch.where(self._ended, torch.zeros_like(self._len), self._len) + 1
        return steps.to(device) >= self._fallback_len

    def close(self) -> None:
        """Release the Isaac Gym sim if the task offers a way to (best effort)."""
        task = getattr(self.vec_task, "task", None)
        gym, sim = getattr(task, "gym", None), getattr(task, "sim", None)
        if gym is not None and sim is not None and hasattr(gym, "destroy_sim"):
            gym.destroy_sim(sim)

    def __repr__(self) -> str:
        return f"BiDexHandsVecEnv(num_envs={self.num_envs}, spec={self.spec})"
