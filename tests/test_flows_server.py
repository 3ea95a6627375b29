"""Against a real Prefect server: a daily calibration, the served deployments, the UI.

One `prefect server start` subprocess (temporary PREFECT_HOME, free port) serves the module;
it is always stopped by PID, after any `serve` process (the other order hangs). The flows run
in their own processes, as they do in a lab: `fluxcal calibrate --prefect` for a first run,
`serve` for the deployments, and the test reads back what the server recorded. The run
graph's test runs its flow in this process, inside `api(url)`: Prefect's events worker is
one per process, and `api` rebinds it to this server and flushes it before the read-back.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import matplotlib.image
import numpy as np
import pytest
import xarray as xr
from prefect_support import (
    api,
    free_port,
    prefect_env,
    read_back,
    start_server,
    stop_process,
    wait_healthy,
    write_device,
)

from fluxcal.calibrations.graph import DAY, GraphEntry
from fluxcal.calibrations.node import Analysis, Node
from fluxcal.calibrations.session import QubitSession
from fluxcal.flows.daily import daily_calibration
from fluxcal.flows.lab import LiveStation
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.fleet import fleet_device_path
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import SnapshotStore

pytestmark = [pytest.mark.integration, pytest.mark.slow(80)]

ROOT = Path(__file__).resolve().parents[1]
#: The first four nodes of the chain: enough for task runs, fit reports and a snapshot.
NODES = ("resonator_search", "resonator_flux", "resonator_spectroscopy", "qubit_spectroscopy")
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(API URL, PREFECT_HOME) of a fresh Prefect server, stopped by PID afterwards."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    process = start_server(home, port, home / "server.log")
    try:
        url = f"http://127.0.0.1:{port}/api"
        wait_healthy(url, process, timeout_s=120)
        yield url, home
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lab")
    return write_device(folder / "device.yaml", "light", 1), folder / "store"


@pytest.fixture(scope="module")
def daily_run(server, lab):
    """`fluxcal calibrate --prefect` on four nodes; returns the flow run id from the snapshot."""
    url, home = server
    device, store = lab
    fluxcal = shutil.which("fluxcal", path=str(Path(sys.executable).parent))
    command = [fluxcal, "calibrate", "--prefect", "--device", str(device), "--store", str(store)]
    for node in NODES:
        command += ["--node", node]
    done = subprocess.run(
        [*command, "--json"],
        env=prefect_env(home, url),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # QCoDeS prints "Starting experimental run ..." lines to stdout before the JSON
    document = done.stdout[done.stdout.find("\n{") + 1 :]
    assert json.loads(document)["outcomes"]["q0"] == dict.fromkeys(NODES, "accepted")
    return SnapshotStore(store).load().provenance["flow_run_id"]


def test_daily_calibration_completes_with_a_task_run_and_a_fit_report_per_node(server, daily_run):
    with api(server[0]):
        flow_run, task_runs, artifacts = read_back(daily_run)
    assert flow_run.state_name == "Completed"
    assert flow_run.name == "daily-calibration-all-qubits"
    assert set(task_runs) == {f"q0-{node}" for node in NODES}
    assert {t.state_name for t in task_runs.values()} == {"Accepted"}
    for node in NODES:
        report = artifacts[f"q0-{node.replace('_', '-')}-fit"]
        assert report.type == "markdown"
        assert "data:image/png;base64," in report.data
    table = artifacts["fluxcal-parameters"]
    assert table.type == "table"
    assert "qubit_frequency" in table.data


@dataclass
class Meet(Node):
    """No measurement; the analysis waits until the other qubit's is running too, so the
    two task runs overlap whatever the machine's load."""

    name: ClassVar[str] = "meet"
    meeting: ClassVar[threading.Barrier] = threading.Barrier(2, timeout=30)

    def acquire(self, session: QubitSession) -> xr.Dataset:
        return xr.Dataset({"signal": ("x", np.zeros(2))}, coords={"x": [0.0, 1.0]})

    def analyse(self, data: xr.Dataset) -> Analysis:
        self.meeting.wait()  # raises BrokenBarrierError unless the other qubit is in here too
        return Analysis({}, [])

    def plot(self, data: xr.Dataset, analysis: Analysis, path: str | Path) -> Path:
        return Path(path)


@dataclass
class Follow(Meet):
    name: ClassVar[str] = "follow"

    def analyse(self, data: xr.Dataset) -> Analysis:
        return Analysis({}, [])


MEETING_GRAPH = {"meet": GraphEntry(Meet, (), DAY), "follow": GraphEntry(Follow, ("meet",), DAY)}


