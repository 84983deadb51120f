import pytest
import torch

from solo_directpred.core import RunningCorrelation


def _batch(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_first_batch_initialises_then_rho_weights_the_old_value():
    stats = RunningCorrelation(3, rho=0.3)
    a, b = _batch(10, 3, 0), _batch(10, 3, 1)
    assert stats.update(a)
    torch.testing.assert_close(stats.correlation, a.T @ a / 10)
    stats.update(b)
    expected = 0.3 * (a.T @ a / 10) + 0.7 * (b.T @ b / 10)
    torch.testing.assert_close(stats.correlation, expected)
    assert int(stats.num_updates) == 2


def test_views_are_pooled_and_detached():
    z1 = _batch(6, 4, 0).requires_grad_()
    z2 = _batch(8, 4, 1)
    stats = RunningCorrelation(4)
    stats.update(z1, z2)
    pooled = torch.cat([z1.detach(), z2])
    torch.testing.assert_close(stats.correlation, pooled.T @ pooled / 14)
    assert not stats.correlation.requires_grad


def test_centering_option_gives_the_covariance():
    z = _batch(50, 3, 2) + 5.0
    stats = RunningCorrelation(3, center=True)
    stats.update(z)
    torch.testing.assert_close(stats.correlation, torch.cov(z.T, correction=0), atol=1e-4, rtol=1e-4)


def test_non_finite_batch_is_skipped_and_counted():
    stats = RunningCorrelation(3)
    good = _batch(5, 3, 0)
    stats.update(good)
    bad = good.clone()
    bad[2, 1] = float("nan")
    assert not stats.update(bad)
    assert int(stats.num_skipped) == 1 and int(stats.num_updates) == 1
    torch.testing.assert_close(stats.correlation, good.T @ good / 5)


def test_half_precision_input_accumulates_in_float32():
    z = _batch(16, 4, 3)
    stats = RunningCorrelation(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        stats.update(z.to(torch.bfloat16))
    assert stats.correlation.dtype == torch.float32
    zb = z.to(torch.bfloat16).float()
    torch.testing.assert_close(stats.correlation, zb.T @ zb / 16)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 4, "rho": 1.0}, r"rho \(weight on the old estimate\) must be in \[0, 1\), got 1.0"),
        ({"dim": 4, "rho": -0.1}, r"must be in \[0, 1\), got -0.1"),
        ({"dim": 0}, "dim must be a positive integer, got 0"),
    ],
)
def test_invalid_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RunningCorrelation(**kwargs)


def test_dimension_mismatch_is_reported():
    with pytest.raises(ValueError, match="views have dimension 5, the estimate expects 4"):
        RunningCorrelation(4).update(torch.randn(2, 5))
