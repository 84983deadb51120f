"""Gradient accumulation: k micro-batches of one optimizer step are one batch of k·B rows."""

import io

import pytest
import torch

from solo_directpred.core import AnalyticPredictor, RunningCorrelation


def _views(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, -1, d)  # conditioning of W_p aside: the pooling is what is tested
    return torch.randn(n, d, generator=g) * scales, torch.randn(n, d, generator=g) * scales


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize(("alpha", "solver"), [(0.5, "eigh"), (0.5, "newton_schulz"), (1.0, "power")])
def test_four_micro_batches_equal_one_batch_of_four_times_the_size(center, alpha, solver):
    k, batch, d = 4, 32, 16
    # float64 solves: a float32 eigh alone moves W_p by ~1e-6 when F̂ moves by one rounding error.
    kwargs = {"alpha": alpha, "solver": solver, "center": center, "freq": 2, "eigh_dtype": "float64"}
    accumulated, whole = AnalyticPredictor(d, **kwargs), AnalyticPredictor(d, **kwargs)
    for step in range(5):
        z1, z2 = _views(batch, d, seed=step)
        weights = []
        for i in range(k):
            micro = slice(i * batch // k, (i + 1) * batch // k)
            prediction = accumulated(z1[micro]).detach()
            weights.append(accumulated.weight.clone())
            torch.testing.assert_close(prediction, z1[micro] @ weights[0].T)
            accumulated.accumulate(z1[micro], z2[micro])
        assert all(torch.equal(w, weights[0]) for w in weights)  # every micro-batch predicts with one W_p
        assert accumulated.finish_step() == whole.update(z1, z2) == (step % 2 == 0)
        assert (accumulated.correlation - whole.correlation).abs().max() <= 1e-6
        assert (accumulated.weight - whole.weight).abs().max() <= 1e-6
    # freq and step count optimizer steps, not micro-batches.
    assert int(accumulated.step) == 5 and int(accumulated.num_weight_updates) == 3
    assert int(accumulated.stats.num_updates) == 5


def test_accumulate_changes_nothing_until_the_step():
    predictor = AnalyticPredictor(8)
    predictor.update(_views(16, 8, 0)[0])
    state = {k: v.clone() for k, v in predictor.state_dict().items()}
    for seed in range(3):
        predictor.accumulate(*_views(16, 8, seed + 1))
    for key, value in predictor.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert predictor.stats.has_pending
    predictor.finish_step()
    assert not predictor.stats.has_pending and int(predictor.step) == 2


def test_pending_sums_are_not_state():
    predictor = AnalyticPredictor(8)
    predictor.accumulate(*_views(16, 8, 0))
    buffer = io.BytesIO()
    torch.save(predictor.state_dict(), buffer)
    buffer.seek(0)
    restored = AnalyticPredictor(8)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert not restored.stats.has_pending and int(restored.step) == 0


def test_a_non_finite_micro_batch_skips_the_whole_step():
    stats = RunningCorrelation(4)
    good, bad = _views(8, 4, 0)[0], _views(8, 4, 1)[0]
    bad[2, 1] = float("inf")
    stats.accumulate(good)
    stats.accumulate(bad)
    assert not stats.finish_step()
    assert int(stats.num_skipped) == 1 and int(stats.num_updates) == 0
    assert stats.update(good)  # the next step starts clean


@pytest.mark.parametrize("train", [True, False])
def test_forward_never_touches_the_statistics_or_the_weight(train):
    predictor = AnalyticPredictor(8, freq=1)
    predictor.update(_views(32, 8, 0)[0])
    predictor.train(train)
    state = {k: v.clone() for k, v in predictor.state_dict().items()}
    weight = predictor.weight
    with torch.no_grad():
        for seed in range(3):
            predictor(_views(32, 8, seed + 1)[0])
    assert predictor.weight is weight and not predictor.stats.has_pending
    for key, value in predictor.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_old_checkpoints_with_a_warm_start_vector_still_load():
    predictor = AnalyticPredictor(8, alpha=1.0, solver="power")
    predictor.update(_views(32, 8, 0)[0])
    state = predictor.state_dict()
    state["top_vector"] = torch.ones(8)
    restored = AnalyticPredictor(8, alpha=1.0, solver="power")
    restored.load_state_dict(state)
    assert torch.equal(restored.weight, predictor.weight)
