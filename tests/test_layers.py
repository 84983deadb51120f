"""The package's floors: importing a layer does nothing but define things, and arrows point down.

Each check runs in a fresh interpreter, so what an import pulls in (or patches) is all there is to see.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_PROBE = """
import json, sys
import {modules}
from solo_directpred import compat
hosts = ("solo", "torchvision", "lightning")
loaded = [m for m in sys.modules if m.split(".")[0] in hosts or m.startswith("solo_directpred.")]
print(json.dumps({{"patched": compat._library is not None, "loaded": sorted(loaded)}}))
"""
CORE = ("solo_directpred.core", "solo_directpred.theory")


def _imports(*modules: str) -> dict:
    code = _PROBE.format(modules=", ".join(modules))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "modules", [("solo_directpred",), ("solo_directpred.core", "solo_directpred.theory")]
)
def test_importing_the_core_has_no_side_effects(modules):
    probe = _imports(*modules)
    # the torchvision work-around (solo_directpred.compat) runs at the entry points only
    assert probe["patched"] is False
    assert not [m for m in probe["loaded"] if m.split(".")[0] in ("solo", "torchvision", "lightning")]


def test_data_does_not_import_the_zoo():
    probe = _imports("solo_directpred.data", "solo_directpred.data.shapes")
    assert not [m for m in probe["loaded"] if m.startswith("solo_directpred.zoo")]


def test_the_zoo_does_not_import_solo_learn():
    loaded = _imports("solo_directpred.zoo", "solo_directpred.zoo.commands")["loaded"]
    assert not [m for m in loaded if m.split(".")[0] == "solo" or m.startswith("solo_directpred.sololearn")]
