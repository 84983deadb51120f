"""Safe checkpoint reading: weights_only loading, the OmegaConf allow-list, prefix handling, inference."""

from __future__ import annotations

import pytest
import torch

from solo_directpred.zoo import UnsafeCheckpointError, ZooError, load_torch_file
from solo_directpred.zoo.checkpoint import infer_resnet, read_backbone, split_state_dict

from .helpers import resnet_backbone

EXECUTED: list[str] = []


class Payload:
    """Unpickling this would run code (``__reduce__`` calls ``EXECUTED.append``)."""

    def __reduce__(self):
        return (EXECUTED.append, ("payload ran",))


def test_plain_lightning_dict_loads_with_weights_only(tmp_path):
    path = tmp_path / "run.ckpt"
    torch.save({"epoch": 3, "state_dict": {"backbone.w": torch.arange(4.0)}, "loops": {}}, path)
    obj = load_torch_file(path)
    assert obj["epoch"] == 3 and torch.equal(obj["state_dict"]["backbone.w"], torch.arange(4.0))


def test_omegaconf_hyperparameters_are_allowed(tmp_path):
    omegaconf = pytest.importorskip("omegaconf", reason="OmegaConf is not installed")
    cfg = omegaconf.OmegaConf.create(
        {"method": "byol", "backbone": {"name": "resnet18"}, "lr": "${x}", "x": 0.5}
    )
    path = tmp_path / "run.ckpt"
    torch.save({"state_dict": {"backbone.w": torch.ones(2)}, "hyper_parameters": {"cfg": cfg}}, path)
    obj = load_torch_file(path)
    loaded = obj["hyper_parameters"]["cfg"]
    assert omegaconf.OmegaConf.to_container(loaded, resolve=True) == {
        "method": "byol",
        "backbone": {"name": "resnet18"},
        "lr": 0.5,
        "x": 0.5,
    }


def test_arbitrary_pickle_is_refused_without_running_it(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"backbone.w": torch.ones(1)}, "extra": Payload()}, path)
    EXECUTED.clear()
    with pytest.raises(UnsafeCheckpointError, match="needs pickle globals builtins.getattr"):
        load_torch_file(path)
    assert EXECUTED == []


def test_unsafe_error_names_the_global(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "extra": torch.nn.Linear(1, 1)}, path)
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.linear.Linear"):
        load_torch_file(path)


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.ckpt"
    path.write_bytes(b"definitely not a zip or pickle")
    with pytest.raises(ZooError, match=f"cannot read {path}"):
        load_torch_file(path)


def test_split_state_dict_prefixes():
    state = {"backbone.a": torch.ones(1), "momentum_backbone.a": torch.zeros(1), "projector.b": torch.ones(2)}
    assert list(split_state_dict({"state_dict": state})) == ["a"]
    assert split_state_dict({"state_dict": state}, "momentum_backbone.")["a"].item() == 0.0
    legacy = {"encoder.a": torch.ones(1), "classifier.w": torch.ones(1)}
    assert list(split_state_dict({"state_dict": legacy})) == ["a"]
    assert list(split_state_dict({"a": torch.ones(1)})) == ["a"]
    with pytest.raises(ZooError, match="no 'backbone.' keys.*\\['classifier', 'projector'\\]"):
        split_state_dict({"state_dict": {"projector.b": torch.ones(1), "classifier.w": torch.ones(1)}})
    with pytest.raises(ZooError, match="expected a Lightning checkpoint"):
        split_state_dict([1, 2])


@pytest.mark.parametrize(("arch", "cifar"), [("resnet18", True), ("resnet18", False), ("resnet50", False)])
def test_resnet_layout_is_inferred_from_the_weights(arch, cifar):
    spec = infer_resnet(resnet_backbone(arch, cifar_stem=cifar).state_dict())
    assert (spec.name, spec.cifar_stem) == (arch, cifar)


def test_unknown_layout_without_metadata_asks_for_the_backbone(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"blocks.0.weight": torch.ones(3)}, path)
    with pytest.raises(ZooError, match="no backbone metadata .* pass backbone="):
        read_backbone(path)


def test_unrelated_json_beside_the_weights_is_ignored(tmp_path):
    model = resnet_backbone("resnet18", cifar_stem=False)
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    (tmp_path / "weights.json").write_text('{"labels": ["cat", "dog"]}')
    weights = read_backbone(path)
    assert (weights.spec.name, weights.spec.cifar_stem, weights.method) == ("resnet18", False, "")
    assert torch.equal(
        weights.state["layer1.0.bn1.running_mean"], model.state_dict()["layer1.0.bn1.running_mean"]
    )


def test_backbones_only_solo_learn_has_need_its_registered_builder(monkeypatch):
    from solo_directpred.zoo import BackboneSpec, ZooError, build_backbone, models

    monkeypatch.setattr(models, "_HOST_BUILDERS", [])
    with pytest.raises(ZooError, match=r"'wide_resnet28w2'.*0 registered.*sololearn\.plugin\.register\(\)"):
        build_backbone(BackboneSpec("wide_resnet28w2"), "byol")
    built = []
    models.register_builder(lambda spec, method: built.append((spec.name, method)) or torch.nn.Identity())
    assert isinstance(build_backbone(BackboneSpec("wide_resnet28w2"), "byol"), torch.nn.Identity)
    assert built == [("wide_resnet28w2", "byol")]
