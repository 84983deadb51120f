"""Framework-free building blocks (torch only): running statistics, analytic and linear predictors and
their settings (:mod:`solo_directpred.core.schema`)."""

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
from solo_directpred.core.schema import AnalyticSettings, ConfigError, LinearSettings

__all__ = [
    "SOLVERS",
    "AnalyticPredictor",
    "AnalyticSettings",
    "ConfigError",
    "Eigh",
    "IdentityPredictor",
    "LinearPredictor",
    "LinearSettings",
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
