"""The results a notebook quotes are the ones benchmarks/README.md records.

A code cell that starts with `# Quoted from benchmarks/README.md ("<section>")` holds numbers measured elsewhere.
Each (mean, std) pair in it must appear in that section of the README as "mean ± std", and each list of per-seed
values as "(a, b, c)", so that a benchmark measured again cannot leave a notebook quoting the old numbers.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_README = ROOT / "benchmarks" / "README.md"
NOTEBOOKS = sorted((ROOT / "notebooks").rglob("*.ipynb"))
QUOTED_CELL = re.compile(r'\A# Quoted from benchmarks/README\.md \("([^"]+)"\)')
NUMBER = r"\d\.\d{3}"
PAIR = re.compile(rf"\(({NUMBER}), ({NUMBER})\)")
PER_SEED = re.compile(rf"\[({NUMBER}(?:, {NUMBER})+)\]")


def readme_section(readme: str, title: str) -> str:
    """The text under the heading that starts with ``title``, up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(title)}.*$", readme, re.MULTILINE)
    if match is None:
        return ""
    end = re.compile(rf"^#{{1,{len(match[1])}}} ", re.MULTILINE).search(readme, match.end())
    return readme[match.end():end.start() if end else len(readme)]


def missing_quotes(source: str, readme: str) -> list[str]:
    """The numbers a quoted cell's ``source`` gives that its README section does not hold (none for another cell)."""
    match = QUOTED_CELL.match(source)
    if match is None:
        return []
    section = readme_section(readme, match[1])
    if not section:
        return [f'the section "{match[1]}"']
    expected = [f"{mean} ± {std}" for mean, std in PAIR.findall(source)]
    expected += [f"({values})" for values in PER_SEED.findall(source)]
    return [text for text in expected if text not in section]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: str(path.relative_to(ROOT / "notebooks")))
def test_quoted_results_match_the_benchmarks_readme(path: Path) -> None:
    readme = BENCHMARKS_README.read_text(encoding="utf-8")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    missing = {index: found for index, cell in enumerate(cells) if cell["cell_type"] == "code"
               if (found := missing_quotes("".join(cell["source"]), readme))}
    assert not missing, f"quoted numbers not in benchmarks/README.md, by cell: {missing}"


def test_a_quote_the_readme_does_not_hold_is_caught() -> None:
    readme = "# Top\n## Runs\n| a | 0.700 ± 0.010 (0.690, 0.710) |\n## Other\n0.500 ± 0.020\n"
    cell = '# Quoted from benchmarks/README.md ("Runs")\nA = (0.700, 0.010)\nB = {28: [0.690, 0.710]}\n'
    assert missing_quotes(cell, readme) == []
    assert missing_quotes(cell + "C = (0.500, 0.020)\n", readme) == ["0.500 ± 0.020"]  # in another section
    assert missing_quotes(cell.replace("0.710]", "0.711]"), readme) == ["(0.690, 0.711)"]
    assert missing_quotes(cell.replace('"Runs"', '"Walks"'), readme) == ['the section "Walks"']
    assert missing_quotes("A = (0.100, 0.200)\n", readme) == []  # not a quoted cell
