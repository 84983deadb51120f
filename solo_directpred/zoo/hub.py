"""The zoo's public entry points: resolve a name/URL/path to a verified local file, and load it.

Cache layout (root: :func:`solo_directpred.paths.cache_dir`): ``zoo/NAME/FILENAME`` for manifest
entries, ``urls/HASH/FILENAME`` for bare URLs (``HASH`` = first 16 hex digits of the URL's sha256),
``converted/SHA16/STEM.ckpt`` for :func:`solo_learn_checkpoint`.

Example::

    >>> from solo_directpred import zoo
    >>> model = zoo.load_backbone("directpred-cifar10-resnet18")  # doctest: +SKIP
    >>> model(torch.randn(8, 3, 32, 32)).shape  # doctest: +SKIP
    torch.Size([8, 512])
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union
from urllib.parse import unquote, urlsplit

import torch
from torch import nn

from solo_directpred.paths import cache_dir
from solo_directpred.zoo.checkpoint import BackboneWeights, read_backbone, read_state_dict
from solo_directpred.zoo.errors import ZooError
from solo_directpred.zoo.manifest import (
    FILE_ROLES,
    BackboneSpec,
    ZooEntry,
    check_source,
    get_entry,
    is_safe_token,
    load_manifest,
)
from solo_directpred.zoo.models import build_backbone, load_weights
from solo_directpred.zoo.transfer import fetch_file, mismatch, sha256_file, write_atomically

NameOrPath = Union[str, os.PathLike]
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")


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
    return _inside(cache_dir() / "zoo" / entry.name / spec.filename, cache_dir())


def url_path(url: str) -> Path:
    """Cache location of a bare URL: ``CACHE/urls/HASH/BASENAME`` (basename reduced to safe characters)."""
    basename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    basename = _UNSAFE_CHARS.sub("_", basename).lstrip("._-") or "download"
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return _inside(cache_dir() / "urls" / digest / basename[:128], cache_dir())


def download(
    name: str,
    role: str = "backbone",
    *,
    manifest: Mapping[str, ZooEntry] | None = None,
    force: bool = False,
    **fetch_kwargs: Any,
) -> Path:
    """Fetch the ``role`` file (``backbone``, ``checkpoint`` or ``metadata``) of zoo checkpoint ``name``.

    The file lands in ``CACHE/zoo/NAME/FILENAME`` after its size and full sha256 were checked; a valid
    cached copy is returned without network access. ``force`` fetches it again. ``fetch_kwargs`` go to
    :func:`~solo_directpred.zoo.transfer.fetch_file` (``progress``, ``lock_timeout``).
    """
    entry = get_entry(name, manifest)
    spec = entry.file(role)
    return fetch_file(
        spec.urls, entry_path(entry, role), sha256=spec.sha256, size=spec.size, force=force, **fetch_kwargs
    )


def resolve_checkpoint(
    name_or_path: NameOrPath,
    *,
    role: str = "backbone",
    sha256: str | None = None,
    manifest: Mapping[str, ZooEntry] | None = None,
    **fetch_kwargs: Any,
) -> Path:
    """A local file for a zoo name, a URL (``https://``, ``hf://``, ``file://``) or a path.

    Zoo names are downloaded and verified (:func:`download`); URLs are cached under ``CACHE/urls/``
    and checked against ``sha256`` when it is given; existing paths are returned as they are.
    """
    if isinstance(name_or_path, os.PathLike):
        return _existing(Path(name_or_path))
    text = str(name_or_path)
    if "://" in text:
        if (reason := check_source(text)) is not None:
            raise ZooError(reason)
        return fetch_file([text], url_path(text), sha256=sha256, **fetch_kwargs)
    manifest = load_manifest() if manifest is None else manifest
    if text in manifest:
        return download(text, role, manifest=manifest, **fetch_kwargs)
    path = Path(text).expanduser()
    if path.exists():
        return _existing(path)
    known = ", ".join(sorted(manifest)) or "(none)"
    raise ZooError(f"{text!r} is neither a zoo checkpoint ({known}), a URL, nor an existing file")


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise ZooError(f"checkpoint {path} is not an existing file")
    return path


def backbone_weights(
    name_or_path: NameOrPath,
    *,
    backbone: BackboneSpec | None = None,
    prefix: str = "backbone.",
    manifest: Mapping[str, ZooEntry] | None = None,
    **fetch_kwargs: Any,
) -> BackboneWeights:
    """Backbone state dict (keys without prefix), its :class:`BackboneSpec` and the training method.

    For zoo names the spec is the manifest's; for files it comes from their metadata (see
    :func:`~solo_directpred.zoo.checkpoint.read_backbone`) unless ``backbone`` is given. ``prefix``
    selects the module of a Lightning checkpoint (``momentum_backbone.`` for a BYOL target network).
    """
    manifest = load_manifest() if manifest is None else manifest
    text = os.fspath(name_or_path)
    if not isinstance(name_or_path, os.PathLike) and text in manifest:
        entry = manifest[text]
        path = download(text, "backbone", manifest=manifest, **fetch_kwargs)
        weights = read_backbone(path, prefix=prefix, backbone=backbone or entry.backbone)
        return BackboneWeights(weights.state, weights.spec, entry.method)
    path = resolve_checkpoint(name_or_path, manifest=manifest, **fetch_kwargs)
    return read_backbone(path, prefix=prefix, backbone=backbone)


def load_backbone(
    name_or_path: NameOrPath,
    *,
    backbone: BackboneSpec | None = None,
    prefix: str = "backbone.",
    device: str | torch.device = "cpu",
    manifest: Mapping[str, ZooEntry] | None = None,
    **fetch_kwargs: Any,
) -> nn.Module:
    """A ready feature extractor: the backbone built (torchvision/timm), weights loaded strictly, eval mode.

    Output: features ``(batch, features_dim)``, e.g. 512 for resnet18 and 2048 for resnet50; CIFAR-stem
    ResNets expect 32x32 inputs with solo-learn's CIFAR normalisation.
    """
    weights = backbone_weights(
        name_or_path, backbone=backbone, prefix=prefix, manifest=manifest, **fetch_kwargs
    )
    model = load_weights(build_backbone(weights.spec, weights.method), weights.state, weights.spec)
    return model.to(device).eval()


def solo_state_dict(
    name_or_path: NameOrPath,
    *,
    prefix: str = "backbone.",
    manifest: Mapping[str, ZooEntry] | None = None,
    **fetch_kwargs: Any,
) -> dict[str, torch.Tensor]:
    """The backbone weights with ``backbone.`` prefixed keys, as solo-learn's ``main_linear.py`` wants."""
    path = resolve_checkpoint(name_or_path, manifest=manifest, **fetch_kwargs)
    state, _ = read_state_dict(path, prefix)
    return {f"backbone.{k}": v for k, v in state.items()}


