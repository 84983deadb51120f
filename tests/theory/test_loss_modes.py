"""Per-mode learning rates under each loss (Halvagal, Laborieux & Zenke 2023) in Lemma 1's linear model."""

import numpy as np
import pytest

from solo_directpred.core.losses import LOSSES
from solo_directpred.theory.loss_modes import LossModes, exact_views

SIGMA2 = 0.5
MODES = LossModes(SIGMA2)


def test_exact_views_have_the_models_moments():
    x1, x2 = exact_views(500, 4, SIGMA2, seed=3)
    n = len(x1)
    np.testing.assert_allclose(x1.T @ x1 / n, (1 + SIGMA2) * np.eye(4), atol=1e-12)
    np.testing.assert_allclose(x2.T @ x2 / n, (1 + SIGMA2) * np.eye(4), atol=1e-12)
    np.testing.assert_allclose(x1.T @ x2 / n, np.eye(4), atol=1e-12)
    with pytest.raises(ValueError, match="must exceed 2\\*dim=8"):
        exact_views(8, 4, SIGMA2)


@pytest.mark.parametrize(("alpha", "eps", "tau"), [(0.5, 0.0, 1.0), (0.5, 0.1, 0.8), (1.0, 0.05, 1.0)])
@pytest.mark.parametrize("loss", ["euclidean", "isoloss_euclidean"])
def test_autograd_through_the_package_losses_gives_the_closed_form(loss, alpha, eps, tau):
    """ds_j/dt = 2 m_j s_j (τ − (1+σ²) p_j), m_j = p_j (Euclidean) or 1 (IsoLoss), via the loss code."""
    s = np.array([0.4, 0.2, 0.05, 0.01, 1e-3])
    modes = LossModes(SIGMA2, tau=tau, alpha=alpha, eps=eps)
    sampled = modes.sampled_velocity(s, loss, num_samples=2048)
    closed = modes.velocity(s, loss)
    np.testing.assert_allclose(sampled, closed, rtol=1e-9)
    p = s**alpha + eps
    expected_rate = p if loss == "euclidean" else np.ones_like(p)
    np.testing.assert_allclose(modes.effective_learning_rate(s, sampled), expected_rate)


def test_fixed_point_is_shared_by_the_euclidean_losses():
    p_star, s_star = MODES.fixed_point()
    assert (p_star, s_star) == pytest.approx((2 / 3, 4 / 9))
    for loss in ("euclidean", "isoloss_euclidean"):
        assert MODES.velocity(np.array([s_star]), loss)[0] == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="no non-trivial fixed point"):
        LossModes(SIGMA2, eps=0.7).fixed_point()


def test_cosine_rate_is_p_times_the_isoloss_rate_mode_by_mode():
    p = np.array([0.6, 0.4, 0.2, 0.1, 0.03])
    cosine = MODES.sampled_velocity(p**2, "cosine", num_samples=4000)
    iso = MODES.sampled_velocity(p**2, "isoloss", num_samples=4000)
    np.testing.assert_allclose(cosine / iso, p, rtol=1e-10)


def test_weak_modes_learn_at_one_rate_under_isoloss_and_at_rates_proportional_to_p_under_cosine():
    p = np.concatenate([[0.6, 0.5, 0.4, 0.3], np.geomspace(0.05, 0.005, 12)])
    rates = {loss: MODES.sampled_velocity(p**2, loss, num_samples=20000) / (2 * p**2) for loss in LOSSES}
    weak = p <= 0.05
    iso = rates["isoloss"][weak]
    assert iso.max() / iso.min() < 1.3  # measured 1.14 (docs/losses.md)
    cosine_over_p = rates["cosine"][weak] / p[weak]
    assert cosine_over_p.max() / cosine_over_p.min() < 1.3  # ∝ p_j: the same spread as IsoLoss's
    assert rates["cosine"][weak].max() / rates["cosine"][weak].min() > 5  # measured 8.9 for a 10x spread of p


def _logistic_time(u0, tau, c, fraction):
    """IsoLoss, α = ½, ε = 0: u = √s obeys du/dt = u(τ − c u), a logistic curve with u* = τ/c."""
    u_star, u1 = tau / c, np.sqrt(fraction) * tau / c
    return np.log((u_star / u0 - 1) / (u_star / u1 - 1)) / tau


def _power_law_time(u0, tau, c, fraction):
    """Euclidean, α = ½, ε = 0: du/dt = u²(τ − c u), integrated by partial fractions."""
    u1 = np.sqrt(fraction) * tau / c

    def antiderivative(u):
        return -1 / (tau * u) + c / tau**2 * np.log(u / (tau - c * u))

    return antiderivative(u1) - antiderivative(u0)


def test_convergence_times_match_the_closed_forms():
    """Euclidean: time ~ 1/p_j(0) (√10× per decade of s); IsoLoss: ln(10)/(2τ) more per decade."""
    s0 = np.array([1e-2, 1e-4, 1e-6])
    c = 1 + SIGMA2
    t_iso = MODES.convergence_times(s0, "isoloss_euclidean", t_end=20.0, dt=0.001)
    np.testing.assert_allclose(t_iso, _logistic_time(np.sqrt(s0), 1.0, c, 0.5), atol=2e-3)
    t_euclid = MODES.convergence_times(s0, "euclidean", t_end=1100.0, dt=0.01)
    np.testing.assert_allclose(t_euclid, _power_law_time(np.sqrt(s0), 1.0, c, 0.5), rtol=1e-3)
    assert t_euclid[-1] / t_euclid[0] > 50 and t_iso[-1] / t_iso[0] < 3


def test_a_mode_that_never_arrives_gets_infinity():
    times = MODES.convergence_times(np.array([1e-2, 1e-8]), "euclidean", t_end=50.0, dt=0.05)
    assert np.isfinite(times[0]) and times[1] == np.inf
