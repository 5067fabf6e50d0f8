"""The repository's address, kept once in pyproject.toml and written from there into the notebooks and README.

Whoever forks or publishes the course runs, once, from the root of the checkout:

    python -m tools.publish --repository https://github.com/OWNER/NAME

It writes the address to ``[project.urls] Repository`` in pyproject.toml and rewrites from it every
notebook's "Open in Colab" badge, every notebook's Colab setup cell (the first code cell, rendered from
``SETUP_CELL_TEMPLATE``) and the README's badge, clone and install addresses. Then

    python -m tools.publish --check

writes nothing and lists every notebook or README address that differs from pyproject's (exit status 1),
and ``python -m tools.publish`` alone re-renders everything from pyproject's address (after a
change to the template, say).

Only the sources of those two cells change: a notebook is written back in the JSON layout it already has
(indent 1, its own choice of escaping non-ASCII characters, a final newline), so a publish that changes
nothing leaves every file byte for byte as it was.
"""
from __future__ import annotations

import argparse
import json
import re
import string
import sys
from pathlib import Path, PurePosixPath
from typing import Any, Optional, Sequence

from going_modular.common import settings

BRANCH = "main"  # the branch the Colab badges open
NOTEBOOKS_DIR = "notebooks"
README = "README.md"
PYPROJECT = "pyproject.toml"

_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})"
_NAME = r"[A-Za-z0-9._-]+"
_REPOSITORY_URL = re.compile(rf"https://github\.com/(?P<slug>{_OWNER}/{_NAME})")
_URLS_TABLE = re.compile(r"^\[project\.urls\][ \t]*$", re.MULTILINE)
_NEXT_TABLE = re.compile(r"^\[", re.MULTILINE)
_REPOSITORY_KEY = re.compile(r'^Repository[ \t]*=[ \t]*"(?P<url>[^"]*)"[ \t]*$', re.MULTILINE)
_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
_BADGE = re.compile(
    r"\[!\[Open In Colab\]\(" + re.escape(_BADGE_IMAGE) + r"\)\]\((?P<url>[^)\s]*)\)"
)
_SETUP_CELL_FIRST_LINE = "# Setup: make `going_modular` importable"
# Addresses in the README that mean this repository (links to other repositories are left alone).
_README_ADDRESSES = re.compile(
    rf"(?P<prefix>https://colab\.research\.google\.com/github/|git\+https://github\.com/|git clone https://github\.com/)"
    rf"(?P<slug>{_OWNER}/[A-Za-z0-9._-]+?)(?=\.git(?![A-Za-z0-9._-])|\.?(?:[^A-Za-z0-9._-]|$))"
)

# The first code cell of every notebook. It runs before going_modular is importable, so everything it
# does is written out here. $repository, $checkout and $where are filled in by ``setup_cell_source``.
SETUP_CELL_TEMPLATE = string.Template('''\
# Setup: make `going_modular` importable, in Colab or in a local checkout (safe to re-run).
import importlib.metadata, importlib.util, subprocess, sys, tempfile
from pathlib import Path

COURSE_REPOSITORY = "$repository"  # set by tools.publish

if importlib.util.find_spec("going_modular") is None:
    if "google.colab" in sys.modules:  # Colab: pip-install the course repository, keeping Colab's own torch
        keep = Path(tempfile.gettempdir(), "keep_colab_torch.txt")  # pip must keep these exact versions
        keep.write_text("".join(f"{name}=={importlib.metadata.version(name)}\\n" for name in ("torch", "torchvision")))
        command = [sys.executable, "-m", "pip", "install", "-q", "-c", str(keep), f"git+{COURSE_REPOSITORY}"]
        print(f"Installing the course from {COURSE_REPOSITORY} (about a minute)...")
        pip = subprocess.run(command, capture_output=True, text=True)
        if pip.returncode != 0:
            pip_said = "\\n    ".join((pip.stderr or pip.stdout).strip().splitlines()[-6:])
            print(f"SETUP FAILED: `{' '.join(command[2:])}` exited with status {pip.returncode}. pip's last lines:\\n"
                  f"    {pip_said}\\nWhat to do: check that this runtime is online and that {COURSE_REPOSITORY} "
                  "opens in a browser (whoever publishes the course sets that address with `python -m "
                  "tools.publish --repository ...`), then run this cell again; or install by hand in "
                  f"a new cell with `!pip install git+{COURSE_REPOSITORY}` to see pip's whole report.")
            raise RuntimeError("Setup failed: the course repository could not be installed (see the message above).")
        import torch
        print(f"Installed. GPU runtime: {torch.cuda.get_device_name(0)}." if torch.cuda.is_available() else
              "Installed. No GPU in this runtime: everything runs on the CPU, slowly "
              "(Runtime > Change runtime type > GPU).")
    else:  # a local checkout opened from $where without `pip install -e .`
        sys.path.insert(0, str(Path.cwd().resolve()$checkout))''')


