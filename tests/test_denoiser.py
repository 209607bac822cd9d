"""SequentialAgentDenoiser / JointActionDenoiser: conditioning, invariances, loss, errors."""

from __future__ import annotations

import copy
import dataclasses
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dimalib import MultiAgentSpec
from dimalib.world_model.dynamics import (
    DenoiserConfig,
    JointActionDenoiser,
    RevealSchedule,
    SamplerConfig,
    SequentialAgentDenoiser,
    agent_schedule,
)

TINY = DenoiserConfig(channels=(32, 32), depths=(1, 1), cond_dim=64, action_token_dim=32)
#: the paper's one-agent-per-step scheme (eq. 9)
PAPER = dataclasses.replace(TINY, sampler=SamplerConfig(reveal=RevealSchedule("sequential")))


def _spec(action_dims: tuple[int, ...] = (3, 3), state_dim: int = 7) -> MultiAgentSpec:
    n = len(action_dims)
    return MultiAgentSpec(tuple(f"agent_{i}" for i in range(n)), (5,) * n, action_dims, state_dim)


@torch.no_grad()
def _randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> None:
    """Perturb every parameter (zero-initialised output layers would hide the conditioning)."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.add_(torch.randn(p.shape, generator=g) * scale)


def _inputs(spec: MultiAgentSpec, B: int, seed: int = 0, L: int = 3):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(B, L, spec.state_dim, generator=g)
    actions = torch.rand(B, L, spec.joint_action_dim, generator=g) * 2 - 1
    noisy = torch.randn(B, spec.state_dim, generator=g)
    sigma = torch.rand(B, generator=g) * 2 + 0.05
    mask = torch.ones(B, L, dtype=torch.bool)
    return states, actions, mask, noisy, sigma


def _step(model, states, actions, mask, noisy, sigma, agent):  # type: ignore[no-untyped-def]
    """One denoiser evaluation; ``agent`` is ``[B]`` long (one revealed agent) or ``[B, n]`` bool."""
    if agent.dtype != torch.bool:
        agent = torch.nn.functional.one_hot(agent, model.spec.n_agents).bool()
    with torch.no_grad():
        ctx = model.to_model_space(states)
        return model.denoise(noisy, sigma, ctx, mask, model.encode_actions(actions, mask), agent)


@pytest.mark.parametrize("action_dims", [(3, 3), (2, 4, 1)])
def test_one_step_depends_on_agent_k_current_action_only(action_dims: tuple[int, ...]) -> None:
    spec = _spec(action_dims)
    model = SequentialAgentDenoiser(spec, TINY).eval()
    _randomize(model)
    states, actions, mask, noisy, sigma = _inputs(spec, 6)
    for k in range(spec.n_agents):
        agent = torch.full((6,), k)
        base = _step(model, states, actions, mask, noisy, sigma, agent)
        for j, sl in enumerate(spec.action_slices):
            changed = actions.clone()
            changed[:, -1, sl] = torch.rand_like(changed[:, -1, sl]) * 2 - 1
            out = _step(model, states, changed, mask, noisy, sigma, agent)
            if j == k:
                assert (out - base).abs().max() > 1e-3, "agent k's current action must matter"
            else:
                torch.testing.assert_close(out, base, rtol=0, atol=1e-6)
        # every agent's past actions matter
        past = actions.clone()
        past[:, 0] = -past[:, 0]
        assert (_step(model, states, past, mask, noisy, sigma, agent) - base).abs().max() > 1e-3


def test_joint_denoiser_sees_every_current_action_and_ignores_the_order() -> None:
    spec = _spec((3, 2))
    model = JointActionDenoiser(spec, TINY).eval()
    _randomize(model)
    assert model.reveal.kind == "joint"
    states, actions, mask, noisy, sigma = _inputs(spec, 4)
    everyone = torch.ones(4, 2, dtype=torch.bool)
    base = _step(model, states, actions, mask, noisy, sigma, everyone)
    for sl in spec.action_slices:
        changed = actions.clone()
        changed[:, -1, sl] += 0.5
        out = _step(model, states, changed, mask, noisy, sigma, everyone)
        assert (out - base).abs().max() > 1e-3
    # every step sees every agent, so the conditioning order cannot matter
    a, b = (
        model.predict_next_state(states, actions, mask, order=order,
                                 generator=torch.Generator().manual_seed(0))
        for order in ("descending", "ascending")
    )  # fmt: skip
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_revealed_set_pools_exactly_its_agents() -> None:
    spec = _spec((2, 4, 1))
    model = SequentialAgentDenoiser(spec, TINY).eval()
    _randomize(model)
    states, actions, mask, noisy, sigma = _inputs(spec, 5)
    revealed = torch.tensor([[True, False, True]] * 5)
    base = _step(model, states, actions, mask, noisy, sigma, revealed)
    for j, sl in enumerate(spec.action_slices):
        changed = actions.clone()
        changed[:, -1, sl] = torch.rand_like(changed[:, -1, sl]) * 2 - 1
        out = _step(model, states, changed, mask, noisy, sigma, revealed)
        if revealed[0, j]:
            assert (out - base).abs().max() > 1e-3
        else:
            torch.testing.assert_close(out, base, rtol=0, atol=1e-6)
    # the pool is the mean of the valid past tokens and the revealed current ones (by hand)
    ctx = model.encode_actions(actions, mask)
    tokens = model.action_encoder._tokens(actions)  # (B, L, n, D)
    by_hand = torch.cat([tokens[:, :-1].flatten(1, 2), tokens[:, -1, [0, 2]]], dim=1).mean(1)
    torch.testing.assert_close(
        model.action_encoder.pool(ctx, revealed), model.action_encoder.out(by_hand)
    )


def test_masked_context_steps_are_ignored() -> None:
    spec = _spec()
    model = SequentialAgentDenoiser(spec, TINY).eval()
    _randomize(model)
    states, actions, _, noisy, sigma = _inputs(spec, 4)
    mask = torch.tensor([[False, True, True]] * 4)
    agent = torch.zeros(4, dtype=torch.long)
    base = _step(model, states, actions, mask, noisy, sigma, agent)
    s2, a2 = states.clone(), actions.clone()
    s2[:, 0] = 100.0  # padded step: its state and action must not matter
    a2[:, 0] = 0.9
    torch.testing.assert_close(_step(model, s2, a2, mask, noisy, sigma, agent), base)


def test_batched_equals_looped() -> None:
    spec = _spec((2, 3, 1))
    model = SequentialAgentDenoiser(spec, TINY).eval()
    _randomize(model)
    states, actions, mask, noisy, sigma = _inputs(spec, 5)
    mask[1, 0] = False
    agent = torch.tensor([0, 1, 2, 1, 0])
    batched = _step(model, states, actions, mask, noisy, sigma, agent)
    looped = torch.cat(
        [
            _step(
                model,
                states[i : i + 1],
                actions[i : i + 1],
                mask[i : i + 1],
                noisy[i : i + 1],
                sigma[i : i + 1],
                agent[i : i + 1],
            )
            for i in range(5)
        ]
    )
    torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(
    action_dims=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    data=st.data(),
)
def test_relabelling_agents_consistently_leaves_predictions_unchanged(
    action_dims: list[int], data: st.DataObject
) -> None:
    spec = _spec(tuple(action_dims), state_dim=4)
    n = spec.n_agents
    perm = data.draw(st.permutations(list(range(n))))
    model = SequentialAgentDenoiser(spec, PAPER).eval()  # per-step orders of eq. 9
    _randomize(model, seed=len(action_dims))
    model.normalizer.update(torch.randn(50, 4) * 3 + 1)
    relabelled = model.permute_agents(perm)
    states, actions, mask, _, _ = _inputs(spec, 3)
    # the same joint action written in the new agent order
    new_actions = torch.cat([actions[..., spec.action_slices[i]] for i in perm], dim=-1)
    old_schedule = agent_schedule("descending", n, model.sampler.num_steps(n)).tolist()
    inverse = {old: new for new, old in enumerate(perm)}
    new_order = [inverse[k] for k in old_schedule]
    a = model.predict_next_state(
        states, actions, mask, order=old_schedule, generator=torch.Generator().manual_seed(0)
    )
    b = relabelled.predict_next_state(
        states, new_actions, mask, order=new_order, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_loss_draws_agents_uniformly_and_uses_them() -> None:
    spec = _spec((1, 2, 3, 1))
    model = SequentialAgentDenoiser(spec, PAPER)
    _randomize(model)
    states, actions, mask, _, _ = _inputs(spec, 512)
    batch = {"states": states, "actions": actions, "mask": mask, "next_state": states[:, -1] + 0.1}
    counts = torch.zeros(spec.n_agents)
    for i in range(8):
        _, info = model.loss(batch, generator=torch.Generator().manual_seed(i))
        assert bool((info["revealed"].sum(dim=1) == 1).all())  # eq. 9: exactly one agent
        counts += info["revealed"].sum(dim=0)
    expected = counts.sum() / spec.n_agents
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 16.3  # χ²(3 dof) 0.999 quantile

    # the drawn agent is the one the network is conditioned on: forcing k changes the loss
    model.eval()
    losses = []
    for k in range(spec.n_agents):
        forced = torch.nn.functional.one_hot(torch.full((512,), k), spec.n_agents).bool()
        model.sample_revealed = lambda sigma, generator=None, f=forced: f  # type: ignore[method-assign]
        losses.append(
            float(model.loss(batch, generator=torch.Generator().manual_seed(0))[0].detach())
        )
    assert len({round(v, 6) for v in losses}) == spec.n_agents


def test_loss_is_reproducible_and_updates_the_normalizer_in_train_mode() -> None:
    spec = _spec()
    model = SequentialAgentDenoiser(spec, TINY)
    states, actions, mask, _, _ = _inputs(spec, 32)
    batch = {
        "states": states,
        "actions": actions,
        "mask": mask,
        "next_state": states[:, -1] * 2 + 3,
    }
    l1, _ = model.loss(batch, generator=torch.Generator().manual_seed(0))
    assert float(model.normalizer.count) == 32
    torch.testing.assert_close(model.normalizer.mean.float(), batch["next_state"].mean(0))
    model.eval()
    l2, _ = model.loss(batch, generator=torch.Generator().manual_seed(0))
    l3, _ = model.loss(batch, generator=torch.Generator().manual_seed(0))
    assert float(model.normalizer.count) == 32
    assert torch.equal(l2, l3)
    assert torch.isfinite(l1)


@pytest.mark.parametrize("reveal", ["cumulative", "sequential", "joint"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sampling_block_folds_the_condition_projection_exactly(
    reveal: str, dtype: torch.dtype
) -> None:
    """Inside ``sampling()`` the norms' projection is folded into the action pool's output layer
    and a σ expanded over the batch is embedded once: the same denoised state as the plain path,
    for an expanded σ and for one σ per sample."""
    spec = _spec((2, 3, 1))
    cfg = dataclasses.replace(TINY, sampler=SamplerConfig(reveal=RevealSchedule(reveal)))  # type: ignore[arg-type]
    model = SequentialAgentDenoiser(spec, cfg).eval().to(dtype)
    _randomize(model)
    states, actions, mask, noisy, sigma = _inputs(spec, 6)
    states, actions, noisy, sigma = (t.to(dtype) for t in (states, actions, noisy, sigma))
    mask[1, 0] = False
    revealed = torch.rand(6, 3, generator=torch.Generator().manual_seed(3)) < 0.5
    with torch.inference_mode():
        ctx = model.to_model_space(states)
        tokens = model.encode_actions(actions, mask)
        for sig in (sigma[2].expand(6), sigma):
            plain = model.denoise(noisy, sig, ctx, mask, tokens, revealed)
            rows = [  # one sample at a time: neither the one-σ embedding nor the fold applies
                model.denoise(
                    noisy[i : i + 1],
                    sig[i : i + 1].contiguous(),
                    ctx[i : i + 1],
                    mask[i : i + 1],
                    type(tokens)(*(t[i : i + 1] for t in tokens)),
                    revealed[i : i + 1],
                )
                for i in range(6)
            ]
            tol = 1e-12 if dtype == torch.float64 else 2e-5
            torch.testing.assert_close(plain, torch.cat(rows), rtol=tol, atol=tol)
            with model.sampling():
                assert model._folded is not None
                folded = model.denoise(noisy, sig, ctx, mask, tokens, revealed)
            assert model._folded is None  # dropped on leaving
            torch.testing.assert_close(folded, plain, rtol=tol, atol=tol)
            assert not torch.equal(plain, model.denoise(noisy, sig, ctx, mask, tokens, ~revealed))
    with pytest.raises(RuntimeError, match="no gradient"), model.sampling():
        pass


def test_sampling_block_at_paper_size_in_float32() -> None:
    """The fold's products at the paper's sizes (Table 3) go through the float32 CPU backend
    (oneDNN above its threshold): still the plain path's numbers to float32 rounding."""
    spec = _spec((3, 3), state_dim=17)
    model = SequentialAgentDenoiser(spec).eval()
    _randomize(model, scale=0.05)
    states, actions, mask, noisy, _ = _inputs(spec, 600)
    revealed = torch.rand(600, 2, generator=torch.Generator().manual_seed(5)) < 0.5
    with torch.inference_mode():
        ctx = model.to_model_space(states)
        tokens = model.encode_actions(actions, mask)
        sig = torch.tensor(0.7).expand(600)
        plain = model.denoise(noisy, sig.contiguous(), ctx, mask, tokens, revealed)
        with model.sampling():
            folded = model.denoise(noisy, sig, ctx, mask, tokens, revealed)
    assert plain.abs().max() > 0.1
    torch.testing.assert_close(folded, plain, rtol=1e-4, atol=1e-4)


