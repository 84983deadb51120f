"""Matrix dynamics of F and W_p (§3.2, Theorem 3, App. Eqn. 62) and their link to the full model."""

from __future__ import annotations

import numpy as np
import pytest

from solo_directpred.theory.linear_model import LinearModel, LinearState, correlation
from solo_directpred.theory.modes import fixed_points
from solo_directpred.theory.reduced import ReducedDynamics, commutator, frobenius, skew_part, symmetric_part


def _sym(rng: np.random.Generator, n: int) -> np.ndarray:
    A = rng.standard_normal((n, n))
    return 0.5 * (A + A.T)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_theorem3_commutator_identity(seed):
    # d[F, Wp]/dt = -[F, Wp] K - K [F, Wp] holds exactly with the paper's K.
    rng = np.random.default_rng(seed)
    reduced = ReducedDynamics(
        tau=rng.uniform(0, 1), sigma2=rng.uniform(0, 1), alpha_p=rng.uniform(0.5, 2), eta=rng.uniform(0, 0.1)
    )
    B = rng.standard_normal((6, 6))
    F, Wp = B @ B.T, _sym(rng, 6)
    dF, dWp = reduced.coupled_velocity(F, Wp)
    C, K = commutator(F, Wp), reduced.K(F, Wp)
    lhs = commutator(dF, Wp) + commutator(F, dWp)
    np.testing.assert_allclose(lhs, -(C @ K + K @ C), atol=1e-10 * np.abs(lhs).max())


def test_coupled_system_is_the_full_model_under_a1_a2():
    # With X = I, X' = sigma^2 I and W_a = tau W fixed, Lemma 1 gives exactly the (F, Wp) equations.
    rng = np.random.default_rng(3)
    n1, n2, tau = 6, 4, 0.7
    W, Wp = rng.standard_normal((n2, n1)), _sym(rng, n2)
    model = LinearModel.isotropic(n1, 0.4, alpha_p=1.3, eta=0.02, symmetric_predictor=True)
    v = model.velocity(LinearState(W, Wp, tau * W))
    dF_full = v.W @ W.T + W @ v.W.T
    dF, dWp = ReducedDynamics(tau, 0.4, 1.3, 0.02).coupled_velocity(correlation(W, np.eye(n1)), Wp)
    np.testing.assert_allclose(v.Wp, dWp, atol=1e-12)
    np.testing.assert_allclose(dF_full, dF, atol=1e-12)


def test_skew_part_vanishes_and_symmetric_part_reaches_p_plus():
    # Fig. 8: under App. Eqn. 62 the skew part of Wp dies out; surviving eigenvalues of its
    # symmetric part sit at p*+ (tau = 1, eta = 0.01, sigma^2 = 0.5).
    reduced = ReducedDynamics(tau=1.0, sigma2=0.5, eta=0.01)
    Wp0 = np.random.default_rng(0).standard_normal((3, 6, 6)) * 0.5 / np.sqrt(6)
    t, Wp = reduced.simulate_predictor(Wp0, 400.0, 0.05, 8000)
    assert frobenius(skew_part(Wp[-1])).max() < 1e-3 * frobenius(skew_part(Wp[0])).min()
    p_plus = fixed_points(1.0, 0.5, 0.01)[1]
    ev = np.linalg.eigvalsh(symmetric_part(Wp[-1]))
    alive = ev[ev > 0.1]
    assert alive.size >= 3
    np.testing.assert_allclose(alive, p_plus, atol=1e-3)


def test_symmetric_part_collapses_above_the_threshold():
    # tau = 0.2: eta = 0.05 > tau^2/(4(1+sigma^2)) = 0.0067, so ||A|| -> 0 (Fig. 8, bottom left).
    reduced = ReducedDynamics(tau=0.2, sigma2=0.5, eta=0.05)
    Wp0 = np.random.default_rng(1).standard_normal((6, 6)) * 0.5 / np.sqrt(6)
    _, Wp = reduced.simulate_predictor(Wp0, 200.0, 0.05, 4000)
    assert frobenius(Wp[-1]) < 1e-3 * frobenius(Wp[0])


def test_aligned_start_stays_aligned():
    rng = np.random.default_rng(5)
    Q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    F0 = Q @ np.diag([0.5, 0.2, 0.1, 0.05, 0.01]) @ Q.T
    Wp0 = Q @ np.diag([0.3, -0.1, 0.6, 0.05, 0.2]) @ Q.T
    _, F, Wp = ReducedDynamics(tau=1.0, sigma2=0.5, eta=0.0).simulate_coupled(F0, Wp0, 20.0, 0.01, 100)
    assert frobenius(commutator(F, Wp)).max() < 1e-12


def test_bad_hyper_parameters_are_named():
    with pytest.raises(ValueError, match="alpha_p=0"):
        ReducedDynamics(alpha_p=0)
    with pytest.raises(ValueError, match="eta=-1"):
        ReducedDynamics(eta=-1)
