"""The flows' end-of-run hook: log the run next to the snapshots, push metrics if configured.

Called once at the end of every calibration, recalibration and drift-check run. It appends
the run to the run log (`fluxcal.runlog`), which `fluxcal metrics` reads at scrape time,
and, when `FLUXCAL_PUSHGATEWAY_URL` is set, pushes the store's metrics to that Pushgateway
(job `fluxcal`, grouped by store directory), for sites where Prometheus cannot scrape the
lab computer. Neither may fail a run whose snapshot is already written: a problem is logged
as a warning and the run's result stands.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fluxcal.runlog import CheckDecision, NodeRun, RunRecord, append

PUSHGATEWAY_ENV = "FLUXCAL_PUSHGATEWAY_URL"
PUSH_JOB = "fluxcal"
PUSH_TIMEOUT_S = 10.0

log = logging.getLogger(__name__)


def run_record(
    flow: str,
    results: Mapping[str, Mapping[str, Any]],
    version: int | None,
    decisions: Mapping[str, Any] | None = None,
    finished: dt.datetime | None = None,
) -> RunRecord:
    """A run as the log keeps it, from the run's node results (`calibrations.runner.
    NodeResult`) and, for a drift check, its per-qubit maintenance (`flows.maintain`)."""
    when = finished or dt.datetime.now(dt.UTC)
    return RunRecord(
        flow=flow,
        finished=when.isoformat(timespec="seconds"),
        version=version,
        nodes={
            q: {n: NodeRun(r.outcome, r.device_s) for n, r in nodes.items()}
            for q, nodes in results.items()
        },
        decisions={
            q: {
                n: CheckDecision(
                    d.check.verdict if d.check else None,
                    d.action,
                    d.device_s,
                    shift(d, getattr(m, "calibrations", {}).get(n)),
                )
                for n, d in m.decisions.items()
            }
            for q, m in (decisions or {}).items()
        },
    )


def shift(decision: Any, calibration: Any = None) -> float | None:
    """How far a node's checked parameters had moved, in units of its check's tolerance
    (the largest over its parameters): for a node recalibrated and accepted, the correction
    (new value − stored value) of every checked parameter the recalibration produced; else
    what the check measured, unless its data were bad. None without a usable number.

    Routine drift caught by a check on schedule moves a node by about one tolerance (it is
    out of spec beyond one tolerance and in spec below); a step of many tolerances between
    two checks is a jump, not drift."""
    check = getattr(decision, "check", None)
    if check is None:
        return None
    produced = getattr(calibration, "parameters", {}) if decision.action == "recalibrated" else {}
    sizes = []
    stored_values = getattr(check, "stored", {})
    measured = getattr(check, "measured", {})
    for name, tolerance in getattr(check, "tolerance", {}).items():
        stored = stored_values.get(name)
        if stored is None or not tolerance or not math.isfinite(tolerance):
            continue
        if name in produced:
            now = produced[name].value
        elif name in measured and check.verdict != "bad_data":
            now = measured[name][0]
        else:
            continue
        size = abs(float(now) - float(stored)) / abs(tolerance)
        if math.isfinite(size):
            sizes.append(size)
    return max(sizes, default=None)


def after_flow_run(
    store: Path,
    flow: str,
    results: Mapping[str, Mapping[str, Any]],
    version: int | None,
    decisions: Mapping[str, Any] | None = None,
    finished: dt.datetime | None = None,
) -> None:
    """Log the run in `store` and push the store's metrics when a Pushgateway is set."""
    try:
        append(Path(store), run_record(flow, results, version, decisions, finished))
    except OSError as error:
        log.warning("fluxcal: run not logged in %s: %s", store, error)
    url = os.environ.get(PUSHGATEWAY_ENV)
    if url:
        push_metrics(Path(store), url)


def push_metrics(store: Path, url: str) -> None:
    """Push every metric of `store` to the Pushgateway at `url`, replacing the last push."""
    from prometheus_client import CollectorRegistry, push_to_gateway

    from fluxcal.metrics import StoreCollector, graph_slos

    registry = CollectorRegistry()
    registry.register(StoreCollector(store, graph_slos()))
    try:
        push_to_gateway(
            url,
            job=PUSH_JOB,
            registry=registry,
            grouping_key={"store": str(Path(store).resolve())},
            timeout=PUSH_TIMEOUT_S,
        )
    except OSError as error:
        log.warning("fluxcal: metrics not pushed to %s: %s", url, error)
