"""Named agent groups in `MultiAgentSpec`, schedules over them and the shared action encoder."""

from __future__ import annotations

import csv
import dataclasses
import math
import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dimalib.cli import main
from dimalib.cli.args import parse_args
from dimalib.spec import MultiAgentSpec
from dimalib.training.trainer import Trainer
from dimalib.world_model.dynamics import (
    DenoiserConfig,
    RevealSchedule,
    SamplerConfig,
    SequentialAgentDenoiser,
)
from dimalib.world_model.dynamics.conditioning import AgentActionEncoder
from dimalib.world_model.dynamics.reveal import contiguous_groups
from tests.test_cli import TINY as TINY_RUN  # the tiny trainer flags

SIGMAS = torch.tensor([5.0, 0.84, 0.077, 0.002, 0.0])
TINY = DenoiserConfig(channels=(8, 8), depths=(1, 1), cond_dim=16, action_token_dim=8)


def team(n: int = 5, action_dims: tuple[int, ...] | None = None, **kw: object) -> MultiAgentSpec:
    dims = action_dims or (1,) * n
    names = tuple("abcdefghij"[:n])
    return MultiAgentSpec(names, (2,) * n, dims, state_dim=6, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- the spec
def test_default_is_one_group_per_agent_named_after_it() -> None:
    spec = team(3)
    assert spec.groups == (("a", ("a",)), ("b", ("b",)), ("c", ("c",)))
    assert spec.group_members == ((0,), (1,), (2,)) and spec.group_of == (0, 1, 2)
    assert spec.n_groups == 3 and not spec.has_groups


def test_named_groups_by_name_index_or_pairs() -> None:
    by_name = team(4, groups={"left": ("a", "c"), "right": ("b", "d")})
    by_index = team(4, groups=[("left", (0, 2)), ("right", (1, 3))])
    for spec in (by_name, by_index):
        assert spec.groups == (("left", ("a", "c")), ("right", ("b", "d")))
        assert spec.group_names == ("left", "right")
        assert spec.group_members == ((0, 2), (1, 3)) and spec.group_of == (0, 1, 0, 1)
        assert spec.has_groups


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ({"x": ("a", "b"), "y": ("b", "c")}, "'b' is in more than one group"),
        ({"x": ("a",), "y": ("c",)}, r"\['b'\] are in none"),
        ({"x": ("a", "b", "z")}, "unknown agent 'z' in group 'x'"),
        ({"x": (0, 1, 7)}, r"unknown agent 7 in group 'x'.*0\.\.2"),
        ({"x": ()}, "non-empty sequence of agents for group 'x'"),
        ({"": ("a", "b", "c")}, "non-empty string group names"),
        ([("x", ("a",)), ("x", ("b", "c"))], "unique group names"),
        ("abc", "expected a mapping"),
        ({}, "at least one group"),
    ],
)
def test_bad_groups_are_rejected_naming_the_problem(groups: object, message: str) -> None:
    with pytest.raises(ValueError, match=rf"groups: .*{message}"):
        team(3, groups=groups)


def test_with_groups_contiguous_matches_the_reveal_helper() -> None:
    spec = team(7)
    for k in (1, 2, 3, 7):
        grouped = spec.with_groups(k)
        assert grouped.group_members == contiguous_groups(7, k)
        assert grouped.group_names == tuple(f"group{g}" for g in range(k))
    assert spec.with_groups(3).with_groups(None).groups == spec.groups
    with pytest.raises(ValueError, match="groups: expected at most n_agents=7"):
        spec.with_groups(8)


def test_groups_survive_relabelling_dicts_and_pickles_but_not_equality() -> None:
    spec = team(4, groups={"p": ("a", "d"), "q": ("b", "c")})
    relabelled = spec.permuted((3, 2, 1, 0))  # new agent j is old agent 3 - j
    assert relabelled.groups == spec.groups  # by name
    assert relabelled.group_members == ((0, 3), (1, 2))
    assert MultiAgentSpec.from_dict(spec.to_dict()).groups == spec.groups
    assert pickle.loads(pickle.dumps(spec)).groups == spec.groups
    old = spec.to_dict()
    del old["groups"]  # a checkpoint written before groups existed
    assert MultiAgentSpec.from_dict(old).groups == team(4).groups
    state = dict(spec.__dict__)
    del state["groups"]  # a spec pickled before groups existed
    restored = object.__new__(MultiAgentSpec)
    restored.__setstate__(state)
    assert restored.group_members == ((0,), (1,), (2,), (3,))
    assert spec == team(4) and hash(spec) == hash(team(4))  # groups are not the data layout


