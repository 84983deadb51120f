"""A real solo-learn run (BYOL, two steps, solo-learn's Checkpointer) exported and loaded back."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from solo_directpred.zoo import export_checkpoint, load_backbone, load_torch_file, solo_learn_checkpoint

pytestmark = [
    pytest.mark.solo,
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("solo") is None,
        reason="solo-learn is not importable (install the 'solo' extra from its Git repository to run this)",
    ),
]


@pytest.fixture(scope="module")
def solo_run(tmp_path_factory):
    """Train upstream BYOL for two CPU steps on random 32x32 views; returns (checkpoint, cfg, backbone)."""
    from solo_directpred.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from lightning.pytorch import Trainer
    from omegaconf import OmegaConf
    from solo.methods import BYOL
    from solo.utils.checkpointer import Checkpointer

    root = tmp_path_factory.mktemp("solo")
    cfg = OmegaConf.create(
        {
            "name": "byol-tiny",
            "method": "byol",
            "backbone": {"name": "resnet18"},
            "data": {"dataset": "cifar10", "num_large_crops": 2, "num_small_crops": 0, "num_classes": 10},
            "optimizer": {
                "name": "lars",
                "batch_size": 4,
                "lr": 0.3,
                "classifier_lr": 0.1,
                "weight_decay": 1e-5,
            },
            "scheduler": {"name": "warmup_cosine"},
            "max_epochs": 1,
            "momentum": {"base_tau": 0.99, "final_tau": 1.0},
            "method_kwargs": {"proj_hidden_dim": 32, "proj_output_dim": 16, "pred_hidden_dim": 32},
        }
    )
    OmegaConf.set_struct(cfg, False)
    cfg = BYOL.add_and_assert_specific_cfg(cfg)
    torch.manual_seed(0)
    model = BYOL(cfg)

    class Views(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int):
            return i, [torch.randn(3, 32, 32), torch.randn(3, 32, 32)], i % 10

    trainer = Trainer(
        max_epochs=1,
        limit_train_batches=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
        callbacks=[Checkpointer(cfg, logdir=root / "trained_models" / "byol", frequency=1)],
    )
    trainer.fit(model, torch.utils.data.DataLoader(Views(), batch_size=4))
    (ckpt,) = (root / "trained_models" / "byol").rglob("*.ckpt")
    return ckpt, cfg, model.backbone.eval()


def test_solo_checkpoint_exports_and_loads_equal(solo_run, tmp_path):
    ckpt, _, backbone = solo_run
    assert (ckpt.parent / "args.json").is_file()
    result = export_checkpoint(ckpt, "byol-solo", tmp_path / "out")
    entry = result.entry.to_json()
    assert (entry["method"], entry["dataset"], entry["epochs"]) == ("byol", "cifar10", 1)
    assert entry["backbone"] == {"name": "resnet18", "kwargs": {}, "cifar_stem": True}
    assert entry["pretrain_config"]["method_kwargs"]["proj_output_dim"] == 16
    assert entry["versions"]["solo_learn"] != "unknown"

    loaded = load_backbone(result.weights)
    reference = backbone.state_dict()
    assert sorted(loaded.state_dict()) == sorted(reference)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in reference.items())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), backbone(x), rtol=1e-4, atol=1e-5)
    # the solo-learn checkpoint itself loads directly too (args.json beside it)
    assert torch.equal(load_backbone(ckpt).state_dict()["conv1.weight"], reference["conv1.weight"])


def test_main_linear_style_loading_of_the_converted_file(solo_run, tmp_path):
    from solo.methods.base import BaseMethod
    from torch import nn

    ckpt, _, backbone = solo_run
    result = export_checkpoint(ckpt, "byol-solo", tmp_path / "out", include_checkpoint=False)
    converted = solo_learn_checkpoint(result.weights)
    # the contract of main_linear.py's pretrained_feature_extractor: a .ckpt whose "state_dict" holds
    # backbone.* keys for solo-learn's own backbone (CIFAR stem), read with torch.load's defaults
    net = BaseMethod._BACKBONES["resnet18"]("byol")
    net.fc = nn.Identity()
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
    net.maxpool = nn.Identity()
    state = torch.load(converted, map_location="cpu")["state_dict"]
    assert all(k.startswith("backbone.") for k in state)
    net.load_state_dict({k[len("backbone.") :]: v for k, v in state.items()}, strict=True)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in backbone.state_dict().items())


def test_omegaconf_hyperparameters_in_a_solo_checkpoint(solo_run, tmp_path):
    ckpt, cfg, backbone = solo_run
    raw = load_torch_file(ckpt)
    raw["hyper_parameters"] = {"cfg": cfg}
    lonely = tmp_path / "lonely" / "byol.ckpt"  # no args.json beside it: the config comes from the checkpoint
    lonely.parent.mkdir()
    torch.save(raw, lonely)
    result = export_checkpoint(lonely, "from-hparams", tmp_path / "out")
    assert (result.entry.to_json()["method"], result.entry.to_json()["dataset"]) == ("byol", "cifar10")
    assert json.loads(result.metadata.read_text())["pretrain_config"]["optimizer"]["batch_size"] == 4
    loaded = load_backbone(result.weights).state_dict()
    assert torch.equal(loaded["conv1.weight"], backbone.state_dict()["conv1.weight"])


def test_solo_only_backbone_round_trips(tmp_path):
    """wide_resnet28w2 exists only in solo-learn: the zoo builds it with the constructor the solo-learn
    layer registers (the zoo itself never imports solo-learn)."""
    from solo.methods.base import BaseMethod

    from solo_directpred.sololearn.plugin import register

    from .helpers import write_solo_run

    register()
    torch.manual_seed(0)
    reference = BaseMethod._BACKBONES["wide_resnet28w2"]("byol").eval()
    ckpt = write_solo_run(tmp_path / "run", reference, arch="wide_resnet28w2")
    loaded = load_backbone(export_checkpoint(ckpt, "wrn", tmp_path / "out").weights)
    assert type(loaded) is type(reference)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in reference.state_dict().items())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), reference(x), rtol=1e-4, atol=1e-5)


def test_timm_names_re_registered_by_solo_still_build():
    """Importing solo-learn replaces timm's convnext_tiny entry point with one that rejects timm's
    create_model arguments; the zoo must still build the headless 768-feature ConvNeXt-T."""
    import solo.methods  # noqa: F401 - the import performs the re-registration
    import timm

    from solo_directpred.zoo import BackboneSpec, build_backbone

    assert timm.models.model_entrypoint("convnext_tiny").__module__.startswith("solo.")
    model = build_backbone(BackboneSpec("convnext_tiny"))
    assert type(model).__name__ == "ConvNeXt" and model.num_features == 768 and model.num_classes == 0
    assert sum(p.numel() for p in model.parameters()) == 27_820_128
