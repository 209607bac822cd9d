"""RunningNormalizer: exact statistics, order independence, state_dict."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dimalib.data import RunningNormalizer


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=6))
def test_chunked_updates_equal_one_batch(chunks: list[int]) -> None:
    x = torch.randn(sum(chunks), 3, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1]) + 2
    norm = RunningNormalizer(3)
    for part in torch.split(x, chunks):
        norm.update(part)
    torch.testing.assert_close(norm.mean, x.mean(0))
    torch.testing.assert_close(norm.var, x.var(0, unbiased=False))
    assert float(norm.count) == sum(chunks)


def test_normalize_round_trip_min_std_and_state_dict() -> None:
    norm = RunningNormalizer(2, min_std=0.5)
    norm.update(torch.tensor([[1.0, 3.0], [3.0, 3.0]]))  # std (1, 0) -> (1, 0.5)
    out = norm.normalize(torch.tensor([[3.0, 4.0]]))
    torch.testing.assert_close(out, torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(norm.denormalize(out), torch.tensor([[3.0, 4.0]]))
    other = RunningNormalizer(2, min_std=0.5)
    other.load_state_dict(norm.state_dict())
    assert torch.equal(other.mean, norm.mean) and torch.equal(other.count, norm.count)


def test_bad_input() -> None:
    norm = RunningNormalizer(2)
    with pytest.raises(ValueError, match="x: expected last dimension 2"):
        norm.update(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="x: expected finite values"):
        norm.update(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="dim"):
        RunningNormalizer(0)
