"""The settings schema (solo_directpred/core/schema.py) against the README and Hydra: every documented key of
``method_kwargs``, ``spectral`` and ``preemption`` overrides on the command line without ``+``, the README's
tables list exactly the schema's keys with its defaults, and a misspelt key fails."""

import re
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from solo_directpred.core.schema import (
    KIND_DEFAULTS,
    PredictorSettings,
    PreemptionSettings,
    SpectralSettings,
    hydra_defaults,
)
from tests.conftest import requires_solo

README = Path(__file__).resolve().parents[2] / "README.md"
#: A valid value of each ``method_kwargs`` key other than its default (with the predictor kind it needs).
NEW_VALUES = {
    "predictor": ("directset", "directset"),
    "loss": ("euclidean", "euclidean"),
    "alpha": ("0.25", 0.25),
    "eps": ("0.2", 0.2),
    "rho": ("0.6", 0.6),
    "solver": ("auto", "auto"),
    "freq": ("3", 3),
    "normalize": ("false", False),
    "offset": ("0.05", 0.05),
    "center": ("true", True),
    "eigh_dtype": ("float64", "float64"),
    "ns_iters": ("7", 7),
    "power_iters": ("9", 9),
    "trainable": ("true", True),
    "bias": ("true", True),
    "symmetric": ("true", True),
    "lr_multiplier": ("10.0", 10.0),
    "weight_decay": ("0.0", 0.0),
    "init": ("identity", "identity"),
}


def readme_method_rows() -> list[tuple[list[str], str]]:
    """(keys, default column) of each row of the README's ``method_kwargs`` table."""
    text = README.read_text()
    table = text[text.index("`method_kwargs` keys") :]
    table = table[: table.index("\n\n", table.index("| key |"))]
    rows = []
    for line in table.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows.append((re.findall(r"`(\w+)`", cells[0]), cells[1].replace("`", "")))
    return rows


def _shown(value) -> str:
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def readme_spectral_block() -> dict:
    """The README's ``spectral:`` YAML block, parsed."""
    text = README.read_text()
    block = re.search(r"```yaml\n(spectral:\n.*?)```", text, re.S).group(1)
    return yaml.safe_load(block)["spectral"]


def test_readme_method_table_lists_the_schema_keys_with_their_defaults():
    rows = readme_method_rows()
    keys = [key for row_keys, _ in rows for key in row_keys]
    assert sorted(keys) == sorted(["proj_hidden_dim", "proj_output_dim", *PredictorSettings.keys()])
    defaults = PredictorSettings.flat_defaults()
    kind = KIND_DEFAULTS["directpred"]
    for row_keys, shown in rows:
        if row_keys[0] in ("proj_hidden_dim", "predictor", "alpha"):  # required / the method's kind / ½ or 1
            continue
        if row_keys[0] in kind:  # "0.3 (directcopy 0.5)", "eigh (directcopy power)"
            key = row_keys[0]
            assert shown == f"{kind[key]} (directcopy {KIND_DEFAULTS['directcopy'][key]})", key
        else:
            assert shown == ", ".join(_shown(defaults[key]) for key in row_keys), row_keys


def test_readme_spectral_block_is_the_schema():
    assert readme_spectral_block() == asdict(SpectralSettings())


@requires_solo
@pytest.mark.solo
@pytest.mark.parametrize("key", list(NEW_VALUES))
def test_every_method_key_overrides_without_plus(key):
    from tests.sololearn.helpers import compose_pretrain_cfg

    text, value = NEW_VALUES[key]
    cfg = compose_pretrain_cfg([f"method_kwargs.{key}={text}"])
    assert cfg.method_kwargs[key] == value


