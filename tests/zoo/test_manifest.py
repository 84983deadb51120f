"""The manifest schema: the shipped manifest is valid; unsafe names and sources are rejected."""

from __future__ import annotations

import dataclasses
import json

import pytest

from solo_directpred.paths import cache_dir, zoo_dir
from solo_directpred.zoo import ManifestError, ZooError, get_entry, load_manifest, validate_manifest
from solo_directpred.zoo.hub import entry_path, url_path
from solo_directpred.zoo.manifest import (
    ZooEntry,
    add_to_manifest,
    check_source,
    manifest_paths,
    read_manifest,
    validate_entry,
)

from .helpers import REVISION, make_entry, write_manifest

HF = f"hf://org/zoo@{REVISION}/net.safetensors"


def _entry(name: str = "net", **overrides) -> dict:
    return make_entry(name, {"backbone": ("net.safetensors", b"weights", [HF])}, **overrides)


def _with_file(**file_overrides) -> dict:
    entry = _entry()
    entry["files"]["backbone"].update(file_overrides)
    return entry


def test_shipped_manifest_is_found_and_valid():
    path = zoo_dir() / "manifest.json"
    assert manifest_paths()[0] == path
    assert validate_manifest(json.loads(path.read_text())) == []
    assert isinstance(read_manifest(path), dict)


def test_valid_entry_round_trips():
    data = _entry(description="resnet18 on CIFAR-10")
    assert validate_entry(data) == []
    entry = ZooEntry.from_json(data)
    assert entry.backbone.cifar_stem is True and entry.results[0].value == 42.5
    assert entry.file("backbone").size == len(b"weights") and entry.versions.solo_learn == "1.0.6"
    assert entry.to_json() == data


@pytest.mark.parametrize(
    "name", ["../evil", "..", ".hidden", "a/b", "a\\b", "/abs", "", "x" * 129, "a..b", "\u00e9", "a\x00b"]
)
def test_names_that_could_escape_the_cache_are_rejected(name):
    problems = validate_entry(_entry(name=name))
    assert any(p.startswith("entry.name:") and "not allowed" in p for p in problems), problems


@pytest.mark.parametrize("filename", ["../../.bashrc", "sub/net.safetensors", "..safetensors", "/etc/passwd"])
def test_filenames_that_could_escape_the_cache_are_rejected(filename):
    problems = validate_entry(_with_file(filename=filename))
    assert any("files.backbone.filename" in p and "inside the cache" in p for p in problems), problems


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/net.safetensors",
        "ftp://example.org/net.safetensors",
        "s3://bucket/net.safetensors",
        "javascript:alert(1)",
        "net.safetensors",
        "HTTP://example.org/x",
    ],
)
def test_sources_with_other_schemes_are_rejected(url):
    problems = validate_entry(_with_file(urls=[url]))
    assert any("files.backbone.urls[0]" in p and "allowed: https, hf, file" in p for p in problems), problems


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("hf://org/zoo@main/net.safetensors", "pin it to a full 40-character commit hash"),
        ("hf://org/zoo/net.safetensors", "must read hf://OWNER/REPO@REVISION/PATH"),
        (f"hf://org/zoo@{REVISION}/../net.safetensors", "'..' path segment"),
        ("file://remote-host/data/net.safetensors", "must be absolute and local"),
        ("file:relative/net.safetensors", "must be absolute and local"),
        ("https:///net.safetensors", "has no host"),
        ("https://example.org/a b", "whitespace"),
    ],
)
def test_malformed_sources_are_rejected_with_a_reason(url, reason):
    assert reason in (check_source(url) or "")


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/zoo/net.safetensors",
        HF,
        "file:///srv/zoo/net.safetensors",
        "file://localhost/x.pt",
    ],
)
def test_allowed_sources_pass(url):
    assert check_source(url) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sha256": "abc"}, "64 lowercase hex characters"),
        ({"sha256": "A" * 64}, "64 lowercase hex characters"),
        ({"size": 0}, "positive number of bytes"),
        ({"size": "7"}, "expected an integer"),
        ({"urls": []}, "at least one source"),
        ({"filename": "net.exe"}, "must end with one of .safetensors, .pt, .pth, .ckpt"),
        ({"md5": "x"}, "unknown key(s) 'md5'"),
    ],
)
def test_file_spec_violations_are_named(change, message):
    problems = validate_entry(_with_file(**change))
    assert any(message in p for p in problems), problems