# ------------------------------------------------------------------------------- reveal schedules
def test_int_groups_equal_explicit_contiguous_groups() -> None:
    for kind, k in (("cumulative", 3), ("sequential", 2)):  # sequential: 4 steps, 2 units
        by_count = RevealSchedule(kind, groups=k)  # type: ignore[arg-type]
        explicit = RevealSchedule(kind, groups=contiguous_groups(7, k))  # type: ignore[arg-type]
        assert torch.equal(by_count.masks(7, SIGMAS), explicit.masks(7, SIGMAS))
        assert by_count.units(7) == k
    with pytest.raises(ValueError, match="groups: expected at most n_agents=2 groups"):
        RevealSchedule(groups=3).units(2)
    for bad in (0, -1, "team", True):
        with pytest.raises(ValueError, match="groups"):
            RevealSchedule(groups=bad)  # type: ignore[arg-type]


def test_spec_groups_are_resolved_against_the_team() -> None:
    reveal = RevealSchedule("cumulative", groups="spec")
    with pytest.raises(ValueError, match=r"groups: 'spec' names the team's groups.*for_team"):
        reveal.masks(4, SIGMAS)
    spec = team(4, groups={"p": ("a", "d"), "q": ("b", "c")})
    assert reveal.for_team(spec).groups == (("a", "d"), ("b", "c"))  # by name
    assert reveal.for_team(team(4)).groups is None  # one group per agent: the per-agent schedule
    other = RevealSchedule(groups=2)
    assert other.for_team(spec) is other
    # descending over the two groups: q (agents 1, 2) first, then everyone
    expected = [[0, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]
    got = reveal.for_team(spec).masks(4, SIGMAS, agent_names=spec.agent_names)
    assert got.int().tolist() == expected
    assert RevealSchedule(groups=((0, 3), (1, 2))).by_name(spec).groups == (("a", "d"), ("b", "c"))
    assert RevealSchedule(groups=2).by_name(spec).groups == (("a", "b"), ("c", "d"))


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(0, 3), min_size=2, max_size=9).filter(lambda g: len(set(g)) >= 2),
    st.integers(0, 2**31 - 1),
)
def test_training_draws_unions_of_the_specs_groups(owner: list[int], seed: int) -> None:
    """Law: with groups="spec" every training draw is a non-empty union of whole named groups."""
    names = tuple(f"agent{i}" for i in range(len(owner)))
    labels = sorted(set(owner))
    groups = {
        f"g{g}": tuple(n for n, o in zip(names, owner, strict=True) if o == g) for g in labels
    }
    spec = MultiAgentSpec(names, (1,) * len(names), (1,) * len(names), 3, groups=groups)
    model = SequentialAgentDenoiser(
        spec, dataclasses.replace(TINY, sampler=SamplerConfig(reveal=RevealSchedule(groups="spec")))
    )
    sigma = torch.exp(torch.randn(64, generator=torch.Generator().manual_seed(seed)))
    drawn = model.sample_revealed(sigma, generator=torch.Generator().manual_seed(seed))
    assert drawn.any(dim=1).all()
    owner_t = torch.tensor(owner)
    for g in labels:  # every group is revealed whole or not at all
        members = drawn[:, owner_t == g]
        assert (members.all(dim=1) | ~members.any(dim=1)).all()


