"""Where downloaded checkpoints are kept, and whether the network may be used.

Cache root, first match wins: ``$SOLO_DIRECTPRED_CACHE``; ``$XDG_CACHE_HOME/solo-directpred``;
``~/.cache/solo-directpred``. Layout: ``zoo/NAME/FILENAME`` for manifest entries and
``urls/HASH/FILENAME`` for bare URLs (``HASH`` = first 16 hex digits of the URL's sha256).

Offline mode (``SOLO_DIRECTPRED_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``; also ``true``/``yes``/``on``)
serves files from the cache and from ``file://`` sources only.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from solo_directpred.zoo.errors import ZooError
from solo_directpred.zoo.manifest import ZooEntry, is_safe_token

CACHE_ENV = "SOLO_DIRECTPRED_CACHE"
OFFLINE_ENVS = ("SOLO_DIRECTPRED_OFFLINE", "HF_HUB_OFFLINE")
_TRUE = {"1", "true", "yes", "on"}
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def cache_dir() -> Path:
    """The cache root (created on first download, not here)."""
    override = os.environ.get(CACHE_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "solo-directpred"


def offline_reason() -> str | None:
    """``"NAME=value"`` of the variable that switched offline mode on, or None when online."""
    for name in OFFLINE_ENVS:
        value = os.environ.get(name, "").strip()
        if value.lower() in _TRUE:
            return f"{name}={value}"
    return None


def is_offline() -> bool:
    """Whether offline mode is on (see the module docstring)."""
    return offline_reason() is not None


def _inside(path: Path, root: Path) -> Path:
    resolved, root_resolved = path.resolve(), root.resolve()
    if root_resolved != resolved and root_resolved not in resolved.parents:
        raise ZooError(f"refusing cache path {path}: it resolves outside the cache {root}")
    return path


def entry_path(entry: ZooEntry, role: str = "backbone") -> Path:
    """Cache location of the ``role`` file of ``entry``: ``CACHE/zoo/NAME/FILENAME``."""
    spec = entry.file(role)
    for label, token in (("name", entry.name), ("filename", spec.filename)):
        if not is_safe_token(token):
            raise ZooError(f"checkpoint {label} {token!r} is not a safe file name")
    root = cache_dir()
    return _inside(root / "zoo" / entry.name / spec.filename, root)


def url_path(url: str) -> Path:
    """Cache location of a bare URL: ``CACHE/urls/HASH/BASENAME`` (basename reduced to safe characters)."""
    basename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    basename = _UNSAFE_CHARS.sub("_", basename).lstrip("._-") or "download"
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    root = cache_dir()
    return _inside(root / "urls" / digest / basename[:128], root)
