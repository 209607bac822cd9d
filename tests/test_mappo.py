"""MAPPO (dimalib.algorithms): λ-returns, PPO losses, policies, ValueNorm, updates, rollouts."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Beta, Distribution, Independent, Normal

from dimalib import MultiAgentSpec
from dimalib.algorithms import MAPPO, Actor, MAPPOConfig, ValueNorm, lambda_returns, ppo_losses
from dimalib.imagination import ImaginedStep

# heterogeneous team: agent "a" sees 3 numbers and acts with 1, agent "b" sees 5 and acts with 3;
# per-entry bounds: a in [-1, 1]; b in [-0.5, 0.5], [0, 2], [-1, 1]
HET = MultiAgentSpec(
    ("a", "b"),
    obs_dims=(3, 5),
    action_dims=(1, 3),
    state_dim=6,
    action_low=(-1.0, -0.5, 0.0, -1.0),
    action_high=(1.0, 0.5, 2.0, 1.0),
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These networks are tiny: one intra-op thread is faster than two on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _obs(spec: MultiAgentSpec, *lead: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*lead, spec.joint_obs_dim, generator=torch.Generator().manual_seed(seed))


def _agent_input(spec: MultiAgentSpec, joint_obs: torch.Tensor, i: int) -> torch.Tensor:
    """Agent i's network input built by hand: own obs, zero padding, one-hot id."""
    own = spec.split_obs(joint_obs)[i]
    pad = joint_obs.new_zeros(*own.shape[:-1], spec.max_obs_dim - spec.obs_dims[i])
    one_hot = F.one_hot(torch.full(own.shape[:-1], i), spec.n_agents).to(joint_obs.dtype)
    return torch.cat([own, pad, one_hot], dim=-1)


