"""One walker, two executors: the plain runner and the Prefect flow give the same run.

The Prefect runs use the session's in-process test API (`prefect_harness`) on two qubits of
the 16-qubit chip on separate feedlines, walked on two threads, with the cheap first nodes;
one run sends its fits to an in-process Dask cluster through `prefect-dask`.
"""

from __future__ import annotations

import pytest
from prefect_support import prefect_harness

from fluxcal.calibrations.results import parallel_device_s
from fluxcal.calibrations.runner import run_graph
from fluxcal.calibrations.walker import cover, for_each_qubit
from fluxcal.flows.daily import daily_calibration
from fluxcal.flows.lab import LiveStation
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.device_config import Lines
from fluxcal.instruments.fleet import fleet_device_path
from fluxcal.instruments.station import build_station
from fluxcal.instruments.wiring import line_groups, station_groups
from fluxcal.snapshots import SnapshotStore

__all__ = ["prefect_harness"]  # the fixture is used by name

QUBITS = ["q0", "q4"]  # feedline0 and feedline1
CHEAP = ["resonator_search", "readout_power"]


def fleet_station():
    return build_station(SimulatedDevice.from_yaml(fleet_device_path(), time=0.0))


def parameter_values(parameters) -> dict:
    return {q: {n: (p.value, p.stderr) for n, p in ps.items()} for q, ps in parameters.items()}


def test_the_flow_and_the_plain_runner_walk_alike(prefect_harness, tmp_path):
    station = fleet_station()
    plain = run_graph(
        station, QUBITS, nodes=CHEAP, groups=station_groups(station, QUBITS), workers=2
    )

    store = tmp_path / "store"
    outcome = daily_calibration(
        station=LiveStation(fleet_station()),
        store=str(store),
        qubits=QUBITS,
        nodes=CHEAP,
        workers=2,
    )

    assert outcome.run.outcomes() == plain.outcomes()
    assert parameter_values(outcome.run.parameters) == parameter_values(plain.parameters)
    assert outcome.run.parallel_device_s() == pytest.approx(plain.parallel_device_s())
    # The UI's dependency arrows (`wait_for`) are not read back here: Prefect records task
    # runs from events, and the test harness's events worker drops them now and then.
    assert SnapshotStore(store).load(outcome.version).provenance["flow_run_id"]


def test_fits_run_as_dask_tasks_when_a_cluster_is_named(prefect_harness, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(processes=False, n_workers=1, threads_per_worker=2) as cluster:
        outcome = daily_calibration(
            station=LiveStation(fleet_station()),
            store=str(tmp_path / "store"),
            qubits=["q0"],
            nodes=["resonator_search"],
            dask_address=cluster.scheduler_address,
        )

    assert outcome.run.outcomes() == {"q0": {"resonator_search": "accepted"}}
    assert SnapshotStore(tmp_path / "store").load().provenance["flow_run_id"]


def test_groups_chain_through_shared_lines():
    lines = {
        "a": Lines(feedline="f0"),
        "b": Lines(feedline="f0", flux="x"),
        "c": Lines(flux="x"),
        "d": Lines(),
        "e": Lines(drive="y"),
    }
    assert line_groups(lines, list(lines)) == [["a", "b", "c"], ["d"], ["e"]]
    assert cover([["a", "b", "z"]], ["b", "c"]) == [["b"], ["c"]]


def test_parallel_device_time_overlaps_groups_on_the_workers():
    assert parallel_device_s([3.0, 2.0, 4.0], workers=1) == 9.0
    assert parallel_device_s([3.0, 2.0, 4.0], workers=3) == 4.0
    assert parallel_device_s([3.0, 2.0, 4.0], workers=2) == 6.0  # 3 | 2 then 4


def test_an_error_on_one_qubit_is_raised_after_the_others_ran():
    ran = []

    def job(qubit: str) -> str:
        ran.append(qubit)
        if qubit == "a":
            raise RuntimeError("driver crashed")
        return qubit

    with pytest.raises(RuntimeError, match="driver crashed"):
        for_each_qubit([["a", "b"], ["c"]], job, workers=2)
    assert sorted(ran) == ["a", "b", "c"]
