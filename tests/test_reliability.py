"""A property-based sweep over the public API: bad input is refused before anything changes.

For every public entry point that takes user data, hypothesis draws one argument and one way to
break it (wrong rank, wrong size, empty batch, integer dtype, NaN/inf, a non-tensor, another
device) and checks that

- the call raises ``ValueError`` (or ``TypeError``) whose message starts with the argument's name,
- nothing changed: every parameter and buffer (running normalisers included), the replay buffer's
  rows and counters, and the imagination env's rollout state are bit-identical afterwards.

The dtype policy (``dimalib.utils.checks``) is tested beside it: float64 input gives the float32
result. Devices: the ``meta`` device stands in for "another device" on a CPU-only machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dimalib import MultiAgentSpec
from dimalib.data.buffer import ReplayBuffer
from dimalib.imagination import ImaginationConfig, ImaginationEnv
from dimalib.world_model import (
    DIMAWorldModel,
    EnsembleConfig,
    FSQStateDecoder,
    ProbabilisticEnsemble,
    RewardTerminationConfig,
    RewardTerminationGPT,
    StateDecoderConfig,
    WorldModelConfig,
)
from dimalib.world_model.dynamics import DenoiserConfig, RevealSchedule, SamplerConfig
from dimalib.world_model.dynamics.denoiser import SequentialAgentDenoiser

SPEC = MultiAgentSpec(("left", "right"), (4, 5), (2, 3), state_dim=6)
S, OB, A, L, B = SPEC.state_dim, SPEC.joint_obs_dim, SPEC.joint_action_dim, 3, 4
DYN = DenoiserConfig(channels=(16, 16), depths=(1, 1), cond_dim=32, action_token_dim=16)
GPT = RewardTerminationConfig(n_layer=1, n_head=2, n_embd=16, head_hidden=16, max_steps=5)
DEC = StateDecoderConfig(hidden_dim=16)
SWEEP = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

CORRUPTIONS = ("rank", "size", "empty", "integer", "nan", "inf", "not_tensor", "device")


def _corrupt(x: torch.Tensor, kind: str, data: st.DataObject) -> object:
    """``x`` broken in the way ``kind`` names."""
    if kind == "rank":
        return x[None] if data.draw(st.booleans()) or x.dim() == 1 else x[..., 0]
    if kind == "size":
        # the batch size is read from the first argument, so a batch mismatch is reported for
        # whichever argument disagrees with it: change a trailing dimension (1-D: the batch)
        dim = data.draw(st.integers(min(1, x.dim() - 1), x.dim() - 1))
        shape = list(x.shape)
        shape[dim] += data.draw(st.sampled_from([-1, 1, 2, 3]))
        return torch.zeros(shape, dtype=x.dtype)
    if kind == "empty":
        return x[:0]
    if kind == "integer":
        return x.to(torch.int64) if x.is_floating_point() else x.to(torch.float32)
    if kind in ("nan", "inf"):
        y = x.clone()
        flat = y.view(-1)
        flat[data.draw(st.integers(0, flat.numel() - 1))] = float(kind)
        return y
    if kind == "not_tensor":
        return x.tolist()
    if kind == "device":
        return x.to("meta")
    raise AssertionError(kind)


def _applicable(x: torch.Tensor, kind: str) -> bool:
    if kind in ("nan", "inf"):
        return x.is_floating_point()
    return True


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_unchanged(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = module.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), f"{key} changed by a refused call"


def _refused(call: Callable[[], object], argument: str, *others: str) -> None:
    """``call`` raises, naming ``argument`` (or one of ``others``) first in its message."""
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert str(info.value).startswith((argument, *others)), (argument, str(info.value))


def _draw_break(
    data: st.DataObject, inputs: dict[str, torch.Tensor], kinds: tuple[str, ...] = CORRUPTIONS
) -> tuple[str, dict[str, object]]:
    name = data.draw(st.sampled_from(sorted(inputs)), label="argument")
    kind = data.draw(
        st.sampled_from([k for k in kinds if _applicable(inputs[name], k)]), label="corruption"
    )
    broken: dict[str, object] = dict(inputs)
    broken[name] = _corrupt(inputs[name], kind, data)
    return name, broken


def _dynamics_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "states": torch.randn(B, L, S, generator=g),
        "actions": torch.rand(B, L, A, generator=g) * 2 - 1,
        "mask": torch.ones(B, L, dtype=torch.bool),
        "next_state": torch.randn(B, S, generator=g),
    }


# --------------------------------------------------------------------------- models
@SWEEP
@given(data=st.data())
def test_denoiser_loss_refuses_bad_batches_before_updating_anything(data: st.DataObject) -> None:
    torch.manual_seed(0)
    model = SequentialAgentDenoiser(SPEC, DYN).train()  # training mode: the normaliser updates
    before = _snapshot(model)
    name, broken = _draw_break(data, _dynamics_batch())
    _refused(lambda: model.loss(broken), name)  # type: ignore[arg-type]
    _assert_unchanged(model, before)


@SWEEP
@given(data=st.data())
def test_denoiser_prediction_refuses_bad_inputs(data: st.DataObject) -> None:
    torch.manual_seed(0)
    model = SequentialAgentDenoiser(SPEC, DYN).eval()
    batch = _dynamics_batch()
    inputs = {"states": batch["states"], "actions": batch["actions"], "mask": batch["mask"]}
    before = _snapshot(model)
    name, broken = _draw_break(data, inputs)
    _refused(lambda: model.predict_next_state(**broken), name)  # type: ignore[arg-type]
    _assert_unchanged(model, before)


@SWEEP
@given(data=st.data())
def test_ensemble_loss_refuses_bad_batches_before_updating_anything(data: st.DataObject) -> None:
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(SPEC, EnsembleConfig(members=2, hidden_dim=16, context=L))
    before = _snapshot(model.train())
    batch = _dynamics_batch()
    del batch["mask"]
    name, broken = _draw_break(data, batch)
    # the number of steps is free ([B, T >= context, S]); actions must then have as many
    also = ("actions",) if name == "states" else ()
    _refused(lambda: model.loss(broken), name, *also)  # type: ignore[arg-type]
    _assert_unchanged(model, before)


@SWEEP
@given(data=st.data())
def test_reward_model_loss_refuses_bad_inputs(data: st.DataObject) -> None:
    torch.manual_seed(0)
    model = RewardTerminationGPT(SPEC, GPT).train()
    g = torch.Generator().manual_seed(1)
    inputs = {
        "states": torch.randn(B, L, S, generator=g),
        "actions": torch.rand(B, L, A, generator=g) * 2 - 1,
        "rewards": torch.randn(B, L, generator=g),
        "terminations": torch.zeros(B, L, dtype=torch.bool),
        "mask": torch.ones(B, L, dtype=torch.bool),
    }
    # a float termination in [0, 1] is a valid target, so "integer" does not break it
    name, broken = _draw_break(data, inputs)
    if name == "terminations" and not isinstance(broken[name], list):
        t = broken[name]
        assert isinstance(t, torch.Tensor)
        if t.shape == (B, L) and t.device.type == "cpu" and t.dtype == torch.float32:
            return
    before = _snapshot(model)
    # the number of steps T is free; the other arguments must then have as many
    also = ("actions", "rewards", "terminations", "mask") if name == "states" else ()
    _refused(lambda: model.loss(**broken), name, *also)  # type: ignore[arg-type]
    _assert_unchanged(model, before)


@SWEEP
@given(data=st.data())
def test_decoder_loss_refuses_bad_inputs(data: st.DataObject) -> None:
    torch.manual_seed(0)
    model = FSQStateDecoder(SPEC, DEC).train()
    g = torch.Generator().manual_seed(2)
    inputs = {"state": torch.randn(B, S, generator=g), "joint_obs": torch.randn(B, OB, generator=g)}
    name, broken = _draw_break(data, inputs)
    if name == "state" and isinstance(broken[name], torch.Tensor):
        t = broken[name]
        assert isinstance(t, torch.Tensor)
        if t.dim() == 3 and t.shape[-1] == S:  # a leading axis added: a valid batch shape,
            return  # the mismatch is then reported for joint_obs (tested below)
    before = _snapshot(model)
    _refused(lambda: model.loss(**broken), name)  # type: ignore[arg-type]
    _assert_unchanged(model, before)


def test_float64_input_gives_the_float32_result() -> None:
    """The dtype policy: floating input of any precision is converted to the model's dtype."""
    torch.manual_seed(0)
    batch = _dynamics_batch()
    wide = {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}
    for make in (
        lambda: SequentialAgentDenoiser(SPEC, DYN),
        lambda: ProbabilisticEnsemble(SPEC, EnsembleConfig(members=2, hidden_dim=16)),
    ):
        torch.manual_seed(1)
        a = make().train()
        torch.manual_seed(1)
        b = make().train()
        b.load_state_dict(a.state_dict())
        torch.manual_seed(5)
        loss_a, _ = a.loss(dict(batch))
        torch.manual_seed(5)
        loss_b, _ = b.loss(wide)
        assert loss_b.dtype == torch.float32
        torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-7)
        _assert_unchanged(b, _snapshot(a))  # the normaliser saw the same values
    gpt = RewardTerminationGPT(SPEC, GPT).eval()
    r32, _ = gpt.predict(batch["states"], batch["actions"])
    r64, _ = gpt.predict(batch["states"].double(), batch["actions"].double())
    assert r64.dtype == torch.float32
    torch.testing.assert_close(r64, r32, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- replay buffer
def _rows(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "state": torch.randn(2, S, generator=g),
        "obs": torch.randn(2, OB, generator=g),
        "action": torch.rand(2, A, generator=g) * 2 - 1,
        "reward": torch.randn(2, generator=g),
        "terminated": torch.zeros(2, dtype=torch.bool),
        "truncated": torch.tensor([False, True]),
        "next_state": torch.randn(2, S, generator=g),
        "next_obs": torch.randn(2, OB, generator=g),
    }


@SWEEP
@given(data=st.data())
def test_buffer_add_refuses_bad_rows_and_keeps_its_contents(data: st.DataObject) -> None:
    buf = ReplayBuffer(SPEC, capacity=20, num_streams=2)
    for seed in range(3):
        buf.add(**_rows(seed))
    before = {k: v.clone() for k, v in buf._data.items()}
    counters = (list(buf._pos), list(buf._size), list(buf._episode), buf._next_episode, len(buf))
    # the buffer is the env -> device boundary: arrays and other devices' tensors are copied to
    # its device by design, so "not a tensor" and "another device" are valid there
    kinds = tuple(k for k in CORRUPTIONS if k not in ("not_tensor", "device"))
    name, broken = _draw_break(data, _rows(7), kinds)
    _refused(lambda: buf.add(**broken), name)  # type: ignore[arg-type]
    assert (list(buf._pos), list(buf._size), list(buf._episode), buf._next_episode, len(buf)) == (
        counters
    )
    for key, value in before.items():
        assert torch.equal(buf._data[key], value), key
    buf.add(**_rows(9))  # still usable
    assert len(buf) == counters[-1] + 2


def test_buffer_accepts_numpy_float64_rows() -> None:
    a, b = ReplayBuffer(SPEC, capacity=10), ReplayBuffer(SPEC, capacity=10)
    rows = {k: v[:1] for k, v in _rows().items()}
    a.add(**rows)  # type: ignore[arg-type]
    b.add(**{k: v.numpy().astype(np.float64) if v.is_floating_point() else v.numpy()
             for k, v in rows.items()})  # fmt: skip
    for key in a._data:
        assert torch.equal(a._data[key], b._data[key]), key


# --------------------------------------------------------------------------- imagination
def _imagination() -> ImaginationEnv:
    torch.manual_seed(0)
    wm = DIMAWorldModel(SPEC, WorldModelConfig(dynamics=DYN, reward=GPT, decoder=DEC)).eval()
    g = torch.Generator().manual_seed(3)
    ctx = {
        "states": torch.randn(B, L, S, generator=g),
        "actions": torch.rand(B, L - 1, A, generator=g) * 2 - 1,
        "mask": torch.ones(B, L, dtype=torch.bool),
        "obs": torch.randn(B, OB, generator=g),
    }
    cfg = ImaginationConfig(num_envs=B, horizon=4, check_actions="step")
    env = ImaginationEnv(wm, ctx, cfg, seed=0)
    env.reset()
    return env


@SWEEP
@given(data=st.data())
def test_imagination_step_refuses_bad_actions_and_keeps_the_rollout(data: st.DataObject) -> None:
    env = _imagination()
    good = torch.rand(B, A, generator=torch.Generator().manual_seed(4)) * 2 - 1
    env.step(good)
    state = (env.t, env._states.clone(), env._actions.clone(), env._obs.clone())
    weights = _snapshot(env.world_model)
    _, broken = _draw_break(data, {"joint_action": good})
    _refused(lambda: env.step(broken["joint_action"]), "joint_action")  # type: ignore[arg-type]
    assert env.t == state[0]
    for now, then in zip((env._states, env._actions, env._obs), state[1:], strict=True):
        assert torch.equal(now, then)
    _assert_unchanged(env.world_model, weights)
    # the rollout continues exactly as an untouched one
    twin = _imagination()
    twin.step(good)
    torch.testing.assert_close(env.step(good).obs, twin.step(good).obs, rtol=0, atol=0)


# --------------------------------------------------------------------------- configs
@given(
    order=st.one_of(
        st.text(min_size=1, max_size=12).filter(lambda s: s not in ("ascending", "descending",
                                                                    "random")),
        st.just(()),
        st.lists(st.one_of(st.floats(), st.none(), st.booleans()), min_size=1, max_size=3),
    )
)  # fmt: skip
def test_bad_orders_are_refused_when_the_config_is_made(order: Any) -> None:
    _refused(lambda: ImaginationConfig(order=order), "order")


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: RevealSchedule(kind="halfway"), "kind"),  # type: ignore[arg-type]
        (lambda: RevealSchedule(reveal_all_by=1.5), "reveal_all_by"),
        (lambda: RevealSchedule(kind="explicit"), "sets"),
        (lambda: SamplerConfig(num_steps=0), "num_steps"),
        (lambda: MultiAgentSpec("ab", (1, 1), (1, 1), 2), "agent_names"),  # type: ignore[arg-type]
        (lambda: MultiAgentSpec(("a",), (1,), (1,), -3), "state_dim"),
        (lambda: MultiAgentSpec(("a",), (1,), (1.5,), 2), "action_dims"),  # type: ignore[arg-type]
        (lambda: ImaginationConfig(num_envs=0), "num_envs"),
        (lambda: ImaginationConfig(horizon=0), "horizon"),
    ],
)
def test_bad_configs_are_refused_naming_the_field(
    make: Callable[[], object], argument: str
) -> None:
    _refused(make, argument)