def _randomise(module: torch.nn.Module, seed: int, scale: float = 0.3) -> None:
    """Move the near-zero initial output heads so that tests see non-trivial distributions."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


# ------------------------------------------------------------------------ λ-returns
def test_lambda_returns_three_steps_by_hand() -> None:
    # column 0: r = (1, 2, 3), V(s_0..s_3) = (0.5, 1, 2, 4), d = (0.9, 0.45, 0.8), λ = 0.5
    #   V^λ_3 = V(s_3)                                      = 4
    #   V^λ_2 = 3 + 0.8  · (0.5 · 4   + 0.5 · 4)     = 3 + 3.2      = 6.2
    #   V^λ_1 = 2 + 0.45 · (0.5 · 2   + 0.5 · 6.2)   = 2 + 1.845    = 3.845
    #   V^λ_0 = 1 + 0.9  · (0.5 · 1   + 0.5 · 3.845) = 1 + 2.18025  = 3.18025
    # column 1: r = (0, -1, 0.5), V = (1, -2, 0, 3), d = (0.5, 0, 1), λ = 0.5
    #   V^λ_2 = 0.5 + 1 · (0.5 · 3 + 0.5 · 3)                       = 3.5
    #   V^λ_1 = -1 + 0 · (...)                                      = -1     (termination)
    #   V^λ_0 = 0 + 0.5 · (0.5 · (-2) + 0.5 · (-1))                 = -0.75
    rewards = torch.tensor([[1.0, 0.0], [2.0, -1.0], [3.0, 0.5]])
    values = torch.tensor([[0.5, 1.0], [1.0, -2.0], [2.0, 0.0], [4.0, 3.0]])
    discounts = torch.tensor([[0.9, 0.5], [0.45, 0.0], [0.8, 1.0]])
    out = lambda_returns(rewards, values, discounts, lam=0.5)
    expected = torch.tensor([[3.18025, -0.75], [3.845, -1.0], [6.2, 3.5]])
    torch.testing.assert_close(out, expected)


def test_lambda_returns_limits_td0_and_monte_carlo() -> None:
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [1.0], [2.0], [4.0]])
    discounts = torch.tensor([[0.9], [0.45], [0.8]])
    # λ = 0: one-step TD targets r_t + d_t V(s_{t+1})
    td0 = torch.tensor([[1 + 0.9 * 1.0], [2 + 0.45 * 2.0], [3 + 0.8 * 4.0]])
    torch.testing.assert_close(lambda_returns(rewards, values, discounts, lam=0.0), td0)
    # λ = 1: discounted return bootstrapped with V(s_3) = 4: 6.2, 2 + 0.45·6.2, 1 + 0.9·4.79
    mc = torch.tensor([[1 + 0.9 * 4.79], [4.79], [6.2]])
    torch.testing.assert_close(lambda_returns(rewards, values, discounts, lam=1.0), mc)


def test_lambda_returns_rejects_bad_input() -> None:
    r, d = torch.zeros(3, 2), torch.zeros(3, 2)
    with pytest.raises(ValueError, match="values"):
        lambda_returns(r, torch.zeros(3, 2), d, 0.95)  # needs T + 1 values
    with pytest.raises(ValueError, match="discounts"):
        lambda_returns(r, torch.zeros(4, 2), torch.zeros(3, 3), 0.95)
    with pytest.raises(ValueError, match="lam"):
        lambda_returns(r, torch.zeros(4, 2), d, 1.5)
    with pytest.raises(ValueError, match="rewards"):
        lambda_returns([[0.0]], torch.zeros(2, 1), torch.zeros(1, 1), 0.95)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ PPO losses
def _value_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    values = torch.tensor([0.5, 1.05, -2.0])
    old_values = torch.tensor([0.0, 1.0, 0.0])
    returns = torch.tensor([1.0, 3.0, -1.0])
    return values, old_values, returns


def test_ppo_actor_loss_by_hand() -> None:
    # ratios per (sample, agent); old log-probs 0 so log_probs = log(ratio); ε = 0.1
    ratios = torch.tensor([[1.5, 0.5], [1.05, 0.8], [0.7, 1.2]])
    adv = torch.tensor([1.0, -2.0, 0.5])
    # min(ρA, clip(ρ)A):
    #   A=1:    ρ=1.5 → min(1.5, 1.1)=1.1 (clipped above) · ρ=0.5 → min(0.5, 0.9)=0.5
    #   A=-2:   ρ=1.05 → -2.1 (inside)    · ρ=0.8 → min(-1.6, -1.8)=-1.8 (clipped below)
    #   A=0.5:  ρ=0.7 → min(0.35, 0.45)=0.35 · ρ=1.2 → min(0.6, 0.55)=0.55
    # sum = 1.1 + 0.5 - 2.1 - 1.8 + 0.35 + 0.55 = -1.4 → policy_loss = 1.4 / 6
    entropy = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # mean 3.5
    values, old_values, returns = _value_case()
    out = ppo_losses(
        ratios.log(),
        torch.zeros(3, 2),
        adv,
        entropy,
        values,
        old_values,
        returns,
        clip=0.1,
        entropy_coef=0.01,
    )
    torch.testing.assert_close(out["policy_loss"], torch.tensor(1.4 / 6))
    torch.testing.assert_close(out["entropy"], torch.tensor(3.5))
    torch.testing.assert_close(out["entropy_loss"], torch.tensor(-0.035))
    torch.testing.assert_close(out["actor_loss"], torch.tensor(1.4 / 6 - 0.035))
    torch.testing.assert_close(out["clip_fraction"], torch.tensor(5 / 6))  # all but 1.05
    torch.testing.assert_close(out["ratio"], ratios.mean())
    kl = ((ratios - 1) - ratios.log()).mean()
    torch.testing.assert_close(out["approx_kl"], kl)


def test_ppo_actor_loss_gradient_is_zero_where_clipped() -> None:
    # A > 0 with ρ > 1 + ε, and A < 0 with ρ < 1 − ε: the clipped branch wins, no gradient
    log_probs = torch.tensor([[math.log(1.5), math.log(1.05)], [math.log(0.8), 0.0]])
    log_probs.requires_grad_(True)
    adv = torch.tensor([1.0, -2.0])
    z = torch.zeros(2)
    out = ppo_losses(log_probs, torch.zeros(2, 2), adv, torch.zeros(2, 2), z, z, z, clip=0.1)
    out["policy_loss"].backward()
    assert log_probs.grad is not None
    # d/dlogp of −ρA/4 = −ρA/4 where unclipped
    expected = torch.tensor([[0.0, -1.05 * 1.0 / 4], [0.0, -1.0 * -2.0 / 4]])
    torch.testing.assert_close(log_probs.grad, expected)


def test_ppo_critic_loss_by_hand() -> None:
    values, old_values, returns = _value_case()
    lp, z = torch.zeros(3, 1), torch.zeros(3)

    # value clip 0.1: v_clip = (0.1, 1.05, -0.1); errors R − v = (0.5, 1.95, 1.0),
    # R − v_clip = (0.9, 1.95, -0.9)
    # Huber δ=1: ℓ(0.5)=0.125, ℓ(0.9)=0.405, ℓ(1.95)=1.95−0.5=1.45, ℓ(1)=0.5
    #   clipped loss: (max(0.125, 0.405) + 1.45 + max(0.5, 0.405)) / 3 = 2.355 / 3
    #   unclipped:    (0.125 + 1.45 + 0.5) / 3 = 2.075 / 3
    # Huber δ=10 (all quadratic): (0.405 + ½·1.95² + 0.5) / 3 = 2.80625 / 3
    def loss(**kw: float | None) -> torch.Tensor:
        return ppo_losses(lp, lp, z, lp, values, old_values, returns, **kw)["critic_loss"]  # type: ignore[arg-type]

    torch.testing.assert_close(loss(huber_delta=1.0, value_clip=0.1), torch.tensor(2.355 / 3))
    torch.testing.assert_close(loss(huber_delta=1.0, value_clip=None), torch.tensor(2.075 / 3))
    torch.testing.assert_close(loss(huber_delta=10.0, value_clip=0.1), torch.tensor(2.80625 / 3))
    torch.testing.assert_close(loss(huber_delta=None, value_clip=0.1), torch.tensor(2.80625 / 3))
    # a mask drops sample 1: (0.405 + 0.5) / 2 with δ=1
    out = ppo_losses(
        lp,
        lp,
        z,
        lp,
        values,
        old_values,
        returns,
        huber_delta=1.0,
        value_clip=0.1,
        mask=torch.tensor([True, False, True]),
    )
    torch.testing.assert_close(out["critic_loss"], torch.tensor(0.905 / 2))
    torch.testing.assert_close(out["value_loss"], out["critic_loss"])


def test_ppo_losses_mask_drops_steps_for_every_agent() -> None:
    ratios = torch.tensor([[1.5, 0.5], [1.05, 0.8], [0.7, 1.2]])
    adv = torch.tensor([1.0, -2.0, 0.5])
    z = torch.zeros(3)
    out = ppo_losses(
        ratios.log(),
        torch.zeros(3, 2),
        adv,
        torch.zeros(3, 2),
        z,
        z,
        z,
        mask=torch.tensor([1.0, 0.0, 1.0]),
    )
    torch.testing.assert_close(out["policy_loss"], torch.tensor(-(1.1 + 0.5 + 0.35 + 0.55) / 4))


def test_ppo_losses_reject_bad_input() -> None:
    lp, z = torch.zeros(3, 2), torch.zeros(3)
    with pytest.raises(ValueError, match="old_log_probs"):
        ppo_losses(lp, torch.zeros(3, 3), z, lp, z, z, z)
    with pytest.raises(ValueError, match="advantages"):
        ppo_losses(lp, lp, torch.zeros(4), lp, z, z, z)
    with pytest.raises(ValueError, match="returns"):
        ppo_losses(lp, lp, z, lp, z, z, torch.zeros(3, 1))
    with pytest.raises(ValueError, match="mask"):
        ppo_losses(lp, lp, z, lp, z, z, z, mask=torch.ones(2))
    with pytest.raises(ValueError, match="clip"):
        ppo_losses(lp, lp, z, lp, z, z, z, clip=0.0)


# -------------------------------------------------------------------------- policies
def test_agent_inputs_are_padded_observations_with_one_hot_ids() -> None:
    actor = Actor(HET)
    obs = _obs(HET, 4)
    inputs = actor.agent_inputs(obs)  # (4, 2, 5 + 2)
    assert inputs.shape == (4, 2, 7)
    for i in range(2):
        torch.testing.assert_close(inputs[:, i], _agent_input(HET, obs, i))


@pytest.mark.parametrize("policy", ["gaussian", "beta"])
def test_batched_actor_equals_a_loop_over_agents_and_torch_distributions(policy: str) -> None:
    """log π and entropy per agent, recomputed agent by agent with torch.distributions."""
    actor = Actor(HET, MAPPOConfig(policy=policy))  # type: ignore[arg-type]
    _randomise(actor, seed=1)
    obs = _obs(HET, 6, 2, seed=2)  # leading dims (6, 2)
    out = actor.act(obs, generator=torch.Generator().manual_seed(3))
    log_prob, entropy = actor.evaluate(obs, out.policy_action)
    assert log_prob.shape == entropy.shape == (6, 2, 2)
    torch.testing.assert_close(log_prob, out.log_prob)
    actions = HET.split_actions(out.policy_action)
    m = HET.max_action_dim
    for i, d in enumerate(HET.action_dims):
        h = actor.head(actor.body(_agent_input(HET, obs, i)))  # agent i alone
        dist: Distribution
        if policy == "gaussian":
            std = torch.sigmoid(actor.std_param) * 0.5
            dist = Independent(Normal(h[..., :d], std[:d].expand(6, 2, d)), 1)
        else:
            alpha, beta = 1 + F.softplus(h[..., :d]), 1 + F.softplus(h[..., m : m + d])
            dist = Independent(Beta(alpha, beta), 1)
        torch.testing.assert_close(log_prob[..., i], dist.log_prob(actions[i]))
        torch.testing.assert_close(entropy[..., i], dist.entropy())


def test_env_actions_are_mapped_to_the_bounds() -> None:
    low, high = HET.action_bounds()
    g = torch.Generator().manual_seed(0)
    gauss = Actor(HET)
    _randomise(gauss, seed=4, scale=1.0)  # wide means: many samples outside [-1, 1]
    out = gauss.act(_obs(HET, 500), generator=g)
    u = out.policy_action
    assert bool(((u < -1) | (u > 1)).any())  # the stored sample is not clipped
    expected = low + (u.clamp(-1, 1) + 1) / 2 * (high - low)
    torch.testing.assert_close(out.action, expected)
    beta = Actor(HET, MAPPOConfig(policy="beta"))
    out = beta.act(_obs(HET, 500), generator=g)
    assert bool((out.policy_action > 0).all() & (out.policy_action < 1).all())
    torch.testing.assert_close(out.action, low + out.policy_action * (high - low))
    assert bool(((out.action >= low) & (out.action <= high)).all())


@pytest.mark.parametrize("policy", ["gaussian", "beta"])
def test_padding_entries_do_not_contribute(policy: str) -> None:
    """Agent "a" has 1 action entry: its log π and entropy ignore padded slots 1 and 2."""
    actor = Actor(HET, MAPPOConfig(policy=policy))  # type: ignore[arg-type]
    _randomise(actor, seed=5)
    obs = _obs(HET, 8)
    out = actor.act(obs, generator=torch.Generator().manual_seed(0))
    log_prob, entropy = actor.evaluate(obs, out.policy_action)
    (log_prob[:, 0].sum() + entropy[:, 0].sum()).backward()
    weight_grad = actor.head.weight.grad
    assert weight_grad is not None
    used = [0] if policy == "gaussian" else [0, HET.max_action_dim]  # rows feeding agent a
    unused = [r for r in range(weight_grad.shape[0]) if r not in used]
    assert bool((weight_grad[unused] == 0).all())
    assert all(bool(weight_grad[r].abs().sum() > 0) for r in used)
    if policy == "gaussian":
        assert actor.std_param.grad is not None
        assert bool((actor.std_param.grad[1:] == 0).all()) and actor.std_param.grad[0] != 0


def test_deterministic_actions_are_the_means_and_sampling_is_reproducible() -> None:
    for policy in ("gaussian", "beta"):
        actor = Actor(HET, MAPPOConfig(policy=policy))
        _randomise(actor, seed=6)
        obs = _obs(HET, 5)
        a1 = actor.act(obs, generator=torch.Generator().manual_seed(7)).policy_action
        a2 = actor.act(obs, generator=torch.Generator().manual_seed(7)).policy_action
        a3 = actor.act(obs, generator=torch.Generator().manual_seed(8)).policy_action
        assert torch.equal(a1, a2) and not torch.equal(a1, a3)
        mean = actor.act(obs, deterministic=True).policy_action
        p1, p2 = actor(actor.agent_inputs(obs))
        expected = p1 if policy == "gaussian" else p1 / (p1 + p2)
        torch.testing.assert_close(mean, HET.unpad_actions(expected))


def test_beta_sampling_with_a_generator_has_the_right_moments() -> None:
    from dimalib.algorithms.networks import sample_beta

    n = 40_000
    alpha = torch.tensor([2.0, 1.0, 7.5]).repeat(n, 1)
    beta = torch.tensor([5.0, 1.0, 1.5]).repeat(n, 1)
    x = sample_beta(alpha, beta, torch.Generator().manual_seed(0))
    a, b = alpha[0], beta[0]
    mean = a / (a + b)
    var = a * b / ((a + b) ** 2 * (a + b + 1))
    # within 5 standard errors of the sample mean (and ~5 of the sample variance)
    assert bool(((x.mean(0) - mean).abs() < 5 * (var / n).sqrt()).all()), (x.mean(0), mean)
    torch.testing.assert_close(x.var(0), var, atol=2e-3, rtol=0)


# -------------------------------------------------------------------------- ValueNorm
def test_value_norm_is_the_debiased_ema_of_batch_statistics() -> None:
    beta = 0.5  # a small β makes the weighting visible
    norm = ValueNorm(beta=beta)
    g = torch.Generator().manual_seed(0)
    batches = [
        torch.randn(n, generator=g) * s + m
        for n, s, m in ((7, 1.0, 2.0), (3, 2.0, -1.0), (11, 0.5, 4.0))
    ]
    for x in batches:
        norm.update(x)
    k = len(batches)
    weights = [beta ** (k - 1 - i) for i in range(k)]
    mean = sum(w * float(x.double().mean()) for w, x in zip(weights, batches, strict=True)) / sum(
        weights
    )
    mean_sq = sum(
        w * float(x.double().square().mean()) for w, x in zip(weights, batches, strict=True)
    ) / sum(weights)
    got_mean, got_var = norm.mean_var()
    assert got_mean.item() == pytest.approx(mean, rel=1e-12)
    assert got_var.item() == pytest.approx(mean_sq - mean**2, rel=1e-12)


def test_value_norm_one_batch_is_exact_and_invertible() -> None:
    norm = ValueNorm()  # MAPPO's β = 0.99999
    x = torch.tensor([1.0, 3.0, 8.0, -2.0], dtype=torch.float64)
    norm.update(x, mask=torch.tensor([True, True, True, False]))  # -2 is masked out
    mean, var = norm.mean_var()
    assert mean.item() == pytest.approx(4.0, rel=1e-9)
    assert var.item() == pytest.approx(((1 - 4) ** 2 + (3 - 4) ** 2 + (8 - 4) ** 2) / 3, rel=1e-9)
    y = torch.randn(10)
    torch.testing.assert_close(norm.denormalize(norm.normalize(y)), y)
    torch.testing.assert_close(norm.normalize(torch.tensor([4.0])), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="beta"):
        ValueNorm(beta=1.0)


# --------------------------------------------------------------------------- learner
def _rollout(
    spec: MultiAgentSpec, mappo: MAPPO, T: int = 4, B: int = 64, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A fixed synthetic rollout whose reward depends on the action and the state."""
    g = torch.Generator().manual_seed(seed)
    state = torch.randn(T + 1, B, spec.state_dim, generator=g)
    obs = torch.randn(T, B, spec.joint_obs_dim, generator=g)
    with torch.no_grad():
        out = mappo.actor.act(obs, generator=g)
    rewards = state[:T, :, 0] - out.action.square().sum(-1)
    return {
        "obs": obs,
        "state": state,
        "actions": out.policy_action,
        "log_probs": out.log_prob,
        "rewards": rewards,
        "termination_prob": torch.rand(T, B, generator=g) * 0.2,
        "mask": torch.rand(T, B, generator=g) > 0.1,
    }


