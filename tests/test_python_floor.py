"""The Python version pyproject.toml promises is enough for every line of the course: checked by vermin.

vermin reads the code (package, tools, tests, benchmarks and every notebook's code cells) and names the oldest
Python each construct needs; the test fails when something needs more than ``requires-python`` says.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON_CODE = ["going_modular", "tools", "tests", "benchmarks", "helper_functions.py", "conftest.py"]


def _floor() -> str:
    match = re.search(r'^requires-python = ">=(3\.\d+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert match, 'pyproject.toml should say requires-python = ">=3.N"'
    return match.group(1)


def _notebook_code(notebook: Path, folder: Path) -> Path:
    """A notebook's code cells as one .py file (shell and magic lines left out: they are not Python)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    lines = [line for cell in cells if cell["cell_type"] == "code"
             for line in "".join(cell["source"]).splitlines() if not line.lstrip().startswith(("!", "%"))]
    target = folder / notebook.relative_to(ROOT / "notebooks").with_suffix(".py")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def _vermin(floor: str, *paths: Path | str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", f"--target={floor}-", "--violations", "--no-tips", "--eval-annotations",
               *map(str, paths)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_floor_is_colabs_or_older():
    assert tuple(map(int, _floor().split("."))) <= (3, 12), "Colab runs Python 3.12: the course must run there"


def test_every_line_of_code_runs_on_the_promised_python(tmp_path):
    pytest.importorskip("vermin", reason="pip install vermin (listed in requirements.txt)")
    notebooks = [_notebook_code(path, tmp_path) for path in sorted((ROOT / "notebooks").rglob("*.ipynb"))]
    result = _vermin(_floor(), *PYTHON_CODE, *notebooks)
    assert result.returncode == 0, f"code needs a newer Python than requires-python:\n{result.stdout[-3000:]}"


def test_the_check_catches_code_newer_than_the_floor(tmp_path):
    pytest.importorskip("vermin", reason="pip install vermin (listed in requirements.txt)")
    (tmp_path / "new.py").write_text("import tomllib\n")  # Python 3.11
    result = _vermin("3.10", tmp_path / "new.py")
    assert result.returncode != 0 and "'tomllib' module requires" in result.stdout, result.stdout + result.stderr
