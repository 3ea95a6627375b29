"""A chip operated on a simulated clock: daily runs, drift checks, a scrape every hour.

Shared by `tests/test_alert_rules.py` (30 hours, a reduced check set) and
`benchmarks/bench_week.py` (a week, the full drift check). One simulated clock drives the
chip (`device.time`), the drift check's `now`, the parameters' `updated` stamps, the run
log's `finished` times and the metrics exporter, so every age, timestamp and alert is that of
the simulated days. The scrapes become `promtool test rules` input series (`as_series`), and
`firing` asks promtool which of fluxcal's alerts fire at given times.

The runs are the plain (Prefect-free) forms of the flows: `drift_check_plain`, and for the
daily run either the named nodes through the plain runner (`daily_nodes`) or, by default,
what `daily-calibration` does in mode auto on a calibrated chip: the maintenance walk with
every check, one snapshot written whatever it found (`daily_maintenance_plain`).
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fluxcal import monitoring
from fluxcal.calibrations.graph import DEFAULT_GRAPH, GraphEntry
from fluxcal.calibrations.persist import current_parameters, save_run
from fluxcal.calibrations.runner import in_process, run_graph
from fluxcal.flows import drift as drift_flow
from fluxcal.flows.checks import CHECKS, Check
from fluxcal.flows.daily import settled
from fluxcal.flows.drift import drift_check_plain, walk_lab
from fluxcal.flows.lab import LiveStation, open_flow_lab
from fluxcal.flows.maintain import QubitMaintenance, run_check
from fluxcal.instruments.device import SimulatedDevice, default_device_path
from fluxcal.instruments.station import build_station
from fluxcal.metrics import StoreCollector
from fluxcal.metrics_push import after_flow_run
from fluxcal.snapshots import SnapshotStore

HOUR_S = 3600.0
#: Simulated time zero (a Monday, 06:00 UTC: the daily run's hour).
T0 = dt.datetime(2026, 1, 5, 6, 0, tzinfo=dt.UTC)
PROMTOOL = shutil.which("promtool")
RULES = monitoring.path(monitoring.ALERT_RULES)
Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Hour:
    """What happened in one simulated hour."""

    hour: int
    flow: str  # "daily-calibration", "drift-check" or "" (nothing ran)
    #: node → verdict of every check that was not in spec (out_of_spec, bad_data, unavailable)
    not_in_spec: dict[str, str] = field(default_factory=dict)
    #: node → action of every node the run did not simply keep
    actions: dict[str, str] = field(default_factory=dict)
    device_s: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    #: stored − true qubit frequency after the run (Hz), the first qubit
    frequency_error_hz: float = float("nan")


@dataclass
class Operation:
    """Every hour's scrape and record."""

    scrapes: list[Scrape]
    hours: list[Hour]

    @property
    def device_s(self) -> float:
        return sum(h.device_s for h in self.hours)

    @property
    def cpu_s(self) -> float:
        return sum(h.cpu_s for h in self.hours)


@contextmanager
def simulated_clock(clock: Callable[[], dt.datetime]) -> Iterator[None]:
    """Parameters' `updated` stamps and the drift check's run-log entries at `clock()`."""

    def logged(*args, **kwargs):
        kwargs.setdefault("finished", clock())
        return after_flow_run(*args, **kwargs)

    stamp = lambda: clock().isoformat(timespec="seconds")  # noqa: E731
    with (
        mock.patch("fluxcal.calibrations.runner.now_iso", stamp),
        mock.patch("fluxcal.calibrations.walker.now_iso", stamp),
        mock.patch.object(drift_flow, "after_flow_run", logged),
    ):
        yield


def file_flux_jump() -> float:
    """Size (Φ0) of the built-in device file's first flux jump (its thermal event)."""
    config = yaml.safe_load(default_device_path().read_text())
    return next(
        float(event["size"])
        for spec in config["qubits"].values()
        for event in spec.get("events", [])
        if event["kind"] == "flux_jump"
    )


