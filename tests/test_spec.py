"""MultiAgentSpec validation and layout helpers."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dimalib import MultiAgentSpec


def test_sizes_slices_and_bounds() -> None:
    spec = MultiAgentSpec(
        ("a", "b", "c"), (4, 6, 2), (2, 3, 1), 8, action_low=-2.0, action_high=2.0
    )
    assert spec.n_agents == 3
    assert spec.joint_action_dim == 6 and spec.joint_obs_dim == 12
    assert spec.max_action_dim == 3 and spec.max_obs_dim == 6
    assert spec.action_slices == (slice(0, 2), slice(2, 5), slice(5, 6))
    assert spec.obs_slices == (slice(0, 4), slice(4, 10), slice(10, 12))
    assert not spec.is_homogeneous
    low, high = spec.action_bounds()
    assert low.tolist() == [-2.0] * 6 and high.tolist() == [2.0] * 6
    assert spec.agent_index("b") == 1
    assert spec.action_mask().tolist() == [
        [True, True, False],
        [True, True, True],
        [True, False, False],
    ]


@given(st.lists(st.integers(1, 5), min_size=1, max_size=6), st.integers(1, 4))
def test_pad_unpad_round_trip(dims: list[int], batch: int) -> None:
    n = len(dims)
    spec = MultiAgentSpec(tuple(map(str, range(n))), (1,) * n, tuple(dims), 3)
    joint = torch.randn(batch, spec.joint_action_dim)
    padded = spec.pad_actions(joint)
    assert padded.shape == (batch, n, max(dims))
    assert torch.equal(spec.unpad_actions(padded), joint)
    for i, sl in enumerate(spec.action_slices):
        assert torch.equal(padded[:, i, : dims[i]], joint[:, sl])
        assert bool((padded[:, i, dims[i] :] == 0).all())


@given(st.lists(st.integers(1, 4), min_size=1, max_size=5), st.data())
def test_permuted_spec_and_dict_round_trip(dims: list[int], data: st.DataObject) -> None:
    n = len(dims)
    low = [float(-i - 1) for i in range(sum(dims))]
    spec = MultiAgentSpec(
        tuple(f"x{i}" for i in range(n)),
        tuple(range(1, n + 1)),
        tuple(dims),
        5,
        action_low=low,
        action_high=1.0,
    )
    assert MultiAgentSpec.from_dict(spec.to_dict()) == spec
    perm = data.draw(st.permutations(list(range(n))))
    p = spec.permuted(perm)
    assert p.agent_names == tuple(spec.agent_names[i] for i in perm)
    assert p.action_dims == tuple(dims[i] for i in perm)
    assert isinstance(p.action_low, tuple) and isinstance(spec.action_low, tuple)
    for j, i in enumerate(perm):
        assert p.action_low[p.action_slices[j]] == spec.action_low[spec.action_slices[i]]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"agent_names": ()}, "agent_names: expected at least one agent"),
        ({"agent_names": ("a", "a")}, "agent_names: expected unique names"),
        ({"obs_dims": (4,)}, r"obs_dims: expected 2 values \(one per agent\), received 1"),
        ({"action_dims": (0, 2)}, "action_dims: expected positive integers"),
        ({"state_dim": 0}, "state_dim: expected a positive integer"),
        ({"action_low": (0.0, 0.0, 0.0)}, "action_low: expected a scalar or 4 values, received 3"),
        ({"action_low": 1.0}, "expected low < high"),
        ({"action_high": float("inf")}, "expected finite bounds"),
    ],
)
def test_invalid_specs_raise(kwargs: dict[str, object], match: str) -> None:
    base: dict[str, object] = {
        "agent_names": ("a", "b"),
        "obs_dims": (4, 4),
        "action_dims": (2, 2),
        "state_dim": 6,
    }
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        MultiAgentSpec(**base)  # type: ignore[arg-type]


def test_layout_errors_name_the_argument() -> None:
    spec = MultiAgentSpec(("a", "b"), (4, 4), (2, 2), 6)
    with pytest.raises(ValueError, match=r"joint_action: expected last dimension 4"):
        spec.pad_actions(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"padded: expected trailing shape \(2, 2\)"):
        spec.unpad_actions(torch.zeros(3, 3, 2))
    with pytest.raises(ValueError, match=r"joint_obs: expected last dimension 8"):
        spec.split_obs(torch.zeros(3, 7))
    with pytest.raises(ValueError, match=r"joint_action: expected last dimension 4, .* \(\)"):
        spec.split_actions(torch.tensor(1.0))  # a scalar has no last dimension
    with pytest.raises(ValueError, match="name: expected one of"):
        spec.agent_index("z")
    with pytest.raises(ValueError, match="order: expected a permutation"):
        spec.permuted([0, 0])


def test_pad_obs_and_actions_match_a_python_loop() -> None:
    spec = MultiAgentSpec(("a", "b", "c"), obs_dims=(3, 1, 2), action_dims=(2, 3, 1), state_dim=4)
    obs = torch.arange(1.0, 7.0)[None]  # (1, 6)
    act = torch.arange(1.0, 7.0)[None]
    expected_obs = torch.tensor([[[1.0, 2, 3], [4, 0, 0], [5, 6, 0]]])
    expected_act = torch.tensor([[[1.0, 2, 0], [3, 4, 5], [6, 0, 0]]])
    torch.testing.assert_close(spec.pad_obs(obs), expected_obs, rtol=0, atol=0)
    torch.testing.assert_close(spec.pad_actions(act), expected_act, rtol=0, atol=0)
    assert spec.obs_pad_index == ((0, 1, 2), (3, 0, 0), (4, 5, 0))
    assert spec.action_pad_index == ((0, 1, 0), (2, 3, 4), (5, 0, 0))
    torch.testing.assert_close(spec.unpad_actions(spec.pad_actions(act)), act)
