"""Karras schedule, conditioning orders and the Euler/Heun sampler."""

import math

import pytest
import torch

from dimalib.world_model.dynamics import (
    EulerSampler,
    RevealSchedule,
    SamplerConfig,
    agent_schedule,
    default_num_steps,
)
from dimalib.world_model.dynamics.sampler import karras_sigmas


def test_karras_schedule_endpoints_values_and_monotonicity() -> None:
    s = karras_sigmas(4, dtype=torch.float64)
    # (5^(1/7) + i/3 (0.002^(1/7) - 5^(1/7)))^7 for i = 0..3, then 0
    expected = torch.tensor([5.0, 0.8447488804, 0.0774388708, 0.002, 0.0], dtype=torch.float64)
    torch.testing.assert_close(s, expected)
    for n in (1, 2, 3, 6, 20):
        s = karras_sigmas(n)
        assert s.shape == (n + 1,)
        assert float(s[0]) == pytest.approx(5.0)
        assert float(s[-1]) == 0.0
        assert bool((s[1:] < s[:-1]).all())
        if n > 1:
            assert float(s[-2]) == pytest.approx(2e-3)


def test_default_num_steps_table4() -> None:
    assert [default_num_steps(n) for n in (1, 2, 3, 6)] == [2, 4, 3, 6]


@pytest.mark.parametrize(
    ("n", "steps", "order", "expected"),
    [
        (1, 2, "descending", [0, 0]),
        (1, 2, "ascending", [0, 0]),
        (2, 4, "descending", [1, 1, 0, 0]),  # paper App. E.2: (2, 2, 1, 1)
        (2, 4, "ascending", [0, 0, 1, 1]),  # paper App. E.2: (1, 1, 2, 2)
        (2, 4, (1, 0, 0, 1), [1, 0, 0, 1]),  # paper App. E.2 random example (2, 1, 1, 2)
        (2, 4, (0, 1), [0, 0, 1, 1]),
        (3, 3, "descending", [2, 1, 0]),
        (3, 3, "ascending", [0, 1, 2]),
        (3, 3, (1, 2, 0), [1, 2, 0]),
        (3, 6, "descending", [2, 2, 1, 1, 0, 0]),
        (6, 6, "descending", [5, 4, 3, 2, 1, 0]),
        (6, 6, "ascending", [0, 1, 2, 3, 4, 5]),
        (6, 12, (5, 0, 4, 1, 3, 2), [5, 5, 0, 0, 4, 4, 1, 1, 3, 3, 2, 2]),
    ],
)
def test_order_to_per_step_agent(n: int, steps: int, order: object, expected: list[int]) -> None:
    assert agent_schedule(order, n, steps).tolist() == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_random_order_is_a_permutation_expanded_and_reproducible(n: int) -> None:
    steps = default_num_steps(n)
    seen = set()
    for seed in range(30):
        g = torch.Generator().manual_seed(seed)
        sched = agent_schedule("random", n, steps, generator=g).tolist()
        per = steps // n
        perm = sched[::per]
        assert sorted(perm) == list(range(n))
        assert sched == [a for a in perm for _ in range(per)]
        seen.add(tuple(perm))
        again = agent_schedule("random", n, steps, generator=torch.Generator().manual_seed(seed))
        assert again.tolist() == sched
    assert len(seen) == min(math.factorial(n), 30) or len(seen) > 10


def test_random_per_sample_orders_differ_between_samples() -> None:
    g = torch.Generator().manual_seed(0)
    sched = agent_schedule("random", 3, 6, batch_size=64, per_sample=True, generator=g)
    assert sched.shape == (64, 6)
    assert all(sorted(row[::2]) == [0, 1, 2] for row in sched.tolist())
    assert len({tuple(r) for r in sched.tolist()}) > 1


def test_order_by_agent_names() -> None:
    names = ("left", "right")
    assert agent_schedule(("right", "left"), 2, 4, agent_names=names).tolist() == [1, 1, 0, 0]