def daily_maintenance_plain(
    station,
    store: Path,
    now: dt.datetime,
    graph: Mapping[str, GraphEntry],
    checks: Mapping[str, Check],
) -> tuple[dict[str, QubitMaintenance], float]:
    """`daily-calibration` in mode auto on a calibrated chip, without Prefect: the
    maintenance walk with `checks`, one snapshot, the run logged with its decisions.
    Returns the decisions and the device time."""
    lab = open_flow_lab(None, LiveStation(station), store, None, dict(graph))
    maintenance, run = walk_lab(lab, now, checks, run_check, in_process(None, lab.settings))
    version = save_run(lab.store, run, lab.station, "daily-calibration", {"mode": "maintenance"})
    after_flow_run(lab.store.path, "daily-calibration", run.results, version, maintenance, now)
    lab.files.finish(version)
    return maintenance, sum(m.device_s for m in maintenance.values())


def scrape(registry: CollectorRegistry) -> Scrape:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def _record(hour: int, flow: str, maintenance: Mapping[str, QubitMaintenance]) -> Hour:
    record = Hour(hour, flow)
    for m in maintenance.values():
        for node, d in m.decisions.items():
            if d.check is not None and d.check.verdict != "in_spec":
                record.not_in_spec[node] = d.check.verdict
            if d.action != "kept":
                record.actions[node] = d.action
    return record


def operate(
    device: SimulatedDevice,
    store: Path,
    hours: int,
    graph: Mapping[str, GraphEntry] = DEFAULT_GRAPH,
    checks: Mapping[str, Check] = CHECKS,
    daily_nodes: Sequence[str] | None = None,
    daily_every: int = 24,
    drift_every: int = 1,
    progress: Callable[[Hour], None] | None = None,
    each_hour: Callable[[Hour, Scrape], None] | None = None,
) -> Operation:
    """Hours 0..`hours` on the calibrated chip in `store`: a daily run every `daily_every`
    hours (from hour 0), a drift check every `drift_every` hours in between, then a scrape;
    `progress` is given each hour's record as it ends, `each_hour` its record and scrape.

    The daily run is the named `daily_nodes` through the plain runner, or by default what
    `daily-calibration` does in mode auto: a bring-up (the whole graph) while the store lacks
    results other than those of nodes rejected since (`flows.daily.settled`), else the
    maintenance walk. The clock is `T0` + the hour.
    """
    clock = {"now": T0}
    station = build_station(device)
    registry = CollectorRegistry()
    slos = {n: e.timeout_s for n, e in graph.items()}
    registry.register(StoreCollector(store, slos, lambda: clock["now"]))
    scrapes, records = [], []
    with simulated_clock(lambda: clock["now"]):
        for hour in range(hours + 1):
            now = clock["now"] = T0 + dt.timedelta(hours=hour)
            device.time = hour * HOUR_S
            cpu, wall = time.process_time(), time.perf_counter()
            known = current_parameters(SnapshotStore(store))
            bring_up = daily_nodes is not None or not settled(
                graph, device.qubits, known, store, now
            )
            if hour % daily_every == 0 and bring_up:
                snapshots = SnapshotStore(store)
                run = run_graph(station, device.qubits, dict(graph), daily_nodes, known)
                version = save_run(snapshots, run, station, "daily-calibration")
                after_flow_run(store, "daily-calibration", run.results, version, None, now)
                record = Hour(hour, "daily-calibration")
                record.actions = {
                    n: r.outcome for nodes in run.results.values() for n, r in nodes.items()
                }
                record.device_s = sum(
                    r.device_s for nodes in run.results.values() for r in nodes.values()
                )
            elif hour % daily_every == 0:
                maintenance, device_s = daily_maintenance_plain(station, store, now, graph, checks)
                record = _record(hour, "daily-calibration", maintenance)
                record.device_s = device_s
            elif hour % drift_every == 0:
                report = drift_check_plain(
                    station=LiveStation(station),
                    store=str(store),
                    now=now,
                    graph=dict(graph),
                    checks=dict(checks),
                )
                record = _record(hour, "drift-check", report.qubits)
                record.device_s = sum(m.device_s for m in report.qubits.values())
            else:
                record = Hour(hour, "")
            record.cpu_s = time.process_time() - cpu
            record.wall_s = time.perf_counter() - wall
            qubit = device.qubits[0]
            stored = current_parameters(SnapshotStore(store))[qubit].get("qubit_frequency")
            if stored is not None:
                truth = device.truth()[qubit]["qubit_frequency"]
                record.frequency_error_hz = float(stored.value) - truth
            scrapes.append(scrape(registry))
            records.append(record)
            if progress is not None:
                progress(record)
            if each_hour is not None:
                each_hour(record, scrapes[-1])
    return Operation(scrapes, records)


