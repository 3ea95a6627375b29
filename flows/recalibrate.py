"""`recalibrate`: on demand, named nodes (optionally with their dependents) of named qubits.

Starts from the current snapshot, so every input the named nodes need must already be
calibrated there or be produced by an earlier node of the same request; that is checked
before anything is measured. Runs as a Prefect flow (tasks, retries, artifacts) or, with
`prefect=False` on the command line, through the plain runner; both store one snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from fluxcal.calibrate import CalibrationOutcome, save_complete_run
from fluxcal.calibrations.graph import GraphEntry, dependents, order
from fluxcal.calibrations.persist import current_parameters
from fluxcal.calibrations.runner import run_graph
from fluxcal.flows.engine import fit_engine, one_run_per_chip
from fluxcal.flows.lab import FlowLab, LiveStation, open_flow_lab
from fluxcal.flows.walk import calibrate_graph, plot_directory, provenance, record_run, run_name
from fluxcal.snapshots import CalibratedParameter

FLOW_NAME = "recalibrate"


def selection(
    graph: dict[str, GraphEntry], nodes: Iterable[str], with_dependents: bool
) -> list[str]:
    """The nodes to run, dependencies first."""
    names = list(nodes)
    if not names:
        raise ValueError("name at least one calibration node to recalibrate")
    order(graph, names)  # unknown names raise here, before dependents() would ignore them
    return order(graph, dependents(graph, names) if with_dependents else names)


def missing_inputs(
    graph: dict[str, GraphEntry],
    sequence: list[str],
    known: Mapping[str, Mapping[str, CalibratedParameter]],
    qubits: Iterable[str],
) -> list[str]:
    """`qubit: node needs parameter` for every input neither stored nor produced earlier."""
    problems = []
    for qubit in qubits:
        available = set(known.get(qubit, {}))
        for name in sequence:
            node = graph[name].node
            problems += [f"{qubit}: {name} needs {p}" for p in node.requires if p not in available]
            available.update(node.produces)
    return problems


def _prepare(lab: FlowLab, nodes: Iterable[str], with_dependents: bool):
    sequence = selection(lab.graph, nodes, with_dependents)
    known = current_parameters(lab.store)
    problems = missing_inputs(lab.graph, sequence, known, lab.qubits)
    if problems:
        raise ValueError("not calibrated yet: " + "; ".join(problems))
    return sequence, known


def _reason(sequence: list[str], qubits: list[str]) -> str:
    return f"recalibrate {', '.join(sequence)} on {', '.join(qubits)}"


@flow(
    name=FLOW_NAME,
    flow_run_name=run_name(FLOW_NAME),
    validate_parameters=False,
    task_runner=ThreadPoolTaskRunner(),  # acquisitions: the instruments live in this process
)
def recalibrate(
    nodes: list[str],
    qubits: list[str] | None = None,
    with_dependents: bool = False,
    device: str | None = None,
    station: str | LiveStation | None = None,
    store: str | None = None,
    plot_dir: str | None = None,
    graph: dict[str, GraphEntry] | None = None,
    settings: str | dict | None = None,
    save_partial: bool = True,
    workers: int = 1,
    dask_address: str | None = None,
) -> CalibrationOutcome:
    """Recalibrate `nodes` (and their dependents if asked) on `qubits`; store a snapshot.

    `settings` (a settings file or its parsed content) configure the nodes. With
    `save_partial` false, a run in which nodes failed to run is not saved (version None).
    `workers` and `dask_address` as for `daily-calibration`.
    """
    start = time.perf_counter()
    lab = open_flow_lab(device, station, store, qubits, graph, settings, plot_dir, workers=workers)
    sequence, known = _prepare(lab, nodes, with_dependents)
    with (
        one_run_per_chip(lab.chip),
        plot_directory(lab) as plots,
        fit_engine(dask_address) as fit,
    ):
        run = calibrate_graph(lab, sequence, known, plots, fit)
        reason = _reason(sequence, lab.qubits)
        notes = provenance(FLOW_NAME)
        version = record_run(lab, run, FLOW_NAME, reason, notes, save_partial=save_partial)
    plots_kept = lab.files.finish(version)
    return CalibrationOutcome.stored(lab.store, version, run, lab.device, start, plots_kept)


def recalibrate_plain(
    nodes: list[str],
    qubits: list[str] | None = None,
    with_dependents: bool = False,
    device: str | None = None,
    station: str | LiveStation | None = None,
    store: str | None = None,
    plot_dir: str | None = None,
    graph: dict[str, GraphEntry] | None = None,
    settings: str | dict | None = None,
    save_partial: bool = True,
    workers: int = 1,
) -> CalibrationOutcome:
    """The same recalibration through the plain runner: no Prefect server, no artifacts."""
    start = time.perf_counter()
    lab = open_flow_lab(device, station, store, qubits, graph, settings, plot_dir, workers=workers)
    sequence, known = _prepare(lab, nodes, with_dependents)
    run = run_graph(
        lab.station,
        lab.qubits,
        lab.graph,
        sequence,
        known,
        lab.files.plots,
        settings=lab.settings,
        groups=lab.groups,
        workers=lab.workers,
    )
    reason = _reason(sequence, lab.qubits)
    notes = lab.files.provenance()
    version = save_complete_run(lab.store, run, lab.station, reason, notes, save_partial)
    plots_kept = lab.files.finish(version)
    return CalibrationOutcome.stored(lab.store, version, run, lab.device, start, plots_kept)