def test_the_run_graph_shows_the_qubits_side_by_side_with_their_dependencies(server, tmp_path):
    url, _ = server
    station = build_station(SimulatedDevice.from_yaml(fleet_device_path(), time=0.0))
    with api(url):  # q0 and q4: feedline0 and feedline1, walked on two threads
        outcome = daily_calibration(
            station=LiveStation(station),
            store=str(tmp_path / "store"),
            qubits=["q0", "q4"],
            graph=MEETING_GRAPH,
            workers=2,
            mode="bring-up",
        )
    assert outcome.run.outcomes() == {
        q: {"meet": "accepted", "follow": "accepted"} for q in ("q0", "q4")
    }
    flow_run_id = SnapshotStore(tmp_path / "store").load().provenance["flow_run_id"]
    expect = ("q0-meet", "q4-meet", "q0-follow", "q4-follow")

    with api(url):
        _, task_runs, _ = read_back(flow_run_id, expect, timeout=30)

    assert set(task_runs) == set(expect)
    assert {t.state_name for t in task_runs.values()} == {"Accepted"}
    for qubit in ("q0", "q4"):  # the UI's arrow: follow waited for the qubit's own meet
        upstream = task_runs[f"{qubit}-meet"]
        assert not upstream.task_inputs.get("wait_for")
        waited = task_runs[f"{qubit}-follow"].task_inputs["wait_for"]
        assert [str(i.id) for i in waited] == [str(upstream.id)]
    first, second = task_runs["q0-meet"], task_runs["q4-meet"]  # side by side in time
    assert first.start_time < second.end_time and second.start_time < first.end_time


@pytest.fixture
def served(server, lab):
    """`serve` (the flows' command) against the server, stopped by PID before the server."""
    url, home = server
    device, store = lab
    env = {**prefect_env(home, url), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    command = [sys.executable, str(ROOT / "tests" / "prefect_support.py"), "serve"]
    command += ["--device", str(device), "--store", str(store), "--interval", "86400"]
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield process
    finally:
        stop_process(process)


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1.0)
    raise TimeoutError(f"no {what} after {timeout_s:g} s")


def test_served_deployments_are_scheduled_and_recalibrate_runs_on_demand(
    server, lab, daily_run, served
):
    from prefect import get_client

    url, _ = server
    store = SnapshotStore(lab[1])
    before = store.current_version()
    with api(url), get_client(sync_client=True) as client:

        def deployments():
            found = {client.read_flow(d.flow_id).name: d for d in client.read_deployments()}
            return found if len(found) == 3 else None

        found = wait_for(deployments, 120, "three deployments")
        (daily,) = [s.schedule for s in found["daily-calibration"].schedules]
        assert daily.cron == "0 6 * * *" and daily.timezone
        (drift,) = [s.schedule for s in found["drift-check"].schedules]
        assert drift.interval.total_seconds() == 86400
        assert not found["recalibrate"].schedules

        run = client.create_flow_run_from_deployment(
            found["recalibrate"].id, parameters={"nodes": ["qubit_spectroscopy"]}
        )

        def finished():
            state = client.read_flow_run(run.id).state
            return state if state is not None and state.is_final() else None

        state = wait_for(finished, 180, "finished recalibrate run")
    assert state.is_completed(), state.message
    snapshot = store.load()
    assert snapshot.version == before + 1
    assert snapshot.provenance["flow_run_id"] == str(run.id)
    assert snapshot.reason == "recalibrate qubit_spectroscopy on q0"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt install chromium)")
def test_the_ui_shows_the_run_and_its_fit_report(server, daily_run, tmp_path):
    url, _ = server
    base = url.removesuffix("/api")
    with api(url):
        _, _, artifacts = read_back(daily_run)
    pages = {
        "run": f"{base}/runs/flow-run/{daily_run}",
        "fit": f"{base}/artifacts/artifact/{artifacts['q0-qubit-spectroscopy-fit'].id}",
    }
    for name, page in pages.items():
        out = tmp_path / f"{name}.png"
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "ui_screenshot.py"), page, str(out)],
            check=True,
            timeout=180,
        )
        pixels = matplotlib.image.imread(out)[..., :3]
        # a rendered page, not the empty shell the UI shows when it finds nothing: that one
        # has ~300 colours and a spread of 0.04; rendered pages over 1000 and 0.09
        assert np.std(pixels) > 0.06, name
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 800, name
    # the fit plot (a white matplotlib figure) shows on the dark artifact page
    white = (matplotlib.image.imread(tmp_path / "fit.png")[..., :3].min(axis=-1) > 0.95).mean()
    assert white > 0.05
