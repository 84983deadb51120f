"""Prediction losses of BYOL/SimSiam-style training with a linear predictor (docs/losses.md).

Notation, per sample: ``z`` the online projection (the predictor's input, with gradient), ``p = z W_p``
the prediction, ``z_t`` the target projection (EMA network or detached online network; always
stop-gradient ``sg``). Every loss is averaged over the batch; ``(B, d)`` tensors in, a scalar out.

* ``cosine``: ``2 − 2 cos(p, sg(z_t))``, the normalised loss of the paper (§4, symmetric form).
* ``euclidean``: ``‖p − sg(z_t)‖²`` on the raw projections (the loss of the paper's linear theory,
  Lemma 1).
* ``isoloss``: the cosine form of IsoLoss (Halvagal, Laborieux & Zenke, NeurIPS 2023)::

      L = −2 [ z·sg(z_t) / sg(‖p‖‖z_t‖) − ½ sg(p·z_t / (‖p‖³‖z_t‖)) ‖z W_p^{1/2}‖² ]

* ``isoloss_euclidean``: the Euclidean IsoLoss ``‖z − sg(z_t + z − p)‖²``.

For a symmetric W_p the two IsoLoss forms have the gradient of their parent loss with the leading
``W_p`` removed: ``∇_z L_cosine = W_p ∇_z L_isoloss`` and ``∇_z L_euclidean = W_p ∇_z L_isoloss_euclidean``.
In the eigenbasis of ``W_p = U diag(p_j) Uᵀ`` the gradient of mode j is thus ``p_j`` times smaller under
the parent loss: the predictor's eigenvalues act as per-mode learning-rate multipliers, which IsoLoss
sets to 1 (see :mod:`solo_directpred.theory.loss_modes`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from solo_directpred.core.schema import ISOLOSSES, LOSSES  # the IsoLoss forms need an analytic W_p

_NORM_EPS = 1e-8  # as F.cosine_similarity: keeps a zero vector from dividing by zero


def _float32(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Half-precision inputs upcast: ‖p‖³ and squared norms of raw projections overflow float16 (65504)."""
    return tuple(t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors)


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


def euclidean_prediction_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """``‖p − sg(z_t)‖²`` (summed over the d features), averaged over the batch.

    The vectors are *not* ℓ2-normalised: this is the loss of the paper's linear theory (Lemma 1) and
    the Euclidean loss of Halvagal et al. (2023), whose fixed point ``p_j = 1`` on every mode (no
    augmentation noise) is what equalises the spectrum. Unlike the cosine loss it is not invariant to
    the scale of W_p, so ε matters (docs/losses.md, "Normalisation").

    Args:
        prediction: (B, d) predictor outputs ``z W_p``.
        target: (B, d) target projections.

    Returns:
        Scalar tensor ≥ 0. ``∇_z = 2 (p − z_t) W_pᵀ / B``.
    """
    prediction, target = _float32(prediction, target.detach())
    return (prediction - target).pow(2).sum(dim=-1).mean()


def isoloss(z: Tensor, prediction: Tensor, target: Tensor) -> Tensor:
    """IsoLoss, cosine form (Halvagal, Laborieux & Zenke 2023), averaged over the batch.

    ``L = −2 [ z·sg(z_t) / sg(‖p‖‖z_t‖) − ½ sg(p·z_t / (‖p‖³‖z_t‖)) ‖p_√‖² ]`` with ``p = z W_p`` and
    ``p_√ = z W_p^{1/2}``. For a symmetric PSD ``W_p``, ``‖p_√‖² = z W_p zᵀ = z·p``, so the square root
    of W_p is never formed: the loss needs ``z`` and ``p`` only, in any basis, and costs no
    eigendecomposition. Its gradient is ``∇_z L = −(2/‖p‖)(ẑ_t − cos(p, z_t) p̂)/B`` (hats: unit
    vectors), the cosine loss's ``W_p (…)`` without the ``W_p``.

    Args:
        z: (B, d) online projections (the predictor's input), with gradient.
        prediction: (B, d) ``z W_p`` for a symmetric PSD ``W_p`` treated as a constant.
        target: (B, d) target projections.

    Returns:
        Scalar tensor. Its value is a surrogate (not the cosine loss); only its gradient is meaningful.
    """
    z, prediction, target = _float32(z, prediction, target.detach())
    with torch.no_grad():
        p_norm = prediction.norm(dim=-1).clamp_min(_NORM_EPS)
        t_norm = target.norm(dim=-1).clamp_min(_NORM_EPS)
        attract = 1.0 / (p_norm * t_norm)
        repel = (prediction * target).sum(dim=-1) / (p_norm.pow(3) * t_norm)
    sim = attract * (z * target).sum(dim=-1) - 0.5 * repel * (z * prediction).sum(dim=-1)
    return -2.0 * sim.mean()


def isoloss_euclidean(z: Tensor, prediction: Tensor, target: Tensor) -> Tensor:
    """Euclidean IsoLoss ``‖z − sg(z_t + z − p)‖²`` (Halvagal et al. 2023), averaged over the batch.

    The value equals ``‖p − z_t‖²``; the gradient is the raw prediction error
    ``∇_z L = 2 (p − z_t)/B``, not pre-multiplied by ``W_p`` as the Euclidean loss's is. No gradient
    reaches ``W_p`` (it sits inside the stop-gradient).

    Args:
        z: (B, d) online projections, with gradient.
        prediction: (B, d) ``z W_p``.
        target: (B, d) target projections.

    Returns:
        Scalar tensor ≥ 0.
    """
    z, prediction, target = _float32(z, prediction, target)
    anchor = (target + z - prediction).detach()
    return (z - anchor).pow(2).sum(dim=-1).mean()


def prediction_loss(loss: str, z: Tensor, prediction: Tensor, target: Tensor) -> Tensor:
    """One of :data:`LOSSES` for one (view, target view) pair: (B, d) tensors → scalar."""
    if loss == "cosine":
        return cosine_prediction_loss(prediction, target)
    if loss == "euclidean":
        return euclidean_prediction_loss(prediction, target)
    if loss == "isoloss":
        return isoloss(z, prediction, target)
    if loss == "isoloss_euclidean":
        return isoloss_euclidean(z, prediction, target)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def symmetric_prediction_loss(
    predictions: list[Tensor],
    targets: list[Tensor],
    loss: str = "cosine",
    projections: list[Tensor] | None = None,
) -> Tensor:
    """Σ over ordered pairs of distinct views (v, v′) of loss(z_v, p_v, sg(z_v′)); targets: the large crops.

    With two views this is loss(p₁, z₂) + loss(p₂, z₁), the symmetrised loss of the paper.

    Args:
        predictions: per view, (B, d) predictions ``z_v W_p``.
        targets: per large crop, (B, d) target projections.
        loss: one of :data:`LOSSES`.
        projections: per view, (B, d) online projections ``z_v``; required by the IsoLoss forms.
    """
    if loss in ISOLOSSES and projections is None:
        raise ValueError(f"loss {loss!r} needs the online projections (the predictor's inputs)")
    total = torch.zeros((), device=predictions[0].device, dtype=torch.float32)
    for t, target in enumerate(targets):
        for v, prediction in enumerate(predictions):
            if v != t:
                z = prediction if projections is None else projections[v]
                total = total + prediction_loss(loss, z, prediction, target)
    return total
