"""Per-eigenmode learning rates of the prediction losses under a closed-form predictor (docs/losses.md).

Halvagal, Laborieux & Zenke (NeurIPS 2023) read non-contrastive learning in the eigenbasis of a
closed-form linear predictor ``W_p = U diag(p_j) Uᵀ``: its eigenvalues act as per-mode learning-rate
multipliers, and IsoLoss removes them. This module states that in the linear model of Lemma 1 (Tian,
Chen & Ganguli 2021) under assumption A2 (data ``X = I``, augmentation ``X' = σ² I``), with the online
weight ``W`` aligned to ``W_p``'s eigenbasis, the target ``W_a = τ W`` on every mode, and the predictor
*set* from ``F = W X Wᵀ = U diag(s_j) Uᵀ`` as ``p_j = s_j^α + ε`` (no max-normalisation, so that fixed
points are absolute; α = ½ is DirectPred).

Under the expected-gradient flow ``dW/dt = −½ ∇_W E[L]`` (the ½ makes the Euclidean loss Lemma 1's
``J``), the Euclidean losses have closed forms::

    euclidean:           ds_j/dt = 2 p_j s_j (τ − (1+σ²) p_j)     (Eqn. 12 with η = 0, p_j set, not trained)
    isoloss_euclidean:   ds_j/dt = 2     s_j (τ − (1+σ²) p_j)

The fixed point ``p_j = τ/(1+σ²)`` is the same; the effective learning rate of mode j,
``(ds_j/dt) / (2 s_j (τ − (1+σ²) p_j))``, is ``p_j`` under the Euclidean loss and 1 under IsoLoss.
A weak mode (small ``p_j``) therefore grows as a power law under the Euclidean loss
(``ds/dt ≈ 2τ s^{1+α}``) but exponentially, at the rate ``2τ`` of every other mode, under IsoLoss.

:class:`LossModes` holds the model's constants (σ², τ, α, ε) and computes all of this. The cosine losses
have no closed form; :meth:`LossModes.sampled_velocity` estimates ``ds_j/dt`` for every
loss from samples, by autograd through the package's loss functions (:mod:`solo_directpred.core.losses`).
Since ``∇_z L_cosine = W_p ∇_z L_isoloss``, the cosine loss's ``ds_j/dt`` is ``p_j`` times IsoLoss's, mode
by mode: the same multiplier.

Example:
    >>> s = np.array([0.25, 0.01, 1e-4])            # p_j = 0.5, 0.1, 0.01 with α = ½, ε = 0
    >>> modes = LossModes(sigma2=0.5)
    >>> euclid, iso = modes.velocity(s, "euclidean"), modes.velocity(s, "isoloss_euclidean")
    >>> [round(float(r), 4) for r in euclid / iso]
    [0.5, 0.1, 0.01]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solo_directpred.theory.integrate import integrate

#: Losses with a closed-form mode velocity (:meth:`LossModes.velocity`).
EUCLIDEAN_LOSSES = ("euclidean", "isoloss_euclidean")


def exact_views(num_samples: int, dim: int, sigma2: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two (N, d) views whose sample moments are exactly the model's: ``x1ᵀx1/N = x2ᵀx2/N = (1+σ²)I``,
    ``x1ᵀx2/N = I``. Averages of quadratic losses over them equal the expectations (no sampling error).
    """
    if num_samples <= 2 * dim:
        raise ValueError(f"num_samples={num_samples} must exceed 2*dim={2 * dim} for exact moments")
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((num_samples, 2 * dim))
    g -= g.mean(axis=0)
    q, _ = np.linalg.qr(g)  # orthonormal columns: qᵀq = I
    white = q * np.sqrt(num_samples)
    joint = np.array([[1.0 + sigma2, 1.0], [1.0, 1.0 + sigma2]])
    root = np.kron(np.linalg.cholesky(joint), np.eye(dim))  # lower-triangular, blocks of the two views
    views = white @ root.T
    return views[:, :dim], views[:, dim:]


