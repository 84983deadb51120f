"""LiDAR (Thilak et al., ICLR 2024) against a direct computation of its definition, and its properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from solo_directpred.spectral import metrics as M


def views(n: int = 40, q: int = 4, d: int = 6, seed: int = 0) -> torch.Tensor:
    """(n, q, d): n clean samples (means spread over d anisotropic dimensions), q noisy views each."""
    generator = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 1, d, generator=generator, dtype=torch.float64) * torch.linspace(0.2, 3.0, d)
    return means + 0.5 * torch.randn(n, q, d, generator=generator, dtype=torch.float64)


def direct_lidar(z: np.ndarray, delta: float = 1e-4, eps: float = 1e-7) -> float:
    """The paper's definition, written out: z is (n, q, d), Σ_w^{-1/2} by an eigendecomposition."""
    n, q, d = z.shape
    class_means = z.mean(axis=1)
    grand = class_means.mean(axis=0)
    between = sum(np.outer(m - grand, m - grand) for m in class_means) / (n - 1)
    within = sum(
        np.outer(z[c, i] - class_means[c], z[c, i] - class_means[c]) for c in range(n) for i in range(q)
    )
    within = within / (n * (q - 1)) + delta * np.eye(d)
    values, vectors = np.linalg.eigh(within)
    inverse_root = vectors @ np.diag(values**-0.5) @ vectors.T
    lam = np.linalg.eigvalsh(inverse_root @ between @ inverse_root)
    p = lam / np.abs(lam).sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def flatten(z: torch.Tensor, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of all views in a shuffled order, with each row's clean-sample id."""
    n, q, d = z.shape
    order = torch.randperm(n * q, generator=torch.Generator().manual_seed(seed))
    return z.reshape(n * q, d)[order], torch.arange(n).repeat_interleave(q)[order]


@pytest.mark.parametrize(("n", "q", "d"), [(40, 4, 6), (300, 2, 16), (12, 10, 20)])
def test_lidar_equals_the_definition_computed_directly(n, q, d):
    z = views(n, q, d)
    rows, groups = flatten(z)
    assert M.lidar(rows, groups) == pytest.approx(direct_lidar(z.numpy()), rel=1e-9)


@pytest.mark.parametrize(("n", "q"), [(40, 4), (300, 2)])
def test_lidar_is_the_same_under_the_biased_normalisers(n, q):
    """Σ_b with 1/n instead of 1/(n − 1) scales Σ_LiDAR, which the effective rank ignores; Σ_w with
    1/(nq) instead of 1/(n(q − 1)) is the same matrix times (q − 1)/q once δ is scaled by (q − 1)/q."""
    z = views(n, q, 6).numpy()
    rows, groups = flatten(torch.from_numpy(z))
    means = z.mean(axis=1)
    spread = means - means.mean(axis=0)
    between = spread.T @ spread / n
    residual = (z - means[:, None]).reshape(-1, 6)
    delta = 1e-4
    within = residual.T @ residual / (n * q) + delta * (q - 1) / q * np.eye(6)
    factor = np.linalg.cholesky(within)
    lam = np.linalg.eigvalsh(np.linalg.solve(factor, np.linalg.solve(factor, between).T))
    p = lam / lam.sum() + 1e-7
    biased = float(np.exp(-(p * np.log(p)).sum()))
    assert M.lidar(rows, groups, delta=delta) == pytest.approx(biased, rel=1e-9)
    # with the same absolute δ the two differ only through δ's weight against the scatter: here < 1e-4
    unscaled = residual.T @ residual / (n * q) + delta * np.eye(6)
    factor = np.linalg.cholesky(unscaled)
    lam = np.linalg.eigvalsh(np.linalg.solve(factor, np.linalg.solve(factor, between).T))
    p = lam / lam.sum() + 1e-7
    assert M.lidar(rows, groups, delta=delta) == pytest.approx(
        float(np.exp(-(p * np.log(p)).sum())), rel=1e-4
    )


def test_lidar_groups_by_id_not_by_row_order():
    z = views(50, 4, 8)
    rows, groups = flatten(z, seed=3)
    expected = direct_lidar(z.numpy())
    assert M.lidar(rows, groups) == pytest.approx(expected, rel=1e-9)
    # grouping consecutive rows instead (a queue-order approximation) is a different number
    chunked = torch.arange(50).repeat_interleave(4)
    assert abs(M.lidar(rows, chunked) - expected) > 0.5


def test_lidar_drops_singletons_and_handles_unequal_groups():
    z = views(30, 3, 5)
    rows, groups = z.reshape(90, 5), torch.arange(30).repeat_interleave(3)
    # drop one view of the first 10 samples: 10 groups of 2, 20 of 3, plus 5 singletons that must be ignored
    keep = torch.ones(90, dtype=torch.bool)
    keep[torch.arange(10) * 3] = False
    extra = torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(9)) * 50
    mixed_rows = torch.cat([rows[keep], extra])
    mixed_groups = torch.cat([groups[keep], torch.arange(100, 105)])
    x = mixed_rows[:-5].numpy()
    labels = mixed_groups[:-5].numpy()
    means = np.stack([x[labels == c].mean(axis=0) for c in range(30)])
    between = (means - means.mean(axis=0)).T @ (means - means.mean(axis=0)) / 29
    residual = x - means[labels]
    within = residual.T @ residual / (len(x) - 30) + 1e-4 * np.eye(5)  # Σ_c (q_c − 1) = 80 − 30
    values, vectors = np.linalg.eigh(within)
    root = vectors @ np.diag(values**-0.5) @ vectors.T
    lam = np.linalg.eigvalsh(root @ between @ root)
    p = lam / lam.sum() + 1e-7
    assert M.lidar(mixed_rows, mixed_groups) == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-9)


