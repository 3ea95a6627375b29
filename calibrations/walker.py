"""The one walk of the calibration graph, for the plain runner and the Prefect flows alike.

Rules: dependencies first; a node whose dependency ran and was not accepted is skipped on
that qubit only (a dependency outside the requested nodes counts as satisfied); accepted
parameters flow to later nodes; each qubit starts from what it is given (the current
snapshot). What runs a node is the caller's executor: `run_node` in-process, a Prefect task
in the flows.

Qubits are walked in groups (`instruments.wiring`): the qubits of one group share a hardware
line and go one after another, groups share nothing and go concurrently on up to `workers`
threads. Threads, because acquisition waits on hardware (the simulator computes, but it and
QCoDeS are safe across threads: one SQLite connection per dataset, opened by the thread
that writes it). Each thread runs in a copy of the caller's context, so a Prefect flow run's
context reaches the tasks submitted from it. A failure stays on its qubit: executors turn
node errors into `failed` results, and an exception that escapes one qubit's walk is raised
only after every other qubit has finished.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from qcodes import Station

from fluxcal.calibrations.graph import GraphEntry, order
from fluxcal.calibrations.node import now_iso
from fluxcal.calibrations.results import GraphRun, NodeResult, Span
from fluxcal.calibrations.session import QubitSession
from fluxcal.calibrations.settings import CalibrationSettings
from fluxcal.snapshots import CalibratedParameter

#: Runs one node on one qubit and never raises for a node's own failure.
Execute = Callable[[str, GraphEntry, QubitSession], NodeResult]
Known = Mapping[str, Mapping[str, CalibratedParameter]]
T = TypeVar("T")


def blocked_by(entry: GraphEntry, done: Mapping[str, NodeResult]) -> list[str]:
    """Dependencies of `entry` that ran on this qubit and were not accepted."""
    return [d for d in entry.depends_on if d in done and done[d].outcome != "accepted"]


class Timeline:
    """Start and end of every node run, appended from any thread."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()

    def add(self, span: Span) -> None:
        with self._lock:
            self.spans.append(span)


def walk_qubit(
    graph: Mapping[str, GraphEntry],
    sequence: Iterable[str],
    session: QubitSession,
    execute: Execute,
    timeline: Timeline,
    on_result: Callable[[NodeResult], None] | None = None,
) -> dict[str, NodeResult]:
    """Run `sequence` on one qubit; `session.known` ends holding the accepted parameters."""
    done: dict[str, NodeResult] = {}
    for name in sequence:
        entry = graph[name]
        blocked = blocked_by(entry, done)
        if blocked:
            reason = f"dependency not accepted: {', '.join(blocked)}"
            result = NodeResult(name, session.qubit, "skipped", reason, finished=now_iso())
        else:
            start = time.perf_counter()
            result = execute(name, entry, session)
            timeline.add(Span(session.qubit, name, start, time.perf_counter()))
            session.known.update(result.parameters)
        done[name] = result
        if on_result is not None:
            on_result(result)
    return done


def for_each_qubit(
    groups: list[list[str]], job: Callable[[str], T], workers: int = 1
) -> dict[str, T]:
    """`job(qubit)` for every qubit of `groups`: a group's qubits in order, groups on up to
    `workers` threads at once; results in group order, whatever finished first. An
    exception from one qubit's job is raised once every other qubit's job has run."""
    results: dict[str, T] = {}
    errors: dict[str, Exception] = {}

    def run_group(group: list[str]) -> None:
        for qubit in group:
            try:
                results[qubit] = job(qubit)
            except Exception as error:  # raised below, after the other qubits
                errors[qubit] = error

    if workers <= 1 or len(groups) <= 1:
        for group in groups:
            run_group(group)
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fluxcal-group") as pool:
            for group in groups:
                pool.submit(contextvars.copy_context().run, run_group, group)
    for group in groups:
        for qubit in group:
            if qubit in errors:
                raise errors[qubit]
    return {q: results[q] for group in groups for q in group}


def cover(groups: list[list[str]] | None, qubits: list[str]) -> list[list[str]]:
    """`groups` restricted to `qubits`, each other qubit in a group of its own."""
    wanted = set(qubits)
    kept = [[q for q in group if q in wanted] for group in groups or []]
    grouped = {q for group in kept for q in group}
    return [g for g in kept if g] + [[q] for q in qubits if q not in grouped]


def walk_graph(
    station: Station,
    qubits: Iterable[str],
    graph: Mapping[str, GraphEntry],
    nodes: Iterable[str] | None,
    known: Known | None,
    execute: Execute,
    settings: CalibrationSettings,
    groups: list[list[str]] | None = None,
    workers: int = 1,
    on_result: Callable[[NodeResult], None] | None = None,
) -> GraphRun:
    """Run `nodes` (default: all) of `graph` on every qubit through `execute`.

    `groups` (default: one group per qubit) say which qubits must not run at once;
    `on_result` is called with every result, from the thread that made it.
    """
    qubits = list(qubits)
    groups = cover(groups, qubits)
    sequence = order(dict(graph), nodes)
    timeline = Timeline()
    sessions = {q: QubitSession(station, q, dict((known or {}).get(q, {}))) for q in qubits}

    def job(qubit: str) -> dict[str, NodeResult]:
        return walk_qubit(graph, sequence, sessions[qubit], execute, timeline, on_result)

    results = for_each_qubit(groups, job, workers)
    results = {q: results[q] for q in qubits}
    parameters = {q: sessions[q].known for q in qubits}
    return GraphRun(results, parameters, settings.resolved(qubits), groups, workers, timeline.spans)
