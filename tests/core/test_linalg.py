import math

import pytest
import torch

from solo_directpred.core.linalg import safe_eigh, sqrt_newton_schulz, top_eigenpair, top_eigenvalue


def _spd(d: int, seed: int = 0, rank: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(4 * d, rank or d, generator=g, dtype=torch.float64)
    if rank is not None:
        z = z @ torch.randn(rank, d, generator=g, dtype=torch.float64)
    return z.T @ z / (4 * d)


def test_safe_eigh_reconstructs_and_uses_float32_for_half_input():
    f = _spd(16).to(torch.bfloat16)
    values, vectors, fallbacks = safe_eigh(f)
    assert values.dtype == torch.float32 and fallbacks == 0
    recon = (vectors * values) @ vectors.T
    torch.testing.assert_close(recon, f.float(), atol=1e-4, rtol=1e-4)


def test_safe_eigh_falls_back_when_float32_eigh_fails(monkeypatch):
    real_eigh = torch.linalg.eigh
    calls = []

    def flaky(matrix):
        calls.append(matrix.dtype)
        if matrix.dtype == torch.float32:
            raise torch.linalg.LinAlgError("forced failure")
        return real_eigh(matrix)

    monkeypatch.setattr(torch.linalg, "eigh", flaky)
    values, _, fallbacks = safe_eigh(_spd(8).float())
    assert fallbacks == 1 and calls == [torch.float32, torch.float64]
    assert values.dtype == torch.float32
    torch.testing.assert_close(values.double(), real_eigh(_spd(8))[0], atol=1e-5, rtol=1e-5)


def test_safe_eigh_rejects_half_precision_dtype():
    with pytest.raises(ValueError, match="eigh dtype must be torch.float32 or torch.float64"):
        safe_eigh(_spd(4), dtype=torch.float16)


@pytest.mark.parametrize("rank", [None, 5])
def test_newton_schulz_matches_eigh_square_root(rank):
    f = _spd(40, rank=rank)
    root, scale = sqrt_newton_schulz(f, num_iters=30, dtype=torch.float64)
    values, vectors = torch.linalg.eigh(f)
    exact = (vectors * values.clamp_min(0).sqrt()) @ vectors.T
    # Documented bound: within 0.3·√δ per mode of the normalised root, δ = 4·√d·eps(float64).
    delta = 4 * math.sqrt(40) * torch.finfo(torch.float64).eps
    err = torch.linalg.eigvalsh(root * scale.sqrt() - exact).abs().max()
    assert err <= 0.3 * math.sqrt(delta) * scale.sqrt() + 1e-9


def test_top_eigenpair_matches_eigh_and_squarings_speed_it_up():
    values = torch.tensor([1.0, 0.97, 0.5, 0.1], dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    f = (q * values) @ q.T
    plain, _ = top_eigenpair(f, num_iters=5, dtype=torch.float64)
    squared, vector = top_eigenpair(f, num_iters=5, dtype=torch.float64, squarings=6)
    assert abs(squared.item() - 1.0) < 1e-8
    assert abs(plain.item() - 1.0) > 10 * abs(squared.item() - 1.0)
    assert abs(abs(vector @ q[:, 0]).item() - 1.0) < 1e-8


def test_safe_eigh_uses_the_symmetric_part_of_a_non_symmetric_matrix():
    f = _spd(8, seed=3)
    skew = torch.triu(torch.randn(8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64), 1)
    skew = skew - skew.T
    values, vectors, _ = safe_eigh(f + skew, dtype=torch.float64)  # symmetric part: f
    expected = torch.linalg.eigvalsh(f)
    torch.testing.assert_close(values, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close((vectors * values) @ vectors.T, f, atol=1e-12, rtol=0)
    # eigh alone reads one triangle, which here is not f: the symmetrisation is what makes the test pass.
    assert (torch.linalg.eigvalsh(f + skew) - expected).abs().max() > 1e-2


@pytest.mark.parametrize("d", [64, 256, 1024])
@pytest.mark.parametrize("gap", [0.5, 0.05, 0.01, 0.001])
def test_lanczos_top_eigenvalue_with_small_gaps_and_its_residual(d, gap):
    # A slowly decaying bulk (s_k ∝ k^-0.2) is the hard case: the default 24 steps still converge.
    s = torch.arange(1, d + 1, dtype=torch.float64).pow(-0.2)
    s[1] = 1.0 - gap
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    f = (q * s) @ q.T
    value, residual = top_eigenvalue(f)
    assert abs(value.item() - 1.0) < 1e-12 and residual < 1e-9
    short, short_residual = top_eigenvalue(f, num_iters=3)
    assert short <= 1.0 + 1e-12 and short_residual > 1e-3  # not converged, and the residual says so


def test_lanczos_is_exact_once_the_krylov_space_is_invariant():
    f = torch.diag(torch.tensor([0.72, 1.08, 0.05, 0.01], dtype=torch.float64))
    value, residual = top_eigenvalue(f, num_iters=32)
    assert abs(value.item() - 1.08) <= 4 * torch.finfo(torch.float64).eps and residual < 1e-15
    assert value.float() == torch.tensor(1.08)  # exact after rounding to the float32 of the state
