"""The built wheel carries what a pip-only user needs: presets, configs, zoo manifest, Hydra plugin."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and "No matching distribution found for hatchling" in result.stderr:
        pytest.skip("the build backend (hatchling) cannot be fetched from the package index")
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = out.glob("solo_directpred-*.whl")
    return path


@pytest.mark.slow
def test_wheel_contains_configs_presets_manifest_and_hydra_plugin(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "solo_directpred/configs/directpred.yaml" in names
    assert "hydra_plugins/solo_directpred_searchpath/searchpath.py" in names
    assert "hydra_plugins/__init__.py" not in names  # a namespace package shared with other Hydra plugins
    assert "solo_directpred/_zoo/manifest.json" in names
    presets = {n for n in names if n.startswith("solo_directpred/_presets/") and n.endswith(".yaml")}
    shipped = {p.relative_to(REPO / "scripts").as_posix() for p in (REPO / "scripts").rglob("*.yaml")}
    assert shipped, "no presets under scripts/"
    assert {n.removeprefix("solo_directpred/_presets/") for n in presets} == shipped
    entry_points = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
        .decode()
    )
    assert "solo-directpred = solo_directpred.cli:main" in entry_points


@pytest.mark.slow
def test_installed_wheel_finds_its_configs_through_hydra(wheel, tmp_path):
    target = tmp_path / "site"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--quiet",
        "--target",
        str(target),
        str(wheel),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    code = (
        "import solo_directpred, solo_directpred.paths as p;"
        f"assert solo_directpred.__file__.startswith({str(target)!r}), solo_directpred.__file__;"
        "assert p.presets_dir().name == '_presets', p.presets_dir();"
        "assert p.zoo_dir().name == '_zoo', p.zoo_dir();"
        "from hydra import compose, initialize;"
        "initialize(version_base='1.2');"
        "cfg = compose('directpred.yaml', return_hydra_config=True);"
        "print(cfg.method, cfg.hydra.callbacks.solo_directpred._target_)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["directpred", "solo_directpred.sololearn.plugin.PluginCallback"]
