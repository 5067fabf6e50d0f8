"""The Chinese edition (中文版): ``python -m tools.translate`` updates one gettext catalog per notebook,
``translations/zh_CN/<path under notebooks/>.po`` (msgid: an English markdown cell; msgctxt: its id; msgstr: the
Chinese), then builds ``notebooks/zh-CN/<path>`` from each complete one: code, outputs and metadata unchanged, the
Colab badge and setup cell for its own path (``tools.publish``)."""
from __future__ import annotations

import argparse
import posixpath
import sys
from pathlib import Path, PurePosixPath

import nbformat
import polib

from tools import publish
from tools.publish import MARKDOWN_LINK, is_relative

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
    """``notebook``'s markdown cells as a catalog, keeping ``catalog``'s translations (fuzzy where English changed)."""
    old = {entry.msgctxt: entry for entry in catalog or []}
    new = polib.POFile(wrapwidth=0)
    new.metadata = {"Project-Id-Version": "vit-paper-replicating", "Language": LANGUAGE, "MIME-Version": "1.0",
                    "Content-Type": "text/plain; charset=UTF-8", "Content-Transfer-Encoding": "8bit"}
    for cell in (cell for cell in notebook.cells if cell.cell_type == "markdown"):
        entry, before = polib.POEntry(msgctxt=cell.id, msgid=cell.source), old.get(cell.id)
        if before is not None and before.msgstr:
            entry.msgstr = before.msgstr
            if before.msgid != cell.source or before.fuzzy:
                entry.flags.append("fuzzy")
                entry.previous_msgid = (before.fuzzy and before.previous_msgid) or before.msgid
        new.append(entry)
    return new


def catalog_problems(catalog: polib.POFile, name: str) -> list[str]:
    """The entries of ``catalog`` that still need a translator, one line each."""
    return [f"{name}: cell {entry.msgctxt} is {'fuzzy (the English changed)' if entry.fuzzy else 'not translated'}"
            for entry in catalog if entry.fuzzy or not entry.msgstr]


def _edition_link(target: str, notebook: PurePosixPath) -> str:
    """A link of the English notebook, as the edition's copy (one folder deeper) must write it: links to other
    notebooks stay (their counterparts mirror them), links out of notebooks/ climb one folder more."""
    resolved = posixpath.normpath(posixpath.join(str(notebook.parent), target))
    if not is_relative(target) or resolved.startswith("notebooks/"):
        return target
    return posixpath.relpath(resolved, str(PurePosixPath("notebooks", EDITION, *notebook.parts[1:]).parent))


def built_notebook(root: Path, notebook: Path, catalog: polib.POFile, repository: str) -> str:
    """The text of the Chinese notebook: ``notebook`` with its markdown translated by ``catalog`` (complete)."""
    english = nbformat.read(notebook, as_version=4)
    relative = PurePosixPath(notebook.relative_to(root).as_posix())
    translations = {entry.msgctxt: entry.msgstr for entry in catalog}
    for cell in (cell for cell in english.cells if cell.cell_type == "markdown"):
        cell.source = MARKDOWN_LINK.sub(
            lambda match: match[1] + _edition_link(match[2], relative) + match[3], translations[cell.id])
    edition = PurePosixPath(edition_path(root, notebook).relative_to(root).as_posix())
    return publish.updated_notebook(nbformat.writes(english, ensure_ascii=False) + "\n", edition, repository)[0]


def main(argv: list[str] | None = None) -> int:
    """Update every catalog, build the Chinese notebook of each complete one, list the entries left to translate."""
    parser = argparse.ArgumentParser(prog="python -m tools.translate", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="the checkout's root")
    root = parser.parse_args(argv).root
    repository, left = publish.read_repository(root), []
    for notebook in english_notebooks(root):
        path = catalog_path(root, notebook)
        old = polib.pofile(str(path), wrapwidth=0) if path.exists() else None
        catalog = updated_catalog(nbformat.read(notebook, as_version=4), old)
        texts = {path: catalog.__unicode__()}
        left += catalog_problems(catalog, path.relative_to(root).as_posix())
        if not catalog_problems(catalog, ""):
            texts[edition_path(root, notebook)] = built_notebook(root, notebook, catalog, repository)
        for target, text in texts.items():
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
                print(f"wrote {target.relative_to(root).as_posix()}")
    print(*left, f"{len(left)} entries left to translate." if left else "The Chinese edition is complete.", sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
