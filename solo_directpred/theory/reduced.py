"""Matrix dynamics of ``F`` and ``W_p`` under assumptions A1-A2 (the paper's Theorem 3, App. B, Figs. 8-9).

With a proportional target ``W_a = τ W`` (A1) and isotropic data ``X = I``, ``X' = σ² I`` (A2),
Lemma 1 closes on ``F = W Wᵀ`` (the predictor input's correlation) and ``W_p``. With a symmetric
``W_p`` (A3), ``{A, B} = AB + BA``::

    dW_p/dt = −(α_p/2)(1+σ²) {W_p, F} + α_p τ F − η W_p
    dF/dt   = −(1+σ²) {W_p², F} + τ {W_p, F} − 2η F

and Theorem 3: ``d[F, W_p]/dt = −[F, W_p] K − K [F, W_p]`` with
``K = (1+σ²)(α_p F/2 + W_p² − τ W_p/(1+σ²)) + 3η/2 I``, so ``‖[F, W_p]‖_F ≤ e^{−2λ₀t}‖[F(0), W_p(0)]‖_F``
when ``λ_min(K(t)) ≥ λ₀ > 0`` for all t.

Without the symmetry assumption, Theorem 1 with ``C = 0`` gives ``F = W_pᵀ W_p / α_p`` and the predictor
alone follows (the paper's App. Eqn. 62, used for Fig. 8)::

    dW_p/dt = (τ I − (1+σ²) W_p) W_pᵀ W_p − η W_p
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solo_directpred.theory.integrate import integrate


def anticommutator(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``{A, B} = AB + BA``."""
    return A @ B + B @ A


def commutator(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``[A, B] = AB − BA``."""
    return A @ B - B @ A


def frobenius(M: np.ndarray) -> np.ndarray:
    """Frobenius norm over the last two axes."""
    return np.sqrt((np.asarray(M) ** 2).sum(axis=(-2, -1)))


@dataclass(frozen=True)
class ReducedDynamics:
    """Hyper-parameters of the reduced matrix dynamics (fixed ``τ``).

    Attributes:
        tau: EMA ratio ``τ`` of A1, in [0, 1] (1 = SimSiam).
        sigma2: augmentation variance ``σ²`` >= 0.
        alpha_p: relative predictor learning rate > 0.
        eta: weight decay >= 0.
    """

    tau: float = 1.0
    sigma2: float = 0.5
    alpha_p: float = 1.0
    eta: float = 0.0

    def __post_init__(self) -> None:
        if self.sigma2 < 0 or self.eta < 0:
            raise ValueError(f"sigma2={self.sigma2} and eta={self.eta} must be >= 0")
        if not self.alpha_p > 0:
            raise ValueError(f"alpha_p={self.alpha_p} must be > 0")

    def coupled_velocity(self, F: np.ndarray, Wp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(dF/dt, dW_p/dt)`` of the symmetric coupled system (§3.2); ``F``, ``W_p``: (n, n) symmetric."""
        lam = 1.0 + self.sigma2
        dWp = -0.5 * self.alpha_p * lam * anticommutator(Wp, F) + self.alpha_p * self.tau * F - self.eta * Wp
        dF = -lam * anticommutator(Wp @ Wp, F) + self.tau * anticommutator(Wp, F) - 2.0 * self.eta * F
        return dF, dWp

    def K(self, F: np.ndarray, Wp: np.ndarray) -> np.ndarray:
        """Theorem 3's ``K = (1+σ²)(α_p F/2 + W_p² − τ W_p/(1+σ²)) + 3η/2 I``, (n, n)."""
        lam = 1.0 + self.sigma2
        n = F.shape[-1]
        return lam * (0.5 * self.alpha_p * F + Wp @ Wp) - self.tau * Wp + 1.5 * self.eta * np.eye(n)

    def simulate_coupled(
        self, F0: np.ndarray, Wp0: np.ndarray, t_end: float, dt: float = 0.01, record_every: int = 1
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RK4-integrate the coupled system; returns ``t`` (T,), ``F`` (T, n, n), ``W_p`` (T, n, n)."""
        n = F0.shape[0]

        def rhs(y: np.ndarray) -> np.ndarray:
            F, Wp = y[: n * n].reshape(n, n), y[n * n :].reshape(n, n)
            dF, dWp = self.coupled_velocity(F, Wp)
            return np.concatenate([dF.ravel(), dWp.ravel()])

        y0 = np.concatenate([np.asarray(F0, float).ravel(), np.asarray(Wp0, float).ravel()])
        t, ys = integrate(rhs, y0, dt, int(round(t_end / dt)), "rk4", record_every)
        return t, ys[:, : n * n].reshape(-1, n, n), ys[:, n * n :].reshape(-1, n, n)

    def predictor_velocity(self, Wp: np.ndarray, symmetric: bool = False) -> np.ndarray:
        """App. Eqn. 62: ``dW_p/dt = (τ I − (1+σ²) W_p) W_pᵀ W_p − η W_p`` (``F = W_pᵀW_p/α_p``).

        ``W_p``: (..., n, n), leading axes batch independent runs. With ``symmetric=True`` the flow is
        symmetrised, ``(V + Vᵀ)/2``.
        """
        n = Wp.shape[-1]
        Wt = np.swapaxes(Wp, -1, -2)
        v = (self.tau * np.eye(n) - (1.0 + self.sigma2) * Wp) @ Wt @ Wp - self.eta * Wp
        return 0.5 * (v + np.swapaxes(v, -1, -2)) if symmetric else v

    def simulate_predictor(
        self, Wp0: np.ndarray, t_end: float, dt: float = 0.01, record_every: int = 1, symmetric: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """RK4-integrate App. Eqn. 62 from ``W_p0``; returns ``t`` (T,) and ``W_p`` (T, ..., n, n).

        Leading axes of ``W_p0`` batch independent runs.
        """

        def rhs(y: np.ndarray) -> np.ndarray:
            return self.predictor_velocity(y, symmetric)

        return integrate(rhs, np.asarray(Wp0, float), dt, int(round(t_end / dt)), "rk4", record_every)


def symmetric_part(M: np.ndarray) -> np.ndarray:
    """``A = (M + Mᵀ)/2`` over the last two axes."""
    return 0.5 * (M + np.swapaxes(M, -1, -2))


def skew_part(M: np.ndarray) -> np.ndarray:
    """``B = (M − Mᵀ)/2`` over the last two axes."""
    return 0.5 * (M - np.swapaxes(M, -1, -2))
