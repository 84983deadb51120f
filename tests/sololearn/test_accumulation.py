"""Gradient accumulation, momentum update, precision and eval through the real solo-learn and Lightning.

Under ``Trainer(accumulate_grad_batches=k)`` the analytic predictor takes one running update per
optimizer step from the pooled projections of its k micro-batches, W_p stays fixed within a step and
``freq``/``step`` count optimizer steps (README "Scaling out").
"""

import pytest
import torch

from tests.conftest import requires_solo

pytestmark = [requires_solo, pytest.mark.solo]


def _recorder():
    import lightning.pytorch as pl

    class Recorder(pl.Callback):
        """The W_p each micro-batch predicts with and the projections it feeds the statistics."""

        def __init__(self) -> None:
            self.weights: list[torch.Tensor] = []
            self.z: list[list[torch.Tensor]] = []
            self.global_steps: list[int] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.weights.append(pl_module.predictor.weight.detach().clone())
            self.global_steps.append(trainer.global_step)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.z.append([z.float().clone() for z in outputs["z"]])

    return Recorder()


def _fit(model, micro_batches: int, batch_size: int, accumulate: int, callbacks=(), precision="32-true"):
    import lightning.pytorch as pl

    from tests.sololearn.helpers import random_loader

    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=micro_batches,
        accumulate_grad_batches=accumulate,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )
    trainer.fit(model, train_dataloaders=random_loader(n=micro_batches * batch_size, batch_size=batch_size))
    return trainer


def _reference(model, recorder, k: int):
    """A fresh predictor of the same settings fed each optimizer step as one batch of k micro-batches."""
    from solo_directpred.sololearn.methods import build_predictor

    reference = build_predictor(model.cfg.method_kwargs)
    for start in range(0, len(recorder.z), k):
        views = recorder.z[start : start + k]
        reference.update(*[torch.cat([micro[v] for micro in views]) for v in range(len(views[0]))])
    return reference


@pytest.mark.parametrize("method", ["directpred", "directcopy_noema"])
def test_four_micro_batches_are_one_optimizer_step_of_the_predictor(method):
    from solo.methods import METHODS

    from tests.sololearn.helpers import compose_pretrain_cfg

    k, steps = 4, 3
    cfg = compose_pretrain_cfg(
        [
            f"method={method}",
            "spectral.enabled=false",
            "method_kwargs.freq=2",
            "method_kwargs.eigh_dtype=float64",
            # d = 8 < the 16 rows of a step: a full-rank F̂, whose W_p = F̂^α is well conditioned
            "method_kwargs.proj_output_dim=8",
            f"+accumulate_grad_batches={k}",
        ]
    )
    model = METHODS[method](cfg)
    recorder = _recorder()
    trainer = _fit(model, micro_batches=k * steps, batch_size=2, accumulate=k, callbacks=[recorder])
    predictor = model.predictor
    assert trainer.global_step == steps
    # freq and step count optimizer steps: W_p recomputed at optimizer steps 0 and 2.
    assert int(predictor.step) == steps and int(predictor.stats.num_updates) == steps
    assert int(predictor.num_weight_updates) == 2
    # Every micro-batch of one optimizer step predicted with the same W_p, and it changed between steps.
    for start in range(0, k * steps, k):
        window = recorder.weights[start : start + k]
        assert all(torch.equal(w, window[0]) for w in window)
        assert recorder.global_steps[start : start + k] == [start // k] * k
    assert not torch.equal(recorder.weights[0], recorder.weights[k])
    # The running statistics and W_p are those of one batch of 4 x 2 images per optimizer step.
    reference = _reference(model, recorder, k)
    assert (predictor.correlation - reference.correlation).abs().max() <= 1e-6
    assert (predictor.weight - reference.weight).abs().max() <= 1e-6


def test_bf16_true_keeps_statistics_and_weight_in_float32():
    from solo.methods import METHODS

    from tests.sololearn.helpers import compose_pretrain_cfg

    cfg = compose_pretrain_cfg(["spectral.enabled=false", "method_kwargs.eigh_dtype=float64"])
    model = METHODS["directpred"](cfg)
    recorder = _recorder()
    _fit(model, micro_batches=2, batch_size=4, accumulate=1, callbacks=[recorder], precision="bf16-true")
    predictor = model.predictor
    assert next(model.backbone.parameters()).dtype == torch.bfloat16  # the module was cast ...
    assert predictor.correlation.dtype == predictor.weight.dtype == torch.float32  # ... but not these
    assert all(z.dtype == torch.float32 for micro in recorder.z for z in micro)
    reference = _reference(model, recorder, 1)
    assert (predictor.correlation - reference.correlation).abs().max() <= 1e-6
    assert (predictor.weight - reference.weight).abs().max() <= 1e-6


def test_momentum_projector_is_the_ema_of_the_online_projector_after_a_step():
    from solo.methods import METHODS

    from tests.sololearn.helpers import compose_pretrain_cfg

    cfg = compose_pretrain_cfg(["spectral.enabled=false", "momentum.base_tau=0.9", "momentum.final_tau=0.9"])
    model = METHODS["directpred"](cfg)
    with torch.no_grad():  # make the momentum projector differ from the online one before the step
        for p in model.momentum_projector.parameters():
            p.add_(torch.randn_like(p))
    old = [p.detach().clone() for p in model.momentum_projector.parameters()]
    _fit(model, micro_batches=1, batch_size=8, accumulate=1)
    online = list(model.projector.parameters())
    momentum = list(model.momentum_projector.parameters())
    assert len(online) == len(momentum) == len(old) == 6
    assert not torch.equal(online[0], old[0])
    for o, m, m_old in zip(online, momentum, old):
        torch.testing.assert_close(m, 0.9 * m_old + 0.1 * o.detach(), atol=1e-6, rtol=1e-6)


def test_eval_forward_and_validation_never_recompute_the_weight():
    from solo.methods import METHODS

    from tests.sololearn.helpers import compose_pretrain_cfg

    cfg = compose_pretrain_cfg(["spectral.enabled=false"])
    model = METHODS["directpred"](cfg)
    _fit(model, micro_batches=2, batch_size=8, accumulate=1)
    predictor = model.predictor
    state = {key: value.clone() for key, value in predictor.state_dict().items()}
    weight = predictor.weight
    model.eval()
    with torch.no_grad():
        model(torch.randn(4, 3, 16, 16))
        model.validation_step([torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))], 0)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 16, 16))  # a training-mode forward outside training_step: no change either
    assert predictor.weight is weight and not predictor.stats.has_pending
    for key, value in predictor.state_dict().items():
        assert torch.equal(value, state[key]), key
