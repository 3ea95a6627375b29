"""A real Prometheus scrapes `fluxcal metrics`, evaluates the shipped rules and answers the
dashboard's queries.

Both processes listen on free loopback ports, Prometheus keeps its database in tmp_path, and
both are stopped by PID whatever happens. Skipped where the `prometheus` binary is absent
(`.ci/run` installs Debian's package).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import snapshot_samples as samples

from fluxcal import monitoring
from fluxcal.snapshots import SnapshotStore

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (Debian: apt-get install prometheus)"
)
DEADLINE_S = 60.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port: int, path: str, **query: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/{path}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def wait_for(what: str, probe, deadline: float):
    """Poll `probe` until it returns something truthy, or fail after the deadline."""
    while time.monotonic() < deadline:
        try:
            result = probe()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def test_prometheus_scrapes_fluxcal_and_the_value_matches_the_store(tmp_path):
    store = SnapshotStore(tmp_path / "store")
    store.save(samples.parameters(("q0", "q1"), shift=1), reason="daily")
    exporter_port, prometheus_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{json.dumps(str(monitoring.path(monitoring.ALERT_RULES)))}]\n"
        "scrape_configs:\n"
        "  - job_name: fluxcal\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
    )
    fluxcal = str(Path(sys.executable).with_name("fluxcal"))  # the venv's command
    exporter = subprocess.Popen(
        [fluxcal, "metrics", "--store", str(store.path), "--port", str(exporter_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    prometheus = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + DEADLINE_S
        query = 'fluxcal_parameter_value{qubit="q1",parameter="T1"}'

        def scraped():
            return api(prometheus_port, "query", query=query)["data"]["result"]

        result = wait_for("a scrape of fluxcal metrics", scraped, deadline)
        stored = store.load().parameters["q1"]["T1"]
        assert float(result[0]["value"][1]) == pytest.approx(stored.value, rel=1e-12)
        assert result[0]["metric"]["unit"] == "s"
        assert result[0]["metric"]["job"] == "fluxcal"

        def rules_evaluated():
            groups = api(prometheus_port, "rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            done = all(r.get("lastEvaluation", "").startswith("20") for r in rules)
            return rules if done else None

        rules = wait_for("the rules to be evaluated", rules_evaluated, deadline)
        assert len(rules) == 11
        assert {r["health"] for r in rules} == {"ok"}, [r.get("lastError") for r in rules]

        dashboard = json.loads(monitoring.path(monitoring.DASHBOARD).read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$qubit", "q.*")
                answer = api(prometheus_port, "query", query=expr)
                assert answer["status"] == "success", (panel["title"], expr)
        ages = api(prometheus_port, "query", query="fluxcal_parameter_age_seconds")
        assert len(ages["data"]["result"]) == 2 * len(samples.BASE)
    finally:
        stop(prometheus)
        stop(exporter)
