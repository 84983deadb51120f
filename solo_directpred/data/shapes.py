"""Procedural shapes: a small, seeded image-classification set on which pixels alone say little.

Each image shows one of :data:`SHAPE_CLASSES` (the label) at a random position and scale, filled with a
random colour and texture (solid, stripes, checks or noise) on a random, noisy colour-gradient background.
Colour, texture, position and scale are nuisances drawn independently of the label, so a randomly
initialised backbone, which mostly encodes colour and position, classifies poorly, while features
invariant to colour and crop (what the augmentations of self-supervised learning ask for) separate the
classes. Every image is a function of ``(seed, index)``, so a split is reproduced exactly from its seed;
nothing needs to be stored.

Each class has exactly ``n_per_class`` images; the order is a seeded permutation. Shapes are drawn
4× supersampled and box-filtered (anti-aliased).

    python -m solo_directpred.data.shapes --out DIR          # DIR/train/<class>/*.png, DIR/val/<class>/*.png

writes the ``ImageFolder`` layout solo-learn reads with ``data.dataset: custom`` (plus ``dataset.json``
with the per-channel mean and std of the training images).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SHAPE_CLASSES = ("disk", "ring", "square", "frame", "triangle", "diamond", "plus", "cross")
TEXTURES = ("solid", "stripes", "checks", "noise")
SPLITS = ("train", "val")
_SUPERSAMPLE = 4
#: Offset between the seeds of the splits, so train and val never share an image.
_SPLIT_SEED = {"train": 0, "val": 1}


def _mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of one shape in its own frame: u, v in [-1, 1] (v points down); bool array."""
    a, b = np.abs(u), np.abs(v)
    if kind == "disk":
        return u * u + v * v < 1.0
    if kind == "ring":
        r2 = u * u + v * v
        return (r2 < 1.0) & (r2 > 0.5**2)
    if kind == "square":
        return np.maximum(a, b) < 0.85
    if kind == "frame":
        m = np.maximum(a, b)
        return (m < 0.9) & (m > 0.5)
    if kind == "triangle":
        return (v < 0.8) & (a < 0.55 * (v + 0.95))
    if kind == "diamond":
        return a + b < 1.0
    if kind == "plus":
        return ((a < 0.3) & (b < 0.95)) | ((b < 0.3) & (a < 0.95))
    if kind == "cross":
        p, q = np.abs(u + v) / np.sqrt(2.0), np.abs(u - v) / np.sqrt(2.0)
        return ((p < 0.25) & (q < 1.0)) | ((q < 0.25) & (p < 1.0))
    raise ValueError(f"shape kind must be one of {SHAPE_CLASSES}, got {kind!r}")


