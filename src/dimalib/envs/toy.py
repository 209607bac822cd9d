"""`CoupledPointMasses`: a small multi-agent environment whose dynamics are known exactly.

Agent ``i`` pushes point mass ``i`` in ``D`` dimensions; neighbouring masses are joined by linear
springs (rest length 0), so an agent's action reaches the other masses through the springs a few
steps later. With ``x_i, v_i`` the position and velocity of mass ``i`` (``[D]`` each):

* force of agent ``i``: ``f_i = force_scale * B_i @ clip(a_i, -1, 1)`` with ``a_i`` of size
  ``d_i`` (agents may differ) and a fixed matrix ``B_i`` ``[D, d_i]`` (identity when
  ``d_i == D``, otherwise a fixed random projection with unit-norm columns; see
  :attr:`CoupledPointMasses.force_matrices`);
* acceleration ``acc_i = (f_i + k * sum_{j ~ i} (x_j - x_i) - c * v_i) / m``;
* semi-implicit Euler step: ``v_i' = v_i + dt * acc_i``, ``x_i' = x_i + dt * v_i'``.

The dynamics are linear, ``s' = M s + N clip(a)`` (:meth:`CoupledPointMasses.linear_dynamics`).

* global state ``s = [x_1 .. x_n, v_1 .. v_n]`` (``S = 2 n D``);
* observation of agent ``i``: ``[x_i, v_i, g_i - x_i, x_j - x_i for each neighbour j]`` (ends of
  a chain have one neighbour and middle masses two, so observation sizes differ);
* shared reward ``r = -sum_i ||x_i' - g_i||_2 - action_cost * ||clip(a)||^2`` with targets ``g_i``;
* termination: some coordinate of some mass leaves the box, ``max |x'| > box``;
* truncation: after ``max_steps`` steps.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium
import numpy as np
import torch
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from dimalib.spec import MultiAgentSpec
from dimalib.utils.checks import check_int, check_tensor

__all__ = ["CoupledPointMasses", "CoupledPointMassesConfig", "ExactToyDynamics"]

NDArray = np.ndarray[Any, Any]


@dataclass(frozen=True)
class CoupledPointMassesConfig:
    """Parameters of :class:`CoupledPointMasses` (a test environment, not from the paper).

    Args:
        n_agents: number of agents, one mass each.
        space_dim: ``D``, dimension of the space the masses move in.
        action_dims: per-agent action size ``d_i``; ``None`` gives ``D`` to every agent.
        topology: ``"chain"`` (mass ``i`` joined to ``i±1``) or ``"ring"`` (also ``n`` to ``1``,
            needs ``n_agents >= 3``).
        spring: spring stiffness ``k``.
        damping: velocity damping ``c``.
        mass: mass ``m`` of every point.
        dt: integration step.
        force_scale: force per unit action.
        action_cost: weight of ``||a||^2`` in the reward.
        target_radius: targets ``g_i`` lie on a circle of this radius in the first two
            coordinates (on ``±radius`` when ``D == 1``).
        box: termination when ``max |x| > box``.
        init_range: reset positions are uniform in ``[-init_range, init_range]``, velocities 0.
        max_steps: episode length before truncation.
        projection_seed: seed of the fixed ``B_i`` for agents with ``d_i != D``.
    """

    n_agents: int = 2
    space_dim: int = 2
    action_dims: tuple[int, ...] | None = None
    topology: Literal["chain", "ring"] = "chain"
    spring: float = 1.0
    damping: float = 0.5
    mass: float = 1.0
    dt: float = 0.1
    force_scale: float = 1.0
    action_cost: float = 0.01
    target_radius: float = 1.0
    box: float = 4.0
    init_range: float = 1.0
    max_steps: int = 100
    projection_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_agents", "space_dim", "max_steps"):
            check_int(name, getattr(self, name))
        if self.action_dims is not None:
            dims = tuple(self.action_dims)
            if len(dims) != self.n_agents or any(
                not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in dims
            ):
                raise ValueError(
                    f"action_dims: expected {self.n_agents} positive integers, received {dims!r}"
                )
            object.__setattr__(self, "action_dims", dims)
        if self.topology not in ("chain", "ring"):
            raise ValueError(f"topology: expected 'chain' or 'ring', received {self.topology!r}")
        if self.topology == "ring" and self.n_agents < 3:
            raise ValueError(f"topology: 'ring' needs n_agents >= 3, received {self.n_agents}")
        for name in ("mass", "dt", "box"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"{name}: expected a positive number, received {getattr(self, name)}"
                )
        for name in ("spring", "damping", "action_cost", "init_range", "force_scale"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected a number >= 0, received {getattr(self, name)}")


class CoupledPointMasses(ParallelEnv[str, NDArray, NDArray]):
    """PettingZoo ``ParallelEnv`` of spring-coupled point masses, with exact batched dynamics.

    Agents are named ``"agent_0" .. "agent_{n-1}"``. Observations and the state are float32
    arrays; internally the env integrates in float64.

    Args:
        config: the parameters; keyword arguments override single fields, e.g.
            ``CoupledPointMasses(n_agents=3, action_dims=(1, 2, 3))``.

    ``reset(options={"state": s})`` starts from the given ``[S]`` state instead of a random one.

    Batched, pure torch versions of the dynamics, for generating many transitions at once:
    :meth:`batched_step` ``([..., S], [..., A]) -> ([..., S], [...], [...] bool)``,
    :meth:`observe` ``[..., S] -> [..., O]``, :meth:`initial_state`.
    """

    metadata: dict[str, Any] = {  # noqa: RUF012 - PettingZoo's convention
        "name": "coupled_point_masses_v0",
        "render_modes": [],
        "is_parallelizable": True,
    }

    def __init__(self, config: CoupledPointMassesConfig | None = None, **overrides: Any) -> None:
        cfg = dataclasses.replace(config or CoupledPointMassesConfig(), **overrides)
        self.config = cfg
        n, d = cfg.n_agents, cfg.space_dim
        self.possible_agents = [f"agent_{i}" for i in range(n)]
        self.agents: list[str] = []
        self.render_mode = None
        self.action_dims: tuple[int, ...] = cfg.action_dims or (d,) * n
        # neighbours of every mass
        nbrs: list[list[int]] = [[] for _ in range(n)]
        pairs = [(i, i + 1) for i in range(n - 1)]
        if cfg.topology == "ring":
            pairs.append((n - 1, 0))
        for i, j in pairs:
            nbrs[i].append(j)
            nbrs[j].append(i)
        self.neighbours: tuple[tuple[int, ...], ...] = tuple(tuple(x) for x in nbrs)
        rng = np.random.default_rng(cfg.projection_seed)
        mats = []
        for di in self.action_dims:
            if di == d:
                mats.append(np.eye(d))
            else:
                b = rng.standard_normal((d, di))
                mats.append(b / np.linalg.norm(b, axis=0, keepdims=True))
        self.force_matrices: tuple[NDArray, ...] = tuple(mats)
        """``B_i`` ``[D, d_i]`` float64, fixed at construction."""
        self.targets: NDArray = self._make_targets()
        """``g`` ``[n, D]`` float64."""
        self.obs_dims: tuple[int, ...] = tuple(d * (3 + len(nb)) for nb in self.neighbours)
        self._obs_spaces = {
            a: gymnasium.spaces.Box(-np.inf, np.inf, (o,), np.float32)
            for a, o in zip(self.possible_agents, self.obs_dims, strict=True)
        }
        self._act_spaces = {
            a: gymnasium.spaces.Box(-1.0, 1.0, (k,), np.float32)
            for a, k in zip(self.possible_agents, self.action_dims, strict=True)
        }
        self.state_space = gymnasium.spaces.Box(-np.inf, np.inf, (2 * n * d,), np.float32)
        self._np_random: np.random.Generator | None = None
        self._x = np.zeros((n, d))
        self._v = np.zeros((n, d))
        self._t = 0
        self._torch_cache: dict[tuple[torch.device, torch.dtype], dict[str, torch.Tensor]] = {}

    def _make_targets(self) -> NDArray:
        cfg = self.config
        n, d = cfg.n_agents, cfg.space_dim
        g = np.zeros((n, d))
        for i in range(n):
            angle = 2.0 * math.pi * i / n
            if d == 1:
                g[i, 0] = cfg.target_radius * (1.0 if i % 2 == 0 else -1.0)
            else:
                g[i, 0] = cfg.target_radius * math.cos(angle)
                g[i, 1] = cfg.target_radius * math.sin(angle)
        return g

    # ------------------------------------------------------------------ sizes
    @property
    def state_dim(self) -> int:
        return 2 * self.config.n_agents * self.config.space_dim

    @functools.cached_property
    def spec(self) -> MultiAgentSpec:
        """The :class:`MultiAgentSpec` of this env (action bounds ``[-1, 1]``)."""
        return MultiAgentSpec(
            agent_names=tuple(self.possible_agents),
            obs_dims=self.obs_dims,
            action_dims=self.action_dims,
            state_dim=self.state_dim,
            action_low=-1.0,
            action_high=1.0,
        )

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._act_spaces[agent]

    # --------------------------------------------------------------- episode
    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, NDArray], dict[str, dict[str, Any]]]:
        if seed is not None or self._np_random is None:
            self._np_random, _ = seeding.np_random(seed)
        n, d = self.config.n_agents, self.config.space_dim
        start = (options or {}).get("state")
        if start is not None:
            s = np.asarray(start, dtype=np.float64)
            if s.shape != (self.state_dim,) or not np.isfinite(s).all():
                raise ValueError(
                    f"options['state']: expected a finite array of shape ({self.state_dim},), "
                    f"received shape {s.shape}"
                )
            self._x = s[: n * d].reshape(n, d).copy()
            self._v = s[n * d :].reshape(n, d).copy()
        else:
            r = self.config.init_range
            self._x = self._np_random.uniform(-r, r, size=(n, d))
            self._v = np.zeros((n, d))
        self._t = 0
        self.agents = list(self.possible_agents)
        return self._observations(), {a: {} for a in self.agents}

    def step(
        self, actions: dict[str, Any]
    ) -> tuple[
        dict[str, NDArray],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        if not self.agents:
            raise RuntimeError("step: the episode has ended (or reset was not called); reset first")
        cfg = self.config
        acts = []
        for i, name in enumerate(self.possible_agents):
            if name not in actions:
                raise ValueError(f"actions: expected an action for {name!r}, received none")
            a = np.asarray(actions[name], dtype=np.float64).reshape(-1)
            if a.shape != (self.action_dims[i],):
                raise ValueError(
                    f"actions[{name!r}]: expected shape ({self.action_dims[i]},), "
                    f"received {np.asarray(actions[name]).shape}"
                )
            acts.append(np.clip(a, -1.0, 1.0))
        x, v = self._x, self._v
        new_v = np.empty_like(v)
        for i in range(cfg.n_agents):
            force = cfg.force_scale * self.force_matrices[i] @ acts[i]
            for j in self.neighbours[i]:
                force = force + cfg.spring * (x[j] - x[i])
            force = force - cfg.damping * v[i]
            new_v[i] = v[i] + cfg.dt * force / cfg.mass
        new_x = x + cfg.dt * new_v
        self._x, self._v = new_x, new_v
        self._t += 1
        dist = sum(float(np.linalg.norm(new_x[i] - self.targets[i])) for i in range(cfg.n_agents))
        cost = cfg.action_cost * sum(float(a @ a) for a in acts)
        reward = -dist - cost
        terminated = bool(np.abs(new_x).max() > cfg.box)
        truncated = self._t >= cfg.max_steps
        names = self.agents
        obs = self._observations()
        out = (
            obs,
            {a: reward for a in names},
            {a: terminated for a in names},
            {a: truncated for a in names},
            {a: dict[str, Any]() for a in names},
        )
        if terminated or truncated:
            self.agents = []
        return out

    def _observations(self) -> dict[str, NDArray]:
        x, v, g = self._x, self._v, self.targets
        out: dict[str, NDArray] = {}
        for i, name in enumerate(self.possible_agents):
            parts = [x[i], v[i], g[i] - x[i]] + [x[j] - x[i] for j in self.neighbours[i]]
            out[name] = np.concatenate(parts).astype(np.float32)
        return out

    def state(self) -> NDArray:
        """``[S]`` float32: all positions, then all velocities."""
        return np.concatenate([self._x.reshape(-1), self._v.reshape(-1)]).astype(np.float32)

    def render(self) -> None:
        return None

    def close(self) -> None:
        return None

    # ---------------------------------------------------- exact batched model
    def linear_dynamics(self) -> tuple[NDArray, NDArray]:
        """``(M [S, S], N [S, A])`` float64 with ``s' = M s + N clip(a)``."""
        cfg = self.config
        n, d = cfg.n_agents, cfg.space_dim
        lap = np.zeros((n, n))
        for i, nb in enumerate(self.neighbours):
            lap[i, i] = len(nb)
            for j in nb:
                lap[i, j] -= 1.0
        k = np.kron(lap, np.eye(d))  # [nD, nD]
        g = np.zeros((n * d, sum(self.action_dims)))
        col = 0
        for i, b in enumerate(self.force_matrices):
            g[i * d : (i + 1) * d, col : col + b.shape[1]] = cfg.force_scale * b
            col += b.shape[1]
        eye = np.eye(n * d)
        h, m = cfg.dt, cfg.mass
        vv = (1.0 - h * cfg.damping / m) * eye
        vx = -(h * cfg.spring / m) * k
        xx = eye + h * vx
        xv = h * vv
        big_m = np.block([[xx, xv], [vx, vv]])
        big_n = np.concatenate([(h * h / m) * g, (h / m) * g], axis=0)
        return big_m, big_n

    def _tensors(self, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        key = (device, dtype)
        if key not in self._torch_cache:
            big_m, big_n = self.linear_dynamics()
            n, d = self.config.n_agents, self.config.space_dim
            # the joint observation is affine in the state: o = W s + b
            s_dim = self.state_dim

            def sel(block: int, j: int) -> NDArray:  # [D, S] picks x_j (block 0) or v_j (1)
                out = np.zeros((d, s_dim))
                out[:, block * n * d + j * d : block * n * d + (j + 1) * d] = np.eye(d)
                return out

            rows: list[NDArray] = []
            const: list[NDArray] = []
            for i, nb in enumerate(self.neighbours):
                rows += [sel(0, i), sel(1, i), -sel(0, i)]
                const += [np.zeros(d), np.zeros(d), self.targets[i]]
                for j in nb:
                    rows.append(sel(0, j) - sel(0, i))
                    const.append(np.zeros(d))
            self._torch_cache[key] = {
                "M": torch.as_tensor(big_m, dtype=dtype, device=device),
                "N": torch.as_tensor(big_n, dtype=dtype, device=device),
                "obs_W": torch.as_tensor(np.concatenate(rows), dtype=dtype, device=device),
                "obs_b": torch.as_tensor(np.concatenate(const), dtype=dtype, device=device),
                "targets": torch.as_tensor(self.targets, dtype=dtype, device=device),
            }
        return self._torch_cache[key]

    def batched_step(
        self, state: torch.Tensor, joint_action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Exact dynamics: ``(s [..., S], a [..., A]) -> (s' [..., S], r [...], term [...])``.

        Actions are clipped to ``[-1, 1]`` as in :meth:`step`; computation is in ``state``'s
        dtype and on its device. ``term`` is bool. (Truncation depends on the step count, which
        the state does not hold.)
        """
        cfg = self.config
        check_tensor("state", state, floating=True)
        check_tensor("joint_action", joint_action, floating=True)
        if state.dim() < 1 or state.shape[-1] != self.state_dim:
            raise ValueError(
                f"state: expected shape (..., {self.state_dim}), received {tuple(state.shape)}"
            )
        a_dim = sum(self.action_dims)
        if joint_action.shape != (*state.shape[:-1], a_dim):
            raise ValueError(
                f"joint_action: expected shape {(*state.shape[:-1], a_dim)}, "
                f"received {tuple(joint_action.shape)}"
            )
        t = self._tensors(state.device, state.dtype)
        a = joint_action.to(state.dtype).clamp(-1.0, 1.0)
        next_state = state @ t["M"].T + a @ t["N"].T
        n, d = cfg.n_agents, cfg.space_dim
        pos = next_state[..., : n * d].unflatten(-1, (n, d))
        dist = torch.linalg.vector_norm(pos - t["targets"], dim=-1).sum(-1)
        reward = -dist - cfg.action_cost * a.square().sum(-1)
        terminated = pos.abs().flatten(-2).amax(-1) > cfg.box
        return next_state, reward, terminated

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        """Joint observation of a batch of states: ``[..., S] -> [..., O]`` (agent order)."""
        check_tensor("state", state, floating=True)
        if state.dim() < 1 or state.shape[-1] != self.state_dim:
            raise ValueError(
                f"state: expected shape (..., {self.state_dim}), received {tuple(state.shape)}"
            )
        t = self._tensors(state.device, state.dtype)
        return state @ t["obs_W"].T + t["obs_b"]

    def initial_state(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``[B, S]`` reset states drawn as :meth:`reset` does (velocities 0)."""
        check_int("batch_size", batch_size)
        n, d, r = self.config.n_agents, self.config.space_dim, self.config.init_range
        gen_device = generator.device if generator is not None else device
        u = torch.rand(batch_size, n * d, generator=generator, dtype=dtype, device=gen_device)
        pos = (2.0 * u - 1.0) * r
        return torch.cat([pos, torch.zeros_like(pos)], dim=-1).to(device or pos.device)


class ExactToyDynamics:
    """The true dynamics of a :class:`CoupledPointMasses` env, batched and exact.

    What :mod:`dimalib.training.diagnostics` compares the world model with (its ``TrueDynamics``
    protocol): ``dynamics(states [B, S], joint_action [B, A]) -> next states [B, S]`` and
    :meth:`rollout`.
    """

    def __init__(self, env: CoupledPointMasses) -> None:
        self.env = env

    def __call__(self, states: torch.Tensor, joint_action: torch.Tensor) -> torch.Tensor:
        return self.env.batched_step(states, joint_action)[0]

    def rollout(self, states: torch.Tensor, policy: Any, horizon: int) -> dict[str, torch.Tensor]:
        """``horizon`` steps of ``policy(obs [K, O]) -> [K, A]`` from ``states [K, S]``:
        ``rewards [H, K]`` (0 after termination), ``terminated [H, K]``, ``states [H + 1, K, S]``
        and ``actions [H, K, A]``."""
        s = states
        done = torch.zeros(s.shape[0], dtype=torch.bool, device=s.device)
        rewards, terms, visited, taken = [], [], [s], []
        for _ in range(horizon):
            a = policy(self.env.observe(s))
            s, r, term = self.env.batched_step(s, a)
            rewards.append(torch.where(done, torch.zeros_like(r), r))
            done = done | term
            terms.append(done)
            visited.append(s)
            taken.append(a)
        return {
            "rewards": torch.stack(rewards),
            "terminated": torch.stack(terms),
            "states": torch.stack(visited),
            "actions": torch.stack(taken),
        }
