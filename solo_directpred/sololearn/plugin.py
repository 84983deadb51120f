"""Registration of the plugin into an unmodified solo-learn, and the Hydra callback that triggers it.

Every YAML the plugin ships declares::

    hydra:
      callbacks:
        solo_directpred:
          _target_: solo_directpred.sololearn.plugin.PluginCallback

Hydra imports that class before the task function runs, and the import registers:

* the methods of :data:`solo_directpred.sololearn.methods.METHOD_TABLE` into ``solo.methods.METHODS``
  (a plain dict that upstream's ``main_pretrain.py``, ``main_linear.py``, ``main_knn.py`` and
  ``main_umap.py`` look methods up in);
* solo-learn's backbone constructors, for the zoo's names torchvision and timm lack
  (:mod:`solo_directpred.sololearn.backbones`);
* the OmegaConf resolver ``${sdp.dataset:NAME,SPLIT[,SIZE]}``, which prepares a built-in dataset on
  first use and returns its folder (``digits``: scikit-learn's handwritten digits).

When the job starts (:func:`configure_job`), ``spectral.enabled: true`` with ``method: byol`` or ``simsiam``
switches the spectral monitor on for upstream's method, and a ``data.eval_crop_size`` key (with
``data.eval_mean`` / ``data.eval_std``) makes the evaluation transforms of ``data.dataset: custom`` keep that
resolution instead of upstream's resize-to-224 with ImageNet statistics (see
:mod:`solo_directpred.sololearn.transforms`), and ``data.dataset: cifar10``/``cifar100`` with
``data.train_path`` holding class folders reads those folders instead of torchvision's pickles (see
:mod:`solo_directpred.sololearn.cifar_folders`).
"""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

_DATASETS = ("digits",)


def _dataset_resolver(name: str, split: str, size: int = 16) -> str:
    if name not in _DATASETS:
        raise ValueError(
            f"${{sdp.dataset:{name},...}}: unknown dataset {name!r}; built-in datasets: {_DATASETS}"
        )
    from solo_directpred.data.digits import prepare_digits

    return str(prepare_digits(split=split, size=int(size)))


def register() -> None:
    """Register the methods and resolvers (idempotent); applies the torchvision work-around first."""
    from solo_directpred.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from solo.methods import METHODS

    from solo_directpred.sololearn.backbones import solo_backbone
    from solo_directpred.sololearn.methods import METHOD_TABLE
    from solo_directpred.sololearn.schema import register_nodes
    from solo_directpred.zoo.models import register_builder

    register_builder(solo_backbone)
    register_nodes()
    METHODS.update({name: cls for name, (cls, _) in METHOD_TABLE.items()})
    if not OmegaConf.has_resolver("sdp.dataset"):
        OmegaConf.register_new_resolver("sdp.dataset", _dataset_resolver)


def configure_job(config: DictConfig) -> None:
    """Per-run settings read from the config: small-image evaluation transforms, CIFAR from class folders,
    and the spectral monitor for upstream ``byol``/``simsiam`` when ``spectral.enabled`` is true."""
    from solo_directpred.sololearn.cifar_folders import configure_cifar_folders
    from solo_directpred.sololearn.monitored import enable_for_upstream
    from solo_directpred.sololearn.transforms import configure_eval_transforms

    configure_eval_transforms(config)
    configure_cifar_folders(config)
    enable_for_upstream(config)


class PluginCallback(Callback):
    """Hydra callback declared by the plugin's YAMLs: registration on import, data settings on job start."""

    def __init__(self, **_: Any) -> None:
        register()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        configure_job(config)


register()
