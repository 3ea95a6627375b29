"""`drift-check`: cheap checks on a schedule, recalibrating only what drifted.

Runs the Optimus-style walk of `flows.maintain` on every qubit, with each check and each
recalibration a Prefect task run (`q0-check-rabi`, `q0-rabi`). A new snapshot is written only
when a recalibration was accepted; either way the run publishes the decision for every node
(state, check verdict with measured and stored values, action and reason) as a table
artifact, and returns it. Scheduled by `fluxcal serve` (default hourly).

The flow and `drift_check_plain` (no Prefect) share one walk (`drift_walk`): they differ in
their executors (task runs or `run_node`), in how checks run, and in how the result is
recorded (with artifacts or without). Groups of qubits that share no line are maintained on
the lab's workers at once, as in the calibration walk.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State
from prefect.task_runners import ThreadPoolTaskRunner

from fluxcal import runlog
from fluxcal.calibrations.graph import GraphEntry
from fluxcal.calibrations.persist import current_parameters, save_run
from fluxcal.calibrations.results import GraphRun, NodeResult, parallel_device_s
from fluxcal.calibrations.runner import in_process
from fluxcal.calibrations.session import QubitSession
from fluxcal.calibrations.walker import Execute, for_each_qubit
from fluxcal.flows.artifacts import artifact_key, decision_rows, publish_table
from fluxcal.flows.checks import CHECKS, Check, CheckContext, CheckResult
from fluxcal.flows.engine import fit_engine, one_run_per_chip
from fluxcal.flows.lab import FlowLab, LiveStation, open_flow_lab
from fluxcal.flows.maintain import (
    CheckRunner,
    QubitMaintenance,
    maintain_qubit,
    parse_time,
    run_check,
)
from fluxcal.flows.tasks import (
    FAULT_RETRIES,
    FAULT_RETRY_DELAY_S,
    TaskExecutor,
    is_instrument_fault,
)
from fluxcal.flows.walk import plot_directory, provenance, record_run, run_name
from fluxcal.metrics_push import after_flow_run

FLOW_NAME = "drift-check"


@dataclass
class DriftReport:
    """Every node's decision per qubit, the recalibrations made and the snapshot written."""

    qubits: dict[str, QubitMaintenance]
    version: int | None
    wall_s: float
    groups: list[list[str]] = field(default_factory=list)  # qubits maintained one by one
    workers: int = 1

    def parallel_device_s(self) -> float:
        """Device time with the groups overlapped on the workers (`calibrations.results`)."""
        groups = self.groups or [[q] for q in self.qubits]
        seconds = [sum(self.qubits[q].device_s for q in group) for group in groups]
        return parallel_device_s(seconds, self.workers)

    def recalibrated(self) -> dict[str, list[str]]:
        return {
            q: [n for n, d in m.decisions.items() if d.action == "recalibrated"]
            for q, m in self.qubits.items()
        }

    def experiments(self) -> dict[str, int]:
        """Check measurements and calibration experiments this run made."""
        return {
            "checks": sum(m.check_measurements for m in self.qubits.values()),
            "calibrations": sum(len(m.calibrations) for m in self.qubits.values()),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "experiments": self.experiments(),
            "decisions": {
                q: {
                    n: {
                        "state": d.state.kind,
                        "check": d.check.verdict if d.check else None,
                        "action": d.action,
                        "reason": d.reason,
                        "diagnosis": d.diagnosis,
                        "device_s": d.device_s,
                    }
                    for n, d in m.decisions.items()
                }
                for q, m in self.qubits.items()
            },
            "device_s": sum(m.device_s for m in self.qubits.values()),
            "parallel_device_s": self.parallel_device_s(),
        }

    def summary(self) -> str:
        stored = f"snapshot v{self.version}" if self.version is not None else "no new snapshot"
        counts = self.experiments()
        lines = [
            f"drift check: {stored}; {counts['checks']} check measurements, "
            f"{counts['calibrations']} calibrations, {self.wall_s:.1f} s; device time "
            + ", ".join(f"{q} {m.device_s:.1f} s" for q, m in self.qubits.items())
            + f"; {self.parallel_device_s():.1f} s in parallel"
        ]
        for qubit, m in self.qubits.items():
            for name, d in m.decisions.items():
                lines.append(f"  {qubit} {name:<24} {d.action:<22} {d.device_s:7.1f} s  {d.reason}")
        return "\n".join(lines)


