"""The check cells' helpers: placeholders are 'not done yet', wrong answers raise, right ones pass."""
import json
import re
from pathlib import Path

import pytest
import torch

from going_modular import exercises
from going_modular.exercises import ExerciseCheckError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(autouse=True)
def _reset_expectation():
    yield
    exercises.expect_answers(False)


def _placeholder():
    raise NotImplementedError("your code here")


def test_placeholder_is_reported_not_done_and_does_not_raise(capsys):
    with exercises.check("1a"):
        _placeholder()
    assert "[ ] Exercise 1a: not done yet" in capsys.readouterr().out


def test_none_answer_is_not_done(capsys):
    with exercises.check("1b"):
        exercises.answer(None, "patches")
        raise AssertionError("never reached")
    assert "not done yet" in capsys.readouterr().out


def test_correct_answer_is_reported(capsys):
    with exercises.check("2"):
        exercises.check_shape(torch.zeros(2, 3), (2, 3))
        exercises.check_close(torch.ones(3), torch.ones(3))
        exercises.check_equal(4, 4)
        exercises.check_true(True, "unused")
    assert "[x] Exercise 2: correct!" in capsys.readouterr().out


def test_wrong_shape_names_both_shapes_and_the_exercise():
    with pytest.raises(ExerciseCheckError, match=r"Exercise 3: patches has shape \(2, 3\), expected \(3, 2\)"):
        with exercises.check("3"):
            exercises.check_shape(torch.zeros(2, 3), (3, 2), "patches")


def test_not_a_tensor_is_named():
    with pytest.raises(ExerciseCheckError, match="should be a torch.Tensor, but it is a list"):
        exercises.check_shape([1, 2], (2,))


def test_wrong_values_give_the_largest_difference():
    with pytest.raises(ExerciseCheckError, match="largest difference is 0.5"):
        exercises.check_close(torch.tensor([1.0, 2.5]), torch.tensor([1.0, 2.0]))


def test_check_close_takes_a_hint_of_its_own():
    with pytest.raises(ExerciseCheckError, match="Did you divide by sqrt"):
        exercises.check_close(torch.tensor([2.0]), torch.tensor([1.0]), hint="Did you divide by sqrt(D_h)?")


def test_check_equal_and_check_true_messages():
    with pytest.raises(ExerciseCheckError, match="count is 3, expected 4. Count again."):
        exercises.check_equal(3, 4, "count", hint="Count again.")
    with pytest.raises(ExerciseCheckError, match="^the loss should fall$"):
        exercises.check_true(False, "the loss should fall")


def test_after_expect_answers_a_placeholder_is_an_error():
    exercises.expect_answers()
    with pytest.raises(ExerciseCheckError, match="Exercise 4: the answer is still a placeholder"):
        with exercises.check("4"):
            _placeholder()


def _check_names(notebook: Path) -> set[str]:
    cells = json.loads(notebook.read_text())["cells"]
    source = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    return set(re.findall(r"exercises\.check\(\s*[\"']([^\"']+)[\"']", source))


def test_every_exercise_notebook_has_a_solution_with_the_same_checks():
    exercise_notebooks = sorted((NOTEBOOKS / "exercises").glob("*.ipynb"))
    assert exercise_notebooks, "no exercise notebooks found"
    for notebook in exercise_notebooks:
        solution = NOTEBOOKS / "solutions" / notebook.name.replace("_exercises", "_solutions")
        assert solution.is_file(), f"{notebook.name} has no solution notebook {solution.name}"
        names = _check_names(notebook)
        assert names, f"{notebook.name} has no exercises.check(...) cells"
        assert names == _check_names(solution), f"{notebook.name} and {solution.name} check different exercises"
