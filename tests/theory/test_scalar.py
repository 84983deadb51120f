"""The scalar BYOL of App. D: fixed points, invariant manifold, no-predictor collapse, link to Eqns. 11-13."""

from __future__ import annotations

import numpy as np
import pytest

from solo_directpred.theory.modes import ModeDynamics
from solo_directpred.theory.scalar import ScalarBYOL


def test_scalar_system_is_one_mode_of_eqns_11_to_13():
    # s = w^2, tau = w_a / w, p = w_p with lambda_s = 1 + sigma^2 and lambda_d = 1.
    sigma2, alpha_p, eta, beta = 0.5, 1.5, 0.02, 0.4
    w0, wp0, wa0 = 0.4, 0.3, 0.1
    _, y = ScalarBYOL(1 + sigma2, 1.0, alpha_p, beta, eta).simulate(w0, wp0, wa0, 20.0, 0.01, "rk4", 100)
    modes = ModeDynamics(sigma2, alpha_p, eta, beta, "byol").simulate(
        wp0, w0**2, wa0 / w0, 20.0, 0.01, "rk4", 100
    )
    np.testing.assert_allclose(y[:, 1], modes.p[:, 0], atol=1e-9)
    np.testing.assert_allclose(y[:, 0] ** 2, modes.s[:, 0], atol=1e-9)
    np.testing.assert_allclose(y[:, 2] / y[:, 0], modes.tau[:, 0], atol=1e-9)


def test_full_system_reaches_the_balanced_fixed_point():
    byol = ScalarBYOL(lambda_s=1.0, lambda_d=0.5, alpha_p=1.0, beta=1.0)
    _, y = byol.simulate(0.8, 0.2, 0.1, 200.0, 0.05, "rk4", 10**9)
    w, wp, wa = y[-1]
    assert wp == pytest.approx(byol.balanced_predictor, abs=1e-6)
    assert w == pytest.approx(wa, abs=1e-6)
    assert wp * w == pytest.approx(wa * 0.5, abs=1e-6)
    np.testing.assert_allclose(byol.velocity(w, wp, wa), 0.0, atol=1e-6)


def test_fixed_target_subsystem_reaches_the_hyperbola():
    # Fig. 10 left: with w_a = 1 fixed, (w, w_p) goes to the stable hyperbola w_p w = lambda_d / lambda_s.
    fast = ScalarBYOL(lambda_s=1.0, lambda_d=0.5, fixed_target=True)
    for start in [(0.1, 0.05), (-0.3, -0.2), (1.2, 1.0)]:
        _, y = fast.simulate(start[0], start[1], 1.0, 100.0, 0.05, "rk4", 10**9)
        assert y[-1, 0] * y[-1, 1] == pytest.approx(0.5, abs=1e-6)
        assert y[-1, 2] == 1.0


def test_alpha_p_one_keeps_w_equal_to_w_p():
    _, y = ScalarBYOL(lambda_s=1.0, lambda_d=0.5).simulate(0.3, 0.3, 0.9, 100.0, 0.01, "rk4", 100)
    np.testing.assert_allclose(y[:, 0], y[:, 1], atol=1e-12)
    assert y[-1, 0] == pytest.approx(0.5, abs=1e-4)  # stable point w = w_a = lambda_d / lambda_s


def test_without_predictor_the_origin_is_the_only_and_stable_fixed_point():
    no_pred = ScalarBYOL(lambda_s=1.0, lambda_d=0.5, beta=1.0, predictor=False)
    # Jacobian of (dw, dw_a) = (lambda_d w_a - lambda_s w, beta (w - w_a)) at the origin.
    J = np.array([[-1.0, 0.5], [1.0, -1.0]])
    assert np.all(np.linalg.eigvals(J).real < 0)
    for start in [(1.0, 0.5), (-0.7, 1.3)]:
        _, y = no_pred.simulate(start[0], 1.0, start[1], 100.0, 0.05, "rk4", 10**9)
        assert np.abs(y[-1, [0, 2]]).max() < 1e-6
        assert y[-1, 1] == 1.0


def test_bad_hyper_parameters_are_named():
    with pytest.raises(ValueError, match="lambda_s=0"):
        ScalarBYOL(lambda_s=0)
    with pytest.raises(ValueError, match="beta=-1"):
        ScalarBYOL(beta=-1)
