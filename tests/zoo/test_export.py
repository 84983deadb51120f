"""Export -> publish -> load round trips: the loaded backbone equals the trained one, bit for bit."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from solo_directpred.zoo import (
    BackboneSpec,
    ZooError,
    download,
    export_checkpoint,
    load_backbone,
    load_manifest,
    sha256_file,
    solo_learn_checkpoint,
    solo_state_dict,
)
from solo_directpred.zoo.manifest import add_to_manifest, validate_entry

from .helpers import REVISION, resnet_backbone, write_manifest, write_solo_run

FAST = {"progress": False}


def _assert_same_weights(loaded: torch.nn.Module, reference: torch.nn.Module) -> None:
    ours, theirs = loaded.state_dict(), reference.state_dict()
    assert sorted(ours) == sorted(theirs)
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


def _assert_same_features(loaded: torch.nn.Module, reference: torch.nn.Module, size: int) -> None:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = reference.eval()(x), loaded(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("dataset", "cifar"), [("cifar10", True), ("imagenet100", False)])
def test_export_writes_a_verified_bundle_and_loads_back(tmp_path, dataset, cifar):
    model = resnet_backbone("resnet18", cifar_stem=cifar, seed=1)
    ckpt = write_solo_run(tmp_path / "trained_models" / "byol" / "run", model, dataset=dataset)
    result = export_checkpoint(ckpt, "byol-r18", tmp_path / "out")

    assert result.weights == tmp_path / "out" / "byol-r18" / "byol-r18.safetensors"
    assert result.checkpoint.read_bytes() == ckpt.read_bytes()
    entry = result.entry.to_json()
    assert validate_entry(entry) == []
    assert (entry["method"], entry["dataset"], entry["epochs"]) == ("byol", dataset, 5)
    assert entry["backbone"] == {"name": "resnet18", "kwargs": {}, "cifar_stem": cifar}
    for role, path in (
        ("backbone", result.weights),
        ("checkpoint", result.checkpoint),
        ("metadata", result.metadata),
    ):
        spec = entry["files"][role]
        assert (spec["size"], spec["sha256"]) == (path.stat().st_size, sha256_file(path))
        assert spec["urls"] == [path.resolve().as_uri()]
    assert "checkpoint" not in entry["pretrain_config"]  # no machine paths leak into the manifest
    assert "train_path" not in json.dumps(entry) and "/home/" not in result.metadata.read_text()

    raw = load_file(str(result.weights))
    assert all(t.is_contiguous() for t in raw.values())
    with safe_open(str(result.weights), framework="pt") as fh:
        header = json.loads(fh.metadata()["solo_directpred"])
    assert header["backbone"]["cifar_stem"] is cifar and header["method"] == "byol"

    loaded = load_backbone(result.weights)
    assert not loaded.training
    _assert_same_weights(loaded, model)
    _assert_same_features(loaded, model, 16 if cifar else 32)


def test_momentum_backbone_can_be_exported(tmp_path):
    model = resnet_backbone(seed=2)
    ckpt = write_solo_run(tmp_path / "run", model)
    target = torch.load(ckpt, weights_only=True)["state_dict"]["momentum_backbone.conv1.weight"]
    result = export_checkpoint(
        ckpt, "target", tmp_path / "out", prefix="momentum_backbone.", include_checkpoint=False
    )
    assert result.checkpoint is None and "checkpoint" not in result.entry.to_json()["files"]
    assert list(load_file(str(result.weights))) == ["conv1.weight"]
    assert torch.equal(load_file(str(result.weights))["conv1.weight"], target)


def test_local_file_entry_loads_by_name(tmp_path, monkeypatch, zoo_env):
    model = resnet_backbone(seed=3)
    result = export_checkpoint(write_solo_run(tmp_path / "run", model), "local-r18", tmp_path / "out")
    manifest_path = tmp_path / "my-zoo.json"
    add_to_manifest(manifest_path, result.entry)
    monkeypatch.setenv("SOLO_DIRECTPRED_ZOO_MANIFEST", str(manifest_path))

    loaded = load_backbone("local-r18", progress=False)
    _assert_same_weights(loaded, model)
    cached = zoo_env / "zoo" / "local-r18" / "local-r18.safetensors"
    assert sha256_file(cached) == result.entry.to_json()["files"]["backbone"]["sha256"]


def test_hub_published_bundle_round_trips_through_the_loopback_server(tmp_path, hf_server):
    model = resnet_backbone(seed=4)
    ckpt = write_solo_run(tmp_path / "run", model)
    result = export_checkpoint(ckpt, "hub-r18", tmp_path / "out", hf_repo=f"org/zoo@{REVISION}")
    for path in (result.weights, result.checkpoint, result.metadata):
        hf_server.add_hf("org/zoo", path.name, path.read_bytes())
    assert result.entry.to_json()["files"]["backbone"]["urls"] == [
        f"hf://org/zoo@{REVISION}/hub-r18.safetensors"
    ]
    manifest = load_manifest([write_manifest(tmp_path / "m.json", result.entry.to_json())])

    _assert_same_weights(load_backbone("hub-r18", manifest=manifest, **FAST), model)
    assert download("hub-r18", "checkpoint", manifest=manifest, **FAST).read_bytes() == ckpt.read_bytes()

    state = solo_state_dict("hub-r18", manifest=manifest, **FAST)
    assert all(k.startswith("backbone.") for k in state)
    assert torch.equal(
        state["backbone.layer4.1.bn2.running_var"], model.state_dict()["layer4.1.bn2.running_var"]
    )
    for_linear = solo_learn_checkpoint("hub-r18", manifest=manifest, **FAST)
    assert for_linear.suffix == ".ckpt"
    reread = torch.load(for_linear, map_location="cpu", weights_only=True)["state_dict"]
    assert sorted(reread) == sorted(state) and all(torch.equal(reread[k], v) for k, v in state.items())
    assert solo_learn_checkpoint("hub-r18", manifest=manifest, **FAST) == for_linear
    # each file was downloaded once: the cache served every later call
    assert sorted(r.path.rsplit("/", 1)[-1] for r in hf_server.file_requests if r.method == "GET") == [
        "hub-r18.ckpt",
        "hub-r18.safetensors",
    ]


@pytest.mark.slow
def test_timm_backbone_round_trip(tmp_path):
    timm = pytest.importorskip("timm", reason="timm is not installed")
    torch.manual_seed(5)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, patch_size=8
    )
    kwargs = {"img_size": 32, "patch_size": 8}
    ckpt = write_solo_run(tmp_path / "run", model, arch="vit_tiny", arch_kwargs=kwargs, epoch=9)

    result = export_checkpoint(ckpt, "vit", tmp_path / "out")
    assert result.entry.to_json()["backbone"] == {
        "name": "vit_tiny",
        "kwargs": {"img_size": 32, "patch_size": 8},
        "cifar_stem": False,
    }
    assert result.entry.to_json()["epochs"] == 10
    loaded = load_backbone(result.weights)
    _assert_same_weights(loaded, model)
    _assert_same_features(loaded, model, 32)


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path):
    result = export_checkpoint(write_solo_run(tmp_path / "run", resnet_backbone()), "r18", tmp_path / "out")
    with pytest.raises(ZooError, match="do not fit backbone 'resnet50'.*missing key"):
        load_backbone(result.weights, backbone=BackboneSpec("resnet50"))
    with pytest.raises(
        ZooError, match="do not fit backbone 'resnet18' \\(cifar_stem=False\\).*wrong shape.*conv1.weight"
    ):
        load_backbone(result.weights, backbone=BackboneSpec("resnet18", cifar_stem=False))


def test_export_refuses_bad_arguments(tmp_path):
    ckpt = write_solo_run(tmp_path / "run", resnet_backbone())
    with pytest.raises(ZooError, match="--name '../x' is not allowed"):
        export_checkpoint(ckpt, "../x", tmp_path / "out")
    with pytest.raises(ZooError, match="must be an https:// URL"):
        export_checkpoint(ckpt, "x", tmp_path / "out", url_base="http://example.org/zoo")
    with pytest.raises(ZooError, match="hf_repo 'org/zoo@main'.*pin it to a full 40-character commit hash"):
        export_checkpoint(ckpt, "x", tmp_path / "out", hf_repo="org/zoo@main")
    (tmp_path / "run" / "args.json").unlink()
    torch.save({"state_dict": {"backbone.blocks.0.w": torch.ones(2)}}, ckpt)
    with pytest.raises(ZooError, match="not a resnet18/50: pass --backbone"):
        export_checkpoint(ckpt, "x", tmp_path / "out")
    with pytest.raises(ZooError, match="cannot tell method .* pass --method"):
        export_checkpoint(ckpt, "x", tmp_path / "out", backbone=BackboneSpec("vit_tiny"))


def test_export_without_args_json_infers_a_resnet(tmp_path):
    model = resnet_backbone("resnet18", cifar_stem=True, seed=6)
    ckpt = write_solo_run(tmp_path / "run", model)
    (tmp_path / "run" / "args.json").unlink()
    result = export_checkpoint(ckpt, "bare", tmp_path / "out", method="directpred", dataset="cifar100")
    entry = result.entry
    assert entry.backbone.to_json() == {"name": "resnet18", "kwargs": {}, "cifar_stem": True}
    assert (entry.method, entry.dataset, entry.pretrain_config) == (
        "directpred",
        "cifar100",
        {},
    )
    _assert_same_weights(load_backbone(ckpt), model)


def test_export_is_reproducible_so_republishing_keeps_the_hashes(tmp_path):
    ckpt = write_solo_run(tmp_path / "run", resnet_backbone(seed=8))
    first = export_checkpoint(ckpt, "same", tmp_path / "a")
    second = export_checkpoint(ckpt, "same", tmp_path / "b", hf_repo=f"org/zoo@{REVISION}")
    for role in ("backbone", "checkpoint", "metadata"):
        a, b = first.entry.to_json()["files"][role], second.entry.to_json()["files"][role]
        assert (a["sha256"], a["size"]) == (b["sha256"], b["size"])
        assert a["urls"] != b["urls"]
