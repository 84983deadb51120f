"""Safe reading of checkpoint files and of the backbone weights inside them.

Nothing here unpickles arbitrary objects: ``.safetensors`` files are read with safetensors, every
other file with ``torch.load(weights_only=True)``. Lightning checkpoints whose hyper-parameters hold an
OmegaConf config (as when a LightningModule calls ``save_hyperparameters`` with a ``DictConfig``) need
a few OmegaConf classes; those, and only those, are allowed through
``torch.serialization.safe_globals`` (:data:`OMEGACONF_GLOBALS`). Any other global is refused with
:class:`~solo_directpred.zoo.errors.UnsafeCheckpointError`, naming it.

Formats understood by :func:`read_backbone`:

* safetensors holding the backbone's own keys (what ``zoo export`` writes; its header metadata
  key ``solo_directpred`` holds the JSON of :func:`describe_backbone`);
* a solo-learn / Lightning checkpoint: ``{"state_dict": {"backbone.KEY": tensor, ...}, ...}``
  (older solo-learn checkpoints used ``encoder.``), with solo-learn's ``args.json`` beside it;
* a bare ``{KEY: tensor}`` state dict of the backbone itself.

Metadata comes from, in order: the safetensors header, ``STEM.json`` beside the file (``zoo export``),
``args.json`` beside the file (solo-learn's run directory), and, for ResNets, the weights themselves.
"""

from __future__ import annotations

import contextlib
import json
import pickle
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from solo_directpred.zoo.errors import UnsafeCheckpointError, ZooError
from solo_directpred.zoo.manifest import BackboneSpec

METADATA_KEY = "solo_directpred"
METADATA_VERSION = 1
#: solo-learn swaps the ResNet stem for these datasets (``solo/methods/base.py``).
CIFAR_DATASETS = ("cifar10", "cifar100")
_LEGACY_PREFIX = "encoder."
#: OmegaConf's value nodes (``BytesNode`` and ``PathNode`` exist in newer releases only).
_OMEGACONF_NODES = "AnyNode StringNode IntegerNode FloatNode BooleanNode BytesNode PathNode".split()


def omegaconf_globals() -> list[Any]:
    """The globals an OmegaConf ``DictConfig``/``ListConfig`` pickle needs; empty without OmegaConf.

    Plain data containers only: their ``__setstate__`` restores attributes, it calls no user code.
    """
    try:
        from omegaconf import DictConfig, ListConfig, base, nodes
    except ImportError:
        return []
    node_types = [getattr(nodes, name) for name in _OMEGACONF_NODES if hasattr(nodes, name)]
    containers = [DictConfig, ListConfig, base.Metadata, base.ContainerMetadata, defaultdict, Any]
    return [*containers, *node_types, dict, list, int, float, str, bool]


def load_torch_file(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, allowing OmegaConf configs and nothing else.

    Raises:
        UnsafeCheckpointError: the file needs other pickle globals (they are named in the message).
        ZooError: the file is not a readable torch file.
    """
    path = Path(path)
    allowed = omegaconf_globals()
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:
        with safe_globals(allowed) if allowed and safe_globals else contextlib.nullcontext():
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        if not _is_global_refusal(err):
            raise ZooError(f"cannot read {path} as a torch checkpoint ({_last_line(err)})") from err
        raise UnsafeCheckpointError(
            f"{path} cannot be loaded with torch.load(weights_only=True): it needs pickle globals "
            f"{_unsafe_globals(path, allowed) or '(unknown)'}, and the zoo never executes arbitrary pickle. "
            "If you trust the file, re-save its tensors: torch.save({'state_dict': "
            "torch.load(PATH, weights_only=False)['state_dict']}, 'clean.ckpt')"
        ) from err


def _unsafe_globals(path: Path, allowed: list[Any]) -> str:
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)  # torch >= 2.5
    if finder is None:
        return ""
    allowed_names = {_global_name(g) for g in allowed}
    try:
        return ", ".join(n for n in finder(path) if n not in allowed_names)
    except Exception:  # noqa: BLE001 - only used to improve an error message
        return ""


def _is_global_refusal(err: Exception) -> bool:
    """Whether torch's weights-only unpickler refused a global (rather than meeting a broken file)."""
    message = str(err)
    return "Unsupported global" in message or "Unsupported class" in message


def _last_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    prefixes = ("Unsupported", "WeightsUnpickler", "PytorchStream")
    informative = [line for line in lines if line.startswith(prefixes)]
    return (informative or lines or [type(err).__name__])[-1]


def _global_name(obj: Any) -> str:
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "_name", None) or repr(obj)
    return f"{getattr(obj, '__module__', 'typing')}.{qualname}"


def split_state_dict(obj: Any, prefix: str = "backbone.") -> dict[str, torch.Tensor]:
    """The backbone's own weights (prefix removed) from a loaded checkpoint object.

    ``obj`` is a Lightning dict with ``state_dict`` (keys ``PREFIX...``, or legacy ``encoder...`` when
    ``prefix`` is the default) or a bare state dict; a bare dict without the prefix is returned as is.
    """
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state, lightning = obj["state_dict"], True
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, lightning = obj, False
    else:
        raise ZooError(
            "expected a Lightning checkpoint with a 'state_dict' or a dict of tensors, got "
            f"{type(obj).__name__} with keys {list(obj)[:8] if isinstance(obj, dict) else '-'}"
        )
    for candidate in (prefix, _LEGACY_PREFIX) if prefix == "backbone." else (prefix,):
        picked = {k[len(candidate) :]: v for k, v in state.items() if k.startswith(candidate)}
        if picked:
            return picked
    if lightning:
        roots = sorted({k.split(".", 1)[0] for k in state})
        raise ZooError(f"the checkpoint's state_dict has no {prefix!r} keys; its top-level modules: {roots}")
    return dict(state)


