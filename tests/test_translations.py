"""The Chinese edition (tools.translate): every catalog in step with its English notebook and complete, every Chinese
notebook what the catalogs build, code cell for cell the English code, and the glossary's terms rendered one way."""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import nbformat
import polib
import pytest

from tools import publish, translate

ROOT = Path(__file__).resolve().parents[1]
CATALOG_DIR = ROOT / "translations" / translate.LANGUAGE
CATALOGS = sorted(path for path in CATALOG_DIR.rglob("*.po"))
EDITION = sorted((ROOT / "notebooks" / translate.EDITION).rglob("*.ipynb"))
GLOSSARY = [line.split("\t") for line in (ROOT / translate.GLOSSARY).read_text(encoding="utf-8").splitlines()[1:]]
# What is not prose in a cell: code, maths, link targets and addresses, which stay English.
_NOT_PROSE = re.compile(r"```.*?```|`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|\]\([^)]*\)|https?://\S+", re.DOTALL)


def _english(catalog: Path) -> Path:
    return ROOT / "notebooks" / catalog.relative_to(CATALOG_DIR).with_suffix(".ipynb")


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("notebook", translate.english_notebooks(ROOT), ids=_name)
def test_every_english_notebook_has_a_catalog(notebook):
    assert translate.catalog_path(ROOT, notebook).exists(), (
        f"{_name(notebook)} has no Chinese catalog: run `python -m tools.translate`, then translate its entries")


@pytest.mark.parametrize("catalog", CATALOGS, ids=_name)
def test_a_catalog_is_current_and_complete(catalog):
    english = _english(catalog)
    assert english.exists(), f"{_name(catalog)} translates {_name(english)}, which does not exist: delete it"
    current = polib.pofile(str(catalog), wrapwidth=0)
    updated = translate.updated_catalog(nbformat.read(english, as_version=4), current)
    assert updated.__unicode__() == catalog.read_text(encoding="utf-8"), (
        f"{_name(catalog)} is out of date with {_name(english)}: run `python -m tools.translate`")
    assert translate.catalog_problems(updated, _name(catalog)) == []


@pytest.mark.parametrize("catalog", CATALOGS, ids=_name)
def test_a_chinese_notebook_is_what_its_catalog_builds(catalog):
    edition = translate.edition_path(ROOT, _english(catalog))
    built = translate.built_notebook(ROOT, _english(catalog), polib.pofile(str(catalog), wrapwidth=0),
                                     publish.read_repository(ROOT))
    assert edition.exists() and edition.read_text(encoding="utf-8") == built, (
        f"{_name(edition)} is not what its catalog builds: run `python -m tools.translate`")


@pytest.mark.parametrize("edition", EDITION, ids=_name)
def test_a_chinese_notebook_has_a_catalog(edition):
    english = ROOT / "notebooks" / edition.relative_to(ROOT / "notebooks" / translate.EDITION)
    assert translate.catalog_path(ROOT, english).exists(), f"{_name(edition)} has no catalog: delete it"


@pytest.mark.parametrize("edition", EDITION, ids=_name)
def test_code_outputs_and_metadata_are_the_english_ones(edition):
    english_path = ROOT / "notebooks" / edition.relative_to(ROOT / "notebooks" / translate.EDITION)
    chinese, english = (nbformat.read(path, as_version=4) for path in (edition, english_path))
    assert chinese.metadata == english.metadata
    kinds = [[(cell.cell_type, cell.id) for cell in notebook.cells] for notebook in (chinese, english)]
    assert kinds[0] == kinds[1]
    setup = next(index for index, cell in enumerate(english.cells) if cell.cell_type == "code")
    for index, (zh, en) in enumerate(zip(chinese.cells, english.cells)):
        if en.cell_type != "code":
            continue
        assert (zh.metadata, zh.get("outputs"), zh.get("execution_count")) == (
            en.metadata, en.get("outputs"), en.get("execution_count")), f"{_name(edition)}: code cell {en.id}"
        expected = (publish.setup_cell_source(publish.read_repository(ROOT), PurePosixPath(_name(edition)))
                    if index == setup else en.source)  # the setup cell finds the checkout from its own folder
        assert zh.source == expected, f"{_name(edition)}: code cell {en.id} differs from the English"


def _term(english: str) -> str:
    """A glossary term as a pattern: its words apart by spaces, hyphens or a line break, plural and verb forms too."""
    return r"\b" + r"[\s-]+".join(re.escape(word) for word in re.split(r"[\s-]+", english)) + r"(s|es|d|ed|ing)?\b"


@pytest.mark.parametrize("catalog", CATALOGS, ids=_name)
def test_the_glossary_terms_are_rendered_its_way(catalog):
    misses = []
    for entry in polib.pofile(str(catalog), wrapwidth=0):
        prose = _NOT_PROSE.sub(" ", entry.msgid)
        for english, chinese in GLOSSARY:
            # A term inside a longer one ("token" in "class token") follows the longer one's rendering.
            alone = prose
            for longer, _ in GLOSSARY:
                if english.lower() in longer.lower() and longer.lower() != english.lower():
                    alone = re.sub(_term(longer), " ", alone, flags=re.IGNORECASE)
            if re.search(_term(english), alone, re.IGNORECASE) and chinese not in entry.msgstr:
                misses.append(f"cell {entry.msgctxt}: {english!r} is not rendered {chinese!r}")
    assert not misses, "\n".join(misses)


def _notebook(*sources: str) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell(source, id=f"cell{index}") for index, source in enumerate(sources)]
    return notebook


def test_an_english_edit_makes_its_entry_fuzzy_and_keeps_the_translation():
    catalog = translate.updated_catalog(_notebook("# Patches", "Some text."), None)
    assert [entry.msgstr for entry in catalog] == ["", ""]
    catalog[0].msgstr, catalog[1].msgstr = "# 图像块", "一些文字。"
    updated = translate.updated_catalog(_notebook("# Patches", "Some new text.", "A new cell."), catalog)
    first, second, third = updated
    assert (first.msgstr, first.fuzzy) == ("# 图像块", False)
    assert (second.msgstr, second.fuzzy, second.previous_msgid) == ("一些文字。", True, "Some text.")
    assert (third.msgid, third.msgstr) == ("A new cell.", "")
    assert len(translate.catalog_problems(updated, "x.po")) == 2
    second.msgstr, second.flags = "一些新的文字。", []
    third.msgstr = "一个新单元格。"
    assert translate.catalog_problems(translate.updated_catalog(_notebook("# Patches", "Some new text.",
                                                                          "A new cell."), updated), "x.po") == []


@pytest.mark.parametrize("notebook, target, expected", [
    ("notebooks/06_x.ipynb", "07_y.ipynb", "07_y.ipynb"),
    ("notebooks/06_x.ipynb", "../benchmarks/README.md", "../../benchmarks/README.md"),
    ("notebooks/exercises/01_x.ipynb", "../01_y.ipynb", "../01_y.ipynb"),
    ("notebooks/exercises/01_x.ipynb", "../../benchmarks/README.md#a", "../../../benchmarks/README.md#a"),
    ("notebooks/06_x.ipynb", "https://arxiv.org/abs/2010.11929", "https://arxiv.org/abs/2010.11929"),
])
def test_links_out_of_the_notebooks_folder_climb_one_folder_more(notebook, target, expected):
    assert translate._edition_link(target, PurePosixPath(notebook)) == expected