def test_lidar_without_delta_is_invariant_to_an_invertible_linear_map():
    # LDA is affine-invariant: Σ_w^{-1/2} Σ_b Σ_w^{-1/2} keeps its eigenvalues under z → zA (δ = 0)
    rows, groups = flatten(views(60, 3, 6))
    a = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) + 3 * torch.eye(6)
    assert M.lidar(rows @ a, groups, delta=0.0) == pytest.approx(M.lidar(rows, groups, delta=0.0), rel=1e-8)
    assert abs(M.rankme(rows @ a) - M.rankme(rows)) > 0.1  # RankMe is not


def test_lidar_of_a_known_class_structure():
    # class means along k axes with variance 100, within-class noise I, q views: Σ_w → I and Σ_b → the means'
    # spread plus the noise of a q-view mean (I/q), so Σ_LiDAR → diag(100 + 1/q on k axes, 1/q elsewhere)
    generator = torch.Generator().manual_seed(0)
    n, q, d, k = 4000, 2, 10, 3
    means = torch.zeros(n, 1, d, dtype=torch.float64)
    means[:, 0, :k] = 10 * torch.randn(n, k, generator=generator, dtype=torch.float64)
    z = means + torch.randn(n, q, d, generator=generator, dtype=torch.float64)
    rows, groups = flatten(z)
    lam = np.array([100 + 1 / q] * k + [1 / q] * (d - k))
    p = lam / lam.sum() + 1e-7
    expected = float(np.exp(-(p * np.log(p)).sum()))  # 3.23: the k discriminable dimensions, and a little
    assert M.lidar(rows, groups) == pytest.approx(expected, rel=0.01)


def test_lidar_needs_two_groups_and_checks_shapes():
    assert np.isnan(M.lidar(torch.randn(4, 3), torch.tensor([0, 0, 1, 2])))
    with pytest.raises(ValueError, match=r"groups must have shape \(4,\)"):
        M.lidar(torch.randn(4, 3), torch.tensor([0, 0, 1]))


def test_snapshot_logs_lidar_with_groups():
    rows, groups = flatten(views(40, 4, 6))
    snapshot = M.spectral_snapshot(rows, groups=groups)
    assert snapshot.scalars["lidar"] == pytest.approx(M.lidar(rows, groups), rel=1e-12)
    assert "lidar" not in M.spectral_snapshot(rows).scalars
