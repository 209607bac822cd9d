"""TorchRL view of an :class:`ImaginationEnv` (optional dependency: ``pip install dimalib[torchrl]``).

Importing this module needs TorchRL (``torchrl>=0.11`` with its ``tensordict``); without it the
import raises ``ImportError`` saying how to install it. :mod:`dimalib.imagination` itself never
imports this module, so dimalib works without TorchRL.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

try:
    import tensordict  # noqa: F401 - fail early, with the message below
    import torchrl  # noqa: F401
    from tensordict import TensorDict, TensorDictBase
    from torchrl.data import Bounded, Categorical, Composite, Unbounded
    from torchrl.envs import EnvBase
except ImportError as err:  # pragma: no cover - depends on the installed packages
    raise ImportError(
        "dimalib.imagination.torchrl_env needs TorchRL (torchrl>=0.11 and tensordict); install "
        "it with `pip install dimalib[torchrl]` (or `pip install torchrl`)"
    ) from err

from dimalib.imagination.env import ImaginationEnv

__all__ = ["TorchRLImaginationEnv"]


class TorchRLImaginationEnv(EnvBase):
    """TorchRL ``EnvBase`` over an :class:`ImaginationEnv` (``batch_size = [N]``, ``N = num_envs``).

    Args:
        imagination_env: the imagined environment; the TorchRL env lives on its device.
        group_map: TorchRL's multi-agent grouping (its ``MarlGroupMapType``).
            ``"one_per_agent"``: one group per agent, named after it, with the agent's own
            observation and action sizes (``[N, 1, obs_dims[i]]``, ``[N, 1, action_dims[i]]``),
            so a policy samples no dummy action entries. ``"all_in_one"``: one ``"agents"``
            group of shape ``[N, n_agents]``, padded to the largest sizes (below). Default
            ``"auto"``: all in one when every agent has the same observation and action size,
            one per agent otherwise.

    Keys with ``group_map="one_per_agent"``: ``(name, "observation" | "action" | "reward" |
    "done" | "terminated" | "truncated")`` per agent, shapes ``[N, 1, ...]``, plus the root keys
    below. Keys with ``"all_in_one"`` (one ``"agents"`` group of shape ``[N, n_agents]``):

    * ``("agents", "observation")`` ``[N, n_agents, max_obs]`` float32: agent ``i``'s observation
      in ``[..., i, :obs_dims[i]]``, zero padded;
    * ``("agents", "action")`` ``[N, n_agents, max_act]`` float32, bounded by the spec (padding
      entries ``[-1, 1]``, ignored by the world model);
    * ``("agents", "reward")`` ``[N, n_agents, 1]``: the shared predicted team reward;
    * ``("agents", "done" | "terminated" | "truncated")`` ``[N, n_agents, 1]`` bool, and the same
      three at the root ``[N, 1]``;
    * root ``"state"`` ``[N, S]`` (the global state) and ``"termination_prob"`` ``[N, 1]``.

    Episodes: every rollout is truncated at the horizon, and the following reset restarts them
    all. With ``ImaginationConfig(autoreset=True)`` a partial reset (TorchRL's ``"_reset"`` mask)
    restarts the named rollouts at once from fresh contexts (:meth:`ImaginationEnv.restart`), so
    ``RewardSum`` and collectors count imagined episodes right (tested). Without it, a rollout
    that terminates earlier cannot restart alone: a partial reset (TorchRL's
    ``"_reset"`` mask, e.g. from ``rollout(..., break_when_any_done=False)`` or a collector) leaves
    it done (``allow_done_after_reset``) in an absorbing state with reward 0 until the horizon.
    A partial reset that names a rollout that has not ended raises ``ValueError``.
    ``set_seed(s)`` reseeds the ImaginationEnv at the next full reset. TorchRL's partial steps
    (``"_step"``) are not supported: every rollout is always stepped (ended ones stay
    absorbing).
    """

    def __init__(
        self,
        imagination_env: ImaginationEnv,
        *,
        group_map: Literal["auto", "all_in_one", "one_per_agent"] = "auto",
    ) -> None:
        if group_map not in ("auto", "all_in_one", "one_per_agent"):
            raise ValueError(
                "group_map: expected 'auto', 'all_in_one' or 'one_per_agent', received "
                f"{group_map!r}"
            )
        if not isinstance(imagination_env, ImaginationEnv):
            raise ValueError(
                "imagination_env: expected an ImaginationEnv, received "
                f"{type(imagination_env).__name__}"
            )
        env = imagination_env
        n_envs = env.num_envs
        super().__init__(
            device=env.device, batch_size=torch.Size([n_envs]), allow_done_after_reset=True
        )
        self.imagination_env = env
        self.multi_agent_spec = spec = env.spec
        if group_map == "auto":
            same = len(set(spec.obs_dims)) == 1 and len(set(spec.action_dims)) == 1
            group_map = "all_in_one" if same else "one_per_agent"
        self.group_map = group_map
        self._groups = ("agents",) if group_map == "all_in_one" else tuple(spec.agent_names)
        k, dev = spec.n_agents, env.device
        m_obs, m_act = spec.max_obs_dim, spec.max_action_dim
        low, high = spec.action_bounds(device=dev)
        mask = spec.action_mask(dev)
        pad_low = torch.where(mask, spec.pad_actions(low[None])[0], -1.0)
        pad_high = torch.where(mask, spec.pad_actions(high[None])[0], 1.0)

        def flags(*shape: int) -> Categorical:
            return Categorical(2, shape=torch.Size(shape), dtype=torch.bool, device=dev)

        self._seed_next: int | None = None
        self._ended = torch.zeros(n_envs, dtype=torch.bool, device=dev)
        self._last: dict[str, torch.Tensor] = {}
        if group_map == "one_per_agent":
            self._per_agent_specs(flags)
            return

        self.observation_spec = Composite(
            agents=Composite(
                observation=Unbounded((n_envs, k, m_obs), dtype=torch.float32, device=dev),
                shape=(n_envs, k),
            ),
            state=Unbounded((n_envs, spec.state_dim), dtype=torch.float32, device=dev),
            termination_prob=Unbounded((n_envs, 1), dtype=torch.float32, device=dev),
            shape=(n_envs,),
        )
        self.action_spec = Composite(
            agents=Composite(
                action=Bounded(
                    low=pad_low.expand(n_envs, k, m_act).clone(),
                    high=pad_high.expand(n_envs, k, m_act).clone(),
                    shape=(n_envs, k, m_act),
                    dtype=torch.float32,
                    device=dev,
                ),
                shape=(n_envs, k),
            ),
            shape=(n_envs,),
        )
        self.reward_spec = Composite(
            agents=Composite(
                reward=Unbounded((n_envs, k, 1), dtype=torch.float32, device=dev),
                shape=(n_envs, k),
            ),
            shape=(n_envs,),
        )
        self.done_spec = Composite(
            done=flags(n_envs, 1),
            terminated=flags(n_envs, 1),
            truncated=flags(n_envs, 1),
            agents=Composite(
                done=flags(n_envs, k, 1),
                terminated=flags(n_envs, k, 1),
                truncated=flags(n_envs, k, 1),
                shape=(n_envs, k),
            ),
            shape=(n_envs,),
        )

    def _per_agent_specs(self, flags: Any) -> None:
        """The specs of ``group_map="one_per_agent"``: a group of one agent per agent name."""
        spec, n_envs, dev = self.multi_agent_spec, self.imagination_env.num_envs, self.device
        low, high = spec.action_bounds(device=dev)
        root = {
            "state": Unbounded((n_envs, spec.state_dim), dtype=torch.float32, device=dev),
            "termination_prob": Unbounded((n_envs, 1), dtype=torch.float32, device=dev),
        }
        obs, act, rew, done = {}, {}, {}, {}
        for i, name in enumerate(spec.agent_names):
            a = spec.action_slices[i]
            obs[name] = Composite(
                observation=Unbounded(
                    (n_envs, 1, spec.obs_dims[i]), dtype=torch.float32, device=dev
                ),
                shape=(n_envs, 1),
            )
            act[name] = Composite(
                action=Bounded(
                    low=low[a].expand(n_envs, 1, -1).clone(),
                    high=high[a].expand(n_envs, 1, -1).clone(),
                    shape=(n_envs, 1, spec.action_dims[i]),
                    dtype=torch.float32,
                    device=dev,
                ),
                shape=(n_envs, 1),
            )
            rew[name] = Composite(
                reward=Unbounded((n_envs, 1, 1), dtype=torch.float32, device=dev),
                shape=(n_envs, 1),
            )
            done[name] = Composite(
                done=flags(n_envs, 1, 1),
                terminated=flags(n_envs, 1, 1),
                truncated=flags(n_envs, 1, 1),
                shape=(n_envs, 1),
            )
        self.observation_spec = Composite(**obs, **root, shape=(n_envs,))
        self.action_spec = Composite(**act, shape=(n_envs,))
        self.reward_spec = Composite(**rew, shape=(n_envs,))
        self.done_spec = Composite(
            done=flags(n_envs, 1),
            terminated=flags(n_envs, 1),
            truncated=flags(n_envs, 1),
            **done,
            shape=(n_envs,),
        )

    # ------------------------------------------------------------------ EnvBase
    def _set_seed(self, seed: int | None) -> None:
        self._seed_next = seed

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        env = self.imagination_env
        mask = self._reset_mask(tensordict)
        full = mask is None or env.t < 0 or env.t >= env.horizon or bool(mask.all())
        n_envs = env.num_envs
        if full:
            obs, state = env.reset(seed=self._seed_next)
            self._seed_next = None
            self._ended = torch.zeros(n_envs, dtype=torch.bool, device=env.device)
            terminated = self._ended.clone()
            prob = torch.zeros(n_envs, device=env.device)
        elif env.config.autoreset:  # a partial reset: those rollouts restart now
            assert mask is not None
            obs, state = env.restart(mask)
            self._ended = self._ended & ~mask
            terminated = self._ended.clone()
            prob = torch.where(mask, torch.zeros_like(self._last["prob"]), self._last["prob"])
        else:
            assert mask is not None
            if bool((mask & ~self._ended).any()):
                raise ValueError(
                    "_reset: the imagined rollouts restart together (at the horizon); a partial "
                    "reset may only name rollouts that already ended, received a reset for a "
                    "live rollout"
                )
            obs, state = self._last["obs"], self._last["state"]
            terminated, prob = self._ended.clone(), self._last["prob"]
        truncated = torch.zeros_like(terminated)
        return self._pack(obs, state, prob, terminated, truncated, reward=None)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        env, spec = self.imagination_env, self.multi_agent_spec
        if self.group_map == "all_in_one":
            padded = tensordict.get(("agents", "action"))
            joint = spec.unpad_actions(padded.to(torch.float32))
        else:  # [N, 1, action_dims[i]] per group, concatenated in spec order
            parts = [tensordict.get((name, "action"))[:, 0] for name in self._groups]
            joint = torch.cat(parts, dim=-1).to(torch.float32)
        out = env.step(joint)
        self._ended = out.terminated | out.truncated
        return self._pack(
            out.obs, out.state, out.termination_prob, out.terminated, out.truncated, out.reward
        )

    # ------------------------------------------------------------------ helpers
    def _reset_mask(self, tensordict: TensorDictBase | None) -> torch.Tensor | None:
        """``[N]`` bool rollouts to reset, from the root or the group ``"_reset"``; None: all."""
        if tensordict is None:
            return None
        for key in ("_reset", *((group, "_reset") for group in self._groups)):
            value = tensordict.get(key, None)
            if value is not None:
                return value.reshape(self.imagination_env.num_envs, -1).any(-1)
        return None

    def _pack(
        self,
        obs: torch.Tensor,
        state: torch.Tensor,
        prob: torch.Tensor,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        reward: torch.Tensor | None,
    ) -> TensorDictBase:
        spec = self.multi_agent_spec
        n_envs, k = self.imagination_env.num_envs, spec.n_agents
        self._last = {"obs": obs, "state": state, "prob": prob}
        done = terminated | truncated
        width = k if self.group_map == "all_in_one" else 1

        def per_agent(x: torch.Tensor) -> torch.Tensor:
            return x[:, None, None].expand(n_envs, width, 1).clone()

        def group(observation: torch.Tensor) -> TensorDictBase:
            values: dict[str, torch.Tensor] = {
                "observation": observation,
                "done": per_agent(done),
                "terminated": per_agent(terminated),
                "truncated": per_agent(truncated),
            }
            if reward is not None:
                values["reward"] = per_agent(reward)
            return TensorDict(values, batch_size=(n_envs, width))

        if self.group_map == "all_in_one":
            groups = {"agents": group(spec.pad_obs(obs))}
        else:
            parts = spec.split_obs(obs)
            groups = {name: group(parts[i][:, None]) for i, name in enumerate(self._groups)}
        return TensorDict(
            {
                **groups,
                "state": state,
                "termination_prob": prob[:, None].clone(),
                "done": done[:, None].clone(),
                "terminated": terminated[:, None].clone(),
                "truncated": truncated[:, None].clone(),
            },
            batch_size=(n_envs,),
            device=self.imagination_env.device,
        )
