"""The Chinese edition (中文版): the English notebooks' prose in gettext catalogs, and the notebooks built from them.

    python -m tools.translate            # update every catalog from its English notebook, then build the complete ones
    python -m tools.translate --check    # write nothing; list what is stale, missing, empty or fuzzy (exit status 1)

One catalog per notebook, ``translations/zh_CN/<path under notebooks/>.po``: an entry per markdown cell, the
English cell as ``msgid``, its cell id as ``msgctxt``, the Chinese as ``msgstr`` (Poedit, Weblate and msgmerge read
it). After an English edit, a changed cell's entry keeps its old translation and becomes fuzzy, with the old English
as its previous msgid, for the translator to revise; a new cell gets an empty entry. A notebook whose catalog is
complete (no empty or fuzzy entry) is built as ``notebooks/zh-CN/<path>``: the English notebook with its markdown
cells translated, code cells, outputs and metadata unchanged, and its Colab badge and setup cell pointing at its own
path (``tools.publish``).
"""
from __future__ import annotations

import argparse
import posixpath
import sys
from pathlib import Path, PurePosixPath

import nbformat
import polib

from tools import publish
from tools.links import MARKDOWN_LINK, is_relative

LANGUAGE = "zh_CN"  # the catalogs' language code (gettext's spelling)
EDITION = "zh-CN"  # the edition's folder under notebooks/ (the web's spelling)
GLOSSARY = Path("translations") / LANGUAGE / "glossary.tsv"


def english_notebooks(root: Path) -> list[Path]:
    """Every English notebook (``publish.notebook_paths`` without the edition's)."""
    return [path for path in publish.notebook_paths(root) if EDITION not in path.relative_to(root / "notebooks").parts]


def catalog_path(root: Path, notebook: Path) -> Path:
    """The catalog of an English notebook."""
    return root / "translations" / LANGUAGE / notebook.relative_to(root / "notebooks").with_suffix(".po")


def edition_path(root: Path, notebook: Path) -> Path:
    """Where the Chinese counterpart of an English notebook is built."""
    return root / "notebooks" / EDITION / notebook.relative_to(root / "notebooks")


def updated_catalog(notebook: nbformat.NotebookNode, catalog: polib.POFile | None) -> polib.POFile:
    """The catalog of ``notebook``'s markdown cells, keeping ``catalog``'s translations (fuzzy where the English
    changed)."""
    old = {entry.msgctxt: entry for entry in catalog} if catalog is not None else {}
    new = polib.POFile(wrapwidth=0)
    new.metadata = {"Project-Id-Version": "vit-paper-replicating", "Language": LANGUAGE,
                    "MIME-Version": "1.0", "Content-Type": "text/plain; charset=UTF-8",
                    "Content-Transfer-Encoding": "8bit"}
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        entry = polib.POEntry(msgctxt=cell.id, msgid=cell.source)
        before = old.get(cell.id)
        if before is not None and before.msgstr:
            entry.msgstr = before.msgstr
            if before.msgid != cell.source or before.fuzzy:
                entry.flags.append("fuzzy")
                entry.previous_msgid = before.previous_msgid if before.fuzzy and before.previous_msgid else before.msgid
        new.append(entry)
    return new


def catalog_problems(catalog: polib.POFile, name: str) -> list[str]:
    """The entries of ``catalog`` that still need a translator, one line each."""
    return [f"{name}: cell {entry.msgctxt} is {'fuzzy (the English changed)' if entry.fuzzy else 'not translated'}"
            for entry in catalog if entry.fuzzy or not entry.msgstr]


def _edition_link(target: str, notebook: PurePosixPath) -> str:
    """A link of the English notebook, as the edition's copy (one folder deeper) must write it: links to other
    notebooks stay (their counterparts mirror them), links out of notebooks/ climb one folder more."""
    if not is_relative(target):
        return target
    resolved = posixpath.normpath(posixpath.join(str(notebook.parent), target))
    if resolved.startswith("notebooks/"):
        return target
    edition_dir = PurePosixPath("notebooks", EDITION, *notebook.parts[1:]).parent
    return posixpath.relpath(resolved, str(edition_dir))


def built_notebook(root: Path, notebook: Path, catalog: polib.POFile, repository: str) -> str:
    """The text of the Chinese notebook: ``notebook`` with its markdown translated by ``catalog`` (complete)."""
    english = nbformat.read(notebook, as_version=4)
    relative = PurePosixPath(notebook.relative_to(root).as_posix())
    translations = {entry.msgctxt: entry.msgstr for entry in catalog}
    for cell in english.cells:
        if cell.cell_type == "markdown":
            cell.source = MARKDOWN_LINK.sub(
                lambda match: match[1] + _edition_link(match[2], relative) + match[3], translations[cell.id])
    text = nbformat.writes(english, ensure_ascii=False) + "\n"
    edition = PurePosixPath(edition_path(root, notebook).relative_to(root).as_posix())
    return publish.updated_notebook(text, edition, repository)[0]


def _plan(root: Path) -> tuple[dict[Path, str], list[str]]:
    """The new text of every catalog and every buildable Chinese notebook, and what is stale or incomplete."""
    repository = publish.read_repository(root)
    texts, problems = {}, []
    for notebook in english_notebooks(root):
        path = catalog_path(root, notebook)
        name = path.relative_to(root).as_posix()
        old = polib.pofile(str(path), wrapwidth=0) if path.exists() else None
        catalog = updated_catalog(nbformat.read(notebook, as_version=4), old)
        texts[path] = catalog.__unicode__()
        if old is None or old.__unicode__() != texts[path]:
            problems.append(f"{name}: out of date with {notebook.relative_to(root).as_posix()}")
        incomplete = catalog_problems(catalog, name)
        problems += incomplete
        if not incomplete:
            edition = edition_path(root, notebook)
            texts[edition] = built_notebook(root, notebook, catalog, repository)
            if not edition.exists() or edition.read_text(encoding="utf-8") != texts[edition]:
                problems.append(f"{edition.relative_to(root).as_posix()}: not what the catalog builds")
    return texts, problems


def main(argv: list[str] | None = None) -> int:
    """The command line: 0 done or up to date, 1 ``--check`` found work left."""
    parser = argparse.ArgumentParser(prog="python -m tools.translate", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything is left to do")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="the checkout's root")
    args = parser.parse_args(argv)
    texts, problems = _plan(args.root)
    if args.check:
        print(*problems, f"{len(problems)} thing(s) left to do." if problems else "The Chinese edition is complete.",
              sep="\n")
        return 1 if problems else 0
    for path, text in texts.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(args.root).as_posix()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