def perturbed(model: SequentialAgentDenoiser, seed: int = 0) -> SequentialAgentDenoiser:
    """A fresh model ignores its actions (zero-initialised output layers): give every parameter
    noise so that its predictions depend on them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


def predict(
    model: SequentialAgentDenoiser, states: torch.Tensor, actions: torch.Tensor, **kw: object
) -> torch.Tensor:
    return model.predict_next_state(
        states, actions, generator=torch.Generator().manual_seed(3), **kw
    )  # type: ignore[arg-type]


def test_denoiser_with_spec_groups_equals_one_with_explicit_groups() -> None:
    spec = team(6, groups={"front": ("a", "b", "c"), "back": ("d", "e", "f")})
    configs = [
        dataclasses.replace(TINY, sampler=SamplerConfig(reveal=RevealSchedule(groups=g)))
        for g in ("spec", ((0, 1, 2), (3, 4, 5)))
    ]
    models = []
    for cfg in configs:
        torch.manual_seed(0)
        models.append(perturbed(SequentialAgentDenoiser(spec, cfg)))
    named, explicit = models
    assert named.reveal.groups == (("a", "b", "c"), ("d", "e", "f"))  # saved by name
    assert named.sampler.num_steps(6) == explicit.sampler.num_steps(6) == 4  # two units
    states, actions = torch.randn(5, 3, 6), torch.rand(5, 3, 6) * 2 - 1
    outs = [predict(m, states, actions) for m in models]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    assert not torch.allclose(predict(named, states, -actions), outs[0], atol=1e-3)  # sensitive
    override = predict(named, states, actions, reveal=RevealSchedule(groups="spec"))
    torch.testing.assert_close(override, outs[0], rtol=0, atol=0)
    per_agent = predict(named, states, actions, reveal=RevealSchedule())
    assert not torch.allclose(per_agent, outs[0], atol=1e-3)  # the groups change the prediction


# --------------------------------------------------------------------------- shared encoders
def test_shared_encoder_slots_follow_groups_of_equal_action_size() -> None:
    spec = team(6, action_dims=(1, 1, 1, 1, 2, 2))
    groups = ((0, 1, 2), (3, 4), (5,))  # the second group mixes sizes 1 and 2
    enc = AgentActionEncoder(spec, context=2, token_dim=8, out_dim=16, share_groups=groups)
    assert enc.slot_index.tolist() == [0, 0, 0, 1, 2, 3] and enc.shared
    assert enc.weight.shape == (4, 2, 8)
    own = AgentActionEncoder(spec, context=2, token_dim=8, out_dim=16)
    assert own.weight.shape == (6, 2, 8) and not own.shared
    singles = AgentActionEncoder(spec, 2, 8, 16, share_groups=[(i,) for i in range(6)])
    assert not singles.shared and singles.weight.shape == (6, 2, 8)
    with pytest.raises(ValueError, match="share_groups: expected a partition"):
        AgentActionEncoder(spec, 2, 8, 16, share_groups=((0, 1), (1, 2, 3, 4, 5)))


def test_shared_encoder_equals_per_agent_encoders_holding_copies() -> None:
    """Equivalence: sharing is the per-agent encoder with tied weights (exact)."""
    spec = team(5, action_dims=(2, 2, 2, 1, 1))
    groups = ((0, 1, 2), (3, 4))
    torch.manual_seed(0)
    shared = AgentActionEncoder(spec, 3, 8, 16, share_groups=groups)
    own = AgentActionEncoder(spec, 3, 8, 16)
    with torch.no_grad():
        own.load_state_dict(
            {k: v for k, v in shared.state_dict().items() if k not in ("weight", "slot_index")},
            strict=False,
        )
        own.weight.copy_(shared.weight[shared.slot_index])
    actions = torch.rand(4, 3, spec.joint_action_dim) * 2 - 1
    mask = torch.tensor([[True] * 3, [False, True, True], [True] * 3, [False, False, True]])
    revealed = torch.rand(4, 5) > 0.5
    torch.testing.assert_close(
        shared(actions, mask, revealed), own(actions, mask, revealed), rtol=0, atol=0
    )
    shared(actions, mask, revealed).square().sum().backward()
    assert shared.weight.grad is not None and (shared.weight.grad.abs().sum(dim=(1, 2)) > 0).all()


def test_shared_encoder_in_the_denoiser_uses_the_reveal_groups_else_the_specs() -> None:
    spec = team(6, groups={"x": ("a", "b", "c"), "y": ("d", "e", "f")})
    by_reveal = dataclasses.replace(
        TINY, share_action_encoder=True, sampler=SamplerConfig(reveal=RevealSchedule(groups=3))
    )
    model = SequentialAgentDenoiser(spec, by_reveal)
    assert model.action_encoder.slot_index.tolist() == [0, 0, 1, 1, 2, 2]
    by_spec = dataclasses.replace(TINY, share_action_encoder=True)
    model = SequentialAgentDenoiser(spec, by_spec)
    assert model.action_encoder.slot_index.tolist() == [0, 0, 0, 1, 1, 1]
    assert model.action_encoder.weight.shape[0] == 2
    n_params = sum(p.numel() for p in model.parameters())
    per_agent = sum(p.numel() for p in SequentialAgentDenoiser(spec, TINY).parameters())
    assert per_agent - n_params == 4 * 1 * 8  # four encoders fewer of [1, 8]


@pytest.mark.parametrize("groups", [None, "spec", ((0, 2), (1, 3)), 2])
def test_relabelled_models_compute_the_same_function(groups: object) -> None:
    """Relabelling invariance with shared encoders and with reveal groups of every form."""
    spec = team(4, groups={"x": ("a", "b"), "y": ("c", "d")})
    reveal = RevealSchedule("cumulative", groups=groups)  # type: ignore[arg-type]
    cfg = dataclasses.replace(TINY, share_action_encoder=True, sampler=SamplerConfig(reveal=reveal))
    torch.manual_seed(1)
    model = perturbed(SequentialAgentDenoiser(spec, cfg))
    order = (2, 0, 3, 1)
    relabelled = model.permute_agents(order)
    if groups is None:  # sharing by the spec's groups x = {a, b}, y = {c, d}
        assert relabelled.action_encoder.slot_index.tolist() == [1, 0, 1, 0]
    states, actions = torch.randn(3, 3, 6), torch.rand(3, 3, 4) * 2 - 1
    # per agent, the conditioning order names agents: relabel it too (groups keep their order)
    agents = (3, 2, 1, 0)
    kw_old = {"order": agents} if groups is None else {}
    kw_new = {"order": tuple(order.index(i) for i in agents)} if groups is None else {}
    a = predict(model, states, actions, **kw_old)
    b = predict(relabelled, states, actions[..., list(order)], **kw_new)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(predict(relabelled, states, actions, **kw_new), a, atol=1e-3)


def test_the_encoder_mapping_is_saved_with_the_weights() -> None:
    spec = team(4, groups={"x": ("a", "b"), "y": ("c", "d")})
    cfg = dataclasses.replace(TINY, share_action_encoder=True)
    torch.manual_seed(1)
    relabelled = perturbed(SequentialAgentDenoiser(spec, cfg)).permute_agents((2, 0, 3, 1))
    rebuilt = SequentialAgentDenoiser(relabelled.spec, cfg)  # the relabelled spec: slots 0,1,0,1
    assert rebuilt.action_encoder.slot_index.tolist() == [0, 1, 0, 1]
    rebuilt.load_state_dict(relabelled.state_dict())
    assert rebuilt.action_encoder.slot_index.tolist() == [1, 0, 1, 0]  # the saved mapping
    states, actions = torch.randn(3, 3, 6), torch.rand(3, 3, 4) * 2 - 1
    torch.testing.assert_close(
        predict(rebuilt.eval(), states, actions), predict(relabelled, states, actions)
    )
    old = {k: v for k, v in SequentialAgentDenoiser(spec, TINY).state_dict().items()}
    del old["action_encoder.slot_index"]  # a checkpoint written before the mapping was saved
    SequentialAgentDenoiser(spec, TINY).load_state_dict(old)
    with pytest.raises(RuntimeError, match="slot_index: the saved mapping uses 4 action encoders"):
        SequentialAgentDenoiser(spec, cfg).load_state_dict(
            SequentialAgentDenoiser(spec, TINY).state_dict()
        )


def test_old_denoiser_configs_load_without_the_sharing_field() -> None:
    state = dict(TINY.__dict__)
    del state["share_action_encoder"]
    restored = object.__new__(DenoiserConfig)
    restored.__setstate__(state)
    assert restored.share_action_encoder is False and restored == TINY


def test_cli_flags_for_groups_and_sharing_reach_the_trainer_config() -> None:
    argv = ["--env", "toy", "--world-model.dynamics.sampler.reveal.groups", "2",
            "--world-model.dynamics.share-action-encoder"]  # fmt: skip
    args, _ = parse_args(argv, "t")
    dyn = args.config.world_model.dynamics
    assert dyn.sampler.reveal.groups == 2 and dyn.share_action_encoder
    args, _ = parse_args(
        ["--env", "toy", "--world-model.dynamics.sampler.reveal.groups", "spec"], "t"
    )
    assert args.config.world_model.dynamics.sampler.reveal.groups == "spec"


def test_a_grouped_shared_encoder_run_trains_and_resumes(tmp_path: Path) -> None:
    """End to end on a real MuJoCo team (4 one-joint swimmer agents): 2 groups, shared action
    encoders, through `dimalib train`."""
    out = tmp_path / "run"
    argv = ["train", "--env", "ManySegmentSwimmer-4x1", "--total-env-steps", "400",
            "--out", str(out), *TINY_RUN, "--agent-groups", "2",
            "--world-model.dynamics.sampler.reveal.groups", "spec",
            "--world-model.dynamics.share-action-encoder"]  # fmt: skip
    assert main(argv) == 0
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert math.isfinite(float(rows[-1]["wm/dynamics/loss"]))
    with Trainer.resume(out / "checkpoint.pt") as trainer:
        dynamics = trainer.world_model.dynamics
        assert trainer.spec.group_members == ((0, 1), (2, 3))
        assert dynamics.reveal.groups == (("agent_0", "agent_1"), ("agent_2", "agent_3"))
        assert dynamics.action_encoder.slot_index.tolist() == [0, 0, 1, 1]
        masks = dynamics.reveal.masks(
            4, dynamics.sampler.sigmas(4), agent_names=trainer.spec.agent_names
        )
        assert dynamics.reveal.units(4) == 2
        assert masks.int().tolist() == [[0, 0, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]
