import math

import pytest
import torch

from solo_directpred.core import AnalyticPredictor
from solo_directpred.core.losses import (
    LOSSES,
    cosine_prediction_loss,
    euclidean_prediction_loss,
    isoloss,
    isoloss_euclidean,
    prediction_loss,
    symmetric_prediction_loss,
)


def test_cosine_loss_values_scale_invariance_and_stop_gradient():
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    z = torch.tensor([[0.0, 2.0], [3.0, 3.0]], requires_grad=True)
    # cosines 0 and 1 → mean 0.5 → 2 − 1 = 1
    assert math.isclose(cosine_prediction_loss(p, z).item(), 1.0, abs_tol=1e-6)
    assert math.isclose(cosine_prediction_loss(7.0 * p, z).item(), 1.0, abs_tol=1e-6)
    p2 = p.clone().requires_grad_()
    cosine_prediction_loss(p2, z).backward()
    assert z.grad is None and p2.grad is not None


def test_symmetric_loss_sums_ordered_pairs_of_distinct_views():
    g = torch.Generator().manual_seed(0)
    p1, p2, z1, z2 = (torch.randn(5, 3, generator=g) for _ in range(4))
    expected = cosine_prediction_loss(p1, z2) + cosine_prediction_loss(p2, z1)
    torch.testing.assert_close(symmetric_prediction_loss([p1, p2], [z1, z2]), expected)


# --- the four losses of ``method_kwargs.loss`` against their equations (docs/losses.md) ---


B, D = 6, 5


def _problem(seed: int = 0):
    """z (B, d), a symmetric PSD W_p = U diag(p) Uᵀ with p spread over (0.05, 1], and a target z_t."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    p = torch.tensor([1.0, 0.6, 0.3, 0.1, 0.05], dtype=torch.float64)
    Wp = (U * p) @ U.T
    z = torch.randn(B, D, generator=g, dtype=torch.float64)
    zt = torch.randn(B, D, generator=g, dtype=torch.float64)
    return z, Wp, zt, U, p


def _grad_z(loss: str, z, Wp, zt):
    z = z.clone().requires_grad_()
    prediction_loss(loss, z, z @ Wp, zt).backward()
    return z.grad


def _isoloss_from_paper(z, Wp, zt):
    """The paper's IsoLoss with an explicit W_p^{1/2} (eigendecomposition), written term by term."""
    vals, vecs = torch.linalg.eigh(Wp)
    root = (vecs * vals.clamp_min(0).sqrt()) @ vecs.T
    p, p_sqrt = z @ Wp, z @ root
    zt = zt.detach()
    first = (z * zt).sum(1) / (p.norm(dim=1) * zt.norm(dim=1)).detach()
    second = ((p * zt).sum(1) / (p.norm(dim=1) ** 3 * zt.norm(dim=1))).detach() * p_sqrt.norm(dim=1) ** 2
    return -2.0 * (first - 0.5 * second).mean()


def test_euclidean_gradient_is_the_prediction_error_times_wp():
    z, Wp, zt, _, _ = _problem()
    expected = 2.0 * (z @ Wp - zt) @ Wp.T / B
    torch.testing.assert_close(_grad_z("euclidean", z, Wp, zt), expected)


def test_isoloss_euclidean_gradient_is_the_raw_prediction_error():
    z, Wp, zt, _, _ = _problem()
    torch.testing.assert_close(_grad_z("isoloss_euclidean", z, Wp, zt), 2.0 * (z @ Wp - zt) / B)


def test_isoloss_matches_the_paper_form_with_an_explicit_square_root():
    z, Wp, zt, _, _ = _problem()
    zz = z.clone().requires_grad_()
    _isoloss_from_paper(zz, Wp, zt).backward()
    value = isoloss(z, z @ Wp, zt)
    torch.testing.assert_close(value, _isoloss_from_paper(z, Wp, zt))
    torch.testing.assert_close(_grad_z("isoloss", z, Wp, zt), zz.grad)


def test_isoloss_gradient_closed_form():
    """∇_z L = −(2/B)(ẑ_t − cos(p, z_t) p̂)/‖p‖ per sample."""
    z, Wp, zt, _, _ = _problem()
    p = z @ Wp
    p_hat, t_hat = p / p.norm(dim=1, keepdim=True), zt / zt.norm(dim=1, keepdim=True)
    cos = (p_hat * t_hat).sum(1, keepdim=True)
    expected = -2.0 / B * (t_hat - cos * p_hat) / p.norm(dim=1, keepdim=True)
    torch.testing.assert_close(_grad_z("isoloss", z, Wp, zt), expected)


