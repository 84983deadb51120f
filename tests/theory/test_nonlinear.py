"""The small nonlinear BYOL of Table 3: effective rank, loss, symmetric predictor, why it collapses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from solo_directpred.theory.nonlinear import (
    PAPER_DECAY_HORIZON,
    SmallBYOL,
    byol_loss,
    effective_rank,
    table3_runs,
)


def test_effective_rank_counts_equal_orthogonal_directions():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    for k in (1, 3, 6):
        z = np.linalg.qr(rng.standard_normal((500, k)))[0] @ Q[:k]  # k singular values, all 1
        assert effective_rank(z) == pytest.approx(k, abs=1e-4)  # RankMe's ε = 1e-7 per value
    parallel = np.outer(rng.standard_normal(100), rng.standard_normal(6))
    assert effective_rank(parallel) == pytest.approx(1.0, abs=1e-4)
    batched = effective_rank(np.stack([parallel, np.full((100, 6), np.inf)]))
    assert batched[0] == pytest.approx(1.0, abs=1e-4) and np.isnan(batched[1])


def test_paper_decay_horizon_and_default_weight_decay():
    assert PAPER_DECAY_HORIZON == pytest.approx(0.03 * 4e-4 * 82_031.25)  # 100 epochs of 105k/128 steps
    assert PAPER_DECAY_HORIZON == pytest.approx(0.984, abs=1e-3)
    assert SmallBYOL().decay_for(2000) == pytest.approx(0.0164, abs=1e-4)
    assert SmallBYOL(weight_decay=4e-4).decay_for(2000) == 4e-4


def _views_and_params(hidden: int = 6, seed: int = 0):
    model = SmallBYOL(n_in=5, hidden=hidden, n_out=4)
    _, params = model._init(seed)
    params = {k: v[None].double().requires_grad_(True) for k, v in params.items() if k != "Wp"}
    x = torch.randn(1, 2, 32, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return model, params, x


def _grads(loss: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat(
        [g.flatten() for g in torch.autograd.grad(loss.sum(), list(params.values()), retain_graph=True)]
    )


def test_without_ema_an_isotropic_predictor_voids_the_stop_gradient_of_the_cosine_loss():
    # With W_p = c I and W_a = W, the stop-gradient symmetric loss has exactly half the gradient of the
    # loss without stop-gradient: SGD descends -cos(z1, z2), whose minimum is the collapse (Theorem 2's
    # mechanism). A regular (random) W_p breaks the identity.
    model, params, x = _views_and_params()
    z = model.online(params, x)
    no_stop = _grads(byol_loss(z, z), params)
    for c in (0.3, 2.0):
        stop = _grads(byol_loss(c * z, z.detach()), params)
        np.testing.assert_allclose(stop.numpy(), 0.5 * no_stop.numpy(), rtol=1e-9, atol=1e-12)
    Wp = torch.randn(4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    regular = _grads(byol_loss(z @ Wp.T, z.detach()), params)
    assert (regular - 0.5 * no_stop).norm() > 0.1 * no_stop.norm()


def test_without_ema_a_symmetric_predictor_makes_the_l2_loss_a_gradient_system():
    # ½‖W_p z1 − sg z2‖² + ½‖W_p z2 − sg z1‖² with symmetric W_p moves the network along the gradient of
    # Φ = ½‖W_p z1‖² + ½‖W_p z2‖² − z1ᵀ W_p z2, which is unbounded below: the L2 runs diverge.
    model, params, x = _views_and_params()
    z = model.online(params, x)
    A = torch.randn(4, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for Wp, exact in ((A + A.T, True), (A, False)):
        stop = _grads(byol_loss(z @ Wp.T, z.detach(), "l2"), params)
        z1, z2 = z[:, 0], z[:, 1]
        phi = (0.5 * (z1 @ Wp.T).pow(2).sum(-1) + 0.5 * (z2 @ Wp.T).pow(2).sum(-1)) - (z1 @ Wp * z2).sum(-1)
        potential = _grads(phi.mean(-1), params)
        err = float((stop - potential).norm() / potential.norm())
        assert err < 1e-10 if exact else err > 0.03  # 0.087 for this regular W_p


def test_cosine_loss_range_and_view_swap():
    torch.manual_seed(0)
    z = torch.randn(3, 2, 8, 4)
    assert torch.allclose(byol_loss(z.flip(1), z), torch.zeros(3), atol=1e-6)  # p_v = t_v̄: the minimum
    assert torch.allclose(byol_loss(-z.flip(1), z), torch.full((3,), 8.0), atol=1e-5)  # 2 views × 4
    with pytest.raises(ValueError, match="loss='mse'"):
        byol_loss(z, z, "mse")


def test_training_is_deterministic_and_keeps_symmetric_predictors_symmetric():
    model = SmallBYOL(n_in=6, hidden=8, n_out=4, batch_size=16)
    specs = [(True, False, 0), (False, False, 0), (True, True, 1)]
    a = model.train(specs, steps=30, record_every=10)
    b = model.train(specs, steps=30, record_every=10)
    np.testing.assert_array_equal(a.rank, b.rank)
    assert a.steps.tolist() == [10, 20, 30] and a.rank.shape == (3, 3)
    for i, (symmetric, _, _) in enumerate(specs):
        asym = np.abs(a.Wp[i] - a.Wp[i].T).max()
        assert asym < 1e-7 if symmetric else asym > 1e-3
    assert np.all((a.rank >= 1.0) & (a.rank <= 4.0 + 1e-9))
    assert np.all((a.loss >= 0.0) & (a.loss <= 8.0))
    assert a.cell(True, True) == [2] and a.final_rank(False, False).shape == (1,)
    with pytest.raises(ValueError, match="symmetric=False, ema=True"):
        a.cell(False, True)


def test_table3_runs_cover_the_four_cells():
    runs = table3_runs(seeds=(5,), steps=3, model=SmallBYOL(n_in=4, hidden=4, n_out=3))
    assert sorted(runs.specs) == [(False, False, 5), (False, True, 5), (True, False, 5), (True, True, 5)]
    assert runs.weight_decay == pytest.approx(PAPER_DECAY_HORIZON / (0.03 * 3))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(loss="mse"), "loss='mse'"),
        (dict(ema=1.5), "ema=1.5"),
        (dict(hidden=-1), "hidden=-1"),
        (dict(momentum=1.0), "momentum=1.0"),
        (dict(weight_decay=-1e-4), "weight_decay=-0.0001"),
    ],
)
def test_bad_hyper_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SmallBYOL(**kwargs)


def test_bad_runs_are_named():
    with pytest.raises(ValueError, match="specs is empty"):
        SmallBYOL().train([], steps=1)
    with pytest.raises(ValueError, match="steps=0"):
        SmallBYOL().train([(True, True, 0)], steps=0)