def infer_resnet(state: dict[str, torch.Tensor]) -> BackboneSpec | None:
    """resnet18 / resnet50 and the stem from the keys and shapes of a torchvision-layout state dict.

    resnet18: BasicBlocks (2, 2, 2, 2); resnet50: Bottlenecks (``conv3``) (3, 4, 6, 3). The stem is
    CIFAR-style when ``conv1.weight`` is 64x3x3x3 (ImageNet: 64x3x7x7). None when it is neither.
    """
    conv1 = state.get("conv1.weight")
    if conv1 is None or conv1.dim() != 4:
        return None
    blocks = tuple(
        len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.") and k.split(".")[1].isdigit()})
        for i in range(1, 5)
    )
    bottleneck = "layer1.0.conv3.weight" in state
    names = {((2, 2, 2, 2), False): "resnet18", ((3, 4, 6, 3), True): "resnet50"}
    name = names.get((blocks, bottleneck))
    return None if name is None else BackboneSpec(name=name, cifar_stem=conv1.shape[-1] == 3)


def spec_from_run_args(args: dict[str, Any]) -> BackboneSpec:
    """The backbone of a solo-learn run from its ``args.json`` (``backbone``, ``data.dataset``)."""
    backbone = args.get("backbone") or {}
    name = backbone.get("name")
    if not isinstance(name, str):
        raise ZooError(f"args.json has no backbone.name (got {name!r})")
    dataset = (args.get("data") or {}).get("dataset")
    return BackboneSpec(
        name=name,
        kwargs=dict(backbone.get("kwargs") or {}),
        cifar_stem=name.startswith("resnet") and dataset in CIFAR_DATASETS,
    )


def stem_from_weights(spec: BackboneSpec, state: dict[str, torch.Tensor]) -> BackboneSpec:
    """``spec`` with a ResNet's ``cifar_stem`` read off ``conv1.weight`` (3x3: CIFAR, 7x7: ImageNet).

    The weights, not the dataset name or a flag, tell which stem a run really used.
    """
    conv1 = state.get("conv1.weight")
    if spec.name.startswith("resnet") and conv1 is not None and conv1.dim() == 4:
        return replace(spec, cifar_stem=conv1.shape[-1] == 3)
    return spec


def read_run_args(path: str | Path) -> dict[str, Any] | None:
    """solo-learn's ``args.json`` from the directory of ``path``, or None when there is none."""
    args_path = Path(path).parent / "args.json"
    if not args_path.is_file():
        return None
    try:
        return json.loads(args_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ZooError(f"{args_path} is not valid JSON: {err}") from err


def describe_backbone(
    spec: BackboneSpec, *, name: str = "", method: str = "", dataset: str = "", epochs: int | None = None
) -> dict[str, Any]:
    """The metadata document stored with exported weights (safetensors header and ``STEM.json``)."""
    return {
        "format_version": METADATA_VERSION,
        "name": name,
        "method": method,
        "dataset": dataset,
        "epochs": epochs,
        "backbone": spec.to_json(),
    }


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    """The metadata in ``STEM.json`` when it is ours (it has a ``backbone`` object), else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("backbone"), dict) else None


def read_state_dict(
    path: str | Path, prefix: str = "backbone."
) -> tuple[dict[str, torch.Tensor], dict | None]:
    """Backbone weights (prefix removed) of any supported file, and its safetensors header metadata if any."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return split_state_dict(load_torch_file(path), prefix), None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            state = {key: fh.get_tensor(key) for key in fh.keys()}
            header = fh.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise ZooError(f"cannot read {path} as safetensors: {err}") from err
    return state, json.loads(header[METADATA_KEY]) if METADATA_KEY in header else None


@dataclass(frozen=True)
class BackboneWeights:
    """Weights of a backbone (keys without prefix), how to build it, and the method that trained it."""

    state: dict[str, torch.Tensor]
    spec: BackboneSpec
    method: str = ""


def read_backbone(
    path: str | Path, *, prefix: str = "backbone.", backbone: BackboneSpec | None = None
) -> BackboneWeights:
    """Backbone weights and the :class:`BackboneSpec` to build them into, from any supported format.

    ``backbone`` overrides whatever the file's metadata says; without metadata, ResNets are recognised
    from their weights (:func:`infer_resnet`) and anything else is an error asking for ``backbone``.
    """
    path = Path(path)
    state, meta = read_state_dict(path, prefix)
    sidecar = path.with_suffix(".json")
    if meta is None and sidecar.is_file():
        meta = _read_sidecar(sidecar)
    run_args = read_run_args(path) if meta is None else None
    method = str((meta or run_args or {}).get("method") or "")
    if backbone is not None:
        return BackboneWeights(state, backbone, method)
    if meta is not None:
        return BackboneWeights(
            state, BackboneSpec.from_json(meta.get("backbone"), f"{path}: backbone"), method
        )
    if run_args is not None:
        return BackboneWeights(state, stem_from_weights(spec_from_run_args(run_args), state), method)
    inferred = infer_resnet(state)
    if inferred is None:
        raise ZooError(
            f"{path} carries no backbone metadata (no safetensors header, {sidecar.name} or args.json) "
            "and is not a resnet18/resnet50; pass backbone=BackboneSpec(name=..., kwargs=...)"
        )
    return BackboneWeights(state, inferred, method)
