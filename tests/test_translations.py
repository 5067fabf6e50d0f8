"""The Chinese edition (tools.translate): every catalog in step with its English notebook or page and complete, every
Chinese copy what the catalogs build, a notebook's code cell for cell the English code, a page's code, links,
numbers and shape the English ones, and the glossary's terms rendered one way."""
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
SOURCES = [*translate.english_notebooks(ROOT), *translate.english_pages(ROOT)]
EDITION_PAGES = [path for pattern in translate.PAGES
                 for path in sorted(ROOT.glob(pattern.replace(".md", f".{translate.EDITION}.md")))]
GLOSSARY = [line.split("\t") for line in (ROOT / translate.GLOSSARY).read_text(encoding="utf-8").splitlines()[1:]]
_NOT_PROSE = translate.NOT_PROSE  # code, maths, link targets and addresses, which stay English
PAGE_CATALOGS = [path for path in CATALOGS if path.relative_to(CATALOG_DIR).parts[0] in ("docs", "benchmarks")]
_CODE_OR_LINK = re.compile(r"`[^`]*`|\]\([^)\s]+\)")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SHAPE = re.compile(r"\s*(#{1,6} |[-*] |\d+\. )")  # a heading's level or a list item's marker


def entry_problems(msgid: str, msgstr: str) -> list[str]:
    """What a page entry's translation lost of its English: a code span or link target, a number, its heading level or
    list marker, or a table row's cells."""
    kept = {"code or link": _CODE_OR_LINK.findall(msgid), "number": _NUMBER.findall(_CODE_OR_LINK.sub(" ", msgid))}
    problems = [f"{kind} {text!r} is missing" for kind, texts in kept.items() for text in dict.fromkeys(texts)
                if text not in msgstr]
    shape = _SHAPE.match(msgid)
    if shape and not msgstr.startswith(shape[0]):
        problems.append(f"it should start with {shape[0]!r}")
    if msgid.startswith("|") and msgstr.count("|") != msgid.count("|"):
        problems.append(f"the table row has {msgstr.count('|')} '|', not {msgid.count('|')}")
    return problems


def _english(catalog: Path) -> Path:
    relative = catalog.relative_to(CATALOG_DIR)
    return (ROOT / relative.with_suffix(".md") if catalog in PAGE_CATALOGS
            else ROOT / "notebooks" / relative.with_suffix(".ipynb"))


def _source(english: Path) -> nbformat.NotebookNode | str:
    return english.read_text(encoding="utf-8") if english.suffix == ".md" else nbformat.read(english, as_version=4)


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("english", SOURCES, ids=_name)
def test_every_english_notebook_and_page_has_a_catalog(english):
    assert translate.catalog_path(ROOT, english).exists(), (
        f"{_name(english)} has no Chinese catalog: run `python -m tools.translate`, then translate its entries")


@pytest.mark.parametrize("catalog", CATALOGS, ids=_name)
def test_a_catalog_is_current_and_complete(catalog):
    english = _english(catalog)
    assert english.exists(), f"{_name(catalog)} translates {_name(english)}, which does not exist: delete it"
    current = polib.pofile(str(catalog), wrapwidth=0)
    updated = translate.updated_catalog(_source(english), current)
    assert updated.__unicode__() == catalog.read_text(encoding="utf-8"), (
        f"{_name(catalog)} is out of date with {_name(english)}: run `python -m tools.translate`")
    assert translate.catalog_problems(updated, _name(catalog)) == []


@pytest.mark.parametrize("catalog", CATALOGS, ids=_name)
def test_a_chinese_copy_is_what_its_catalog_builds(catalog):
    english, translations = _english(catalog), polib.pofile(str(catalog), wrapwidth=0)
    edition = translate.edition_path(ROOT, english)
    built = (translate.built_page(ROOT, english, translations) if english.suffix == ".md" else
             translate.built_notebook(ROOT, english, translations, publish.read_repository(ROOT)))
    assert edition.exists() and edition.read_text(encoding="utf-8") == built, (
        f"{_name(edition)} is not what its catalog builds: run `python -m tools.translate`")


@pytest.mark.parametrize("edition", EDITION + EDITION_PAGES, ids=_name)
def test_a_chinese_copy_has_a_catalog(edition):
    relative = edition.relative_to(ROOT).as_posix()
    english = (ROOT / relative.replace(f".{translate.EDITION}.md", ".md") if edition.suffix == ".md"
               else ROOT / "notebooks" / edition.relative_to(ROOT / "notebooks" / translate.EDITION))
    assert translate.catalog_path(ROOT, english).exists(), f"{_name(edition)} has no catalog: delete it"


