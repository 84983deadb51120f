"""Spectral metrics against matrices whose answer is known in closed form (docs/spectral.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from solo_directpred.spectral import metrics as M


def orthogonal(d: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    return q


def embeddings_with_singular_values(singular_values: list[float], n: int = 64, seed: int = 0) -> torch.Tensor:
    """An (n, d) matrix U diag(σ) Vᵀ with orthonormal U (n × d) and V (d × d)."""
    d = len(singular_values)
    u = orthogonal(n, seed)[:, :d]
    return u @ torch.diag(torch.tensor(singular_values, dtype=torch.float64)) @ orthogonal(d, seed + 1).T


# ---------------------------------------------------------------- embedding metrics


def test_zstd_of_signed_basis_is_sqrt_2_over_2d_minus_1():
    d = 16
    z = torch.cat([torch.eye(d), -torch.eye(d)]) * 3.0  # norms do not matter: rows are ℓ2-normalised
    # each column holds one +1, one −1 and 2d − 2 zeros: unbiased variance 2 / (2d − 1)
    assert M.zstd(z) == pytest.approx(math.sqrt(2 / (2 * d - 1)), rel=1e-12)


def test_zstd_is_zero_for_collapse_to_one_direction():
    direction = torch.randn(32)
    z = torch.rand(100, 1) * 5 + 0.1
    assert M.zstd(z * direction) == pytest.approx(0.0, abs=1e-7)


def test_zstd_of_spherical_gaussian_is_one_over_sqrt_d():
    d = 64
    z = torch.randn(20000, d, generator=torch.Generator().manual_seed(0))
    assert M.zstd(z) == pytest.approx(1 / math.sqrt(d), rel=0.01)


@pytest.mark.parametrize("k", [1, 3, 16])
def test_rankme_of_k_equal_singular_values_is_k(k):
    d = 16
    z = embeddings_with_singular_values([2.0] * k + [0.0] * (d - k))
    # p_k = 1/k + ε on k modes and ε elsewhere: RankMe = k up to O(d ε log ε)
    assert M.rankme(z) == pytest.approx(k, abs=1e-4)


def test_rankme_of_two_modes_matches_entropy_formula_and_is_scale_invariant():
    z = embeddings_with_singular_values([3.0, 1.0, 0.0, 0.0])
    p = np.array([0.75, 0.25])
    expected = math.exp(-(p * np.log(p)).sum())
    assert M.rankme(z) == pytest.approx(expected, rel=1e-5)
    # zero singular values come out of the Gram matrix as ≈ 1e-8 σ_max: invariant to 1e-6, not to round-off
    assert M.rankme(1000 * z) == pytest.approx(M.rankme(z), rel=1e-6)


def test_rankme_agrees_with_svd_and_handles_zero():
    z = torch.randn(200, 24, generator=torch.Generator().manual_seed(1)) * torch.linspace(0.1, 3, 24)
    s = torch.linalg.svdvals(z.double())
    p = s / s.sum() + M.RANKME_EPS
    assert M.rankme(z) == pytest.approx(float(torch.exp(-(p * p.log()).sum())), rel=1e-9)
    assert M.rankme(torch.zeros(10, 4)) == 0.0


def test_participation_ratio_closed_forms():
    assert M.participation_ratio(torch.tensor([1.0] * 5 + [0.0] * 3)) == pytest.approx(5.0)
    assert M.participation_ratio(torch.tensor([3.0, 1.0])) == pytest.approx(16 / 10)
    assert M.participation_ratio(torch.zeros(4)) == 0.0


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_alpha_req_recovers_a_power_law_exactly(alpha):
    k = torch.arange(1, 41, dtype=torch.float64)
    value, r2 = M.alpha_req(3.7 * k ** (-alpha))
    assert value == pytest.approx(alpha, abs=1e-10)
    assert r2 == pytest.approx(1.0, abs=1e-12)


def test_alpha_req_isotropic_is_zero_and_ignores_dead_modes():
    assert M.alpha_req(torch.ones(8)) == pytest.approx((0.0, 1.0), abs=1e-12)
    k = torch.arange(1, 11, dtype=torch.float64)
    spectrum = torch.cat([k**-1.0, torch.zeros(6)])  # six dead modes are left out of the fit
    assert M.alpha_req(spectrum)[0] == pytest.approx(1.0, abs=1e-10)


def test_alpha_req_r2_below_one_matches_numpy_fit():
    lam = torch.tensor([4.0, 1.0, 1.0, 0.9, 0.1], dtype=torch.float64)
    x, y = np.log(np.arange(1, 6)), np.log(lam.numpy())
    slope, intercept = np.polyfit(x, y, 1)
    r2 = 1 - ((y - (slope * x + intercept)) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    value, fit = M.alpha_req(lam)
    assert value == pytest.approx(-slope, rel=1e-10)
    assert fit == pytest.approx(r2, rel=1e-10)
    assert fit < 0.95
    assert all(math.isnan(v) for v in M.alpha_req(torch.tensor([1.0, 0.0, 0.0])))


def test_condition_number_and_dead_modes():
    assert M.condition_number(torch.tensor([4.0, 2.0, 1.0])) == pytest.approx(4.0)
    assert M.condition_number(torch.ones(5)) == pytest.approx(1.0)
    assert M.condition_number(torch.tensor([1.0, 0.0])) == M.MAX_CONDITION_NUMBER
    assert M.condition_number(torch.zeros(3)) == M.MAX_CONDITION_NUMBER
    spectrum = torch.tensor([1.0, 1e-3, 1e-5, 0.0])
    assert M.dead_modes(spectrum) == 2
    assert M.dead_modes(spectrum, rtol=1e-2) == 3
    assert M.dead_modes(torch.zeros(6)) == 6


def test_correlation_covariance_and_eigenvalues():
    z = torch.randn(50, 6, generator=torch.Generator().manual_seed(2)) + 1.0
    assert torch.allclose(M.correlation(z), z.double().T @ z.double() / 50)
    assert torch.allclose(M.covariance(z), torch.cov(z.double().T))
    s = torch.tensor([5.0, 3.0, 1.0, 0.5], dtype=torch.float64)
    q = orthogonal(4)
    values = M.eigenvalues(q @ torch.diag(s) @ q.T)
    assert values.dtype == torch.float64
    assert torch.allclose(values, s, atol=1e-12)  # descending
    # only the symmetric part counts: sym([[1, 2], [0, 1]]) = [[1, 1], [1, 1]], eigenvalues 2 and 0
    assert torch.allclose(
        M.eigenvalues(torch.tensor([[1.0, 2.0], [0.0, 1.0]])), torch.tensor([2.0, 0.0]).double(), atol=1e-12
    )


# ---------------------------------------------------------------- predictor metrics


def test_alignment_and_commutator_of_a_commuting_pair():
    q = orthogonal(6, seed=3)
    s = torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    p = torch.tensor([0.9, -0.4, 0.7, 0.2, -1.5, 0.3], dtype=torch.float64)
    f, w = q @ torch.diag(s) @ q.T, q @ torch.diag(p) @ q.T
    # W_p u_j = p_j u_j, so a_j = p_j / |p_j| in the order of s_j
    assert torch.allclose(M.alignment(f, w), p.sign(), atol=1e-10)
    assert M.commutator(f, w) == pytest.approx(0.0, abs=1e-12)


def test_alignment_and_commutator_of_a_non_commuting_pair():
    f = torch.diag(torch.tensor([2.0, 1.0]))
    w = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    # W e_1 = W e_2 = (1, 1): cosine with e_j is 1/√2
    assert torch.allclose(M.alignment(f, w), torch.full((2,), 1 / math.sqrt(2), dtype=torch.float64))
    # F = diag(1, 0), W = [[0, 1], [1, 0]]: FW − WF = [[0, 1], [−1, 0]], ‖·‖ = √2 = ‖F‖‖W‖
    assert M.commutator(torch.diag(torch.tensor([1.0, 0.0])), torch.tensor([[0.0, 1.0], [1.0, 0.0]])) == (
        pytest.approx(1.0)
    )
    rotation = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    assert torch.allclose(M.alignment(f, rotation), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert torch.equal(M.alignment(f, torch.zeros(2, 2)), torch.zeros(2, dtype=torch.float64))


def test_asymmetry_closed_forms():
    w = torch.randn(5, 5, generator=torch.Generator().manual_seed(4))
    assert M.asymmetry(w + w.T) == pytest.approx(0.0, abs=1e-12)
    assert M.asymmetry(w - w.T) == pytest.approx(2.0)
    assert M.asymmetry(torch.tensor([[0.0, 1.0], [0.0, 0.0]])) == pytest.approx(math.sqrt(2))
    assert M.asymmetry(torch.zeros(3, 3)) == 0.0


@pytest.mark.parametrize("power", [0.5, 1.0])
def test_eigenvalue_slope_of_directset_predictor_is_its_power(power):
    q = orthogonal(8, seed=5)
    s = torch.logspace(0, -3, 8, dtype=torch.float64)
    f, w = q @ torch.diag(s) @ q.T, q @ torch.diag(s**power) @ q.T
    slope, r2 = M.eigenvalue_slope(f, w)
    assert slope == pytest.approx(power, abs=1e-9)
    assert r2 == pytest.approx(1.0, abs=1e-9)


def test_eigenvalue_slope_of_directpred_with_eps_is_below_one_half():
    from solo_directpred.core import directpred

    q = orthogonal(8, seed=6)
    s = torch.logspace(0, -3, 8, dtype=torch.float64)
    f = q @ torch.diag(s) @ q.T
    slope, _ = M.eigenvalue_slope(f, directpred(f, eps=0.1))
    # log(√(s/s_max) + ε) grows slower than ½ log s
    assert 0.1 < slope < 0.5


# ---------------------------------------------------------------- the snapshot


def test_snapshot_matches_the_individual_metrics():
    generator = torch.Generator().manual_seed(7)
    z = torch.randn(300, 12, generator=generator) * torch.linspace(0.2, 2.0, 12) + 0.3
    w = torch.randn(12, 12, generator=generator)
    snap = M.spectral_snapshot(z, w)
    lam = M.eigenvalues(M.covariance(z))
    f = M.correlation(z)
    assert snap.scalars["rankme"] == pytest.approx(M.rankme(z), rel=1e-9)
    assert snap.scalars["zstd"] == pytest.approx(M.zstd(z))
    assert snap.scalars["participation_ratio"] == pytest.approx(M.participation_ratio(lam))
    assert (snap.scalars["alpha_req"], snap.scalars["alpha_req_r2"]) == pytest.approx(M.alpha_req(lam))
    assert snap.scalars["condition_number"] == pytest.approx(M.condition_number(lam))
    assert snap.scalars["commutator"] == pytest.approx(M.commutator(f, w))
    assert snap.scalars["asymmetry"] == pytest.approx(M.asymmetry(w))
    assert snap.scalars["num_samples"] == 300 and snap.scalars["dim"] == 12
    assert torch.allclose(snap.correlation_eigenvalues, M.eigenvalues(f))
    assert torch.allclose(snap.predictor_eigenvalues, M.eigenvalues(w))
    assert torch.allclose(snap.alignment.abs(), M.alignment(f, w).abs())
    assert snap.scalars["alignment_mean"] == pytest.approx(float(snap.alignment.mean()))
    assert snap.scalars["predictor_negative"] == float((snap.predictor_eigenvalues < 0).sum())


def test_snapshot_without_predictor_has_only_embedding_metrics():
    snap = M.spectral_snapshot(torch.randn(40, 5))
    assert snap.predictor_eigenvalues is None and snap.alignment is None
    assert "commutator" not in snap.scalars and "rankme" in snap.scalars


def test_snapshot_uses_float64_symmetric_solvers_and_never_eig(monkeypatch):
    calls = []

    def spy(name):
        real = getattr(torch.linalg, name)

        def wrapper(matrix, *args, **kwargs):
            calls.append((name, matrix.dtype))
            return real(matrix, *args, **kwargs)

        return wrapper

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.linalg.eig must not be used")

    monkeypatch.setattr(torch.linalg, "eigh", spy("eigh"))
    monkeypatch.setattr(torch.linalg, "eigvalsh", spy("eigvalsh"))
    monkeypatch.setattr(torch.linalg, "eig", forbidden)
    monkeypatch.setattr(torch.linalg, "eigvals", forbidden)
    M.spectral_snapshot(torch.randn(30, 6).half(), torch.randn(6, 6))
    # eigenvectors of F; eigenvalues of C and of sym(W_p)
    assert sorted(calls) == [
        ("eigh", torch.float64),
        ("eigvalsh", torch.float64),
        ("eigvalsh", torch.float64),
    ]
    calls.clear()
    M.spectral_snapshot(torch.randn(30, 6))  # without a predictor no eigenvectors are needed
    assert sorted(calls) == [("eigvalsh", torch.float64), ("eigvalsh", torch.float64)]


def test_input_errors_name_the_shape():
    with pytest.raises(ValueError, match=r"2-D \(N, d\).*\(5,\)"):
        M.zstd(torch.randn(5))
    with pytest.raises(ValueError, match=r"at least 2 rows, got 1"):
        M.spectral_snapshot(torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"predictor must be \(4, 4\).*\(3, 3\)"):
        M.spectral_snapshot(torch.randn(10, 4), torch.eye(3))
    with pytest.raises(ValueError, match=r"square \(d, d\).*\(2, 3\)"):
        M.asymmetry(torch.zeros(2, 3))


# ---------------------------------------------------------------- covariance centred before the product


def test_snapshot_reads_a_constant_embedding_as_fully_collapsed():
    # an exact collapse: every row the same vector. Built as F − μμᵀ the covariance is rounding noise
    # (participation ratio ≈ 10, ~76 dead modes of 128); centred first it is zero.
    z = torch.full((2048, 128), 0.1) + torch.linspace(0, 1, 128)
    scalars = M.spectral_snapshot(z).scalars
    assert scalars["participation_ratio"] == 0.0
    assert scalars["dead_modes"] == 128.0
    assert scalars["condition_number"] == M.MAX_CONDITION_NUMBER
    assert scalars["rankme"] == pytest.approx(1.0, abs=1e-3)


def test_snapshot_covariance_matches_direct_centring_under_a_large_mean():
    # spread ~1e-5 around a mean of norm ~1e3: λ/‖μ‖² ≈ 1e-16, where F − μμᵀ (rounding ~1e-16 ‖μ‖²)
    # loses every digit and the covariance centred first keeps them
    generator = torch.Generator().manual_seed(0)
    d = 32
    mean = 1e3 * torch.randn(d, generator=generator, dtype=torch.float64) / math.sqrt(d)
    spread = 1e-5 * torch.linspace(0.2, 1, d, dtype=torch.float64)
    z = mean + spread * torch.randn(4096, d, generator=generator, dtype=torch.float64)
    direct = M.eigenvalues(M.covariance(z))
    scalars = M.spectral_snapshot(z).scalars
    assert scalars["participation_ratio"] == pytest.approx(M.participation_ratio(direct), rel=1e-6)
    assert scalars["dead_modes"] == 0.0
    f = z.T @ z / z.shape[0]
    uncentred = M.eigenvalues((f - torch.outer(z.mean(0), z.mean(0))) * (4096 / 4095))
    assert abs(M.participation_ratio(uncentred) - M.participation_ratio(direct)) > 1.0
