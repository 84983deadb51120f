"""The checkpoint zoo: a validated manifest, verified and resumable downloads, safe loading, export.

Example::

    >>> from solo_directpred import zoo
    >>> sorted(zoo.load_manifest())                      # known checkpoints
    [...]
    >>> model = zoo.load_backbone("NAME")  # torchvision/timm model, eval mode  # doctest: +SKIP
    >>> path = zoo.resolve_checkpoint("NAME")  # local, verified file  # doctest: +SKIP
    >>> ckpt = zoo.solo_learn_checkpoint("NAME")  # for main_linear.py  # doctest: +SKIP

Environment: ``SOLO_DIRECTPRED_CACHE`` (cache root), ``SOLO_DIRECTPRED_OFFLINE`` / ``HF_HUB_OFFLINE``
(offline mode), ``SOLO_DIRECTPRED_ZOO_MANIFEST`` (extra manifests); ``hf://`` sources follow
huggingface_hub's own variables (``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_TOKEN``...). ``zoo/README.md``
documents the manifest schema.
"""

from solo_directpred.zoo.checkpoint import BackboneWeights, load_torch_file, read_backbone
from solo_directpred.zoo.errors import (
    DownloadError,
    HashMismatchError,
    ManifestError,
    OfflineError,
    UnsafeCheckpointError,
    ZooError,
)
from solo_directpred.zoo.export import ExportResult, export_checkpoint
from solo_directpred.zoo.hub import (
    CacheStatus,
    backbone_weights,
    download,
    load_backbone,
    resolve_checkpoint,
    solo_learn_checkpoint,
    solo_state_dict,
    verify_cache,
)
from solo_directpred.zoo.manifest import (
    BackboneSpec,
    EvalResult,
    FileSpec,
    ZooEntry,
    get_entry,
    load_manifest,
    validate_manifest,
)
from solo_directpred.zoo.models import build_backbone, load_weights
from solo_directpred.zoo.transfer import fetch_file, is_offline, sha256_file

__all__ = [
    "BackboneSpec",
    "BackboneWeights",
    "CacheStatus",
    "DownloadError",
    "EvalResult",
    "ExportResult",
    "FileSpec",
    "HashMismatchError",
    "ManifestError",
    "OfflineError",
    "UnsafeCheckpointError",
    "ZooEntry",
    "ZooError",
    "backbone_weights",
    "build_backbone",
    "download",
    "export_checkpoint",
    "fetch_file",
    "get_entry",
    "is_offline",
    "load_backbone",
    "load_manifest",
    "load_torch_file",
    "load_weights",
    "read_backbone",
    "resolve_checkpoint",
    "sha256_file",
    "solo_learn_checkpoint",
    "solo_state_dict",
    "validate_manifest",
    "verify_cache",
]
