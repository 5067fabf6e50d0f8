"""tools.publish: one repository address, in pyproject.toml, written into every notebook, the README, the guides
and mkdocs.yml;
and the Colab setup cell it renders, run with a pretend Colab."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path, PurePosixPath

import pytest
import torch

from tools import publish

ROOT = Path(__file__).resolve().parents[1]
NEW = "https://github.com/ada/vit-course"
NOTEBOOKS = publish.notebook_paths(ROOT)
SAMPLE_NOTEBOOKS = ("notebooks/04_equation_4_encoder_and_vit.ipynb", "notebooks/solutions/02_attention_solutions.ipynb")


def _relative(path: Path) -> PurePosixPath:
    return PurePosixPath(path.relative_to(ROOT).as_posix())


# --------------------------------------------------------------------------------- the repository as it is


def test_every_notebook_and_text_uses_pyprojects_address():
    problems = publish.check(ROOT)
    assert problems == [], "\n".join(problems) + "\nRun `python -m tools.publish` to rewrite them."


def test_pyproject_address_is_what_a_toml_parser_reads():
    tomllib = pytest.importorskip("tomllib")
    with open(ROOT / "pyproject.toml", "rb") as file:
        urls = tomllib.load(file)["project"]["urls"]
    assert publish.read_repository(ROOT) == urls["Repository"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_setup_cell_is_the_template_for_pyprojects_address(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    setup = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    assert "".join(setup["source"]) == publish.setup_cell_source(publish.read_repository(ROOT), _relative(path))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_a_publish_that_changes_nothing_rewrites_every_byte_as_it_was(path):
    raw = path.read_bytes().decode("utf-8")
    assert publish.updated_notebook(raw, _relative(path), publish.read_repository(ROOT)) == (raw, [])


# --------------------------------------------------------------------------------------- a new address


@pytest.mark.parametrize("name", SAMPLE_NOTEBOOKS)
def test_a_new_address_changes_only_the_badge_and_the_setup_cell(name):
    raw = (ROOT / name).read_bytes().decode("utf-8")
    new_text, _ = publish.updated_notebook(raw, PurePosixPath(name), NEW)
    old, new = json.loads(raw), json.loads(new_text)
    title = "".join(new["cells"][0]["source"])
    assert f"(https://colab.research.google.com/github/ada/vit-course/blob/main/{name})" in title
    assert 'COURSE_REPOSITORY = "https://github.com/ada/vit-course"' in "".join(new["cells"][1]["source"])
    assert "vit-paper-replicating/vit-paper-replicating" not in title
    # Put the two cells back: the rest of the file (outputs, metadata, non-ASCII text, layout) is untouched.
    for index in (0, 1):
        new["cells"][index]["source"] = old["cells"][index]["source"]
    assert json.dumps(new, indent=1, ensure_ascii=False) + "\n" == raw


def _notebook(title: list[str], setup: str) -> dict:
    """A valid nbformat 4.5 notebook (cell ids, nbformat's sorted keys) with a title cell and a code cell."""
    return {"cells": [
        {"cell_type": "markdown", "id": "title", "metadata": {}, "source": title},
        {"cell_type": "code", "execution_count": None, "id": "setup", "metadata": {}, "outputs": [],
         "source": setup.splitlines(keepends=True)},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_a_notebook_keeps_its_own_way_of_writing_non_ascii_text(ensure_ascii):
    notebook = _notebook([publish.colab_badge(NEW, PurePosixPath("notebooks/x.ipynb")) + "\n", "# Équation 1 → E"],
                         publish.setup_cell_source(NEW, PurePosixPath("notebooks/x.ipynb")))
    raw = json.dumps(notebook, indent=1, ensure_ascii=ensure_ascii) + "\n"
    assert ("\\u00c9" in raw) == ensure_ascii
    assert publish.updated_notebook(raw, PurePosixPath("notebooks/x.ipynb"), NEW) == (raw, [])


def test_a_notebook_without_a_badge_gets_one_first():
    notebook = _notebook(["# Title\n", "Text."], publish.setup_cell_source(NEW, PurePosixPath("notebooks/x.ipynb")))
    text, problems = publish.updated_notebook(json.dumps(notebook), PurePosixPath("notebooks/x.ipynb"), NEW)
    title = "".join(json.loads(text)["cells"][0]["source"])
    assert title == publish.colab_badge(NEW, PurePosixPath("notebooks/x.ipynb")) + "\n\n# Title\nText."
    assert problems == ["notebooks/x.ipynb: the Colab badge opens nothing (none in the first markdown cell), expected "
                        "https://colab.research.google.com/github/ada/vit-course/blob/main/notebooks/x.ipynb."]


def test_a_notebook_whose_first_code_cell_is_not_the_setup_cell_is_refused():
    notebook = _notebook(["# T"], "import torch")
    with pytest.raises(publish.PublishError,
                       match="notebooks/x.ipynb needs a markdown title cell and, as its first code cell, the setup cell"):
        publish.updated_notebook(json.dumps(notebook), PurePosixPath("notebooks/x.ipynb"), NEW)


def test_a_file_that_is_not_a_notebook_is_refused_with_its_name():
    with pytest.raises(publish.PublishError, match="notebooks/x.ipynb is not a notebook"):
        publish.updated_notebook('{"cells": [\n<<<<<<< HEAD\n', PurePosixPath("notebooks/x.ipynb"), NEW)


@pytest.mark.parametrize("url", [
    "http://github.com/ada/vit-course", "https://gitlab.com/ada/vit-course", "https://github.com/ada",
    "https://github.com/ada/vit-course/tree/main", "github.com/ada/vit-course", "https://github.com/ada/..", "",
])
def test_an_address_that_is_not_a_github_repository_is_refused(url):
    with pytest.raises(publish.PublishError, match=r"https://github\.com/OWNER/NAME"):
        publish.validate_repository_url(url)


@pytest.mark.parametrize("url", [NEW, NEW + "/", NEW + ".git", f"  {NEW}\n"])
def test_an_address_is_tidied(url):
    assert publish.validate_repository_url(url) == NEW


def test_readme_addresses_of_this_repository_change_and_others_do_not():
    old = "https://github.com/vit-paper-replicating/vit-paper-replicating"
    readme = (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/vit-paper-replicating/vit-paper-replicating/blob/main/notebooks/00.ipynb)\n"
        "git clone https://github.com/vit-paper-replicating/vit-paper-replicating.git\n"
        "pip install git+https://github.com/someone-else/stale-name\n"
        "See https://github.com/vit-paper-replicating/vit-paper-replicating/issues and "
        "https://github.com/mrdbourke/pytorch-deep-learning.\n"
    )
    updated = publish.updated_text(readme, old, NEW)
    assert updated == (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/ada/vit-course/blob/main/notebooks/00.ipynb)\n"
        "git clone https://github.com/ada/vit-course.git\n"
        "pip install git+https://github.com/ada/vit-course\n"
        "See https://github.com/ada/vit-course/issues and https://github.com/mrdbourke/pytorch-deep-learning.\n"
    )
    assert publish.text_problems(updated, NEW) == []
    assert publish.text_problems(readme, NEW) == [
        "README.md: https://colab.research.google.com/github/vit-paper-replicating/vit-paper-replicating is not "
        f"{NEW}.",
        f"README.md: git clone {old} is not {NEW}.",
        f"README.md: git+https://github.com/someone-else/stale-name is not {NEW}.",
    ]


# ------------------------------------------------------------------------------------------ the command


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A small copy of the repository: pyproject.toml, a README, and two notebooks at the two depths."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "README.md").write_text(
        "Install: `pip install git+https://github.com/vit-paper-replicating/vit-paper-replicating`.\n"
        "Data from https://github.com/mrdbourke/pytorch-deep-learning.\n", encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: x\nrepo_url: https://github.com/vit-paper-replicating/vit-paper-replicating  # publish\n",
        encoding="utf-8")
    (tmp_path / "docs" / "guides").mkdir(parents=True)
    (tmp_path / "docs" / "guides" / "notebooks.md").write_text(
        "[Open in Colab](https://colab.research.google.com/github/vit-paper-replicating/vit-paper-replicating/blob/"
        "main/notebooks/00_setup_and_data.ipynb)\n", encoding="utf-8")
    for name in SAMPLE_NOTEBOOKS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_publish_command_writes_the_address_everywhere_then_check_passes(checkout, capsys):
    pyproject_before = (checkout / "pyproject.toml").read_text(encoding="utf-8")
    assert publish.main(["--root", str(checkout), "--repository", NEW + ".git"]) == 0
    assert "wrote notebooks/04_equation_4_encoder_and_vit.ipynb" in capsys.readouterr().out
    pyproject_after = (checkout / "pyproject.toml").read_text(encoding="utf-8")
    assert pyproject_after == pyproject_before.replace(
        'Repository = "https://github.com/vit-paper-replicating/vit-paper-replicating"', f'Repository = "{NEW}"')
    assert (checkout / "README.md").read_text(encoding="utf-8") == (
        f"Install: `pip install git+{NEW}`.\nData from https://github.com/mrdbourke/pytorch-deep-learning.\n")
    assert f"repo_url: {NEW}  # publish" in (checkout / "mkdocs.yml").read_text(encoding="utf-8")
    assert (checkout / "docs" / "guides" / "notebooks.md").read_text(encoding="utf-8") == (
        f"[Open in Colab](https://colab.research.google.com/github/{NEW.removeprefix('https://github.com/')}/blob/"
        "main/notebooks/00_setup_and_data.ipynb)\n")
    assert publish.main(["--root", str(checkout), "--check"]) == 0
    before = _snapshot(checkout)
    assert publish.publish(checkout) == []  # a second publish has nothing to do
    assert _snapshot(checkout) == before


