"""The shipped alert rules and dashboard: well-formed, about metrics fluxcal exports, and
silent on a drifting chip until a flux jump, which they report.

`promtool check rules` and `promtool test rules` (Debian's prometheus package, installed by
`.ci/run`) run when promtool is on PATH; without it the rules are parsed as YAML and checked
for structure, and the promtool tests skip with the reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
import shutil
import subprocess

import pytest
import snapshot_samples as samples
import yaml
from prefect_support import device_with_events, seeded_store
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fluxcal import monitoring
from fluxcal.calibrations.graph import DEFAULT_GRAPH
from fluxcal.calibrations.persist import current_parameters, save_run
from fluxcal.calibrations.runner import run_graph
from fluxcal.flows.checks import CHECKS
from fluxcal.flows.drift import drift_check_plain
from fluxcal.flows.lab import LiveStation
from fluxcal.instruments.station import build_station
from fluxcal.metrics import StoreCollector
from fluxcal.metrics_push import after_flow_run
from fluxcal.snapshots import SnapshotStore

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus)"
)
RULES = monitoring.path(monitoring.ALERT_RULES)
ALERTS = [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
METRIC = re.compile(r"\bfluxcal_[a-z0-9_]+")


def exported_names(path) -> set[str]:
    """Sample names a scrape of a store with versions and a run log exposes."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(path, {"t1": 3600.0}))
    text = generate_latest(registry).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("rules") / "store"
    SnapshotStore(path).save(samples.parameters(), reason="daily")
    node = type("R", (), {"outcome": "accepted", "device_s": 1.0})
    check = type("C", (), {"verdict": "in_spec"})
    decision = type("D", (), {"action": "kept", "check": check, "device_s": 1.0})
    maintenance = {"q0": type("M", (), {"decisions": {"t1": decision}})}
    after_flow_run(path, "drift-check", {"q0": {"t1": node}}, 1, maintenance)
    return exported_names(path)


def test_rules_are_well_formed_and_name_only_exported_metrics(exported):
    document = yaml.safe_load(RULES.read_text())
    rules = [r for g in document["groups"] for r in g["rules"]]
    assert len(rules) == len(set(ALERTS)) == 9
    for rule in rules:
        assert rule["expr"].strip() and rule["labels"]["severity"] in ("page", "warning")
        assert rule["annotations"]["summary"], rule["alert"]
        assert set(METRIC.findall(rule["expr"])) <= exported, rule["alert"]
    if PROMTOOL is not None:
        check = subprocess.run(
            [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert "SUCCESS: 9 rules found" in check.stdout


def test_dashboard_has_the_three_rows_and_queries_exported_metrics(exported):
    dashboard = json.loads(monitoring.path(monitoring.DASHBOARD).read_text())
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Executive", "On-call", "Per qubit: $qubit"]
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    for expr in exprs:
        assert set(METRIC.findall(expr)) <= exported, expr
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def promtool_test(tmp_path, series: dict[str, str], checks: list[dict]) -> None:
    """Run `promtool test rules` on one-minute `series` and `checks` (alert_rule_test)."""
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": checks,
            }
        ],
    }
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@needs_promtool
def test_stale_calibration_t1_drop_and_missing_drift_checks_alert(tmp_path):
    # minute m has time() = 60 m; t1 was last vouched for at t = 0 and is valid one hour
    series = {
        'fluxcal_node_verified_timestamp_seconds{qubit="q0",node="t1"}': "0x200",
        'fluxcal_node_slo_seconds{node="t1"}': "3600x200",
        # T1 200 µs for 100 minutes, then 80 µs: below half the median
        'fluxcal_parameter_value{qubit="q0",parameter="T1",unit="s"}': "0.0002x100 0.00008x100",
        'fluxcal_run_last_timestamp_seconds{flow="drift-check"}': "0x200",
    }
    t1_drop = {
        "exp_labels": {"severity": "warning", "qubit": "q0", "parameter": "T1", "unit": "s"},
        "exp_annotations": {
            "summary": "q0 T1 below half its 7-day median",
            "description": "T1 is 80us; a TLS or a thermal excursion?",
        },
    }
    stale = {
        "exp_labels": {"severity": "warning", "qubit": "q0", "node": "t1"},
        "exp_annotations": {
            "summary": "q0 t1 calibration older than its objective",
            "description": "Last calibrated or checked 1h 20m 0s ago.",
        },
    }
    checks = [
        {"eval_time": "50m", "alertname": "FluxcalCalibrationStale", "exp_alerts": []},
        {"eval_time": "80m", "alertname": "FluxcalCalibrationStale", "exp_alerts": [stale]},
        {"eval_time": "99m", "alertname": "FluxcalT1Drop", "exp_alerts": []},
        {"eval_time": "120m", "alertname": "FluxcalT1Drop", "exp_alerts": [t1_drop]},
        {"eval_time": "170m", "alertname": "FluxcalNoDriftCheck", "exp_alerts": []},
    ]
    promtool_test(tmp_path, series, checks)