@pytest.mark.parametrize(("parent", "iso"), [("cosine", "isoloss"), ("euclidean", "isoloss_euclidean")])
def test_parent_gradient_is_wp_times_isoloss_gradient_per_eigenmode(parent, iso):
    """In W_p's eigenbasis, mode j's gradient under the parent loss is p_j times that under IsoLoss."""
    z, Wp, zt, U, p = _problem(seed=3)
    g_parent, g_iso = _grad_z(parent, z, Wp, zt), _grad_z(iso, z, Wp, zt)
    torch.testing.assert_close(g_parent, g_iso @ Wp)
    ratio = (g_parent @ U) / (g_iso @ U)  # (B, d): every sample, every mode
    torch.testing.assert_close(ratio, p.expand(B, D))


def test_loss_values():
    p = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    zt = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    # ‖(0, 2)‖² = 4 and ‖(0, −2)‖² = 4 → mean 4
    assert euclidean_prediction_loss(p, zt).item() == pytest.approx(4.0)
    z = torch.tensor([[5.0, -1.0], [2.0, 2.0]])
    assert isoloss_euclidean(z, p, zt).item() == pytest.approx(4.0)  # its value is ‖p − z_t‖² too
    # W_p = I: p = z, so sim = cos − ½ cos = ½ cos and L = −2·½·mean(cos) = −mean(cos)
    w = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    cos = torch.nn.functional.cosine_similarity(w, zt, dim=1).mean()
    assert isoloss(w, w, zt).item() == pytest.approx(-cos.item(), abs=1e-6)


@pytest.mark.parametrize("loss", LOSSES)
def test_no_gradient_reaches_the_target(loss):
    z, Wp, zt, _, _ = _problem()
    zt = zt.clone().requires_grad_()
    zz = z.clone().requires_grad_()
    prediction_loss(loss, zz, zz @ Wp, zt).backward()
    assert zt.grad is None and zz.grad is not None and torch.isfinite(zz.grad).all()


def test_isoloss_with_the_analytic_predictor_needs_no_square_root():
    """With AnalyticPredictor's W_p the z·p form equals the paper's ‖z W_p^{1/2}‖² form (gradient too)."""
    g = torch.Generator().manual_seed(1)
    predictor = AnalyticPredictor(D, alpha=0.5, eps=0.0, rho=0.3)
    predictor.update(torch.randn(64, D, generator=g) @ torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.5, 0.1])))
    Wp = predictor.weight.double()
    z = torch.randn(B, D, generator=g, dtype=torch.float64)
    zt = torch.randn(B, D, generator=g, dtype=torch.float64)
    zz = z.clone().requires_grad_()
    _isoloss_from_paper(zz, Wp, zt).backward()
    torch.testing.assert_close(_grad_z("isoloss", z, Wp, zt), zz.grad)


def test_symmetric_loss_dispatches_and_needs_projections_for_isoloss():
    z, Wp, zt, _, _ = _problem()
    z2, _, zt2, _, _ = _problem(seed=5)
    preds, projs = [z @ Wp, z2 @ Wp], [z, z2]
    for loss in LOSSES:
        expected = prediction_loss(loss, z, z @ Wp, zt2) + prediction_loss(loss, z2, z2 @ Wp, zt)
        torch.testing.assert_close(symmetric_prediction_loss(preds, [zt, zt2], loss, projs), expected)
    with pytest.raises(ValueError, match="needs the online projections"):
        symmetric_prediction_loss(preds, [zt, zt2], "isoloss")
    with pytest.raises(ValueError, match="loss must be one of"):
        prediction_loss("mse", z, z, zt)


@pytest.mark.parametrize("loss", ["euclidean", "isoloss", "isoloss_euclidean"])
def test_half_precision_projections_of_large_norm_do_not_overflow(loss):
    """‖p‖ ≈ 110: ‖p‖³ and ‖p − z_t‖² exceed float16's 65504; the losses compute in float32."""
    z, Wp, zt, _, _ = _problem(seed=2)
    z, zt = 50.0 * z, 50.0 * zt
    reference = _grad_z(loss, z.float(), Wp.float(), zt.float())
    half = z.half().requires_grad_()
    value = prediction_loss(loss, half, half @ Wp.half(), zt.half())
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value)
    torch.testing.assert_close(
        half.grad.float(), reference, rtol=2e-2, atol=1e-3 * reference.abs().max().item()
    )