@requires_solo
@pytest.mark.solo
def test_spectral_and_preemption_keys_override_without_plus():
    from tests.sololearn.helpers import compose_pretrain_cfg

    spectral = {k: v for k, v in asdict(SpectralSettings()).items() if k != "alarm"}
    changed = {
        "enabled": ("false", False),
        "every_n_steps": ("7", 7),
        "buffer_size": ("64", 64),
        "plot_every_n_epochs": ("0", 0),
        "dirpath": ("spec", "spec"),
        "output_key": ("zz", "zz"),
        "plot_in_background": ("false", False),
        "min_plot_interval_s": ("1.5", 1.5),
        "lidar": ("false", False),
        "rankme_samples": ("0", 0),
        "log_panels": ("false", False),
        "select_by": ("rankme_repr", "rankme_repr"),
    }
    assert set(changed) == set(spectral)
    overrides = [f"spectral.{k}={text}" for k, (text, _) in changed.items()]
    overrides += ["spectral.alarm.rankme_min=8", "spectral.alarm.zstd_min=null", "spectral.alarm.stop=true"]
    overrides += ["preemption.every_n_steps=200", "preemption.on_sigterm=false"]
    cfg = compose_pretrain_cfg(overrides)
    assert {k: cfg.spectral[k] for k in changed} == {k: v for k, (_, v) in changed.items()}
    assert dict(cfg.spectral.alarm) == {"rankme_min": 8, "zstd_min": None, "stop": True}
    assert dict(cfg.preemption) == {"on_sigterm": False, "every_n_steps": 200}
    assert set(cfg.preemption) == set(asdict(PreemptionSettings()))


@requires_solo
@pytest.mark.solo
@pytest.mark.parametrize(
    "config_name",
    [
        "pretrain/cifar/directpred.yaml",
        "pretrain/stl10/isoloss_noema.yaml",
        "pretrain/paper/table6/rho0.5.yaml",
    ],
)
def test_presets_take_the_keys_without_plus_and_keep_their_values(config_name):
    from solo.methods import METHODS

    from tests.sololearn.helpers import compose_pretrain_cfg

    base = compose_pretrain_cfg(config_name=config_name)
    cfg = compose_pretrain_cfg(["method_kwargs.solver=auto", "spectral.alarm.rankme_min=8"], config_name)
    assert (cfg.method_kwargs.solver, cfg.spectral.alarm.rankme_min) == ("auto", 8)
    assert cfg.method_kwargs.rho == base.method_kwargs.rho != None  # noqa: E711 - the preset's own value
    method = METHODS[cfg.method](cfg)
    assert method.predictor.solver == "auto"


@requires_solo
@pytest.mark.solo
def test_upstream_byol_presets_get_the_spectral_keys_only():
    from tests.sololearn.helpers import compose_pretrain_cfg

    cfg = compose_pretrain_cfg(["spectral.enabled=true"], "pretrain/cifar/byol.yaml")
    assert cfg.spectral.enabled is True and "predictor" not in cfg.method_kwargs
    assert compose_pretrain_cfg(config_name="pretrain/cifar/byol.yaml").spectral.enabled is False


@requires_solo
@pytest.mark.solo
def test_a_misspelt_key_fails_with_or_without_plus():
    from hydra.errors import ConfigCompositionException

    from tests.sololearn.helpers import compose_pretrain_cfg

    with pytest.raises(ConfigCompositionException, match=r"Could not override 'method_kwargs.solverr'"):
        compose_pretrain_cfg(["method_kwargs.solverr=eigh"])
    with pytest.raises(ConfigCompositionException, match=r"Could not override 'spectral.alarm.rankme_mn'"):
        compose_pretrain_cfg(["spectral.alarm.rankme_mn=3"])


def test_hydra_node_holds_every_documented_section():
    node = hydra_defaults()
    assert set(node) == {"method_kwargs", "spectral", "preemption"}
    assert tuple(node["method_kwargs"]) == PredictorSettings.keys()
    assert hydra_defaults(method_kwargs=False, spectral_enabled=False) == {
        "spectral": {**asdict(SpectralSettings()), "enabled": False}
    }
