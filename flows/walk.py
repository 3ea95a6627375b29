"""The graph walk of the flows, with Prefect tasks as executor, and recording a run.

The walk is the plain runner's (`calibrations.walker`): dependencies first, a node whose
dependency ran and was not accepted is skipped on that qubit only, accepted parameters flow
to later nodes, failures never cross from one qubit to another, and groups of qubits that
share no line run concurrently on the lab's workers. Only the executor differs: each node
is a task run (`flows.tasks.TaskExecutor`), its fit optionally a Dask task (`flows.engine`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from prefect.runtime import flow_run

from fluxcal.calibrate import save_complete_run
from fluxcal.calibrations.persist import current_parameters
from fluxcal.calibrations.runner import Fit, GraphRun, fit_here
from fluxcal.calibrations.walker import walk_graph
from fluxcal.flows.artifacts import (
    artifact_key,
    outcome_summary_markdown,
    parameter_rows,
    publish_markdown,
    publish_table,
)
from fluxcal.flows.lab import FlowLab
from fluxcal.flows.tasks import TaskExecutor
from fluxcal.metrics_push import after_flow_run
from fluxcal.snapshots import CalibratedParameter

Known = Mapping[str, Mapping[str, CalibratedParameter]]


def run_name(flow: str):
    """Flow-run namer: the flow and the qubits it works on, e.g. `daily-calibration-q0-q1`."""

    def name() -> str:
        qubits = flow_run.parameters.get("qubits") or ["all-qubits"]
        return "-".join([flow, *qubits])

    return name


def provenance(flow: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a snapshot records about the run that wrote it (the Prefect flow run id)."""
    return {**(extra or {}), "flow": flow, "flow_run_id": str(flow_run.get_id())}


@contextmanager
def plot_directory(lab: FlowLab) -> Iterator[Path]:
    """Where fit plots go: the run's folder under the caller's plot directory (renamed after
    the saved version by `lab.files.finish`), or a temporary one for the artifacts."""
    if lab.files.plots is not None:
        lab.files.plots.mkdir(parents=True, exist_ok=True)
        yield lab.files.plots
        return
    with tempfile.TemporaryDirectory(prefix="fluxcal-plots-") as tmp:
        yield Path(tmp)


def calibrate_graph(
    lab: FlowLab, nodes: Iterable[str] | None, known: Known, plot_dir: Path, fit: Fit = fit_here
) -> GraphRun:
    """Run `nodes` (default: all) of the lab's graph on every qubit, each node a task run."""
    with TaskExecutor(plot_dir, lab.settings, fit) as execute:
        return walk_graph(
            lab.station,
            lab.qubits,
            lab.graph,
            nodes,
            known,
            execute,
            lab.settings,
            lab.groups,
            lab.workers,
        )


def record_run(
    lab: FlowLab,
    run: GraphRun,
    title: str,
    reason: str,
    provenance: dict[str, str],
    write: bool = True,
    save_partial: bool = True,
    decisions: Mapping | None = None,
) -> int | None:
    """Save the run as one snapshot (unless `write` is false, or nodes failed to run and
    `save_partial` is false) and publish its artifacts: the parameter table with changes
    since the previous snapshot and the outcome summary."""
    previous = current_parameters(lab.store)
    version = None
    if write:
        provenance = {**provenance, **lab.files.provenance()}
        version = save_complete_run(lab.store, run, lab.station, reason, provenance, save_partial)
    current = lab.store.load(version).parameters if version is not None else previous
    if version is not None:
        stored = f" (snapshot v{version})"
    else:
        stored = " (not saved: nodes failed to run)" if write else " (unchanged)"
    publish_table(
        parameter_rows(previous, current, run.results),
        key=artifact_key("fluxcal", "parameters"),
        description=f"{title}: calibrated parameters{stored}",
    )
    publish_markdown(
        outcome_summary_markdown(title, run.results, version),
        key=artifact_key(title, "summary"),
        description=f"{title}: node outcomes",
    )
    after_flow_run(lab.store.path, title, run.results, version, decisions)  # run log, push
    return version