class PublishError(ValueError):
    """The repository address or a file that carries it is not in the expected form."""


def validate_repository_url(url: str) -> str:
    """Return ``url`` as ``https://github.com/OWNER/NAME``, without a trailing "/" or ".git".

    Raises:
        PublishError: ``url`` is not the address of a GitHub repository in that form.
    """
    cleaned = url.strip().rstrip("/")
    cleaned = cleaned[: -len(".git")] if cleaned.endswith(".git") else cleaned
    match = _REPOSITORY_URL.fullmatch(cleaned)
    if match is None or match["slug"].split("/")[1] in (".", ".."):
        raise PublishError(
            f"Expected the repository's address as https://github.com/OWNER/NAME (for example "
            f"https://github.com/ada/vit-course), got {url!r}. Copy it from the repository's page on GitHub."
        )
    return cleaned


def _slug(repository: str) -> str:
    """``OWNER/NAME`` of a validated repository address."""
    return repository[len("https://github.com/"):]


# ----------------------------------------------------------------------------------------- pyproject.toml


def read_repository(root: Path) -> str:
    """Return ``[project.urls] Repository`` from ``root / pyproject.toml``, validated.

    Raises:
        PublishError: pyproject.toml has no such entry, or its value is not a GitHub repository address.
    """
    text = (root / PYPROJECT).read_text(encoding="utf-8")
    section = _urls_section(text)
    match = _REPOSITORY_KEY.search(text, *section) if section else None
    if match is None:
        raise PublishError(
            f"{root / PYPROJECT} has no `Repository = \"...\"` line under [project.urls]. Set it with "
            "`python -m tools.publish --repository https://github.com/OWNER/NAME`."
        )
    return validate_repository_url(match["url"])


def _urls_section(text: str) -> Optional[tuple[int, int]]:
    """(start, end) of the body of the [project.urls] table in pyproject's text, or None without one."""
    header = _URLS_TABLE.search(text)
    if header is None:
        return None
    following = _NEXT_TABLE.search(text, header.end())
    return header.end(), following.start() if following else len(text)


def _with_repository(text: str, repository: str) -> str:
    """pyproject's text with ``[project.urls] Repository`` set to ``repository``; nothing else changes."""
    line = f'Repository = "{repository}"'
    section = _urls_section(text)
    if section is None:  # no table yet: add one after [project]'s body
        project = re.search(r"^\[project\][ \t]*$", text, re.MULTILINE)
        if project is None:
            raise PublishError(f"{PYPROJECT} has no [project] table; is this the course repository's root?")
        following = _NEXT_TABLE.search(text, project.end())
        at = following.start() if following else len(text)
        return f"{text[:at]}[project.urls]\n{line}\n\n{text[at:]}"
    match = _REPOSITORY_KEY.search(text, *section)
    if match is None:
        return f"{text[:section[0]]}\n{line}{text[section[0]:]}"
    return f"{text[:match.start()]}{line}{text[match.end():]}"


# ---------------------------------------------------------------------------------------------- notebooks


def colab_url(repository: str, notebook: PurePosixPath) -> str:
    """The address that opens ``notebook`` (a path inside the repository) in Colab."""
    return f"https://colab.research.google.com/github/{_slug(repository)}/blob/{BRANCH}/{notebook.as_posix()}"


def colab_badge(repository: str, notebook: PurePosixPath) -> str:
    """The "Open in Colab" badge, in markdown, for ``notebook`` (a path inside the repository)."""
    return f"[![Open In Colab]({_BADGE_IMAGE})]({colab_url(repository, notebook)})"


def setup_cell_source(repository: str, notebook: PurePosixPath) -> str:
    """The Colab setup cell of ``notebook`` (a path inside the repository): ``SETUP_CELL_TEMPLATE`` filled in.

    Outside Colab the cell puts the repository's root on ``sys.path``; how many folders up that is
    depends on where the notebook sits, so ``notebook`` decides the ``$checkout`` part.
    """
    depth = len(notebook.parts) - 1  # folders between the repository's root and the notebook
    checkout = ".parent" if depth == 1 else f".parents[{depth - 1}]"
    return SETUP_CELL_TEMPLATE.substitute(repository=repository, checkout=checkout, where=f"{notebook.parent}/")


def notebook_paths(root: Path) -> list[Path]:
    """Every notebook of the course under ``root / notebooks``, sorted (Jupyter's checkpoints left out)."""
    return sorted(
        path for path in (root / NOTEBOOKS_DIR).rglob("*.ipynb") if ".ipynb_checkpoints" not in path.parts
    )


