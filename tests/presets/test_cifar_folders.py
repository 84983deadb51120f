"""CIFAR-10 as class folders through the CIFAR presets: ``data.dataset=cifar10 data.format=image_folder``.

Small 32×32 PNG class folders are generated per test (lossless, so pixels can be compared exactly);
pretraining data, the online classifier's validation data, ``solo-directpred knn`` and upstream's
unmodified ``main_pretrain.py`` / ``main_linear.py`` read them. One test reads the real CIFAR-10 folders
when ``$SOLO_DIRECTPRED_CIFAR10`` points at them (see docs/presets.md, "CIFAR from class folders").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import requires_solo
from tests.presets import formats
from tests.sololearn.helpers import SOLO_LEARN_DIR_ENV, solo_learn_scripts

pytestmark = [requires_solo, pytest.mark.solo]

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
CPU = ['devices="1"', "accelerator=cpu", "strategy=auto", "precision=32", "sync_batchnorm=false"]


def write_class_folders(
    root: Path, per_class: dict[str, int], classes: int = 10, size: int = 32, seed: int = 0
) -> dict[str, tuple[np.ndarray, list[int]]]:
    """``root/<split>/class<c>/<i>.png`` random images; returns (N, size, size, 3) uint8 and labels, in
    ImageFolder order (sorted class folders, sorted files)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = {}
    for split, n in per_class.items():
        images, labels = [], []
        for c in range(classes):
            folder = root / split / f"class{c:03d}"
            folder.mkdir(parents=True)
            for i in range(n):
                image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                Image.fromarray(image).save(folder / f"{i:02d}.png")
                images.append(image)
                labels.append(c)
        out[split] = (np.stack(images), labels)
    return out


def _cfg(name: str, train_path, val_path, extra=()):
    from solo.args.pretrain import parse_cfg

    from solo_directpred.sololearn.shared import compose_config

    overrides = [
        f"data.train_path={train_path}",
        f"data.val_path={val_path}",
        "data.num_workers=0",
        "optimizer.batch_size=4",
    ]
    return parse_cfg(compose_config(name, [*overrides, *extra]))


def _normalized(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)) / torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)


@pytest.fixture
def restore_torchvision():
    """Put torchvision's CIFAR classes back after a test that switched them to class folders."""
    from solo_directpred.sololearn import cifar_folders

    yield
    cifar_folders._restore()


@pytest.mark.parametrize("same_root", [False, True], ids=["split-paths", "one-root"])
def test_cifar_preset_reads_class_folders(tmp_path, same_root, restore_torchvision):
    from solo_directpred.sololearn.plugin import configure_job
    from solo_directpred.sololearn.pretrain import build_method, build_pretrain_data

    splits = write_class_folders(tmp_path, {"train": 2, "test": 1})
    paths = (tmp_path, tmp_path) if same_root else (tmp_path / "train", tmp_path / "test")
    cfg = _cfg("pretrain/cifar/directpred.yaml", *paths)
    configure_job(cfg)
    train, val = build_pretrain_data(cfg)
    assert len(train.dataset) == 20 and len(val.dataset) == 10
    indices, views, targets = next(iter(train))
    assert len(views) == 2 and all(v.shape == (4, 3, 32, 32) for v in views)
    assert targets.tolist() == [splits["train"][1][i] for i in indices.tolist()]
    # the online classifier's validation data: upstream's CIFAR transform, pixel exact, labels by folder
    images, targets = next(iter(val))
    torch.testing.assert_close(images, _normalized(splits["test"][0][:4]), atol=1e-5, rtol=0)
    assert targets.tolist() == splits["test"][1][:4]
    # the dataset stays cifar10, so the backbone keeps solo-learn's CIFAR stem (3×3 stride-1 conv, no pool)
    backbone = build_method(cfg).backbone
    assert backbone.conv1.kernel_size == (3, 3) and backbone.conv1.stride == (1, 1)
    assert isinstance(backbone.maxpool, torch.nn.Identity)


def test_pickles_keep_torchvisions_loader(tmp_path, monkeypatch, restore_torchvision):
    import torchvision.datasets

    from solo_directpred.sololearn.cifar_folders import configure_cifar_folders

    original = torchvision.datasets.CIFAR10
    write_class_folders(tmp_path / "folders", {"train": 1, "test": 1})
    assert configure_cifar_folders(_cfg("pretrain/cifar/directpred.yaml", *[tmp_path / "folders"] * 2))
    assert torchvision.datasets.CIFAR10 is not original
    # the next job points at pickles: torchvision's class is back, md5 check and all
    formats.write_cifar(tmp_path / "pickles", "cifar10")
    assert not configure_cifar_folders(_cfg("pretrain/cifar/directpred.yaml", *[tmp_path / "pickles"] * 2))
    assert torchvision.datasets.CIFAR10 is original


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"classes": 3}, r"data\.train_path=.*data\.dataset=cifar10 needs 10 class folders, found 3"),
        ({"size": 64}, r"data\.train_path=.*expects 32x32 images .* found 64x64"),
    ],
    ids=["class-count", "image-size"],
)
def test_wrong_folders_name_the_key(tmp_path, layout, message, restore_torchvision):
    from solo_directpred.sololearn.plugin import configure_job
    from solo_directpred.sololearn.pretrain import build_pretrain_data

    write_class_folders(tmp_path, {"train": 1, "test": 1}, **layout)
    cfg = _cfg("pretrain/cifar/directpred.yaml", tmp_path / "train", tmp_path / "test")
    configure_job(cfg)
    with pytest.raises(ValueError, match=message):
        build_pretrain_data(cfg)


