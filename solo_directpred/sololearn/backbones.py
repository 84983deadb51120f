"""solo-learn's own backbone constructors, offered to the zoo for the names torchvision and timm lack.

:func:`solo_backbone` reads solo-learn's backbone table (``wide_resnet28w*``, ``poolformer_*``, the ViTs of
``mocov3``/``mae``...); :func:`solo_directpred.sololearn.plugin.register` hands it to
:func:`solo_directpred.zoo.models.register_builder`, so the zoo itself never imports solo-learn.
"""

from __future__ import annotations

from torch import nn

from solo_directpred.zoo.manifest import BackboneSpec


def solo_backbone(spec: BackboneSpec, method: str) -> nn.Module | None:
    """solo-learn's backbone ``spec.name`` for ``method`` (no classifier head), or None if it has none."""
    from solo.methods.base import BaseMethod

    constructor = BaseMethod._BACKBONES.get(spec.name)
    return None if constructor is None else constructor(method, **spec.kwargs)
