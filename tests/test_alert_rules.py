"""The shipped alert rules and dashboard: well-formed, about metrics fluxcal exports, silent
on routine drift that the drift check fixes, and firing when the automation cannot fix a node
or a node jumps (a flux jump), on synthetic series and on a drifting chip hour by hour.

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
from operations_week import (
    PROMTOOL,
    RULES,
    T0,
    as_series,
    file_flux_jump,
    firing,
    operate,
    rules_test,
    run_promtool,
)
from prefect_support import device_with_events, seeded_store
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fluxcal import monitoring
from fluxcal.calibrations.graph import DEFAULT_GRAPH
from fluxcal.flows.checks import CHECKS, CheckResult
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
    check = CheckResult("t1", "in_spec", "", {"T1": (9e-5, 1e-5)}, {"T1": 1e-4}, {"T1": 3e-5})
    decision = type("D", (), {"action": "kept", "check": check, "device_s": 1.0})
    maintenance = {"q0": type("M", (), {"decisions": {"t1": decision}})}
    after_flow_run(path, "drift-check", {"q0": {"t1": node}}, 1, maintenance)
    return exported_names(path)


def test_rules_are_well_formed_and_name_only_exported_metrics(exported):
    document = yaml.safe_load(RULES.read_text())
    rules = [r for g in document["groups"] for r in g["rules"]]
    assert len(rules) == len(set(ALERTS)) == 11
    for rule in rules:
        assert rule["expr"].strip() and rule["labels"]["severity"] in ("page", "warning")
        assert rule["annotations"]["summary"], rule["alert"]
        assert set(METRIC.findall(rule["expr"])) <= exported, rule["alert"]
    if PROMTOOL is not None:
        check = subprocess.run(
            [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert "SUCCESS: 11 rules found" in check.stdout


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
    # minute m has time() = 60 m; t1 was last vouched for at t = 0 and is valid half an hour
    # (the rule allows one more hour: the drift check's interval)
    series = {
        'fluxcal_node_verified_timestamp_seconds{qubit="q0",node="t1"}': "0x200",
        'fluxcal_node_slo_seconds{node="t1"}': "1800x200",
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
            "description": "Last calibrated or checked 1h 50m 0s ago.",
        },
    }
    checks = [
        {"eval_time": "50m", "alertname": "FluxcalCalibrationStale", "exp_alerts": []},
        {"eval_time": "100m", "alertname": "FluxcalCalibrationStale", "exp_alerts": []},
        {"eval_time": "110m", "alertname": "FluxcalCalibrationStale", "exp_alerts": [stale]},
        {"eval_time": "99m", "alertname": "FluxcalT1Drop", "exp_alerts": []},
        {"eval_time": "120m", "alertname": "FluxcalT1Drop", "exp_alerts": [t1_drop]},
        {"eval_time": "170m", "alertname": "FluxcalNoDriftCheck", "exp_alerts": []},
    ]
    promtool_test(tmp_path, series, checks)


# Automation at work, automation failing, a jump: one sample a minute, a drift check every
# ten minutes (each holds for ten samples); the run-log timestamps keep pace with time().
CHECKS_EVERY = 10
DRIFT_CHECK_TS = 'fluxcal_run_last_timestamp_seconds{flow="drift-check"}'
FLUX_BIAS = 'fluxcal_parameter_value{qubit="q0",parameter="flux_sweet_spot",unit="V"}'
FLUX_PERIOD = 'fluxcal_parameter_value{qubit="q0",parameter="flux_period",unit="V"}'


def per_check(*values: float | None) -> str:
    """promtool values: each check's value held until the next check (None: absent)."""
    return " ".join("_x9" if v is None else f"{v!r}+0x9" for v in values)


def quiet_at(minutes: list[int]) -> list[dict]:
    return [
        {"eval_time": f"{m}m", "alertname": alert, "exp_alerts": []}
        for m in minutes
        for alert in ALERTS
    ]


