import math

import torch

from solo_directpred.core.losses import cosine_prediction_loss, symmetric_prediction_loss


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
