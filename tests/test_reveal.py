"""Reveal schedules: per-step agent sets, training draws, relabelling, errors, exact floors."""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dimalib import MultiAgentSpec
from dimalib.envs.linear import LinearGaussianSystem
from dimalib.evaluation import action_effects
from dimalib.world_model.dynamics import (
    DenoiserConfig,
    EulerSampler,
    RevealSchedule,
    SamplerConfig,
    SequentialAgentDenoiser,
    default_num_steps,
    karras_sigmas,
)
from dimalib.world_model.dynamics.optimal import LinearGaussianDenoiser

TINY = DenoiserConfig(channels=(32, 32), depths=(1, 1), cond_dim=64, action_token_dim=32)


def _sets(masks: torch.Tensor) -> list[set[int]]:
    """``[N, n]`` bool → the revealed set of every step."""
    return [set(row.nonzero().flatten().tolist()) for row in masks]


def _sigmas(n: int, steps: int | None = None) -> torch.Tensor:
    return karras_sigmas(steps or default_num_steps(n))


# ---------------------------------------------------------------- per-step sets
@pytest.mark.parametrize(
    ("kind", "n", "order", "expected"),
    [
        # sequential (paper eq. 9): one agent per step, 2n steps for n <= 2, else n
        ("sequential", 1, "descending", [{0}, {0}]),
        ("sequential", 2, "descending", [{1}, {1}, {0}, {0}]),  # paper (2, 2, 1, 1)
        ("sequential", 2, (1, 0, 0, 1), [{1}, {0}, {0}, {1}]),  # paper (2, 1, 1, 2)
        ("sequential", 3, "ascending", [{0}, {1}, {2}]),
        ("sequential", 6, "descending", [{5}, {4}, {3}, {2}, {1}, {0}]),
        # cumulative, default: every agent within the first ceil(N/2) steps
        ("cumulative", 1, "descending", [{0}, {0}]),
        ("cumulative", 2, "descending", [{1}, {0, 1}, {0, 1}, {0, 1}]),
        ("cumulative", 2, "ascending", [{0}, {0, 1}, {0, 1}, {0, 1}]),
        ("cumulative", 2, (1, 0, 0, 1), [{1}, {0, 1}, {0, 1}, {0, 1}]),  # running union
        ("cumulative", 3, "descending", [{1, 2}, {0, 1, 2}, {0, 1, 2}]),
        ("cumulative", 3, (0, 2, 1), [{0, 2}, {0, 1, 2}, {0, 1, 2}]),
        ("cumulative", 6, "ascending", [{0, 1}, {0, 1, 2, 3}] + [set(range(6))] * 4),
        # joint: everyone at every step
        ("joint", 1, "descending", [{0}, {0}]),
        ("joint", 3, "descending", [{0, 1, 2}] * 3),
        ("joint", 6, "ascending", [set(range(6))] * 6),
        ("joint", 2, (1, 0, 0, 1), [{0, 1}] * 4),  # the order is not used
    ],
)
def test_schedule_to_per_step_sets(
    kind: str, n: int, order: object, expected: list[set[int]]
) -> None:
    masks = RevealSchedule(kind).masks(n, _sigmas(n), order=order)  # type: ignore[arg-type]
    assert masks.dtype == torch.bool
    assert _sets(masks) == expected


def test_cumulative_reveal_all_by_and_by_sigma() -> None:
    s4 = _sigmas(2)  # 5, 0.845, 0.077, 0.002
    sched = RevealSchedule("cumulative", reveal_all_by=1)
    assert _sets(sched.masks(2, s4)) == [{0, 1}] * 4
    sched = RevealSchedule("cumulative", reveal_all_by=4)  # one agent held two steps
    assert _sets(sched.masks(2, s4)) == [{1}, {1}, {0, 1}, {0, 1}]
    sched = RevealSchedule("cumulative", reveal_all_by=3)
    assert _sets(sched.masks(3, _sigmas(3))) == [{2}, {1, 2}, {0, 1, 2}]
    # every step with σ_i <= threshold sees every agent
    assert _sets(RevealSchedule("cumulative", reveal_all_sigma=1.0).masks(2, s4)) == [
        {1},
        {0, 1},
        {0, 1},
        {0, 1},
    ]
    assert _sets(RevealSchedule("cumulative", reveal_all_sigma=0.01).masks(2, s4)) == [
        {1},
        {1},
        {0, 1},
        {0, 1},
    ]
    assert _sets(RevealSchedule("cumulative", reveal_all_sigma=10.0).masks(2, s4)) == [{0, 1}] * 4
    s6 = _sigmas(6)  # 5, 1.82, 0.557, 0.134, 0.022, 0.002
    sched = RevealSchedule("cumulative", reveal_all_sigma=0.6)  # steps 0 and 1 above: k = 3
    assert sched.revealed_counts(6, s6) == [2, 4, 6, 6, 6, 6]


