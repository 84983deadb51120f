"""The linear model of Lemma 1: ODE against autograd SGD, Theorems 1-2, options and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from solo_directpred.theory.linear_model import (
    LinearModel,
    LinearState,
    aligned_state,
    balance,
    init_state,
    project_modes,
    theorem2_hessian,
)


def _anisotropic(n1: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((n1, n1)), rng.standard_normal((n1, n1))
    return A @ A.T / n1 + 0.1 * np.eye(n1), 0.5 * B @ B.T / n1 + 0.05 * np.eye(n1)


def _state(n1: int = 5, n2: int = 3, seed: int = 1) -> LinearState:
    s = init_state(n1, n2, seed=seed, scale=1.0, predictor_scale=1.0)
    return LinearState(s.W, s.Wp, s.W + 0.3 * np.random.default_rng(seed).standard_normal(s.W.shape))


@pytest.mark.parametrize("target, stop_gradient", [("byol", True), ("simsiam", True), ("simsiam", False)])
def test_expected_autograd_gradient_is_lemma1(target, stop_gradient):
    # The mean of the batch gradient over many sampled views equals the flow of Lemma 1.
    X, Xa = _anisotropic()
    model = LinearModel(X, Xa, alpha_p=2.0, eta=0.0, beta=0.5, target=target, stop_gradient=stop_gradient)
    state = _state()
    v = model.velocity(state)
    x1, x2 = model.sample_views(200_000, torch.Generator().manual_seed(0))
    gW, gWp = model.batch_gradients(state, x1, x2)
    assert np.abs(-gW - v.W).max() / np.abs(v.W).max() < 0.02
    assert np.abs(-2.0 * gWp - v.Wp).max() / np.abs(v.Wp).max() < 0.02  # alpha_p = 2 scales the predictor


def test_sampled_views_have_the_model_moments():
    X, Xa = _anisotropic()
    model = LinearModel(X, Xa)
    x1, x2 = (x.numpy() for x in model.sample_views(200_000, torch.Generator().manual_seed(1)))
    n = x1.shape[0]
    np.testing.assert_allclose(x1.T @ x1 / n, X + Xa, atol=0.03)
    np.testing.assert_allclose(x1.T @ x2 / n, X, atol=0.03)


def test_symmetric_loss_has_the_same_expected_gradient():
    X, Xa = _anisotropic()
    model = LinearModel(X, Xa, target="byol")
    state = _state()
    x1, x2 = model.sample_views(200_000, torch.Generator().manual_seed(2))
    one = model.batch_gradients(state, x1, x2)
    both = model.batch_gradients(state, x1, x2, symmetric_loss=True)
    for a, b in zip(one, both):
        assert np.abs(a - b).max() / np.abs(a).max() < 0.02


def test_theorem2_flow_is_minus_h_vec_w():
    X, Xa = _anisotropic()
    model = LinearModel(X, Xa, eta=0.03, target="simsiam", stop_gradient=False)
    state = _state()
    dW = model.velocity(state).W
    H = theorem2_hessian(state.Wp, X, Xa, 0.03)
    np.testing.assert_allclose(dW.ravel(order="F"), -H @ state.W.ravel(order="F"), atol=1e-12)
    assert np.linalg.eigvalsh(H)[0] >= 0.03 - 1e-12  # PSD part plus eta I


def test_theorem1_balance_decays_exactly():
    X, Xa = _anisotropic()
    model = LinearModel(X, Xa, alpha_p=0.5, eta=0.1, beta=0.7)
    traj = model.simulate(_state(), 5.0, 0.005, "rk4", 100)
    M = balance(traj.W, traj.Wp, 0.5)
    np.testing.assert_allclose(M, np.exp(-0.2 * traj.t)[:, None, None] * M[0], atol=1e-8)


def test_sgd_with_a_large_batch_follows_the_euler_flow():
    X, Xa = _anisotropic()
    model = LinearModel(X, Xa, eta=0.01, beta=0.4)
    state = _state()
    sgd = model.sgd(state, 300, lr=0.01, batch_size=4096, seed=0, record_every=300)
    ode = model.simulate(state, 3.0, 0.01, "euler", 300)
    for a, b in ((sgd.W, ode.W), (sgd.Wp, ode.Wp), (sgd.Wa, ode.Wa)):
        assert np.abs(a[-1] - b[-1]).max() / np.abs(b[-1]).max() < 0.05


def test_sgd_is_deterministic_given_the_seed():
    model = LinearModel.isotropic(4, 0.5, eta=0.01)
    state = init_state(4, 3, seed=0)
    a = model.sgd(state, 20, batch_size=8, seed=5)
    b = model.sgd(state, 20, batch_size=8, seed=5)
    c = model.sgd(state, 20, batch_size=8, seed=6)
    np.testing.assert_array_equal(a.W, b.W)
    assert np.abs(a.W[-1] - c.W[-1]).max() > 1e-6
    assert torch.get_num_threads() >= 1  # the single-thread section restores the setting


def test_simsiam_target_is_the_online_network_and_symmetric_predictor_stays_symmetric():
    model = LinearModel.isotropic(4, 0.5, target="simsiam", symmetric_predictor=True)
    state = init_state(4, 4, seed=0, symmetric_predictor=True)
    for traj in (model.simulate(state, 1.0, 0.01), model.sgd(state, 50, batch_size=16)):
        np.testing.assert_array_equal(traj.Wa, traj.W)
        np.testing.assert_allclose(traj.Wp, np.swapaxes(traj.Wp, 1, 2), atol=1e-12)


def test_aligned_state_round_trips_the_modes():
    p, s, tau = np.array([0.3, -0.2, 0.5]), np.array([0.2, 0.1, 0.4]), np.array([0.1, 0.5, 1.0])
    state, U = aligned_state(p, s, tau, n1=5, seed=2)
    model = LinearModel.isotropic(5, 0.5)
    traj = model.simulate(state, 0.0)
    got = project_modes(traj, U)
    for a, b in zip(got, (p, s, tau)):
        np.testing.assert_allclose(a[0], b, atol=1e-12)
    np.testing.assert_allclose(U.T @ U, np.eye(3), atol=1e-12)


def test_velocity_broadcasts_over_leading_batch_axes():
    X, Xa = _anisotropic()
    model = LinearModel(X, Xa, eta=0.01, beta=0.3)
    states = [_state(seed=k) for k in range(3)]
    batched = model.velocity(
        LinearState(*(np.stack([getattr(s, k) for s in states]) for k in ("W", "Wp", "Wa")))
    )
    for i, s in enumerate(states):
        np.testing.assert_allclose(batched.W[i], model.velocity(s).W, atol=1e-14)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(target="byol", stop_gradient=False), "stop_gradient=False needs target='simsiam'"),
        (dict(target="moco"), "target='moco'"),
        (dict(alpha_p=-1.0), "alpha_p=-1.0"),
        (dict(eta=-0.1), "eta=-0.1"),
    ],
)
def test_bad_configuration_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LinearModel.isotropic(3, 0.5, **kwargs)


def test_shape_and_rate_errors():
    with pytest.raises(ValueError, match="same shape|one shape"):
        LinearModel(np.eye(3), np.eye(4))
    model = LinearModel.isotropic(3, 0.5, beta=200.0)
    with pytest.raises(ValueError, match="n1=3"):
        model.velocity(init_state(4, 2))
    with pytest.raises(ValueError, match=r"lr\*beta=2.0"):
        model.sgd(init_state(3, 2), 1, lr=0.01)
