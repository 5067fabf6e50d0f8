"""The Chinese edition (中文版): ``python -m tools.translate`` updates one gettext catalog per notebook and per page
(the guides and the results), ``translations/zh_CN/<path>.po`` (a notebook's path under notebooks/, a page's in the
repository), then builds each complete one's Chinese copy: ``notebooks/zh-CN/<path>``, with code, outputs and
metadata unchanged and the Colab badge and setup cell for its own path (``tools.publish``), or ``<page>.zh-CN.md``.
An entry is a notebook's markdown cell (msgctxt: its id) or a page's paragraph, heading, list item or table row;
code and lines without prose stay English. Links lead to the Chinese copy of what they name where there is one."""
from __future__ import annotations

import argparse
import difflib
import posixpath
import re
import sys
from pathlib import Path, PurePosixPath

import nbformat
import polib

from tools import publish
from tools.publish import MARKDOWN_LINK, is_relative

LANGUAGE = "zh_CN"  # the catalogs' language code (gettext's spelling)
EDITION = "zh-CN"  # the edition's folder under notebooks/ (the web's spelling)
GLOSSARY = Path("translations") / LANGUAGE / "glossary.tsv"
PAGES = ("docs/guides/*.md", "benchmarks/README.md")  # the Markdown pages of the Chinese edition
OWN_COPIES = ("README.md", "docs/explore.md")  # pages whose Chinese copy, <page>.zh-CN.md, is written by hand
# What is not prose: code, maths, link targets and addresses, which stay English.
NOT_PROSE = re.compile(r"```.*?```|`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|\]\([^)]*\)|https?://\S+", re.DOTALL)
_ENTRY_START = re.compile(r"#{1,6} |[-*] |\d+\. |\|")  # a heading, list item or table row: an entry of its own


def english_notebooks(root: Path) -> list[Path]:
    """Every English notebook (``publish.notebook_paths`` without the edition's)."""
    return [path for path in publish.notebook_paths(root) if EDITION not in path.relative_to(root / "notebooks").parts]


def english_pages(root: Path) -> list[Path]:
    """The English Markdown pages that have a Chinese edition (``PAGES``)."""
    return [path for pattern in PAGES for path in sorted(root.glob(pattern)) if not path.stem.endswith(f".{EDITION}")]


def catalog_path(root: Path, source: Path) -> Path:
    """The catalog of an English notebook or page."""
    relative = source.relative_to(root / "notebooks" if source.suffix == ".ipynb" else root)
    return root / "translations" / LANGUAGE / relative.with_suffix(".po")


def _edition_of(path: str) -> str:
    """The repository path of ``path``'s Chinese copy: a notebook's (or notebook folder's), a page's, or ``path``."""
    if path.startswith("notebooks/") and not path.startswith(f"notebooks/{EDITION}"):
        return f"notebooks/{EDITION}/{path.removeprefix('notebooks/')}"
    translated_page = path in OWN_COPIES or any(PurePosixPath(path).match(pattern) for pattern in PAGES)
    if translated_page and not path.endswith(f".{EDITION}.md"):
        return f"{path.removesuffix('.md')}.{EDITION}.md"
    return path


def edition_path(root: Path, source: Path) -> Path:
    """Where the Chinese copy of an English notebook or page is built."""
    return root / _edition_of(source.relative_to(root).as_posix())


def page_units(text: str) -> list[tuple[str, bool]]:
    """``text`` in pieces that join back to it with newlines, each True when it is an entry of its catalog: a
    paragraph, heading, list item (with the lines that continue it) or table row that has prose. Fenced or indented
    code, blank lines and lines without prose (table rulers, numbers) are pieces of their own, never translated."""
    units: list[list] = []
    fenced = False
    for line in text.split("\n"):
        fence = line.lstrip().startswith("```")
        goes_on = units and units[-1][1] and not units[-1][0].startswith(("#", "|"))  # a paragraph or list item
        if goes_on and not (fenced or fence) and line.strip() and not _ENTRY_START.match(line.lstrip()):
            units[-1][0] += "\n" + line
        else:
            units.append([line, not (fenced or fence or not line.strip() or line.startswith("    "))])
        fenced ^= fence
    return [(unit, prose and re.search(r"[A-Za-z]{2}", NOT_PROSE.sub(" ", unit)) is not None) for unit, prose in units]


