"""DirectPred and analytic linear predictors for non-contrastive self-supervised learning.

The package has two layers:

* a framework-free core (``solo_directpred.core``, ``.theory``, ``.zoo``): pure torch/numpy,
  usable from any training loop;
* a thin solo-learn layer (``solo_directpred.sololearn``): methods registered into
  ``solo.methods.METHODS``, Hydra glue and entry points. It imports solo-learn and is only
  loaded on demand.

Importing the package defines things and does nothing else: the torchvision work-around of
:mod:`solo_directpred.compat` runs at the entry points (the ``solo-directpred`` command, the Hydra
callback, :mod:`solo_directpred.sololearn.upstream`).
"""

from solo_directpred.core import (
    AnalyticPredictor,
    AnalyticSettings,
    LinearPredictor,
    RunningCorrelation,
    directcopy,
    directpred,
)

__version__ = "0.1.0"

__all__ = [
    "AnalyticPredictor",
    "AnalyticSettings",
    "LinearPredictor",
    "RunningCorrelation",
    "__version__",
    "directcopy",
    "directpred",
]
