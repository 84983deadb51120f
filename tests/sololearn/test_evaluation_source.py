"""``solo-directpred knn | linear RUN`` evaluate on the data RUN was pretrained on, and say so.

A run is pretrained for two steps on generated image folders (five classes of 24x24 images, seven
validation images, statistics of its own); evaluating it without any ``data`` override must use those
folders at 24x24 with those statistics, not the embedded digits at 16x16 of the evaluation configs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.conftest import requires_solo

SIZE = 24
CLASSES = 5  # solo-learn's linear model reports top-5: it needs five classes at least
VAL_PER_CLASS = (3, 1, 1, 1, 1)  # seven validation images: accuracies are multiples of 100/7 %
MEAN, STD = (0.4, 0.45, 0.5), (0.21, 0.22, 0.23)


def _image_folders(root: Path) -> tuple[Path, Path]:
    """Class c: images of colour (c/4, 1 - c/4, 0.5) plus noise, in ``train/`` (8 each) and ``val/``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, counts in (("train", (8,) * CLASSES), ("val", VAL_PER_CLASS)):
        for c, count in enumerate(counts):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                colour = np.array([c / 4, 1 - c / 4, 0.5]) * 255
                pixels = np.clip(colour + rng.normal(0, 20, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root / "train", root / "val"


def _fixed_numbers(text: str, key: str) -> list[float]:
    return [float(v) for v in re.findall(rf"{key}=([0-9.]+)", text)]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(run directory, train folder, val folder) of a two-step DirectPred run on the image folders."""
    from solo_directpred.cli import main

    root = tmp_path_factory.mktemp("folders")
    train, val = _image_folders(root / "data")
    code = main(
        [
            "pretrain",
            f"data.train_path={train}",
            f"data.val_path={val}",
            f"data.eval_crop_size={SIZE}",
            f"data.eval_mean=[{','.join(map(str, MEAN))}]",
            f"data.eval_std=[{','.join(map(str, STD))}]",
            "max_epochs=1",
            "optimizer.batch_size=8",
            "+limit_train_batches=2",
            "+limit_val_batches=1",
            f"checkpoint.dir={root / 'trained_models'}",
            f"+default_root_dir={root}",
            "+enable_progress_bar=false",
        ]
    )
    assert code == 0
    (run_dir,) = (root / "trained_models" / "directpred").iterdir()
    return run_dir, train, val


def _stats() -> str:
    return f"mean ({', '.join(f'{m:.4g}' for m in MEAN)}) std ({', '.join(f'{s:.4g}' for s in STD)})"


@requires_solo
@pytest.mark.solo
@pytest.mark.slow
def test_knn_of_a_run_evaluates_on_its_own_data(folder_run, capsys):
    from solo_directpred.cli import main

    run_dir, train, val = folder_run
    assert main(["knn", str(run_dir), "knn.feature_type=[backbone]", "knn.distance_function=[cosine]"]) == 0
    out = capsys.readouterr().out
    expected = (
        f"knn: evaluating on custom (train {train}, val {val}, format image_folder, {SIZE}x{SIZE}, "
        f"{_stats()}); data settings from {run_dir / 'args.json'}"
    )
    assert expected in out.splitlines()
    (acc1,) = _fixed_numbers(out, "acc@1")
    (acc5,) = _fixed_numbers(out, "acc@5")
    # seven validation images, five classes: top-1 is a multiple of 100/7 and top-5 covers every class
    assert min(abs(acc1 - 100 * n / 7) for n in range(8)) < 0.01
    assert acc5 == 100.0


@requires_solo
@pytest.mark.solo
@pytest.mark.slow
def test_linear_of_a_run_evaluates_on_its_own_data(folder_run, capsys):
    from solo_directpred.cli import main

    run_dir, train, val = folder_run
    argv = ["linear", str(run_dir), "max_epochs=1", "optimizer.batch_size=8", "+enable_progress_bar=false"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (
        f"linear: evaluating on custom (train {train}, val {val}, format image_folder, {SIZE}x{SIZE}, " in out
    )
    (acc1, best) = _fixed_numbers(out, "val_acc1")
    assert min(abs(acc1 - 100 * n / 7) for n in range(8)) < 0.01
    assert _fixed_numbers(out, "val_acc5") == [100.0]


@requires_solo
@pytest.mark.solo
@pytest.mark.slow
def test_data_keys_on_the_command_line_win(folder_run, capsys):
    from solo_directpred.cli import main

    run_dir, train, _ = folder_run
    argv = ["knn", str(run_dir), f"data.val_path={train}", "knn.feature_type=[backbone]", "knn.k=[1]"]
    assert main([*argv, "knn.distance_function=[cosine]"]) == 0
    out = capsys.readouterr().out
    assert f"(train {train}, val {train}, format image_folder, {SIZE}x{SIZE}, " in out
    assert f"data settings from {run_dir / 'args.json'} (data.val_path from the command line)" in out
    # every validation image is a training image now: its nearest neighbour is itself
    assert _fixed_numbers(out, "acc@1") == [100.0]


def _write_run(tmp_path: Path, data: dict) -> Path:
    (tmp_path / "args.json").write_text(json.dumps({"method": "directpred", "data": data}))
    checkpoint = tmp_path / "run-ep=0.ckpt"
    checkpoint.touch()
    return checkpoint


def _digits_config():
    return OmegaConf.create(
        {
            "data": {
                "dataset": "custom",
                "train_path": "/digits/train",
                "val_path": "/digits/val",
                "format": "image_folder",
                "eval_crop_size": 16,
                "eval_mean": [0.3] * 3,
                "eval_std": [0.3] * 3,
            }
        }
    )


def test_run_data_replace_the_config_data(tmp_path):
    from solo_directpred.sololearn.shared import use_run_data

    cfg = _digits_config()
    run = {"dataset": "cifar10", "train_path": "/c10", "val_path": "/c10", "format": "image_folder"}
    origin = use_run_data(cfg, _write_run(tmp_path, {**run, "num_classes": 10}), overridden=())
    assert origin == str(tmp_path / "args.json")
    # the run's dataset and paths; the digits' 16-pixel resolution and statistics are gone
    assert OmegaConf.to_container(cfg.data) == {**run, "num_classes": 10}


def test_overridden_keys_keep_the_config_value(tmp_path):
    from solo_directpred.sololearn.shared import overridden_data_keys, use_run_data

    overrides = ["data.val_path=/mine", "+data.eval_crop_size=32", "knn.k=[5]", "~data.eval_std"]
    assert overridden_data_keys(overrides) == {"val_path", "eval_crop_size", "eval_std"}
    cfg = _digits_config()
    run = {"dataset": "custom", "train_path": "/run/train", "val_path": "/run/val", "format": "image_folder"}
    origin = use_run_data(cfg, _write_run(tmp_path, run), {"val_path", "eval_crop_size"})
    assert (cfg.data.train_path, cfg.data.val_path, cfg.data.eval_crop_size) == (
        "/run/train",
        "/digits/val",
        16,
    )
    assert "eval_mean" not in cfg.data  # the run had none: upstream's custom statistics apply
    assert origin.endswith("(data.eval_crop_size, data.val_path from the command line)")


def test_explicit_dataset_or_missing_args_json_keeps_the_config(tmp_path):
    from solo_directpred.sololearn.shared import use_run_data

    cfg = _digits_config()
    checkpoint = _write_run(tmp_path, {"dataset": "cifar10", "train_path": "/c10"})
    assert use_run_data(cfg, checkpoint, {"dataset"}) == "the config (data.dataset set explicitly)"
    (tmp_path / "args.json").unlink()
    assert use_run_data(cfg, checkpoint) == f"the config ({checkpoint.name} has no args.json beside it)"
    assert OmegaConf.to_container(cfg) == OmegaConf.to_container(_digits_config())