def test_sampling_block_state_is_scoped() -> None:
    """The fold lives only inside the block: cleared after an exception, absent from copies made
    inside it, kept by a nested block, and never used when gradients are recorded."""
    spec = _spec()
    model = SequentialAgentDenoiser(spec, TINY).eval()
    _randomize(model)
    with pytest.raises(KeyError), torch.inference_mode(), model.sampling():
        raise KeyError("boom")
    assert model._folded is None and model.unet._stacked is None
    with torch.inference_mode(), model.sampling():
        outer = model._folded
        with model.sampling():
            assert model._folded is outer
        assert model._folded is outer and model.unet._stacked is not None  # the outer's holds
        twin = copy.deepcopy(model)
    assert twin._folded is None and twin.unet._stacked is None
    states, actions, mask, noisy, sigma = _inputs(spec, 4)
    revealed = torch.ones(4, 2, dtype=torch.bool)
    with torch.no_grad():
        model._folded = (torch.zeros(1), torch.zeros(1), torch.zeros(1))  # a stale fold ...
    try:
        ctx = model.to_model_space(states)
        loss = model.denoise(noisy, sigma, ctx, mask, model.encode_actions(actions, mask), revealed)
        loss.sum().backward()  # ... is ignored while gradients are recorded
    finally:
        model._folded = None
    assert model.action_encoder.out[-1].weight.grad is not None


