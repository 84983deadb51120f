"""Turn a finished solo-learn run into a zoo bundle and the manifest entry that publishes it.

Input: a Lightning checkpoint written by solo-learn (``trained_models/METHOD/RUN/NAME-ep=E.ckpt``;
``state_dict`` with ``backbone.*`` keys, ``epoch`` = last finished epoch, 0-based) with the run's
``args.json`` beside it, which gives method, dataset and backbone. The checkpoint is read with
``torch.load(weights_only=True)`` (see :mod:`~solo_directpred.zoo.checkpoint`).

Output, in ``OUT/NAME/``:

* ``NAME.safetensors``: the backbone alone (keys without ``backbone.``), contiguous tensors, header
  metadata ``solo_directpred`` = backbone name/kwargs/stem, method, dataset, epochs;
* ``NAME.ckpt`` (same suffix as the input): the full checkpoint, byte for byte;
* ``NAME.json``: metadata (the above, the pretraining config, sizes and sha256 of both files);

and a manifest entry (validated) whose sources are ``URL_BASE/FILENAME``, ``hf://REPO@REV/FILENAME``
or, by default, ``file://`` URLs of the bundle itself, so that the entry works locally at once.

Example::

    >>> result = export_checkpoint("trained_models/byol/abc/run-ep=199.ckpt", "byol-c10")  # doctest: +SKIP
    >>> json.dumps(result.entry.to_json())  # paste into a manifest  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from solo_directpred.zoo.checkpoint import (
    METADATA_KEY,
    describe_backbone,
    infer_resnet,
    load_torch_file,
    read_run_args,
    spec_from_run_args,
    split_state_dict,
    stem_from_weights,
)
from solo_directpred.zoo.errors import ZooError
from solo_directpred.zoo.manifest import BackboneSpec, ZooEntry, check_source, is_safe_token
from solo_directpred.zoo.transfer import sha256_file, write_atomically

#: Top-level keys of solo-learn's ``args.json`` copied into ``pretrain_config`` (paths and logging left out).
CONFIG_KEYS = (
    "method",
    "backbone",
    "method_kwargs",
    "momentum",
    "optimizer",
    "scheduler",
    "max_epochs",
    "precision",
    "accumulate_grad_batches",
    "devices",
    "num_nodes",
    "strategy",
    "sync_batchnorm",
    "augmentations",
    "seed",
)
DATA_KEYS = ("dataset", "num_classes", "num_large_crops", "num_small_crops", "fraction", "format")


@dataclass(frozen=True)
class ExportResult:
    """Paths of the exported bundle and the manifest entry that publishes it."""

    weights: Path
    checkpoint: Path | None
    metadata: Path
    entry: ZooEntry


def pretrain_config(args: Mapping[str, Any]) -> dict[str, Any]:
    """The reproducibility-relevant part of solo-learn's ``args.json`` (no paths, no logger settings)."""
    config = {k: args[k] for k in CONFIG_KEYS if k in args}
    data = args.get("data")
    if isinstance(data, Mapping):
        config["data"] = {k: data[k] for k in DATA_KEYS if k in data}
    return config


def _hparams_args(obj: Any) -> dict[str, Any] | None:
    """The run config saved by ``save_hyperparameters`` (``hyper_parameters`` or its ``cfg``)."""
    hparams = obj.get("hyper_parameters") if isinstance(obj, dict) else None
    if hparams is None:
        return None
    if "cfg" in hparams and "method" not in hparams:
        hparams = hparams["cfg"]
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(hparams, DictConfig):
            hparams = OmegaConf.to_container(hparams, resolve=True)
    except ImportError:
        pass
    return dict(hparams) if isinstance(hparams, Mapping) and "method" in hparams else None


def _versions() -> dict[str, str]:
    from solo_directpred import __version__

    try:
        solo_version = importlib.metadata.version("solo-learn")
    except importlib.metadata.PackageNotFoundError:
        solo_version = "unknown"
    return {"solo_learn": solo_version, "solo_directpred": __version__}


def _source_urls(path: Path, url_base: str | None, hf_repo: str | None) -> list[str]:
    if url_base:
        return [f"{url_base.rstrip('/')}/{path.name}"]
    if hf_repo:
        return [f"hf://{hf_repo}/{path.name}"]
    return [path.resolve().as_uri()]