# ------------------------------------------------------------- a drifting chip, hour by hour
JUMP_HOUR = 30  # the device file's flux jump lands just before the hour-30 drift check
HOURS = JUMP_HOUR  # what follows the event is the drift check's business, not the rules'
DAILY_NODES = ["readout_power", "t1", "readout_optimisation"]
#: The shared qubit-frequency probe: one measurement an hour checks these four nodes.
PROBE_CHECKS = ("resonator_flux", "qubit_spectroscopy", "sweet_spot", "ramsey")
T0 = dt.datetime(2026, 1, 5, 6, 0, tzinfo=dt.UTC)


def simulate(tmp_path, monkeypatch) -> list[dict[tuple, float]]:
    """Daily runs at hours 0 and 24, a drift check every hour; a scrape after each hour.

    The simulated clock drives the chip, the drift check's `now`, the parameters' `updated`
    times and the exporter, so ages are those of the simulated days. The lab's graph here
    declares calibrations valid for a week and checks only through the shared probe, so an
    hour costs one check measurement (~0.5 s of CPU) instead of a full drift check.
    """
    clock = {"now": T0}
    monkeypatch.setattr(
        "fluxcal.calibrations.runner.now_iso", lambda: clock["now"].isoformat(timespec="seconds")
    )
    event = {"time": (JUMP_HOUR - 0.5) * 3600.0, "kind": "flux_jump", "size": 3e-4}
    device = device_with_events("heavy", 1, [event], time=0.0)
    station = build_station(device)
    path = seeded_store(tmp_path / "store", device, tuple(device.truth()["q0"]))
    graph = {n: dataclasses.replace(e, timeout_s=7 * 86400.0) for n, e in DEFAULT_GRAPH.items()}
    checks = {n: CHECKS[n] for n in PROBE_CHECKS}
    registry = CollectorRegistry()
    registry.register(
        StoreCollector(path, {n: e.timeout_s for n, e in graph.items()}, lambda: clock["now"])
    )
    scrapes = []
    for hour in range(HOURS + 1):
        clock["now"] = T0 + dt.timedelta(hours=hour)
        device.time = hour * 3600.0
        if hour % 24 == 0:
            store = SnapshotStore(path)
            run = run_graph(station, ["q0"], nodes=DAILY_NODES, known=current_parameters(store))
            version = save_run(store, run, station, "daily-calibration")
            after_flow_run(path, "daily-calibration", run.results, version, None, clock["now"])
        else:
            drift_check_plain(
                station=LiveStation(station),
                store=str(path),
                now=clock["now"],
                graph=graph,
                checks=checks,
            )
        text = generate_latest(registry).decode()
        scrapes.append(
            {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
            }
        )
    return scrapes


def as_series(scrapes: list[dict[tuple, float]]) -> dict[str, str]:
    """promtool input series, one sample a minute; hour h's scrape holds for minutes
    60h..60h+59. Timestamps are shifted so the simulation starts at promtool's time 0."""
    keys = sorted({k for s in scrapes for k in s})
    series = {}
    for name, labels in keys:
        shift = T0.timestamp() if name.endswith("_timestamp_seconds") else 0.0
        values = []
        for scrape in scrapes:
            value = scrape.get((name, labels))
            values.append("_x59" if value is None else f"{value - shift!r}+0x59")
        selector = ",".join(f'{k}="{v}"' for k, v in labels)
        series[f"{name}{{{selector}}}"] = " ".join(values)
    return series


@needs_promtool
def test_a_drifting_chip_raises_no_alert_until_a_flux_jump_reports_it(tmp_path, monkeypatch):
    scrapes = simulate(tmp_path, monkeypatch)

    drifted = sorted(
        labels
        for (name, labels), value in scrapes[JUMP_HOUR].items()
        if name == "fluxcal_drift_check_last_verdict"
        and dict(labels)["verdict"] in ("out_of_spec", "bad_data")
        and value == 1
    )
    assert ("node", "sweet_spot") in {item for labels in drifted for item in labels}
    assert all(
        math.isclose(s[("fluxcal_calibration_success_ratio", (("qubit", "q0"),))], 1.0)
        for s in scrapes
    )
    checks = []  # every rule, every hour: silent before the jump, only the drift at it
    for hour in range(1, HOURS + 1):
        for alert in ALERTS:
            expected = []
            if hour == JUMP_HOUR and alert == "FluxcalDriftOutOfSpec":
                for labels in drifted:
                    d = dict(labels)
                    expected.append(
                        {
                            "exp_labels": {"severity": "warning", **d},
                            "exp_annotations": {
                                "summary": f"{d['qubit']} {d['node']} drifted ({d['verdict']})",
                                "description": "See the drift-check-decisions artifact of "
                                "the last drift-check run.",
                            },
                        }
                    )
            checks.append(
                {"eval_time": f"{hour * 60 + 30}m", "alertname": alert, "exp_alerts": expected}
            )
    promtool_test(tmp_path, as_series(scrapes), checks)