def test_entry_violations_are_all_reported_at_once():
    data = _entry(epochs=-1, license="", results=[{"protocol": "linear", "metric": "top1", "value": 120.0}])
    data["versions"] = {"solo_learn": "1.0.6"}
    del data["dataset"]
    problems = validate_entry(data)
    assert len(problems) == 5, problems
    for expected in (
        "missing required key 'dataset'",
        "epochs: must be >= 0",
        "license: must not be empty",
        "must lie in [0, 100], got 120.0",
        "entry.versions: missing required key 'solo_directpred'",
    ):
        assert any(expected in p for p in problems), (expected, problems)


def test_unknown_protocol_and_missing_backbone_file_are_rejected():
    data = _entry(results=[{"protocol": "vibes", "metric": "top1", "value": 1}])
    data["files"] = {"checkpoint": data["files"]["backbone"] | {"filename": "net.ckpt"}}
    problems = validate_entry(data)
    assert any("'vibes' is not one of linear, knn, finetune" in p for p in problems)
    assert any("missing required file role 'backbone'" in p for p in problems)


def test_duplicate_names_and_bad_schema_version_are_rejected(tmp_path):
    data = {"schema_version": 2, "checkpoints": [_entry(), _entry()]}
    problems = validate_manifest(data)
    assert any("schema_version: 2 is not supported" in p for p in problems)
    assert any("'net' already used by checkpoints[0]" in p for p in problems)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="invalid zoo manifest") as info:
        read_manifest(path)
    assert len(info.value.problems) == 2


def test_broken_json_is_reported_with_the_path(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("{not json")
    with pytest.raises(ManifestError, match=f"(?s){path}.*not valid JSON"):
        read_manifest(path)


def test_user_manifest_from_the_environment_overrides_by_name(tmp_path, monkeypatch):
    first = write_manifest(tmp_path / "a.json", _entry(epochs=1))
    second = write_manifest(tmp_path / "b.json", _entry(epochs=2), _entry(name="other"))
    monkeypatch.setenv("SOLO_DIRECTPRED_ZOO_MANIFEST", f"{first}:{second}")
    manifest = load_manifest()
    assert sorted(manifest) == ["net", "other"]
    assert manifest["net"].epochs == 2 and manifest["net"].source == str(second)
    with pytest.raises(ZooError, match="unknown checkpoint 'nope'; known checkpoints: net, other"):
        get_entry("nope", manifest)


def test_add_to_manifest_inserts_and_replaces(tmp_path):
    path = tmp_path / "sub" / "m.json"
    add_to_manifest(path, ZooEntry.from_json(_entry(epochs=1)))
    add_to_manifest(path, ZooEntry.from_json(_entry(epochs=3)))
    add_to_manifest(path, ZooEntry.from_json(_entry(name="second")))
    manifest = read_manifest(path)
    assert sorted(manifest) == ["net", "second"] and manifest["net"].epochs == 3
    with pytest.raises(ManifestError, match="has scheme 'http'"):
        ZooEntry.from_json(_with_file(urls=["http://example.org/x.safetensors"]))


def test_cache_locations_follow_the_environment(tmp_path, monkeypatch, zoo_env):
    assert cache_dir() == zoo_env
    monkeypatch.delenv("SOLO_DIRECTPRED_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "solo-directpred"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "solo-directpred"


def test_cache_paths_stay_inside_the_cache(zoo_env):
    entry = ZooEntry.from_json(_entry())
    assert entry_path(entry) == zoo_env / "zoo" / "net" / "net.safetensors"
    # an entry that bypassed validation still cannot write outside the cache
    with pytest.raises(ZooError, match="not a safe file name"):
        entry_path(dataclasses.replace(entry, name=".."))
    path = url_path("https://example.org/a/..%2F..%2Fescape.pt")
    assert path.parent.parent == zoo_env / "urls" and "/" not in path.name and not path.name.startswith(".")


def test_unreadable_manifest_is_a_manifest_error(tmp_path):
    with pytest.raises(ManifestError, match="cannot be read"):
        read_manifest(tmp_path)
    with pytest.raises(ManifestError, match="file not found"):
        read_manifest(tmp_path / "absent.json")
