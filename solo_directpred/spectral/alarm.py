"""The collapse alarm's thresholds: ``"auto"`` defaults relative to the projector width d, or fixed numbers.

A healthy embedding spread over the unit sphere has z-std ≈ 1/√d and a RankMe that grows with d, so the
defaults scale with d: RankMe < max(:data:`AUTO_RANKME_FLOOR`, :data:`AUTO_RANKME_FRACTION` · d) or z-std <
:data:`AUTO_ZSTD_SCALE` / √d. How they were calibrated (runs that stayed healthy and runs that collapsed) is
in ``docs/spectral.md``, "The collapse alarm".
"""

from __future__ import annotations

import math

#: The setting that picks the default threshold for the measured width d.
AUTO = "auto"
#: Default RankMe threshold: this fraction of d ...
AUTO_RANKME_FRACTION = 0.05
#: ... but never below this (an exact collapse has RankMe 1, whatever d).
AUTO_RANKME_FLOOR = 1.5
#: Default z-std threshold: this many times 1/√d, the z-std of embeddings spread over the sphere.
AUTO_ZSTD_SCALE = 0.15


def threshold(metric: str, setting: float | str | None, dim: int) -> float | None:
    """The threshold of ``metric`` ("rankme" or "zstd") for projector width ``dim``; None when it is off."""
    if setting != AUTO:
        return setting
    if metric == "rankme":
        return max(AUTO_RANKME_FLOOR, AUTO_RANKME_FRACTION * dim)
    return AUTO_ZSTD_SCALE / math.sqrt(dim)


def describe(metric: str, setting: float | str | None, dim: int) -> str:
    """``"6.4 (auto: 0.05·d, d = 128)"`` or ``"8"``: the threshold as an alarm message names it."""
    value = threshold(metric, setting, dim)
    if setting != AUTO:
        return f"{value:g}"
    rule = (
        f"max({AUTO_RANKME_FLOOR:g}, {AUTO_RANKME_FRACTION:g}·d)"
        if metric == "rankme"
        else f"{AUTO_ZSTD_SCALE:g}/√d"
    )
    return f"{value:.4g} (auto: {rule}, d = {dim})"