# ------------------------------------------------------------------------- promtool
def as_series(scrapes: Sequence[Scrape], step: int = 1) -> dict[str, str]:
    """promtool input series, one sample every `step` minutes (a divisor of 60); hour h's
    scrape holds for minutes 60h..60h+59. Timestamps are shifted so the simulation starts at
    promtool's time 0. A week needs `step` ≥ 2: promtool's test engine loads at most 10 000
    samples per query, and the 7-day rules read a week of samples."""
    hold = 60 // step - 1
    keys = sorted({k for s in scrapes for k in s})
    series = {}
    for name, labels in keys:
        shift = T0.timestamp() if name.endswith("_timestamp_seconds") else 0.0
        values = []
        for one in scrapes:
            value = one.get((name, labels))
            values.append(f"_x{hold}" if value is None else f"{value - shift!r}+0x{hold}")
        selector = ",".join(f'{k}="{v}"' for k, v in labels)
        series[f"{name}{{{selector}}}"] = " ".join(values)
    return series


def rules_test(series: Mapping[str, str], step: int = 1, **tests) -> dict:
    """A `promtool test rules` document over fluxcal's rules, samples every `step` minutes."""
    return {
        "rule_files": [str(RULES)],
        "evaluation_interval": f"{step}m",
        "tests": [
            {
                "interval": f"{step}m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                **tests,
            }
        ],
    }


def run_promtool(document: dict, folder: Path | None = None) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp) / "test.yml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return subprocess.run(
            [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=600
        )


_FAILURE = re.compile(r"time: ([0-9dhms]+),\s*exp: nil\s*got: (.*)")
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")  # promtool: 1d6h30m
_SAMPLE = re.compile(r"\{([^}]*)\}")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def firing(
    series: Mapping[str, str], minutes: Sequence[int], step: int = 1
) -> dict[int, list[dict]]:
    """{minute: labels of every alert firing then} for fluxcal's rules over `series`.

    promtool only compares: each minute is a `promql_expr_test` of
    `ALERTS{alertstate="firing"}` expecting nothing, and what it got instead is read back
    from its failure report.
    """
    tests = [
        {"expr": 'ALERTS{alertstate="firing"}', "eval_time": f"{m}m", "exp_samples": []}
        for m in minutes
    ]
    result = run_promtool(rules_test(series, step, promql_expr_test=tests))
    found: dict[int, list[dict]] = {m: [] for m in minutes}
    if result.returncode == 0:
        return found
    for when, got in _FAILURE.findall(result.stdout + result.stderr):  # promtool 2.x: stderr
        days, hours, minutes_, _ = (int(x or 0) for x in _DURATION.fullmatch(when).groups())
        minute = 60 * (24 * days + hours) + minutes_
        for sample in _SAMPLE.findall(got):
            labels = dict(_LABEL.findall(sample))
            for name in ("__name__", "alertstate"):
                labels.pop(name, None)
            found[minute].append(labels)
    if not any(found.values()):
        raise RuntimeError(f"promtool failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    return found
