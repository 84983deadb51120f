"""The paper's theory as executable code (Tian, Chen & Ganguli, ICML 2021, §3 and App. A-D).

* :mod:`~solo_directpred.theory.linear_model`: the two-layer linear BYOL/SimSiam of Lemma 1, as the
  expected-gradient ODE and as SGD on sampled data and views.
* :mod:`~solo_directpred.theory.modes`: the decoupled per-mode dynamics of ``p_j``, ``s_j``, ``τ_j``
  (Eqns. 11-17) and their closed forms.
* :mod:`~solo_directpred.theory.reduced`: the matrix dynamics of ``F`` and ``W_p`` (Theorem 3, Figs. 8-9).
* :mod:`~solo_directpred.theory.scalar`: the scalar BYOL system of App. D (Fig. 10).
* :mod:`~solo_directpred.theory.nonlinear`: a small nonlinear BYOL (cosine loss, BN+ReLU projector,
  SGD with momentum) in which Table 3's collapse of a symmetric ``W_p`` without EMA appears.
* :mod:`~solo_directpred.theory.loss_modes`: the per-mode learning rates of the cosine, Euclidean and
  IsoLoss losses under a closed-form predictor (Halvagal, Laborieux & Zenke, NeurIPS 2023).
* :mod:`~solo_directpred.theory.checks` and :mod:`~solo_directpred.theory.figures`: the numerical checks
  and the figures behind ``solo-directpred theory check`` / ``theory figures``.

Only numpy (and torch for the SGD simulator's autograd) is needed; matplotlib is imported by the
figure code alone.
"""

from solo_directpred.theory.linear_model import LinearModel, LinearState, Trajectory, init_state
from solo_directpred.theory.modes import ModeDynamics, ModeTrajectory, collapse_weight_decay, fixed_points
from solo_directpred.theory.reduced import ReducedDynamics
from solo_directpred.theory.scalar import ScalarBYOL

__all__ = [
    "LinearModel",
    "LinearState",
    "ModeDynamics",
    "ModeTrajectory",
    "ReducedDynamics",
    "ScalarBYOL",
    "Trajectory",
    "collapse_weight_decay",
    "fixed_points",
    "init_state",
]