@needs_promtool
def test_routine_drift_fixed_by_recalibration_raises_no_alert(tmp_path):
    # sweet_spot out of spec at every other check and recalibrated (1–3 tolerances), echo
    # once, a single bad-data verdict on the probe that the walk's recalibration fixed
    node = 'qubit="q0",node="sweet_spot"'
    verdict = 'fluxcal_drift_check_last_verdict{{{},verdict="{}"}}'
    series = {
        DRIFT_CHECK_TS: "0+60x100",
        f"fluxcal_node_unresolved_runs{{{node}}}": per_check(*[0] * 10),
        f"fluxcal_node_shift_tolerances{{{node}}}": per_check(1.4, 0.3, 2.2, 0.5, 3.1, 0.2, 1.1),
        'fluxcal_node_shift_tolerances{qubit="q0",node="echo"}': per_check(0.4, 1.6, 0.8, None),
        'fluxcal_drift_check_bad_data_runs{qubit="q0",node="qubit_spectroscopy"}': per_check(
            0, 0, 1, 0, 0, 0, 1, 0, 0, 0
        ),
        verdict.format(node, "out_of_spec"): per_check(1, 0, 1, 0, 1, 0, 1, 0, 0, 0),
        verdict.format(node, "in_spec"): per_check(0, 1, 0, 1, 0, 1, 0, 1, 1, 1),
        'fluxcal_node_last_outcome{qubit="q0",node="sweet_spot",outcome="accepted"}': "1x100",
        # the bias followed the walk in steps up to 0.9 mΦ0 (period 1.1 V)
        FLUX_BIAS: per_check(0.24, 0.2404, 0.2404, 0.2394, 0.2398, 0.2408, 0.2408, 0.2399),
        FLUX_PERIOD: "1.1x100",
    }
    promtool_test(tmp_path, series, quiet_at([5, 25, 45, 65, 75, 95]))


def expected(alert: str, node: str, summary: str) -> dict:
    """A promtool expectation for `alert` on q1 `node`: its severity and description as the
    rules file states them, its summary as rendered."""
    rule = next(
        r
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
        if r.get("alert") == alert
    )
    return {
        "exp_labels": {"severity": rule["labels"]["severity"], "qubit": "q1", "node": node},
        "exp_annotations": {"summary": summary, "description": rule["annotations"]["description"]},
    }


@needs_promtool
def test_a_rejected_recalibration_and_repeated_bad_data_alert_until_fixed(tmp_path):
    rejected = 'fluxcal_node_unresolved_runs{qubit="q1",node="rabi"}'
    blind = 'fluxcal_drift_check_bad_data_runs{qubit="q1",node="ramsey"}'
    series = {
        DRIFT_CHECK_TS: "0+60x80",
        # rabi: in spec, then rejected twice in a row, then accepted
        rejected: per_check(0, 0, 1, 2, 0, 0, 0, 0),
        # ramsey: bad data once (handled), then three checks in a row, then usable
        blind: per_check(1, 0, 1, 2, 3, 0, 0, 0),
    }
    unresolved = lambda runs: expected(  # noqa: E731
        "FluxcalNodeUnresolved", "rabi", f"q1 rabi not fixed by the last {runs} run(s)"
    )
    bad_data = lambda runs: expected(  # noqa: E731
        "FluxcalCheckBadData", "ramsey", f"q1 ramsey: {runs} checks in a row gave bad data"
    )
    checks = [
        {"eval_time": "15m", "alertname": "FluxcalNodeUnresolved", "exp_alerts": []},
        # one rejection the walk retries at the next check; the second is the alert
        {"eval_time": "25m", "alertname": "FluxcalNodeUnresolved", "exp_alerts": []},
        {"eval_time": "35m", "alertname": "FluxcalNodeUnresolved", "exp_alerts": [unresolved(2)]},
        {"eval_time": "45m", "alertname": "FluxcalNodeUnresolved", "exp_alerts": []},
        {"eval_time": "5m", "alertname": "FluxcalCheckBadData", "exp_alerts": []},
        {"eval_time": "25m", "alertname": "FluxcalCheckBadData", "exp_alerts": []},
        {"eval_time": "35m", "alertname": "FluxcalCheckBadData", "exp_alerts": [bad_data(2)]},
        {"eval_time": "45m", "alertname": "FluxcalCheckBadData", "exp_alerts": [bad_data(3)]},
        {"eval_time": "55m", "alertname": "FluxcalCheckBadData", "exp_alerts": []},
    ]
    promtool_test(tmp_path, series, checks)


