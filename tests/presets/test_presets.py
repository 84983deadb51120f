"""Every shipped preset composes by ``--config-name``, passes solo-learn's parsing and builds its method.

Methods are built on the ``meta`` device: the whole module tree and every config check run, without
spending time on weight initialisation (a ResNet-50 pair per ImageNet preset).
"""

from __future__ import annotations

import pytest
import yaml

from solo_directpred.paths import configs_dir, presets_dir
from tests.conftest import requires_solo

pytestmark = [requires_solo, pytest.mark.solo]

CALLBACK = "solo_directpred.sololearn.plugin.PluginCallback"
ROOT = presets_dir()
PRETRAIN = sorted(
    p.relative_to(ROOT).as_posix()
    for p in (ROOT / "pretrain").rglob("*.yaml")
    if "augmentations" not in p.parts
)
LINEAR = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "linear").rglob("*.yaml"))
PRIMARY_FILES = [ROOT / name for name in PRETRAIN + LINEAR] + sorted(configs_dir().glob("*.yaml"))

#: Paper protocol (docs/presets.md), after solo-learn's lr scaling: lr 0.03 at batch 128, wd 4e-4, EMA 0.996.
PAPER_STL_CIFAR = {
    "optimizer.name": "sgd",
    "optimizer.lr": 0.03,
    "optimizer.batch_size": 128,
    "optimizer.weight_decay": 4e-4,
    "momentum.base_tau": 0.996,
    "momentum.final_tau": 0.996,
    "scheduler.name": "none",
    "method_kwargs.proj_hidden_dim": 512,
    "method_kwargs.proj_output_dim": 128,
    "max_epochs": 100,
}
#: Values each paper-table row must carry (on top of its dataset's protocol).
PAPER_ROWS = {
    "table3/linear_ema": {
        "method": "linear_pred",
        "method_kwargs.symmetric": True,
        "method_kwargs.bias": False,
    },
    "table3/linear_noema": {"method": "linear_pred_noema", "method_kwargs.symmetric": True},
    "table3/mlp_ema": {"method": "byol", "method_kwargs.pred_hidden_dim": 512},
    "table3/mlp_noema": {"method": "byol", "momentum.base_tau": 0.0, "momentum.final_tau": 0.0},
    "table5/pred_wd_ema": {"optimizer.weight_decay": 0.0, "method_kwargs.weight_decay": 4e-4},
    "table5/pred_wd_noema": {
        "method": "linear_pred_noema",
        "optimizer.weight_decay": 0.0,
        "method_kwargs.weight_decay": 4e-4,
    },
    "table5/no_wd_ema": {"optimizer.weight_decay": 0.0, "method_kwargs.weight_decay": 0.0},
    "table5/no_wd_noema": {"method": "linear_pred_noema", "optimizer.weight_decay": 0.0},
    "table6/rho0.3": {"method_kwargs.rho": 0.3, "method_kwargs.eps": 0.1, "method_kwargs.freq": 1},
    "table6/rho0.5": {"method_kwargs.rho": 0.5, "method_kwargs.eps": 0.1},
    "table7/freq1": {"method_kwargs.eps": 0.0, "method_kwargs.offset": -0.05, "method_kwargs.freq": 1},
    "table7/freq2": {"method_kwargs.freq": 2, "method_kwargs.trainable": True, "method_kwargs.eps": 0.0},
    "table8/stl10_freq1": {"data.dataset": "stl10", "method_kwargs.freq": 1, "method_kwargs.eps": 0.1},
    "table8/stl10_freq5": {"data.dataset": "stl10", "method_kwargs.freq": 5, "method_kwargs.trainable": True},
    "table8/stl10_sgd": {"data.dataset": "stl10", "method": "linear_pred"},
    "table8/cifar10_freq1": {"data.dataset": "cifar10", "method_kwargs.freq": 1, "method_kwargs.rho": 0.3},
    "table8/cifar10_freq5": {"data.dataset": "cifar10", "method_kwargs.freq": 5},
    "table8/cifar10_sgd": {"data.dataset": "cifar10", "method": "linear_pred"},
    "table9/byol_300ep": {"method": "byol", "max_epochs": 300},
    "table9/linear_300ep": {"method": "linear_pred", "max_epochs": 300},
    "table9/directpred_300ep": {
        "method": "directpred",
        "max_epochs": 300,
        "method_kwargs.proj_output_dim": 256,
    },
    "table9/byol_60ep": {"method": "byol", "max_epochs": 60, "optimizer.name": "sgd"},
    "table9/linear_60ep": {"method": "linear_pred", "max_epochs": 60},
    "table9/directpred_60ep": {"method": "directpred", "max_epochs": 60, "optimizer.batch_size": 32},
}
#: The no-EMA loss presets (docs/losses.md) take the IsoLoss code's no-EMA settings: rho 0.5, SGD lr 0.1
#: per 256 samples (0.05 after solo-learn's scaling at batch 128).
LOSS_NOEMA = {"optimizer.lr": 0.05, "method_kwargs.rho": 0.5, "method_kwargs.eps": 0.0}
#: The loss presets of each dataset folder: name → (method, method_kwargs.loss).
LOSS_PRESETS = {
    f"{stem}{suffix}": (f"directpred{suffix}", loss)
    for stem, loss in (
        ("isoloss", "isoloss"),
        ("isoloss_euclidean", "isoloss_euclidean"),
        ("euclidean", "euclidean"),
        ("directpred", "cosine"),
    )
    for suffix in ("", "_noema")
}


