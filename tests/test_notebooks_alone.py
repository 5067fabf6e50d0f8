"""Each main notebook runs alone, as in a fresh Colab runtime: an empty folder, a plain install, nothing else.

Colab gives every notebook a runtime of its own: the package arrives by a plain (non-editable) ``pip install``,
the working directory is empty, and nothing another notebook saved (``models/``, a results JSON) is there. The
test recreates that with the interpreter that runs it, whatever it is (the machine's, a virtual environment, a
conda one): pip installs a copy of the course's sources into a folder of its own (``--target``, no dependencies,
built offline with this interpreter's setuptools), and a kernel of this same interpreter starts with that folder
first on its path, in a working folder holding only the dataset and weights where a download would leave them,
with a temporary folder of its own (a reduced run keeps its models there). Each notebook runs top to bottom in
reduced mode and the test fails on the first cell that fails. Outputs are not compared here (nbval does that).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from going_modular.common import settings

ROOT = Path(__file__).resolve().parents[1]
MAIN_NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*.ipynb"))
SOURCES = ["pyproject.toml", "README.md", "helper_functions.py", "going_modular"]  # what `pip install` reads
STAGED = {"data": ["pizza_steak_sushi", "pizza_steak_sushi_20_percent", "04-pizza-dad.jpeg"],
          "weights": ["vit_tiny_patch16_224.safetensors"]}
KERNEL = "course-alone"
RUNNER = """
import sys
import nbformat
from nbclient import NotebookClient

notebook = nbformat.read(sys.argv[1], as_version=4)
try:
    NotebookClient(notebook, timeout=1800, kernel_name="course-alone",
                   resources={"metadata": {"path": sys.argv[2]}}).execute()
finally:
    nbformat.write(notebook, sys.argv[3])  # what ran, for reading when a cell failed
"""


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory) -> Path:
    """A folder with the course installed into it from a copy of its sources (not editable), and beside it, in
    ``jupyter/``, the spec of a kernel of this interpreter that imports from that folder first."""
    base = tmp_path_factory.mktemp("colab")
    source = base / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    target = base / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--disable-pip-version-check", "--no-cache-dir", "--target", str(target), str(source)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    kernel = base / "jupyter" / "kernels" / KERNEL
    kernel.mkdir(parents=True)
    kernel.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "env": {"PYTHONPATH": str(target)}, "display_name": "course, installed alone", "language": "python"}))
    return target


def _staged_files() -> dict[Path, Path]:
    """Where each staged file lies in this checkout -> where a download would put it, relative to the folder."""
    places = {"data": settings.get_data_dir(), "weights": settings.get_weights_dir()}
    return {places[folder] / name: Path(folder) / name for folder, names in STAGED.items() for name in names}


@pytest.mark.parametrize("notebook", MAIN_NOTEBOOKS, ids=lambda path: path.stem)
def test_the_notebook_runs_alone_in_an_empty_folder(notebook, plain_install, tmp_path):
    missing = [str(path) for path in _staged_files() if not path.exists()]
    if missing:
        pytest.skip(f"the dataset and weights are not staged here ({', '.join(missing)}); .ci/run stages them")
    work = tmp_path / "content"  # Colab's working folder
    for staged, target in _staged_files().items():
        (work / target.parent).mkdir(parents=True, exist_ok=True)
        (shutil.copytree if staged.is_dir() else shutil.copy2)(staged, work / target)
    (tmp_path / "tmp").mkdir()
    environment = {name: value for name, value in os.environ.items()
                   if name not in (settings.DATA_DIR_ENV, settings.WEIGHTS_DIR_ENV, "PYTHONPATH")}
    environment.update({settings.REDUCED_RUN_ENV: "1", "TMPDIR": str(tmp_path / "tmp"),
                        "TORCH_HOME": str(tmp_path / "torch_home"),
                        "JUPYTER_PATH": str(plain_install.parent / "jupyter")})
    where = subprocess.run([sys.executable, "-c", "import going_modular, helper_functions; "
                            "print(going_modular.__file__); print(helper_functions.__file__)"],
                           cwd=work, env={**environment, "PYTHONPATH": str(plain_install)}, capture_output=True,
                           text=True)
    assert where.returncode == 0 and all(line.startswith(str(plain_install)) for line in where.stdout.split()), \
        f"not the plain install: {where.stdout}{where.stderr}"

    executed = tmp_path / notebook.name
    run = subprocess.run([sys.executable, "-c", RUNNER, str(notebook), str(work), str(executed)], cwd=work,
                         env=environment, capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, f"{notebook.name} failed when run alone (run kept in {executed}):\n{run.stderr[-4000:]}"