@torch.no_grad()
def _losses(mappo: MAPPO, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v) for k, v in mappo.compute_losses(batch).items()}


@pytest.mark.parametrize("value_clip", [0.1, None])
def test_one_update_decreases_the_losses_on_a_fixed_rollout(value_clip: float | None) -> None:
    """One `update` (5 epochs × 2 minibatches) on a rollout lowers both losses on that rollout.

    (Repeated updates on the same rollout move the λ-return targets, which bootstrap on the
    critic, so the comparison is made against the batch prepared before the update.)
    """
    torch.manual_seed(0)
    mappo = MAPPO(HET, MAPPOConfig(num_minibatches=2, value_clip=value_clip))
    rollout = _rollout(HET, mappo)
    batch = mappo.prepare_batch(rollout)
    before = _losses(mappo, batch)
    assert before["ratio"] == pytest.approx(1.0, abs=1e-6)  # same policy as at collection
    assert before["policy_loss"] == pytest.approx(0.0, abs=1e-6)  # normalised advantages
    metrics = mappo.update(rollout, generator=torch.Generator().manual_seed(1))
    after = _losses(mappo, batch)
    assert after["policy_loss"] < -0.01
    if value_clip is None:
        assert after["critic_loss"] < 0.75 * before["critic_loss"]
    else:  # the clipped loss can only fall as far as a 0.1 move of every value allows
        assert after["critic_loss"] < before["critic_loss"] - 0.02
    assert set(metrics) >= {"actor_loss", "critic_loss", "entropy", "actor_grad_norm", "approx_kl"}
    assert all(math.isfinite(v) for v in metrics.values())