def _parse_pretrain(name: str, overrides=()):
    from solo.args.pretrain import parse_cfg

    from solo_directpred.sololearn.shared import compose_config

    return parse_cfg(compose_config(name, overrides))


def _select(cfg, key):
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, throw_on_missing=True)


@pytest.mark.parametrize("path", PRIMARY_FILES, ids=lambda p: p.relative_to(p.parents[2]).as_posix())
def test_every_shipped_config_declares_the_plugin_callback(path):
    raw = yaml.safe_load(path.read_text())
    assert raw["hydra"]["callbacks"]["solo_directpred"]["_target_"] == CALLBACK
    if path.is_relative_to(ROOT):  # presets live in sub-groups: they must be global to compose by path
        assert path.read_text().startswith("# @package _global_\n")


def test_paper_rows_cover_tables_3_5_to_9():
    rows = {
        name.removeprefix("pretrain/paper/").removesuffix(".yaml") for name in PRETRAIN if "/paper/" in name
    }
    assert rows == set(PAPER_ROWS)
    assert {row.split("/")[0] for row in rows} == {"table3", "table5", "table6", "table7", "table8", "table9"}


@pytest.mark.parametrize("name", PRETRAIN)
def test_pretrain_preset_builds_its_method(name):
    import torch
    from solo.methods import METHODS

    from solo_directpred.core import AnalyticPredictor, LinearPredictor
    from solo_directpred.sololearn.pretrain import build_method

    cfg = _parse_pretrain(name)
    assert cfg.name and cfg.method in METHODS
    assert cfg.data.num_large_crops == 2 and cfg.data.num_small_crops == 0
    with torch.device("meta"):
        model = build_method(cfg)
    d = cfg.method_kwargs.proj_output_dim
    assert model.projector[-1].out_features == d
    dataset = cfg.data.dataset
    assert model.features_dim == (2048 if cfg.backbone.name == "resnet50" else 512)
    assert model.backbone.conv1.kernel_size == ((3, 3) if dataset.startswith("cifar") else (7, 7))
    assert model.classifier.out_features == {"cifar100": 100, "imagenet100": 100, "imagenet": 1000}.get(
        dataset, 10
    )
    if cfg.method in ("directpred", "directcopy"):
        assert isinstance(model.predictor, AnalyticPredictor)
        assert model.predictor.alpha == (0.5 if cfg.method_kwargs.predictor == "directpred" else 1.0)
        assert tuple(model.predictor.weight.shape) == (d, d)
    elif cfg.method.startswith("linear_pred"):
        assert isinstance(model.predictor, LinearPredictor)
    if "_60ep" not in name and dataset in ("stl10", "cifar10", "cifar100"):
        expected = dict(PAPER_STL_CIFAR)
        if "/paper/" in name:
            expected = {k: v for k, v in expected.items() if k not in PAPER_ROWS[_row(name)]}
            expected.update(PAPER_ROWS[_row(name)])
        elif name.endswith("_noema.yaml"):
            expected.update(LOSS_NOEMA)
        for key, value in expected.items():
            assert _select(cfg, key) == pytest.approx(value), key
    elif dataset == "imagenet" and "/paper/" in name:
        for key, value in PAPER_ROWS[_row(name)].items():
            assert _select(cfg, key) == pytest.approx(value), key


