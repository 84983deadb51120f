"""DirectPred and analytic linear predictors for non-contrastive self-supervised learning.

The package has two layers:

* a framework-free core (``solo_directpred.core``, ``.theory``, ``.zoo``): pure torch/numpy,
  usable from any training loop;
* a thin solo-learn layer (``solo_directpred.sololearn``): methods registered into
  ``solo.methods.METHODS``, Hydra glue and entry points. It imports solo-learn and is only
  loaded on demand.
"""

from solo_directpred.compat import ensure_torchvision_importable

# Before anything imports torchvision (Lightning, torchmetrics, solo-learn): a CUDA torchvision wheel under a
# CPU-only torch cannot be imported otherwise (see solo_directpred.compat). A no-op in a consistent install.
ensure_torchvision_importable()

from solo_directpred.core import (  # noqa: E402
    AnalyticPredictor,
    LinearPredictor,
    RunningCorrelation,
    directcopy,
    directpred,
)

__version__ = "0.1.0"

__all__ = [
    "AnalyticPredictor",
    "LinearPredictor",
    "RunningCorrelation",
    "__version__",
    "directcopy",
    "directpred",
]
