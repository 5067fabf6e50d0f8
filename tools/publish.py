"""Write the repository's address, kept once in pyproject.toml ([project.urls] Repository), into every notebook's
Colab badge and setup cell, the README, the guides (docs/) and the website's mkdocs.yml; or, with --check, list what
differs."""
from __future__ import annotations

import argparse
import re
import string
import sys
from pathlib import Path, PurePosixPath

import nbformat

try:
    import tomllib  # novermin (Python 3.11; tomli stands in below)
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

BRANCH = "main"  # the branch the Colab badges open
# The texts that carry the address, besides the notebooks.
TEXTS = ("README.md", "README.zh-CN.md", "mkdocs.yml", "docs/**/*.md")
PYPROJECT = "pyproject.toml"

_OWNER = r"[A-Za-z0-9][A-Za-z0-9-]{0,38}"
_REPOSITORY_LINE = re.compile(r'(^\[project\.urls\][^\[]*?^Repository[ \t]*=[ \t]*)"[^"\n]*"', re.MULTILINE)
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"  # the badge's image
_BADGE = re.compile(r"\[!\[Open In Colab\]\(" + re.escape(COLAB_BADGE) + r"\)\]\((?P<url>[^)\s]*)\)")
_SETUP_CELL_FIRST_LINE = "# Setup: make `going_modular` importable"
# A Markdown link [text](target) as groups "](", target, ")"; the site and the Chinese edition rewrite the targets.
MARKDOWN_LINK = re.compile(r"(\]\()([^)\s]+)(\))")
_ELSEWHERE = re.compile(r"^[a-z][a-z0-9+.-]*:|^#|^/", re.IGNORECASE)  # another site, an anchor, an absolute path
# The texts' addresses of this repository, whatever its name (links to other repositories are left alone).
_TEXT_ADDRESSES = re.compile(
    r"(?P<prefix>https://colab\.research\.google\.com/github/|git\+https://github\.com/|git clone https://github\.com/"
    r"|repo_url:[ \t]*https://github\.com/)"
    rf"(?P<slug>{_OWNER}/[A-Za-z0-9._-]+?)(?=\.git(?![A-Za-z0-9._-])|\.?(?:[^A-Za-z0-9._-]|$))")

# The first code cell of every notebook; it runs before going_modular is importable, so it imports nothing of it.
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


def is_relative(target: str) -> bool:
    """Whether a link's ``target`` names a file relative to the one that holds the link."""
    return not _ELSEWHERE.match(target)


def validate_repository_url(url: str) -> str:
    """``url`` as ``https://github.com/OWNER/NAME`` (no trailing "/" or ".git"); PublishError if it is not one."""
    cleaned = url.strip().rstrip("/").removesuffix(".git")
    if not re.fullmatch(rf"https://github\.com/{_OWNER}/(?!\.\.?$)[A-Za-z0-9._-]+", cleaned):
        raise PublishError(f"Expected the repository's address as https://github.com/OWNER/NAME (for example "
                           f"https://github.com/ada/vit-course), got {url!r}. Copy it from its page on GitHub.")
    return cleaned


def _slug(repository: str) -> str:
    return repository.removeprefix("https://github.com/")


def _repository_in(pyproject: str, where: Path) -> str | None:
    """``[project.urls] Repository`` of pyproject's text, None without one; PublishError if it is not TOML."""
    try:
        return tomllib.loads(pyproject).get("project", {}).get("urls", {}).get("Repository")
    except tomllib.TOMLDecodeError as error:
        raise PublishError(f"{where} is not valid TOML ({error}); fix it, then publish again.") from None


def read_repository(root: Path) -> str:
    """``[project.urls] Repository`` of ``root / pyproject.toml``, validated; PublishError when missing or wrong."""
    url = _repository_in((root / PYPROJECT).read_text(encoding="utf-8"), root / PYPROJECT)
    if not isinstance(url, str):
        raise PublishError(f"{root / PYPROJECT} has no `Repository = \"...\"` under [project.urls]. Set it with "
                           "`python -m tools.publish --repository https://github.com/OWNER/NAME`.")
    return validate_repository_url(url)