def solo_learn_checkpoint(
    name_or_path: NameOrPath,
    *,
    prefix: str = "backbone.",
    manifest: Mapping[str, ZooEntry] | None = None,
    **fetch_kwargs: Any,
) -> Path:
    """A ``.ckpt`` file ``{"state_dict": {"backbone.KEY": tensor}}`` for ``pretrained_feature_extractor=``.

    solo-learn's ``main_linear.py`` / ``main_knn.py`` take a path ending in ``.ckpt``/``.pth``/``.pt``
    and read its ``["state_dict"]``; zoo weights are safetensors, so they are converted once into
    ``CACHE/converted/SHA16/STEM.ckpt`` (``SHA16``: first 16 hex digits of the source file's sha256).
    """
    source = resolve_checkpoint(name_or_path, manifest=manifest, **fetch_kwargs)
    dest = cache_dir() / "converted" / sha256_file(source)[:16] / f"{source.stem}.ckpt"
    if dest.is_file():
        return dest
    state = solo_state_dict(source, prefix=prefix)
    with write_atomically(dest) as tmp:
        torch.save({"state_dict": state}, tmp)
    return dest


@dataclass(frozen=True)
class CacheStatus:
    """State of one cached zoo file: ``status`` is ``ok``, ``missing`` or ``corrupt``."""

    name: str
    role: str
    path: Path
    status: str


def verify_cache(
    names: list[str] | None = None, manifest: Mapping[str, ZooEntry] | None = None
) -> list[CacheStatus]:
    """Check every cached file of ``names`` (default: all entries) against its size and full sha256."""
    manifest = load_manifest() if manifest is None else manifest
    out = []
    for name in names or sorted(manifest):
        entry = get_entry(name, manifest)
        for role in (r for r in FILE_ROLES if r in entry.files):
            spec, path = entry.files[role], entry_path(entry, role)
            if not path.exists():
                status = "missing"
            else:
                status = "ok" if mismatch(path, spec.sha256, spec.size) is None else "corrupt"
            out.append(CacheStatus(name, role, path, status))
    return out
