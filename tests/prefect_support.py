"""Helpers for the Prefect flow tests: the in-process harness, seeded stores, a real server.

`prefect_harness` is the one session-scoped `prefect_test_harness()` (entering it starts a
temporary Prefect API server, ~15 s): import it into the test module that needs it. The
server helpers start `prefect server start` as a subprocess with its own PREFECT_HOME and
always stop it by PID.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import pytest
from devices import QUBITS, device_dict

from fluxcal.calibrations.node import UNITS, now_iso
from fluxcal.flows.local_server import (  # noqa: F401 (re-exported for the tests)
    QUIET_PREFECT,
    api,
    free_port,
    prefect_env,
    start_server,
    stop_process,
    wait_healthy,
)
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.device_config import parse_device_config
from fluxcal.snapshots import CalibratedParameter, SnapshotStore


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