def _texture(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A random pattern in [0, 1] on the (supersampled) pixel grid: solid, stripes, checks or noise."""
    kind = TEXTURES[rng.integers(len(TEXTURES))]
    if kind == "solid":
        return np.zeros_like(x)
    period = rng.uniform(2.0, 5.0)
    if kind == "stripes":
        angle = rng.uniform(0.0, np.pi)
        return (np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period) > 0).astype(float)
    if kind == "checks":
        return ((np.floor(x / period) + np.floor(y / period)) % 2).astype(float)
    coarse = rng.random((x.shape[0] // _SUPERSAMPLE + 1, x.shape[1] // _SUPERSAMPLE + 1))
    return np.kron(coarse, np.ones((_SUPERSAMPLE, _SUPERSAMPLE)))[: x.shape[0], : x.shape[1]]


def _colour_pair(rng: np.random.Generator, min_distance: float = 0.45) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and background RGB colours in [0, 1] at least ``min_distance`` apart (Euclidean)."""
    while True:
        fg, bg = rng.random(3), rng.random(3)
        if np.linalg.norm(fg - bg) >= min_distance:
            return fg, bg


def render_shape(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One image of the shape ``kind`` with random nuisances; uint8 array (size, size, 3)."""
    n = size * _SUPERSAMPLE
    y, x = np.mgrid[0:n, 0:n].astype(float) + 0.5
    half = rng.uniform(0.28, 0.46) * n  # half side of the shape's box
    cx, cy = rng.uniform(half, n - half, size=2)
    inside = _mask(kind, (x - cx) / half, (y - cy) / half)
    fg, bg = _colour_pair(rng)
    fg_pattern = _texture(rng, x, y)[..., None]
    fg_img = fg * (1.0 - 0.45 * fg_pattern) + 0.45 * fg_pattern * rng.random(3)
    angle = rng.uniform(0.0, 2 * np.pi)
    ramp = ((x * np.cos(angle) + y * np.sin(angle)) / n)[..., None]
    bg_img = bg + rng.uniform(-0.25, 0.25) * ramp
    bg_img = bg_img + rng.uniform(0.0, 0.12) * rng.standard_normal((n, n, 1))
    img = np.where(inside[..., None], fg_img, bg_img)
    img = img.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3).mean(axis=(1, 3))
    return (np.clip(img, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def make_shapes(n_per_class: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A class-balanced set of shape images, a deterministic function of its arguments.

    Args:
        n_per_class: images per class (≥ 1); the set has ``len(SHAPE_CLASSES) * n_per_class`` images.
        size: image side in pixels, 8 ≤ size ≤ 256.
        seed: seed of the whole set (labels order and every image).

    Returns:
        images: uint8 (N, size, size, 3); labels: int64 (N,) in [0, len(SHAPE_CLASSES)).
    """
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 1:
        raise ValueError(f"n_per_class must be an integer >= 1, got {n_per_class!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 256:
        raise ValueError(f"shapes image size must be an integer in [8, 256], got {size!r}")
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(SHAPE_CLASSES)), n_per_class)).astype(np.int64)
    streams = rng.spawn(len(labels))
    images = np.empty((len(labels), size, size, 3), dtype=np.uint8)
    for i in tqdm(range(len(labels)), desc="shapes", unit="img", leave=False, disable=len(labels) < 2000):
        images[i] = render_shape(SHAPE_CLASSES[labels[i]], size, streams[i])
    return images, labels


def shapes_split(
    split: str, n_per_class: int, size: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The ``train`` or ``val`` split of the dataset with base ``seed`` (disjoint seeds per split)."""
    if split not in SPLITS:
        raise ValueError(f"shapes split must be one of {SPLITS}, got {split!r}")
    return make_shapes(n_per_class, size=size, seed=2 * seed + _SPLIT_SEED[split])


def write_shapes(
    out: str | Path, size: int = 16, train_per_class: int = 300, val_per_class: int = 100, seed: int = 0
) -> Path:
    """Write both splits as PNGs in the ``ImageFolder`` layout, with ``dataset.json``; returns ``out``."""
    from PIL import Image

    root = Path(out)
    meta: dict = {"classes": list(SHAPE_CLASSES), "size": size, "seed": seed}
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        images, labels = shapes_split(split, n, size=size, seed=seed)
        for name in SHAPE_CLASSES:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for i, (img, label) in enumerate(zip(images, labels)):
            Image.fromarray(img).save(root / split / SHAPE_CLASSES[label] / f"{i:05d}.png")
        meta[split] = len(labels)
        if split == "train":
            pixels = images.reshape(-1, 3) / 255.0
            meta["mean"] = [round(float(m), 4) for m in pixels.mean(axis=0)]
            meta["std"] = [round(float(s), 4) for s in pixels.std(axis=0)]
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m solo_directpred.data.shapes --out DIR``: write the dataset; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m solo_directpred.data.shapes", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", required=True, help="output folder (train/ and val/ are created in it)")
    parser.add_argument("--size", type=int, default=16, help="image side in pixels (default 16)")
    parser.add_argument("--train-per-class", type=int, default=300)
    parser.add_argument("--val-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        root = write_shapes(args.out, args.size, args.train_per_class, args.val_per_class, args.seed)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {root / 'train'} and {root / 'val'} ({len(SHAPE_CLASSES)} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
