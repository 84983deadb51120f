"""Where the shipped presets and the zoo manifest live (in a wheel and in a source checkout), and the cache.

Cache root, first match wins: ``$SOLO_DIRECTPRED_CACHE``; ``$XDG_CACHE_HOME/solo-directpred``;
``~/.cache/solo-directpred``. It holds prepared datasets (``datasets/``) and zoo downloads (``zoo/``,
``urls/``, ``converted/``).
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
CACHE_ENV = "SOLO_DIRECTPRED_CACHE"


def _first_existing(*candidates: Path) -> Path:
    return next((candidate for candidate in candidates if candidate.is_dir()), candidates[0])


def presets_dir() -> Path:
    """The ``scripts/`` tree: inside the package in a wheel, at the repository root in a checkout."""
    return _first_existing(_PACKAGE_DIR / "_presets", _PACKAGE_DIR.parent / "scripts")


def zoo_dir() -> Path:
    """The ``zoo/`` folder holding the checkpoint manifest."""
    return _first_existing(_PACKAGE_DIR / "_zoo", _PACKAGE_DIR.parent / "zoo")


def configs_dir() -> Path:
    """The package's own Hydra configs (the embedded default ``directpred.yaml`` and friends)."""
    return _PACKAGE_DIR / "configs"


def cache_dir() -> Path:
    """The cache root (see the module docstring); created by whoever writes into it first."""
    override = os.environ.get(CACHE_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "solo-directpred"