def test_prepare_batch_targets_advantages_and_discounts() -> None:
    torch.manual_seed(0)
    mappo = MAPPO(HET, MAPPOConfig(gamma=0.9, lam=0.8))
    twin = MAPPO(HET, MAPPOConfig(gamma=0.9, lam=0.8))
    twin.load_state_dict(mappo.state_dict())
    rollout = _rollout(HET, mappo, T=3, B=32)
    # the λ-returns by hand, with d_t = γ (1 − p_t), from the critic before the batch is prepared
    with torch.no_grad():
        values = mappo.critic.value(rollout["state"])
    discounts = 0.9 * (1 - rollout["termination_prob"])
    returns = lambda_returns(rollout["rewards"], values, discounts, 0.8).reshape(-1)
    batch = mappo.prepare_batch(rollout)
    torch.testing.assert_close(batch["lambda_returns"], returns)
    # critic targets: the returns normalised with the statistics updated by this batch
    torch.testing.assert_close(mappo.critic.denormalize(batch["returns"]), returns)
    assert mappo.critic.value_norm is not None
    mean, _ = mappo.critic.value_norm.mean_var()
    mask = batch["mask"].bool()
    assert float(mean) == pytest.approx(float(returns[mask].double().mean()), rel=1e-6)
    # normalised team advantage over the counted steps
    adv = batch["advantages"][mask]
    assert abs(float(adv.mean())) < 1e-5 and abs(float(adv.std(unbiased=False)) - 1) < 1e-3
    # giving the discounts directly is the same thing
    direct = {k: v for k, v in rollout.items() if k != "termination_prob"}
    batch2 = twin.prepare_batch({**direct, "discounts": discounts})
    for key in ("lambda_returns", "returns", "advantages", "old_values"):
        torch.testing.assert_close(batch2[key], batch[key])


