"""Plain-Python runner of the calibration graph: seconds per bring-up, no server needed.

`run_node` executes one node on one qubit and never lets an exception escape as anything
but a `failed` outcome with a reason (unless asked to re-raise instrument faults, which is
what the Prefect tasks do so that Prefect retries them). `run_graph` is the walker
(`calibrations.walker`: dependencies, skip rule, per-qubit isolation, groups of qubits that
share no line in parallel) with `run_node` as its executor. Each node is built with the
qubit's calibration settings (`calibrations.settings`; default: every field at its
default), and the run keeps those settings, resolved, for its snapshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import xarray as xr
from qcodes import Station
from qcodes.instrument import InstrumentBase

from fluxcal.calibrations.fitting.reuse import fits_reused
from fluxcal.calibrations.graph import DEFAULT_GRAPH, GraphEntry
from fluxcal.calibrations.node import Analysis, Node, now_iso
from fluxcal.calibrations.results import GraphRun, NodeResult
from fluxcal.calibrations.session import QubitSession
from fluxcal.calibrations.settings import CalibrationSettings
from fluxcal.calibrations.walker import Execute, walk_graph
from fluxcal.snapshots import CalibratedParameter

__all__ = [
    "INSTRUMENT_FAULTS",
    "Fit",
    "GraphRun",
    "NodeResult",
    "device_clock",
    "in_process",
    "run_graph",
    "run_node",
]

#: Exceptions that mean "the instrument hiccuped, try again", not "the physics is wrong".
INSTRUMENT_FAULTS: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError)
#: Acquisitions take turns unless every instrument of the station declares
#: `concurrent_acquisitions` (per-qubit channels, no connection shared between threads, as
#: the simulated lab's): a vendor driver's one connection to its cluster is not made for two
#: threads. Datasets are written one at a time either way (`session.DATASET_LOCK`); fits,
#: gates and plots run in parallel.
ACQUISITION_LOCK = threading.Lock()
#: Fit plots are drawn through pyplot, whose figure registry is one per process.
PLOT_LOCK = threading.Lock()
#: How a node's analysis is run: in this thread by default, elsewhere (a Dask worker) if given.
Fit = Callable[[Node, str, xr.Dataset], Analysis]


def fit_here(node: Node, qubit: str, data: xr.Dataset) -> Analysis:
    return node.analyse(data)


def acquisition_turn(session: QubitSession) -> AbstractContextManager:
    """The lock a node's acquisition holds: none when the station's instruments may be
    driven from several threads at once (the walker keeps qubits of one line apart)."""
    station = session.station
    if station is not None and all(
        getattr(component, "concurrent_acquisitions", False)
        for component in station.components.values()
        if isinstance(component, InstrumentBase)
    ):
        return nullcontext()
    return ACQUISITION_LOCK


def device_clock(session: QubitSession) -> Callable[[], float]:
    """Seconds of device time the qubit has used since this call: the driver's count when
    it keeps one, else wall time (a real instrument is busy while we wait for it)."""
    wall_start = time.perf_counter()
    device_start = session.device_time()

    def elapsed() -> float:
        if device_start is None:
            return time.perf_counter() - wall_start
        return float(session.device_time() - device_start)

    return elapsed


def run_node(
    entry: GraphEntry,
    name: str,
    session: QubitSession,
    plot_dir: Path | None = None,
    reraise_faults: bool = False,
    settings: CalibrationSettings | None = None,
    fit: Fit = fit_here,
) -> NodeResult:
    """acquire → analyse → gate → update for one node on one qubit, built with the qubit's
    settings for it (default: the node class's defaults); `fit` runs the analysis.

    An analysis in this thread reuses the fits the acquisition made of the same data
    (`fitting.reuse`); one run's fits are never seen by another."""
    with fits_reused():
        return _run_node(entry, name, session, plot_dir, reraise_faults, settings, fit)


def _run_node(
    entry: GraphEntry,
    name: str,
    session: QubitSession,
    plot_dir: Path | None,
    reraise_faults: bool,
    settings: CalibrationSettings | None,
    fit: Fit,
) -> NodeResult:
    node = entry.node(**(settings.for_node(session.qubit, name) if settings else {}))
    with acquisition_turn(session):
        start = time.perf_counter()
        device_seconds = device_clock(session)
        try:
            data = node.acquire(session)
        except INSTRUMENT_FAULTS as error:
            if reraise_faults:
                raise
            return NodeResult(
                name,
                session.qubit,
                "failed",
                f"instrument fault: {error}",
                finished=now_iso(),
                device_s=device_seconds(),
            )
        except Exception as error:  # a node must never take the chain down with it
            return NodeResult(
                name,
                session.qubit,
                "failed",
                f"acquisition error: {error}",
                finished=now_iso(),
                device_s=device_seconds(),
            )
        acquired = time.perf_counter()
        device_s = device_seconds()
    try:
        analysis = fit(node, session.qubit, data)
    except Exception as error:
        return NodeResult(
            name,
            session.qubit,
            "rejected",
            f"analysis failed: {error}",
            data=data,
            acquire_s=acquired - start,
            finished=now_iso(),
            device_s=device_s,
        )
    outcome = node.gate(analysis)
    when = now_iso()
    result = NodeResult(
        name,
        session.qubit,
        "accepted" if outcome.accepted else "rejected",
        outcome.reason,
        node.update(analysis, when) if outcome.accepted else {},
        data,
        analysis,
        acquired - start,
        time.perf_counter() - acquired,
        when,
        device_s=device_s,
    )
    if plot_dir is not None:
        with PLOT_LOCK:
            path = Path(plot_dir) / f"{session.qubit}_{name}.png"
            result.plot = node.plot(data, analysis, path)
    return result


def in_process(plot_dir: Path | None, settings: CalibrationSettings | None) -> Execute:
    """The walker's executor without Prefect: `run_node` in the walking thread."""

    def execute(name: str, entry: GraphEntry, session: QubitSession) -> NodeResult:
        return run_node(entry, name, session, plot_dir, settings=settings)

    return execute


def run_graph(
    station: Station,
    qubits: Iterable[str],
    graph: dict[str, GraphEntry] = DEFAULT_GRAPH,
    nodes: Iterable[str] | None = None,
    known: dict[str, dict[str, CalibratedParameter]] | None = None,
    plot_dir: Path | None = None,
    on_result: Callable[[NodeResult], None] | None = None,
    settings: CalibrationSettings | None = None,
    groups: list[list[str]] | None = None,
    workers: int = 1,
) -> GraphRun:
    """Run `nodes` (default: all) of the graph for each qubit, dependencies first.

    `known` seeds each qubit's parameters (e.g. from the current snapshot), so a targeted
    recalibration can start mid-graph. A dependency that is not in `nodes` counts as
    satisfied; one that ran and was not accepted skips this node with a reason. `settings`
    (validated against this graph; default: every field at its default) configure the nodes.
    `groups` of qubits that share a line (`instruments.wiring.station_groups`; default: none
    shared) run one after another, separate groups on up to `workers` threads at once;
    `on_result` is then called from those threads.
    """
    settings = settings or CalibrationSettings(graph=graph)
    execute = in_process(plot_dir, settings)
    return walk_graph(
        station, qubits, graph, nodes, known, execute, settings, groups, workers, on_result
    )
