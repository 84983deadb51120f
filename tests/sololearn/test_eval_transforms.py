"""The embedded default evaluates at the resolution it trains at, through upstream's own data code."""

import pytest

from tests.conftest import requires_solo

pytestmark = [requires_solo, pytest.mark.solo]


def test_custom_eval_transforms_keep_the_training_resolution():
    import torch
    from solo.data.classification_dataloader import prepare_data

    from solo_directpred.sololearn.transforms import configure_eval_transforms
    from tests.sololearn.helpers import compose_pretrain_cfg

    cfg = compose_pretrain_cfg()
    assert configure_eval_transforms(cfg)
    train_loader, val_loader = prepare_data(
        "custom", cfg.data.train_path, cfg.data.val_path, batch_size=32, num_workers=0
    )
    images, labels = next(iter(val_loader))
    assert images.shape == (32, 3, 16, 16)
    assert len(val_loader.dataset) == 359 and len(train_loader.dataset) == 1438
    # Normalised with the digits' own statistics: the whole validation set has mean ≈ 0, std ≈ 1.
    pixels = torch.cat([x for x, _ in val_loader])
    assert abs(pixels.mean().item()) < 0.05 and abs(pixels.std().item() - 1.0) < 0.05
    assert next(iter(train_loader))[0].shape[-2:] == (16, 16)


def test_other_datasets_keep_upstream_transforms():
    from solo.data import classification_dataloader as classification

    from solo_directpred.sololearn.transforms import configure_eval_transforms
    from tests.sololearn.helpers import compose_pretrain_cfg

    configure_eval_transforms(compose_pretrain_cfg())
    _, val = classification.prepare_transforms("cifar10")
    assert "Resize" not in repr(val) and "Normalize" in repr(val)
    _, val = classification.prepare_transforms("imagenet100")
    assert "CenterCrop(size=(224, 224))" in repr(val)
