"""Spectral monitoring of non-contrastive SSL: the paper's Fig. 2 as a live instrument, and a collapse alarm.

* :mod:`~solo_directpred.spectral.metrics`: framework-free metric functions (torch only);
* :class:`~solo_directpred.spectral.callback.SpectralMonitor`: the Lightning callback, with
  ``selection_checkpoint`` (label-free checkpoint selection) and ``build_callbacks`` (both from a config
  section); imported lazily, so that the metrics work without Lightning;
* :mod:`~solo_directpred.spectral.alarm`: the collapse alarm's default thresholds, relative to d;
* :mod:`~solo_directpred.spectral.records` and :mod:`~solo_directpred.spectral.plots`: the run's spectral
  log and its panels (``solo-directpred spectral plot RUN_DIR``).
"""

from __future__ import annotations

from typing import Any

from solo_directpred.spectral.metrics import (
    SpectralSnapshot,
    alignment,
    alpha_req,
    asymmetry,
    commutator,
    condition_number,
    correlation,
    covariance,
    dead_modes,
    eigenvalue_slope,
    eigenvalues,
    lidar,
    participation_ratio,
    rankme,
    spectral_snapshot,
    zstd,
)

_LAZY = ("CollapseWarning", "SpectralMonitor", "build_callbacks", "selection_checkpoint")

__all__ = [
    *_LAZY,
    "SpectralSnapshot",
    "alignment",
    "alpha_req",
    "asymmetry",
    "commutator",
    "condition_number",
    "correlation",
    "covariance",
    "dead_modes",
    "eigenvalue_slope",
    "eigenvalues",
    "lidar",
    "participation_ratio",
    "rankme",
    "spectral_snapshot",
    "zstd",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from solo_directpred.spectral import callback

        return getattr(callback, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
