"""Plain-Python runner of the calibration graph: seconds per bring-up, no server needed.

`run_node` executes one node on one qubit and never lets an exception escape as anything
but a `failed` outcome with a reason (unless asked to re-raise instrument faults, which is
what the Prefect tasks do so that Prefect retries them). `run_graph` walks the graph per
qubit: a rejected or failed node skips its dependents on that qubit only, independent nodes
still run, and accepted parameters flow to later nodes. Each node is built with the qubit's
calibration settings (`calibrations.settings`; default: every field at its default), and
the run keeps those settings, resolved, for its snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import xarray as xr
from qcodes import Station

from calibrations.graph import DEFAULT_GRAPH, GraphEntry, order
from calibrations.node import Analysis, now_iso
from calibrations.session import QubitSession
from calibrations.settings import CalibrationSettings, Resolved
from snapshots import CalibratedParameter, ExperimentRecord

#: Exceptions that mean "the instrument hiccuped, try again", not "the physics is wrong".
INSTRUMENT_FAULTS: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError)


@dataclass
class NodeResult:
    node: str
    qubit: str
    outcome: str  # accepted | rejected | failed | skipped
    reason: str
    parameters: dict[str, CalibratedParameter] = field(default_factory=dict)
    data: xr.Dataset | None = None
    analysis: Analysis | None = None
    acquire_s: float = 0.0
    analyse_s: float = 0.0
    finished: str = ""
    plot: Path | None = None
    #: what the node cost the fridge: the driver's device-time count over the acquisition,
    #: else the acquisition's wall time (a real instrument is busy while we wait for it)
    device_s: float = 0.0

    def record(self) -> ExperimentRecord:
        """The form the snapshot store keeps."""
        fit = dict(self.analysis.values) if self.analysis else {}
        report = self.analysis.report if self.analysis else ""
        return ExperimentRecord(
            self.data, fit, self.outcome, self.reason, report, self.finished, self.device_s
        )


@dataclass
class GraphRun:
    results: dict[str, dict[str, NodeResult]]  # qubit -> node -> result
    parameters: dict[str, dict[str, CalibratedParameter]]  # qubit -> name -> latest
    settings: Resolved = field(default_factory=dict)  # qubit -> node -> field -> value used

    def outcomes(self) -> dict[str, dict[str, str]]:
        return {q: {n: r.outcome for n, r in nodes.items()} for q, nodes in self.results.items()}


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
) -> NodeResult:
    """acquire → analyse → gate → update for one node on one qubit, built with the qubit's
    settings for it (default: the node class's defaults)."""
    node = entry.node(**(settings.for_node(session.qubit, name) if settings else {}))
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
        analysis = node.analyse(data)
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
        result.plot = node.plot(data, analysis, Path(plot_dir) / f"{session.qubit}_{name}.png")
    return result


def run_graph(
    station: Station,
    qubits: Iterable[str],
    graph: dict[str, GraphEntry] = DEFAULT_GRAPH,
    nodes: Iterable[str] | None = None,
    known: dict[str, dict[str, CalibratedParameter]] | None = None,
    plot_dir: Path | None = None,
    on_result: Callable[[NodeResult], None] | None = None,
    settings: CalibrationSettings | None = None,
) -> GraphRun:
    """Run `nodes` (default: all) of the graph for each qubit, dependencies first.

    `known` seeds each qubit's parameters (e.g. from the current snapshot), so a targeted
    recalibration can start mid-graph. A dependency that is not in `nodes` counts as
    satisfied; one that ran and was not accepted skips this node with a reason. `settings`
    (validated against this graph; default: every field at its default) configure the nodes.
    """
    qubits = list(qubits)
    settings = settings or CalibrationSettings(graph=graph)
    sequence = order(graph, nodes)
    results: dict[str, dict[str, NodeResult]] = {}
    parameters: dict[str, dict[str, CalibratedParameter]] = {}
    for qubit in qubits:
        session = QubitSession(station, qubit, dict((known or {}).get(qubit, {})))
        results[qubit] = {}
        for name in sequence:
            entry = graph[name]
            blocked = [
                d
                for d in entry.depends_on
                if d in results[qubit] and results[qubit][d].outcome != "accepted"
            ]
            if blocked:
                result = NodeResult(
                    name,
                    qubit,
                    "skipped",
                    f"dependency not accepted: {', '.join(blocked)}",
                    finished=now_iso(),
                )
            else:
                result = run_node(entry, name, session, plot_dir, settings=settings)
                session.known.update(result.parameters)
            results[qubit][name] = result
            if on_result is not None:
                on_result(result)
        parameters[qubit] = session.known
    return GraphRun(results, parameters, settings.resolved(qubits))
