"""Decoupled per-mode dynamics of the predictor and online eigenvalues (the paper's Eqns. 11-17).

Under assumptions A1-A3 (proportional EMA, isotropic data ``X = I``, ``X' = σ² I``, symmetric and
aligned predictor) the eigenvalue ``p_j`` of ``W_p``, the eigenvalue ``s_j`` of ``F = W Wᵀ`` and the
EMA ratio ``τ_j`` (``W_a = τ W`` on that mode) follow::

    dp/dt = α_p s (τ − (1+σ²) p) − η p                      (11)
    ds/dt = 2 p s (τ − (1+σ²) p) − 2 η s                     (12)
    dτ/dt = β (1 − τ) − τ (ds/dt) / (2 s)                     (13, BYOL; SimSiam: τ ≡ 1)

Every mode is independent: the arrays below hold one entry per mode and broadcast.
Eqn. 13 is evaluated as ``β(1 − τ) − τ (p (τ − (1+σ²)p) − η)``, which needs no division by ``s``.

Closed forms pinned by the tests (Eqns. 14-16; docs/theory.md), with ``c_j`` in its corrected sign:

* ``s(t) − p(t)²/α_p = c e^{−2ηt}`` with ``c = s(0) − p(0)²/α_p`` (Eqn. 14);
* ``p*± = [τ ± √(τ² − 4η(1+σ²))] / (2(1+σ²))``, real only for ``η ≤ τ²/(4(1+σ²))``;
* with ``η = 0``: ``s(∞) = s(0) + (p(∞)² − p(0)²)/α_p`` and ``p(∞) = τ/(1+σ²)``.

Example:
    >>> modes = ModeDynamics(sigma2=0.5, alpha_p=1.0, eta=0.01, target="fixed")
    >>> traj = modes.simulate(p0=[0.05, 0.008], s0=[0.0025, 6.4e-5], tau0=1.0, t_end=1000.0, dt=0.01)
    >>> [round(float(p), 4) for p in traj.p[-1]]
    [0.6565, 0.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solo_directpred.theory.integrate import integrate

#: How ``τ`` evolves: Eqn. 13 (``"byol"``), ``τ ≡ 1`` (``"simsiam"``) or constant at ``τ(0)`` (``"fixed"``).
TAU_DYNAMICS = ("byol", "simsiam", "fixed")


def fixed_points(tau: float, sigma2: float, eta: float) -> tuple[float, float] | None:
    """Non-trivial fixed points ``(p*−, p*+)`` of Eqn. 16, or None when ``η > τ²/(4(1+σ²))``.

    ``p*± = [τ ± √(τ² − 4η(1+σ²))] / (2(1+σ²))``; ``p*−`` is unstable (the edge of the collapse
    basin ``p < p*−``), ``p*+`` stable. With ``η = 0`` this gives ``(0, τ/(1+σ²))``.
    """
    disc = tau * tau - 4.0 * eta * (1.0 + sigma2)
    if disc < 0:
        return None
    root = np.sqrt(disc)
    return (tau - root) / (2.0 * (1.0 + sigma2)), (tau + root) / (2.0 * (1.0 + sigma2))


def collapse_weight_decay(tau: float, sigma2: float) -> float:
    """``τ²/(4(1+σ²))``: above this weight decay only the collapsed fixed point ``p = 0`` remains."""
    return tau * tau / (4.0 * (1.0 + sigma2))


def parabola_constant(p: np.ndarray, s: np.ndarray, alpha_p: float = 1.0) -> np.ndarray:
    """``c = s − p²/α_p``: zero on the invariant parabola, decaying as ``e^{−2ηt}`` (Eqn. 14).

    (The paper prints ``c_j = α_p⁻¹p_j²(0) − s_j(0)``, a sign typo; this is the consistent form.)
    """
    return np.asarray(s) - np.asarray(p) ** 2 / alpha_p


def reduced_predictor_rate(p: np.ndarray, tau: float, sigma2: float, eta: float) -> np.ndarray:
    """Eqn. 16, ``dp/dt = p² (τ − (1+σ²) p) − η p`` on the invariant parabola ``s = p²/α_p``.

    Equals ``−(1+σ²) p (p − p*−)(p − p*+)``.
    """
    p = np.asarray(p, dtype=np.float64)
    return p * p * (tau - (1.0 + sigma2) * p) - eta * p


def k_eigenvalue(
    p: np.ndarray, s: np.ndarray, tau: np.ndarray, sigma2: float, alpha_p: float, eta: float
) -> np.ndarray:
    """Per-mode eigenvalue of Theorem 3's ``K``: ``(1+σ²)(α_p s/2 + p²) − τ p + 3η/2``.

    Alignment of ``W_p`` with ``F`` is stable while it is positive for every mode (Eqn. 17:
    ``Δ < ½[α_p (1+σ²) s + η]`` with ``Δ = p (τ − (1+σ²) p) − η``).
    """
    p, s, tau = (np.asarray(a, dtype=np.float64) for a in (p, s, tau))
    return (1.0 + sigma2) * (0.5 * alpha_p * s + p * p) - tau * p + 1.5 * eta


def ema_on_parabola(t: np.ndarray, p: np.ndarray, beta: float) -> np.ndarray:
    """Eqn. 15, ``τ(t) = p(t)⁻¹ β e^{−βt} ∫₀ᵗ p(t') e^{βt'} dt'`` (``τ(0) = 0``), by the trapezoid rule.

    Valid on the invariant parabola (``c = 0``), where ``d(τp)/dt = β(1 − τ)p``. ``t``: (T,) times,
    ``p``: (T, ...) trajectory of ``p``; returns ``τ`` of the shape of ``p``.
    """
    t = np.asarray(t, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    weight = np.exp(beta * (t - t[-1])).reshape((-1,) + (1,) * (p.ndim - 1))
    integrand = p * weight
    dt = np.diff(t).reshape((-1,) + (1,) * (p.ndim - 1))
    integral = np.concatenate(
        [np.zeros_like(p[:1]), np.cumsum(0.5 * dt * (integrand[1:] + integrand[:-1]), axis=0)]
    )
    scale = beta * np.exp(-beta * (t - t[-1])).reshape(weight.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p != 0, scale * integral / p, 0.0)


@dataclass(frozen=True)
class ModeTrajectory:
    """Recorded per-mode quantities: ``t`` (T,), ``p``, ``s``, ``tau`` (T, modes)."""

    t: np.ndarray
    p: np.ndarray
    s: np.ndarray
    tau: np.ndarray


@dataclass(frozen=True)
class ModeDynamics:
    """Hyper-parameters of Eqns. 11-13.

    Attributes:
        sigma2: augmentation variance ``σ²`` >= 0 (``X' = σ² I``).
        alpha_p: relative predictor learning rate ``α_p`` > 0.
        eta: weight decay ``η`` >= 0.
        beta: relative EMA rate ``β`` >= 0 (used when ``target="byol"``).
        target: ``"byol"`` (Eqn. 13), ``"simsiam"`` (``τ ≡ 1``) or ``"fixed"`` (``τ`` stays at ``τ(0)``).
    """

    sigma2: float = 0.5
    alpha_p: float = 1.0
    eta: float = 0.0
    beta: float = 0.4
    target: str = "byol"

    def __post_init__(self) -> None:
        if self.target not in TAU_DYNAMICS:
            raise ValueError(f"target={self.target!r} is not supported; use one of {TAU_DYNAMICS}")
        if self.sigma2 < 0 or self.eta < 0 or self.beta < 0:
            raise ValueError(f"sigma2={self.sigma2}, eta={self.eta} and beta={self.beta} must all be >= 0")
        if not self.alpha_p > 0:
            raise ValueError(f"alpha_p={self.alpha_p} must be > 0")

    def velocity(
        self, p: np.ndarray, s: np.ndarray, tau: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(dp/dt, ds/dt, dτ/dt)`` of Eqns. 11-13 at one state (arrays broadcast per mode)."""
        return self._rates(*(np.asarray(a, dtype=np.float64) for a in (p, s, tau)))

    def _rates(
        self, p: np.ndarray, s: np.ndarray, tau: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        gap = tau - (1.0 + self.sigma2) * p
        growth = p * gap - self.eta  # ds/dt / (2s), the term Eqn. 13 subtracts
        dp = self.alpha_p * s * gap - self.eta * p
        ds = 2.0 * s * growth
        dtau = self.beta * (1.0 - tau) - tau * growth if self.target == "byol" else np.zeros_like(tau)
        return dp, ds, dtau

    def simulate(
        self,
        p0: np.ndarray,
        s0: np.ndarray,
        tau0: np.ndarray | float = 0.0,
        t_end: float = 100.0,
        dt: float = 0.01,
        method: str = "euler",
        record_every: int = 1,
    ) -> ModeTrajectory:
        """Integrate Eqns. 11-13 for every mode from ``(p0, s0, τ0)`` up to ``t_end``.

        The default forward Euler with ``dt = 0.01`` is the paper's recipe (``dt`` = SGD learning rate).
        For ``target="simsiam"`` ``τ0`` is ignored (``τ ≡ 1``).
        """
        p0, s0, tau0 = np.broadcast_arrays(
            np.atleast_1d(np.asarray(p0, dtype=np.float64)),
            np.atleast_1d(np.asarray(s0, dtype=np.float64)),
            np.atleast_1d(np.asarray(tau0, dtype=np.float64)),
        )
        if self.target == "simsiam":
            tau0 = np.ones_like(tau0)
        m = p0.shape[0]

        def rhs(y: np.ndarray) -> np.ndarray:
            return np.concatenate(self._rates(y[:m], y[m : 2 * m], y[2 * m :]))

        steps = int(round(t_end / dt))
        t, ys = integrate(rhs, np.concatenate([p0, s0, tau0]), dt, steps, method, record_every)
        return ModeTrajectory(t, ys[:, :m], ys[:, m : 2 * m], ys[:, 2 * m :])

    def k_eigenvalue(self, p: np.ndarray, s: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """Theorem 3's ``K`` eigenvalue per mode at these hyper-parameters (see :func:`k_eigenvalue`)."""
        return k_eigenvalue(p, s, tau, self.sigma2, self.alpha_p, self.eta)
