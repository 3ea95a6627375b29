"""Shots allocated by measured signal-to-noise: weak signals get more, strong ones no more.

A fixed shot count is tuned to one chip: too few for a weakly coupled resonator or a noisy
amplifier, wasted device time on a strong one. `measure_averaged` takes a first look with the
channel's shot count, scores the averaged trace with the analysis' own signal-to-noise
measure, and, when it falls short of the target, measures again with as many more shots as
the √shots law says the target needs (at least 2×, at most 16× per round), until the target or
the budget is reached. Every round is its own QCoDeS run; the trace handed on is the
shot-weighted mean, with the total shots and run ids in its attrs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from calibrations.gate import Criterion
from calibrations.session import QubitSession

#: Aim a little above the target: the score of the next round scatters around its prediction.
_MARGIN = 1.3
_MAX_ROUND_FACTOR = 16.0


def next_total(total: int, score: float, target: float, budget: int) -> int:
    """Total shots the √shots law says reaches `target` from `score` at `total`, in budget."""
    wanted = total * (_MARGIN * target / max(score, 1e-12)) ** 2
    wanted = float(np.clip(wanted, 2 * total, _MAX_ROUND_FACTOR * total))
    return int(min(wanted, budget))


def noise_limited_score(criteria: list[Criterion], markers: tuple[str, ...]) -> float:
    """How far the criteria whose name contains one of `markers` are met (1 = just met).

    Meant for criteria that improve as √shots (a signal-to-noise ratio) or as 1/√shots (a
    standard error), so the score follows the √shots law `next_total` relies on. 0 when such
    a criterion has no finite value (nothing could be fitted).
    """
    ratios = []
    for criterion in criteria:
        if not any(marker in criterion.name for marker in markers):
            continue
        value, limit = criterion.value, criterion.limit
        if not np.isfinite(value):
            return 0.0
        ratio = value / limit if criterion.kind == "min" else limit / max(value, 1e-300)
        ratios.append(ratio)
    return float(min(ratios)) if ratios else 0.0


def measure_averaged(
    session: QubitSession,
    name: str,
    sweep: str,
    values: Sequence[float] | np.ndarray,
    score: Callable[[np.ndarray], float],
    target: float,
    budget: int,
    attrs: dict[str, Any] | None = None,
) -> xr.Dataset:
    """An averaged sweep whose `score(iq)` reaches `target` if `budget` shots allow."""
    readout = session.channel("readout")
    first = int(readout.shots())
    total, batch = 0, first
    weighted: np.ndarray | None = None
    run_ids = []
    try:
        while True:
            session.configure(readout={"shots": batch})
            data = session.measure(name, sweep, values, attrs=attrs)
            run_ids.append(str(data.attrs.get("run_id")))
            iq = data["iq"].values * batch
            weighted = iq if weighted is None else weighted + iq
            total += batch
            reached = score(weighted / total)
            planned = next_total(total, reached, target, budget)
            if reached >= target or planned <= total:
                break
            batch = planned - total
    finally:
        readout.shots(first)
    data["iq"] = (data["iq"].dims, weighted / total, data["iq"].attrs)
    data.attrs.update(shots=total, averaging_runs=",".join(run_ids), score=reached)
    return data