def test_check_reports_a_badge_and_an_install_address_that_differ_and_writes_nothing(checkout, capsys):
    path = checkout / SAMPLE_NOTEBOOKS[1]
    text = path.read_text(encoding="utf-8")
    stale = "https://github.com/someone/old-fork"
    path.write_text(text.replace("github/vit-paper-replicating/vit-paper-replicating/", "github/someone/old-fork/")
                    .replace("https://github.com/vit-paper-replicating/vit-paper-replicating", stale), encoding="utf-8")
    before = _snapshot(checkout)
    assert publish.main(["--root", str(checkout), "--check"]) == 1
    out = capsys.readouterr().out
    expected = "https://github.com/vit-paper-replicating/vit-paper-replicating"
    assert (f"{SAMPLE_NOTEBOOKS[1]}: the Colab badge opens https://colab.research.google.com/github/someone/old-fork/"
            f"blob/main/{SAMPLE_NOTEBOOKS[1]}, expected https://colab.research.google.com/github/"
            f"vit-paper-replicating/vit-paper-replicating/blob/main/{SAMPLE_NOTEBOOKS[1]}.") in out
    assert (f"{SAMPLE_NOTEBOOKS[1]}: the setup cell is not tools.publish.SETUP_CELL_TEMPLATE for {expected} "
            f"(it installs from {stale}).") in out
    assert SAMPLE_NOTEBOOKS[0] not in out
    assert _snapshot(checkout) == before


