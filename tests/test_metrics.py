"""`fluxcal metrics`: what a scrape of a store says, and the flows' end-of-run hook.

The store holds two versions of two qubits and a run log of a daily run and two drift checks
at known times, so every number of the exposition can be checked against the store; the
clock is fixed, so ages are exact.
"""

from __future__ import annotations

import datetime as dt
import http.server
import threading
from types import SimpleNamespace
from typing import ClassVar

import pytest
import snapshot_samples as samples
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from fluxcal.cli import app
from fluxcal.metrics import StoreCollector, timestamp
from fluxcal.metrics_push import PUSHGATEWAY_ENV, after_flow_run
from fluxcal.runlog import runs_path
from fluxcal.snapshots import SnapshotStore

NOW = dt.datetime(2025, 11, 26, 10, 0, tzinfo=dt.UTC)  # a day after samples.UPDATED
SLO = {"t1": 86400.0, "ramsey": 86400.0, "readout_optimisation": 86400.0}


def node(outcome: str, device_s: float = 0.0):
    return SimpleNamespace(outcome=outcome, device_s=device_s)


def decision(action: str, verdict: str | None, device_s: float):
    check = SimpleNamespace(verdict=verdict) if verdict else None
    return SimpleNamespace(action=action, check=check, device_s=device_s)


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store"
    s = SnapshotStore(path)
    s.save(samples.parameters(("q0", "q1")), reason="daily")
    s.save(samples.parameters(("q0", "q1"), shift=2), reason="daily")
    daily = {
        "q0": {"t1": node("accepted", 30.0), "ramsey": node("rejected", 12.0)},
        "q1": {"t1": node("accepted", 40.0), "ramsey": node("accepted", 10.0)},
    }
    after_flow_run(path, "daily-calibration", daily, 2, finished=NOW - dt.timedelta(hours=4))
    for hours, verdict in ((2, "in_spec"), (1, "out_of_spec")):
        maintenance = {
            "q0": SimpleNamespace(
                decisions={
                    "t1": decision("kept", "in_spec", 3.0),
                    "ramsey": decision(
                        "recalibrated" if verdict == "out_of_spec" else "kept", verdict, 5.0
                    ),
                }
            )
        }
        recal = {"q0": {"ramsey": node("accepted", 4.0)}} if verdict == "out_of_spec" else {}
        after_flow_run(
            path, "drift-check", recal, None, maintenance, NOW - dt.timedelta(hours=hours)
        )
    return path