def test_update_rejects_bad_rollouts() -> None:
    mappo = MAPPO(HET)
    good = _rollout(HET, mappo, T=2, B=4)
    missing = {k: v for k, v in good.items() if k != "log_probs"}
    with pytest.raises(ValueError, match="log_probs"):
        mappo.update(missing)
    with pytest.raises(ValueError, match=r"rollout\['obs'\]"):
        mappo.update({**good, "obs": good["obs"][..., :-1]})
    with pytest.raises(ValueError, match=r"rollout\['state'\]"):
        mappo.update({**good, "state": good["state"][:-1]})  # s_T missing
    with pytest.raises(ValueError, match="exactly one of 'discounts' and 'termination_prob'"):
        mappo.update({**good, "discounts": torch.ones(2, 4)})
    with pytest.raises(ValueError, match=r"rollout\['rewards'\]"):
        mappo.update({**good, "rewards": torch.full((2, 4), float("nan"))})
    with pytest.raises(ValueError, match=r"rollout\['mask'\]"):
        mappo.update({**good, "mask": torch.ones(3, 4)})
    with pytest.raises(ValueError, match="spec"):
        MAPPO("not a spec")  # type: ignore[arg-type]


def test_config_defaults_presets_and_validation() -> None:
    cfg = MAPPOConfig()
    assert (cfg.actor_lr, cfg.adam_eps, cfg.max_grad_norm, cfg.clip, cfg.ppo_epochs) == (
        5e-4,
        1e-5,
        10.0,
        0.1,
        5,
    )
    assert (cfg.gamma, cfg.lam, cfg.entropy_coef, cfg.huber_delta) == (0.99, 0.95, 0.001, 10.0)
    dex = MAPPOConfig.bidexhands()
    assert (dex.gamma, dex.entropy_coef) == (0.95, 0.01)
    assert MAPPOConfig.mamujoco(ppo_epochs=2).ppo_epochs == 2
    for field, value in (
        ("clip", 0.0),
        ("gamma", 1.5),
        ("num_minibatches", 0),
        ("policy", "cauchy"),
        ("value_clip", -1.0),
    ):
        with pytest.raises(ValueError, match=field):
            MAPPOConfig(**{field: value})  # type: ignore[arg-type]


