"""``solo-directpred pretrain | linear | knn`` and upstream's own scripts on a DirectPred checkpoint.

One session fixture pretrains the embedded default (digits, 16x16) for a few steps with the
``pretrain`` command; linear and kNN evaluation then run on its run directory, its checkpoint file
and, through an exported zoo entry, its name. Upstream's scripts run from ``$SOLO_LEARN_DIR``.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.conftest import requires_solo
from tests.sololearn.helpers import solo_learn_scripts

pytestmark = [requires_solo, pytest.mark.solo]

STEPS = 16
CHANCE = 10.0  # ten digits


@dataclass
class Run:
    root: Path
    run_dir: Path
    checkpoint: Path
    stdout: str


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory) -> Run:
    """The embedded default trained for STEPS steps by ``solo-directpred pretrain``."""
    from solo_directpred.cli import main

    root = tmp_path_factory.mktemp("pretrain")
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(
            [
                "pretrain",
                "max_epochs=1",
                "optimizer.batch_size=32",
                f"+limit_train_batches={STEPS}",
                "+limit_val_batches=2",
                f"checkpoint.dir={root / 'trained_models'}",
                f"+default_root_dir={root}",
                "+enable_progress_bar=false",
            ]
        )
    assert code == 0, out.getvalue()
    (run_dir,) = (root / "trained_models" / "directpred").iterdir()
    (checkpoint,) = run_dir.glob("*.ckpt")
    return Run(root, run_dir, checkpoint, out.getvalue())


def _numbers(text: str, key: str) -> list[float]:
    return [float(v) for v in re.findall(rf"{key}=([0-9.]+)", text)]


@pytest.mark.slow
def test_pretrain_command_writes_a_checkpoint_with_the_statistics(pretrained):
    assert f"pretrain: checkpoint {pretrained.checkpoint}" in pretrained.stdout
    (acc1,) = _numbers(pretrained.stdout, "val_acc1")
    assert 0.0 <= acc1 <= 100.0
    args = json.loads((pretrained.run_dir / "args.json").read_text())
    assert args["method"] == "directpred" and args["data"]["eval_crop_size"] == 16
    state = torch.load(pretrained.checkpoint, map_location="cpu", weights_only=True)
    assert state["global_step"] == STEPS
    # W_p was set from the running correlation once per training step, never by the optimizer
    assert int(state["state_dict"]["predictor.num_weight_updates"]) == STEPS
    assert int(state["state_dict"]["predictor.stats.num_updates"]) == STEPS
    w = state["state_dict"]["predictor.weight"]
    assert torch.allclose(w, w.T, atol=1e-6) and not torch.allclose(w, torch.eye(len(w)), atol=1e-3)


@pytest.mark.slow
def test_backbone_is_rebuilt_and_loaded_strictly(pretrained):
    from solo_directpred.sololearn.methods import ConfigError
    from solo_directpred.sololearn.shared import load_pretrained_backbone

    backbone = load_pretrained_backbone(pretrained.checkpoint, "resnet18")
    assert (backbone.name, backbone.cifar_stem, backbone.method) == ("resnet18", False, "directpred")
    saved = torch.load(pretrained.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    for key, value in backbone.module.state_dict().items():
        torch.testing.assert_close(value, saved[f"backbone.{key}"], rtol=0, atol=0)
    with pytest.raises(
        ConfigError, match=r"backbone.name='resnet50' is invalid: .* holds a 'resnet18' backbone"
    ):
        load_pretrained_backbone(pretrained.checkpoint, "resnet50")


@pytest.mark.slow
def test_linear_command_on_the_run_directory(pretrained, capsys):
    from solo_directpred.cli import main

    code = main(
        [
            "linear",
            str(pretrained.run_dir),
            "max_epochs=3",
            f"+default_root_dir={pretrained.root}",
            "+enable_progress_bar=false",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"linear: checkpoint {pretrained.checkpoint}" in out
    acc1, best = _numbers(out, "val_acc1")
    (acc5,) = _numbers(out, "val_acc5")
    assert "after 3 epoch(s)" in out
    assert acc1 > 3 * CHANCE and best >= acc1 and acc5 >= acc1


@pytest.fixture(scope="module")
def knn_lines(pretrained):
    from solo_directpred.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["knn", str(pretrained.run_dir)])
    assert code == 0
    return [line for line in out.getvalue().splitlines() if line.startswith("knn: features=")]


@pytest.mark.slow
def test_knn_command_scores_backbone_and_projector_on_cpu(knn_lines):
    settings = [re.match(r"knn: features=(\w+) k=(\d+) distance=(\w+)", line).groups() for line in knn_lines]
    assert settings == [
        ("backbone", "20", "cosine"),
        ("backbone", "20", "euclidean"),
        ("projector", "20", "cosine"),
        ("projector", "20", "euclidean"),
    ]
    for line in knn_lines:
        (acc1,), (acc5,) = _numbers(line, "acc@1"), _numbers(line, "acc@5")
        assert acc1 > 3 * CHANCE and acc5 >= acc1, line


@pytest.mark.slow
def test_knn_through_a_zoo_name_matches_the_run_directory(pretrained, knn_lines, tmp_path, monkeypatch):
    """Exported weights, found by name through a user manifest, give bit-identical kNN votes."""
    from solo_directpred import zoo
    from solo_directpred.sololearn.knn import run_knn
    from solo_directpred.sololearn.shared import compose_config

    result = zoo.export_checkpoint(
        pretrained.checkpoint, "digits-directpred-test", tmp_path, include_checkpoint=False
    )
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"schema_version": 1, "checkpoints": [result.entry.to_json()]}))
    monkeypatch.setenv("SOLO_DIRECTPRED_ZOO_MANIFEST", str(manifest))
    cfg = compose_config(
        "directpred_knn.yaml", ["knn.feature_type=[backbone]", "knn.distance_function=[cosine]"]
    )
    (by_name,) = run_knn(cfg, "digits-directpred-test")
    (by_run,) = _numbers(knn_lines[0], "acc@1")
    assert (by_name.feature_type, by_name.distance) == ("backbone", "cosine")
    assert by_name.acc1 == pytest.approx(by_run, abs=0.005)
    from solo_directpred.sololearn.methods import ConfigError

    with pytest.raises(ConfigError, match=r"projector features need a run's Lightning checkpoint"):
        run_knn(compose_config("directpred_knn.yaml"), "digits-directpred-test")


@pytest.mark.parametrize(("distance", "k"), [("cosine", 20), ("euclidean", 20), ("cosine", 3)])
def test_weighted_knn_matches_solo_learns_classifier(distance, k):
    from solo.utils.knn import WeightedKNNClassifier

    from solo_directpred.core.knn import weighted_knn

    g = torch.Generator().manual_seed(0)
    centers = torch.randn(10, 16, generator=g)
    train_y, test_y = torch.arange(200) % 10, torch.arange(100) % 10
    train_x = centers[train_y] + 0.8 * torch.randn(200, 16, generator=g)
    test_x = centers[test_y] + 0.8 * torch.randn(100, 16, generator=g)
    reference = WeightedKNNClassifier(k=k, T=0.1, distance_fx=distance)
    reference.update(train_features=train_x, train_targets=train_y, test_features=test_x, test_targets=test_y)
    expected = reference.compute()
    ours = weighted_knn(train_x, train_y, test_x, test_y, k=k, temperature=0.1, distance=distance)
    assert ours == pytest.approx(expected, abs=1e-9)
    assert 30.0 < ours[0] <= ours[1] <= 100.0


def test_weighted_knn_with_classes_missing_from_the_test_split():
    """Two test points of class 3 among 5 training classes: nearest neighbours vote by exp(s/T)."""
    from solo_directpred.core.knn import weighted_knn

    train_x = torch.eye(5)
    train_y = torch.tensor([0, 1, 2, 3, 4])
    test_x = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.1], [0.0, 0.0, 1.0, 0.2, 0.0]])
    test_y = torch.tensor([3, 3])
    # k = 2: the first point's neighbours are classes 3 (s = 0.995) and 4 (s = 0.0995) -> class 3 wins;
    # the second point's are 2 (s = 0.981) and 3 (s = 0.196) -> class 2 first, 3 second (top-2 hit)
    acc1, acc5 = weighted_knn(train_x, train_y, test_x, test_y, k=2, temperature=0.07, distance="cosine")
    assert (acc1, acc5) == (50.0, 100.0)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["linear"], "pretrained_feature_extractor is missing"),
        (["knn", "no-such-checkpoint"], "pretrained_feature_extractor='no-such-checkpoint' is invalid"),
        (
            ["knn", "x.ckpt", "knn.distance_function=[manhattan]"],
            "knn.distance_function=['manhattan'] is invalid",
        ),
        (["pretrain", "method=directpredd"], "method='directpredd' is invalid: must be one of"),
        (
            ["pretrain", "augmentations.0.num_crops=3"],
            "data.num_large_crops=3 is invalid: method 'directpred' compares 2 large crops; only wmse, mae",
        ),
        (["linear", "x.ckpt", "seed=1"], "Could not override 'seed'"),
        (["pretrain", "--config-name", "pretrain/cifar/nope.yaml"], "Cannot find primary config"),
    ],
)
def test_user_errors_name_the_key_and_the_value(command, message, capsys):
    from solo_directpred.cli import main

    assert main(command) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_timm_vit_backbone_trains_through_directpred(tmp_path):
    """A timm ViT (solo-learn's vit_tiny, 16x16 images in 4x4 patches) under DirectPred, then reloaded."""
    from solo_directpred.sololearn.pretrain import run_pretrain
    from solo_directpred.sololearn.shared import compose_config, load_pretrained_backbone

    cfg = compose_config(
        "directpred.yaml",
        [
            "backbone.name=vit_tiny",
            "+backbone.kwargs.img_size=16",
            "+backbone.kwargs.patch_size=4",
            "max_epochs=1",
            "+limit_train_batches=2",
            "+limit_val_batches=1",
            "spectral.enabled=false",
            f"checkpoint.dir={tmp_path / 'trained_models'}",
            f"+default_root_dir={tmp_path}",
            "+enable_progress_bar=false",
        ],
    )
    result = run_pretrain(cfg)
    state = torch.load(result.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert int(state["predictor.num_weight_updates"]) == 2
    assert state["projector.0.weight"].shape == (512, 192)  # ViT-Tiny width
    backbone = load_pretrained_backbone(result.checkpoint, "vit_tiny")
    assert backbone.kwargs == {"img_size": 16, "patch_size": 4}
    for key, value in backbone.module.state_dict().items():
        torch.testing.assert_close(value, state[f"backbone.{key}"], rtol=0, atol=0)
    assert backbone.module.eval()(torch.randn(3, 3, 16, 16)).shape == (3, 192)


# --------------------------------------------------------------------------------------------------
# upstream's scripts


def _upstream(args: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def solo_learn_dir() -> Path:
    path = solo_learn_scripts()
    if path is None:
        pytest.skip("no solo-learn checkout with main_pretrain.py (SOLO_LEARN_DIR unset, the clone failed)")
    return path


@pytest.mark.slow
def test_upstream_main_pretrain_composes_a_preset_by_name(solo_learn_dir, tmp_path):
    import yaml

    proc = _upstream(
        [
            str(solo_learn_dir / "main_pretrain.py"),
            "--config-name",
            "pretrain/paper/table6/rho0.5.yaml",
            "--cfg",
            "job",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = yaml.safe_load(proc.stdout)
    assert (cfg["name"], cfg["method"], cfg["data"]["dataset"]) == (
        "paper-table6-rho0.5",
        "directpred",
        "stl10",
    )
    assert (cfg["method_kwargs"]["rho"], cfg["method_kwargs"]["eps"]) == (0.5, 0.1)
    assert cfg["augmentations"][0]["crop_size"] == 96


@pytest.mark.slow
def test_upstream_main_linear_loads_the_directpred_backbone(solo_learn_dir, pretrained, tmp_path):
    """main_linear.py loads with strict=False; the saved linear model proves the weights really arrived."""
    proc = _upstream(
        [
            str(solo_learn_dir / "main_linear.py"),
            "--config-name",
            "directpred_linear.yaml",
            f"pretrained_feature_extractor='{pretrained.checkpoint}'",  # quoted: the name holds '='
            "max_epochs=1",
            "+limit_train_batches=3",
            "+limit_val_batches=2",
            "checkpoint.enabled=true",
            f"checkpoint.dir={tmp_path}",
            "+enable_progress_bar=false",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (linear_ckpt,) = (tmp_path / "linear").rglob("*.ckpt")
    linear = torch.load(linear_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    pretrained_state = torch.load(pretrained.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    backbone_keys = [k for k in pretrained_state if k.startswith("backbone.")]
    assert backbone_keys and all(torch.equal(linear[k], pretrained_state[k]) for k in backbone_keys)
    assert linear["classifier.weight"].shape == (10, 512)


@pytest.mark.slow
def test_upstream_main_knn_finds_the_method_through_the_runner(solo_learn_dir, pretrained, tmp_path):
    """Registered by the runner, main_knn.py loads the DirectPred checkpoint; it then needs CUDA."""
    from solo_directpred.data.digits import prepare_digits

    proc = _upstream(
        [
            "-m",
            "solo_directpred.sololearn.upstream",
            str(solo_learn_dir / "main_knn.py"),
            "--pretrained_checkpoint_dir",
            str(pretrained.run_dir),
            "--dataset",
            "custom",
            "--train_data_path",
            str(prepare_digits("train")),
            "--val_data_path",
            str(prepare_digits("val")),
            "--batch_size",
            "16",
            "--num_workers",
            "0",
            "--k",
            "20",
            "--temperature",
            "0.07",
            "--distance_function",
            "cosine",
            "--feature_type",
            "backbone",
        ],
        tmp_path,
    )
    assert "KeyError" not in proc.stderr
    if torch.cuda.is_available():
        assert proc.returncode == 0 and "Result: acc@1=" in proc.stdout, proc.stderr[-2000:]
    else:
        # past the method lookup, the checkpoint load and the data set-up, upstream moves the batch to CUDA
        assert proc.returncode != 0
        assert "Torch not compiled with CUDA enabled" in proc.stderr, proc.stderr[-2000:]
        assert "extract_features" in proc.stderr