def updated_catalog(source: nbformat.NotebookNode | str, catalog: polib.POFile | None) -> polib.POFile:
    """The catalog of a notebook's markdown cells, or of a page's entries (``page_units``; ``source`` its text),
    keeping ``catalog``'s translations: fuzzy where the English changed (a cell of the same id; for a page, an old
    entry whose English is close to the new, as msgmerge matches them)."""
    if isinstance(source, str):  # a repeated row: one entry
        pairs = [(None, text) for text in dict.fromkeys(unit for unit, prose in page_units(source) if prose)]
    else:
        pairs = [(cell.id, cell.source) for cell in source.cells if cell.cell_type == "markdown"]
    old = {entry.msgid if entry.msgctxt is None else entry.msgctxt: entry for entry in catalog or []}
    gone = [key for key, entry in old.items() if entry.msgctxt is None and key not in {text for _, text in pairs}]
    new = polib.POFile(wrapwidth=0)
    new.metadata = {"Project-Id-Version": "vit-paper-replicating", "Language": LANGUAGE, "MIME-Version": "1.0",
                    "Content-Type": "text/plain; charset=UTF-8", "Content-Transfer-Encoding": "8bit"}
    for context, text in pairs:
        entry, before = polib.POEntry(msgctxt=context, msgid=text), old.get(text if context is None else context)
        if before is None and context is None:
            before = next((old[key] for key in difflib.get_close_matches(text, gone, n=1, cutoff=0.6)), None)
        if before is not None and before.msgstr:
            entry.msgstr = before.msgstr
            if before.msgid != text or before.fuzzy:
                entry.flags.append("fuzzy")
                entry.previous_msgid = (before.fuzzy and before.previous_msgid) or before.msgid
        new.append(entry)
    return new


def catalog_problems(catalog: polib.POFile, name: str) -> list[str]:
    """The entries of ``catalog`` that still need a translator, one line each."""
    return [f"{name}: {f'cell {entry.msgctxt}' if entry.msgctxt else repr(entry.msgid[:50])} is "
            f"{'fuzzy (the English changed)' if entry.fuzzy else 'not translated'}"
            for entry in catalog if entry.fuzzy or not entry.msgstr]


def _edition_link(target: str, source: PurePosixPath) -> str:
    """A relative link of an English notebook or page as its Chinese copy writes it: to the Chinese copy of what it
    names where there is one (``_edition_of``), else to the same file, from the copy's folder."""
    path, hash_mark, anchor = target.partition("#")
    if not is_relative(target) or not path:
        return target
    resolved = posixpath.normpath(posixpath.join(str(source.parent), path))
    return posixpath.relpath(_edition_of(resolved), posixpath.dirname(_edition_of(str(source)))) + hash_mark + anchor


def _edition_links(text: str, source: PurePosixPath) -> str:
    return MARKDOWN_LINK.sub(lambda match: match[1] + _edition_link(match[2], source) + match[3], text)


def built_notebook(root: Path, notebook: Path, catalog: polib.POFile, repository: str) -> str:
    """The text of the Chinese notebook: ``notebook`` with its markdown translated by ``catalog`` (complete)."""
    english = nbformat.read(notebook, as_version=4)
    relative = PurePosixPath(notebook.relative_to(root).as_posix())
    translations = {entry.msgctxt: entry.msgstr for entry in catalog}
    for cell in (cell for cell in english.cells if cell.cell_type == "markdown"):
        cell.source = _edition_links(translations[cell.id], relative)
    edition = PurePosixPath(edition_path(root, notebook).relative_to(root).as_posix())
    return publish.updated_notebook(nbformat.writes(english, ensure_ascii=False) + "\n", edition, repository)[0]


def heading_anchor(heading: str) -> str:
    """The id the site and GitHub give an English heading ("## Fine-tuning (`finetune.py`)": fine-tuning-finetunepy),
    which the Chinese heading keeps, so that links to a section still lead to it."""
    text = re.sub(r"[^\w\s-]", "", heading.lstrip("#").strip()).strip().lower()
    return re.sub(r"[\s-]+", "-", text)


def built_page(root: Path, page: Path, catalog: polib.POFile) -> str:
    """The text of the Chinese page: ``page`` with its entries translated by ``catalog`` (complete), each heading
    keeping its English anchor (``heading_anchor``)."""
    translations = {entry.msgid: entry.msgstr for entry in catalog}
    pieces = []
    for unit, prose in page_units(page.read_text(encoding="utf-8")):
        if prose and unit.startswith("#"):
            marks, _, title = translations[unit].partition(" ")
            unit = f'{marks} <a id="{heading_anchor(unit)}"></a>{title}'
        elif prose:
            unit = translations[unit]
        pieces.append(_edition_links(unit, PurePosixPath(page.relative_to(root).as_posix())))
    return "\n".join(pieces)


def main(argv: list[str] | None = None) -> int:
    """Update every catalog, build the Chinese copy of each complete one, list the entries left to translate."""
    parser = argparse.ArgumentParser(prog="python -m tools.translate", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="the checkout's root")
    root = parser.parse_args(argv).root
    repository, left = publish.read_repository(root), []
    for source in [*english_notebooks(root), *english_pages(root)]:
        path, notebook = catalog_path(root, source), source.suffix == ".ipynb"
        old = polib.pofile(str(path), wrapwidth=0) if path.exists() else None
        catalog = updated_catalog(nbformat.read(source, as_version=4) if notebook else source.read_text("utf-8"), old)
        texts = {path: catalog.__unicode__()}
        left += catalog_problems(catalog, path.relative_to(root).as_posix())
        if not catalog_problems(catalog, ""):
            texts[edition_path(root, source)] = (built_notebook(root, source, catalog, repository) if notebook
                                                 else built_page(root, source, catalog))
        for target, text in texts.items():
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
                print(f"wrote {target.relative_to(root).as_posix()}")
    print(*left, f"{len(left)} entries left to translate." if left else "The Chinese edition is complete.", sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
