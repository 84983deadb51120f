"""Spectral metrics of embeddings and of a linear predictor (paper Fig. 2, docs/spectral.md). Torch only.

Notation: Z is an (N, d) matrix of projector outputs (the predictor's input, views pooled), F = ZᵀZ / N its
uncentred correlation with eigenpairs (s_j, u_j), C its covariance with eigenvalues λ_k, σ_k the singular
values of Z, and W_p the (d, d) linear predictor acting as ``W_p z`` (``nn.Linear`` weight layout).

Every eigendecomposition runs in float64 with the symmetric solver, outside autocast:
:func:`torch.linalg.eigh` (through :func:`solo_directpred.core.linalg.safe_eigh`) where eigenvectors are
needed, :func:`torch.linalg.eigvalsh` where only eigenvalues are; never the general ``torch.linalg.eig``.
Eigenvalues are returned in descending order. Scalars come back as Python floats, spectra as float64
tensors on the input's device.

Example::

    >>> z = torch.randn(1024, 64)
    >>> rankme(z) > 60  # a healthy, isotropic embedding uses nearly all of its 64 dimensions
    True
    >>> snapshot = spectral_snapshot(z, predictor=torch.eye(64))
    >>> snapshot.scalars["commutator"]
    0.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from solo_directpred.core.linalg import safe_eigh, symmetrize

#: Relative eigenvalue below which a mode counts as dead (λ_k / λ_max < DEAD_RTOL).
DEAD_RTOL = 1e-4
#: Condition numbers are capped here: beyond it the matrix is numerically singular.
MAX_CONDITION_NUMBER = 1e12
#: The ε of RankMe (Garrido et al., 2023), added to the normalised singular values (and in LiDAR).
RANKME_EPS = 1e-7
#: The δ of LiDAR (Thilak et al., 2024): δ·I is added to the within-class scatter so that it is invertible.
LIDAR_DELTA = 1e-4
#: Covariance eigenvalues below this fraction of s_1 (the largest eigenvalue of F) count as 0: a spread under
#: 10⁻¹⁰ of the embedding's norm, where the float64 rounding of the centring itself (~10⁻¹⁶) is in reach.
COVARIANCE_RTOL = 1e-20


def _float64(x: Tensor) -> Tensor:
    # MPS has no float64; everything else computes where the data already is.
    if x.device.type == "mps":
        x = x.cpu()
    return x.detach().to(torch.float64)


def _check_embeddings(z: Tensor, min_rows: int = 1) -> Tensor:
    if z.ndim != 2:
        raise ValueError(f"z must be a 2-D (N, d) tensor of embeddings, got shape {tuple(z.shape)}")
    if z.shape[0] < min_rows:
        raise ValueError(f"z needs at least {min_rows} rows, got {z.shape[0]}")
    return _float64(z)


def _check_square(matrix: Tensor, name: str) -> Tensor:
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{name} must be a square (d, d) matrix, got shape {tuple(matrix.shape)}")
    return _float64(matrix)


def _eigh_descending(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (descending) and matching eigenvectors (columns) of sym(matrix), in float64."""
    values, vectors, _ = safe_eigh(matrix, dtype=torch.float64)
    return values.flip(0), vectors.flip(1)


def _eigvalsh_descending(matrix: Tensor) -> Tensor:
    """Eigenvalues (descending) of sym(matrix), in float64, by the same symmetric solver without vectors.

    About half the cost of :func:`_eigh_descending`; falls back to it (and its jitter) if the solver fails.
    """
    with torch.autocast(device_type=matrix.device.type, enabled=False):
        try:
            values = torch.linalg.eigvalsh(symmetrize(matrix.to(torch.float64)))
            if torch.isfinite(values).all():
                return values.flip(0)
        except (torch.linalg.LinAlgError, RuntimeError):
            pass
    return _eigh_descending(matrix)[0]


def correlation(z: Tensor) -> Tensor:
    """Uncentred correlation F = ZᵀZ / N (the paper's F, §3.2) of (N, d) embeddings of any floating dtype:
    a (d, d) float64 symmetric PSD matrix."""
    z = _check_embeddings(z)
    return z.T @ z / z.shape[0]


def covariance(z: Tensor) -> Tensor:
    """Covariance C = (Z − 1μᵀ)ᵀ(Z − 1μᵀ) / (N − 1) of (N, d) embeddings, N ≥ 2: a (d, d) float64 symmetric
    PSD matrix."""
    z = _check_embeddings(z, min_rows=2)
    centred = z - z.mean(dim=0, keepdim=True)
    return centred.T @ centred / (z.shape[0] - 1)