@needs_promtool
def test_a_flux_jump_pages_for_the_hour_after_the_bias_moved(tmp_path):
    # the bias follows the walk in 0.5 mΦ0 steps, then the device file's 4 mΦ0 jump at the
    # check of minute 70: at the sweet spot the qubit frequency is back where it was after
    # the correction, only the bias shows the step (period 1.1 V per Φ0)
    steps = [0.24, 0.24055] * 3 + [0.24] + [0.2444] * 13
    series = {
        DRIFT_CHECK_TS: "0+60x200",
        FLUX_BIAS: per_check(*steps),
        FLUX_PERIOD: "1.1x200",
    }
    jump = {
        "exp_labels": {
            "severity": "page",
            "qubit": "q0",
            "parameter": "flux_sweet_spot",
            "unit": "V",
        },
        "exp_annotations": {
            "summary": "q0 flux operating point moved 4m Φ0 within an hour",
            "description": "A flux jump (trapped flux, a thermal event?): the drift check has "
            "moved the bias; check the fridge log and the qubit's neighbours.",
        },
    }
    checks = quiet_at([15, 45, 65, 135, 190])
    checks += [
        {"eval_time": f"{m}m", "alertname": "FluxcalFluxJump", "exp_alerts": [jump]}
        for m in (75, 100, 125)
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
    event = {"time": (JUMP_HOUR - 0.5) * 3600.0, "kind": "flux_jump", "size": file_flux_jump()}
    device = device_with_events("heavy", 1, [event], time=0.0)
    path = seeded_store(tmp_path / "store", device, tuple(device.truth()["q0"]), T0.isoformat())
    graph = {n: dataclasses.replace(e, timeout_s=7 * 86400.0) for n, e in DEFAULT_GRAPH.items()}
    checks = {n: CHECKS[n] for n in PROBE_CHECKS}
    return operate(device, path, HOURS, graph, checks, daily_nodes=DAILY_NODES).scrapes


@needs_promtool
def test_a_drifting_chip_raises_no_alert_until_a_flux_jump_reports_it(tmp_path):
    scrapes = simulate(tmp_path)

    def flux(hour: int) -> float:
        value = scrapes[hour]
        bias = (
            "fluxcal_parameter_value",
            (("parameter", "flux_sweet_spot"), ("qubit", "q0"), ("unit", "V")),
        )
        period = (
            "fluxcal_parameter_value",
            (("parameter", "flux_period"), ("qubit", "q0"), ("unit", "V")),
        )
        return value[bias] / value[period]

    # the drift check at the jump recalibrated the bias by about the jump (Φ0), and the
    # automation never failed: every recalibration accepted, nothing left unresolved
    assert abs(flux(JUMP_HOUR) - flux(JUMP_HOUR - 1)) > 0.5 * file_flux_jump()
    assert all(
        math.isclose(s[("fluxcal_calibration_success_ratio", (("qubit", "q0"),))], 1.0)
        for s in scrapes
    )
    assert not any(
        value
        for s in scrapes
        for (name, _), value in s.items()
        if name == "fluxcal_node_unresolved_runs"
    )
    # every rule, every hour: silent before the jump, the jump at it, then silent
    minutes = [hour * 60 + 30 for hour in range(1, HOURS + 1)]
    fired = firing(as_series(scrapes), minutes)
    assert {m: [a["alertname"] for a in alerts] for m, alerts in fired.items() if alerts} == {
        JUMP_HOUR * 60 + 30: ["FluxcalFluxJump"]
    }
    assert fired[JUMP_HOUR * 60 + 30][0]["qubit"] == "q0"
