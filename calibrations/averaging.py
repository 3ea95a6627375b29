"""Shots allocated by measured signal-to-noise: weak signals get more, strong ones no more.

A fixed shot count is tuned to one chip: too few for a weakly coupled resonator or a noisy
amplifier, wasted device time on a strong one. `measure_averaged` takes a first look with the
channel's shot count, scores the averaged trace with the analysis' own signal-to-noise
measure, and, when it falls short of the target, measures again with as many more shots as
the √shots law says the target needs (at least 2×, at most 16× per round), until the target or
the budget is reached. Every round is its own QCoDeS run; the trace handed on is the
shot-weighted mean, with the total shots and run ids in its attrs. Every run of the
measurement records which runs (GUIDs) and shots it belongs with (`AVERAGING_TAG` metadata),
so loading any of them from the database (`combine_runs`) gives the same trace bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from fluxcal.calibrations.gate import Criterion
from fluxcal.calibrations.session import DATASET_LOCK, QubitSession

#: Aim a little above the target: the score of the next round scatters around its prediction.
_MARGIN = 1.3
_MAX_ROUND_FACTOR = 16.0
#: QCoDeS run metadata of an averaged measurement: {"guids", "shots", "attrs", "keep_runs"}.
AVERAGING_TAG = "fluxcal_averaging"
#: Dimension of the kept runs (`iq_runs`), with their shots as the coordinate `RUNS_shots`.
RUNS = "averaging_run"


def shot_weighted_mean(traces: Sequence[np.ndarray], shots: Sequence[int]) -> np.ndarray:
    """Mean of per-run averaged traces weighted by their shots (one run: that run's trace)."""
    if len(traces) == 1:
        return np.asarray(traces[0])
    weighted = traces[0] * shots[0]
    for trace, count in zip(traces[1:], shots[1:], strict=True):
        weighted = weighted + trace * count
    return weighted / sum(shots)


def combine_runs(runs: Sequence[xr.Dataset], record: dict[str, Any]) -> xr.Dataset:
    """The averaged Dataset from its runs (in order) and their `AVERAGING_TAG` record: the
    last run with the shot-weighted mean as `iq` and the measurement's attrs; with the
    record's `keep_runs`, every run's trace too (`iq_runs`), whose scatter measures each
    point's noise without a model."""
    data = runs[-1].copy()
    mean = shot_weighted_mean([run["iq"].values for run in runs], record["shots"])
    data["iq"] = (data["iq"].dims, mean, data["iq"].attrs)
    data.attrs.update(record["attrs"])
    if record.get("keep_runs") and len(runs) > 1:
        traces = xr.concat([run["iq"] for run in runs], dim=RUNS)
        data["iq_runs"] = traces.assign_coords({f"{RUNS}_shots": (RUNS, list(record["shots"]))})
    return data


def next_total(
    total: int, score: float, target: float, budget: int, max_factor: float = _MAX_ROUND_FACTOR
) -> int:
    """Total shots the √shots law says reaches `target` from `score` at `total`, in budget,
    at most `max_factor` times `total`."""
    wanted = total * (_MARGIN * target / max(score, 1e-12)) ** 2
    wanted = float(np.clip(wanted, 2 * total, max_factor * total))
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
    score: Callable[..., float],
    target: float,
    budget: int,
    attrs: dict[str, Any] | None = None,
    min_runs: int = 1,
    futile: tuple[int, Callable[[np.ndarray], bool]] | None = None,
) -> xr.Dataset:
    """An averaged sweep whose `score(iq)` reaches `target` if `budget` shots allow.

    `futile` = (shots, judge) ends the averaging short of the target once it has averaged
    that many shots (a round stops there on its way) and `judge(iq)` says the rest of the
    budget could not get there: nothing seen yet that more shots could raise to the target.

    With `min_runs` > 1 the first look is repeated that often whatever its score, and the
    runs are kept (`combine_runs`): their scatter is each point's noise, measured. `score`
    is then called as `score(iq, (traces, shots))`, so it can judge the trace with the noise
    the analysis will use (judged with a uniform noise, a qubit line whose projection noise
    doubles its points' scatter stopped averaging short of its linewidth precision: sampled
    chips 5016 and 5054).
    """
    readout = session.channel("readout")
    first = int(readout.shots())
    total, batch = 0, first
    runs: list[xr.Dataset] = []
    shots: list[int] = []
    try:
        while True:
            session.configure(readout={"shots": batch})
            runs.append(session.measure(name, sweep, values, attrs=attrs))
            shots.append(batch)
            total += batch
            if len(runs) < min_runs:
                continue  # the first look again (`batch` is still its size)
            traces = [run["iq"].values for run in runs]
            mean = shot_weighted_mean(traces, shots)
            kept = min_runs > 1
            reached = score(mean, (np.stack(traces), np.array(shots))) if kept else score(mean)
            planned = next_total(total, reached, target, budget)
            if reached >= target or planned <= total:
                break
            if futile is not None and total >= futile[0] and futile[1](mean):
                break
            if futile is not None and total < futile[0] < planned:
                planned = futile[0]  # judged there before going on
            batch = planned - total
    finally:
        readout.shots(first)
    run_ids = ",".join(str(run.attrs.get("run_id")) for run in runs)
    record = {
        "guids": [run.attrs.get("guid") for run in runs],
        "shots": shots,
        "attrs": {"shots": total, "averaging_runs": run_ids, "score": float(reached)},
        "keep_runs": min_runs > 1,
    }
    _record_averaging(record)
    return combine_runs(runs, record)


def _record_averaging(record: dict[str, Any]) -> None:
    """Store `record` in the metadata of every run it combines (runs without a GUID, not
    stored in a QCoDeS database, are skipped)."""
    if not all(record["guids"]):
        return
    from qcodes.dataset import load_by_guid

    with DATASET_LOCK:
        for guid in record["guids"]:
            load_by_guid(guid).add_metadata(AVERAGING_TAG, json.dumps(record))
