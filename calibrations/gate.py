"""Quality gates: a node's verdict is a list of named criteria with thresholds.

Following Qiskit Experiments' declared quality checks, a fit is accepted only when every
criterion passes, and a rejection names the criteria that failed with their numbers, so a
wrong value is never passed on and the reason is readable in a report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import lmfit

#: A varied parameter closer to a bound than this fraction of its scale sits on the bound.
BOUND_RTOL = 1e-4


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


#: A model that misses the data by less than this fraction of the signal is good enough.
MAX_MISFIT = 0.02


def chi2_limit(max_chi2: float, signal_per_point: float, max_misfit: float = MAX_MISFIT) -> float:
    """The reduced chi-square a fit may reach: `max_chi2`, or more where the signal is so far
    above one point's noise that a misfit of `max_misfit` of the signal shows.

    Against the noise alone, chi-square grows as the SNR squared for any fixed imperfection
    of the model (a line not quite Lorentzian, a decay not quite exponential), so a longer
    integration would reject a fit that improved. A misfit is excess residual rms,
    √(χ²_red − 1)·noise; it is tolerated up to `max_misfit` × signal. A glitch or a wrong
    model misses by far more. (lmfit scales the stderrs by χ²_red, so they stay honest.)
    """
    if not math.isfinite(signal_per_point) or signal_per_point <= 0:
        return max_chi2
    return max(max_chi2, 1.0 + (max_misfit * signal_per_point) ** 2)


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


def fit_parameters(fit: Any) -> lmfit.Parameters | None:
    """The parameters of an lmfit result, or of a fit object holding one as `result`."""
    results = (lmfit.model.ModelResult, lmfit.minimizer.MinimizerResult)
    for candidate in (fit, getattr(fit, "result", None)):
        if isinstance(candidate, results):
            return candidate.params
    return None


def _bound_scale(parameter: lmfit.Parameter) -> float:
    """What "close" is measured against: the allowed range, or the bound's and start's size."""
    low, high = parameter.min, parameter.max
    if math.isfinite(low) and math.isfinite(high):
        return high - low
    sizes = [abs(b) for b in (low, high) if math.isfinite(b)]
    return max(*sizes, abs(parameter.init_value or 0.0), 1e-300)


def bound_distances(
    params: lmfit.Parameters,
) -> list[tuple[lmfit.Parameter, str, float, float]]:
    """(parameter, "lower"/"upper", bound, distance/scale) for each finite bound of a varied one."""
    found = []
    for parameter in params.values():
        if not parameter.vary or parameter.expr:
            continue
        scale = _bound_scale(parameter)
        for side, bound in (("lower", parameter.min), ("upper", parameter.max)):
            if math.isfinite(bound):
                found.append((parameter, side, bound, abs(parameter.value - bound) / scale))
    return found


def pinned_parameters(
    params: lmfit.Parameters, rtol: float = BOUND_RTOL
) -> list[tuple[str, str, float]]:
    """(name, "lower"/"upper", bound) of every varied parameter sitting on a bound."""
    return [(p.name, side, b) for p, side, b, d in bound_distances(params) if d <= rtol]


def off_bounds(fit: Any, rtol: float = BOUND_RTOL) -> list[Criterion]:
    """A failing criterion for every varied parameter of an lmfit fit pinned at a bound.

    A parameter on its bound is where the optimiser was stopped, not where the data put it:
    its value and stderr mean nothing, and whatever is derived from it must not be handed on.
    The fit declares what a bound means through the parameter's `user_data`:
    `{"at_bound": "cause"}` names the physical reason a pinned value would have (shown in the
    rejection), `{"physical_bound": True}` marks a limit the value may legitimately reach (a
    leakage fraction at 0), which is not a rejection. Accepts a ModelResult, a
    MinimizerResult, or any fit object holding one as `result`; anything else has no bounds.
    """
    params = fit_parameters(fit)
    if params is None:
        return []
    criteria = []
    for parameter, side, bound, distance in bound_distances(params):
        data = parameter.user_data if isinstance(parameter.user_data, dict) else {}
        if distance > rtol or data.get("physical_bound"):
            continue
        cause = data.get("at_bound", "the data do not determine it")
        name = f"{parameter.name} at its {side} bound {bound:.4g} ({cause})"
        criteria.append(at_least(name, distance, rtol))
    return criteria
