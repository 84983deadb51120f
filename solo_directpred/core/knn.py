"""The weighted k-nearest-neighbour classifier: one definition for the ``knn`` command, the benchmarks and
their tracking (README, "Presets, evaluation"). Torch only."""

from __future__ import annotations

import torch
import torch.nn.functional as F

KNN_DISTANCES = ("cosine", "euclidean")


@torch.no_grad()
def weighted_knn(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 20,
    temperature: float | None = 0.07,
    distance: str = "cosine",
    chunk_size: int = 1024,
) -> tuple[float, float]:
    """Weighted k-nearest-neighbour accuracy (%, top-1 and top-5), solo-learn's vote.

    Each test sample scores class c by Σ w_i [y_i = c] over its k nearest training samples: with
    ``cosine`` (features ℓ2-normalised), similarity s_i = f·g_i and w_i = exp(s_i / T); with
    ``euclidean``, w_i = 1 / (‖f − g_i‖ + 1e-5). Top-5 counts a hit among the min(5, k) best classes.
    Features ``(N, D)``, integer labels ``(N,)``. Unlike solo-learn's ``WeightedKNNClassifier``, classes
    missing from the test split are allowed (its class count comes from the test labels only).
    """
    if distance not in KNN_DISTANCES:
        raise ValueError(f"distance={distance!r} is invalid: must be one of {KNN_DISTANCES}")
    if distance == "cosine":
        train_features = F.normalize(train_features.float(), dim=1)
        test_features = F.normalize(test_features.float(), dim=1)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    k = min(k, len(train_labels))
    top = min(5, k, num_classes)
    hits1 = hits5 = 0
    for start in range(0, len(test_labels), chunk_size):
        features = test_features[start : start + chunk_size]
        labels = test_labels[start : start + chunk_size]
        if distance == "cosine":
            similarity, index = (features @ train_features.T).topk(k, dim=1)
            weight = (similarity / (temperature or 0.07)).exp()
        else:
            similarity, index = (1.0 / (torch.cdist(features.float(), train_features.float()) + 1e-5)).topk(k)
            weight = similarity
        scores = torch.zeros(len(labels), num_classes).scatter_add_(1, train_labels[index], weight)
        ranked = scores.topk(top, dim=1).indices
        hits1 += (ranked[:, 0] == labels).sum().item()
        hits5 += (ranked == labels[:, None]).any(dim=1).sum().item()
    return 100.0 * hits1 / len(test_labels), 100.0 * hits5 / len(test_labels)
