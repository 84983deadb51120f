"""The zoo manifest: one schema, written once, and the lookup of published checkpoints.

A manifest is a JSON object ``{"schema_version": 1, "checkpoints": [ENTRY, ...]}``; ``zoo/README.md``
documents every field. Each dataclass below *is* the schema of its JSON object: a field without a
default is a required key, its type hint is the JSON type, ``rule`` metadata adds what a type cannot say,
and :meth:`Schema.from_json` / :meth:`Schema.to_json` map it to and from JSON, collecting every
violation with its JSON path.

The shipped manifest is ``zoo/manifest.json`` (found through :func:`solo_directpred.paths.zoo_dir`);
manifests listed in ``SOLO_DIRECTPRED_ZOO_MANIFEST`` (separated by ``os.pathsep``) are read after it,
and their entries replace shipped entries of the same name.

Validation is strict because an entry decides which bytes land in the user's cache and under which
file name: names and file names are plain tokens (no path separators, no ``..``), sources are
``https://``, ``hf://OWNER/REPO@COMMIT/PATH`` (revision pinned to a 40-hex commit) or explicitly
local ``file:///ABSOLUTE/PATH``; every other scheme is rejected.

Example::

    >>> from solo_directpred.zoo.manifest import load_manifest
    >>> sorted(load_manifest())  # names of the known checkpoints
    [...]
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
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
_TOKEN_RULE = "use 1-128 characters from [A-Za-z0-9._-], starting with a letter or digit, without '..'"
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false"}


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
    parts = urlsplit(url)
    if parts.scheme not in ALLOWED_SCHEMES:
        return f"URL {url!r} has scheme {parts.scheme or '(none)'!r}; allowed: {', '.join(ALLOWED_SCHEMES)}"
    if parts.scheme == "https":
        return None if parts.hostname else f"URL {url!r} has no host"
    if parts.scheme == "file":
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
    if any(seg in ("", ".", "..") or "\\" in seg for seg in unquote(match["path"]).split("/")):
        return f"Hugging Face reference {url!r} has an empty, '.' or '..' path segment"
    return None


def parse_hf_reference(url: str) -> tuple[str, str, str]:
    """``hf://OWNER/REPO@REVISION/PATH`` -> ``(OWNER/REPO, REVISION, PATH)``."""
    match = _HF_RE.fullmatch(url)
    if match is None:
        raise ZooError(f"not a Hugging Face reference: {url!r}; expected hf://OWNER/REPO@REVISION/PATH")
    return match["repo"], match["revision"], match["path"]


# --------------------------------------------------------------------------------------------------
# value rules: (value, JSON path) -> the violations


def _check(ok: Callable[[Any], object], reason: str) -> Callable[[Any, str], list[str]]:
    """A rule passing the values ``ok`` accepts; for others it says ``reason`` (``{value}`` filled in)."""
    return lambda value, at: [] if ok(value) else [f"{at}: " + reason.format(value=value)]


_safe_token = _check(
    is_safe_token, "{value!r} is not allowed (it names a folder or file inside the cache): " + _TOKEN_RULE
)
_not_empty = _check(lambda text: text.strip(), "must not be empty")
_non_negative = _check(lambda n: n >= 0, "must be >= 0, got {value}")
_positive_size = _check(lambda n: n > 0, "must be a positive number of bytes, got {value}")
_full_sha256 = _check(
    _SHA256_RE.fullmatch, "expected the full digest, 64 lowercase hex characters, got {value!r}"
)
_protocol = _check(PROTOCOLS.__contains__, "{value!r} is not one of " + ", ".join(PROTOCOLS))
_percent = _check(
    lambda v: math.isfinite(v) and 0.0 <= v <= 100.0,
    "accuracy in percent must lie in [0, 100], got {value!r}",
)
_supported_version = _check(
    SCHEMA_VERSION.__eq__, "{value} is not supported; this version reads " + str(SCHEMA_VERSION)
)


def _sources(value: tuple[str, ...], at: str) -> list[str]:
    problems = [] if value else [f"{at}: needs at least one source"]
    reasons = ((j, check_source(url)) for j, url in enumerate(value))
    return problems + [f"{at}[{j}]: {reason}" for j, reason in reasons if reason is not None]


