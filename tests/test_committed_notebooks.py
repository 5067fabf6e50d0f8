"""What every committed notebook output must not show (CONVENTIONS.md, "Honest outputs").

Learners read the committed outputs on GitHub before they run anything, so each output is checked for:
an absolute path of the machine that ran it (its checkout, a temporary folder, a home folder, the torch
hub cache), a traceback, error or warning, random weights presented as results, a sentence true only on
an offline machine, and an output without an execution count (a cell whose output came from some other
run). nbval's instructions are cell tags (`nbval-check-output`), never marker comments in the code learners
read. The checks read the .ipynb files only; nothing is executed.
"""
import json
import re
import tempfile
from pathlib import Path

import pytest

from going_modular.common import settings

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.rglob("*.ipynb"))

# A path leaks the machine when it starts at the file system's root in one of these folders.
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:tmp|home|root|Users|work|var/folders|private|content)/")
FORBIDDEN = {
    "a torch hub cache path": re.compile(r"\.cache/torch"),
    "a Windows user folder": re.compile(r"[A-Z]:\\Users\\"),
    "a traceback": re.compile(r"Traceback \(most recent call last\)"),
    "a warning": re.compile(r"\w+Warning:|warnings\.warn\("),
    "random weights": re.compile(r"\bRANDOM\b"),
    "an offline-only sentence": re.compile(r"\boffline\b", re.IGNORECASE),
}
TRAINING_LOG_LINE = re.compile(r"^Epoch: \d+ \|", re.MULTILINE)
MAX_LOG_LINES = 15  # a training run shows a screen at most: its first, last and every k-th epoch
MAX_MARKDOWN_WORDS = 3000  # one sitting: about 20 minutes of reading
NBVAL_MARKER = re.compile(r"^\s*#\s*(NBVAL_\w+|PYTEST_VALIDATE_IGNORE_OUTPUT)\s*$", re.MULTILINE)


def _output_texts(output: dict) -> list[str]:
    """Every text an output shows: a stream, an error, or the text and HTML of a result."""
    if output["output_type"] == "stream":
        return ["".join(output["text"])]
    if output["output_type"] == "error":
        return [f"{output['ename']}: {output['evalue']}", "\n".join(output["traceback"])]
    data = output.get("data", {})
    return ["".join(data[kind]) for kind in ("text/plain", "text/html", "text/markdown") if kind in data]


def problems_in(notebook: dict) -> list[str]:
    """One line per rule an output of the notebook breaks, naming the cell."""
    machine_paths = {str(Path(folder).resolve()) for folder in (tempfile.gettempdir(), Path.home())}
    root = settings.get_repository_root()
    if root is not None:
        machine_paths.add(str(root))
    problems = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code" and NBVAL_MARKER.search("".join(cell["source"])):
            problems.append(f"cell {index}: an nbval marker comment in the code (give the cell nbval's tag instead)")
        outputs = cell.get("outputs", [])
        if outputs and cell.get("execution_count") is None:
            problems.append(f"cell {index}: outputs without an execution count")
        for output in outputs:
            if output["output_type"] == "error":
                problems.append(f"cell {index}: an error output ({output['ename']})")
            for text in _output_texts(output):
                if MACHINE_PATH.search(text) or any(path in text for path in machine_paths):
                    problems.append(f"cell {index}: an absolute path of the machine that ran it")
                problems += [f"cell {index}: {what}" for what, pattern in FORBIDDEN.items() if pattern.search(text)]
                if len(TRAINING_LOG_LINE.findall(text)) > MAX_LOG_LINES:
                    problems.append(f"cell {index}: a training log of more than {MAX_LOG_LINES} epoch lines")
    return problems


def markdown_words(notebook: dict) -> int:
    return sum(len("".join(cell["source"]).split()) for cell in notebook["cells"] if cell["cell_type"] == "markdown")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: str(path.relative_to(NOTEBOOKS_DIR)))
def test_committed_outputs_are_clean(path: Path) -> None:
    problems = problems_in(json.loads(path.read_text()))
    assert not problems, f"{path.name}: " + "; ".join(sorted(set(problems)))


@pytest.mark.parametrize("path", sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]*.ipynb")), ids=lambda path: path.stem)
def test_a_main_notebook_reads_in_one_sitting(path: Path) -> None:
    words = markdown_words(json.loads(path.read_text()))
    assert words <= MAX_MARKDOWN_WORDS, f"{path.name}: {words} words of markdown (at most {MAX_MARKDOWN_WORDS})"


def _notebook_with_output(text: str, execution_count=1, output_type: str = "stream") -> dict:
    output = {"output_type": output_type, "name": "stdout", "text": [text]}
    if output_type == "error":
        output = {"output_type": "error", "ename": "ValueError", "evalue": text, "traceback": [text]}
    return {"cells": [{"cell_type": "code", "execution_count": execution_count, "outputs": [output], "source": []}]}


@pytest.mark.parametrize("text, problem", [
    ("saved to /tmp/tmpab12/model.pth", "an absolute path"),
    ("data in /home/learner/vit/data", "an absolute path"),
    ("weights from /root/.cache/torch/hub/checkpoints/vit.pth", "torch hub cache"),
    ("UserWarning: something", "a warning"),
    ("RANDOM backbone weights", "random weights"),
    ("This machine is offline, so ...", "offline-only"),
    ("".join(f"Epoch: {epoch} | train_loss: 1.0\n" for epoch in range(1, 17)), "a training log"),
])
def test_each_rule_catches_what_it_names(text: str, problem: str) -> None:
    found = problems_in(_notebook_with_output(text))
    assert any(problem in line for line in found), found


def test_errors_and_outputs_without_a_count_are_caught() -> None:
    assert any("error output" in line for line in problems_in(_notebook_with_output("bad", output_type="error")))
    assert any("execution count" in line for line in problems_in(_notebook_with_output("ok", execution_count=None)))


def test_a_clean_output_passes() -> None:
    assert problems_in(_notebook_with_output("saved to models/05_results.json (data/pizza_steak_sushi)")) == []


def test_nbval_marker_comments_are_caught() -> None:
    notebook = _notebook_with_output("ok")
    notebook["cells"][0]["source"] = ["# NBVAL_CHECK_OUTPUT\n", "print('ok')"]
    assert any("nbval marker" in line for line in problems_in(notebook))