def scrape(path) -> dict[str, dict[tuple, float]]:
    """name -> {sorted label items: value} of one scrape."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(path, SLO, clock=lambda: NOW))
    text = generate_latest(registry).decode()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def one(metrics, name: str, **labels) -> float:
    return metrics[name][tuple(sorted(labels.items()))]


def test_parameters_are_exported_with_value_stderr_and_age_in_si_units(store):
    m = scrape(store)
    current = SnapshotStore(store).load().parameters
    t1 = current["q1"]["T1"]
    assert one(m, "fluxcal_parameter_value", qubit="q1", parameter="T1", unit="s") == t1.value
    assert one(m, "fluxcal_parameter_stderr", qubit="q1", parameter="T1", unit="s") == t1.stderr
    assert one(m, "fluxcal_parameter_age_seconds", qubit="q1", parameter="T1") == 86400.0
    # unknown stderr (nan) is absent, not exported as NaN
    stderrs = {dict(k)["parameter"] for k in m["fluxcal_parameter_stderr"]}
    assert "readout_amplitude" not in stderrs and "T1" in stderrs
    assert len(m["fluxcal_parameter_value"]) == 2 * len(samples.BASE)
    assert one(m, "fluxcal_snapshot_current_version") == 2
    assert one(m, "fluxcal_snapshot_versions") == 2
    assert one(m, "fluxcal_node_slo_seconds", node="t1") == 86400.0


def test_run_log_gives_outcomes_success_rate_drift_decisions_and_device_time(store):
    m = scrape(store)
    assert one(m, "fluxcal_runs_total", flow="drift-check") == 2
    last_check = timestamp((NOW - dt.timedelta(hours=1)).isoformat())
    assert one(m, "fluxcal_run_last_timestamp_seconds", flow="drift-check") == last_check
    # q0 ramsey: rejected in the daily run, accepted when the drift check recalibrated it
    assert one(m, "fluxcal_node_last_outcome", qubit="q0", node="ramsey", outcome="accepted") == 1
    assert one(m, "fluxcal_node_last_outcome", qubit="q0", node="ramsey", outcome="rejected") == 0
    assert one(m, "fluxcal_calibrations_total", qubit="q0", node="ramsey", outcome="rejected") == 1
    assert one(m, "fluxcal_calibration_success_ratio", qubit="q0") == pytest.approx(2 / 3)
    assert one(m, "fluxcal_calibration_success_ratio", qubit="q1") == 1.0
    decisions = "fluxcal_drift_check_decisions_total"
    assert one(m, decisions, qubit="q0", node="ramsey", action="recalibrated") == 1
    assert one(m, decisions, qubit="q0", node="t1", action="kept") == 2
    verdict = "fluxcal_drift_check_last_verdict"
    assert one(m, verdict, qubit="q0", node="ramsey", verdict="out_of_spec") == 1
    assert one(m, verdict, qubit="q0", node="ramsey", verdict="in_spec") == 0
    # device time: daily nodes, plus every drift decision (its check and recalibration)
    device = "fluxcal_device_seconds_total"
    assert one(m, device, qubit="q0", node="t1", flow="daily-calibration") == 30.0
    assert one(m, device, qubit="q0", node="ramsey", flow="drift-check") == 10.0
    # t1 was found in spec an hour ago: that vouches for it, not the day-old calibration
    verified = "fluxcal_node_verified_timestamp_seconds"
    assert one(m, verified, qubit="q0", node="t1") == last_check
    assert one(m, verified, qubit="q1", node="t1") == (NOW - dt.timedelta(hours=4)).timestamp()


def test_a_torn_run_log_line_is_skipped_and_an_unreadable_store_says_so(store, tmp_path):
    with runs_path(store).open("a") as f:
        f.write('{"flow": "daily-calib')  # a writer killed mid-line
    assert one(scrape(store), "fluxcal_runs_total", flow="drift-check") == 2
    gone = tmp_path / "gone"
    gone.mkdir()
    registry = CollectorRegistry()
    registry.register(StoreCollector(gone / "store", SLO))
    text = generate_latest(registry).decode()
    assert "fluxcal_store_up 0.0" in text and "no snapshot store" in text


def test_cli_once_prints_the_exposition_and_a_missing_store_is_one_line(store, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["metrics", "--store", str(store), "--once"])
    assert result.exit_code == 0, result.output
    families = {f.name for f in text_string_to_metric_families(result.stdout)}
    assert {"fluxcal_parameter_value", "fluxcal_node_slo_seconds", "fluxcal_runs"} <= families
    missing = runner.invoke(app, ["metrics", "--store", str(tmp_path / "nope"), "--once"])
    assert missing.exit_code == 1
    assert missing.stderr.strip().startswith("error: no snapshot store")


class _Gateway(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []  # (path, body) of every PUT

    def do_PUT(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_end_of_run_hook_pushes_to_a_configured_pushgateway(store, monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(PUSHGATEWAY_ENV, f"http://127.0.0.1:{server.server_port}")
        after_flow_run(store, "daily-calibration", {"q0": {"t1": node("accepted", 1.0)}}, 2)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    path, body = _Gateway.received[-1]
    assert path.startswith("/metrics/job/fluxcal/store@base64/")
    assert b'fluxcal_parameter_value{parameter="T1",qubit="q0",unit="s"}' in body
    assert b'fluxcal_runs_total{flow="daily-calibration"} 2.0' in body


def test_an_unreachable_pushgateway_does_not_fail_the_run(store, monkeypatch, caplog):
    monkeypatch.setenv(PUSHGATEWAY_ENV, "http://127.0.0.1:9")  # discard port: refused
    after_flow_run(store, "drift-check", {}, None)
    assert "metrics not pushed" in caplog.text
    assert len(runs_path(store).read_text().splitlines()) == 4  # the run is still logged
