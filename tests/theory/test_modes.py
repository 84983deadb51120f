"""Decoupled per-mode dynamics (Eqns. 11-17): closed forms the paper gives, pinned with numbers."""

from __future__ import annotations

import numpy as np
import pytest

from solo_directpred.theory.modes import (
    ModeDynamics,
    collapse_weight_decay,
    ema_on_parabola,
    fixed_points,
    k_eigenvalue,
    parabola_constant,
    reduced_predictor_rate,
)


def test_paper_sanity_check_values():
    # docs/theory.md, Eqn. 16: tau = 1, sigma^2 = 0.5, alpha_p = 1, eta = 0.01.
    p_minus, p_plus = fixed_points(1.0, 0.5, 0.01)
    assert p_plus == pytest.approx(0.65651, abs=5e-6)
    assert p_minus == pytest.approx(0.010155, abs=5e-7)
    assert p_plus**2 == pytest.approx(0.43101, abs=5e-6)


def test_fixed_points_without_weight_decay_and_above_threshold():
    assert fixed_points(1.0, 0.5, 0.0) == pytest.approx((0.0, 1.0 / 1.5))
    assert collapse_weight_decay(1.0, 0.5) == pytest.approx(1.0 / 6.0)
    assert fixed_points(1.0, 0.5, 1.0 / 6.0 + 1e-9) is None
    double = fixed_points(1.0, 0.5, 1.0 / 6.0)
    assert double[0] == pytest.approx(double[1]) == pytest.approx(1.0 / 3.0)


def test_p_minus_grows_with_eta_and_shrinks_with_tau():
    # App. B.2: the collapse basin p < p*- widens with weight decay and with a smaller tau.
    etas = [0.005, 0.01, 0.02, 0.05]
    assert np.all(np.diff([fixed_points(1.0, 0.5, e)[0] for e in etas]) > 0)
    taus = [0.6, 0.8, 1.0]
    assert np.all(np.diff([fixed_points(t, 0.5, 0.02)[0] for t in taus]) < 0)


def test_eqn16_is_the_cubic_through_the_fixed_points_with_their_stability():
    tau, sigma2, eta = 1.0, 0.5, 0.05
    p_minus, p_plus = fixed_points(tau, sigma2, eta)
    p = np.linspace(-0.2, 1.0, 13)
    cubic = -(1 + sigma2) * p * (p - p_minus) * (p - p_plus)
    np.testing.assert_allclose(reduced_predictor_rate(p, tau, sigma2, eta), cubic, atol=1e-14)

    def slope(x: float) -> float:
        h = 1e-6
        return (
            reduced_predictor_rate(x + h, tau, sigma2, eta) - reduced_predictor_rate(x - h, tau, sigma2, eta)
        ) / (2 * h)

    assert slope(0.0) == pytest.approx(-eta, abs=1e-8)  # stable
    assert slope(p_minus) > 0  # unstable
    assert slope(p_plus) < 0  # stable


def test_velocity_matches_eqns_11_to_13():
    modes = ModeDynamics(sigma2=0.7, alpha_p=1.5, eta=0.03, beta=0.2, target="byol")
    p, s, tau = np.array([0.3, -0.1]), np.array([0.2, 0.5]), np.array([0.4, 0.9])
    dp, ds, dtau = modes.velocity(p, s, tau)
    gap = tau - 1.7 * p
    np.testing.assert_allclose(dp, 1.5 * s * gap - 0.03 * p)
    np.testing.assert_allclose(ds, 2 * p * s * gap - 0.06 * s)
    np.testing.assert_allclose(dtau, 0.2 * (1 - tau) - tau * ds / (2 * s))  # Eqn. 13 as printed


def test_simsiam_and_fixed_tau_keep_tau():
    simsiam = ModeDynamics(target="simsiam").simulate(0.2, 0.1, 0.0, t_end=5.0)
    np.testing.assert_array_equal(simsiam.tau, 1.0)
    fixed = ModeDynamics(target="fixed").simulate(0.2, 0.1, 0.3, t_end=5.0)
    np.testing.assert_array_equal(fixed.tau, 0.3)


def test_eta_zero_final_eigenvalue():
    # With eta = 0: p -> tau/(1+sigma^2) and s(inf) = s(0) + (p(inf)^2 - p(0)^2)/alpha_p.
    alpha_p, p0, s0 = 2.0, np.array([0.2, 0.9]), np.array([0.15, 0.3])
    traj = ModeDynamics(0.5, alpha_p, 0.0, target="fixed").simulate(p0, s0, 1.0, 200.0, 0.05, "rk4", 10**9)
    p_inf = 1.0 / 1.5
    np.testing.assert_allclose(traj.p[-1], p_inf, atol=1e-9)
    np.testing.assert_allclose(traj.s[-1], s0 + (p_inf**2 - p0**2) / alpha_p, atol=1e-9)


def test_parabola_constant_uses_the_corrected_sign():
    # Eqn. 14: s - p^2/alpha_p = c e^{-2 eta t} with c = s(0) - p(0)^2/alpha_p (the paper prints -c).
    modes = ModeDynamics(0.5, 1.0, 0.1, beta=0.4, target="byol")
    traj = modes.simulate(0.5, 0.1, 0.0, 10.0, 0.01, "rk4", 100)
    c = parabola_constant(traj.p, traj.s)[:, 0]
    c0 = 0.1 - 0.25
    np.testing.assert_allclose(c, c0 * np.exp(-0.2 * traj.t), atol=1e-10)
    assert abs(c[-1] - (-c0) * np.exp(-0.2 * traj.t[-1])) > 0.02


def test_ema_closed_form_eqn15():
    modes = ModeDynamics(0.5, 1.0, 0.02, beta=0.5, target="byol")
    traj = modes.simulate(0.2, 0.04, 0.0, 20.0, 0.002, "rk4", 5)
    np.testing.assert_allclose(ema_on_parabola(traj.t, traj.p, 0.5), traj.tau, atol=2e-5)


def test_k_eigenvalue_sign_is_eqn17():
    rng = np.random.default_rng(0)
    p, s, tau = rng.uniform(-0.5, 1, 200), rng.uniform(0, 1, 200), rng.uniform(0, 1, 200)
    sigma2, alpha_p, eta = 0.5, 1.3, 0.02
    delta = p * (tau - (1 + sigma2) * p) - eta
    eqn17 = delta < 0.5 * (alpha_p * (1 + sigma2) * s + eta)
    np.testing.assert_array_equal(k_eigenvalue(p, s, tau, sigma2, alpha_p, eta) > 0, eqn17)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(target="moco"), "target='moco'"),
        (dict(alpha_p=0.0), "alpha_p=0.0"),
        (dict(eta=-1.0), "eta=-1.0"),
    ],
)
def test_bad_hyper_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModeDynamics(**kwargs)
