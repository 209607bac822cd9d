"""Agent groups in reveal schedules: whole groups revealed per step, steps per group count."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dimalib.envs.linear import LinearGaussianSystem
from dimalib.spec import MultiAgentSpec
from dimalib.world_model.dynamics import (
    DenoiserConfig,
    RevealSchedule,
    SamplerConfig,
    SequentialAgentDenoiser,
)
from dimalib.world_model.dynamics.optimal import LinearGaussianDenoiser
from dimalib.world_model.dynamics.sampler import EulerSampler

SIGMAS = torch.tensor([5.0, 0.84, 0.077, 0.002, 0.0])  # the default 4 steps of two units


def test_grouped_masks_by_hand() -> None:
    cum = RevealSchedule("cumulative", groups=((0, 1), (2, 3)))
    expected = [[0, 0, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]  # descending: group 1 first
    assert cum.masks(4, SIGMAS).int().tolist() == expected
    seq = RevealSchedule("sequential", groups=(("a",), ("b", "c")))
    got = seq.masks(3, SIGMAS, agent_names=("a", "b", "c")).int().tolist()
    assert got == [[0, 1, 1], [0, 1, 1], [1, 0, 0], [1, 0, 0]]  # {1}, {1}, {0}, {0} over groups
    explicit = RevealSchedule("explicit", sets=((1,), (0, 1)), groups=((2,), (0, 1)))
    assert explicit.masks(3, SIGMAS[[0, 1, 4]]).int().tolist() == [[1, 1, 0], [1, 1, 1]]
    assert cum.units(4) == 2 and RevealSchedule().units(4) == 4


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (((0, 1), (1, 2)), "more than one group"),
        (((0,), (2,)), r"agent\(s\) \[1\] are in none"),
        (((0, 1), ("z",)), "unknown agent 'z'"),
        (((),), "non-empty sequence of agents for group 0"),
    ],
)
def test_groups_must_partition_the_team(
    groups: tuple[tuple[object, ...], ...], message: str
) -> None:
    with pytest.raises(ValueError, match=f"groups: .*{message}"):
        RevealSchedule("cumulative", groups=groups).masks(  # type: ignore[arg-type]
            3, SIGMAS, agent_names=("a", "b", "c")
        )


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(["sequential", "cumulative", "joint"]),
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=5),
    seed=st.integers(0, 2**31 - 1),
)
def test_training_draws_unions_of_whole_groups(kind: str, sizes: list[int], seed: int) -> None:
    n = sum(sizes)
    bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
    groups = tuple(tuple(range(bounds[g], bounds[g + 1])) for g in range(len(sizes)))
    reveal = RevealSchedule(kind, groups=groups)  # type: ignore[arg-type]
    sampler = EulerSampler(SamplerConfig(reveal=reveal))
    sigma = torch.exp(torch.randn(64, generator=torch.Generator().manual_seed(seed)))
    masks = reveal.training_masks(
        n, sigma, sampler.sigmas(n), generator=torch.Generator().manual_seed(seed)
    )
    for g in groups:  # every group is revealed whole or not at all
        part = masks[:, list(g)]
        assert bool((part.all(1) | ~part.any(1)).all())
    assert bool(masks.any(1).all())
    if kind == "sequential":  # eq. 9 over groups: exactly one group
        group_of = [g for g, members in enumerate(groups) for _ in members]
        first = masks.int().argmax(1).tolist()  # the first revealed agent of each sample
        assert masks.sum(1).tolist() == [len(groups[group_of[j]]) for j in first]


def test_denoiser_calls_follow_the_number_of_groups() -> None:
    """Six agents in two groups: 4 network calls per predicted state (Table 4's rule for two
    units) instead of 6."""
    spec = MultiAgentSpec(tuple(f"a{i}" for i in range(6)), (2,) * 6, (1,) * 6, state_dim=4)
    groups = ((0, 1, 2), (3, 4, 5))
    calls = {}
    for name, reveal in (("agents", RevealSchedule()), ("groups", RevealSchedule(groups=groups))):
        cfg = DenoiserConfig(
            channels=(8, 8), depths=(1, 1), context=2, sampler=SamplerConfig(reveal=reveal)
        )
        model = SequentialAgentDenoiser(spec, cfg).eval()
        count = [0]
        inner = model.denoise

        def counted(*args: object, _inner=inner, _count=count, **kw: object) -> torch.Tensor:  # type: ignore[no-untyped-def]
            _count[0] += 1
            return _inner(*args, **kw)

        model.denoise = counted  # type: ignore[method-assign]
        with torch.inference_mode():
            out = model.predict_next_state(torch.randn(3, 2, 4), torch.rand(3, 2, 6) * 2 - 1)
        assert out.shape == (3, 4) and bool(torch.isfinite(out).all())
        calls[name] = count[0]
    assert calls == {"agents": 6, "groups": 4}


def test_grouped_cumulative_reaches_the_joint_floor_with_eight_agents() -> None:
    """The closed-form optimal denoiser of an 8-agent linear system: revealing 2 groups
    cumulatively (4 steps) is as exact as the joint model, per-group eq. 9 is not."""
    system = LinearGaussianSystem.random((1,) * 8, seed=0, agent_variance=1.0)
    test = system.windows(1000, generator=torch.Generator().manual_seed(1))
    groups = ((0, 1, 2, 3), (4, 5, 6, 7))
    floors = {}
    for name, reveal in (
        ("joint", RevealSchedule("joint")),
        ("grouped cumulative", RevealSchedule("cumulative", groups=groups)),
        ("grouped sequential", RevealSchedule("sequential", groups=groups)),
    ):
        opt = LinearGaussianDenoiser.from_system(system, sampler=SamplerConfig(reveal=reveal))
        pred = opt.predict_next_state(
            test["states"], test["actions"], generator=torch.Generator().manual_seed(2)
        )
        err = (pred - test["mean_next_state"]) / system.state_std
        floors[name] = float(err.square().mean().sqrt())
    assert floors["joint"] < 0.01
    assert floors["grouped cumulative"] < 1.2 * floors["joint"]
    assert floors["grouped sequential"] > 10 * floors["joint"]


def test_contiguous_groups() -> None:
    from dimalib.world_model.dynamics.reveal import contiguous_groups

    assert contiguous_groups(5, 2) == ((0, 1, 2), (3, 4))
    assert contiguous_groups(4, 4) == ((0,), (1,), (2,), (3,))
    groups = contiguous_groups(50, 3)
    assert [len(g) for g in groups] == [17, 17, 16] and sum(groups, ()) == tuple(range(50))
    with pytest.raises(ValueError, match="n_groups: expected at most n_agents=2"):
        contiguous_groups(2, 3)
