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
    exercises.reset()
    yield
    exercises.reset()


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


# ------------------------------------------------------------------ exercises that build on earlier ones


def _passing_check(name):
    with exercises.check(name):
        exercises.check_equal(1, 1)


def test_a_placeholder_whose_prerequisite_has_not_passed_says_which_exercise_comes_first(capsys):
    with exercises.check("1b: unpatchify", requires="1a"):
        _placeholder()  # e.g. patchify, from exercise 1a, is still a placeholder
    out = capsys.readouterr().out
    assert "[ ] Exercise 1b: unpatchify: needs exercise 1a first" in out
    assert "not done yet" not in out


def test_once_the_prerequisite_passed_a_placeholder_is_not_done_yet_again(capsys):
    _passing_check("1a: patchify")
    with exercises.check("1b: unpatchify", requires="1a"):
        _placeholder()
    out = capsys.readouterr().out
    assert "[x] Exercise 1a: patchify: correct!" in out
    assert "[ ] Exercise 1b: unpatchify: not done yet" in out and "needs" not in out
    assert exercises.passed("1a") and not exercises.passed("1b")


def test_a_failed_check_blames_the_unfinished_prerequisite_and_keeps_what_it_found():
    with pytest.raises(ExerciseCheckError, match=r"Exercise 2b: needs exercise 2a first.*What this check found: "
                                                 r"x has shape \(1,\), expected \(2,\)"):
        with exercises.check("2b", requires=["2a"]):
            exercises.check_shape(torch.zeros(1), (2,), "x")


def test_a_correct_answer_passes_even_when_the_prerequisite_check_was_not_run(capsys):
    with exercises.check("1b", requires="1a"):
        exercises.check_equal(2, 2)
    assert "[x] Exercise 1b: correct!" in capsys.readouterr().out


def test_a_check_that_passed_and_then_fails_is_forgotten(capsys):
    _passing_check("1a")
    with exercises.check("1a"):
        _placeholder()
    assert not exercises.passed("1a")
    with exercises.check("1b", requires="1a"):
        _placeholder()
    assert "needs exercise 1a first" in capsys.readouterr().out


def test_solutions_raise_when_a_prerequisite_is_missing():
    exercises.expect_answers()
    with pytest.raises(ExerciseCheckError, match="Exercise 3b: needs exercise 3a first"):
        with exercises.check("3b", requires="3a"):
            _placeholder()


# ------------------------------------------------------------------ what a function's code really uses


def _patchify_with_comments(images, patch_size):
    """Cut images into patches without unfold or Conv2d."""
    # unlike the course notebook, no unfold and no conv2d here
    note = "not F.unfold"
    return images.reshape(1, -1).permute(1, 0), note


def _patchify_with_unfold(images, patch_size):
    return images.unfold(2, patch_size, patch_size)


def test_names_used_ignores_comments_docstrings_and_strings():
    names = exercises.names_used(_patchify_with_comments)
    assert {"reshape", "permute", "images"} <= names
    assert not {"unfold", "conv2d", "Conv2d"} & names


def test_names_used_sees_a_method_call():
    assert "unfold" in exercises.names_used(_patchify_with_unfold)


def test_names_used_refuses_a_builtin():
    with pytest.raises(TypeError, match="Cannot read the source"):
        exercises.names_used(len)


def _checks(notebook: Path) -> list[tuple[str, str]]:
    """(name, requires) of every exercises.check(...) call in the notebook, in order."""
    cells = json.loads(notebook.read_text())["cells"]
    source = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    pattern = r"""exercises\.check\(\s*"([^"]+)"(?:\s*,\s*requires\s*=\s*"([^"]+)")?"""
    return re.findall(pattern, source)


def _check_names(notebook: Path) -> set[str]:
    return {name for name, _ in _checks(notebook)}


def test_every_exercise_notebook_has_a_solution_with_the_same_checks():
    exercise_notebooks = sorted((NOTEBOOKS / "exercises").glob("*.ipynb"))
    assert exercise_notebooks, "no exercise notebooks found"
    for notebook in exercise_notebooks:
        solution = NOTEBOOKS / "solutions" / notebook.name.replace("_exercises", "_solutions")
        assert solution.is_file(), f"{notebook.name} has no solution notebook {solution.name}"
        names = _check_names(notebook)
        assert names, f"{notebook.name} has no exercises.check(...) cells"
        assert names == _check_names(solution), f"{notebook.name} and {solution.name} check different exercises"


@pytest.mark.parametrize("name", ["01_patch_embedding", "02_attention"])
def test_exercises_and_solutions_check_the_same_labels_in_the_same_order_and_prerequisites_come_first(name):
    exercise = _checks(NOTEBOOKS / "exercises" / f"{name}_exercises.ipynb")
    solution = _checks(NOTEBOOKS / "solutions" / f"{name}_solutions.ipynb")
    assert exercise == solution
    labels = [exercises.label(check_name) for check_name, _ in exercise]
    assert labels == sorted(labels) and len(set(labels)) == len(labels), labels
    for position, (_, requires) in enumerate(exercise):
        if requires:
            assert requires in labels[:position], f"{labels[position]} requires {requires}, which is not checked before it"
    assert any(requires for _, requires in exercise), "no check names the exercise it builds on"
