"""A parameter's trend: its measured values over the store's versions, as rows or a plot.

`store.history` lists every version that holds a parameter, and a version carries forward
the values a run did not recalibrate, so the same measurement appears in many versions.
A trend keeps each measurement once (the first version it appeared in), which is what a
person means by "how has T1 moved": a drift shows as a slope, not as repeated points.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fluxcal.snapshots import CalibratedParameter, SnapshotStore, StoreError

#: What a person watches for drift, in the daily run's trend artifact.
KEY_PARAMETERS = ("T1", "T2_echo", "T2_ramsey", "qubit_frequency", "assignment_fidelity")
#: Display scale per unit for the plots (SI in storage; µs and MHz on a person's axis).
_DISPLAY = {"s": (1e-6, "µs"), "Hz": (1e6, "MHz"), "V": (1e-3, "mV")}


@dataclass(frozen=True)
class TrendPoint:
    version: int  # first version holding this measurement
    parameter: CalibratedParameter


def qubits(store: SnapshotStore) -> list[str]:
    """Qubits with parameters in the current (or newest healthy) version."""
    return sorted(store.baseline().parameters)


def trend(store: SnapshotStore, qubit: str, name: str, last: int | None = None) -> list[TrendPoint]:
    """Each measurement of qubit/name once, oldest first; the `last` most recent if given."""
    points: list[TrendPoint] = []
    for version, p in store.history(qubit, name):
        if points and _same_measurement(points[-1].parameter, p):
            continue
        points.append(TrendPoint(version, p))
    return points[-last:] if last else points


def trends(
    store: SnapshotStore,
    names: Sequence[str],
    wanted: Iterable[str] | None = None,
    last: int | None = None,
) -> dict[str, dict[str, list[TrendPoint]]]:
    """name -> qubit -> trend, for the qubits `wanted` (default: all); empty trends dropped."""
    chosen = list(wanted) if wanted else qubits(store)
    out: dict[str, dict[str, list[TrendPoint]]] = {}
    for name in names:
        per_qubit = {q: t for q in chosen if (t := trend(store, q, name, last))}
        if per_qubit:
            out[name] = per_qubit
    if not out:
        where = ", ".join(chosen) or "any qubit"
        raise StoreError(f"no version holds {', '.join(names)} for {where}")
    return out


def _same_measurement(a: CalibratedParameter, b: CalibratedParameter) -> bool:
    return (
        a.updated == b.updated
        and a.experiment == b.experiment
        and (a.value == b.value or (math.isnan(a.value) and math.isnan(b.value)))
    )


def trend_png(series: Mapping[str, Mapping[str, list[TrendPoint]]]) -> bytes:
    """One panel per parameter, a line per qubit with ± stderr bars, against time measured."""
    import matplotlib

    matplotlib.use("Agg")
    import datetime as dt

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(series), 1, figsize=(7, 2.2 * len(series)), squeeze=False)
    for ax, (name, per_qubit) in zip(axes[:, 0], series.items(), strict=True):
        unit = next(iter(per_qubit.values()))[0].parameter.unit
        scale, label = _DISPLAY.get(unit, (1.0, unit))
        for qubit, points in per_qubit.items():
            times = [dt.datetime.fromisoformat(p.parameter.updated) for p in points]
            values = [p.parameter.value / scale for p in points]
            errors = [
                p.parameter.stderr / scale if math.isfinite(p.parameter.stderr) else 0.0
                for p in points
            ]
            ax.errorbar(times, values, yerr=errors, marker="o", ms=3, capsize=2, label=qubit)
        ax.set_ylabel(f"{name} ({label})" if label else name)
        ax.legend(fontsize="small", loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def write_trend_png(series: Mapping[str, Mapping[str, list[TrendPoint]]], path: Path) -> Path:
    Path(path).write_bytes(trend_png(series))
    return Path(path)
