"""`daily-calibration`: the calibration graph as a Prefect flow, one snapshot per run.

Two modes from one graph. *Bring-up* runs every node (or the ones named) from the current
snapshot, so a node that is rejected keeps its previous values: what `fluxcal calibrate
--prefect` asks for. *Maintenance* is the daily run of a calibrated chip: the drift check's
walk (`flows.maintain`) checks each node cheaply and recalibrates only what is out of spec,
past its timeout without a check, or downstream of a recalibration, so the fridge spends
seconds, not a bring-up, on a chip that has not moved (`benchmarks/bench_device_time.py`).
The scheduled run (`fluxcal serve`, cron, default 06:00 local time) is in mode *auto*:
maintenance when the current snapshot holds every node's results for the qubits (but those
of nodes rejected since, and of their dependents: the walk retries them in time), else
bring-up. Each node on each qubit is a task run (`q0-rabi`, `q0-check-rabi`), retried on
instrument faults; either mode ends by writing one new snapshot whose provenance is the flow
run id and the mode (with the maintenance decisions).
Groups of qubits that share no line run on `workers` threads at once; fits go to a Dask
cluster when one is named; the run holds its chip's concurrency slot (`flows.engine`).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from fluxcal import runlog
from fluxcal.calibrate import CalibrationOutcome, CalibrationRequest
from fluxcal.calibrations.graph import GraphEntry, ancestors
from fluxcal.calibrations.persist import current_parameters
from fluxcal.calibrations.results import GraphRun
from fluxcal.flows.artifacts import publish_trends
from fluxcal.flows.checks import CHECKS
from fluxcal.flows.drift import describe, moment, publish_decisions, run_check_task, walk_lab
from fluxcal.flows.engine import fit_engine, one_run_per_chip
from fluxcal.flows.lab import FlowLab, LiveStation, check_inputs, default_graph, open_flow_lab
from fluxcal.flows.tasks import TaskExecutor
from fluxcal.flows.walk import calibrate_graph, plot_directory, provenance, record_run, run_name
from fluxcal.nodes import check_nodes
from fluxcal.options import KEEP_DATABASES

FLOW_NAME = "daily-calibration"
Mode = Literal["auto", "bring-up", "maintenance"]


@flow(
    name=FLOW_NAME,
    flow_run_name=run_name(FLOW_NAME),
    validate_parameters=False,
    task_runner=ThreadPoolTaskRunner(),  # acquisitions: the instruments live in this process
)
def daily_calibration(
    device: str | None = None,
    station: str | LiveStation | None = None,
    store: str | None = None,
    qubits: list[str] | None = None,
    nodes: list[str] | None = None,
    plot_dir: str | None = None,
    reason: str = FLOW_NAME,
    extra_provenance: dict[str, str] | None = None,
    graph: dict[str, GraphEntry] | None = None,
    settings: str | dict | None = None,
    save_partial: bool = True,
    workers: int = 1,
    dask_address: str | None = None,
    keep_databases: int = KEEP_DATABASES,
    mode: Mode = "auto",
    now: str | None = None,
) -> CalibrationOutcome:
    """Calibrate `nodes` (default: the whole graph) on `qubits` (default: all), store a snapshot.

    `mode` (module docstring): "bring-up" runs the nodes, "maintenance" the maintenance
    walk over the whole graph (ages measured against `now`, ISO 8601, default now), "auto"
    chooses maintenance when no `nodes` are named and every node's results are current.

    `device`/`station` name the simulated chip file and the station YAML (defaults: the
    built-in simulated lab); in-process callers may pass a `LiveStation` and their own graph.
    `settings` is a settings file or its parsed content (default: every field at its default).
    With `save_partial` false, a run in which nodes failed to run is not saved (version None);
    `fluxcal calibrate --prefect` passes false unless told `--save-partial`, while scheduled
    and in-process runs keep saving what they calibrated, as they always have.
    `workers` threads walk groups of qubits that share no line; `dask_address` (default:
    FLUXCAL_DASK_ADDRESS) names a Dask scheduler for the fits. The QCoDeS databases of the
    newest `keep_databases` runs are kept in the store's runs folder (`fluxcal.run_files`).
    """
    start = time.perf_counter()
    lab = open_flow_lab(device, station, store, qubits, graph, settings, plot_dir, workers=workers)
    with (
        one_run_per_chip(lab.chip),
        plot_directory(lab) as plots,
        fit_engine(dask_address) as fit,
    ):
        known = current_parameters(lab.store)
        chosen = choose_mode(mode, lab, nodes, known, moment(now))
        notes = provenance(FLOW_NAME, {**(extra_provenance or {}), "mode": chosen})
        if chosen == "maintenance":
            run, decisions = _maintain(lab, plots, fit, now)
            notes["decisions"] = describe(decisions)
        else:
            run, decisions = calibrate_graph(lab, nodes, known, plots, fit), None
        version = record_run(
            lab, run, FLOW_NAME, reason, notes, save_partial=save_partial, decisions=decisions
        )
    publish_trends(lab.store)  # history plots of T1, T2, f01, fidelity
    plots_kept = lab.files.finish(version, keep_databases)
    return CalibrationOutcome.stored(lab.store, version, run, lab.device, start, plots_kept)


def choose_mode(
    mode: Mode,
    lab: FlowLab,
    nodes: list[str] | None,
    known: Mapping[str, Mapping],
    now: dt.datetime,
) -> Literal["bring-up", "maintenance"]:
    """Maintenance when asked, or in "auto" when no nodes are named and the chip has been
    brought up (`settled`)."""
    if mode != "auto":
        return mode
    if nodes:
        return "bring-up"
    settled_now = settled(lab.graph, lab.qubits, known, lab.store.path, now)
    return "maintenance" if settled_now else "bring-up"


def settled(
    graph: Mapping[str, GraphEntry],
    qubits: list[str],
    known: Mapping[str, Mapping],
    store: Path,
    now: dt.datetime,
) -> bool:
    """Whether the chip has been brought up: the current snapshot holds everything every node
    produces for every qubit, except for nodes the run log in `store` shows rejected and not
    accepted since, or behind one. The maintenance walk retries those when it is their time
    (`rejection_stands`); in mode auto a chip whose flux map was rejected at bring-up was
    otherwise brought up again, every node, every morning (sampled chip 5016: 8.6 device-h
    a day)."""
    rejected = runlog.standing_rejections(store, now)
    behind = {name: (name, *ancestors(dict(graph), name)) for name in graph}

    def accounted(qubit: str, name: str) -> bool:
        if set(graph[name].node.produces) <= set(known.get(qubit, {})):
            return True
        return any((qubit, n) in rejected for n in behind[name])

    return all(accounted(qubit, name) for qubit in qubits for name in graph)


def _maintain(lab: FlowLab, plots: Path, fit, now: str | None) -> tuple[GraphRun, dict]:
    """The maintenance walk of every qubit, checks and recalibrations as task runs; its
    decisions are published as the drift check publishes them."""
    with TaskExecutor(plots, lab.settings, fit) as execute:
        decisions, run = walk_lab(lab, moment(now), CHECKS, run_check_task, execute)
    publish_decisions(FLOW_NAME, decisions)
    return run, decisions


def run_daily_calibration_flow(
    request: CalibrationRequest, graph: dict[str, GraphEntry] | None = None
) -> CalibrationOutcome:
    """`fluxcal calibrate --prefect`: the same request as the plain runner, as a flow run.

    Against PREFECT_API_URL when set; otherwise Prefect starts a temporary local server for
    the run (about 15 s more). Missing files and unknown nodes fail before the run starts.
    """
    check_inputs(request.device, request.station)
    check_nodes(request.nodes, graph or default_graph())
    return daily_calibration(
        device=_text(request.device),
        station=_text(request.station),
        store=str(request.store),
        qubits=request.qubits,
        nodes=request.nodes,
        plot_dir=_text(request.plot_dir),
        reason=request.reason,
        extra_provenance=request.provenance,
        graph=graph,
        # As data, not an object: Prefect keeps flow parameters as JSON (and shows them).
        settings=request.settings.as_dict() if request.settings else None,
        save_partial=request.save_partial,
        workers=request.workers,
        dask_address=request.dask_address,
        keep_databases=request.keep_databases,
        mode="bring-up",  # `calibrate` runs the chain it is asked for
    )


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)