def test_state_dict_round_trip_restores_networks_optimisers_and_value_norm() -> None:
    torch.manual_seed(0)
    cfg = MAPPOConfig(policy="beta", num_minibatches=2)
    mappo = MAPPO(HET, cfg)
    rollout = _rollout(HET, mappo, T=2, B=16)
    mappo.update(rollout, generator=torch.Generator().manual_seed(0))
    restored = MAPPO.from_state_dict(mappo.state_dict())
    assert restored.config == cfg
    assert restored.critic.value_norm is not None and mappo.critic.value_norm is not None
    assert torch.equal(
        restored.critic.value_norm.running_mean, mappo.critic.value_norm.running_mean
    )
    m1 = mappo.update(rollout, generator=torch.Generator().manual_seed(1))
    m2 = restored.update(rollout, generator=torch.Generator().manual_seed(1))
    assert m1 == m2  # same Adam moments, same statistics, same minibatches
    with pytest.raises(ValueError, match="spec"):
        MAPPO(MultiAgentSpec(("x",), (3,), (1,), 2)).load_state_dict(mappo.state_dict())


def test_fused_adam_equals_the_for_loop_adam_and_survives_loading() -> None:
    """The CPU learner's fused Adam steps equal torch's for-loop Adam (the pre-2026-12-03
    optimiser) to float32 rounding over one update, and loading a state saved by a learner
    with the for-loop kernel keeps this learner's fused one."""
    torch.manual_seed(0)
    fused = MAPPO(HET, MAPPOConfig(num_minibatches=2))
    assert all(g["fused"] for g in fused.actor_optim.param_groups + fused.critic_optim.param_groups)
    loop = MAPPO.from_state_dict(fused.state_dict())
    for optim in (loop.actor_optim, loop.critic_optim):
        for group in optim.param_groups:
            group["fused"] = None  # torch's default on CPU: the per-tensor for-loop
    rollout = _rollout(HET, fused)
    m_fused = fused.update(rollout, generator=torch.Generator().manual_seed(1))
    m_loop = loop.update(rollout, generator=torch.Generator().manual_seed(1))
    for k in m_fused:
        assert m_fused[k] == pytest.approx(m_loop[k], rel=1e-4, abs=1e-6), k
    for a, b in zip(fused.actor.parameters(), loop.actor.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    fused.load_state_dict(loop.state_dict())  # saved with fused=None
    assert all(g["fused"] for g in fused.actor_optim.param_groups)
    metrics = fused.update(rollout, generator=torch.Generator().manual_seed(2))  # steps on
    assert all(math.isfinite(v) for v in metrics.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cpu_for_loop_adam_state_loads_into_a_cuda_fused_learner() -> None:
    torch.manual_seed(0)
    cpu = MAPPO(HET, MAPPOConfig())
    for optim in (cpu.actor_optim, cpu.critic_optim):
        for group in optim.param_groups:
            group["fused"] = None
    cpu.update(_rollout(HET, cpu))
    cuda = MAPPO.from_state_dict(cpu.state_dict(), device="cuda")
    steps = [s["step"] for s in cuda.actor_optim.state.values()]
    assert steps and all(t.device.type == "cuda" for t in steps)  # placed for the fused kernel
    rollout = {k: v.cuda() for k, v in _rollout(HET, cpu).items()}
    assert all(math.isfinite(v) for v in cuda.update(rollout).values())


# -------------------------------------------------------------------- imagined rollouts
class _FakeImagination:
    """An ImaginationEnv stand-in: random contexts; rollout 0 terminates at step 1."""

    def __init__(self, spec: MultiAgentSpec, num_envs: int = 6, horizon: int = 4) -> None:
        self.spec, self.num_envs, self._horizon = spec, num_envs, horizon
        self.g = torch.Generator().manual_seed(0)
        self.received: list[torch.Tensor] = []

    @property
    def horizon(self) -> int:
        return self._horizon

    def reset(self, *, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        self.t, self.terminated = 0, torch.zeros(self.num_envs, dtype=torch.bool)
        self.received.clear()
        return self._obs_state()

    def _obs_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        B = self.num_envs
        return (
            torch.randn(B, self.spec.joint_obs_dim, generator=self.g),
            torch.randn(B, self.spec.state_dim, generator=self.g),
        )

    def step(self, joint_action: torch.Tensor) -> ImaginedStep:
        self.received.append(joint_action)
        prob = torch.full((self.num_envs,), 0.1)
        if self.t == 1:
            prob[0] = 0.9
        reward = torch.where(self.terminated, 0.0, -joint_action.square().sum(-1))
        self.terminated = self.terminated | (prob > 0.5)
        self.t += 1
        obs, state = self._obs_state()
        truncated = torch.full((self.num_envs,), self.t >= self.horizon)
        return ImaginedStep(obs, state, reward, self.terminated.clone(), truncated, prob)


def test_collect_imagined_rollout_records_a_consistent_rollout() -> None:
    mappo = MAPPO(HET)
    env = _FakeImagination(HET, num_envs=6, horizon=4)
    rollout = mappo.collect_imagined_rollout(env, generator=torch.Generator().manual_seed(0))
    T, B = 4, 6
    shapes = {
        "obs": (T, B, 8),
        "state": (T + 1, B, 6),
        "actions": (T, B, 4),
        "env_actions": (T, B, 4),
        "log_probs": (T, B, 2),
        "rewards": (T, B),
        "termination_prob": (T, B),
        "mask": (T, B),
        "terminated": (T, B),
    }
    assert {k: tuple(v.shape) for k, v in rollout.items()} == shapes
    assert not any(v.requires_grad for v in rollout.values())
    # the env received exactly the recorded env actions, within the bounds
    torch.testing.assert_close(torch.stack(env.received), rollout["env_actions"])
    low, high = HET.action_bounds()
    assert bool(((rollout["env_actions"] >= low) & (rollout["env_actions"] <= high)).all())
    # alive mask: rollout 0 terminates on step 1, so steps 2 and 3 do not count
    expected_mask = torch.ones(T, B, dtype=torch.bool)
    expected_mask[2:, 0] = False
    assert torch.equal(rollout["mask"], expected_mask)
    # stored log-probs are those of the stored policy actions
    log_prob, _ = mappo.actor.evaluate(rollout["obs"], rollout["actions"])
    torch.testing.assert_close(log_prob, rollout["log_probs"])
    metrics = mappo.update(rollout)
    assert all(math.isfinite(v) for v in metrics.values())
    with pytest.raises(ValueError, match="horizon"):
        mappo.collect_imagined_rollout(env, horizon=5)


def test_collect_imagined_rollout_in_a_real_imagination_env() -> None:
    from dimalib.imagination import ImaginationConfig, ImaginationEnv
    from dimalib.world_model import (
        DIMAWorldModel,
        RewardTerminationConfig,
        StateDecoderConfig,
        WorldModelConfig,
    )
    from dimalib.world_model.dynamics import DenoiserConfig

    spec = MultiAgentSpec(("left", "right"), (4, 5), (2, 3), state_dim=6)
    tiny = WorldModelConfig(
        dynamics=DenoiserConfig(channels=(16, 16), depths=(1, 1), cond_dim=32, action_token_dim=16),
        reward=RewardTerminationConfig(n_layer=1, n_head=2, n_embd=16, head_hidden=16, max_steps=4),
        decoder=StateDecoderConfig(hidden_dim=16),
    )
    torch.manual_seed(0)
    wm = DIMAWorldModel(spec, tiny)
    B = 8
    g = torch.Generator().manual_seed(0)
    ctx = {"states": torch.randn(B, 3, 6, generator=g), "actions": torch.rand(B, 2, 5, generator=g)}
    env = ImaginationEnv(wm, ctx, ImaginationConfig(num_envs=B, horizon=4), seed=0)
    mappo = MAPPO(spec)
    rollout = mappo.collect_imagined_rollout(env, horizon=3, generator=g)
    assert rollout["state"].shape == (4, B, 6) and rollout["obs"].shape == (3, B, 9)
    torch.testing.assert_close(rollout["state"][0], ctx["states"][:, -1])
    metrics = mappo.update(rollout)
    assert all(math.isfinite(v) for v in metrics.values())


# ---------------------------------------------------------------------- learning (slow)
class _ContextualBandit:
    """Each step shows fresh random observations; the team reward is −mean squared distance
    of the joint action to a known linear function of the observations (inside the bounds)."""

    def __init__(self, spec: MultiAgentSpec, num_envs: int, horizon: int, seed: int) -> None:
        self.spec, self.num_envs, self._horizon = spec, num_envs, horizon
        self.g = torch.Generator().manual_seed(seed)

    @property
    def horizon(self) -> int:
        return self._horizon

    @staticmethod
    def optimal(joint_obs: torch.Tensor) -> torch.Tensor:
        """a*(o) for HET: a: (o1 − o2)/2; b: o5/4, 1 + o4/2, −o3/2 (obs entries in [-1, 1])."""
        o = joint_obs
        return torch.stack(
            [(o[..., 0] - o[..., 1]) / 2, o[..., 7] / 4, 1 + o[..., 6] / 2, -o[..., 5] / 2], dim=-1
        )

    def reward(self, joint_obs: torch.Tensor, joint_action: torch.Tensor) -> torch.Tensor:
        return -(joint_action - self.optimal(joint_obs)).square().mean(-1)

    def _sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        obs = torch.rand(self.num_envs, self.spec.joint_obs_dim, generator=self.g) * 2 - 1
        return obs, obs[:, :6].clone()  # state: part of the observations

    def reset(self, *, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        self.t = 0
        self.obs, state = self._sample()
        return self.obs, state

    def step(self, joint_action: torch.Tensor) -> ImaginedStep:
        reward = self.reward(self.obs, joint_action)
        self.t += 1
        self.obs, state = self._sample()
        B = self.num_envs
        false = torch.zeros(B, dtype=torch.bool)
        return ImaginedStep(
            self.obs, state, reward, false, false | (self.t >= self.horizon), torch.zeros(B)
        )


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["gaussian", "beta"])
def test_mappo_learns_a_contextual_bandit(policy: str) -> None:
    torch.manual_seed(0)
    mappo = MAPPO(HET, MAPPOConfig(policy=policy, num_minibatches=2))  # type: ignore[arg-type]
    env = _ContextualBandit(HET, num_envs=256, horizon=3, seed=0)
    eval_obs = (
        torch.rand(2000, HET.joint_obs_dim, generator=torch.Generator().manual_seed(9)) * 2 - 1
    )

    def score() -> float:
        return float(env.reward(eval_obs, mappo.act(eval_obs, deterministic=True)).mean())

    initial = score()
    g = torch.Generator().manual_seed(1)
    for _ in range(30):
        mappo.update(mappo.collect_imagined_rollout(env, generator=g), generator=g)
    final = score()
    # the optimum is 0: the deterministic policy must close at least 80% of the initial gap
    # (measured: about 95% for both policies after 30 updates)
    assert initial < -0.05
    assert final > 0.2 * initial, (initial, final)


def test_non_finite_minibatch_updates_are_skipped_and_counted() -> None:
    torch.manual_seed(0)
    mappo = MAPPO(HET, MAPPOConfig(num_minibatches=2, ppo_epochs=2))
    rollout = _rollout(HET, mappo)
    original, calls = mappo.compute_losses, [0]

    def losses(batch):  # type: ignore[no-untyped-def]
        out, calls[0] = original(batch), calls[0] + 1
        if calls[0] == 2:  # the second of 4 minibatch updates
            out["actor_loss"] = out["actor_loss"] * float("nan")
        return out

    mappo.compute_losses = losses  # type: ignore[method-assign]
    metrics = mappo.update(rollout, generator=torch.Generator().manual_seed(1))
    assert metrics["skipped_updates"] == 1.0
    assert all(math.isfinite(v) for v in metrics.values())
    assert all(torch.isfinite(p).all() for p in mappo.actor.parameters())
    steps = [float(s["step"]) for s in mappo.actor_optim.state.values()]
    assert steps and all(s == 3.0 for s in steps)  # 4 minibatches, one skipped


def test_a_nan_parameter_stops_the_update_and_changes_nothing_else() -> None:
    from dimalib.utils.checks import NonFiniteTrainingError

    torch.manual_seed(0)
    mappo = MAPPO(HET, MAPPOConfig(num_minibatches=2, ppo_epochs=2))
    rollout = _rollout(HET, mappo)
    with torch.no_grad():
        next(mappo.actor.parameters()).view(-1)[0] = float("nan")
    actor = {k: v.clone() for k, v in mappo.actor.state_dict().items()}
    critic = {k: v.clone() for k, v in mappo.critic.state_dict().items() if "value_norm" not in k}
    with pytest.raises(NonFiniteTrainingError, match="MAPPO: all 4 minibatch updates"):
        mappo.update(rollout, generator=torch.Generator().manual_seed(1))
    now = mappo.actor.state_dict()
    assert all(torch.allclose(now[k], v, rtol=0, atol=0, equal_nan=True) for k, v in actor.items())
    assert all(torch.equal(mappo.critic.state_dict()[k], v) for k, v in critic.items())
    assert not mappo.actor_optim.state and not mappo.critic_optim.state  # no step was taken


def test_a_nan_world_model_parameter_stops_training_with_a_clear_error() -> None:
    from dimalib.training import NonFiniteTrainingError, WorldModelTrainer
    from dimalib.world_model import DIMAWorldModel
    from tests.test_imagination import TINY
    from tests.test_training import _toy_buffer

    env, buf = _toy_buffer(steps=100)
    wm = DIMAWorldModel(env.spec, TINY)
    with torch.no_grad():
        next(wm.reward_model.parameters()).view(-1)[0] = float("nan")
    trainer = WorldModelTrainer(wm)
    with pytest.raises(NonFiniteTrainingError, match="reward: all 2 updates"):
        trainer.train_reward(buf, 2)
