"""Between the graph runner and the snapshot store: seed a run, then record it as a version.

A run starts from the current snapshot's parameters, so a node that is rejected (or skipped)
leaves its parameters at their previous, trusted values, while the rejection itself is kept
in the new version's experiment records for the report. When it saves, only what the run
itself accepted is merged onto the version current at that moment (under the store's lock),
so two overlapping runs never undo each other's results.
"""

from __future__ import annotations

import json
from typing import Any

from qcodes import Station

from fluxcal.calibrations.runner import GraphRun
from fluxcal.snapshots import CalibratedParameter, SnapshotStore


def current_parameters(store: SnapshotStore) -> dict[str, dict[str, CalibratedParameter]]:
    """The parameters a run starts from: the current version's, nothing for an empty store.

    A missing or damaged current version does not stop the run: the newest healthy version
    stands in and a `snapshots.StoreWarning` says so (`store.baseline().notice` has the line
    for callers that report it themselves).
    """
    return store.baseline().parameters


def run_changes(run: GraphRun) -> dict[str, dict[str, CalibratedParameter]]:
    """What the run itself produced: the parameters of its accepted nodes, in run order.

    Not `run.parameters`, which also holds the values the run was seeded with; storing those
    again would put back values that another run replaced in the meantime.
    """
    changes: dict[str, dict[str, CalibratedParameter]] = {}
    for qubit, nodes in run.results.items():
        for result in nodes.values():
            changes.setdefault(qubit, {}).update(result.parameters)
    return changes


def station_snapshot(station: Station) -> dict[str, Any]:
    """The QCoDeS station snapshot as plain JSON data (numpy values made serialisable)."""
    return json.loads(json.dumps(station.snapshot(update=False), default=_jsonable))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, complex):
        return [value.real, value.imag]
    return str(value)


def save_run(
    store: SnapshotStore,
    run: GraphRun,
    station: Station,
    reason: str,
    provenance: dict[str, str] | None = None,
) -> int:
    """Write one new version: the run's accepted parameters merged onto the version current
    at save time, every node's record, and the settings the run used (so the snapshot says
    how it was made).

    Parameters this run did not produce keep their values from that version, including any
    another run saved while this one was running.
    """
    experiments = {
        qubit: {
            name: result.record() for name, result in nodes.items() if result.outcome != "skipped"
        }
        for qubit, nodes in run.results.items()
    }
    return store.save_changes(
        run_changes(run),
        experiments=experiments,
        station=station_snapshot(station),
        reason=reason,
        provenance=provenance or {},
        settings=run.settings,
    )
