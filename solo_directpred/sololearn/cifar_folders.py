"""CIFAR-10/100 given as class folders, read by upstream's unmodified CIFAR code path.

solo-learn reads ``data.dataset: cifar10`` / ``cifar100`` only through torchvision's ``CIFAR10`` /
``CIFAR100`` classes, which check the md5 of the original pickles and otherwise try to download them; its
``custom`` dataset reads folders but keeps the ImageNet stem and upstream's 224-pixel evaluation. With
this module a CIFAR preset (CIFAR stem, 32×32 crops, CIFAR statistics) trains and evaluates on class
folders::

    data.dataset=cifar10 data.format=image_folder data.train_path=DIR/train data.val_path=DIR/test

``DIR/train/<class>/*.png|jpg|…`` and ``DIR/test/<class>/*`` hold 32×32 images, one folder per class
(class indices follow the sorted folder names, as torchvision's ``ImageFolder``). Both paths may also be
``DIR`` itself when it has ``train/`` and ``test/`` (or ``val/``) class-folder subdirectories, as with
the pickles, where both keys point at the same root.

How: at job start (:func:`configure_cifar_folders`, called from
:func:`solo_directpred.sololearn.plugin.configure_job`), when ``data.dataset`` is ``cifar10``/``cifar100``,
``data.format`` is ``image_folder`` and ``data.train_path`` holds class folders, the torchvision class that
solo-learn looks up by name (``torchvision.datasets.CIFAR10`` / ``CIFAR100``) is replaced, for this
process, by :class:`CifarClassFolders`, which takes the same arguments and reads the folders. Pretraining
(``main_pretrain.py``, ``solo-directpred pretrain``), its online classifier, ``main_linear.py`` /
``solo-directpred linear`` and ``solo-directpred knn`` all reach the data through that lookup. A path
holding torchvision's pickle folder (``cifar-10-batches-py`` / ``cifar-100-python``) keeps upstream's
loader. See ``docs/presets.md`` ("CIFAR from class folders").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
PICKLE_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGE_SIZE = 32
SPLIT_FOLDERS = {True: ("train",), False: ("test", "val")}

_originals: dict[str, Any] = {}


def holds_class_folders(path: str | Path | None) -> bool:
    """True when ``path`` is a directory whose subdirectories hold image files (one folder per class)."""
    if path is None or not Path(path).is_dir():
        return False
    classes = [p for p in Path(path).iterdir() if p.is_dir() and not p.name.startswith(".")]
    return bool(classes) and any(
        f.suffix.lower() in IMAGE_SUFFIXES for c in classes for f in c.iterdir() if f.is_file()
    )


def split_root(path: str | Path, train: bool) -> Path:
    """The class-folder root of one split: ``path`` itself, or its ``train/`` (``test/``, ``val/``)."""
    root = Path(path)
    if holds_class_folders(root):
        return root
    for name in SPLIT_FOLDERS[train]:
        if holds_class_folders(root / name):
            return root / name
    wanted = " or ".join(f"{root / name}/<class>/" for name in SPLIT_FOLDERS[train])
    raise FileNotFoundError(f"{root}: no class folders of images here nor under {wanted}")


def make_dataset_class(dataset: str) -> type:
    """The class that stands in for torchvision's ``CIFAR10``/``CIFAR100`` (same constructor arguments)."""
    from PIL import Image

    from solo_directpred.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from torchvision.datasets import ImageFolder

    num_classes = NUM_CLASSES[dataset]

    class CifarClassFolders(ImageFolder):
        """torchvision ``ImageFolder`` over one split's class folders, called like torchvision's CIFAR."""

        def __init__(
            self,
            root: str | Path,
            train: bool = True,
            transform: Any = None,
            target_transform: Any = None,
            download: bool = False,
        ) -> None:
            key = "data.train_path" if train else "data.val_path"
            folder = split_root(root, train)
            super().__init__(str(folder), transform=transform, target_transform=target_transform)
            if len(self.classes) != num_classes:
                raise ValueError(
                    f"{key}={str(root)!r}: data.dataset={dataset} needs {num_classes} class folders, "
                    f"found {len(self.classes)} in {folder}"
                )
            with Image.open(self.samples[0][0]) as image:
                size = image.size
            if size != (IMAGE_SIZE, IMAGE_SIZE):
                raise ValueError(
                    f"{key}={str(root)!r}: data.dataset={dataset} expects {IMAGE_SIZE}x{IMAGE_SIZE} images "
                    f"(the CIFAR stem and upstream's CIFAR transforms), found {size[0]}x{size[1]} in "
                    f"{self.samples[0][0]}; resize them, or use data.dataset=custom with data.eval_crop_size"
                )
            self.train = train

    name = f"{dataset.upper()}ClassFolders"
    CifarClassFolders.__name__ = CifarClassFolders.__qualname__ = name
    globals()[name] = CifarClassFolders  # importable by name, so that pickling the dataset works
    return CifarClassFolders


def _restore() -> None:
    if _originals:
        import torchvision.datasets as tv_datasets

        for name, original in _originals.items():
            setattr(tv_datasets, name, original)
        _originals.clear()


def configure_cifar_folders(config: DictConfig) -> bool:
    """Read CIFAR-10/100 from class folders in this process when the config asks for it.

    Active when ``data.dataset`` is ``cifar10``/``cifar100``, ``data.format`` is ``image_folder``
    (solo-learn's default) and ``data.train_path`` holds class folders (directly, or under ``train/``).
    Otherwise torchvision's classes are left (or put back) as they are. Returns True when active; raises
    ValueError naming the key when only one split is class folders or a split has no class folders.
    """
    _restore()
    dataset = OmegaConf.select(config, "data.dataset", default=None)
    data_format = OmegaConf.select(config, "data.format", default="image_folder")
    train_path = OmegaConf.select(config, "data.train_path", default=None)
    if dataset not in NUM_CLASSES or data_format != "image_folder" or train_path is None:
        return False
    if Path(train_path, PICKLE_FOLDERS[dataset]).is_dir():
        return False
    if not (holds_class_folders(train_path) or holds_class_folders(Path(train_path, "train"))):
        return False
    val_path = OmegaConf.select(config, "data.val_path", default=None)
    if val_path is not None:
        if Path(val_path, PICKLE_FOLDERS[dataset]).is_dir():
            raise ValueError(
                f"data.val_path={str(val_path)!r} holds torchvision's {PICKLE_FOLDERS[dataset]} pickles "
                "while data.train_path holds class folders: give both splits in one format"
            )
        try:
            split_root(val_path, train=False)
        except FileNotFoundError as error:
            raise ValueError(f"data.val_path={str(val_path)!r}: {error}") from None
    import torchvision.datasets as tv_datasets

    name = dataset.upper()
    _originals[name] = getattr(tv_datasets, name)
    setattr(tv_datasets, name, make_dataset_class(dataset))
    return True
