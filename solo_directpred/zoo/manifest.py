"""The zoo manifest: schema, validation and lookup of published checkpoints.

A manifest is a JSON object ``{"schema_version": 1, "checkpoints": [ENTRY, ...]}``; ``zoo/README.md``
documents every field of an entry. The shipped manifest is ``zoo/manifest.json`` (found through
:func:`solo_directpred.paths.zoo_dir`); further manifests listed in the environment variable
``SOLO_DIRECTPRED_ZOO_MANIFEST`` (separated by ``os.pathsep``) are read after it, and their entries
replace shipped entries of the same name.

Validation is strict because an entry decides which bytes land in the user's cache and under which
file name: names and file names are plain tokens (no path separators, no ``..``), sources are
``https://``, ``hf://OWNER/REPO@COMMIT/PATH`` (revision pinned to a 40-hex commit) or explicitly
local ``file:///ABSOLUTE/PATH``; every other scheme is rejected.

Example::

    >>> from solo_directpred.zoo.manifest import load_manifest
    >>> manifest = load_manifest()
    >>> sorted(manifest)  # names of the known checkpoints
    [...]
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from solo_directpred.zoo.errors import ManifestError, ZooError

SCHEMA_VERSION = 1
MANIFEST_FILENAME = "manifest.json"
USER_MANIFEST_ENV = "SOLO_DIRECTPRED_ZOO_MANIFEST"

#: Source schemes an entry may use; ``file`` is the explicitly allowed local scheme.
ALLOWED_SCHEMES = ("https", "hf", "file")
#: File roles inside an entry; ``backbone`` is required, the others optional.
FILE_ROLES = ("backbone", "checkpoint", "metadata")
#: Extensions allowed per role (the loader picks safetensors or ``torch.load(weights_only=True)`` by them).
ROLE_EXTENSIONS = {
    "backbone": (".safetensors", ".pt", ".pth", ".ckpt"),
    "checkpoint": (".ckpt", ".pt", ".pth"),
    "metadata": (".json",),
}
PROTOCOLS = ("linear", "knn", "finetune")

_TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_HF_RE = re.compile(
    r"hf://(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)"
    r"@(?P<revision>[^/]+)/(?P<path>.+)"
)
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")

_ENTRY_REQUIRED = {
    "name": str,
    "method": str,
    "dataset": str,
    "backbone": dict,
    "epochs": int,
    "pretrain_config": dict,
    "results": list,
    "files": dict,
    "versions": dict,
    "license": str,
}
_ENTRY_OPTIONAL = {"description": str}
_FILE_KEYS = {"filename": str, "size": int, "sha256": str, "urls": list}
_RESULT_REQUIRED = {"protocol": str, "metric": str, "value": (int, float)}
_RESULT_OPTIONAL = {"dataset": str, "split": str, "details": str}
_VERSION_KEYS = ("solo_learn", "solo_directpred")


@dataclass(frozen=True)
class BackboneSpec:
    """How to build the network the weights belong to.

    ``name`` is a solo-learn backbone name (``resnet18``, ``resnet50``, ``vit_small``...) or a timm
    model name; ``kwargs`` go to the constructor; ``cifar_stem`` (ResNets only) means solo-learn's
    CIFAR layout: ``conv1`` = 3x3 conv, stride 1, padding 2, no bias, and ``maxpool`` = identity.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    cifar_stem: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": dict(self.kwargs), "cifar_stem": self.cifar_stem}


@dataclass(frozen=True)
class FileSpec:
    """One downloadable file: local ``filename``, exact ``size`` in bytes, full ``sha256``, sources."""

    filename: str
    size: int
    sha256: str
    urls: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"filename": self.filename, "size": self.size, "sha256": self.sha256, "urls": list(self.urls)}


@dataclass(frozen=True)
class EvalResult:
    """One evaluation number: ``value`` (accuracy in %, 0-100) of ``metric`` under ``protocol``."""

    protocol: str
    metric: str
    value: float
    dataset: str | None = None
    split: str | None = None
    details: str | None = None


@dataclass(frozen=True)
class ZooEntry:
    """A validated manifest entry; ``source`` is the manifest file it came from."""

    name: str
    method: str
    dataset: str
    backbone: BackboneSpec
    epochs: int
    pretrain_config: dict[str, Any]
    results: tuple[EvalResult, ...]
    files: dict[str, FileSpec]
    versions: dict[str, str]
    license: str
    description: str = ""
    source: str = ""

    def file(self, role: str = "backbone") -> FileSpec:
        """The :class:`FileSpec` of ``role`` (one of :data:`FILE_ROLES`)."""
        if role not in self.files:
            raise ZooError(
                f"checkpoint {self.name!r} has no {role!r} file; it has: {', '.join(sorted(self.files))}"
            )
        return self.files[role]


