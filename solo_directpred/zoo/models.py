"""Build the network a zoo checkpoint belongs to and load its weights, without solo-learn.

* ``resnet18`` / ``resnet50``: torchvision's model, ``fc`` replaced by ``nn.Identity`` (features of
  512 / 2048 dims, as in solo-learn). With ``cifar_stem`` the stem is solo-learn's CIFAR layout:
  ``conv1 = Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)`` and ``maxpool`` = identity.
* solo-learn's ``vit_*`` and ``swin_*`` names map to the timm models they wrap (:data:`TIMM_NAMES`);
  any other name (``convnext_*`` included: solo-learn uses timm's names) is given to ``timm.create_model``
  as is, with ``num_classes=0``.
* solo-learn's ``wide_resnet28w*`` and ``poolformer_*`` (timm has none / a different layout), the ViTs
  of ``mocov3`` / ``mae`` and names timm does not know go to the builders a host layer registered with
  :func:`register_builder` (the solo-learn layer registers solo-learn's constructors with the plugin:
  :mod:`solo_directpred.sololearn.backbones`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from solo_directpred.zoo.errors import ZooError
from solo_directpred.zoo.manifest import BackboneSpec

TORCHVISION_RESNETS = ("resnet18", "resnet50")
#: solo-learn backbone name -> the timm model it instantiates (solo/backbones/{vit,swin}).
_SIZES = ("tiny", "small", "base", "large")
TIMM_NAMES = {
    **{f"vit_{size}": f"vit_{size}_patch16_224" for size in _SIZES},
    **{f"swin_{size}": f"swin_{size}_patch4_window7_224" for size in _SIZES},
}
#: Methods for which solo-learn swaps in its own ViT (not the plain timm one).
SOLO_VIT_METHODS = ("mocov3", "mae")
#: solo-learn backbones that timm lacks or lays out differently (timm's poolformer_* is a MetaFormer).
SOLO_ONLY_PREFIXES = ("poolformer_", "wide_resnet")
#: ``builder(spec, method)`` -> the module, or None for a name it does not know; see :func:`register_builder`.
Builder = Callable[[BackboneSpec, str], "nn.Module | None"]
_HOST_BUILDERS: list[Builder] = []


def register_builder(builder: Builder) -> None:
    """Let ``builder`` build the backbones torchvision and timm lack (idempotent)."""
    if builder not in _HOST_BUILDERS:
        _HOST_BUILDERS.append(builder)


def build_backbone(spec: BackboneSpec, method: str = "") -> nn.Module:
    """A randomly initialised backbone laid out as ``spec`` says (no classifier head).

    ``method`` only matters for solo-learn's ViTs under ``mocov3``/``mae``, built by a host builder.
    """
    if spec.name in TORCHVISION_RESNETS:
        return _torchvision_resnet(spec)
    if spec.cifar_stem:
        raise ZooError(f"cifar_stem is only defined for {', '.join(TORCHVISION_RESNETS)}, not {spec.name!r}")
    import timm

    timm_name = TIMM_NAMES.get(spec.name, spec.name)
    solo_vit = spec.name.startswith("vit_") and method in SOLO_VIT_METHODS
    if spec.name.startswith(SOLO_ONLY_PREFIXES) or solo_vit or not timm.is_model(timm_name):
        return _host_backbone(spec, method)
    entrypoint = timm.models.model_entrypoint(timm_name)
    if entrypoint.__module__.startswith("solo."):
        # importing solo-learn re-registers convnext_*/poolformer_* in timm's registry with its own
        # functions, which fix num_classes=0 themselves and reject timm.create_model's arguments
        return entrypoint(**spec.kwargs)
    return timm.create_model(timm_name, pretrained=False, num_classes=0, **spec.kwargs)


def _torchvision_resnet(spec: BackboneSpec) -> nn.Module:
    from solo_directpred.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import torchvision.models

    model = getattr(torchvision.models, spec.name)(weights=None, **spec.kwargs)
    model.fc = nn.Identity()
    if spec.cifar_stem:
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
        model.maxpool = nn.Identity()
    return model


def _host_backbone(spec: BackboneSpec, method: str) -> nn.Module:
    for builder in _HOST_BUILDERS:
        model = builder(spec, method)
        if model is not None:
            return model
    raise ZooError(
        f"backbone {spec.name!r} (method {method or '-'!r}) is not a torchvision ResNet or a timm model, "
        f"and no registered builder knows it ({len(_HOST_BUILDERS)} registered); solo-learn's backbones are "
        "built once the plugin is registered: install the 'solo' extra and call "
        "solo_directpred.sololearn.plugin.register() (every solo-directpred command does)"
    )


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], spec: BackboneSpec) -> nn.Module:
    """Load ``state`` into ``model`` strictly (a ResNet's ``fc.*`` head is dropped first).

    Strict on purpose: solo-learn's ``main_linear.py`` loads with ``strict=False``, which turns a
    renamed key into a silently random layer.
    """
    if spec.name in TORCHVISION_RESNETS:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = model.state_dict()
    mismatched = {
        "missing": sorted(set(own) - set(state)),
        "unexpected": sorted(set(state) - set(own)),
        "wrong shape": sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape),
    }
    found = [
        f"{len(keys)} {label} key(s), e.g. {', '.join(keys[:3])}"
        for label, keys in mismatched.items()
        if keys
    ]
    if found:
        raise ZooError(
            f"weights do not fit backbone {spec.name!r} (cifar_stem={spec.cifar_stem}): {'; '.join(found)}"
        )
    model.load_state_dict(state, strict=True)
    return model