def test_numpy_integer_sizes_are_sizes() -> None:
    spec = MultiAgentSpec(("a", "b"), np.array([3, 4]), (np.int64(2), np.int32(1)), np.int64(5))  # type: ignore[arg-type]
    assert spec.obs_dims == (3, 4) and spec.action_dims == (2, 1) and spec.state_dim == 5
    assert all(type(d) is int for d in (*spec.obs_dims, *spec.action_dims, spec.state_dim))


@SWEEP
@given(data=st.data())
def test_mappo_act_refuses_bad_observations(data: st.DataObject) -> None:
    from dimalib.algorithms.mappo import MAPPO

    torch.manual_seed(0)
    learner = MAPPO(SPEC)
    obs = torch.randn(B, OB, generator=torch.Generator().manual_seed(5))
    weights = _snapshot(learner.actor)
    # the env -> policy boundary converts devices explicitly, and any leading shape is a batch
    kinds = ("size", "integer", "nan", "inf", "not_tensor")
    _, broken = _draw_break(data, {"joint_obs": obs}, kinds)
    _refused(lambda: learner.act(broken["joint_obs"]), "joint_obs")  # type: ignore[arg-type]
    _assert_unchanged(learner.actor, weights)
    wide = learner.act(obs.double(), deterministic=True)
    assert torch.equal(wide, learner.act(obs, deterministic=True))