def test_predict_next_state_equals_the_sampler_on_the_plain_network() -> None:
    """``predict_next_state`` (inside ``sampling()``: the fold) against the sampler run by hand
    on the unfolded network, in float64 (the one-σ embedding is checked above)."""
    spec = _spec((2, 3))
    model = SequentialAgentDenoiser(spec, TINY).eval().double()
    _randomize(model)
    model.normalizer.update(torch.randn(100, spec.state_dim, dtype=torch.float64) * 3 + 1)
    states, actions, mask, _, _ = _inputs(spec, 8)
    states, actions = states.double(), actions.double()
    got = model.predict_next_state(states, actions, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        ctx = model.to_model_space(states)
        tokens = model.encode_actions(actions, mask)
        x = model.sampler.sample(
            lambda x, sig, rev: model.denoise(x, sig, ctx, mask, tokens, rev),
            (8, spec.state_dim),
            spec.n_agents,
            generator=torch.Generator().manual_seed(4),
            dtype=torch.float64,
        )
        want = model.from_model_space(x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert got.std() > 0.1  # a randomised network: the conditioning is not hidden


def test_predict_next_state_is_reproducible_and_in_env_units() -> None:
    spec = _spec()
    model = SequentialAgentDenoiser(spec, TINY).eval()
    model.normalizer.update(torch.randn(100, spec.state_dim) * 10 + 50)
    states, actions, _, _, _ = _inputs(spec, 8)
    a = model.predict_next_state(states, actions, generator=torch.Generator().manual_seed(1))
    b = model.predict_next_state(states, actions, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    # An untrained network outputs F = 0 (zero-initialised output conv), so D = c_skip·x, and each
    # Euler step multiplies x by 1 + (σ' − σ)·σ/(σ² + σ_data²): the sample is the start noise times
    # that product, mapped back to environment units by the normaliser.
    sigmas = model.sampler.sigmas(spec.n_agents, dtype=torch.float64).tolist()
    factor = 1.0
    for sig, sig_next in itertools.pairwise(sigmas):
        factor *= 1 + (sig_next - sig) * sig / (sig**2 + 0.25)
    noise = torch.randn((8, spec.state_dim), generator=torch.Generator().manual_seed(1)) * 5.0
    expected = noise * factor / 0.5 * model.normalizer.std.float() + model.normalizer.mean.float()
    torch.testing.assert_close(a, expected, rtol=1e-4, atol=1e-4)


def test_state_dict_round_trip_includes_the_normalizer() -> None:
    spec = _spec((2, 3))
    model = SequentialAgentDenoiser(spec, TINY)
    _randomize(model)
    model.normalizer.update(torch.randn(64, spec.state_dim) * 4)
    clone = SequentialAgentDenoiser(spec, TINY)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.normalizer.mean, model.normalizer.mean)
    states, actions, _, _, _ = _inputs(spec, 4)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    torch.testing.assert_close(
        model.eval().predict_next_state(states, actions, generator=g()),
        clone.eval().predict_next_state(states, actions, generator=g()),
    )


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        (
            "states",
            torch.zeros(4, 2, 7),
            r"states: expected shape \(\*, 3, 7\), received \(4, 2, 7\)",
        ),
        ("states", torch.zeros(4, 3, 6), r"states: expected shape"),
        (
            "actions",
            torch.zeros(4, 3, 5),
            r"actions: expected shape \(4, 3, 6\), received \(4, 3, 5\)",
        ),
        ("actions", torch.zeros(4, 3, 9), r"actions: expected shape"),  # one agent too many
        ("mask", torch.ones(4, 3), r"mask: expected dtype torch.bool"),
        ("states", torch.full((4, 3, 7), float("nan")), r"states: expected finite values"),
        ("actions", torch.full((4, 3, 6), float("inf")), r"actions: expected finite values"),
        ("next_state", torch.zeros(4, 8), r"next_state: expected shape \(4, 7\)"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(
    field: str, value: torch.Tensor, match: str
) -> None:
    spec = _spec()
    model = SequentialAgentDenoiser(spec, TINY)
    states, actions, mask, _, _ = _inputs(spec, 4)
    batch = {"states": states, "actions": actions, "mask": mask, "next_state": states[:, -1]}
    batch[field] = value
    with pytest.raises(ValueError, match=match):
        model.loss(batch)
    if field != "next_state":
        with pytest.raises(ValueError, match=match):
            model.predict_next_state(batch["states"], batch["actions"], batch["mask"])


def test_bad_order_and_missing_keys() -> None:
    spec = _spec()
    model = SequentialAgentDenoiser(spec, TINY)
    states, actions, _, _, _ = _inputs(spec, 2)
    with pytest.raises(ValueError, match="unknown agent 'agent_9'"):
        model.predict_next_state(states, actions, order=("agent_9", "agent_0"))
    with pytest.raises(ValueError, match="repeated agent"):
        model.predict_next_state(states, actions, order=(1, 1))
    with pytest.raises(ValueError, match=r"batch: missing key\(s\) \['next_state'\]"):
        model.loss({"states": states, "actions": actions})


def test_paper_network_size() -> None:
    spec = MultiAgentSpec(("a", "b"), (17, 17), (3, 3), 17)
    model = SequentialAgentDenoiser(spec)
    assert [len(level) for level in model.unet.down] == [2, 2, 2]
    assert model.unet.conv_in.out_channels == 64
    assert model.noise_embedding[-1].out_features == 256
    n_params = sum(p.numel() for p in model.parameters())
    assert 1_000_000 < n_params < 3_000_000  # far from the official 14.1M (11.9M in its encoder)
