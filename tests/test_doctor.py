"""The torchvision start-up fix of ``solo-directpred doctor`` and the compat shim behind it."""

import importlib.util
import subprocess
import sys
import sysconfig

import pytest

from solo_directpred.cli import main
from solo_directpred.doctor import PTH_NAME, fix_torchvision

_SITE = sysconfig.get_paths()["purelib"]


def test_fix_writes_and_undo_removes_the_pth(tmp_path):
    path = fix_torchvision(site_packages=tmp_path)
    assert path == tmp_path / PTH_NAME and path.read_text().startswith("import sys; exec(")
    assert len(path.read_text().strip().splitlines()) == 1  # .pth files run single lines only
    fix_torchvision(undo=True, site_packages=tmp_path)
    assert not path.exists()


def _bare_python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` with -S (no .pth of this environment runs) and site-packages put on the path by hand."""
    base = f"import sys; sys.path.append({_SITE!r}); sys.path.insert(0, {str(sys.path[0] or '.')!r});"
    return subprocess.run(
        [sys.executable, "-S", "-c", base + code], capture_output=True, text=True, timeout=300
    )


def test_hook_fires_once_on_torchvision_and_removes_itself(tmp_path):
    pth = fix_torchvision(site_packages=tmp_path)
    code = (
        f"exec(open({str(pth)!r}).read());"
        "names = lambda: [type(h).__name__ for h in sys.meta_path];"
        "assert names().count('_SdpTorchvisionHook') == 1, names();"
        "import importlib.util; importlib.util.find_spec('json');"
        "assert '_SdpTorchvisionHook' in names();"
        "importlib.util.find_spec('torchvision');"
        "assert '_SdpTorchvisionHook' not in names(); print('ok')"
    )
    out = _bare_python(code)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed")
def test_hook_makes_a_broken_torchvision_importable(tmp_path):
    pth = fix_torchvision(site_packages=tmp_path)
    bare = _bare_python("import torchvision")
    if bare.returncode == 0:
        pytest.skip("torchvision imports without the fix here (its extension matches torch)")
    assert "torchvision::nms does not exist" in bare.stderr
    fixed = _bare_python(f"exec(open({str(pth)!r}).read()); import torchvision.models; print('ok')")
    assert fixed.returncode == 0 and fixed.stdout.strip() == "ok", fixed.stderr[-2000:]


def test_cli_lists_subcommands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in ("doctor", "theory", "zoo", "spectral"):
        assert command in out
