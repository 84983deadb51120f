"""Where the shipped presets and the zoo manifest live, in a wheel and in a source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _first_existing(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]


def presets_dir() -> Path:
    """The ``scripts/`` tree: inside the package in a wheel, at the repository root in a checkout."""
    return _first_existing(_PACKAGE_DIR / "_presets", _PACKAGE_DIR.parent / "scripts")


def zoo_dir() -> Path:
    """The ``zoo/`` folder holding the checkpoint manifest."""
    return _first_existing(_PACKAGE_DIR / "_zoo", _PACKAGE_DIR.parent / "zoo")


def configs_dir() -> Path:
    """The package's own Hydra configs (the embedded default ``directpred.yaml`` and friends)."""
    return _PACKAGE_DIR / "configs"