def test_mixed_formats_name_the_key(tmp_path, restore_torchvision):
    from solo_directpred.sololearn.plugin import configure_job

    write_class_folders(tmp_path, {"train": 1})
    formats.write_cifar(tmp_path / "pickles", "cifar10")
    with pytest.raises(ValueError, match=r"data\.val_path=.*cifar-10-batches-py pickles"):
        configure_job(_cfg("pretrain/cifar/directpred.yaml", tmp_path / "train", tmp_path / "pickles"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"data\.val_path=.*no class folders"):
        configure_job(_cfg("pretrain/cifar/directpred.yaml", tmp_path / "train", tmp_path / "empty"))


def test_knn_reads_class_folders(tmp_path, restore_torchvision):
    """Test images that are copies of training images are their own nearest neighbours: 1-NN is 100 %."""
    from solo_directpred.compat import ensure_torchvision_importable
    from solo_directpred.sololearn.knn import run_knn
    from solo_directpred.sololearn.shared import compose_config

    write_class_folders(tmp_path, {"train": 2})
    shutil.copytree(tmp_path / "train", tmp_path / "test")
    ensure_torchvision_importable()
    import torchvision

    torch.manual_seed(0)
    backbone = torchvision.models.resnet18()  # random weights, solo-learn's CIFAR stem
    backbone.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
    backbone.maxpool = torch.nn.Identity()
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items() if not k.startswith("fc.")}
    torch.save({"state_dict": state}, tmp_path / "random.ckpt")
    overrides = [f"data.train_path={tmp_path / 'train'}", f"data.val_path={tmp_path / 'test'}"]
    cfg = compose_config(
        "linear/cifar/directpred.yaml", [*overrides, "data.num_workers=0", "accelerator=cpu", "+knn.k=[1]"]
    )
    (result,) = run_knn(cfg, tmp_path / "random.ckpt")
    assert (result.feature_type, result.k) == ("backbone", 1)
    assert result.acc1 == 100.0


# -------------------------------------------------------------------------------- upstream's own scripts
def _upstream(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, str(solo_learn_scripts() / script), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.skipif(
    solo_learn_scripts() is None,
    reason=f"upstream's main_pretrain.py not found: set {SOLO_LEARN_DIR_ENV} to a solo-learn checkout",
)
def test_upstream_scripts_pretrain_and_evaluate_on_class_folders(tmp_path):
    """Unmodified main_pretrain.py then main_linear.py on folders; no pickles exist, so torchvision's
    loader (md5 check, then a download attempt) cannot be what read the data."""
    write_class_folders(tmp_path / "data", {"train": 2, "test": 1})
    data = [f"data.train_path={tmp_path / 'data' / 'train'}", f"data.val_path={tmp_path / 'data' / 'test'}"]
    common = [*data, "data.num_workers=0", "optimizer.batch_size=4", "max_epochs=1", *CPU]
    common += ["+limit_train_batches=2", "+limit_val_batches=1", "+enable_progress_bar=false"]
    pretrain = _upstream(
        "main_pretrain.py",
        ["--config-name", "pretrain/cifar/directpred.yaml", *common, "auto_resume.enabled=false"],
        tmp_path,
    )
    assert pretrain.returncode == 0, pretrain.stderr[-3000:]
    (ckpt,) = (tmp_path / "trained_models").rglob("*.ckpt")
    linear = _upstream(
        "main_linear.py",
        [
            "--config-name",
            "linear/cifar/directpred.yaml",
            *common,
            f"pretrained_feature_extractor='{ckpt}'",
            f"checkpoint.dir={tmp_path / 'linear'}",
        ],
        tmp_path,
    )
    assert linear.returncode == 0, linear.stderr[-3000:]
    (linear_ckpt,) = (tmp_path / "linear").rglob("*.ckpt")
    state = torch.load(linear_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    pretrained = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert state["classifier.weight"].shape == (10, 512)
    assert state["backbone.conv1.weight"].shape == (64, 3, 3, 3)  # the CIFAR stem
    assert torch.equal(state["backbone.conv1.weight"], pretrained["backbone.conv1.weight"])


# ---------------------------------------------------------------------------------------- the real data
REAL = os.environ.get("SOLO_DIRECTPRED_CIFAR10", "")


@pytest.mark.skipif(
    not (REAL and Path(REAL, "train").is_dir() and Path(REAL, "test").is_dir()),
    reason="set SOLO_DIRECTPRED_CIFAR10 to CIFAR-10 as class folders (train/<class>/, test/<class>/)",
)
def test_real_cifar10_folders(restore_torchvision):
    from solo_directpred.sololearn.plugin import configure_job
    from solo_directpred.sololearn.pretrain import build_pretrain_data

    cfg = _cfg("pretrain/cifar/directpred.yaml", REAL, REAL)
    configure_job(cfg)
    train, val = build_pretrain_data(cfg)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert train.dataset.classes == names and val.dataset.classes == names
    assert len(train.dataset) == 50_000 and len(val.dataset) == 10_000
    assert np.bincount(val.dataset.targets).tolist() == [1000] * 10
    _, views, _ = next(iter(train))
    assert all(v.shape == (4, 3, 32, 32) for v in views)
