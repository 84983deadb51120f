"""The scalar (1-D) BYOL system of the paper's Appendix D (Eqns. 104-106, Fig. 10).

One input and one output unit: online weight ``w``, predictor ``w_p``, target ``w_a``; ``λ_s`` is the
variance of one view and ``λ_d`` the covariance of two views of the same sample::

    dw_p/dt = α_p (w_a λ_d − w_p w λ_s) w − η w_p
    dw/dt   = w_p (w_a λ_d − w_p w λ_s) − η w
    dw_a/dt = β (w − w_a)

(the paper's system has ``η = 0``; weight decay is added as in Lemma 1). Fixed points: ``w_a = w`` and
``w_p w = w_a λ_d / λ_s``, so the non-collapsed family has ``w_p = λ_d / λ_s``; the origin also is one.
With ``α_p = 1`` the plane ``w = w_p`` is invariant. Without a predictor (``w_p ≡ 1``) the only fixed
point is the origin and it attracts: collapse. With ``s = w²``, ``τ = w_a / w``, ``λ_s = 1 + σ²`` and
``λ_d = 1`` this is one mode of Eqns. 11-13.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solo_directpred.theory.integrate import integrate


@dataclass(frozen=True)
class ScalarBYOL:
    """Hyper-parameters of the scalar BYOL system (paper's Fig. 10: λ_s = 1, λ_d = 1/2, α_p = β = 1).

    Attributes:
        lambda_s: variance of one view ``λ_s`` > 0.
        lambda_d: covariance of the two views ``λ_d``.
        alpha_p: relative predictor learning rate > 0.
        beta: relative EMA rate >= 0.
        eta: weight decay >= 0.
        predictor: ``False`` fixes ``w_p ≡ 1`` (no predictor).
        fixed_target: ``True`` freezes ``w_a`` (the fast subsystem of App. D).
    """

    lambda_s: float = 1.0
    lambda_d: float = 0.5
    alpha_p: float = 1.0
    beta: float = 1.0
    eta: float = 0.0
    predictor: bool = True
    fixed_target: bool = False

    def __post_init__(self) -> None:
        if not self.lambda_s > 0:
            raise ValueError(f"lambda_s={self.lambda_s} must be > 0")
        if not self.alpha_p > 0:
            raise ValueError(f"alpha_p={self.alpha_p} must be > 0")
        if self.beta < 0 or self.eta < 0:
            raise ValueError(f"beta={self.beta} and eta={self.eta} must be >= 0")

    def velocity(
        self, w: np.ndarray, wp: np.ndarray, wa: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(dw/dt, dw_p/dt, dw_a/dt)``; arrays broadcast (e.g. a grid for a phase portrait)."""
        w, wp, wa = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (w, wp, wa)))
        if not self.predictor:
            wp = np.ones_like(wp)
        error = wa * self.lambda_d - wp * w * self.lambda_s
        dw = wp * error - self.eta * w
        dwp = self.alpha_p * error * w - self.eta * wp if self.predictor else np.zeros_like(w)
        dwa = np.zeros_like(w) if self.fixed_target else self.beta * (w - wa)
        return dw, dwp, dwa

    def simulate(
        self,
        w0: float,
        wp0: float,
        wa0: float,
        t_end: float,
        dt: float = 0.01,
        method: str = "rk4",
        record_every: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Integrate from ``(w0, w_p0, w_a0)``; returns ``t`` (T,) and states (T, 3) as ``(w, w_p, w_a)``."""
        wp0 = wp0 if self.predictor else 1.0

        def rhs(y: np.ndarray) -> np.ndarray:
            return np.array(self.velocity(y[0], y[1], y[2]))

        return integrate(
            rhs, np.array([w0, wp0, wa0], float), dt, int(round(t_end / dt)), method, record_every
        )

    @property
    def balanced_predictor(self) -> float:
        """``λ_d / λ_s``: the predictor value of the non-collapsed fixed points (App. D)."""
        return self.lambda_d / self.lambda_s