@given(capacity=st.integers(10**11, 10**15))
def test_a_buffer_larger_than_memory_is_refused_before_allocating(capacity: int) -> None:
    with pytest.raises(ValueError, match=r"^capacity: expected storage that fits in cpu memory"):
        ReplayBuffer(SPEC, capacity=capacity)


def test_finiteness_is_checked_after_the_cast() -> None:
    """1e39 is finite in float64 and inf in float32: the converted value is what is checked."""
    torch.manual_seed(0)
    model = SequentialAgentDenoiser(SPEC, DYN).train()
    before = _snapshot(model)
    batch = {k: (v.double() if v.is_floating_point() else v) for k, v in _dynamics_batch().items()}
    batch["next_state"][0, 0] = 1e39
    _refused(lambda: model.loss(batch), "next_state")
    _assert_unchanged(model, before)  # the normaliser did not see the overflowing value
    wide = torch.zeros(B, L, S, dtype=torch.float64)
    wide[0, 0, 0] = 1e39
    gpt = RewardTerminationGPT(SPEC, GPT)
    _refused(lambda: gpt.predict(wide, torch.zeros(B, L, A, dtype=torch.float64)), "states")
    dec = FSQStateDecoder(SPEC, DEC)
    _refused(lambda: dec(wide[:, 0]), "state")


def test_an_index_less_device_matches_any_index_of_its_type() -> None:
    from dimalib.utils.checks import check_tensor

    x = torch.zeros(2)
    assert check_tensor("x", x, device=torch.device("cpu")) is x
    with pytest.raises(ValueError, match="x: expected a tensor on cpu, received one on meta"):
        check_tensor("x", x.to("meta"), device=torch.device("cpu"))
    with pytest.raises(ValueError, match="x: expected a tensor with data"):
        check_tensor("x", x.to("meta"), finite=True)
