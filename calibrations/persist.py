"""Between the graph runner and the snapshot store: seed a run, then record it as a version.

A run starts from the current snapshot's parameters, so a node that is rejected (or skipped)
leaves its parameters at their previous, trusted values, while the rejection itself is kept
in the new version's experiment records for the report.
"""

from __future__ import annotations

import json
from typing import Any

from qcodes import Station

from calibrations.runner import GraphRun
from snapshots import CalibratedParameter, SnapshotStore


def current_parameters(store: SnapshotStore) -> dict[str, dict[str, CalibratedParameter]]:
    """The current version's parameters, or nothing for an empty store."""
    if store.current_version() is None:
        return {}
    return store.load().parameters


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
    """Write one new version holding every qubit's parameters and every node's record, with
    the settings the run used (so the snapshot says how it was made).

    Qubits this run did not touch keep their current parameters.
    """
    experiments = {
        qubit: {
            name: result.record() for name, result in nodes.items() if result.outcome != "skipped"
        }
        for qubit, nodes in run.results.items()
    }
    parameters = {**current_parameters(store), **run.parameters}
    return store.save(
        parameters=parameters,
        experiments=experiments,
        station=station_snapshot(station),
        reason=reason,
        provenance=provenance or {},
        settings=run.settings,
    )