def eigenvalues(matrix: Tensor) -> Tensor:
    """Eigenvalues of the symmetric part (M + Mᵀ)/2 of a (d, d) real matrix: (d,) float64, descending.

    For F or C these are s_j or λ_k; for a predictor they are the eigenvalues of sym(W_p) that the paper's
    Fig. 2 (column 2) plots.
    """
    return _eigvalsh_descending(_check_square(matrix, "matrix"))


def zstd(z: Tensor) -> float:
    """Mean over dimensions of the standard deviation of the ℓ2-normalised (N, d) embeddings, N ≥ 2.

    z-std = (1/d) Σ_i std_n(z_n,i / ‖z_n‖) in [0, 1], with the unbiased (N − 1) standard deviation, as
    solo-learn's ``train_z_std``. 0 means collapse to a single direction; embeddings spread uniformly over
    the unit sphere give ≈ 1/√d.
    """
    z = _check_embeddings(z, min_rows=2)
    return float(F.normalize(z, dim=1).std(dim=0).mean())


def _effective_rank(values: Tensor, eps: float = RANKME_EPS) -> float:
    """exp(−Σ_k p_k log p_k), p_k = v_k / Σ_l v_l + ε, of non-negative values (0 when they sum to 0)."""
    total = values.sum()
    if total <= 0:
        return 0.0
    p = values / total + eps
    return float(torch.exp(-(p * p.log()).sum()))


def rankme(z: Tensor, eps: float = RANKME_EPS) -> float:
    """RankMe (Garrido et al., ICML 2023): the exponential of the entropy of the normalised singular values.

    RankMe = exp(−Σ_k p_k log p_k), p_k = σ_k / Σ_l σ_l + ε (``eps``, 1e-7 in the RankMe paper), σ_k the
    singular values of the (N, d) embeddings Z (uncentred). It equals k for a matrix with k equal non-zero
    singular values (up to O(d·ε)); at most min(N, d). An all-zero Z gives 0. σ_k = √eig(ZᵀZ) from a float64
    ``eigh`` of the d × d Gram matrix (cheaper than an SVD for N ≫ d); singular values below ≈ 1e-8 σ_max
    are not resolved, which moves RankMe by < 1e-6.
    """
    z = _check_embeddings(z)
    gram_eigenvalues = _eigvalsh_descending(z.T @ z)
    return _effective_rank(gram_eigenvalues.clamp_min(0).sqrt(), eps)


def lidar(z: Tensor, groups: Tensor, delta: float = LIDAR_DELTA, eps: float = RANKME_EPS) -> float:
    """LiDAR (Thilak et al., ICLR 2024): the effective rank of the LDA matrix of views grouped by their image.

    The rows of ``z`` are augmented views; ``groups`` says which clean sample (surrogate class) each view
    belongs to (solo-learn's dataset index). With n groups of q_c ≥ 2 views (groups with one view are left
    out), class means μ_c and the grand mean μ = (1/n) Σ_c μ_c:

    * between-class scatter Σ_b = 1/(n − 1) Σ_c (μ_c − μ)(μ_c − μ)ᵀ;
    * within-class scatter Σ_w = 1/Σ_c(q_c − 1) Σ_c Σ_i (z_{c,i} − μ_c)(z_{c,i} − μ_c)ᵀ + δ I, which is the
      paper's 1/(n(q − 1)) when every group has q views;
    * Σ_LiDAR = Σ_w^{−1/2} Σ_b Σ_w^{−1/2}, and LiDAR = exp(−Σ_k p_k log p_k), p_k = λ_k / Σ_l λ_l + ε over
      its eigenvalues λ_k, as in :func:`rankme`.

    The eigenvalues are taken from L⁻¹ Σ_b L⁻ᵀ with the Cholesky factor Σ_w = L Lᵀ: that matrix is similar
    to Σ_w^{−1/2} Σ_b Σ_w^{−1/2} (both are similar to Σ_w⁻¹ Σ_b), and a Cholesky factor costs a fraction
    of the eigendecomposition the inverse square root needs. δ is absolute, so LiDAR depends on the scale
    of z only through δ. LiDAR ≤ min(n − 1, d).

    Args:
        z: (N, d) embeddings of augmented views.
        groups: (N,) integer id of the clean sample of each row.
        delta: δ above (≥ 0; 0 needs a non-singular within-class scatter).
        eps: ε above.

    Returns:
        LiDAR in [0, min(n − 1, d)], or nan with fewer than two groups of at least two views.
    """
    z = _check_embeddings(z)
    if groups.shape != (z.shape[0],):
        raise ValueError(
            f"groups must have shape ({z.shape[0]},) to label the rows of z, got {tuple(groups.shape)}"
        )
    _, inverse, counts = torch.unique(groups.to(z.device), return_inverse=True, return_counts=True)
    keep = counts[inverse] >= 2
    z, (_, inverse, counts) = z[keep], torch.unique(inverse[keep], return_inverse=True, return_counts=True)
    n, d = counts.numel(), z.shape[1]
    if n < 2:
        return math.nan
    means = z.new_zeros(n, d).index_add_(0, inverse, z) / counts.unsqueeze(1).to(z.dtype)
    spread = means - means.mean(dim=0)
    between = spread.T @ spread / (n - 1)
    residual = z - means[inverse]
    within = residual.T @ residual / (z.shape[0] - n) + delta * torch.eye(d, dtype=z.dtype, device=z.device)
    factor, info = torch.linalg.cholesky_ex(within)
    if int(info) == 0:
        half = torch.linalg.solve_triangular(factor, between, upper=False)
        lda = torch.linalg.solve_triangular(factor, half.T, upper=False)
    else:  # not positive definite (δ = 0, singular scatter): inverse square root of its positive part
        values, vectors = _eigh_descending(within)
        inverse_root = vectors @ torch.diag(torch.where(values > 0, values.clamp_min(1e-300).rsqrt(), 0.0))
        lda = inverse_root.T @ between @ inverse_root
    return _effective_rank(_eigvalsh_descending(lda).clamp_min(0), eps)