@pytest.mark.parametrize("folder", ["cifar", "stl10"])
@pytest.mark.parametrize("stem", list(LOSS_PRESETS))
def test_loss_presets_select_their_loss_and_target(folder, stem):
    """Each loss has an EMA and a no-EMA preset per dataset; the no-EMA ones say what was measured of them."""
    import torch

    from solo_directpred.sololearn.pretrain import build_method

    cfg = _parse_pretrain(f"pretrain/{folder}/{stem}.yaml")
    method, loss = LOSS_PRESETS[stem]
    assert cfg.method == method
    with torch.device("meta"):
        model = build_method(cfg)
    assert model.loss_kind == loss and model.predictor.alpha == 0.5
    assert hasattr(model, "momentum_projector") == (not stem.endswith("_noema"))
    if stem.endswith("_noema"):  # each says what the CPU protocol on real CIFAR-10 measured of it
        text = " ".join((ROOT / f"pretrain/{folder}/{stem}.yaml").read_text().replace("#", " ").split())
        if stem in ("isoloss_noema", "directpred_noema"):
            assert "Measured on real CIFAR-10" in text
            assert ("does not collapse (52.0 % kNN" in text) == (stem == "isoloss_noema")
            assert ("the cosine loss without EMA collapses" in text) == (stem == "directpred_noema")
            assert ("Not measured on STL-10" in text) == (folder == "stl10")
        else:
            assert "Not measured" in text


def _row(name: str) -> str:
    return name.removeprefix("pretrain/paper/").removesuffix(".yaml")


def test_imagenet_settings_give_the_papers_batches_and_lr():
    """300 epochs: batch 4096 and lr 0.2 x 4096/256 after scaling; 60 epochs: batch 256, SGD lr 0.05."""
    import torch

    from solo_directpred.sololearn.pretrain import build_method

    cfg = _parse_pretrain("pretrain/imagenet/directpred.yaml")
    batch = cfg.optimizer.batch_size * len(cfg.devices) * cfg.num_nodes * cfg.accumulate_grad_batches
    assert batch == 4096 and cfg.optimizer.name == "lars"
    with torch.device("meta"):
        model = build_method(cfg)
    assert model.lr == pytest.approx(0.2 * 4096 / 256)  # solo-learn scales by batch and accumulation
    cfg = _parse_pretrain("pretrain/imagenet/directpred_60ep.yaml")
    assert cfg.optimizer.batch_size * len(cfg.devices) == 256 and cfg.optimizer.lr == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("name", "overrides", "expected"),
    [
        ("table3/linear_ema", ["method_kwargs.symmetric=false", "method_kwargs.bias=true"], {"bias": True}),
        ("table5/pred_wd_noema", ["method_kwargs.bias=true"], {"bias": True, "weight_decay": 4e-4}),
        ("table6/rho0.5", ["method_kwargs.eps=0"], {"eps": 0.0, "rho": 0.5}),
        ("table6/rho0.3", ["method_kwargs.eps=0.5"], {"eps": 0.5, "rho": 0.3}),
        ("table7/freq1", ["method_kwargs.offset=0.1"], {"offset": 0.1, "freq": 1}),
        ("table7/freq2", ["method_kwargs.offset=-0.1"], {"offset": -0.1, "freq": 2, "trainable": True}),
    ],
)
def test_documented_column_overrides_reach_the_predictor(name, overrides, expected):
    """The column switches in each row's comment configure the predictor module as the table says."""
    from solo.methods import METHODS

    from solo_directpred.sololearn.methods import build_predictor

    cfg = _parse_pretrain(f"pretrain/paper/{name}.yaml", overrides)
    cfg = METHODS[cfg.method].add_and_assert_specific_cfg(cfg)
    predictor = build_predictor(cfg.method_kwargs)
    raw = open(ROOT / f"pretrain/paper/{name}.yaml").read()
    assert all(o.split("=")[0] in raw for o in overrides)  # the comment documents the switch
    for key, value in expected.items():
        if key == "bias":
            assert (predictor.linear.bias is not None) == value
        elif key == "weight_decay":
            assert predictor.weight_decay == pytest.approx(value)
        else:
            assert getattr(predictor, key) == pytest.approx(value), key


@pytest.mark.parametrize("name", LINEAR)
def test_linear_preset_parses_with_upstream_rules(name, tmp_path):
    from solo.args.linear import parse_cfg

    from solo_directpred.sololearn.shared import compose_config

    cfg = compose_config(name, [f"data.train_path={tmp_path}", f"data.val_path={tmp_path}"])
    cfg.pretrained_feature_extractor = str(tmp_path / "model.ckpt")
    cfg = parse_cfg(cfg)
    dataset = cfg.data.dataset
    assert cfg.data.num_classes == {"cifar100": 100, "imagenet100": 100, "imagenet": 1000}.get(dataset, 10)
    assert cfg.backbone.name == ("resnet50" if dataset == "imagenet" else "resnet18")
    assert cfg.data.format == ("dali" if name.endswith("_dali.yaml") else "image_folder")
    if dataset in ("cifar10", "cifar100", "stl10"):  # the paper's probe: Adam 3e-4, wd 1e-3, batch 128
        assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay) == ("adam", 3e-4, 1e-3)
        assert cfg.optimizer.batch_size == 128 and cfg.max_epochs == 50