@pytest.mark.parametrize(
    ("order", "n", "steps", "match"),
    [
        ("sideways", 2, 4, "order"),
        ((0, 2), 2, 4, "unknown agent 2"),
        ((0, 0), 2, 4, "repeated agent"),
        ((0, 0, 0, 0), 2, 4, r"agent\(s\) \[1\] never revealed"),
        ((0, 1, 0), 2, 4, "expected 2 agents"),
        (("nobody", "left"), 2, 4, "unknown agent 'nobody'"),
        ("descending", 3, 2, "num_steps"),
        ("descending", 2, 3, "num_steps"),
        ("random", 2, 5, "num_steps"),
    ],
)
def test_bad_orders_raise_naming_the_argument(
    order: object, n: int, steps: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        agent_schedule(order, n, steps, agent_names=("left", "right")[:n] if n == 2 else None)  # type: ignore[arg-type]


def _linear_denoiser(target: torch.Tensor):  # type: ignore[no-untyped-def]
    """Exact denoiser for data concentrated at ``target``: D(x; σ) = target."""
    calls: list[torch.Tensor] = []

    def denoise(x: torch.Tensor, sigma: torch.Tensor, revealed: torch.Tensor) -> torch.Tensor:
        calls.append(revealed.clone())
        return target.expand_as(x)

    return denoise, calls


def test_euler_reveals_one_agent_per_step_and_reaches_the_data() -> None:
    target = torch.tensor([[1.0, -2.0, 0.5]])
    denoise, calls = _linear_denoiser(target)
    sampler = EulerSampler(SamplerConfig(order="descending", reveal=RevealSchedule("sequential")))
    x = sampler.sample(denoise, (5, 3), n_agents=2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x, target.expand(5, 3))
    # one agent per step: (2, 2, 1, 1) in the paper's numbering, as [B, n] sets
    assert [c.int().tolist() for c in calls] == [[[0, 1]] * 5] * 2 + [[[1, 0]] * 5] * 2


def _gaussian_denoiser(mu: float, s: float, calls: list[list[int]]):  # type: ignore[no-untyped-def]
    """Exact denoiser of Gaussian data N(mu, s²): D(x; σ) = mu + s²/(s² + σ²)·(x − mu)."""

    def denoise(x: torch.Tensor, sigma: torch.Tensor, revealed: torch.Tensor) -> torch.Tensor:
        calls.append(revealed.int().argmax(dim=1).tolist())
        return mu + s**2 / (s**2 + sigma[:, None] ** 2) * (x - mu)

    return denoise


def test_heun_keeps_the_agent_of_each_step() -> None:
    for solver, expected in (
        ("euler", [0, 0, 1, 1, 2, 2]),
        ("heun", [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]),
    ):
        calls: list[list[int]] = []
        cfg = SamplerConfig(num_steps=6, order="ascending", solver=solver,  # type: ignore[arg-type]
                            reveal=RevealSchedule("sequential"))  # fmt: skip
        EulerSampler(cfg).sample(_gaussian_denoiser(0.3, 0.5, calls), (4, 2), 3)
        # Heun: two evaluations per step (same agent), one on the last step (σ_next = 0)
        assert [c[0] for c in calls] == expected


def test_euler_is_first_order_and_heun_second_order() -> None:
    # The probability-flow ODE of N(mu, s²) maps x_T to mu + sqrt(s² + σ²)/sqrt(s² + σ_max²)·(x_T − mu)
    # at σ; the last step to σ = 0 applies D(·; σ_min).
    mu, s = 0.3, 0.5
    x_T = torch.randn((4, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 5
    exact = mu + s**2 / math.sqrt(s**2 + 2e-3**2) / math.sqrt(s**2 + 25) * (x_T - mu)
    err = {}
    for solver in ("euler", "heun"):
        for steps in (24, 48):
            cfg = SamplerConfig(num_steps=steps, order="ascending", solver=solver)  # type: ignore[arg-type]
            x = EulerSampler(cfg).sample(
                _gaussian_denoiser(mu, s, []),
                (4, 2),
                3,
                generator=torch.Generator().manual_seed(1),
                dtype=torch.float64,
            )
            err[solver, steps] = float((x - exact).abs().max())
    # halving the step size halves Euler's error (measured 0.054 → 0.027) and quarters Heun's
    assert 1.7 < err["euler", 24] / err["euler", 48] < 2.3
    assert 3.5 < err["heun", 24] / err["heun", 48] < 4.8
    assert err["heun", 24] < err["euler", 24] / 5


def test_sampler_is_reproducible_with_a_generator() -> None:
    def denoise(x: torch.Tensor, sigma: torch.Tensor, revealed: torch.Tensor) -> torch.Tensor:
        return 0.5 * x + revealed.int().argmax(dim=1)[:, None].to(x.dtype)

    cfg = SamplerConfig(order="random", per_sample_order=True, reveal=RevealSchedule("sequential"))
    a = EulerSampler(cfg).sample(denoise, (16, 3), 3, generator=torch.Generator().manual_seed(7))
    b = EulerSampler(cfg).sample(denoise, (16, 3), 3, generator=torch.Generator().manual_seed(7))
    c = EulerSampler(cfg).sample(denoise, (16, 3), 3, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_default_schedule_is_cumulative_and_the_papers_is_one_agent_per_step() -> None:
    calls: list[list[int]] = []

    def denoise(x: torch.Tensor, sigma: torch.Tensor, revealed: torch.Tensor) -> torch.Tensor:
        calls.append(revealed[0].int().tolist())
        return torch.zeros_like(x)

    EulerSampler().sample(denoise, (2, 3), 2)
    assert calls == [[0, 1], [1, 1], [1, 1], [1, 1]]  # descending, every agent by step 1
    calls.clear()
    EulerSampler(SamplerConfig(reveal=RevealSchedule("sequential"))).sample(denoise, (2, 3), 2)
    assert calls == [[0, 1], [0, 1], [1, 0], [1, 0]]  # the paper's (2, 2, 1, 1)


def test_sampler_config_validation() -> None:
    with pytest.raises(ValueError, match="solver"):
        SamplerConfig(solver="rk4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_steps"):
        SamplerConfig(num_steps=0)
    with pytest.raises(ValueError, match="reveal: expected a RevealSchedule"):
        SamplerConfig(reveal="cumulative")  # type: ignore[arg-type]
