"""The procedural shapes dataset: determinism from the seed, exact class balance, layout on disk."""

import json

import numpy as np
import pytest

from solo_directpred.data.shapes import SHAPE_CLASSES, _mask, main, make_shapes, shapes_split


def test_same_seed_same_images_and_labels():
    a_x, a_y = make_shapes(4, size=16, seed=7)
    b_x, b_y = make_shapes(4, size=16, seed=7)
    np.testing.assert_array_equal(a_x, b_x)
    np.testing.assert_array_equal(a_y, b_y)
    c_x, _ = make_shapes(4, size=16, seed=8)
    assert np.abs(a_x.astype(int) - c_x.astype(int)).mean() > 10  # another seed, other images


def test_every_class_has_exactly_n_images():
    x, y = make_shapes(5, size=12, seed=0)
    assert x.shape == (5 * len(SHAPE_CLASSES), 12, 12, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y, minlength=len(SHAPE_CLASSES)), [5] * len(SHAPE_CLASSES))
    assert len(set(y[:8].tolist())) > 1  # shuffled, not sorted by class


def test_train_and_val_splits_are_disjoint_draws():
    tx, _ = shapes_split("train", 2, size=16, seed=0)
    vx, _ = shapes_split("val", 2, size=16, seed=0)
    flat_t = {row.tobytes() for row in tx}
    assert not any(row.tobytes() in flat_t for row in vx)
    with pytest.raises(ValueError, match="split must be one of"):
        shapes_split("test", 2)


def test_shape_masks_differ_where_the_definitions_say():
    centres = (np.arange(400) + 0.5) / 200 - 1  # pixel centres of a 400×400 grid on [-1, 1]²
    u, v = np.meshgrid(centres, centres)
    area = {k: _mask(k, u, v).mean() for k in SHAPE_CLASSES}
    assert area["disk"] == pytest.approx(np.pi / 4, abs=0.01)  # unit disk in the [-1, 1]² box
    assert area["ring"] == pytest.approx(np.pi / 4 * (1 - 0.25), abs=0.01)
    assert area["diamond"] == pytest.approx(0.5, abs=0.01)
    assert _mask("disk", np.zeros(1), np.zeros(1))[0] and not _mask("ring", np.zeros(1), np.zeros(1))[0]
    assert not _mask("frame", np.zeros(1), np.zeros(1))[0] and _mask("square", np.zeros(1), np.zeros(1))[0]
    masks = [_mask(k, u, v) for k in SHAPE_CLASSES]
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            assert (masks[i] != masks[j]).mean() > 0.05, (SHAPE_CLASSES[i], SHAPE_CLASSES[j])


@pytest.mark.parametrize(("kwargs", "message"), [({"n_per_class": 0}, "n_per_class"), ({"size": 4}, "size")])
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_shapes(**{"n_per_class": 1, **kwargs})


def test_command_writes_an_image_folder(tmp_path, capsys):
    assert (
        main(["--out", str(tmp_path), "--train-per-class", "2", "--val-per-class", "1", "--size", "8"]) == 0
    )
    for split, n in (("train", 2), ("val", 1)):
        for name in SHAPE_CLASSES:
            assert len(list((tmp_path / split / name).glob("*.png"))) == n
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["train"] == 16 and meta["val"] == 8 and meta["classes"] == list(SHAPE_CLASSES)
    assert all(0 < m < 1 for m in meta["mean"]) and all(0 < s < 0.5 for s in meta["std"])
    assert main(["--out", str(tmp_path / "x"), "--size", "3"]) == 2
    assert "size" in capsys.readouterr().err