def _file_roles(files: dict[str, FileSpec], at: str) -> list[str]:
    problems = [] if "backbone" in files else [f"{at}: missing required file role 'backbone'"]
    unknown = sorted(set(files) - set(FILE_ROLES))
    if unknown:
        problems.append(f"{at}: unknown file role(s) {unknown}; allowed: {', '.join(FILE_ROLES)}")
    owners: dict[str, str] = {}
    for role, spec in files.items():
        if role not in ROLE_EXTENSIONS:
            continue
        if not spec.filename.endswith(ROLE_EXTENSIONS[role]):
            allowed = ", ".join(ROLE_EXTENSIONS[role])
            problems.append(f"{at}.{role}.filename: {spec.filename!r} must end with one of {allowed}")
        elif spec.filename in owners:
            problems.append(
                f"{at}.{role}.filename: {spec.filename!r} is also the {owners[spec.filename]} file"
            )
        owners.setdefault(spec.filename, role)
    return problems


def _unique_names(entries: tuple[ZooEntry, ...], at: str) -> list[str]:
    problems, seen = [], {}
    for i, entry in enumerate(entries):
        if entry.name in seen:
            problems.append(f"{at}[{i}].name: {entry.name!r} already used by {at}[{seen[entry.name]}]")
        seen.setdefault(entry.name, i)
    return problems


def _rule(check: Callable[[Any, str], list[str]]) -> Any:
    """A required dataclass field whose parsed value must also pass ``check``."""
    return field(metadata={"rule": check})


# --------------------------------------------------------------------------------------------------
# the schema


