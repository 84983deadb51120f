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


def test_set_up_and_test_commands_are_the_ones_ci_runs():
    """The README's two commands open it, and CI runs them: the set-up (its job shortened) and the tests."""
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text().splitlines()
    section = _section("Set up and test: two commands")
    assert re.search(r"^## .*", README, flags=re.M).group(0) == "## Set up and test: two commands"
    set_up, test = re.findall(r"```bash\n([^\n]+)\n```", section)[:2]
    install, job = set_up.rsplit(" && ", 1)
    assert install.startswith("PIP_CONSTRAINT=build-constraints.txt pip install torch==")
    assert '-e ".[solo,dev]"' in install
    assert job == "solo-directpred pretrain"
    assert install in ci and f"{job} max_epochs=1" in ci and test in ci
    assert "python -m pytest -m solo" in ci
    assert any(line.startswith('pip install "lightning==2.6') for line in ci)


def test_build_constraints_reach_the_solo_learn_build():
    """The constraint file the set-up names exists and holds the setuptools pin solo-learn's build needs."""
    constraints = (Path(__file__).resolve().parents[1] / "build-constraints.txt").read_text().splitlines()
    assert [line for line in constraints if line and not line.startswith("#")] == ["setuptools<81"]