def _with_repository(text: str, repository: str, where: Path) -> str:
    """pyproject's text with its Repository line set to ``repository`` (tomllib reads TOML but cannot write it)."""
    line = f'Repository = "{repository}"'
    new, found = _REPOSITORY_LINE.subn(lambda match: f'{match[1]}"{repository}"', text, count=1)
    if not found:  # no Repository yet: add it under [project.urls], or add that table at the end
        new, found = re.subn(r"^\[project\.urls\][ \t]*\n", lambda match: match[0] + line + "\n", text, 1, re.M)
        new = new if found else f"{text.rstrip()}\n\n[project.urls]\n{line}\n"
    if _repository_in(new, where) != repository:
        raise PublishError(f"Could not write the address into {where}; put `{line}` under [project.urls] by hand.")
    return new


def colab_url(repository: str, notebook: PurePosixPath) -> str:
    """The address that opens ``notebook`` (a path inside the repository) in Colab."""
    return f"https://colab.research.google.com/github/{_slug(repository)}/blob/{BRANCH}/{notebook.as_posix()}"


def colab_badge(repository: str, notebook: PurePosixPath) -> str:
    """The "Open in Colab" badge, in markdown, for ``notebook`` (a path inside the repository)."""
    return f"[![Open In Colab]({COLAB_BADGE})]({colab_url(repository, notebook)})"


def setup_cell_source(repository: str, notebook: PurePosixPath) -> str:
    """``SETUP_CELL_TEMPLATE`` for ``notebook``, whose depth decides how far up the repository's root is."""
    depth = len(notebook.parts) - 1  # folders between the repository's root and the notebook
    checkout = ".parent" if depth == 1 else f".parents[{depth - 1}]"
    return SETUP_CELL_TEMPLATE.substitute(repository=repository, checkout=checkout, where=f"{notebook.parent}/")


