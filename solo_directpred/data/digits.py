"""scikit-learn's handwritten digits as an image-folder dataset (the embedded default's data).

``load_digits`` ships with scikit-learn: 1,797 grey 8×8 images of the digits 0–9, values 0–16. They are
written once, upscaled to ``size``×``size`` RGB PNGs, in the ``ImageFolder`` layout solo-learn reads for
``data.dataset: custom``::

    ROOT/digits-16/train/<digit>/<index>.png     (80 %, stratified, seed 0)
    ROOT/digits-16/val/<digit>/<index>.png       (20 %)

ROOT is ``$SOLO_DIRECTPRED_CACHE/datasets`` (default ``~/.cache/solo-directpred/datasets``). The files are
written to a temporary folder and moved into place, under a file lock, so parallel processes (DDP ranks)
neither collide nor see a half-written dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

SPLITS = ("train", "val")
#: Per-channel mean and std of the upscaled training images, in [0, 1] units (the RGB channels are equal).
DIGITS_MEAN = (0.3055, 0.3055, 0.3055)
DIGITS_STD = (0.3187, 0.3187, 0.3187)
_MARKER = "dataset.json"


def datasets_root() -> Path:
    """Folder holding the prepared datasets (under the plugin's cache)."""
    from solo_directpred.paths import cache_dir

    return cache_dir() / "datasets"


def _split_indices(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, val = [], []
    for digit in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        n_val = int(round(val_fraction * len(idx)))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _write(
    images: np.ndarray, labels: np.ndarray, indices: np.ndarray, folder: Path, size: int, desc: str
) -> None:
    from PIL import Image
    from tqdm.auto import tqdm

    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
    for i in tqdm(indices, desc=desc, unit="img", leave=False, file=sys.stderr):
        grey = Image.fromarray((images[i] * (255.0 / 16.0)).round().astype(np.uint8), mode="L")
        grey.resize((size, size), Image.BILINEAR).convert("RGB").save(
            folder / str(labels[i]) / f"{i:04d}.png"
        )


def prepare_digits(split: str = "train", size: int = 16, root: str | os.PathLike | None = None) -> Path:
    """Return the folder of one split, writing the whole dataset on first use (cached afterwards).

    Args:
        split: "train" or "val".
        size: side of the written images in pixels (8 keeps the native resolution), 8 ≤ size ≤ 256.
        root: parent folder; default :func:`datasets_root`.

    Returns:
        Path of ``ROOT/digits-SIZE/SPLIT`` (an ``ImageFolder`` with one sub-folder per digit).
    """
    if split not in SPLITS:
        raise ValueError(f"digits split must be one of {SPLITS}, got {split!r}")
    if not isinstance(size, int) or not 8 <= size <= 256:
        raise ValueError(f"digits image size must be an integer in [8, 256], got {size!r}")
    from filelock import FileLock

    base = Path(root) if root is not None else datasets_root()
    target = base / f"digits-{size}"
    if (target / _MARKER).is_file():
        return target / split
    base.mkdir(parents=True, exist_ok=True)
    with FileLock(str(base / f"digits-{size}.lock")):
        if (target / _MARKER).is_file():  # another process finished it while we waited
            return target / split
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images, labels = bunch.images, bunch.target
        train_idx, val_idx = _split_indices(labels, val_fraction=0.2, seed=0)
        print(
            f"solo-directpred: preparing scikit-learn digits ({len(labels)} images, {size}x{size}) "
            f"in {target} (first use only)",
            file=sys.stderr,
            flush=True,
        )
        tmp = Path(tempfile.mkdtemp(prefix=f".digits-{size}-", dir=base))
        try:
            _write(images, labels, train_idx, tmp / "train", size, "digits train")
            _write(images, labels, val_idx, tmp / "val", size, "digits val")
            meta = {
                "source": "sklearn.datasets.load_digits",
                "size": size,
                "train": len(train_idx),
                "val": len(val_idx),
            }
            (tmp / _MARKER).write_text(json.dumps(meta, indent=2))
            if target.exists():
                shutil.rmtree(target)  # an incomplete earlier attempt (no marker)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target / split
