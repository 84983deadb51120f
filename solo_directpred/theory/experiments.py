"""Set-ups shared by the theory checks and the figures (fixed seeds and paper parameters).

Each function builds one experiment of docs/theory.md so that ``theory check`` and
``theory figures`` measure and draw the same runs.
"""

from __future__ import annotations

import numpy as np

from solo_directpred.theory.linear_model import LinearModel, Trajectory, correlation, init_state
from solo_directpred.theory.modes import ModeDynamics, ModeTrajectory

#: Augmentation variance used where the paper gives none (the value of its numerical sanity check, §7).
SIGMA2 = 0.5


def commutator_start(
    n: int = 8, seed: int = 0, f_scale: float = 1e-4, p_scale: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """Non-commuting start ``(F0, W_p0)`` for the alignment check and Fig. 9 (small F, symmetric W_p)."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n)) / np.sqrt(n)
    B = rng.standard_normal((n, n)) / np.sqrt(n)
    return B @ B.T * f_scale, 0.5 * (A + A.T) * p_scale


def symmetric_predictor_run(
    ema: bool, symmetric: bool = True, seed: int = 0, steps: int = 1200
) -> tuple[LinearModel, Trajectory]:
    """SGD run of the linear model used for the Table 3 comparison; returns ``(model, trajectory)``.

    Isotropic data (n1 = n2 = 8, σ² = :data:`SIGMA2`), η = 0.01, lr = 0.01, batch 64; with EMA β = 0.4
    (``γ_a = 0.996``) and ``W_a(0) = 0``, without EMA the SimSiam target ``W_a = W``.
    """
    model = LinearModel.isotropic(
        8,
        SIGMA2,
        alpha_p=1.0,
        eta=0.01,
        beta=0.4,
        target="byol" if ema else "simsiam",
        symmetric_predictor=symmetric,
    )
    state = init_state(8, 8, seed=seed, scale=0.1, predictor_scale=0.5, symmetric_predictor=symmetric)
    return model, model.sgd(state, steps, lr=0.01, batch_size=64, seed=seed, record_every=20)


def empirical_k_min(model: LinearModel, traj: Trajectory) -> np.ndarray:
    """``λ_min K(t)`` of Theorem 3 along a full-model trajectory (isotropic data), shape (T,).

    ``τ`` is estimated as ``⟨W_a, W⟩/‖W‖²`` (the best fit of A1, ``W_a ≈ τ W``); ``σ²`` is read
    from ``X'``'s first diagonal entry.
    """
    F = correlation(traj.W, model.data_cov)
    tau = (traj.W * traj.Wa).sum(axis=(1, 2)) / (traj.W**2).sum(axis=(1, 2))
    lam = 1.0 + float(model.aug_cov[0, 0])
    eye = np.eye(F.shape[-1])
    K = (
        lam * (0.5 * model.alpha_p * F + traj.Wp @ traj.Wp)
        - tau[:, None, None] * traj.Wp
        + 1.5 * model.eta * eye
    )
    return np.linalg.eigvalsh(K)[:, 0]


FIG5_START = (0.02, 0.02, 0.0)
FIG5_ETAS = (0.01, 0.02, 0.04, 0.08)
FIG5_BETAS = (0.04, 0.1, 0.4, None)


def figure5_runs(t_end: float = 300.0) -> dict[tuple[str, float | None], tuple[ModeDynamics, ModeTrajectory]]:
    """The decoupled runs behind Fig. 5: ``{("eta"|"beta", value): (ModeDynamics, ModeTrajectory)}``.

    Forward Euler with ``dt = α = 0.01``, base ``β = 0.4`` and ``η = 0.04`` (Fig. 5); ``β = None``
    stands for SimSiam (``τ ≡ 1``).
    """
    p0, s0, tau0 = FIG5_START
    runs = {}
    for eta in FIG5_ETAS:
        modes = ModeDynamics(SIGMA2, 1.0, eta, 0.4, "byol")
        runs[("eta", eta)] = modes, modes.simulate(p0, s0, tau0, t_end, 0.01, "euler", 50)
    for beta in FIG5_BETAS:
        modes = ModeDynamics(
            SIGMA2, 1.0, 0.04, 0.4 if beta is None else beta, "simsiam" if beta is None else "byol"
        )
        runs[("beta", beta)] = modes, modes.simulate(p0, s0, tau0, t_end, 0.01, "euler", 50)
    return runs
