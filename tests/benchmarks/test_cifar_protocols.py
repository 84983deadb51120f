"""The CIFAR-10 protocols: class-folder decoding, resumable cells, verdicts, and tiny end-to-end runs.

The runs use small generated class folders (32×32 PNGs), never the real data.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import requires_solo
from tests.presets.test_cifar_folders import write_class_folders

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import cifar_cpu  # noqa: E402
import cifar_gpu  # noqa: E402


def test_class_folders_decode_pixel_exact_with_sorted_class_labels(tmp_path):
    written = write_class_folders(tmp_path, {"train": 2, "test": 1}, classes=3)
    data = cifar_cpu.load_cifar(tmp_path, tmp_path / "cache.npz")
    assert data["train_x"].shape == (6, 3, 32, 32) and data["val_x"].shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(data["train_x"], written["train"][0].transpose(0, 3, 1, 2))
    assert data["train_y"].tolist() == written["train"][1] == [0, 0, 1, 1, 2, 2]
    assert data["classes"].tolist() == ["class000", "class001", "class002"]
    pixels = written["train"][0].astype(np.float64) / 255
    np.testing.assert_allclose(data["mean"], pixels.mean(axis=(0, 1, 2)), atol=1e-6)
    np.testing.assert_allclose(data["std"], pixels.std(axis=(0, 1, 2)), atol=1e-6)
    # the second call reads the cache, not the folders
    for png in tmp_path.glob("train/*/*.png"):
        png.unlink()
    assert cifar_cpu.load_cifar(tmp_path, tmp_path / "cache.npz")["train_x"].shape == (6, 3, 32, 32)


def test_missing_data_names_the_option_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(cifar_cpu.DATA_ENV, raising=False)
    with pytest.raises(SystemExit, match=r"--data PATH or set SOLO_DIRECTPRED_CIFAR10"):
        cifar_cpu.data_root(None)
    with pytest.raises(SystemExit, match=r"expected class folders under .*train"):
        cifar_cpu.data_root(tmp_path)


def test_subset_and_resolution():
    rng = np.random.default_rng(0)
    data = {
        "train_x": rng.integers(0, 256, (50, 3, 32, 32), dtype=np.uint8),
        "train_y": np.arange(50) % 10,
        "val_x": rng.integers(0, 256, (7, 3, 32, 32), dtype=np.uint8),
        "val_y": np.arange(7) % 10,
    }
    out = cifar_cpu.prepare(data, cifar_cpu.Protocol(train_subset=20, size=16))
    assert out["train_x"].shape == (20, 3, 16, 16) and out["val_x"].shape == (7, 3, 16, 16)
    again = cifar_cpu.prepare(data, cifar_cpu.Protocol(train_subset=20, size=16))
    np.testing.assert_array_equal(out["train_y"], again["train_y"])  # a fixed subset
    # an antialiased 2× downscale of a constant image is that constant
    flat = {**data, "train_x": np.full((50, 3, 32, 32), 77, np.uint8)}
    assert (cifar_cpu.prepare(flat, cifar_cpu.Protocol(size=16))["train_x"] == 77).all()


def test_recorded_command_hides_machine_paths():
    shown = cifar_cpu.recorded_command(
        ["--data", "/home/me/c10", "--out=/tmp/x", "--quick", "--export", "/z"]
    )
    assert shown == (
        "python benchmarks/cifar_cpu.py --data $SOLO_DIRECTPRED_CIFAR10 --out=OUT --quick --export EXPORT"
    )


def _record(cell, seed, knn, linear, protocol):
    return {
        "cell": cell,
        "seed": seed,
        "knn": knn,
        "linear": linear,
        "rank": 10.0,
        "train_s": 1.0,
        "probe_s": 1.0,
        "protocol": protocol,
    }


def test_verdicts_need_two_seeds_and_a_difference_beyond_the_spread():
    p = {}
    one_seed = cifar_cpu.summarize([_record("directpred", 0, 60, 60, p), _record("linear", 0, 50, 50, p)])
    (claim,) = [c for c in cifar_cpu.claims(one_seed, "knn") if c["b"] == "linear" and c["a"] == "directpred"]
    assert claim["diff"] == 10 and claim["verdict"] == "one seed: no verdict"
    records = [_record("directpred", s, v, v, p) for s, v in enumerate((60, 62))]
    records += [_record("linear", s, v, v, p) for s, v in enumerate((50, 52))]
    records += [_record("mlp", s, v, v, p) for s, v in enumerate((59, 65))]
    summary = cifar_cpu.summarize(records)
    verdicts = {(c["a"], c["b"]): c for c in cifar_cpu.claims(summary, "knn")}
    # std of (60, 62) and (50, 52) is √2 each: spread √(2 + 2) = 2 < Δ = 10
    assert verdicts["directpred", "linear"]["noise"] == pytest.approx(2.0)
    assert verdicts["directpred", "linear"]["verdict"] == "holds"
    # (59, 65): mean 62, std √18; Δ = −1 is within the spread
    assert verdicts["directpred", "mlp"]["verdict"] == "within spread"
    table = cifar_cpu.table(summary)
    assert "| DirectPred | 61.0 ± 1.4 (n=2) |" in table and "not run" in table


def test_epoch_choice_fits_the_budget():
    one = {"directpred": 20.0, "linear_pred": 20.0, "byol": 20.0}
    # 540 s budget, 60 s spent, kNN 10 s × 3: (540 − 60 − 30) / 60 = 7.5 → 7 epochs
    assert cifar_gpu.choose_epochs(540, 60, one, 10) == 7
    assert cifar_gpu.choose_epochs(100, 90, one, 10) == 2  # never fewer than two


@requires_solo
@pytest.mark.solo
@pytest.mark.slow
def test_cpu_protocol_runs_resumes_and_reports(tmp_path):
    write_class_folders(tmp_path / "data", {"train": 4, "test": 2})
    out = tmp_path / "out"
    args = [
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(out),
        "--cells",
        "directpred",
        "none",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--workers",
        "1",
        "--seeds",
        "0",
    ]
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "cifar_cpu.py"), *args], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "3 cells to run" in run.stderr
    cells = sorted(p.name for p in (out / "cells").glob("*.json"))
    assert cells == ["directpred-seed0.json", "none-seed0.json", "random-seed0.json"]
    record = json.loads((out / "cells" / "directpred-seed0.json").read_text())
    assert record["steps"] == 5 and 0 <= record["knn"] <= 100  # 40 images, batch 8, drop_last
    assert (out / record["checkpoint"]).is_file()
    assert json.loads((out / "cells" / "none-seed0.json").read_text())["max_abs_w_minus_i"] < 1e-6
    report = (out / "cifar10_cpu.md").read_text()
    assert "| none (W_p = I) |" in report and "| DirectCopy | not run |" in report
    # a rerun keeps the finished cells; a second seed adds only its own
    again = subprocess.run(
        [sys.executable, str(BENCHMARKS / "cifar_cpu.py"), *args], capture_output=True, text=True
    )
    assert again.returncode == 0 and "0 cells to run" in again.stderr
    mtime = (out / "cells" / "directpred-seed0.json").stat().st_mtime
    more = subprocess.run(
        [sys.executable, str(BENCHMARKS / "cifar_cpu.py"), *args, "--seeds", "0", "1", "--cells", "none"],
        capture_output=True,
        text=True,
    )
    assert more.returncode == 0 and "2 cells to run" in more.stderr, more.stderr[-3000:]
    assert (out / "cells" / "directpred-seed0.json").stat().st_mtime == mtime
    summary = json.loads((out / "cifar10_cpu.json").read_text())["summary"]
    assert summary["none"]["knn"][2] == 2 and summary["directpred"]["knn"][2] == 1

    # the DirectPred checkpoint through `solo-directpred zoo export`, with a model card and the spectra
    export = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "cifar_cpu.py"),
            *args,
            "--render-only",
            "--export",
            str(tmp_path / "zoo"),
        ],
        capture_output=True,
        text=True,
    )
    assert export.returncode == 0, export.stderr[-3000:]
    (bundle,) = (tmp_path / "zoo").iterdir()
    assert bundle.name == "directpred-smallcnn-cifar10-1ep-seed0"
    meta = json.loads((bundle / f"{bundle.name}.json").read_text())
    assert (meta["method"], meta["dataset"], meta["backbone"]["name"]) == (
        "directpred",
        "cifar10",
        "small_cnn",
    )
    card = (bundle / "README.md").read_text()
    assert f"**{record['knn']:.1f} %**" in card and "not the paper's ResNet-18" in card
    spectra = json.loads((bundle / "spectra.json").read_text())
    p = np.array(spectra["W_p"])
    # DirectPred's p_j = sqrt(s_j / s_max) + ε with ε = 0.1: every p_j / p_max ≥ ε / (1 + ε)
    assert len(p) == len(spectra["F_hat"]) == 128 and p.min() / p.max() >= 0.1 / 1.1 - 1e-6


@requires_solo
@pytest.mark.solo
@pytest.mark.slow
def test_gpu_script_runs_end_to_end_on_the_cpu(tmp_path):
    """--tiny: the paper's presets (ResNet-18, CIFAR stem) on class folders, 2 batches of 8 per epoch."""
    write_class_folders(tmp_path / "data", {"train": 2, "test": 1})
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(BENCHMARKS / "cifar_gpu.py"),
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(out),
        "--tiny",
        "--budget-s",
        "1",
        "--methods",
        "directpred",
        "--workers",
        "0",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "cifar10_gpu.json").read_text())
    assert report["one_epoch"]["directpred"]["epochs"] == 1
    result = report["runs"]["directpred"]
    assert result["epochs"] == 2 and Path(result["checkpoint"]).is_file()
    assert 0 <= result["knn"] <= 100
    assert "| directpred | 2 |" in (out / "cifar10_gpu.md").read_text()