def participation_ratio(eigenvalues: Tensor) -> float:
    """Participation ratio (Σ_k λ_k)² / Σ_k λ_k² of the (d,) eigenvalues λ_k of C (any order; negative
    round-off is clamped): the effective number of dimensions, in [0, d]. Equals k for k equal non-zero
    eigenvalues and 0 for an all-zero spectrum."""
    lam = _float64(eigenvalues).clamp_min(0)
    squares = (lam * lam).sum()
    if squares <= 0:
        return 0.0
    return float(lam.sum() ** 2 / squares)


def _alive(eigenvalues: Tensor, rtol: float) -> Tensor:
    lam = _float64(eigenvalues)
    top = lam.max() if lam.numel() else lam.new_zeros(())
    if top <= 0:
        return torch.zeros_like(lam, dtype=torch.bool)
    return lam >= rtol * top


def dead_modes(eigenvalues: Tensor, rtol: float = DEAD_RTOL) -> int:
    """Number of dead modes of (d,) eigenvalues in any order: those with λ_k / λ_max < ``rtol`` (all of them
    if λ_max ≤ 0)."""
    return int((~_alive(eigenvalues, rtol)).sum())


def condition_number(eigenvalues: Tensor) -> float:
    """Condition number λ_max / λ_min of (d,) PSD eigenvalues in any order, in [1, 1e12]: a rank-deficient or
    all-zero spectrum (λ_min ≤ λ_max / 1e12) gives the cap, :data:`MAX_CONDITION_NUMBER`."""
    lam = _float64(eigenvalues)
    top, bottom = float(lam.max()), float(lam.min())
    if top <= 0 or bottom * MAX_CONDITION_NUMBER <= top:
        return MAX_CONDITION_NUMBER
    return top / bottom


def _line_fit(x: Tensor, y: Tensor) -> tuple[float, float]:
    """Least-squares slope of y against x and the fit's R² (1 for a perfect fit, also when y is constant)."""
    if x.numel() < 2:
        return math.nan, math.nan
    xc, yc = x - x.mean(), y - y.mean()
    sxx = (xc * xc).sum()
    if sxx <= 0:
        return math.nan, math.nan
    slope = (xc * yc).sum() / sxx
    residual = ((yc - slope * xc) ** 2).sum()
    total = (yc * yc).sum()
    scale = float((y * y).sum()) + 1.0
    if float(total) <= 1e-24 * scale:
        return float(slope), 1.0
    return float(slope), float(1.0 - residual / total)


