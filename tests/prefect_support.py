"""Helpers for the Prefect flow tests: the in-process harness, seeded stores, a real server.

`prefect_harness` is the one session-scoped `prefect_test_harness()` (entering it starts a
temporary Prefect API server, ~15 s): import it into the test module that needs it. The
server helpers start `prefect server start` as a subprocess with its own PREFECT_HOME and
always stop it by PID.
"""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from devices import QUBITS, device_dict

from fluxcal.calibrations.node import UNITS, now_iso
from fluxcal.flows.deploy import server_command, server_env
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.device_config import parse_device_config
from fluxcal.snapshots import CalibratedParameter, SnapshotStore

QUIET_PREFECT = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for every in-process flow test of the session."""
    os.environ.update(QUIET_PREFECT)
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def two_qubit_device(time: float = 0.0) -> SimulatedDevice:
    """q0 a light fluxonium, q1 a heavy one: different chips behind one set of instruments."""
    config = device_dict("light", 1)
    config["qubits"]["q1"] = {**copy.deepcopy(QUBITS["heavy"]), "seed": 2}
    return SimulatedDevice(parse_device_config(config), time=time)


def device_with_events(kind: str, seed: int, events: list[dict], time: float = 0.0):
    config = device_dict(kind, seed)
    config["qubits"]["q0"]["events"] = events
    return SimulatedDevice(parse_device_config(config), time=time)


def truth_parameters(
    device: SimulatedDevice, names: tuple[str, ...], updated: str | None = None
) -> dict[str, dict[str, CalibratedParameter]]:
    """The device's true values of `names` as calibrated parameters (tests only: seeds the
    upstream inputs of the nodes under test)."""
    when = updated or now_iso()
    return {
        qubit: {
            name: CalibratedParameter(values[name], 0.0, UNITS.get(name, ""), "truth", when)
            for name in names
        }
        for qubit, values in device.truth().items()
    }


def seeded_store(
    path: Path, device: SimulatedDevice, names: tuple[str, ...], updated: str | None = None
) -> Path:
    """A store holding the truth of `names`, measured at `updated` (default: now). On a
    simulated clock pass its start: the store keeps, per parameter, the most recently
    updated value, so a seed stamped later than the clock would outlive every recalibration."""
    truth = truth_parameters(device, names, updated)
    SnapshotStore(path).save(truth, reason="seeded from the truth")
    return path


# ------------------------------------------------------------------ a real Prefect server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    """This process's environment with its own PREFECT_HOME and, if given, API URL."""
    env = {**os.environ, **QUIET_PREFECT, "PREFECT_HOME": str(home)}
    for name in ("PREFECT_API_URL", "PREFECT_UI_API_URL"):
        env.pop(name, None)
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    return env


def start_server(home: Path, port: int, log: Path) -> subprocess.Popen:
    """`fluxcal server`'s command and environment, as a background process."""
    env = server_env("127.0.0.1", port, prefect_env(home))
    with open(log, "wb") as out:
        return subprocess.Popen(
            server_command("127.0.0.1", port), env=env, stdout=out, stderr=subprocess.STDOUT
        )


def wait_healthy(url: str, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Prefect server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"Prefect server at {url} not healthy after {timeout_s:g} s")


def stop_process(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace_s`."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace_s)


def read_back(flow_run_id: str, expect: tuple[str, ...] = (), timeout: float = 30.0) -> tuple:
    """(flow run, {task run name: task run}, {artifact key: artifact}) from the API in use.

    Prefect 3 records task runs from events, after the flow has returned: the task runs
    named in `expect` are waited for, in a final state, (up to `timeout` s) before the answer
    is read.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    only_this = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            task_runs = {t.name: t for t in client.read_task_runs(flow_run_filter=only_this)}
            settled = all(
                name in task_runs
                and task_runs[name].state is not None
                and task_runs[name].state.is_final()
                for name in expect
            )
            if settled or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        flow_run = client.read_flow_run(flow_run_id)
        artifacts = client.read_artifacts(flow_run_filter=only_this)
    return flow_run, task_runs, {a.key: a for a in artifacts if a.key is not None}


def api(url: str):
    """Context in which the Prefect client of this process talks to the server at `url`."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: url})


def write_device(path: Path, kind: str, seed: int) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(device_dict(kind, seed)), encoding="utf-8")
    return path


if __name__ == "__main__":  # `python tests/prefect_support.py serve ...`: the flows' commands
    import typer

    from fluxcal.flows.commands import register_commands

    commands = typer.Typer()
    register_commands(commands)
    commands()
