"""Run one of solo-learn's own scripts with the plugin registered: ``python -m`` this module.

Upstream's Hydra scripts (``main_pretrain.py``, ``main_linear.py``) register the plugin through the
Hydra callback declared in its YAMLs. ``main_knn.py`` and ``main_umap.py`` parse plain ``argparse``
arguments: no config, no callback, so ``METHODS["directpred"]`` would be a ``KeyError`` there. This
runner registers the plugin first, then executes the script as ``__main__`` with its own arguments::

    python -m solo_directpred.sololearn.upstream main_knn.py --pretrained_checkpoint_dir RUN \\
        --dataset custom --train_data_path TRAIN --val_data_path VAL --k 20 --temperature 0.07 \\
        --distance_function cosine --feature_type backbone projector

(upstream's ``main_knn.py`` moves every batch to CUDA; ``solo-directpred knn`` runs on CPU too).
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence
from pathlib import Path


def run_script(script: str | Path, argv: Sequence[str] = ()) -> None:
    """Register the plugin, then run ``script`` as ``__main__`` with ``sys.argv = [script, *argv]``."""
    from solo_directpred.sololearn.plugin import register

    path = Path(script)
    if not path.is_file():
        raise FileNotFoundError(f"solo-learn script {path} does not exist (e.g. main_knn.py of a checkout)")
    register()
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(path), *argv]
    sys.path.insert(0, str(path.resolve().parent))
    try:
        runpy.run_path(str(path), run_name="__main__")
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m solo_directpred.sololearn.upstream SCRIPT [ARGS...]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    run_script(args[0], args[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
