"""The presets' data settings load files in the real on-disk formats through upstream's code path.

Small CIFAR pickles, STL-10 binaries and ImageNet-style JPEG folders are generated per test
(:mod:`tests.presets.formats`); the loaders are built by ``build_pretrain_data`` (the driver of
``solo-directpred pretrain``), i.e. solo-learn's ``prepare_datasets`` / ``prepare_data`` over torchvision.
torchvision's md5 tables are pointed at the generated files for the duration of each test only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import requires_solo
from tests.presets import formats

pytestmark = [requires_solo, pytest.mark.solo]


def _cfg(name: str, root, extra=()):
    from solo.args.pretrain import parse_cfg

    from solo_directpred.sololearn.shared import compose_config

    overrides = [
        f"data.train_path={root}",
        f"data.val_path={root}",
        "data.num_workers=0",
        "optimizer.batch_size=4",
    ]
    return parse_cfg(compose_config(name, [*overrides, *extra]))


def _normalized(images: np.ndarray, mean, std) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W), as ToTensor + Normalize(mean, std)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _check_pretrain_batch(loader, crop: int, labels: list[int]) -> None:
    indices, views, targets = next(iter(loader))
    assert len(views) == 2 and all(v.shape == (4, 3, crop, crop) for v in views)
    assert not torch.equal(views[0], views[1])  # two independent augmentations
    assert targets.tolist() == [labels[i] for i in indices.tolist()]


@pytest.mark.parametrize(("preset", "dataset"), [("cifar", "cifar10"), ("cifar-100", "cifar100")])
def test_cifar_pickles_load_through_the_preset(preset, dataset, tmp_path, monkeypatch):
    from solo_directpred.sololearn.pretrain import build_pretrain_data

    splits = formats.write_cifar(tmp_path, dataset)
    formats.register_md5s(monkeypatch, tmp_path)
    cfg = _cfg(f"pretrain/{preset}/directpred.yaml", tmp_path)
    assert cfg.data.dataset == dataset and cfg.data.num_classes == (10 if dataset == "cifar10" else 100)
    train, val = build_pretrain_data(cfg)
    assert len(train.dataset) == 20 and len(val.dataset) == 8
    _check_pretrain_batch(train, 32, splits["train"][1])
    images, targets = next(iter(val))
    # upstream's CIFAR evaluation transform: ToTensor + Normalize with CIFAR-10 statistics, pixel exact
    expected = _normalized(splits["test"][0][:4], (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))
    torch.testing.assert_close(images, expected, atol=1e-5, rtol=0)
    assert targets.tolist() == splits["test"][1][:4]


def test_cifar_integrity_check_is_real(tmp_path, monkeypatch):
    """A corrupted pickle fails torchvision's md5 check (no download possible): the patch is not a bypass."""
    from solo_directpred.sololearn.pretrain import build_pretrain_data

    formats.write_cifar(tmp_path, "cifar10")
    formats.register_md5s(monkeypatch, tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-1] + b"\x00")
    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", _no_network)
    with pytest.raises(OSError, match="no network"):
        build_pretrain_data(_cfg("pretrain/cifar/directpred.yaml", tmp_path))


def _no_network(*args, **kwargs):
    raise OSError("no network in tests")


def test_stl10_binaries_load_train_plus_unlabeled(tmp_path, monkeypatch):
    from solo_directpred.sololearn.pretrain import build_pretrain_data

    splits = formats.write_stl10(tmp_path)
    formats.register_md5s(monkeypatch, tmp_path)
    cfg = _cfg("pretrain/stl10/directpred.yaml", tmp_path)
    train, val = build_pretrain_data(cfg)
    # pretraining reads train (labelled) + unlabeled, the latter with label -1; evaluation reads test
    labels = splits["train"][1] + [-1] * len(splits["unlabeled"][1])
    assert len(train.dataset) == len(labels) == 10 and len(val.dataset) == 5
    assert train.dataset.labels.tolist() == labels
    _check_pretrain_batch(train, 96, labels)
    images, targets = next(iter(val))
    expected = _normalized(splits["test"][0][:4], (0.4914, 0.4823, 0.4466), (0.247, 0.243, 0.261))
    torch.testing.assert_close(images, expected, atol=1e-5, rtol=0)
    assert targets.tolist() == splits["test"][1][:4]


@pytest.mark.parametrize(("preset", "dataset"), [("imagenet-100", "imagenet100"), ("imagenet", "imagenet")])
def test_image_folders_load_at_224(preset, dataset, tmp_path):
    from solo_directpred.sololearn.pretrain import build_pretrain_data

    written = formats.write_image_folder(tmp_path)
    cfg = _cfg(
        f"pretrain/{preset}/directpred.yaml",
        tmp_path,
        [f"data.train_path={tmp_path / 'train'}", f"data.val_path={tmp_path / 'val'}"],
    )
    train, val = build_pretrain_data(cfg)
    assert train.dataset.classes == written["classes"] and len(train.dataset) == 6
    _check_pretrain_batch(train, 224, [label for _, label in train.dataset.samples])
    images, targets = next(iter(val))
    assert images.shape == (4, 3, 224, 224) and targets.tolist() == [0, 0, 1, 1]
    # BYOL's asymmetric views: only the second pipeline solarises
    assert [aug.solarization.prob for aug in cfg.augmentations] == [0.0, 0.2]


@pytest.mark.parametrize(
    "preset", ["pretrain/imagenet-100/directpred_dali.yaml", "pretrain/imagenet/directpred_dali.yaml"]
)
def test_dali_presets_compose_and_name_the_missing_dependency(preset, tmp_path):
    from solo_directpred.sololearn.methods import ConfigError
    from solo_directpred.sololearn.pretrain import build_pretrain_data

    formats.write_image_folder(tmp_path)
    cfg = _cfg(
        preset, tmp_path, [f"data.train_path={tmp_path / 'train'}", f"data.val_path={tmp_path / 'val'}"]
    )
    assert cfg.data.format == "dali" and cfg.dali.device == "gpu"
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("NVIDIA DALI is installed: the missing-dependency error cannot occur")
    with pytest.raises(
        ConfigError, match=r"data.format='dali' is invalid here: pretraining needs NVIDIA DALI"
    ):
        build_pretrain_data(cfg)


def test_knn_reads_cifar_with_the_linear_preset(tmp_path, monkeypatch):
    """Test images that are copies of training images are their own nearest neighbours: 1-NN is 100 %."""
    from solo_directpred.compat import ensure_torchvision_importable
    from solo_directpred.sololearn.knn import run_knn
    from solo_directpred.sololearn.shared import compose_config

    formats.write_cifar(tmp_path, "cifar10", test_from_train=True)
    formats.register_md5s(monkeypatch, tmp_path)
    ensure_torchvision_importable()
    import torchvision

    torch.manual_seed(0)
    backbone = torchvision.models.resnet18()  # random weights, solo-learn's CIFAR stem
    backbone.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
    backbone.maxpool = torch.nn.Identity()
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items() if not k.startswith("fc.")}
    torch.save({"state_dict": state}, tmp_path / "random.ckpt")
    overrides = [f"data.train_path={tmp_path}", f"data.val_path={tmp_path}", "data.num_workers=0"]
    cfg = compose_config("linear/cifar/directpred.yaml", [*overrides, "accelerator=cpu", "+knn.k=[1]"])
    (result,) = run_knn(cfg, tmp_path / "random.ckpt")
    assert (result.feature_type, result.k, result.distance) == ("backbone", 1, "cosine")
    assert result.acc1 == 100.0
