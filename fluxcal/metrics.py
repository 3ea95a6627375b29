"""Prometheus metrics of a snapshot store, read at scrape time.

`StoreCollector` is a prometheus_client custom collector: every scrape reads the current
snapshot (parameters, their stderr and age) through the store's public API and the run log
(`fluxcal.runlog`: outcomes, success rate, drift-check decisions, device time), so the
exporter holds no state of its own and never disagrees with the store. Metric names follow
the Prometheus conventions: base SI units, `_seconds`, `_timestamp_seconds`, `_total` for
counters. A calibrated parameter is one series of `fluxcal_parameter_value` with `parameter`
and `unit` labels (one metric, so a dashboard or rule selects parameters by label instead of
knowing every metric name).

Ages are exported twice on purpose: `*_age_seconds` for people reading a scrape, and
`*_timestamp_seconds`, which alert rules use (`time() - ...`) because they stay correct when
the same metrics are pushed to a Pushgateway and read long after the push.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fluxcal.runlog import RunRecord, read
from fluxcal.snapshots import CalibratedParameter, SnapshotStore, StoreError, StoreWarning

#: Window of `fluxcal_calibration_success_ratio` (the alert rules assume one week).
SUCCESS_WINDOW = dt.timedelta(days=7)
OUTCOMES = ("accepted", "rejected", "failed", "skipped")
VERDICTS = ("in_spec", "out_of_spec", "bad_data", "unavailable", "none")
#: Decisions after which a node is good to build on (`flows.maintain.Decision.resolved`).
RESOLVED = ("kept", "recalibrated")
Clock = Callable[[], dt.datetime]
Parameters = Mapping[str, Mapping[str, CalibratedParameter]]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def timestamp(iso: str) -> float:
    """Unix seconds of an ISO 8601 time (a time without zone is UTC, as the store writes)."""
    when = dt.datetime.fromisoformat(iso)
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


class StoreCollector(Collector):
    """Metrics of the store at `path`; `slo_s` maps a node to how long its calibration is
    valid (the graph's `timeout_s`), `clock` is the time ages are measured against."""

    def __init__(self, path: Path, slo_s: Mapping[str, float], clock: Clock = utc_now):
        self.path = Path(path)
        self.slo_s = dict(slo_s)
        self.clock = clock
        self._parameters: Parameters = {}

    def collect(self) -> Iterator[Metric]:
        now = self.clock().timestamp()
        up = GaugeMetricFamily("fluxcal_store_up", "1 if the snapshot store could be read.")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", StoreWarning)  # a fallback still has metrics
                families = list(self._store_metrics(now))
        except (StoreError, OSError) as error:
            up.add_metric([], 0.0)
            yield up
            yield _info("fluxcal_store_error", "Why the store could not be read.", str(error))
            return
        up.add_metric([], 1.0)
        yield up
        yield from families
        yield from self._slo_metrics()
        yield from run_metrics(read(self.path), now, node_calibrated(self._parameters))

    def _store_metrics(self, now: float) -> Iterator[Metric]:
        store = SnapshotStore(self.path, create=False)
        versions = store.versions()
        count = GaugeMetricFamily("fluxcal_snapshot_versions", "Readable snapshot versions.")
        count.add_metric([], float(len(versions)))
        yield count
        base = store.baseline()
        self._parameters = base.parameters
        if base.version is None:
            return
        info = next(v for v in versions if v.version == base.version)
        current = GaugeMetricFamily(
            "fluxcal_snapshot_current_version", "Version calibrations start from (CURRENT)."
        )
        current.add_metric([], float(base.version))
        yield current
        created = GaugeMetricFamily(
            "fluxcal_snapshot_current_created_timestamp_seconds",
            "When the current version was written.",
        )
        created.add_metric([], timestamp(info.created))
        yield created
        yield from parameter_metrics(base.parameters, now)

    def _slo_metrics(self) -> Iterator[Metric]:
        slo = GaugeMetricFamily(
            "fluxcal_node_slo_seconds",
            "How long a node's calibration stays valid (the graph's timeout).",
            labels=["node"],
        )
        for node, seconds in sorted(self.slo_s.items()):
            slo.add_metric([node], seconds)
        yield slo


def node_calibrated(parameters: Parameters) -> dict[tuple[str, str], float]:
    """(qubit, node) -> when the node's oldest output in `parameters` was calibrated: a node
    is as fresh as its stalest output, as the drift check's staleness rule has it."""
    oldest: dict[tuple[str, str], float] = {}
    for qubit, params in parameters.items():
        for p in params.values():
            when = timestamp(p.updated)
            oldest[qubit, p.experiment] = min(when, oldest.get((qubit, p.experiment), when))
    return oldest


def parameter_metrics(parameters: Parameters, now: float) -> Iterator[Metric]:
    """Value, stderr and age of every calibrated parameter, and each node's calibration age
    (its oldest output: what the drift check calls stale)."""
    value = GaugeMetricFamily(
        "fluxcal_parameter_value",
        "Calibrated value in base SI units (see the unit label).",
        labels=["qubit", "parameter", "unit"],
    )
    stderr = GaugeMetricFamily(
        "fluxcal_parameter_stderr",
        "Standard error of the calibrated value (absent when unknown).",
        labels=["qubit", "parameter", "unit"],
    )
    updated = GaugeMetricFamily(
        "fluxcal_parameter_updated_timestamp_seconds",
        "When the parameter was last calibrated.",
        labels=["qubit", "parameter", "node"],
    )
    age = GaugeMetricFamily(
        "fluxcal_parameter_age_seconds",
        "Time since the parameter was last calibrated.",
        labels=["qubit", "parameter"],
    )
    for qubit, params in sorted(parameters.items()):
        for name, p in sorted(params.items()):
            when = timestamp(p.updated)
            value.add_metric([qubit, name, p.unit], p.value)
            if math.isfinite(p.stderr):
                stderr.add_metric([qubit, name, p.unit], p.stderr)
            updated.add_metric([qubit, name, p.experiment], when)
            age.add_metric([qubit, name], now - when)
    yield from (value, stderr, updated, age)
    node_ts = GaugeMetricFamily(
        "fluxcal_node_calibrated_timestamp_seconds",
        "When the node's oldest output in the current snapshot was calibrated.",
        labels=["qubit", "node"],
    )
    node_age = GaugeMetricFamily(
        "fluxcal_node_age_seconds",
        "Age of the node's oldest output in the current snapshot.",
        labels=["qubit", "node"],
    )
    for (qubit, node), when in sorted(node_calibrated(parameters).items()):
        node_ts.add_metric([qubit, node], when)
        node_age.add_metric([qubit, node], now - when)
    yield from (node_ts, node_age)


def run_metrics(
    records: list[RunRecord], now: float, calibrated: Mapping[tuple[str, str], float]
) -> Iterator[Metric]:
    """Outcomes, success rate, drift-check decisions and device time from the run log;
    `calibrated` (the store's node ages) seeds when each node was last vouched for."""
    runs = CounterMetricFamily("fluxcal_runs", "Calibration and drift-check runs.", labels=["flow"])
    last_run = GaugeMetricFamily(
        "fluxcal_run_last_timestamp_seconds", "When a run of the flow last ended.", labels=["flow"]
    )
    calibrations = CounterMetricFamily(
        "fluxcal_calibrations",
        "Node calibrations by outcome.",
        labels=["qubit", "node", "outcome"],
    )
    device = CounterMetricFamily(
        "fluxcal_device_seconds",
        "Device time used by calibrations and drift checks (checks included).",
        labels=["qubit", "node", "flow"],
    )
    decisions = CounterMetricFamily(
        "fluxcal_drift_check_decisions",
        "Drift-check decisions by action.",
        labels=["qubit", "node", "action"],
    )
    flows: Counter[str] = Counter()
    last: dict[str, float] = {}
    outcomes: Counter[tuple[str, str, str]] = Counter()
    seconds: defaultdict[tuple[str, str, str], float] = defaultdict(float)
    actions: Counter[tuple[str, str, str]] = Counter()
    last_outcome: dict[tuple[str, str], str] = {}
    last_verdict: dict[tuple[str, str], str] = {}
    unresolved: dict[tuple[str, str], int] = {}
    bad_data: dict[tuple[str, str], int] = {}
    shifts: dict[tuple[str, str], float | None] = {}
    verified = dict(calibrated)
    window: dict[str, Counter[str]] = defaultdict(Counter)
    start = now - SUCCESS_WINDOW.total_seconds()
    for record in records:
        when = record.finished_at.timestamp()
        flows[record.flow] += 1
        last[record.flow] = max(when, last.get(record.flow, when))
        for qubit, nodes in record.nodes.items():
            for node, run in nodes.items():
                outcomes[qubit, node, run.outcome] += 1
                last_outcome[qubit, node] = run.outcome
                if start <= when <= now and run.outcome != "skipped":
                    window[qubit][run.outcome] += 1
                if run.outcome == "accepted":
                    verified[qubit, node] = max(when, verified.get((qubit, node), when))
                if not record.decisions:  # a drift check counts its device time per decision
                    seconds[qubit, node, record.flow] += run.device_s
        for qubit, nodes in record.decisions.items():
            for node, d in nodes.items():
                actions[qubit, node, d.action] += 1
                seconds[qubit, node, record.flow] += d.device_s
                last_verdict[qubit, node] = d.verdict or "none"
                key = qubit, node
                unresolved[key] = 0 if d.action in RESOLVED else unresolved.get(key, 0) + 1
                bad_data[key] = bad_data.get(key, 0) + 1 if d.verdict == "bad_data" else 0
                shifts[key] = d.shift
                if d.verdict == "in_spec":
                    verified[qubit, node] = max(when, verified.get((qubit, node), when))
    for flow, n in sorted(flows.items()):
        runs.add_metric([flow], n)
        last_run.add_metric([flow], last[flow])
    for key, n in sorted(outcomes.items()):
        calibrations.add_metric(list(key), n)
    for key, s in sorted(seconds.items()):
        device.add_metric(list(key), s)
    for key, n in sorted(actions.items()):
        decisions.add_metric(list(key), n)
    yield from (runs, last_run, calibrations, device, decisions)
    yield _state_set(
        "fluxcal_node_last_outcome",
        "Outcome of the node's last calibration (1 for the outcome it had).",
        last_outcome,
        "outcome",
        OUTCOMES,
    )
    yield _state_set(
        "fluxcal_drift_check_last_verdict",
        "Verdict of the node's check in the last drift check (none: no cheap check).",
        last_verdict,
        "verdict",
        VERDICTS,
    )
    yield _per_node(
        "fluxcal_node_unresolved_runs",
        "Consecutive drift checks and maintenance runs that left the node unresolved: its "
        "recalibration rejected or failed, or skipped (behind an unresolved dependency, or "
        "waiting after its own rejection).",
        unresolved,
    )
    yield _per_node(
        "fluxcal_drift_check_bad_data_runs",
        "Consecutive checks of the node whose data were bad (0: the last one was usable).",
        bad_data,
    )
    yield _per_node(
        "fluxcal_node_shift_tolerances",
        "How far the node's checked parameters had moved at its last check, in units of the "
        "check's tolerance (the accepted correction when it was recalibrated); absent when "
        "the last check gave no number.",
        {k: v for k, v in shifts.items() if v is not None},
    )
    checked = GaugeMetricFamily(
        "fluxcal_node_verified_timestamp_seconds",
        "When the node was last calibrated or found in spec by a drift check.",
        labels=["qubit", "node"],
    )
    for (qubit, node), when in sorted(verified.items()):
        checked.add_metric([qubit, node], when)
    yield checked
    ratio = GaugeMetricFamily(
        "fluxcal_calibration_success_ratio",
        "Accepted / (accepted + rejected + failed) node calibrations over the last 7 days.",
        labels=["qubit"],
    )
    for qubit, counts in sorted(window.items()):
        total = sum(counts.values())
        if total:
            ratio.add_metric([qubit], counts["accepted"] / total)
    yield ratio


def _state_set(
    name: str, doc: str, state: Mapping[tuple[str, str], str], label: str, states: tuple[str, ...]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["qubit", "node", label])
    for (qubit, node), current in sorted(state.items()):
        for s in states:
            family.add_metric([qubit, node, s], 1.0 if s == current else 0.0)
    return family


def _per_node(name: str, doc: str, values: Mapping[tuple[str, str], float]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=["qubit", "node"])
    for (qubit, node), value in sorted(values.items()):
        family.add_metric([qubit, node], float(value))
    return family


def _info(name: str, doc: str, message: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["message"])
    family.add_metric([" ".join(message.split())[:200]], 1.0)
    return family


def graph_slos() -> dict[str, float]:
    """Each node's validity from the calibration graph (imports every experiment, ~1 s)."""
    from fluxcal.calibrations.graph import DEFAULT_GRAPH

    return {name: entry.timeout_s for name, entry in DEFAULT_GRAPH.items()}