def test_explicit_sets_by_index_and_name() -> None:
    sched = RevealSchedule("explicit", sets=((1,), ("left", "right"), (0,), (0, 1)))
    masks = sched.masks(2, _sigmas(2), agent_names=("left", "right"))
    assert _sets(masks) == [{1}, {0, 1}, {0}, {0, 1}]


def test_per_sample_random_orders_give_every_sample_its_own_growing_set() -> None:
    sched = RevealSchedule("cumulative", reveal_all_by=3)
    g = torch.Generator().manual_seed(0)
    masks = sched.masks(3, _sigmas(3), order="random", batch_size=200, per_sample=True, generator=g)
    assert masks.shape == (200, 3, 3)
    assert bool((masks.sum(dim=2) == torch.tensor([1, 2, 3])).all())
    assert bool((masks[:, 1:] >= masks[:, :-1]).all())  # sets only grow
    assert len({tuple(m[0].tolist()) for m in masks}) == 3  # every agent comes first sometimes


def test_sampler_schedule_uses_the_config_and_accepts_an_override() -> None:
    sampler = EulerSampler(SamplerConfig(reveal=RevealSchedule("cumulative")))
    assert _sets(sampler.schedule(2, 3)[0]) == [{1}, {0, 1}, {0, 1}, {0, 1}]
    paper = sampler.schedule(2, 3, reveal=RevealSchedule("sequential"))
    assert paper.shape == (3, 4, 2)
    assert _sets(paper[2]) == [{1}, {1}, {0}, {0}]


