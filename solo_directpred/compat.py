"""Work-arounds for known environment traps, applied before the modules that hit them are imported.

torchvision wheels built for CUDA fail to import under a CPU-only torch of the same release: the
C++ extension cannot load, and ``torchvision/_meta_registrations.py`` then registers fake kernels for
``torchvision::nms`` and ``torchvision::qnms`` without checking that the operators exist. Declaring
the two operator schemas first lets ``import torchvision`` succeed; models, transforms and datasets
work, only the detection ops (never used by solo-learn or this plugin) stay unavailable.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_OP_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None  # keeps the schema definitions alive for the life of the process


def torchvision_extension_loads() -> bool:
    """Whether torchvision's compiled extension loads with the installed torch."""
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return True
    candidates = sorted(p for p in Path(spec.origin).parent.glob("_C*") if p.suffix in (".so", ".pyd"))
    if not candidates:
        return False
    try:
        torch.ops.load_library(str(candidates[0]))
    except (OSError, RuntimeError):
        return False
    return True


def ensure_torchvision_importable() -> bool:
    """Make ``import torchvision`` work under a CPU-only torch; returns True if a fix was applied.

    A no-op when torchvision is absent, already imported, or its extension loads.
    """
    global _library
    if "torchvision" in sys.modules or _library is not None or torchvision_extension_loads():
        return False
    import torch

    missing = [s for s in _OP_SCHEMAS if not hasattr(torch.ops.torchvision, s.split("(", 1)[0])]
    if not missing:
        return False
    _library = torch.library.Library("torchvision", "DEF")
    for schema in missing:
        _library.define(schema)
    return True
