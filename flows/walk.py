"""The per-qubit graph walk through Prefect tasks, and recording a run as one snapshot.

Same rules as the plain runner (`calibrations.runner.run_graph`): dependencies first, a node
whose dependency ran and was not accepted is skipped on that qubit only, accepted parameters
flow to later nodes. Qubits are walked one after another: the simulated instruments and the
QCoDeS database are shared, and a fixed order keeps runs reproducible; independence is about
failures, which never cross from one qubit to another.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from prefect.runtime import flow_run

from calibrations.graph import order
from calibrations.node import now_iso
from calibrations.persist import current_parameters
from calibrations.runner import GraphRun, NodeResult
from calibrations.session import QubitSession
from flows.artifacts import (
    artifact_key,
    outcome_summary_markdown,
    parameter_rows,
    publish_markdown,
    publish_table,
)
from flows.lab import FlowLab
from flows.tasks import run_calibration_task
from fluxcal.calibrate import save_complete_run
from snapshots import CalibratedParameter

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
    the saved version by `lab.files.keep_plots`), or a temporary one for the artifacts."""
    if lab.files.plots is not None:
        lab.files.plots.mkdir(parents=True, exist_ok=True)
        yield lab.files.plots
        return
    with tempfile.TemporaryDirectory(prefix="fluxcal-plots-") as tmp:
        yield Path(tmp)


def calibrate_graph(
    lab: FlowLab, nodes: Iterable[str] | None, known: Known, plot_dir: Path
) -> GraphRun:
    """Run `nodes` (default: all) of the lab's graph on every qubit, each node a task run."""
    sequence = order(lab.graph, nodes)
    results: dict[str, dict[str, NodeResult]] = {}
    parameters = {}
    for qubit in lab.qubits:
        session = QubitSession(lab.station, qubit, dict(known.get(qubit, {})))
        done = results.setdefault(qubit, {})
        for name in sequence:
            done[name] = calibrate_or_skip(lab, session, name, done, plot_dir)
            session.known.update(done[name].parameters)
        parameters[qubit] = session.known
    return GraphRun(results, parameters, lab.settings.resolved(lab.qubits))


def calibrate_or_skip(
    lab: FlowLab,
    session: QubitSession,
    name: str,
    done: Mapping[str, NodeResult],
    plot_dir: Path,
) -> NodeResult:
    """The node's task result, or `skipped` when a dependency of it ran and was not accepted."""
    blocked = [d for d in lab.graph[name].depends_on if d in done and done[d].outcome != "accepted"]
    if blocked:
        reason = f"dependency not accepted: {', '.join(blocked)}"
        return NodeResult(name, session.qubit, "skipped", reason, finished=now_iso())
    entry = lab.graph[name]
    return run_calibration_task(session.qubit, name, entry, session, plot_dir, lab.settings)


def record_run(
    lab: FlowLab,
    run: GraphRun,
    title: str,
    reason: str,
    provenance: dict[str, str],
    write: bool = True,
    save_partial: bool = True,
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
    return version