def test_check_against_another_address_reports_pyproject_too(checkout):
    problems = publish.check(checkout, NEW)
    assert problems[0] == ("pyproject.toml: [project.urls] Repository is "
                           f"https://github.com/vit-paper-replicating/vit-paper-replicating, not {NEW}.")
    # pyproject, badge and setup cell of each notebook, the README, the site's repo_url, the guide's Colab link
    assert len(problems) == 1 + 2 * len(SAMPLE_NOTEBOOKS) + 3
    assert f"mkdocs.yml: repo_url: https://github.com/vit-paper-replicating/vit-paper-replicating is not {NEW}." in problems


def test_publish_adds_the_urls_table_when_pyproject_has_none(checkout):
    pyproject = checkout / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    start = text.index("[project.urls]")
    pyproject.write_text(text[:start] + text[text.index("[project.scripts]"):], encoding="utf-8")
    with pytest.raises(publish.PublishError, match="no `Repository"):
        publish.read_repository(checkout)
    publish.publish(checkout, NEW)
    assert publish.read_repository(checkout) == NEW
    assert publish.check(checkout) == []


def test_a_wrong_address_on_the_command_line_ends_with_one_error_line(checkout, capsys):
    before = _snapshot(checkout)
    with pytest.raises(SystemExit) as exit_info:
        publish.main(["--root", str(checkout), "--repository", "https://gitlab.com/ada/vit-course"])
    assert exit_info.value.code == 2
    assert "error: Expected the repository's address as https://github.com/OWNER/NAME" in capsys.readouterr().err
    assert _snapshot(checkout) == before


