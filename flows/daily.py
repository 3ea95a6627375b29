"""`daily-calibration`: the whole calibration graph as a Prefect flow, one snapshot per run.

Each node on each qubit is a task run (`q0-rabi`), retried on instrument faults; the run
starts from the current snapshot, so a node that is rejected keeps its previous values, and
it ends by writing one new snapshot whose provenance is the flow run id. Scheduled by
`fluxcal serve` (cron, default 06:00 local time) and used by `fluxcal calibrate --prefect`.
Groups of qubits that share no line run on `workers` threads at once; fits go to a Dask
cluster when one is named; the run holds its chip's concurrency slot (`flows.engine`).
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from fluxcal.calibrate import CalibrationOutcome, CalibrationRequest
from fluxcal.calibrations.graph import GraphEntry
from fluxcal.calibrations.persist import current_parameters
from fluxcal.flows.artifacts import publish_trends
from fluxcal.flows.engine import fit_engine, one_run_per_chip
from fluxcal.flows.lab import LiveStation, check_inputs, default_graph, open_flow_lab
from fluxcal.flows.walk import calibrate_graph, plot_directory, provenance, record_run, run_name
from fluxcal.nodes import check_nodes
from fluxcal.options import KEEP_DATABASES

FLOW_NAME = "daily-calibration"


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
) -> CalibrationOutcome:
    """Calibrate `nodes` (default: the whole graph) on `qubits` (default: all), store a snapshot.

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
        run = calibrate_graph(lab, nodes, current_parameters(lab.store), plots, fit)
        notes = provenance(FLOW_NAME, extra_provenance)
        version = record_run(lab, run, FLOW_NAME, reason, notes, save_partial=save_partial)
    publish_trends(lab.store)  # history plots of T1, T2, f01, fidelity
    plots_kept = lab.files.finish(version, keep_databases)
    return CalibrationOutcome.stored(lab.store, version, run, lab.device, start, plots_kept)


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
    )


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)
