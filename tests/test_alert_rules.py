"""The shipped alert rules and dashboard: well-formed, about metrics fluxcal exports, and
silent on a drifting chip until a flux jump, which they report.

`promtool check rules` and `promtool test rules` (Debian's prometheus package, installed by
`.ci/run`) run when promtool is on PATH; without it the rules are parsed as YAML and checked
for structure, and the promtool tests skip with the reason.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess

import pytest
import snapshot_samples as samples
import yaml
from operations_week import PROMTOOL, RULES, T0, as_series, operate, rules_test, run_promtool
from prefect_support import device_with_events, seeded_store
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fluxcal import monitoring
from fluxcal.calibrations.graph import DEFAULT_GRAPH
from fluxcal.flows.checks import CHECKS
from fluxcal.metrics import StoreCollector
from fluxcal.metrics_push import after_flow_run
from fluxcal.snapshots import SnapshotStore

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus)"
)
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
    result = run_promtool(rules_test(series, alert_rule_test=checks), tmp_path)
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
HOURS = JUMP_HOUR + 1  # the next check finds the recalibrated chip in spec: the alert resolves
DAILY_NODES = ["readout_power", "t1", "readout_optimisation"]
#: The shared qubit-frequency probe: one measurement an hour checks these four nodes.
PROBE_CHECKS = ("resonator_flux", "qubit_spectroscopy", "sweet_spot", "ramsey")


def simulate(tmp_path) -> list[dict[tuple, float]]:
    """Daily runs at hours 0 and 24, a drift check every hour; a scrape after each hour
    (`operations_week.operate`, which `benchmarks/bench_week.py` runs for a week).

    The lab's graph here declares calibrations valid for a week and checks only through the
    shared probe, so an hour costs one check measurement (~0.5 s of CPU) instead of a full
    drift check.
    """
    event = {"time": (JUMP_HOUR - 0.5) * 3600.0, "kind": "flux_jump", "size": 3e-4}
    device = device_with_events("heavy", 1, [event], time=0.0)
    path = seeded_store(tmp_path / "store", device, tuple(device.truth()["q0"]), T0.isoformat())
    graph = {n: dataclasses.replace(e, timeout_s=7 * 86400.0) for n, e in DEFAULT_GRAPH.items()}
    checks = {n: CHECKS[n] for n in PROBE_CHECKS}
    return operate(device, path, HOURS, graph, checks, daily_nodes=DAILY_NODES).scrapes


@needs_promtool
def test_a_drifting_chip_raises_no_alert_until_a_flux_jump_reports_it(tmp_path):
    scrapes = simulate(tmp_path)

    drifted = sorted(
        labels
        for (name, labels), value in scrapes[JUMP_HOUR].items()
        if name == "fluxcal_drift_check_last_verdict"
        and dict(labels)["verdict"] in ("out_of_spec", "bad_data")
        and value == 1
    )
    assert ("node", "sweet_spot") in {item for labels in drifted for item in labels}
    verdict = ("qubit", "q0"), ("node", "sweet_spot"), ("verdict", "in_spec")
    after = scrapes[JUMP_HOUR + 1][("fluxcal_drift_check_last_verdict", tuple(sorted(verdict)))]
    assert after == 1  # the recalibration was stored (a seed stamped later would outlive it)
    assert all(
        math.isclose(s[("fluxcal_calibration_success_ratio", (("qubit", "q0"),))], 1.0)
        for s in scrapes
    )
    checks = []  # every rule, every hour: silent before the jump, the drift at it, then silent
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
