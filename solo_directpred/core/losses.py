"""The normalised prediction loss of BYOL/SimSiam-style training (paper §4, symmetric form)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cosine_prediction_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """‖p/‖p‖ − sg(z)/‖sg(z)‖‖² = 2 − 2·cos(p, sg(z)), averaged over the batch.

    The target is detached (stop-gradient). The loss is invariant to a positive rescaling of the
    prediction, which is why the overall scale of an analytic W_p does not matter.

    Args:
        prediction: (B, d) predictor outputs.
        target: (B, d) target projections (EMA network or detached online network).

    Returns:
        Scalar tensor in [0, 4].
    """
    return 2.0 - 2.0 * F.cosine_similarity(prediction, target.detach(), dim=-1).mean()


def symmetric_prediction_loss(predictions: list[Tensor], targets: list[Tensor]) -> Tensor:
    """Σ over ordered pairs of distinct views (v, v′) of loss(p_v, sg(z_v′)); ``targets`` are the large crops.

    With two views this is loss(p₁, z₂) + loss(p₂, z₁), the symmetrised loss of the paper.
    """
    total = torch.zeros((), device=predictions[0].device, dtype=torch.float32)
    for t, target in enumerate(targets):
        for v, prediction in enumerate(predictions):
            if v != t:
                total = total + cosine_prediction_loss(prediction, target)
    return total