@dataclass(frozen=True)
class LossModes:
    """The aligned linear model of the module doc: augmentation ``σ²``, target ``W_a = τ W``, and the
    predictor set as ``p_j = max(s_j, 0)^α + ε`` from the eigenvalues ``s_j`` of ``F``."""

    sigma2: float
    tau: float = 1.0
    alpha: float = 0.5
    eps: float = 0.0

    def predictor(self, s: np.ndarray) -> np.ndarray:
        """``p_j = max(s_j, 0)^α + ε``: the closed-form predictor on the eigenvalues ``s_j`` of ``F``."""
        return np.clip(np.asarray(s, dtype=np.float64), 0.0, None) ** self.alpha + self.eps

    def fixed_point(self) -> tuple[float, float]:
        """``(p*, s*)``, ``p* = τ/(1+σ²)`` and ``s* = (p* − ε)^{1/α}`` (requires ``p* > ε``), every loss."""
        p_star = self.tau / (1.0 + self.sigma2)
        if not p_star > self.eps:
            raise ValueError(
                f"no non-trivial fixed point: p* = tau/(1+sigma2) = {p_star:g} <= eps = {self.eps:g}"
            )
        return p_star, (p_star - self.eps) ** (1.0 / self.alpha)

    def _error(self, s: np.ndarray) -> np.ndarray:
        """``2 s_j (τ − (1+σ²) p_j)``: the plain gradient on mode j's error."""
        return 2.0 * s * (self.tau - (1.0 + self.sigma2) * self.predictor(s))

    def velocity(self, s: np.ndarray, loss: str) -> np.ndarray:
        """``ds_j/dt`` of every mode under ``euclidean`` or ``isoloss_euclidean`` (the module doc's forms)."""
        if loss not in EUCLIDEAN_LOSSES:
            raise ValueError(f"loss must be one of {EUCLIDEAN_LOSSES} (closed form), got {loss!r}")
        s = np.asarray(s, dtype=np.float64)
        return (self.predictor(s) if loss == "euclidean" else 1.0) * self._error(s)

    def effective_learning_rate(self, s: np.ndarray, velocity: np.ndarray) -> np.ndarray:
        """``(ds_j/dt) / (2 s_j (τ − (1+σ²) p_j))``: mode j's rate relative to the plain gradient on its
        error. Undefined (a division by zero) for a mode at its fixed point ``p_j = τ/(1+σ²)``.
        """
        return np.asarray(velocity) / self._error(np.asarray(s, dtype=np.float64))

    def sampled_velocity(
        self, s: np.ndarray, loss: str, num_samples: int = 20000, seed: int = 0
    ) -> np.ndarray:
        """``ds_j/dt`` under any loss of :data:`~solo_directpred.core.losses.LOSSES`, by autograd on samples.

        ``W = diag(√s_j)``, ``W_p = diag(p_j)`` held constant, ``W_a = τ W``; ``z = W x1``, the prediction
        ``W_p z`` and the target ``W_a x2`` for the views of :func:`exact_views`. Then
        ``dW/dt = −½ ∇_W mean(L)`` and ``ds_j/dt = 2 (dW/dt Wᵀ)_jj``. Exact for the Euclidean losses, a
        Monte-Carlo estimate for the cosine ones.
        """
        import torch

        from solo_directpred.core.losses import prediction_loss

        s = np.asarray(s, dtype=np.float64)
        x1, x2 = (torch.from_numpy(x) for x in exact_views(num_samples, len(s), self.sigma2, seed))
        W = torch.diag(torch.from_numpy(np.sqrt(s))).requires_grad_()
        Wp = torch.diag(torch.from_numpy(self.predictor(s)))
        z = x1 @ W.T
        target = (self.tau * x2 @ W.T).detach()
        (grad,) = torch.autograd.grad(prediction_loss(loss, z, z @ Wp, target), W)
        return 2.0 * torch.diagonal(-0.5 * grad @ W.T).detach().numpy()

    def convergence_times(
        self, s0: np.ndarray, loss: str, fraction: float = 0.5, t_end: float = 200.0, dt: float = 0.01
    ) -> np.ndarray:
        """Time for each mode to reach ``fraction`` of its fixed point ``s*``, integrating the closed form
        (RK4). Modes that have not arrived by ``t_end`` get ``inf``."""
        s_star = self.fixed_point()[1]
        steps = int(round(t_end / dt))
        y0 = np.asarray(s0, dtype=np.float64)
        t, ys = integrate(lambda y: self.velocity(y, loss), y0, dt, steps, "rk4")
        reached = ys >= fraction * s_star
        first = np.argmax(reached, axis=0)
        return np.where(reached.any(axis=0), t[first], np.inf)