def alpha_req(eigenvalues: Tensor, rtol: float = DEAD_RTOL) -> tuple[float, float]:
    """α-ReQ (Agrawal et al., NeurIPS 2022): the power-law decay of the spectrum, with the fit quality.

    Fits log λ_k = c − α log k by least squares over the live modes (λ_k / λ_max ≥ ``rtol``), k = 1, 2, …
    in descending order, and returns α (positive for a decaying spectrum: λ_k ∝ k^{−α} gives exactly α)
    and the R² ≤ 1 of the fit, from the (d,) eigenvalues λ_k of C in any order. Fewer than two live modes
    give (nan, nan).
    """
    lam = _float64(eigenvalues).sort(descending=True).values
    alive = _alive(lam, rtol)
    k = torch.arange(1, lam.numel() + 1, dtype=torch.float64, device=lam.device)
    slope, r2 = _line_fit(k[alive].log(), lam[alive].log())
    return -slope, r2


def alignment(correlation: Tensor, predictor: Tensor) -> Tensor:
    """Eigenspace alignment a_j = u_jᵀ W_p u_j / ‖W_p u_j‖ for the eigenvectors u_j of F (Fig. 2, column 3).

    a_j is the cosine between u_j and W_p u_j: 1 when u_j is an eigenvector of W_p with a positive
    eigenvalue, −1 with a negative one, 0 when W_p u_j = 0 or is orthogonal to u_j. Ordered like the
    descending eigenvalues s_j of F. Where F has repeated eigenvalues its eigenvectors are only defined up
    to a rotation inside the eigenspace, and so is a_j. ``correlation`` is the (d, d) F of the current
    embeddings (not a running estimate that W_p was built from); returns (d,) float64 in [−1, 1].
    """
    f = _check_square(correlation, "correlation")
    w = _check_square(predictor, "predictor").to(f.device)
    if f.shape != w.shape:
        raise ValueError(
            f"correlation {tuple(f.shape)} and predictor {tuple(w.shape)} must have the same shape"
        )
    return _alignment_from_vectors(_eigh_descending(f)[1], w)


def _alignment_from_vectors(vectors: Tensor, predictor: Tensor) -> Tensor:
    image = predictor @ vectors
    numerator = (vectors * image).sum(dim=0)
    norms = image.norm(dim=0)
    return torch.where(norms > 0, numerator / norms.clamp_min(torch.finfo(torch.float64).tiny), 0.0)


def commutator(correlation: Tensor, predictor: Tensor) -> float:
    """Normalised commutator ‖F W_p − W_p F‖_F / (‖F‖_F ‖W_p‖_F) (Theorem 3: → 0 as W_p aligns with F).

    In [0, 2] for (d, d) F and W_p: 0 when they commute (share eigenvectors) or either is zero.
    """
    f = _check_square(correlation, "correlation")
    w = _check_square(predictor, "predictor").to(f.device)
    denominator = torch.linalg.matrix_norm(f) * torch.linalg.matrix_norm(w)
    if denominator <= 0:
        return 0.0
    return float(torch.linalg.matrix_norm(f @ w - w @ f) / denominator)


def asymmetry(predictor: Tensor) -> float:
    """Asymmetry ‖W_p − W_pᵀ‖_F / ‖W_p‖_F of the (d, d) predictor (Fig. 2, column 4), in [0, 2].

    0 for a symmetric W_p, 2 for a skew-symmetric one, 0 for W_p = 0.
    """
    w = _check_square(predictor, "predictor")
    norm = torch.linalg.matrix_norm(w)
    if norm <= 0:
        return 0.0
    return float(torch.linalg.matrix_norm(w - w.T) / norm)


def eigenvalue_slope(correlation: Tensor, predictor: Tensor, rtol: float = DEAD_RTOL) -> tuple[float, float]:
    """Slope of log p_j against log s_j, with the fit's R² (theory: ½ at convergence, §3.3 and Eqn. 18).

    s_j are the eigenvalues of F and p_j = u_jᵀ W_p u_j the predictor's gain along the same eigenvector
    (its eigenvalue once aligned). The fit uses the modes with s_j / s_max ≥ ``rtol`` and p_j > 0. A
    DirectSet(α) predictor p_j ∝ s_j^α gives slope α; DirectPred's +ε flattens the small-s_j end. F and W_p
    are (d, d); fewer than two usable modes give (nan, nan).
    """
    f = _check_square(correlation, "correlation")
    w = _check_square(predictor, "predictor").to(f.device)
    values, vectors = _eigh_descending(f)
    return _slope_from_eigenpairs(values, vectors, w, rtol)


def _slope_from_eigenpairs(
    values: Tensor, vectors: Tensor, predictor: Tensor, rtol: float
) -> tuple[float, float]:
    gains = (vectors * (predictor @ vectors)).sum(dim=0)
    usable = _alive(values, rtol) & (gains > 0)
    return _line_fit(values[usable].log(), gains[usable].log())