def _tracked(cell, seed, knn, knn_by_epoch, rankme_by_epoch):
    record = _record(cell, seed, knn, knn, {})
    record["knn_by_epoch"] = [[e, v] for e, v in enumerate(knn_by_epoch, start=1)]
    record["label_free_by_epoch"] = [
        {"epoch": e, "rankme": r, "lidar": r, "lidar_proj": float("nan")}
        for e, r in enumerate(rankme_by_epoch, start=1)
    ]
    return record


def test_label_free_selection_against_knn():
    records = [
        # RankMe peaks at epoch 2 where kNN is 40, kNN peaks at epoch 3 (45): 5 points lost
        _tracked("directpred", 0, 50.0, [30, 40, 45], [10, 30, 20]),
        # both peak at epoch 3: nothing lost
        _tracked("linear", 0, 48.0, [30, 35, 42], [10, 20, 30]),
        # a collapsed run: its RankMe is the lowest, so is its test kNN
        _tracked("directpred_noema", 0, 20.0, [25, 22, 21], [5, 3, 2]),
        {**_record(cifar_cpu.RANDOM, 0, 30.0, 30.0, {}), "label_free_by_epoch": [{"epoch": 0, "rankme": 99}]},
    ]
    chosen = cifar_cpu.selection(records)
    rankme = chosen["checkpoint"]["rankme"]
    assert (rankme["runs"], rankme["same_epoch"]) == (3, 2)  # linear at epoch 3, the collapsed run at 1
    assert rankme["mean_lost"] == pytest.approx(5 / 3) and rankme["max_lost"] == 5
    assert "lidar_proj" not in chosen["checkpoint"]  # nan everywhere: no choice, not a zero
    (across,) = chosen["run"]["rankme"]
    # final RankMe (20, 30, 2) vs test kNN (50, 48, 20): ranks (2, 3, 1) vs (3, 2, 1): ρ = 1 − 6·2/24 = 0.5
    assert across["spearman"] == pytest.approx(0.5)
    assert (across["picked"], across["best"], across["lost"]) == ("linear", "directpred", 2.0)
    text = cifar_cpu.selection_tables(chosen)
    assert "| RankMe (representations) | 3 | 2 | 1.7 | 5.0 |" in text


def test_optional_ablation_cells_show_only_when_run():
    p = {}
    records = [_record("directpred", s, v, v, p) for s, v in enumerate((60, 62))]
    summary = cifar_cpu.summarize(records)
    assert "Table 6" not in cifar_cpu.table(summary)
    records += [_record("directpred_eps0.5", s, v, v, p) for s, v in enumerate((50, 51))]
    summary = cifar_cpu.summarize(records)
    assert "| DirectPred ε = 0.5 (Table 6) | 50.5 ± 0.7 (n=2) |" in cifar_cpu.table(summary)
    verdicts = {c["claim"]: c["verdict"] for c in cifar_cpu.claims(summary, "knn")}
    assert verdicts["Table 6: ε = 0.1 ≥ ε = 0.5"] == "holds"  # Δ = 10.5 against a spread of 1.6