def notebook_paths(root: Path) -> list[Path]:
    """Every notebook under ``root / notebooks``, sorted, Jupyter's checkpoints left out."""
    return sorted(path for path in (root / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in path.parts)


def updated_notebook(raw: str, notebook_path: PurePosixPath, repository: str) -> tuple[str, list[str]]:
    """A notebook file's text with its badge and setup cell written for ``repository``, and what in them differed."""
    try:
        notebook = nbformat.reads(raw, as_version=4)
    except nbformat.reader.NotJSONError as error:
        raise PublishError(f"{notebook_path} is not a notebook ({error}); restore it, then publish again.") from None
    title, setup = (next((cell for cell in notebook.cells if cell.cell_type == kind), None)
                    for kind in ("markdown", "code"))
    if title is None or setup is None or not setup.source.startswith(_SETUP_CELL_FIRST_LINE):
        raise PublishError(f"{notebook_path} needs a markdown title cell and, as its first code cell, the setup cell "
                           f"(starting with {_SETUP_CELL_FIRST_LINE!r}). Put them back, then publish again.")
    badge, expected, problems = _BADGE.search(title.source), colab_url(repository, notebook_path), []
    if badge is None or badge["url"] != expected:
        found = badge["url"] if badge else "nothing (none in the first markdown cell)"
        problems.append(f"{notebook_path}: the Colab badge opens {found}, expected {expected}.")
    if setup.source != setup_cell_source(repository, notebook_path):
        address = re.search(r'^COURSE_REPOSITORY = "([^"]*)"', setup.source, re.MULTILINE)
        problems.append(f"{notebook_path}: the setup cell is not tools.publish.SETUP_CELL_TEMPLATE for {repository} "
                        f"(it installs from {address[1] if address else 'no address'}).")
    new_badge = colab_badge(repository, notebook_path)
    title.source = _BADGE.sub(lambda _: new_badge, title.source, 1) if badge else f"{new_badge}\n\n{title.source}"
    setup.source = setup_cell_source(repository, notebook_path)
    # A file stored as ASCII keeps its characters escaped, so a notebook already right comes back byte for byte.
    return nbformat.writes(notebook, ensure_ascii=raw.isascii()) + "\n", problems


def updated_text(text: str, old_repository: str, repository: str) -> str:
    """A text with ``old_repository``'s and its Colab, git+, git clone and repo_url addresses made ``repository``'s."""
    old, new = _slug(old_repository), _slug(repository)
    text = re.sub(rf"(?<=github\.com/){re.escape(old)}(?![A-Za-z0-9_-])", new, text)  # also colab.../github/OLD
    return _TEXT_ADDRESSES.sub(lambda match: match["prefix"] + new, text)


def text_problems(text: str, repository: str, name: str = "README.md") -> list[str]:
    """The Colab, git+, git clone and repo_url addresses in the text ``name`` that are not ``repository``'s."""
    return [f"{name}: {match[0]} is not {repository}." for match in _TEXT_ADDRESSES.finditer(text)
            if match["slug"] != _slug(repository)]


def _plan(root: Path, repository: str | None) -> tuple[dict[Path, str], list[str]]:
    """The new text of pyproject.toml, every notebook and text for ``repository``, and what differs now."""
    try:
        current = read_repository(root)
    except PublishError:  # a checkout without an address yet
        current = None
    pyproject = root / PYPROJECT
    repository = read_repository(root) if repository is None else validate_repository_url(repository)
    texts = {pyproject: _with_repository(pyproject.read_bytes().decode(), repository, pyproject)}
    problems = [] if current == repository else [f"{PYPROJECT}: [project.urls] Repository is {current}, "
                                                 f"not {repository}."]
    for path in notebook_paths(root):
        name = PurePosixPath(path.relative_to(root).as_posix())
        texts[path], differences = updated_notebook(path.read_bytes().decode(), name, repository)
        problems += differences
    for path in (path for pattern in TEXTS for path in sorted(root.glob(pattern)) if path.is_file()):
        text = path.read_bytes().decode()
        texts[path] = updated_text(text, current or repository, repository)
        problems += text_problems(text, repository, path.relative_to(root).as_posix())
    return texts, problems


def publish(root: Path, repository: str | None = None) -> list[Path]:
    """Write ``repository`` (default: pyproject's) to pyproject.toml, every notebook and the texts; returns the files
    that changed. Every new text is worked out before any file is written, so an error leaves every file as it was."""
    texts = _plan(root, repository)[0]
    changed = [path for path, text in texts.items() if path.read_bytes().decode() != text]  # no newline translation
    for path in changed:
        path.write_bytes(texts[path].encode())
    return changed


def check(root: Path, repository: str | None = None) -> list[str]:
    """Every pyproject, notebook or text address that differs from ``repository`` (default: pyproject's)."""
    return _plan(root, repository)[1]


def main(argv: list[str] | None = None) -> int:
    """The command line: 0 done or consistent, 1 ``--check`` found differences, 2 one ``error: ...`` line."""
    parser = argparse.ArgumentParser(prog="python -m tools.publish", description=__doc__)
    parser.add_argument("--repository", help="https://github.com/OWNER/NAME; default: pyproject.toml's")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any address differs")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="the checkout's root")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = check(args.root, args.repository)
            print(*problems, f"{len(problems)} difference(s); `python -m tools.publish` rewrites them." if problems
                  else "Every notebook and text uses pyproject.toml's repository address.", sep="\n")
            return 1 if problems else 0
        changed = publish(args.root, args.repository)
    except PublishError as error:
        parser.error(str(error))
    print(*(f"wrote {path.relative_to(args.root).as_posix()}" for path in changed),
          f"Repository: {read_repository(args.root)} ({len(changed)} file(s) changed).", sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
