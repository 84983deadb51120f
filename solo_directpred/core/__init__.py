"""Framework-free building blocks (torch only): running statistics, analytic and linear predictors."""

from solo_directpred.core.correlation import RunningCorrelation
from solo_directpred.core.linalg import (
    Eigh,
    safe_eigh,
    sqrt_newton_schulz,
    symmetrize,
    top_eigenpair,
    top_eigenvalue,
)
from solo_directpred.core.predictors import (
    SOLVERS,
    AnalyticPredictor,
    IdentityPredictor,
    LinearPredictor,
    analytic_weight,
    directcopy,
    directpred,
    eigenvalue_transform,
)

__all__ = [
    "SOLVERS",
    "AnalyticPredictor",
    "Eigh",
    "IdentityPredictor",
    "LinearPredictor",
    "RunningCorrelation",
    "analytic_weight",
    "directcopy",
    "directpred",
    "eigenvalue_transform",
    "safe_eigh",
    "sqrt_newton_schulz",
    "symmetrize",
    "top_eigenpair",
    "top_eigenvalue",
]