@dataclass
class SpectralSnapshot:
    """All spectral metrics of one buffer of embeddings (and of the predictor, when there is one).

    Attributes:
        scalars: metric name → value. Always: ``zstd``, ``rankme``, ``participation_ratio``, ``alpha_req``,
            ``alpha_req_r2``, ``condition_number``, ``dead_modes``, ``num_samples``, ``dim``. With groups,
            ``lidar``. With a predictor also: ``alignment_mean``, ``commutator``, ``asymmetry``,
            ``eigenvalue_slope``, ``eigenvalue_slope_r2``, ``predictor_negative``.
        correlation_eigenvalues: (d,) s_j of F, descending.
        predictor_eigenvalues: (d,) eigenvalues of sym(W_p), descending, or None.
        alignment: (d,) a_j in the order of s_j, or None.
    """

    scalars: dict[str, float]
    correlation_eigenvalues: Tensor
    predictor_eigenvalues: Tensor | None = None
    alignment: Tensor | None = None


def spectral_snapshot(
    z: Tensor, predictor: Tensor | None = None, rtol: float = DEAD_RTOL, groups: Tensor | None = None
) -> SpectralSnapshot:
    """Compute every metric of this module from one (N, d) buffer, sharing the eigendecompositions.

    Costs one Gram product (N d²) of the centred embeddings and, in float64, an ``eigvalsh`` of C and of F
    (F = (N−1)/N·C + μμᵀ, from the same product); with a predictor, F needs ``eigh`` (its eigenvectors) and
    sym(W_p) one more ``eigvalsh``; with ``groups``, LiDAR adds one more Gram product, a Cholesky factor and
    an ``eigvalsh``. The covariance metrics (participation ratio, α-ReQ, condition number, dead modes) use
    the eigenvalues of C, centred before the product so that a collapsed embedding reads as one (eigenvalues
    below :data:`COVARIANCE_RTOL` · s_1 count as 0); RankMe the singular values σ_k = √(N s_j) of Z; the
    predictor metrics use F of this buffer.

    Args:
        z: (N, d) projector outputs, N ≥ 2.
        predictor: (d, d) W_p, or None to skip the predictor metrics.
        rtol: dead-mode threshold, also used to select the modes of the two log-log fits.
        groups: (N,) clean-sample id of each row (views of one image share it), or None to skip LiDAR.
    """
    z = _check_embeddings(z, min_rows=2)
    n, d = z.shape
    mean = z.mean(dim=0)
    centred = z - mean
    scatter = centred.T @ centred
    f = scatter / n + torch.outer(mean, mean)
    if predictor is None:
        s, u = _eigvalsh_descending(f), None  # eigenvectors are only needed for the predictor metrics
    else:
        s, u = _eigh_descending(f)
    lam = _eigvalsh_descending(scatter / (n - 1))
    lam = torch.where(lam > COVARIANCE_RTOL * s[0].clamp_min(0), lam, 0.0)
    alpha, alpha_r2 = alpha_req(lam, rtol)
    scalars = {
        "zstd": zstd(z),
        "rankme": _effective_rank((n * s).clamp_min(0).sqrt()),
        "participation_ratio": participation_ratio(lam),
        "alpha_req": alpha,
        "alpha_req_r2": alpha_r2,
        "condition_number": condition_number(lam),
        "dead_modes": float(dead_modes(lam, rtol)),
        "num_samples": float(n),
        "dim": float(d),
    }
    if groups is not None:
        scalars["lidar"] = lidar(z, groups)
    if predictor is None:
        return SpectralSnapshot(scalars, s)
    w = _check_square(predictor, "predictor").to(z.device)
    if w.shape != (d, d):
        raise ValueError(f"predictor must be ({d}, {d}) to match the embeddings, got {tuple(w.shape)}")
    align = _alignment_from_vectors(u, w)
    predictor_eigenvalues = _eigvalsh_descending(w)
    slope, slope_r2 = _slope_from_eigenpairs(s, u, w, rtol)
    scalars.update(
        alignment_mean=float(align.mean()),
        commutator=commutator(f, w),
        asymmetry=asymmetry(w),
        eigenvalue_slope=slope,
        eigenvalue_slope_r2=slope_r2,
        predictor_negative=float((predictor_eigenvalues < 0).sum()),
    )
    return SpectralSnapshot(scalars, s, predictor_eigenvalues, align)