class Schema:
    """JSON mapping of a dataclass: fields are keys (no default = required), type hints are JSON types."""

    @classmethod
    def from_json(cls, data: object, where: str = "", problems: list[str] | None = None) -> Any:
        """The object ``data`` describes; violations go to ``problems`` (then None is returned), or,
        when ``problems`` is not given, are raised together as :class:`ManifestError`."""
        label = where or cls.__name__
        if problems is None:
            problems = []
            value = cls.from_json(data, where, problems)
            if problems:
                raise ManifestError(label, problems)
            return value
        if not isinstance(data, dict):
            problems.append(f"{label}: expected an object, got {type(data).__name__}")
            return None
        start = len(problems)
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("json", True)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            allowed = ", ".join(sorted(fields))
            problems.append(f"{label}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {allowed}")
        values = {}
        for name, spec in fields.items():
            at = f"{where}.{name}" if where else name
            if name not in data:
                if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                    problems.append(f"{label}: missing required key {name!r}")
                continue
            before = len(problems)
            value = _from_json(hints[name], data[name], at, problems)
            if len(problems) == before:
                problems.extend(spec.metadata.get("rule", lambda *_: [])(value, at))
            values[name] = value
        return cls(**values) if len(problems) == start else None

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this value (optional keys holding None or ``""`` are left out)."""
        values = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("json", True)
        }
        return {name: _to_json(value) for name, value in values.items() if value is not None and value != ""}


def _from_json(hint: Any, value: object, at: str, problems: list[str]) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # ``X | None``: the key is optional, None is not JSON
        return _from_json(next(a for a in args if a is not type(None)), value, at, problems)
    if isinstance(hint, type) and issubclass(hint, Schema):
        return hint.from_json(value, at, problems)
    kind = {tuple: list}.get(origin, origin or hint)
    if kind is Any or (isinstance(value, kind) and (hint is bool or not isinstance(value, bool))):
        pass
    elif hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    else:
        expected = {list: "a list", dict: "an object"}.get(kind) or _TYPE_NAMES[hint]
        problems.append(f"{at}: expected {expected}, got {value!r}")
        return None
    if origin is tuple:
        return tuple(_from_json(args[0], v, f"{at}[{i}]", problems) for i, v in enumerate(value))
    if origin is dict:
        return {k: _from_json(args[1], v, f"{at}.{k}", problems) for k, v in value.items()}
    return value


def _to_json(value: Any) -> Any:
    if isinstance(value, Schema):
        return value.to_json()
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class BackboneSpec(Schema):
    """How to build the network the weights belong to.

    ``name`` is a solo-learn backbone name (``resnet18``, ``resnet50``, ``vit_small``...) or a timm
    model name; ``kwargs`` go to the constructor; ``cifar_stem`` (ResNets only) means solo-learn's
    CIFAR layout: ``conv1`` = 3x3 conv, stride 1, padding 2, no bias, and ``maxpool`` = identity.
    """

    name: str = _rule(_safe_token)
    kwargs: dict[str, Any] = field(default_factory=dict)
    cifar_stem: bool = False


@dataclass(frozen=True)
class FileSpec(Schema):
    """One downloadable file: local ``filename``, exact ``size`` in bytes, full ``sha256``, sources."""

    filename: str = _rule(_safe_token)
    size: int = _rule(_positive_size)
    sha256: str = _rule(_full_sha256)
    urls: tuple[str, ...] = _rule(_sources)


@dataclass(frozen=True)
class EvalResult(Schema):
    """One evaluation number: ``value`` (accuracy in %, 0-100) of ``metric`` under ``protocol``."""

    protocol: str = _rule(_protocol)
    metric: str
    value: float = _rule(_percent)
    dataset: str | None = None
    split: str | None = None
    details: str | None = None


@dataclass(frozen=True)
class Versions(Schema):
    """Versions of solo-learn and of this package the checkpoint was trained with."""

    solo_learn: str = _rule(_not_empty)
    solo_directpred: str = _rule(_not_empty)


@dataclass(frozen=True)
class ZooEntry(Schema):
    """A manifest entry; ``source`` (not part of the JSON) is the manifest file it came from."""

    name: str = _rule(_safe_token)
    method: str = _rule(_not_empty)
    dataset: str = _rule(_not_empty)
    backbone: BackboneSpec
    epochs: int = _rule(_non_negative)
    pretrain_config: dict[str, Any]
    results: tuple[EvalResult, ...]
    files: dict[str, FileSpec] = _rule(_file_roles)
    versions: Versions
    license: str = _rule(_not_empty)
    description: str = ""
    source: str = field(default="", metadata={"json": False})

    def file(self, role: str = "backbone") -> FileSpec:
        """The :class:`FileSpec` of ``role`` (one of :data:`FILE_ROLES`)."""
        if role not in self.files:
            raise ZooError(
                f"checkpoint {self.name!r} has no {role!r} file; it has: {', '.join(sorted(self.files))}"
            )
        return self.files[role]


@dataclass(frozen=True)
class Manifest(Schema):
    """A whole manifest document."""

    schema_version: int = _rule(_supported_version)
    checkpoints: tuple[ZooEntry, ...] = _rule(_unique_names)


def validate_entry(data: object, where: str = "entry") -> list[str]:
    """Every schema violation of one manifest entry (an empty list when it is valid)."""
    problems: list[str] = []
    ZooEntry.from_json(data, where, problems)
    return problems


def validate_manifest(data: object) -> list[str]:
    """Every schema violation of a whole manifest (an empty list when it is valid)."""
    problems: list[str] = []
    Manifest.from_json(data, "", problems)
    return problems


def _read_json(path: Path) -> dict[str, Any]:
    """The manifest document in ``path``, validated."""
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


def read_manifest(path: str | os.PathLike[str]) -> dict[str, ZooEntry]:
    """Read and validate one manifest file; raises :class:`ManifestError` listing every problem."""
    path = Path(path)
    manifest = Manifest.from_json(_read_json(path))
    return {e.name: dataclasses.replace(e, source=str(path)) for e in manifest.checkpoints}


def manifest_paths() -> list[Path]:
    """The manifests read, in order: the shipped one, then those named by ``SOLO_DIRECTPRED_ZOO_MANIFEST``."""
    from solo_directpred.paths import zoo_dir

    extra = os.environ.get(USER_MANIFEST_ENV, "")
    return [zoo_dir() / MANIFEST_FILENAME] + [
        Path(p).expanduser() for p in extra.split(os.pathsep) if p.strip()
    ]


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


def add_to_manifest(path: str | os.PathLike[str], entry: ZooEntry) -> None:
    """Insert or replace ``entry`` in the manifest file ``path``, creating it if needed (atomic write)."""
    from solo_directpred.zoo.transfer import write_atomically

    path = Path(path)
    data = _read_json(path) if path.exists() else {"schema_version": SCHEMA_VERSION, "checkpoints": []}
    others = [e for e in data["checkpoints"] if e["name"] != entry.name]
    data["checkpoints"] = [*others, entry.to_json()]
    with write_atomically(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
