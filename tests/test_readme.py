"""The README's promises that can be checked without solo-learn."""

import contextlib
import io
import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_core_example_runs_and_prints_what_the_readme_says():
    (code,) = re.findall(r"```python\n(.*?)```", _section("The predictor core"), flags=re.S)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    expected = re.search(r"print\(.*\)\s+# (.*)", code).group(1)
    assert out.getvalue().strip() == expected


def test_install_and_test_commands_are_the_ones_ci_runs():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    install = re.search(r"```bash\n(pip install torch==[^\n]*dev\]\")\n```", _section("Install")).group(1)
    test = re.search(r"```bash\n([^\n]+)\n```", _section("Tests")).group(1)
    assert install in ci.splitlines() and test in ci.splitlines()
