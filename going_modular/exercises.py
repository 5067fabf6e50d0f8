"""Check cells for the exercise notebooks (``notebooks/exercises``) and their solutions::

    with exercises.check("01.1b: unpatchify", requires="01.1a"):
        patches = exercises.answer(patchify(images, patch_size=16), "patchify's output")
        exercises.check_shape(patches, (2, 196, 768), "patchify's output")

prints "not done yet" for a placeholder (``raise NotImplementedError``, None or ``...``), so an unfilled notebook
still runs, or "correct", or raises an ``ExerciseCheckError`` saying what was wrong ("needs exercise 01.1a first"
while a required exercise has not passed). Solution notebooks call ``expect_answers()``: a placeholder is an error."""
from __future__ import annotations

import ast
import contextlib
import inspect
import textwrap
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Optional, Union

import torch

_CLOSE_HINT = ("Print a few values of both to see where they part: the same numbers in another order point to a "
               "reshape or permute, numbers off by a constant factor to a scale.")
_answers_expected = False
_passed: set[str] = set()  # labels of the exercises whose check passed in this kernel, e.g. {"01.1a"}


class ExerciseCheckError(AssertionError):
    """A check failed: the answer exists but is wrong. The message says how."""


def expect_answers(expected: bool = True) -> None:
    """Treat placeholders as errors from now on (solution notebooks), or not (``expected=False``)."""
    global _answers_expected
    _answers_expected = expected


def reset() -> None:
    """Forget which exercises passed and stop expecting answers: the state of a fresh kernel."""
    _passed.clear()
    expect_answers(False)


def label(name: str) -> str:
    """The label of an exercise: the part of its name before the first colon ("01.1a: patches" -> "01.1a")."""
    return name.split(":", 1)[0].strip()


def passed(name: str) -> bool:
    """Whether the check of exercise ``name`` (a label such as "01.1a", or a full name) has passed."""
    return label(name) in _passed


@contextlib.contextmanager
def check(name: str, requires: Union[str, Sequence[str], None] = None) -> Iterator[None]:
    """Run the checks of exercise ``name`` ("label: description") and print whether it is correct or not done yet;
    ``requires``: the label(s) of earlier exercises this one builds on (a correct answer passes regardless).
    ExerciseCheckError when a check inside failed, or a placeholder was met after ``expect_answers()``."""
    required = [requires] if isinstance(requires, str) else list(requires or [])
    missing = [label(earlier) for earlier in required if not passed(earlier)]
    first = (f"needs exercise {' and '.join(missing)} first: run its check cell until it says correct, "
             f"then run this cell again") if missing else ""
    _passed.discard(label(name))  # a check run again is judged again
    try:
        yield
    except NotImplementedError as error:
        if _answers_expected:
            detail = first or "the answer is still a placeholder"
            raise ExerciseCheckError(f"Exercise {name}: {detail} ({error}).") from error
        todo = first or "not done yet. Fill in the cell above, run it, then run this cell again"
        print(f"[ ] Exercise {name}: {todo}.")
        return
    except ExerciseCheckError as error:
        found = f"{first}. (What this check found: {error})" if missing else error
        raise ExerciseCheckError(f"Exercise {name}: {found}") from None
    _passed.add(label(name))
    print(f"[x] Exercise {name}: correct!")


def names_used(function: Callable[..., Any]) -> set[str]:
    """The names the code of ``function`` uses (``x.unfold`` gives "unfold"); comments and strings do not count.
    TypeError when the source of ``function`` cannot be read (a built-in, say)."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError) as error:
        raise TypeError(f"Cannot read the source of {function!r} ({error}).") from error
    nodes = list(ast.walk(ast.parse(source)))
    return ({node.id for node in nodes if isinstance(node, ast.Name)}
            | {node.attr for node in nodes if isinstance(node, ast.Attribute)}
            | {node.arg for node in nodes if isinstance(node, ast.arg)}  # parameters
            | {(node.asname or node.name).split(".")[0] for node in nodes if isinstance(node, ast.alias)})


def answer(value: Any, what: str = "the answer") -> Any:
    """Return ``value``, or raise ``NotImplementedError`` when it is still a placeholder (None or ...)."""
    if value is None or value is Ellipsis:
        raise NotImplementedError(f"{what} is still {value!r}")
    return value


def check_shape(tensor: Any, expected: Sequence[int], what: str = "the output") -> None:
    """Raise an ``ExerciseCheckError`` unless ``tensor`` is a tensor of shape ``expected``."""
    if not isinstance(tensor, torch.Tensor):
        raise ExerciseCheckError(f"{what} should be a torch.Tensor, but it is a {type(tensor).__name__}.")
    if tuple(tensor.shape) != tuple(expected):
        raise ExerciseCheckError(f"{what} has shape {tuple(tensor.shape)}, expected {tuple(expected)}. "
                                 f"Print the shape after each step of your code to find where it goes wrong.")


def check_close(actual: torch.Tensor, expected: torch.Tensor, what: str = "the output", *, atol: float = 1e-5,
                rtol: float = 1e-4, hint: Optional[str] = None) -> None:
    """Raise an ``ExerciseCheckError`` unless ``actual`` equals ``expected`` within float32 rounding; ``hint``
    replaces the general advice at the end of the message with one that fits the exercise."""
    check_shape(actual, expected.shape, what)
    if not torch.allclose(actual, expected, atol=atol, rtol=rtol):
        raise ExerciseCheckError(f"{what} has the right shape but different values: the largest difference is "
                                 f"{(actual - expected).abs().max().item():.3g} (allowed: {atol:g} + {rtol:g} x "
                                 f"|expected|). " + (hint or _CLOSE_HINT))


def check_equal(actual: Any, expected: Any, what: str = "the answer", hint: Optional[str] = None) -> None:
    """Raise an ``ExerciseCheckError`` unless ``actual == expected`` (numbers, strings, tuples ...)."""
    if actual != expected:
        raise ExerciseCheckError(f"{what} is {actual!r}, expected {expected!r}." + (f" {hint}" if hint else ""))


def check_true(condition: bool, message: str) -> None:
    """Raise an ``ExerciseCheckError`` with ``message`` (what is wrong, what to try) unless ``condition``."""
    if not condition:
        raise ExerciseCheckError(message)