def is_safe_token(value: object) -> bool:
    """Whether ``value`` can name a checkpoint or a cached file without leaving its directory.

    Allowed: 1-128 characters from ``[A-Za-z0-9._-]``, starting with a letter or digit, no ``..``.
    """
    return isinstance(value, str) and bool(_TOKEN_RE.fullmatch(value)) and ".." not in value


def check_source(url: object) -> str | None:
    """The reason ``url`` is not an allowed source, or None when it is.

    Allowed: ``https://HOST/...``; ``hf://OWNER/REPO@COMMIT/PATH`` with a 40-hex commit and no ``..``
    segment in ``PATH``; ``file:///ABSOLUTE/PATH`` (local files only).
    """
    if not isinstance(url, str) or not url:
        return f"expected a non-empty URL string, got {url!r}"
    if any(ord(ch) < 33 for ch in url):
        return f"URL {url!r} contains whitespace or control characters"
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        return f"URL {url!r} has scheme {scheme or '(none)'!r}; allowed: {', '.join(ALLOWED_SCHEMES)}"
    if scheme == "https":
        if not urlsplit(url).hostname:
            return f"URL {url!r} has no host"
        return None
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            return f"file URL {url!r} must be absolute and local: file:///ABSOLUTE/PATH"
        return None
    match = _HF_RE.fullmatch(url)
    if match is None:
        return f"Hugging Face reference {url!r} must read hf://OWNER/REPO@REVISION/PATH"
    if not _COMMIT_RE.fullmatch(match["revision"]):
        return (
            f"Hugging Face reference {url!r} has revision {match['revision']!r}; "
            "pin it to a full 40-character commit hash"
        )
    segments = unquote(match["path"]).split("/")
    if any(seg in ("", ".", "..") or "\\" in seg for seg in segments):
        return f"Hugging Face reference {url!r} has an empty, '.' or '..' path segment"
    return None


def parse_hf_reference(url: str) -> tuple[str, str, str]:
    """``hf://OWNER/REPO@REVISION/PATH`` -> ``(OWNER/REPO, REVISION, PATH)``."""
    match = _HF_RE.fullmatch(url)
    if match is None:
        raise ZooError(f"not a Hugging Face reference: {url!r}; expected hf://OWNER/REPO@REVISION/PATH")
    return match["repo"], match["revision"], match["path"]