def _file_info(path: Path) -> dict[str, Any]:
    return {"filename": path.name, "size": path.stat().st_size, "sha256": sha256_file(path)}


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    name: str,
    out_dir: str | os.PathLike[str] = "zoo-export",
    *,
    method: str | None = None,
    dataset: str | None = None,
    backbone: BackboneSpec | None = None,
    epochs: int | None = None,
    prefix: str = "backbone.",
    url_base: str | None = None,
    hf_repo: str | None = None,
    license: str = "MIT",
    results: Sequence[Mapping[str, Any]] = (),
    description: str = "",
    include_checkpoint: bool = True,
) -> ExportResult:
    """Export ``checkpoint`` as zoo bundle ``OUT_DIR/NAME/`` (see the module docstring).

    Args:
        checkpoint: solo-learn / Lightning checkpoint (or a bare backbone state dict).
        name: checkpoint name in the zoo, ``[A-Za-z0-9._-]``, 1-128 characters.
        out_dir: parent directory of the bundle.
        method, dataset, backbone, epochs: override what ``args.json`` and the checkpoint say;
            required when the checkpoint has no ``args.json`` beside it (ResNets are recognised).
        prefix: module to export (``backbone.``; ``momentum_backbone.`` for a BYOL/DirectPred target).
        url_base: ``https://`` folder the files will be uploaded to.
        hf_repo: ``OWNER/REPO@COMMIT`` of a Hugging Face repository holding the files at its root.
        license: SPDX identifier of the weights' licence.
        results: evaluation numbers, manifest form (``protocol``, ``metric``, ``value``...).
        description: one line for ``zoo list``/``info``.
        include_checkpoint: also copy the full checkpoint into the bundle.
    """
    if not is_safe_token(name):
        raise ZooError(f"--name {name!r} is not allowed: use 1-128 characters from [A-Za-z0-9._-], no '..'")
    if url_base and hf_repo:
        raise ZooError("give either url_base or hf_repo, not both")
    if url_base and check_source(f"{url_base.rstrip('/')}/x") is not None:
        raise ZooError(f"url_base {url_base!r} must be an https:// URL")
    if hf_repo and (reason := check_source(f"hf://{hf_repo}/x")) is not None:
        raise ZooError(f"hf_repo {hf_repo!r}: {reason}")
    checkpoint = Path(checkpoint)
    obj = load_torch_file(checkpoint)
    state = {k: v.detach().contiguous().clone() for k, v in split_state_dict(obj, prefix).items()}
    args = read_run_args(checkpoint) or _hparams_args(obj) or {}

    if backbone is None:
        backbone = spec_from_run_args(args) if "backbone" in args else infer_resnet(state)
        if backbone is None:
            raise ZooError(
                f"{checkpoint} has no args.json beside it and is not a resnet18/50: pass --backbone"
            )
    backbone = stem_from_weights(backbone, state)
    method = method or args.get("method")
    dataset = dataset or (args.get("data") or {}).get("dataset")
    if epochs is None and isinstance(obj, dict) and isinstance(obj.get("epoch"), int):
        epochs = obj["epoch"] + 1  # Lightning stores the 0-based index of the last finished epoch
    for flag, value in (("--method", method), ("--dataset", dataset), ("--epochs", epochs)):
        if value is None:
            raise ZooError(f"{checkpoint}: cannot tell {flag[2:]} (no args.json beside it); pass {flag}")

    from safetensors.torch import save

    bundle = Path(out_dir) / name
    described = describe_backbone(backbone, name=name, method=method, dataset=dataset, epochs=epochs)
    files = {"backbone": bundle / f"{name}.safetensors"}
    with write_atomically(files["backbone"]) as tmp:
        tmp.write_bytes(save(state, metadata={METADATA_KEY: json.dumps(described, sort_keys=True)}))
    if include_checkpoint:
        files["checkpoint"] = bundle / f"{name}{checkpoint.suffix or '.ckpt'}"
        with write_atomically(files["checkpoint"]) as tmp:
            shutil.copyfile(checkpoint, tmp)

    file_info = {role: _file_info(path) for role, path in files.items()}
    versions = _versions()
    config = pretrain_config(args)
    metadata = {
        **described,
        "pretrain_config": config,
        "files": file_info,
        "versions": versions,
        "license": license,
        "source": {
            "checkpoint": checkpoint.name,
            "prefix": prefix,
            "global_step": obj.get("global_step") if isinstance(obj, dict) else None,
        },
    }
    meta_path = bundle / f"{name}.json"
    meta_path.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    files["metadata"] = meta_path
    file_info["metadata"] = _file_info(meta_path)

    entry = {
        "name": name,
        "method": method,
        "dataset": dataset,
        "backbone": backbone.to_json(),
        "epochs": epochs,
        "pretrain_config": config,
        "results": [dict(r) for r in results],
        "files": {
            role: {**info, "urls": _source_urls(files[role], url_base, hf_repo)}
            for role, info in file_info.items()
        },
        "versions": versions,
        "license": license,
    }
    if description:
        entry["description"] = description
    validated = ZooEntry.from_json(entry, f"export of {checkpoint}")
    return ExportResult(files["backbone"], files.get("checkpoint"), meta_path, validated)
