"""``solo-directpred zoo ...`` end to end: export, list, info, download, verify."""

from __future__ import annotations

import json

import pytest

from solo_directpred.cli import main
from solo_directpred.zoo import sha256_file
from solo_directpred.zoo.manifest import read_manifest, validate_entry

from .helpers import resnet_backbone, write_solo_run


@pytest.fixture
def exported(tmp_path, monkeypatch, capsys):
    """A run exported with ``zoo export --add-to``, that manifest active; returns (entry, manifest path)."""
    ckpt = write_solo_run(tmp_path / "trained_models" / "byol" / "run", resnet_backbone(seed=7))
    manifest = tmp_path / "my-zoo.json"
    argv = ["zoo", "export", str(ckpt), "--name", "byol-c10", "--out", str(tmp_path / "out")]
    argv += ["--result", "linear:top1=55.5", "--result", "knn:top1=50", "--add-to", str(manifest)]
    assert main(argv) == 0
    entry = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("SOLO_DIRECTPRED_ZOO_MANIFEST", str(manifest))
    return entry, manifest


def test_export_prints_a_valid_entry_and_adds_it(exported):
    entry, manifest = exported
    assert validate_entry(entry) == []
    assert [(r["protocol"], r["value"]) for r in entry["results"]] == [("linear", 55.5), ("knn", 50.0)]
    assert (
        read_manifest(manifest)["byol-c10"].files["backbone"].sha256 == entry["files"]["backbone"]["sha256"]
    )


def test_list_info_download_verify_cycle(exported, capsys, zoo_env):
    entry, _ = exported
    assert main(["zoo", "list"]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "METHOD", "DATASET", "BACKBONE"]
    assert row.split() == ["byol-c10", "byol", "cifar10", "resnet18", "5", "55.50", *row.split()[6:8], "no"]

    assert main(["zoo", "download", "byol-c10", "--role", "all", "--quiet"]) == 0
    paths = capsys.readouterr().out.split()
    assert len(paths) == 3 and all(p.startswith(str(zoo_env / "zoo" / "byol-c10")) for p in paths)
    weights = zoo_env / "zoo" / "byol-c10" / "byol-c10.safetensors"
    assert sha256_file(weights) == entry["files"]["backbone"]["sha256"]

    assert main(["zoo", "info", "byol-c10"]) == 0
    info = capsys.readouterr().out
    assert (
        "resnet18 {}, CIFAR stem" in info and "linear top1 = 55.50" in info and info.count("cache: ok") == 3
    )

    assert main(["zoo", "verify"]) == 0
    assert "cache: 3 ok, 0 not downloaded, 0 corrupt" in capsys.readouterr().out

    weights.write_bytes(b"tampered")
    assert main(["zoo", "verify", "byol-c10"]) == 1
    out = capsys.readouterr().out
    assert f"corrupt  byol-c10 [backbone] {weights}" in out and "1 corrupt" in out

    assert main(["zoo", "download", "byol-c10", "--quiet"]) == 0
    capsys.readouterr()
    assert sha256_file(weights) == entry["files"]["backbone"]["sha256"]

    assert main(["zoo", "info", "byol-c10", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["cache"]["backbone"]["status"] == "ok" and doc["epochs"] == 5


def test_errors_exit_with_1_and_say_why(exported, tmp_path, capsys):
    assert main(["zoo", "info", "nope"]) == 1
    assert "unknown checkpoint 'nope'; known checkpoints: byol-c10" in capsys.readouterr().err

    ckpt = next((tmp_path / "trained_models").rglob("*.ckpt"))
    assert main(["zoo", "export", str(ckpt), "--name", "x", "--result", "linear=3"]) == 1
    assert "--result 'linear=3' must read PROTOCOL:METRIC=VALUE" in capsys.readouterr().err

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": 1, "checkpoints": [{"name": "../up"}]}))
    assert main(["zoo", "verify", "--manifest", str(bad)]) == 1
    assert "checkpoints[0].name: '../up' is not allowed" in capsys.readouterr().err


def test_list_json_matches_the_shipped_manifest(capsys):
    from solo_directpred.paths import zoo_dir

    shipped = read_manifest(zoo_dir() / "manifest.json")
    assert main(["zoo", "list", "--json"]) == 0
    assert [e["name"] for e in json.loads(capsys.readouterr().out)] == sorted(shipped)
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no checkpoints in ") if not shipped else all(name in out for name in shipped)