# --------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "greedy"}, "kind"),
        ({"kind": "sequential", "reveal_all_by": 2}, "reveal_all_by"),
        ({"kind": "cumulative", "reveal_all_by": 0}, "reveal_all_by"),
        ({"kind": "cumulative", "reveal_all_by": 2, "reveal_all_sigma": 1.0}, "at most one"),
        ({"kind": "cumulative", "reveal_all_sigma": -1.0}, "reveal_all_sigma"),
        ({"kind": "explicit"}, "sets"),
        ({"kind": "explicit", "sets": ((0,), ())}, "non-empty sequence of agents at step 1"),
        ({"kind": "joint", "sets": ((0,),)}, "sets"),
        ({"kind": "cumulative", "train_sizes": "big"}, "train_sizes"),
    ],
)
def test_bad_schedules_raise_naming_the_argument(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RevealSchedule(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sched", "order", "match"),
    [
        (
            RevealSchedule("explicit", sets=((0,), (2,), (0,), (1,))),
            "descending",
            "sets: unknown agent 2",
        ),
        (
            RevealSchedule("explicit", sets=((0,), (0,), (0,), (0,))),
            "descending",
            r"sets: agent\(s\) \[1\] never revealed",
        ),
        (RevealSchedule("explicit", sets=((0,), (0, 1))), "descending", "one set per"),
        (
            RevealSchedule("explicit", sets=(("nobody",), (0, 1), (0,), (1,))),
            "descending",
            "sets: unknown agent 'nobody'",
        ),
        (RevealSchedule("explicit", sets=((0, 0), (1,), (0,), (1,))), "descending", "repeated"),
        (RevealSchedule("cumulative", reveal_all_by=5), "descending", "reveal_all_by"),
        (RevealSchedule("cumulative"), (0, 0, 0, 0), r"agent\(s\) \[1\] never revealed"),
        (RevealSchedule("cumulative"), (0, 1, 0), "expected 2 agents"),
        (RevealSchedule("cumulative"), (0, 2), "unknown agent 2"),
        (RevealSchedule("cumulative", reveal_all_by=2), (1, 0, 0, 1), "per-step agent sequence"),
        (RevealSchedule("sequential"), "sideways", "order"),
    ],
)
def test_bad_sets_and_orders_raise_when_resolved(
    sched: RevealSchedule, order: object, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        sched.masks(2, _sigmas(2), order=order)  # type: ignore[arg-type]


# ------------------------------------------------------------- training draws
def test_sequential_training_reveals_one_uniform_agent() -> None:
    sched, n, B = RevealSchedule("sequential"), 4, 20_000
    m = sched.training_masks(
        n, torch.ones(B), _sigmas(n), generator=torch.Generator().manual_seed(0)
    )
    assert bool((m.sum(dim=1) == 1).all())
    counts = m.sum(dim=0).double()
    chi2 = float(((counts - B / n) ** 2 / (B / n)).sum())
    assert chi2 < 16.3  # χ²(3 dof), 0.999 quantile


def test_cumulative_training_draws_a_uniform_size_then_a_uniform_subset() -> None:
    n, B = 3, 30_000
    m = RevealSchedule("cumulative", train_sizes="uniform").training_masks(
        n, torch.ones(B), _sigmas(n), generator=torch.Generator().manual_seed(1)
    )
    sizes = m.sum(dim=1)
    assert int(sizes.min()) == 1 and int(sizes.max()) == n  # never empty
    # every one of the 2^n − 1 non-empty subsets has probability 1 / (n · C(n, |R|))
    code = (m.long() * torch.tensor([1, 2, 4])).sum(dim=1)
    counts = torch.bincount(code, minlength=8)[1:].double()
    size_of = torch.tensor([bin(c).count("1") for c in range(1, 8)])
    expected = B / (n * torch.tensor([math.comb(n, int(k)) for k in size_of])).double()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 22.5  # χ²(6 dof), 0.999 quantile


def test_matched_training_sizes_follow_the_schedule_at_the_nearest_sigma() -> None:
    n = 3
    sigmas = _sigmas(n)  # 5, 0.283, 0.002: sizes 2, 3, 3
    sched = RevealSchedule("cumulative", reveal_all_by=2)  # train_sizes="matched" by default
    sigma = torch.tensor([20.0, 4.0, 1.4, 1.0, 0.3, 0.01, 0.002])
    m = sched.training_masks(n, sigma, sigmas, generator=torch.Generator().manual_seed(0))
    # nearest level in log σ (5 | 0.283 split at 1.19, 0.283 | 0.002 at 0.024): sizes 2, 2, 2, 3, 3, 3, 3
    assert m.sum(dim=1).tolist() == [2, 2, 2, 3, 3, 3, 3]
    # agents uniform within a size: every agent about 2/3 of the size-2 draws
    big = sched.training_masks(
        n, torch.full((30_000,), 5.0), sigmas, generator=torch.Generator().manual_seed(1)
    )
    assert bool((big.sum(dim=1) == 2).all())
    frac = big.double().mean(dim=0)
    torch.testing.assert_close(
        frac, torch.full((3,), 2 / 3, dtype=torch.float64), atol=0.015, rtol=0
    )
    # explicit sets: the size of the nearest step's set
    explicit = RevealSchedule("explicit", sets=((0,), (0, 1), (0, 1, 2)))
    m = explicit.training_masks(n, torch.tensor([5.0, 0.3, 0.002]), sigmas)
    assert m.sum(dim=1).tolist() == [1, 2, 3]


# ------------------------------------------------------------------ relabelling
_SCHEDULES = [
    RevealSchedule("sequential"),
    RevealSchedule("cumulative"),
    RevealSchedule("cumulative", reveal_all_by=1),
    RevealSchedule("joint"),
]


@settings(max_examples=20, deadline=None)
@given(
    action_dims=st.lists(st.integers(1, 3), min_size=2, max_size=4),
    schedule=st.sampled_from([*_SCHEDULES, "explicit"]),
    data=st.data(),
)
def test_relabelling_agents_consistently_leaves_predictions_unchanged(
    action_dims: list[int], schedule: RevealSchedule | str, data: st.DataObject
) -> None:
    n = len(action_dims)
    spec = MultiAgentSpec(tuple(f"a{i}" for i in range(n)), (3,) * n, tuple(action_dims), 4)
    perm = data.draw(st.permutations(list(range(n))))  # new agent j = old agent perm[j]
    inverse = {old: new for new, old in enumerate(perm)}
    order = data.draw(st.permutations(list(range(n))))  # in old labels
    steps = default_num_steps(n)
    if schedule == "explicit":
        sets = [data.draw(st.sets(st.integers(0, n - 1), min_size=1)) for _ in range(steps)]
        sets[-1] = set(range(n))
        schedule = RevealSchedule("explicit", sets=tuple(tuple(sorted(s)) for s in sets))
        new_schedule = RevealSchedule(
            "explicit", sets=tuple(tuple(sorted(inverse[a] for a in s)) for s in sets)
        )
    else:
        new_schedule = schedule
    assert isinstance(schedule, RevealSchedule)
    cfg = DenoiserConfig(
        channels=(32, 32),
        depths=(1, 1),
        cond_dim=64,
        action_token_dim=32,
        sampler=SamplerConfig(reveal=schedule),
    )
    model = SequentialAgentDenoiser(spec, cfg).eval()
    with torch.no_grad():
        g = torch.Generator().manual_seed(n)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
    relabelled = model.permute_agents(perm)
    g = torch.Generator().manual_seed(1)
    states = torch.randn(3, 3, 4, generator=g)
    actions = torch.rand(3, 3, spec.joint_action_dim, generator=g) * 2 - 1
    new_actions = torch.cat([actions[..., spec.action_slices[i]] for i in perm], dim=-1)
    a = model.predict_next_state(
        states, actions, order=order, generator=torch.Generator().manual_seed(0)
    )
    b = relabelled.predict_next_state(
        states,
        new_actions,
        order=[inverse[k] for k in order],
        reveal=new_schedule,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------- exact floors and effects
def _rmse(system: LinearGaussianSystem, pred: torch.Tensor, target: torch.Tensor) -> float:
    return float((((pred.double() - target.double()) / system.state_std) ** 2).mean().sqrt())


def test_optimal_denoiser_matches_the_hand_computed_posterior() -> None:
    # 1-D state, one agent with one action: s' = a s + b u + ε
    spec = MultiAgentSpec(("only",), (1,), (1,), 1, action_low=-4.0, action_high=4.0)
    a, b, noise, act_std, state_std, sd = 0.5, 2.0, 0.1, 1.5, 3.0, 0.5
    opt = LinearGaussianDenoiser(
        spec,
        torch.tensor([[a]]),
        torch.tensor([[b]]),
        torch.tensor([[noise**2]]),
        torch.tensor([0.2]),
        torch.tensor([act_std**2]),
        torch.tensor([1.0]),
        torch.tensor([state_std]),
        sigma_data=sd,
    )
    s, u, x, sigma = 0.8, -0.7, 0.3, 0.4
    T = sd / state_std
    for revealed, mu, var in (
        (True, a * s + b * u, noise**2),
        (False, a * s + b * 0.2, noise**2 + b**2 * act_std**2),
    ):
        m, P = T * (mu - 1.0), T**2 * var
        expected = m + P / (P + sigma**2) * (x - m)
        out = opt.denoise(
            torch.tensor([[x]]),
            torch.tensor([sigma]),
            torch.tensor([[s]]),
            torch.tensor([[u]]),
            torch.tensor([[revealed]]),
        )
        assert float(out) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dims", [(2, 3), (1, 2, 4)])
def test_sequential_floor_is_far_above_joint_and_cumulative_reaches_it(
    dims: tuple[int, ...],
) -> None:
    system = LinearGaussianSystem.random(dims, seed=0, agent_variance=1.0)
    test = system.windows(2000, generator=torch.Generator().manual_seed(1))
    ignore = _rmse(
        system,
        system.mean_next_state(test["states"][:, -1], 0 * test["actions"][:, -1]),
        test["mean_next_state"],
    )
    floors = {}
    for kind in ("sequential", "cumulative", "joint"):
        opt = LinearGaussianDenoiser.from_system(
            system,
            sampler=SamplerConfig(reveal=RevealSchedule(kind)),  # type: ignore[arg-type]
        )
        pred = opt.predict_next_state(
            test["states"], test["actions"], generator=torch.Generator().manual_seed(2)
        )
        floors[kind] = _rmse(system, pred, test["mean_next_state"])
    # measured: (2, 3) 0.159 / 0.0040 / 0.0039; (1, 2, 4) 0.336 / 0.0036 / 0.0033; ignore 0.44
    assert floors["joint"] < 0.01
    assert floors["sequential"] > 10 * floors["joint"]
    assert floors["sequential"] > 0.25 * ignore
    assert floors["cumulative"] < 1.2 * floors["joint"]


def test_action_effects_are_exact_for_cumulative_and_joint_optima_and_not_for_the_paper() -> None:
    system = LinearGaussianSystem.random((2, 3), seed=0, agent_variance=1.0)
    test = system.windows(1000, generator=torch.Generator().manual_seed(3))
    scale = system.state_std.float()
    effects = {}
    for kind in ("sequential", "cumulative", "joint"):
        opt = LinearGaussianDenoiser.from_system(
            system,
            sampler=SamplerConfig(reveal=RevealSchedule(kind)),  # type: ignore[arg-type]
        )
        effects[kind] = {
            e.agent: e
            for e in action_effects(
                opt, test["states"], test["actions"], system.mean_next_state, scale=scale
            )
        }
    # measured: joint and cumulative ratios 0.998-1.000, cosines 1.000
    for kind in ("cumulative", "joint"):
        for e in effects[kind].values():
            assert e.ratio == pytest.approx(1.0, abs=0.01)
            assert e.cosine > 0.999
    assert [effects["joint"][i].first_step for i in (0, 1)] == [0, 0]
    assert [effects["cumulative"][i].first_step for i in (0, 1)] == [1, 0]  # descending
    seq = effects["sequential"]
    assert (seq[1].first_step, seq[0].first_step) == (0, 2)
    # measured: the agent revealed last (σ = 0.077, 0.002) 0.89 (cosine 0.93), the first 0.92
    # (1.00): even the optimal denoiser loses part of every agent's effect under eq. 9
    for e in seq.values():
        assert e.ratio < 0.95
    assert seq[0].cosine < 0.97


# ------------------------------------------------------------- stored configs
def _pickled_without(obj: object, *fields: str) -> bytes:
    """``obj`` pickled as an older dimalib would have written it (without ``fields``)."""
    old = copy.copy(obj)
    for name in fields:
        object.__delattr__(old, name)
    return pickle.dumps(old)


def test_configs_saved_before_reveal_schedules_keep_the_papers_scheme() -> None:
    from dimalib.imagination import ImaginationConfig
    from dimalib.training.config import trainer_config

    legacy = pickle.loads(_pickled_without(SamplerConfig(order="ascending"), "reveal"))
    assert legacy.reveal == RevealSchedule("sequential") and legacy.order == "ascending"
    cfg = trainer_config("cpu")
    sampler = pickle.loads(_pickled_without(cfg.world_model.dynamics.sampler, "reveal"))
    dynamics = dataclasses.replace(cfg.world_model.dynamics, sampler=sampler)
    old = cfg.replace(world_model=dataclasses.replace(cfg.world_model, dynamics=dynamics))
    restored = pickle.loads(_pickled_without(old, "fidelity_windows"))
    assert restored.fidelity_windows == 64
    assert restored.world_model.dynamics.sampler.reveal.kind == "sequential"
    assert restored.world_model.dynamics.channels == cfg.world_model.dynamics.channels
    imag = pickle.loads(_pickled_without(ImaginationConfig(num_envs=7), "disagreement_penalty"))
    assert imag.disagreement_penalty == 0.0 and imag.num_envs == 7
