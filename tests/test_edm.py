"""EDMPreconditioner against hand-computed numbers (paper App. B, eq. 14–18)."""

import math

import pytest
import torch

from dimalib.world_model.dynamics import EDMConfig, EDMPreconditioner


def test_coefficients_match_hand_computed_values() -> None:
    edm = EDMPreconditioner()
    c = edm.coefficients(torch.tensor([0.5, 1.0], dtype=torch.float64))
    # σ = 0.5 = σ_data: c_skip = 0.25/0.5, c_out = 0.25/sqrt(0.5), c_in = 1/sqrt(0.5), ln(0.5)/4
    # σ = 1.0: c_skip = 0.25/1.25, c_out = 0.5/sqrt(1.25), c_in = 1/sqrt(1.25), ln(1)/4
    torch.testing.assert_close(c.c_skip, torch.tensor([0.5, 0.2], dtype=torch.float64))
    torch.testing.assert_close(
        c.c_out, torch.tensor([0.3535533906, 0.4472135955], dtype=torch.float64)
    )
    torch.testing.assert_close(
        c.c_in, torch.tensor([1.4142135624, 0.8944271910], dtype=torch.float64)
    )
    torch.testing.assert_close(c.c_noise, torch.tensor([-0.1732867951, 0.0], dtype=torch.float64))


def test_coefficients_broadcast_over_any_shape() -> None:
    edm = EDMPreconditioner()
    sigma = torch.rand(4, 3, 1) + 0.1
    c = edm.coefficients(sigma)
    for t in c:
        assert t.shape == sigma.shape
    # D of a perfect network: c_skip x + c_out * target == clean, for any σ
    clean, noise = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    noisy = clean + sigma * noise
    target = edm.network_target(clean, noisy, c)
    torch.testing.assert_close(edm.denoised(noisy, target, c), clean)


def test_loss_weight_is_inverse_c_out_squared() -> None:
    edm = EDMPreconditioner()
    sigma = torch.tensor([1.0, 0.1, 3.0], dtype=torch.float64)
    # λ(1) = (1 + 0.25) / (1 · 0.5)² = 5
    assert float(edm.loss_weight(sigma)[0]) == pytest.approx(5.0)
    torch.testing.assert_close(edm.loss_weight(sigma), edm.coefficients(sigma).c_out ** -2)


def test_training_sigma_is_lognormal_with_paper_parameters() -> None:
    edm = EDMPreconditioner()
    g = torch.Generator().manual_seed(0)
    log_sigma = edm.sample_sigma(200_000, generator=g, dtype=torch.float64).log()
    assert float(log_sigma.mean()) == pytest.approx(-0.4, abs=0.01)
    assert float(log_sigma.std()) == pytest.approx(1.2, abs=0.01)
    # reproducible under a generator
    a = edm.sample_sigma(8, generator=torch.Generator().manual_seed(3))
    b = edm.sample_sigma(8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="sigma_data"):
        EDMConfig(sigma_data=0.0)
    with pytest.raises(ValueError, match="p_std"):
        EDMConfig(p_std=-1.0)
    assert math.isclose(EDMPreconditioner(EDMConfig(sigma_data=1.0)).sigma_data, 1.0)