def walk_lab(
    lab: FlowLab,
    now: dt.datetime,
    checks: Mapping[str, Check],
    check: CheckRunner,
    execute: Execute,
    checks_when_due: bool = False,
) -> tuple[dict[str, QubitMaintenance], GraphRun]:
    """Maintain every qubit from the current snapshot, groups of qubits that share no line
    at once; the run holds the recalibrations. `checks_when_due`: the hourly drift check's
    cadence, slow checks only once due (`maintain_qubit`), their age counted from the run
    log's last in-spec verdict. A node the log shows rejected and never accepted since waits
    before it is tried again (`rejection_stands`); a check may spend a share of what its
    node's last calibration took (`CHECK_SHARE`) on a faint probe."""
    known = current_parameters(lab.store)
    sessions = {q: QubitSession(lab.station, q, dict(known.get(q, {}))) for q in lab.qubits}
    in_spec = runlog.last_in_spec(lab.store.path, now) if checks_when_due else {}
    rejections = runlog.standing_rejections(lab.store.path, now)
    costs = runlog.calibration_costs(lab.store.path, now)

    def calibrate(name: str, session: QubitSession) -> NodeResult:
        return execute(name, lab.graph[name], session)

    def maintain(qubit: str) -> QubitMaintenance:
        verified = {node: when for (q, node), when in in_spec.items() if q == qubit}
        rejected = {node: r for (q, node), r in rejections.items() if q == qubit}
        return maintain_qubit(
            lab.graph,
            checks,
            sessions[qubit],
            now,
            check,
            calibrate,
            verified,
            checks_when_due,
            rejected,
            {node: s for (q, node), s in costs.items() if q == qubit},
        )

    maintenance = for_each_qubit(lab.groups, maintain, lab.workers)
    run = GraphRun(
        {q: m.calibrations for q, m in maintenance.items()},
        {q: sessions[q].known for q in lab.qubits},
        lab.settings.resolved(lab.qubits),
        lab.groups,
        lab.workers,
    )
    return maintenance, run


def changed(maintenance: Mapping[str, QubitMaintenance]) -> bool:
    return any(
        d.action == "recalibrated" for m in maintenance.values() for d in m.decisions.values()
    )


def describe(maintenance: Mapping[str, QubitMaintenance]) -> str:
    """One line for the snapshot: what was recalibrated and why (the verdict that led to it)."""
    parts = [
        f"{q} {n} ({d.check.verdict.replace('_', ' ') if d.check else d.state.kind})"
        for q, m in maintenance.items()
        for n, d in m.decisions.items()
        if d.action != "kept"
    ]
    return "drift-check: " + (", ".join(parts) if parts else "everything in spec")


def publish_decisions(flow_name: str, maintenance: Mapping[str, QubitMaintenance]) -> None:
    """The walk's decision per node as the flow run's table artifact."""
    publish_table(
        decision_rows(maintenance),
        key=artifact_key(flow_name, "decisions"),
        description=describe(maintenance),
    )


def moment(now: str | dt.datetime | None) -> dt.datetime:
    """The time parameters' ages are measured against (default: now, UTC)."""
    if now is None:
        return dt.datetime.now(dt.UTC)
    return now if isinstance(now, dt.datetime) else parse_time(now)


def _state_name(verdict: str) -> str:
    return verdict.replace("_", " ").capitalize()


@task(
    name="check",
    task_run_name="{qubit}-check-{node}",
    retries=FAULT_RETRIES,
    retry_delay_seconds=FAULT_RETRY_DELAY_S,
    retry_condition_fn=is_instrument_fault,
    cache_policy=NO_CACHE,
)
def check_node(qubit: str, node: str, check: Check, ctx: CheckContext) -> State:
    """check_data of one node; the task run's state is named after the verdict."""
    result = run_check(node, check, ctx, reraise_faults=True)
    return Completed(data=result, name=_state_name(result.verdict), message=result.reason)


