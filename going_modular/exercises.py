"""Check cells for the exercise notebooks (``notebooks/exercises``) and their solutions.

An exercise cell leaves a placeholder for the learner: a function whose body is
``raise NotImplementedError`` or a value left as ``None`` (or ``...``). The check cell after it runs
inside ``check``::

    with exercises.check("1a: patches by reshaping"):
        patches = exercises.answer(patchify(images, patch_size=16), "patchify's output")
        exercises.check_shape(patches, (2, 196, 768), "patchify's output")
        exercises.check_close(patches, reference, "patchify's output")

and prints one of three things:

- ``not done yet`` when the answer is still a placeholder (the notebook goes on running, so an
  unfilled exercise notebook runs top to bottom under pytest);
- ``correct`` when every check passed;
- an ``ExerciseCheckError`` that says what was wrong and what to look at, when a check failed.

Solution notebooks call ``expect_answers()`` first: from then on a placeholder is an error too, so a
solution can never pass by being empty.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Optional

import torch


_CLOSE_HINT = ("Print a few values of both to see where they part: the same numbers in another order point to a "
               "reshape or permute, numbers off by a constant factor to a scale.")


class ExerciseCheckError(AssertionError):
    """A check failed: the answer exists but is wrong. The message says how."""


_answers_expected = False


def expect_answers(expected: bool = True) -> None:
    """Treat placeholders as errors from now on (solution notebooks), or not (``expected=False``)."""
    global _answers_expected
    _answers_expected = expected


@contextlib.contextmanager
def check(name: str) -> Iterator[None]:
    """Run the checks of exercise ``name`` and print whether it is correct or not done yet.

    Raises:
        ExerciseCheckError: a check inside failed (re-raised with the exercise's name), or a placeholder
            was met after ``expect_answers()``.
    """
    try:
        yield
    except NotImplementedError as error:
        if _answers_expected:
            raise ExerciseCheckError(f"Exercise {name}: the answer is still a placeholder ({error}).") from error
        print(f"[ ] Exercise {name}: not done yet. Fill in the cell above, run it, then run this cell again.")
        return
    except ExerciseCheckError as error:
        raise ExerciseCheckError(f"Exercise {name}: {error}") from None
    print(f"[x] Exercise {name}: correct!")


def answer(value: Any, what: str = "the answer") -> Any:
    """Return ``value``, or raise ``NotImplementedError`` when it is still a placeholder (None or ...)."""
    if value is None or value is Ellipsis:
        raise NotImplementedError(f"{what} is still {value!r}")
    return value


def check_shape(tensor: Any, expected: Sequence[int], what: str = "the output") -> None:
    """Check that ``tensor`` is a tensor of shape ``expected``.

    Raises:
        ExerciseCheckError: not a tensor, or a different shape (both shapes are named).
    """
    if not isinstance(tensor, torch.Tensor):
        raise ExerciseCheckError(f"{what} should be a torch.Tensor, but it is a {type(tensor).__name__}.")
    if tuple(tensor.shape) != tuple(expected):
        raise ExerciseCheckError(
            f"{what} has shape {tuple(tensor.shape)}, expected {tuple(expected)}. "
            f"Print the shape after each step of your code to find where it goes wrong."
        )


def check_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    what: str = "the output",
    *,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    hint: Optional[str] = None,
) -> None:
    """Check that ``actual`` equals ``expected`` element by element, within float32 rounding.

    ``hint`` replaces the general advice at the end of the message with one that fits the exercise.

    Raises:
        ExerciseCheckError: a different shape, or values further apart than the tolerance (the largest
            difference is named).
    """
    check_shape(actual, expected.shape, what)
    if not torch.allclose(actual, expected, atol=atol, rtol=rtol):
        difference = (actual - expected).abs().max().item()
        raise ExerciseCheckError(
            f"{what} has the right shape but different values: the largest difference is {difference:.3g} "
            f"(allowed: {atol:g} + {rtol:g} x |expected|). " + (hint or _CLOSE_HINT)
        )


def check_equal(actual: Any, expected: Any, what: str = "the answer", hint: Optional[str] = None) -> None:
    """Check that ``actual == expected`` (numbers, strings, tuples ...).

    Raises:
        ExerciseCheckError: they differ (both values and the hint, if any, are in the message).
    """
    if actual != expected:
        raise ExerciseCheckError(f"{what} is {actual!r}, expected {expected!r}." + (f" {hint}" if hint else ""))


def check_true(condition: bool, message: str) -> None:
    """Check any other property; ``message`` says what is wrong and what to try when it fails.

    Raises:
        ExerciseCheckError: ``condition`` is false.
    """
    if not condition:
        raise ExerciseCheckError(message)