def _dump_notebook(notebook: dict[str, Any], ensure_ascii: bool) -> str:
    return json.dumps(notebook, indent=1, ensure_ascii=ensure_ascii) + "\n"


def _layout(raw: str, notebook: dict[str, Any]) -> bool:
    """The ``ensure_ascii`` that reproduces the file as it is (nbformat's False when neither does)."""
    return _dump_notebook(notebook, ensure_ascii=True) == raw and _dump_notebook(notebook, False) != raw


def _source(cell: dict[str, Any]) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def _set_source(cell: dict[str, Any], text: str) -> None:
    """Store ``text`` as nbformat does: a list of lines, each keeping its newline."""
    cell["source"] = text.splitlines(keepends=True)


def _first_cell(notebook: dict[str, Any], cell_type: str, name: str) -> dict[str, Any]:
    for cell in notebook["cells"]:
        if cell["cell_type"] == cell_type:
            return cell
    raise PublishError(f"{name} has no {cell_type} cell; every course notebook starts with its title and setup.")


def _setup_cell(notebook: dict[str, Any], name: str) -> dict[str, Any]:
    cell = _first_cell(notebook, "code", name)
    if not _source(cell).startswith(_SETUP_CELL_FIRST_LINE):
        raise PublishError(
            f"The first code cell of {name} is not the setup cell (it should start with "
            f"{_SETUP_CELL_FIRST_LINE!r}). Put the setup cell back as the first code cell, then publish again."
        )
    return cell


def _with_badge(markdown: str, badge: str) -> str:
    """``markdown`` with its Colab badge replaced by ``badge`` (or ``badge`` put first when it has none)."""
    if _BADGE.search(markdown) is None:
        return f"{badge}\n\n{markdown}"
    return _BADGE.sub(lambda _: badge, markdown, count=1)


def updated_notebook_text(raw: str, notebook_path: PurePosixPath, repository: str) -> str:
    """A notebook's file text with its badge and setup cell written for ``repository``; nothing else changes.

    Args:
        raw: the notebook file's text.
        notebook_path: its path inside the repository, e.g. ``notebooks/01_equation_1_patch_embedding.ipynb``.
        repository: a validated ``https://github.com/OWNER/NAME``.

    Raises:
        PublishError: the notebook has no markdown cell, or its first code cell is not the setup cell.
    """
    notebook = json.loads(raw)
    ensure_ascii = _layout(raw, notebook)
    title = _first_cell(notebook, "markdown", str(notebook_path))
    setup = _setup_cell(notebook, str(notebook_path))
    _set_source(title, _with_badge(_source(title), colab_badge(repository, notebook_path)))
    _set_source(setup, setup_cell_source(repository, notebook_path))
    return _dump_notebook(notebook, ensure_ascii)


def notebook_problems(raw: str, notebook_path: PurePosixPath, repository: str) -> list[str]:
    """What in a notebook differs from ``repository``: its badge's address and its setup cell (empty if nothing)."""
    notebook = json.loads(raw)
    problems = []
    badge = _BADGE.search(_source(_first_cell(notebook, "markdown", str(notebook_path))))
    expected_url = colab_url(repository, notebook_path)
    if badge is None:
        problems.append(f"{notebook_path}: the first markdown cell has no Open In Colab badge (expected {expected_url}).")
    elif badge["url"] != expected_url:
        problems.append(f"{notebook_path}: the Colab badge opens {badge['url']}, expected {expected_url}.")
    try:
        setup = _source(_setup_cell(notebook, str(notebook_path)))
    except PublishError as error:
        return problems + [str(error)]
    if setup != setup_cell_source(repository, notebook_path):
        address = re.search(r'^COURSE_REPOSITORY = "([^"]*)"|git\+(https://[^"\s]+)', setup, re.MULTILINE)
        found = next(group for group in address.groups() if group) if address else None
        problems.append(
            f"{notebook_path}: the setup cell installs from {found or 'no address'}, expected {repository}."
            if found != repository else
            f"{notebook_path}: the setup cell's text differs from tools.publish.SETUP_CELL_TEMPLATE."
        )
    return problems


# ------------------------------------------------------------------------------------------------- README


def updated_readme_text(text: str, old_repository: str, repository: str) -> str:
    """The README with every address of this repository (badges, clone, pip install) pointing at ``repository``.

    Addresses of ``old_repository`` anywhere in the text, and the README's Colab, ``git+`` and ``git clone``
    addresses of any repository, become ``repository``'s; links to other repositories are left alone.
    """
    old, new = _slug(old_repository), _slug(repository)
    text = re.sub(rf"(?<=github\.com/){re.escape(old)}(?![A-Za-z0-9_-])", new, text)
    text = re.sub(rf"(?<=colab\.research\.google\.com/github/){re.escape(old)}(?![A-Za-z0-9_-])", new, text)
    return _README_ADDRESSES.sub(lambda match: match["prefix"] + new, text)