def run_check_task(name: str, check: Check, ctx: CheckContext) -> CheckResult:
    state = check_node(ctx.session.qubit, name, check, ctx, return_state=True)
    if state.is_completed():
        return state.result()
    error = state.result(raise_on_failure=False)
    return CheckResult(name, "unavailable", f"check task failed: {error}")


def drift_walk(
    lab: FlowLab,
    now: str | dt.datetime | None,
    checks: dict[str, Check] | None,
    check: CheckRunner,
    execute: Execute,
    record: Callable[[dict[str, QubitMaintenance], GraphRun], int | None],
    start: float,
) -> DriftReport:
    """The drift check's walk on the lab, recorded by `record` (which returns the version)."""
    maintenance, run = walk_lab(
        lab, moment(now), CHECKS if checks is None else checks, check, execute, True
    )
    version = record(maintenance, run)
    lab.files.finish(version)
    wall_s = time.perf_counter() - start
    return DriftReport(maintenance, version, wall_s, lab.groups, lab.workers)


@flow(
    name=FLOW_NAME,
    flow_run_name=run_name(FLOW_NAME),
    validate_parameters=False,
    task_runner=ThreadPoolTaskRunner(),  # acquisitions: the instruments live in this process
)
def drift_check(
    device: str | None = None,
    station: str | LiveStation | None = None,
    store: str | None = None,
    qubits: list[str] | None = None,
    now: str | None = None,
    plot_dir: str | None = None,
    graph: dict[str, GraphEntry] | None = None,
    checks: dict[str, Check] | None = None,
    settings: str | dict | None = None,
    workers: int = 1,
    dask_address: str | None = None,
) -> DriftReport:
    """Check every node of every qubit, recalibrate what drifted, snapshot only on change.

    `now` (ISO 8601) is the time parameter ages are measured against; default: now.
    `settings` (a settings file or its parsed content) configure the recalibrations;
    `workers` and `dask_address` as for `daily-calibration`.
    """
    start = time.perf_counter()
    lab = open_flow_lab(device, station, store, qubits, graph, settings, plot_dir, False, workers)

    def record(maintenance: dict[str, QubitMaintenance], run: GraphRun) -> int | None:
        notes = provenance(FLOW_NAME, {"decisions": describe(maintenance)})
        version = record_run(
            lab,
            run,
            FLOW_NAME,
            describe(maintenance),
            notes,
            write=changed(maintenance),
            decisions=maintenance,
        )
        publish_decisions(FLOW_NAME, maintenance)
        return version

    with (
        one_run_per_chip(lab.chip),
        plot_directory(lab) as plots,
        fit_engine(dask_address) as fit,
        TaskExecutor(plots, lab.settings, fit) as execute,
    ):
        return drift_walk(lab, now, checks, run_check_task, execute, record, start)


def drift_check_plain(
    device: str | None = None,
    station: str | LiveStation | None = None,
    store: str | None = None,
    qubits: list[str] | None = None,
    now: str | dt.datetime | None = None,
    plot_dir: str | None = None,
    graph: dict[str, GraphEntry] | None = None,
    checks: dict[str, Check] | None = None,
    settings: str | dict | None = None,
    workers: int = 1,
) -> DriftReport:
    """The same walk without Prefect: no server, no task runs, no artifacts."""
    start = time.perf_counter()
    lab = open_flow_lab(device, station, store, qubits, graph, settings, plot_dir, False, workers)

    def record(maintenance: dict[str, QubitMaintenance], run: GraphRun) -> int | None:
        version = None
        if changed(maintenance):
            notes = {"flow": FLOW_NAME, "decisions": describe(maintenance)}
            notes.update(lab.files.provenance())
            version = save_run(lab.store, run, lab.station, describe(maintenance), notes)
        after_flow_run(
            lab.store.path, FLOW_NAME, run.results, version, maintenance
        )  # run log, push
        return version

    execute = in_process(lab.files.plots, lab.settings)
    return drift_walk(lab, now, checks, run_check, execute, record, start)
