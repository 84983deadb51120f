"""Pieces of the benchmark suite: probes, augmentation, job grid, claim verdicts, one quick run."""

import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import requires_solo

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import accuracy  # noqa: E402


def test_knn_votes_with_cosine_similarity():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[5.0, 0.2], [0.3, 7.0], [1.0, 1.1]])  # scale does not matter, only direction
    assert accuracy.knn_accuracy(train, labels, test, torch.tensor([0, 1, 1]), k=1) == 1.0
    assert accuracy.knn_accuracy(train, labels, test, torch.tensor([1, 1, 1]), k=1) == pytest.approx(2 / 3)
    # k = 4: every training point votes, weighted by exp(cos / T): the nearer class still wins
    assert accuracy.knn_accuracy(train, labels, test, torch.tensor([0, 1, 1]), k=4, temperature=0.1) == 1.0


def test_linear_probe_separates_separable_data_and_not_random_labels():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    assert accuracy.linear_probe_accuracy(x[:300], y[:300], x[300:], y[300:]) >= 0.97
    noise = rng.integers(0, 2, 400)
    assert abs(accuracy.linear_probe_accuracy(x[:300], noise[:300], x[300:], noise[300:]) - 0.5) < 0.15


@pytest.mark.parametrize("k", [1, 3, 8])
def test_effective_rank_counts_equal_orthogonal_directions(k):
    eye = torch.eye(16)[:k]
    features = torch.cat([eye, -eye]) * 3.0  # centred, k equal singular values
    # RankMe's ε = 1e-7 on each of the 16 normalised singular values moves it by < 1e-4
    assert accuracy.effective_rank(features) == pytest.approx(k, rel=1e-4)


def test_augment_is_seeded_and_normalised():
    spec = accuracy.DATASETS["shapes"]
    x = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    a = accuracy.augment(x, spec, mean, std, torch.Generator().manual_seed(3))
    b = accuracy.augment(x, spec, mean, std, torch.Generator().manual_seed(3))
    c = accuracy.augment(x, spec, mean, std, torch.Generator().manual_seed(4))
    assert a.shape == (6, 3, 16, 16) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert a.min() >= (0 - 0.5) / 0.25 - 1e-6 and a.max() <= (1 - 0.5) / 0.25 + 1e-6  # clamped to [0, 1]


def test_job_grid_covers_every_cell_and_seed():
    settings = accuracy.Settings(seeds=(0, 1), datasets=("digits", "shapes"), ablation_datasets=("shapes",))
    jobs = accuracy.make_jobs(settings)
    n_grid, n_ablation = len(accuracy.GRID), len(accuracy.ABLATIONS)
    assert n_grid == 12  # 6 predictors × {EMA, no EMA}
    assert len(jobs) == 2 * (n_grid + 1) + 2 * (n_grid + n_ablation + 1)
    assert {(j["variant"], j["dataset"], j["seed"]) for j in jobs} >= {
        ("mlp_noema", "digits", 1),
        ("random", "shapes", 0),
    }
    mlp_noema = accuracy.VARIANTS["mlp_noema"]
    assert mlp_noema.method == "byol" and "momentum.base_tau=0.0" in mlp_noema.overrides and not mlp_noema.ema


def _summary(cells):
    return {"digits": {k: {"linear": [m, s, 3]} for k, (m, s) in cells.items()}}


def test_claim_verdicts_compare_the_gap_with_seed_noise():
    summary = _summary(
        {
            "directpred": (80.0, 1.0),
            "linear": (70.0, 1.0),
            "linear_noema": (69.0, 1.0),
            "linear_sym_noema": (68.5, 1.0),
            "directpred_eps0": (85.0, 0.5),
        }
    )
    verdicts = {(c["a"], c["b"]): c for c in accuracy.claims(summary)}
    assert verdicts[("directpred", "linear")]["verdict"] == "holds"
    assert verdicts[("directpred", "linear")]["diff"] == pytest.approx(10.0)
    assert verdicts[("directpred", "linear")]["noise"] == pytest.approx(np.sqrt(2.0))
    assert verdicts[("linear_sym_noema", "linear_noema")]["verdict"] == "within noise"  # −0.5 vs ±1.4
    assert verdicts[("directpred", "directpred_eps0")]["verdict"] == "contradicted"
    assert ("mlp_noema", "mlp") not in verdicts  # cells that were not run are not judged


def test_tables_render_mean_and_std():
    records = [
        {
            "variant": "directpred",
            "dataset": "digits",
            "seed": s,
            "knn": 90.0 + s,
            "linear": 95.0,
            "rank": 40.0,
            "train_s": 1.0,
        }
        for s in (0, 1, 2)
    ]
    summary = accuracy.summarize(records)
    assert summary["digits"]["directpred"]["knn"] == pytest.approx([91.0, 1.0, 3])
    table = accuracy.grid_table(summary, "digits")
    assert "| DirectPred | 91.0 ± 1.0 | 95.0 ± 0.0 | – | – | 40 / – |" in table


@requires_solo
@pytest.mark.slow
def test_quick_job_trains_and_probes_through_solo_learn():
    settings = accuracy.Settings(epochs_digits=1, seeds=(0,), subset=64, batch_size=32, workers=1)
    job = {
        "variant": "none_noema",
        "dataset": "digits",
        "seed": 0,
        "settings": {**asdict(settings), "seeds": [0]},
    }
    record = accuracy.run_job(job)
    assert record["steps"] == 2  # 64 images, batch 32, drop_last
    assert record["max_abs_w_minus_i"] < 1e-6  # the 'none' predictor stays the identity
    assert 0 <= record["knn"] <= 100 and 0 <= record["linear"] <= 100
    assert 1 <= record["rank"] <= accuracy.SmallConvNet.num_features