def _check_keys(
    obj: Mapping[str, Any],
    where: str,
    required: Mapping[str, Any],
    optional: Mapping[str, Any],
    problems: list[str],
) -> None:
    for key, kind in required.items():
        if key not in obj:
            problems.append(f"{where}: missing required key {key!r}")
        elif not _is_type(obj[key], kind):
            problems.append(f"{where}.{key}: expected {_type_name(kind)}, got {obj[key]!r}")
    for key, kind in optional.items():
        if key in obj and not _is_type(obj[key], kind):
            problems.append(f"{where}.{key}: expected {_type_name(kind)}, got {obj[key]!r}")
    unknown = sorted(set(obj) - set(required) - set(optional))
    if unknown:
        allowed = ", ".join(sorted(set(required) | set(optional)))
        problems.append(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {allowed}")


def _is_type(value: object, kind: Any) -> bool:
    if isinstance(value, bool) and kind is not bool:
        return False
    return isinstance(value, kind)


def _type_name(kind: Any) -> str:
    names = {str: "a string", int: "an integer", dict: "an object", list: "a list", bool: "true/false"}
    if isinstance(kind, tuple):
        return "a number"
    return names.get(kind, kind.__name__)


def validate_entry(entry: object, where: str = "entry") -> list[str]:
    """Every schema violation of one manifest entry (an empty list when it is valid)."""
    problems: list[str] = []
    if not isinstance(entry, dict):
        return [f"{where}: expected an object, got {type(entry).__name__}"]
    _check_keys(entry, where, _ENTRY_REQUIRED, _ENTRY_OPTIONAL, problems)
    name = entry.get("name")
    if isinstance(name, str) and not is_safe_token(name):
        problems.append(
            f"{where}.name: {name!r} is not allowed; use 1-128 characters from [A-Za-z0-9._-], "
            "starting with a letter or digit, without '..'"
        )
    for key in ("method", "dataset", "license"):
        if isinstance(entry.get(key), str) and not entry[key].strip():
            problems.append(f"{where}.{key}: must not be empty")
    if isinstance(entry.get("epochs"), int) and not isinstance(entry["epochs"], bool) and entry["epochs"] < 0:
        problems.append(f"{where}.epochs: must be >= 0, got {entry['epochs']}")
    if isinstance(entry.get("backbone"), dict):
        backbone = entry["backbone"]
        _check_keys(
            backbone, f"{where}.backbone", {"name": str}, {"kwargs": dict, "cifar_stem": bool}, problems
        )
        if isinstance(backbone.get("name"), str) and not is_safe_token(backbone["name"]):
            problems.append(f"{where}.backbone.name: {backbone['name']!r} is not a model name")
    if isinstance(entry.get("results"), list):
        for i, result in enumerate(entry["results"]):
            problems.extend(_validate_result(result, f"{where}.results[{i}]"))
    if isinstance(entry.get("files"), dict):
        problems.extend(_validate_files(entry["files"], f"{where}.files"))
    if isinstance(entry.get("versions"), dict):
        versions = entry["versions"]
        for key in _VERSION_KEYS:
            if not isinstance(versions.get(key), str) or not versions.get(key):
                problems.append(
                    f"{where}.versions.{key}: expected a version string, got {versions.get(key)!r}"
                )
        unknown = sorted(set(versions) - set(_VERSION_KEYS))
        if unknown:
            problems.append(
                f"{where}.versions: unknown key(s) {unknown}; allowed: {', '.join(_VERSION_KEYS)}"
            )
    return problems


def _validate_result(result: object, where: str) -> list[str]:
    if not isinstance(result, dict):
        return [f"{where}: expected an object, got {type(result).__name__}"]
    problems: list[str] = []
    _check_keys(result, where, _RESULT_REQUIRED, _RESULT_OPTIONAL, problems)
    if isinstance(result.get("protocol"), str) and result["protocol"] not in PROTOCOLS:
        problems.append(f"{where}.protocol: {result['protocol']!r} is not one of {', '.join(PROTOCOLS)}")
    value = result.get("value")
    if _is_type(value, (int, float)) and not (math.isfinite(value) and 0.0 <= value <= 100.0):
        problems.append(f"{where}.value: accuracy in percent must lie in [0, 100], got {value!r}")
    return problems


def _validate_files(files: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    if "backbone" not in files:
        problems.append(f"{where}: missing required file role 'backbone'")
    unknown = sorted(set(files) - set(FILE_ROLES))
    if unknown:
        problems.append(f"{where}: unknown file role(s) {unknown}; allowed: {', '.join(FILE_ROLES)}")
    filenames: dict[str, str] = {}
    for role in FILE_ROLES:
        if role not in files:
            continue
        spec, at = files[role], f"{where}.{role}"
        if not isinstance(spec, dict):
            problems.append(f"{at}: expected an object, got {type(spec).__name__}")
            continue
        _check_keys(spec, at, _FILE_KEYS, {}, problems)
        filename = spec.get("filename")
        if isinstance(filename, str):
            if not is_safe_token(filename):
                problems.append(
                    f"{at}.filename: {filename!r} is not allowed (it must stay inside the cache): use "
                    "1-128 characters from [A-Za-z0-9._-], starting with a letter or digit, without '..'"
                )
            elif not filename.endswith(ROLE_EXTENSIONS[role]):
                problems.append(
                    f"{at}.filename: {filename!r} must end with one of {', '.join(ROLE_EXTENSIONS[role])}"
                )
            elif filename in filenames:
                problems.append(f"{at}.filename: {filename!r} is also the {filenames[filename]} file")
            filenames[filename] = role
        size = spec.get("size")
        if _is_type(size, int) and size <= 0:
            problems.append(f"{at}.size: must be a positive number of bytes, got {size}")
        sha = spec.get("sha256")
        if isinstance(sha, str) and not _SHA256_RE.fullmatch(sha):
            problems.append(
                f"{at}.sha256: expected the full digest, 64 lowercase hex characters, got {sha!r}"
            )
        urls = spec.get("urls")
        if isinstance(urls, list):
            if not urls:
                problems.append(f"{at}.urls: needs at least one source")
            for j, url in enumerate(urls):
                reason = check_source(url)
                if reason is not None:
                    problems.append(f"{at}.urls[{j}]: {reason}")
    return problems


def validate_manifest(data: object) -> list[str]:
    """Every schema violation of a whole manifest (an empty list when it is valid)."""
    if not isinstance(data, dict):
        return [f"manifest: expected an object, got {type(data).__name__}"]
    problems: list[str] = []
    _check_keys(data, "manifest", {"schema_version": int, "checkpoints": list}, {}, problems)
    version = data.get("schema_version")
    if _is_type(version, int) and version != SCHEMA_VERSION:
        problems.append(
            f"manifest.schema_version: {version} is not supported; this version reads {SCHEMA_VERSION}"
        )
    checkpoints = data.get("checkpoints")
    if not isinstance(checkpoints, list):
        return problems
    seen: dict[str, int] = {}
    for i, entry in enumerate(checkpoints):
        problems.extend(validate_entry(entry, f"checkpoints[{i}]"))
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str):
            if name in seen:
                problems.append(f"checkpoints[{i}].name: {name!r} already used by checkpoints[{seen[name]}]")
            seen.setdefault(name, i)
    return problems


def entry_from_json(data: dict[str, Any], source: str = "") -> ZooEntry:
    """Build a :class:`ZooEntry` from an entry that passed :func:`validate_entry`."""
    problems = validate_entry(data)
    if problems:
        raise ManifestError(source or "entry", problems)
    backbone = data["backbone"]
    return ZooEntry(
        name=data["name"],
        method=data["method"],
        dataset=data["dataset"],
        backbone=BackboneSpec(
            name=backbone["name"],
            kwargs=dict(backbone.get("kwargs", {})),
            cifar_stem=bool(backbone.get("cifar_stem", False)),
        ),
        epochs=data["epochs"],
        pretrain_config=dict(data["pretrain_config"]),
        results=tuple(
            EvalResult(
                protocol=r["protocol"],
                metric=r["metric"],
                value=float(r["value"]),
                dataset=r.get("dataset"),
                split=r.get("split"),
                details=r.get("details"),
            )
            for r in data["results"]
        ),
        files={
            role: FileSpec(
                filename=spec["filename"], size=spec["size"], sha256=spec["sha256"], urls=tuple(spec["urls"])
            )
            for role, spec in data["files"].items()
        },
        versions=dict(data["versions"]),
        license=data["license"],
        description=data.get("description", ""),
        source=source,
    )


def entry_to_json(entry: ZooEntry) -> dict[str, Any]:
    """The manifest form of ``entry`` (inverse of :func:`entry_from_json`)."""
    out: dict[str, Any] = {
        "name": entry.name,
        "method": entry.method,
        "dataset": entry.dataset,
        "backbone": entry.backbone.to_json(),
        "epochs": entry.epochs,
        "pretrain_config": entry.pretrain_config,
        "results": [{k: v for k, v in vars(r).items() if v is not None} for r in entry.results],
        "files": {role: spec.to_json() for role, spec in entry.files.items()},
        "versions": entry.versions,
        "license": entry.license,
    }
    if entry.description:
        out["description"] = entry.description
    return out


def read_manifest(path: str | os.PathLike[str]) -> dict[str, ZooEntry]:
    """Read and validate one manifest file; raises :class:`ManifestError` listing every problem."""
    path = Path(path)
    data = _read_json(path)
    return {e["name"]: entry_from_json(e, str(path)) for e in data["checkpoints"]}


def _read_json(path: Path) -> dict[str, Any]:
    """The validated manifest document in ``path``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ManifestError(str(path), ["file not found"]) from err
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(str(path), [f"cannot be read: {err}"]) from err
    except json.JSONDecodeError as err:
        raise ManifestError(str(path), [f"not valid JSON: {err}"]) from err
    problems = validate_manifest(data)
    if problems:
        raise ManifestError(str(path), problems)
    return data


def manifest_paths() -> list[Path]:
    """The manifests read, in order: the shipped one, then those named by ``SOLO_DIRECTPRED_ZOO_MANIFEST``."""
    from solo_directpred.paths import zoo_dir

    paths = [zoo_dir() / MANIFEST_FILENAME]
    extra = os.environ.get(USER_MANIFEST_ENV, "")
    paths.extend(Path(p).expanduser() for p in extra.split(os.pathsep) if p.strip())
    return paths


def load_manifest(paths: Iterable[str | os.PathLike[str]] | None = None) -> dict[str, ZooEntry]:
    """All known checkpoints by name; later manifests override earlier entries of the same name."""
    entries: dict[str, ZooEntry] = {}
    for path in manifest_paths() if paths is None else paths:
        entries.update(read_manifest(path))
    return entries


def get_entry(name: str, manifest: Mapping[str, ZooEntry] | None = None) -> ZooEntry:
    """The entry called ``name``; the error lists the known names."""
    manifest = load_manifest() if manifest is None else manifest
    if name not in manifest:
        known = ", ".join(sorted(manifest)) or "(none)"
        raise ZooError(f"unknown checkpoint {name!r}; known checkpoints: {known}")
    return manifest[name]


def new_manifest(entries: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """A manifest document holding ``entries`` (JSON form)."""
    return {"schema_version": SCHEMA_VERSION, "checkpoints": list(entries)}


def add_to_manifest(path: str | os.PathLike[str], entry: dict[str, Any]) -> None:
    """Insert or replace ``entry`` (JSON form) in the manifest file ``path``, creating it if needed.

    The result is validated before it is written; the write is atomic.
    """
    path = Path(path)
    data = _read_json(path) if path.exists() else new_manifest()
    data["checkpoints"] = [e for e in data["checkpoints"] if e.get("name") != entry.get("name")] + [entry]
    problems = validate_manifest(data)
    if problems:
        raise ManifestError(str(path), problems)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