def test_the_module_runs_as_a_command():
    done = subprocess.run([sys.executable, "-m", "tools.publish", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "uses pyproject.toml's repository address" in done.stdout


# ----------------------------------------------------------------------------- the setup cell, in a pretend Colab


class _FakePip:
    """Stands in for subprocess.run: records the command and answers with ``returncode`` and ``stderr``."""

    def __init__(self, returncode: int = 0, stderr: str = "") -> None:
        self.returncode, self.stderr, self.commands = returncode, stderr, []

    def __call__(self, command, **kwargs):
        self.commands.append(list(command))
        return subprocess.CompletedProcess(command, self.returncode, stdout="", stderr=self.stderr)


@pytest.fixture
def pretend_fresh_runtime(monkeypatch, tmp_path):
    """going_modular not importable, the working directory inside a checkout, sys.path and temp dir restorable."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "going_modular" else real_find_spec(name, *args))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "notebooks" / "solutions").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "notebooks")
    return tmp_path


def _run_setup_cell(notebook: str = "notebooks/01.ipynb") -> dict:
    namespace: dict = {}
    exec(publish.setup_cell_source(NEW, PurePosixPath(notebook)), namespace)
    return namespace


def _in_colab(monkeypatch, pip: _FakePip) -> None:
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", pip)


def test_setup_cell_outside_colab_only_puts_the_checkout_on_the_path(pretend_fresh_runtime, monkeypatch, capsys):
    pip = _FakePip()
    monkeypatch.setattr(subprocess, "run", pip)
    _run_setup_cell("notebooks/01.ipynb")
    assert sys.path[0] == str(pretend_fresh_runtime.resolve())
    monkeypatch.chdir(pretend_fresh_runtime / "notebooks" / "solutions")
    _run_setup_cell("notebooks/solutions/01.ipynb")
    assert sys.path[0] == str(pretend_fresh_runtime.resolve())
    assert pip.commands == [] and capsys.readouterr().out == ""


def test_setup_cell_does_nothing_when_going_modular_imports(monkeypatch, capsys):
    pip = _FakePip()
    _in_colab(monkeypatch, pip)
    path_before = list(sys.path)
    _run_setup_cell()
    assert pip.commands == [] and sys.path == path_before and capsys.readouterr().out == ""


def test_setup_cell_in_colab_installs_without_touching_torch_and_names_the_gpu(pretend_fresh_runtime, monkeypatch,
                                                                               capsys):
    pip = _FakePip()
    _in_colab(monkeypatch, pip)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Tesla T4")
    _run_setup_cell()
    [command] = pip.commands
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    assert command[-1] == f"git+{NEW}"  # the only requirement: torch is never asked for
    assert not {"-U", "--upgrade", "--force-reinstall", "--no-deps"} & set(command)
    constraints = Path(command[command.index("-c") + 1])
    assert constraints.parent == pretend_fresh_runtime
    assert constraints.read_text() == (f"torch=={importlib.metadata.version('torch')}\n"
                                       f"torchvision=={importlib.metadata.version('torchvision')}\n")
    assert "Installed. GPU runtime: Tesla T4." in capsys.readouterr().out


def test_setup_cell_in_colab_without_a_gpu_says_so(pretend_fresh_runtime, monkeypatch, capsys):
    _in_colab(monkeypatch, _FakePip())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _run_setup_cell()
    assert "No GPU in this runtime" in capsys.readouterr().out


def test_setup_cell_in_colab_explains_a_failed_install(pretend_fresh_runtime, monkeypatch, capsys):
    pip_error = "\n".join(f"line {i}" for i in range(10)) + "\nfatal: repository 'https://github.com/ada/vit-course/' not found"
    _in_colab(monkeypatch, _FakePip(returncode=1, stderr=pip_error))
    with pytest.raises(RuntimeError, match="could not be installed") as error:
        _run_setup_cell()
    assert not isinstance(error.value, subprocess.CalledProcessError)
    out = capsys.readouterr().out
    assert out.count("SETUP FAILED") == 1
    assert f"`pip install -q -c {pretend_fresh_runtime / 'keep_colab_torch.txt'} git+{NEW}` exited with status 1" in out
    assert "    fatal: repository 'https://github.com/ada/vit-course/' not found" in out
    assert "line 4" not in out and "line 5" in out  # pip's last lines, not its whole log
    assert f"What to do: check that this runtime is online and that {NEW} opens in a browser" in out
    assert f"`!pip install git+{NEW}`" in out
