"""Small datasets written in the real on-disk formats that solo-learn reads through torchvision.

* CIFAR-10 / CIFAR-100: the "python version" pickles (``cifar-10-batches-py/data_batch_1..5``,
  ``test_batch``, ``batches.meta``; ``cifar-100-python/train``, ``test``, ``meta``): dicts with a
  ``data`` array (N, 3072) uint8, channel-major rows, and ``labels`` / ``fine_labels``.
* STL-10: ``stl10_binary/*_X.bin`` uint8 (N, 3, 96, 96) stored column-major per channel, ``*_y.bin``
  1-based uint8 labels, ``class_names.txt``.
* ImageNet-style folders: ``ROOT/SPLIT/CLASS/NAME.JPEG``.

torchvision checks every CIFAR/STL-10 file against an md5 hard-coded in the dataset class. The
generated files cannot match those, so :func:`register_md5s` points the class attributes at the md5s of
the generated files; the tests apply it through ``monkeypatch`` so it is undone after each test.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np

CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _pickle(path: Path, obj: dict) -> None:
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def write_cifar(
    root: Path, dataset: str, n_train: int = 20, n_test: int = 8, seed: int = 0, test_from_train: bool = False
) -> dict:
    """Write CIFAR-10/100 pickles under ``root``; returns images (N, 32, 32, 3) and labels per split.

    ``test_from_train``: the test split is a copy of the first ``n_test`` training images and labels.
    """
    rng = np.random.default_rng(seed)
    classes = 10 if dataset == "cifar10" else 100
    folder = root / CIFAR_FOLDERS[dataset]
    folder.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, classes, size=n).tolist()
        splits[split] = (images, labels)
    if test_from_train:
        splits["test"] = (splits["train"][0][:n_test].copy(), splits["train"][1][:n_test])
    rows = {s: imgs.transpose(0, 3, 1, 2).reshape(len(imgs), 3072) for s, (imgs, _) in splits.items()}
    if dataset == "cifar10":
        batches = np.array_split(np.arange(n_train), 5)
        for i, idx in enumerate(batches, start=1):
            _pickle(
                folder / f"data_batch_{i}",
                {"data": rows["train"][idx], "labels": [splits["train"][1][j] for j in idx]},
            )
        _pickle(folder / "test_batch", {"data": rows["test"], "labels": splits["test"][1]})
        _pickle(folder / "batches.meta", {"label_names": [f"class{c}" for c in range(10)]})
    else:
        for split in ("train", "test"):
            fine = splits[split][1]
            _pickle(
                folder / split,
                {"data": rows[split], "fine_labels": fine, "coarse_labels": [c // 5 for c in fine]},
            )
        _pickle(folder / "meta", {"fine_label_names": [f"class{c}" for c in range(100)]})
    return splits


def write_stl10(root: Path, n_train: int = 4, n_unlabeled: int = 6, n_test: int = 5, seed: int = 0) -> dict:
    """Write the STL-10 binaries under ``root/stl10_binary``; returns images (N, 96, 96, 3) and labels."""
    rng = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, n in (("train", n_train), ("unlabeled", n_unlabeled), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 96, 96, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n)
        # STL-10 stores each channel column-major: (N, C, W, H)
        images.transpose(0, 3, 2, 1).tofile(folder / f"{split}_X.bin")
        if split != "unlabeled":
            (labels + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")
        splits[split] = (images, labels.tolist())
    (folder / "class_names.txt").write_text("\n".join(f"class{c}" for c in range(10)) + "\n")
    return splits


def write_image_folder(
    root: Path, classes: int = 3, per_class: int = 2, size: tuple[int, int] = (48, 64)
) -> dict:
    """Write ``root/{train,val}/nXXXXXXXX/*.JPEG``; returns the sorted class folder names."""
    from PIL import Image

    rng = np.random.default_rng(0)
    names = [f"n{c:08d}" for c in range(classes)]
    for split in ("train", "val"):
        for name in names:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{name}_{i}.JPEG", quality=90)
    return {"classes": names}


def register_md5s(monkeypatch, root: Path) -> None:
    """Point torchvision's CIFAR-10/100 and STL-10 md5 tables at the files generated under ``root``."""
    from solo_directpred.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from torchvision.datasets import CIFAR10, CIFAR100, STL10

    for cls in (CIFAR10, CIFAR100, STL10):
        folder = root / cls.base_folder
        if not folder.is_dir():
            continue
        for attr in ("train_list", "test_list"):
            table = [
                [name, _md5(folder / name)] for name, _ in getattr(cls, attr) if (folder / name).is_file()
            ]
            monkeypatch.setattr(cls, attr, table)
        if hasattr(cls, "meta") and (folder / cls.meta["filename"]).is_file():
            monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / cls.meta["filename"])})