def readme_problems(text: str, repository: str) -> list[str]:
    """The README's Colab, ``git+`` and ``git clone`` addresses that are not ``repository``'s."""
    slug = _slug(repository)
    return [
        f"{README}: {match.group(0)} is not {repository}."
        for match in _README_ADDRESSES.finditer(text)
        if match["slug"] != slug
    ]


# ----------------------------------------------------------------------------------------- the two commands


def _read(path: Path) -> str:
    """A file's exact text (no newline translation), so an unchanged file compares equal."""
    return path.read_bytes().decode("utf-8")


def _current_repository(root: Path) -> Optional[str]:
    """pyproject's address, or None when it has none yet (a fork of a version without one)."""
    try:
        return read_repository(root)
    except PublishError:
        return None


def _updates(root: Path, repository: str, old_repository: Optional[str]) -> dict[Path, str]:
    """The new text of pyproject.toml, of every notebook and of the README, for ``repository``."""
    pyproject = root / PYPROJECT
    updates = {pyproject: _with_repository(_read(pyproject), repository)}
    for path in notebook_paths(root):
        relative = PurePosixPath(path.relative_to(root).as_posix())
        updates[path] = updated_notebook_text(_read(path), relative, repository)
    readme = root / README
    if readme.is_file():
        updates[readme] = updated_readme_text(_read(readme), old_repository or repository, repository)
    return updates


def publish(root: Path, repository: Optional[str] = None) -> list[Path]:
    """Write ``repository`` (default: pyproject's) to pyproject.toml, every notebook and the README.

    Every new text is worked out before any file is written, so an error leaves every file as it was.

    Args:
        root: the repository's root folder.
        repository: ``https://github.com/OWNER/NAME``; None re-renders everything from pyproject's address.

    Returns:
        The files whose content changed (a file that is already right is not rewritten).

    Raises:
        PublishError: the address is not a GitHub repository's, pyproject.toml has none and none was
            given, or a notebook lacks its markdown cell or setup cell.
    """
    old_repository = _current_repository(root)
    repository = read_repository(root) if repository is None else validate_repository_url(repository)
    updates = _updates(root, repository, old_repository)
    changed = [path for path, text in updates.items() if _read(path) != text]
    for path in changed:
        path.write_bytes(updates[path].encode("utf-8"))
    return changed


def check(root: Path, repository: Optional[str] = None) -> list[str]:
    """Every notebook or README address that differs from ``repository`` (default: pyproject's); writes nothing.

    Raises:
        PublishError: pyproject.toml has no valid ``[project.urls] Repository`` and no ``repository`` was
            given, or ``repository`` is not a GitHub repository's address.
    """
    current = _current_repository(root)
    expected = read_repository(root) if repository is None else validate_repository_url(repository)
    problems = []
    if current != expected:
        problems.append(f"{PYPROJECT}: [project.urls] Repository is {current}, not {expected}.")
    for path in notebook_paths(root):
        relative = PurePosixPath(path.relative_to(root).as_posix())
        problems += notebook_problems(_read(path), relative, expected)
    readme = root / README
    if readme.is_file():
        problems += readme_problems(_read(readme), expected)
    return problems


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.publish",
        description="Write the repository's address (pyproject.toml [project.urls] Repository) into every "
        "notebook's Colab badge and setup cell and into the README, or check that they agree.",
    )
    parser.add_argument("--repository", help="https://github.com/OWNER/NAME; default: pyproject.toml's")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any address differs")
    parser.add_argument("--root", type=Path, default=None, help="the repository's root (default: this checkout)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line; returns the exit status (0 done or consistent, 1 ``--check`` found differences).

    A wrong address or a notebook that cannot be rewritten ends with one ``error: ...`` line and status 2.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    root = args.root or settings.get_repository_root()
    if root is None:
        parser.error("run this from a checkout of the course repository (or pass --root).")
    try:
        if args.check:
            problems = check(root, args.repository)
            for problem in problems:
                print(problem)
            print(f"{len(problems)} difference(s); `python -m tools.publish` rewrites them from pyproject.toml."
                  if problems else "Every notebook and the README use pyproject.toml's repository address.")
            return 1 if problems else 0
        changed = publish(root, args.repository)
    except PublishError as error:
        parser.error(str(error))
    for path in changed:
        print(f"wrote {path.relative_to(root).as_posix()}")
    print(f"Repository: {read_repository(root)} ({len(changed)} file(s) changed).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
