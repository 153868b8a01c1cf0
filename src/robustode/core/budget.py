"""Time budgets for long runs: a wall-clock deadline that work checks *before* it starts a piece.

A training loop asks before each epoch, an evaluation before each stage: ``deadline.allows(estimate)``.
When the answer is no, the work stops cleanly at that boundary (checkpoints already hold everything
done so far) and raises :class:`OutOfBudget`, which the run plan turns into "more to do".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class OutOfBudget(Exception):
    """Raised at a clean boundary (epoch, evaluation stage) when the next piece would not fit the budget."""


class FirstPassDone(OutOfBudget):
    """Raised by an evaluation that has finished the stages a runner's first pass asked for (the rest is left for
    its second pass, or the next call)."""


class Deadline:
    """``seconds`` from now (``None``: no limit), read from a monotonic clock."""

    def __init__(self, seconds: float | None = None, clock: Callable[[], float] = time.monotonic):
        if seconds is not None and not seconds > 0:
            raise ValueError(f"a budget must be a positive number of seconds, got {seconds!r}")
        self._clock = clock
        self._end = None if seconds is None else clock() + seconds

    @classmethod
    def unlimited(cls) -> Deadline:
        return cls(None)

    def left(self) -> float:
        return math.inf if self._end is None else self._end - self._clock()

    def allows(self, seconds: float) -> bool:
        """Whether a piece estimated at ``seconds`` would finish before the deadline."""
        return seconds <= self.left()

    def check(self, seconds: float, what: str) -> None:
        """Raise :class:`OutOfBudget` (naming ``what``) if a piece of ``seconds`` would not fit."""
        if not self.allows(seconds):
            raise OutOfBudget(f"{what} (~{seconds:.0f} s) does not fit the {max(0.0, self.left()):.0f} s left")


def parse_duration(text: str) -> float:
    """'150m', '2h', '90s', '1h30m' or a plain number of seconds -> seconds; anything else is one clear error."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    rest, total, seen = str(text).strip().lower(), 0.0, False
    try:
        if rest and rest.replace(".", "", 1).isdigit():
            total, seen = float(rest), True
        else:
            number = ""
            for char in rest:
                if char.isdigit() or char == ".":
                    number += char
                elif char in units and number:
                    total, number, seen = total + float(number) * units[char], "", True
                else:
                    raise ValueError
            if number:
                raise ValueError
    except ValueError:
        seen = False
    if not seen or not total > 0:
        raise ValueError(f"a budget must look like 150m, 2h, 1h30m or 90s (positive), got {text!r}")
    return total