@pytest.mark.parametrize("catalog", PAGE_CATALOGS, ids=_name)
def test_a_page_entry_keeps_its_code_links_numbers_and_shape(catalog):
    problems = [f"{entry.msgid[:60]!r}: {problem}" for entry in polib.pofile(str(catalog), wrapwidth=0)
                for problem in entry_problems(entry.msgid, entry.msgstr)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", translate.english_pages(ROOT), ids=_name)
def test_a_chinese_page_keeps_every_english_heading_anchor(page):
    headings = [unit for unit, prose in translate.page_units(page.read_text(encoding="utf-8")) if unit.startswith("#")]
    chinese = translate.edition_path(ROOT, page).read_text(encoding="utf-8")
    missing = [heading for heading in headings if f'<a id="{translate.heading_anchor(heading)}"></a>' not in chinese]
    assert not missing, f"{_name(page)}: headings whose anchor the Chinese page lacks: {missing}"


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
                misses.append(f"{entry.msgctxt or repr(entry.msgid[:50])}: {english!r} is not rendered {chinese!r}")
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


def test_a_page_is_cut_into_entries_that_join_back_to_it():
    page = ("# Title\n\nA paragraph\ngoes on.\n\n- an item\n  continued\n- `code`\n\n```bash\npython -m x\n```\n\n"
            "    indented code\n\n| model | accuracy |\n| --- | --- |\n| 28 | 0.737 |\n| hybrid | 0.680 |\n")
    units = translate.page_units(page)
    assert "\n".join(unit for unit, _ in units) == page
    assert [unit for unit, prose in units if prose] == [
        "# Title", "A paragraph\ngoes on.", "- an item\n  continued", "| model | accuracy |", "| hybrid | 0.680 |"]


def test_a_page_entry_changed_in_english_turns_fuzzy_and_keeps_its_translation():
    catalog = translate.updated_catalog("# Results\n\nThe hybrid reaches 0.680 on validation.\n", None)
    catalog[0].msgstr, catalog[1].msgstr = "# 结果", "混合模型在验证集上达到 0.680。"
    updated = translate.updated_catalog("# Results\n\nThe hybrid reaches 0.686 on validation.\n\nNew text.\n", catalog)
    title, changed, new = updated
    assert (title.msgstr, title.fuzzy) == ("# 结果", False)
    assert (changed.msgstr, changed.fuzzy, changed.previous_msgid) == (
        "混合模型在验证集上达到 0.680。", True, "The hybrid reaches 0.680 on validation.")
    assert (new.msgid, new.msgstr, new.fuzzy) == ("New text.", "", False)
    assert len(translate.catalog_problems(updated, "x.po")) == 2


def test_a_translation_that_loses_code_a_number_or_its_shape_is_caught():
    assert entry_problems("- Run `python -m x` for 1,400 steps ([guide](a.md))",
                          "- 运行 `python -m x` 1,400 步（[指南](a.md)）") == []
    assert entry_problems("- Run `python -m x` for 1,400 steps", "运行 `python -m x` 1400 步") == [
        "number '1,400' is missing", "it should start with '- '"]
    assert entry_problems("| hybrid | 0.680 |", "| 混合 0.680 |") == ["the table row has 2 '|', not 3"]


def test_a_chinese_heading_keeps_the_english_anchor():
    assert translate.heading_anchor("## Fine-tuning (`finetune.py`)") == "fine-tuning-finetunepy"
    assert translate.heading_anchor("## Data against inductive bias: Figure 4 in miniature (`data_sweep.py`)") == (
        "data-against-inductive-bias-figure-4-in-miniature-data_sweeppy")


@pytest.mark.parametrize("source, target, expected", [
    ("notebooks/06_x.ipynb", "07_y.ipynb", "07_y.ipynb"),
    ("notebooks/06_x.ipynb", "../benchmarks/README.md", "../../benchmarks/README.zh-CN.md"),
    ("notebooks/06_x.ipynb", "../images/a.png", "../../images/a.png"),
    ("notebooks/exercises/01_x.ipynb", "../01_y.ipynb", "../01_y.ipynb"),
    ("notebooks/exercises/01_x.ipynb", "../../benchmarks/README.md#a", "../../../benchmarks/README.zh-CN.md#a"),
    ("notebooks/06_x.ipynb", "../docs/guides/training.md#b", "../../docs/guides/training.zh-CN.md#b"),
    ("notebooks/06_x.ipynb", "https://arxiv.org/abs/2010.11929", "https://arxiv.org/abs/2010.11929"),
    ("docs/guides/package.md", "training.md", "training.zh-CN.md"),
    ("docs/guides/package.md", "../../notebooks/05c_x.ipynb", "../../notebooks/zh-CN/05c_x.ipynb"),
    ("docs/guides/package.md", "../../benchmarks/README.md#c", "../../benchmarks/README.zh-CN.md#c"),
    ("docs/guides/package.md", "../../going_modular/train.py", "../../going_modular/train.py"),
    ("benchmarks/README.md", "../images/05_data_sweep.png", "../images/05_data_sweep.png"),
    ("benchmarks/README.md", "#a-section", "#a-section"),
    ("docs/guides/notebooks.md", "../../README.md", "../../README.zh-CN.md"),
    ("notebooks/07_x.ipynb", "../docs/explore.md", "../../docs/explore.zh-CN.md"),
])
def test_a_link_leads_to_the_chinese_copy_of_what_it_names(source, target, expected):
    assert translate._edition_link(target, PurePosixPath(source)) == expected


def test_the_chinese_site_shows_every_guide_in_chinese_and_only_the_api_in_english():
    config = (ROOT / "mkdocs.zh-CN.yml").read_text(encoding="utf-8")
    missing = [page.name for page in translate.english_pages(ROOT)
               if page.parent.name == "guides" and f": guides/{page.name}\n" not in config]
    assert not missing, f"guides the Chinese site's navigation does not list under a Chinese label: {missing}"
    assert [line.strip() for line in config.splitlines() if "英文" in line and not line.lstrip().startswith("#")] == [
        "- API 参考（英文）:"]
