"""``solo-directpred doctor``: check a solo-learn install for the known traps; fix the torchvision one.

The checks run in fresh subprocesses, so a module that fails to import here leaves this process clean.
``--fix`` applies the fixes this environment needs and nothing else (today: the torchvision one, only where
torchvision's compiled extension does not load), so it is safe as the last step of any set-up.
``--fix-torchvision`` writes a one-line ``.pth`` file into site-packages: at interpreter start it installs an
import hook that, the first time ``torchvision`` is imported and only if its C++ extension cannot load (a CUDA
torchvision wheel under a CPU-only torch), declares the two operator schemas torchvision's meta registrations
expect (see :mod:`solo_directpred.compat`). Nothing else is imported at start-up. ``--undo`` removes it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import sysconfig
from pathlib import Path

PTH_NAME = "solo_directpred_torchvision_fix.pth"
# One line: .pth files execute lines that start with "import". The hook removes itself on first use.
_HOOK = (
    "import sys; exec("
    + repr(
        "class _SdpTorchvisionHook:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torchvision':\n"
        "            sys.meta_path.remove(self)\n"
        "            try:\n"
        "                from solo_directpred.compat import ensure_torchvision_importable\n"
        "                ensure_torchvision_importable()\n"
        "            except Exception:\n"
        "                pass\n"
        "        return None\n"
        "sys.meta_path.insert(0, _SdpTorchvisionHook())\n"
    )
    + ")\n"
)

CHECKS: list[tuple[str, str, str]] = [
    ("torch", "import torch; print(torch.__version__)", "pip install torch==<your version> first"),
    (
        "torchvision",
        "import torchvision; print(torchvision.__version__)",
        "a CUDA torchvision under a CPU-only torch: run `solo-directpred doctor --fix`",
    ),
    (
        "setuptools<81 (pkg_resources)",
        "import pkg_resources, setuptools; print(setuptools.__version__)",
        "lightning 2.1 and solo-learn import pkg_resources: pip install 'setuptools<81'",
    ),
    (
        "torchmetrics<0.12",
        "import torchmetrics; v = torchmetrics.__version__; print(v); "
        "assert tuple(int(x) for x in v.split('.')[:2]) < (0, 12), v",
        "solo-learn needs torchmetrics<0.12: pip install 'torchmetrics<0.12'",
    ),
    ("lightning", "import lightning; print(lightning.__version__)", "pip install 'lightning>=2.1.2,<2.7'"),
    (
        "solo-learn",
        "import solo; from solo.methods import METHODS; print(len(METHODS), 'methods')",
        "install the 'solo' extra: pip install 'solo-directpred[solo]' (solo-learn installs from Git)",
    ),
    (
        "plugin methods",
        "import solo_directpred.sololearn.plugin; from solo.methods import METHODS; "
        "assert 'directpred' in METHODS; print('directpred registered')",
        "solo-learn must import first (see above)",
    ),
    (
        "Hydra search path",
        "from hydra.core.plugins import Plugins; "
        "from hydra.plugins.search_path_plugin import SearchPathPlugin; "
        "names = [p.__name__ for p in Plugins.instance().discover(SearchPathPlugin)]; "
        "assert 'SoloDirectPredSearchPathPlugin' in names, names; print('found')",
        "reinstall the plugin (the hydra_plugins package is missing from site-packages)",
    ),
]


def run_checks() -> list[tuple[str, bool, str]]:
    """(name, ok, detail) for every check, each in a fresh interpreter."""
    results = []
    for name, code, hint in CHECKS:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        ok = proc.returncode == 0
        lines = (proc.stdout if ok else proc.stderr).strip().splitlines()
        last = lines[-1] if lines else ("ok" if ok else "failed")
        results.append((name, ok, last if ok else f"{last}  ->  {hint}"))
    return results


def fix_torchvision(undo: bool = False, site_packages: Path | None = None) -> Path:
    """Write (or with ``undo`` remove) the start-up hook; returns the .pth path."""
    target = Path(site_packages or sysconfig.get_paths()["purelib"]) / PTH_NAME
    if undo:
        target.unlink(missing_ok=True)
    else:
        target.write_text(_HOOK)
    return target


def torchvision_needs_fix() -> bool:
    """Whether torchvision is installed and its compiled extension fails to load (checked in a subprocess)."""
    code = (
        "import importlib.util, sys; from solo_directpred.compat import torchvision_extension_loads; "
        "absent = importlib.util.find_spec('torchvision') is None; "
        "sys.exit(0 if absent or torchvision_extension_loads() else 3)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return proc.returncode == 3


def _main(args: argparse.Namespace) -> int:
    if args.fix_torchvision or args.undo:
        path = fix_torchvision(undo=args.undo)
        print(f"{'removed' if args.undo else 'wrote'} {path}")
    elif args.fix:
        if torchvision_needs_fix():
            print(f"torchvision: its extension does not load under this torch; wrote {fix_torchvision()}")
        else:
            print("torchvision: nothing to fix")
    failures = 0
    for name, ok, detail in run_checks():
        failures += not ok
        print(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}")
    return 1 if failures else 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check the environment (torchvision, setuptools, torchmetrics, solo-learn, Hydra plugin)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--fix", action="store_true", help="apply the fixes this environment needs (none where all is well)"
    )
    parser.add_argument(
        "--fix-torchvision", action="store_true", help="install the torchvision start-up fix unconditionally"
    )
    parser.add_argument("--undo", action="store_true", help="remove the torchvision start-up fix")
    parser.set_defaults(func=_main)
