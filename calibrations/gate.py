"""Quality gates: a node's verdict is a list of named criteria with thresholds.

Following Qiskit Experiments' declared quality checks, a fit is accepted only when every
criterion passes, and a rejection names the criteria that failed with their numbers, so a
wrong value is never passed on and the reason is readable in a report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Criterion:
    """One check: `value` must be at most (`max`) or at least (`min`) `limit`."""

    name: str
    value: float
    limit: float
    kind: Literal["max", "min"]

    @property
    def passed(self) -> bool:
        if not math.isfinite(self.value):
            return False
        return self.value <= self.limit if self.kind == "max" else self.value >= self.limit

    def describe(self) -> str:
        sign = "<=" if self.kind == "max" else ">="
        verdict = "ok" if self.passed else "FAILED"
        return f"{self.name} = {self.value:.4g} (needs {sign} {self.limit:.4g}): {verdict}"


def at_most(name: str, value: float, limit: float) -> Criterion:
    return Criterion(name, float(value), float(limit), "max")


def at_least(name: str, value: float, limit: float) -> Criterion:
    return Criterion(name, float(value), float(limit), "min")


def relative_error(value: float, stderr: float | None) -> float:
    """stderr/|value|; infinite when the fit gave no uncertainty (not trustworthy)."""
    if stderr is None or not math.isfinite(stderr) or value == 0:
        return math.inf
    return abs(stderr / value)


def within(name: str, value: float, low: float, high: float) -> list[Criterion]:
    """Physical bounds as two criteria."""
    return [
        at_least(f"{name} lower bound", value, low),
        at_most(f"{name} upper bound", value, high),
    ]


@dataclass(frozen=True)
class GateOutcome:
    accepted: bool
    reason: str
    criteria: tuple[Criterion, ...]


def evaluate(criteria: list[Criterion]) -> GateOutcome:
    """Accept when every criterion passes; the reason lists the failed ones."""
    failed = [c for c in criteria if not c.passed]
    if failed:
        return GateOutcome(False, "; ".join(c.describe() for c in failed), tuple(criteria))
    return GateOutcome(True, "all criteria passed", tuple(criteria))
