"""Qubits in parallel on the 16-qubit chip: feedlines serialise, separate lines overlap.

A probe node (one real QCoDeS measurement on the simulated digitiser, so datasets are
written from several threads) meets a barrier in its analysis: the walk can only finish if
nodes of two feedline groups run at the same time, while the timeline shows that qubits of
one feedline never do. Real cheap nodes check that a parallel run measures exactly what a
sequential one does, and that a qubit whose instruments fail leaves the others alone.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import xarray as xr

from fluxcal.calibrations.graph import DAY, GraphEntry
from fluxcal.calibrations.node import Analysis, Node
from fluxcal.calibrations.persist import save_run
from fluxcal.calibrations.runner import run_graph
from fluxcal.calibrations.session import QubitSession
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.device_config import load_device_config
from fluxcal.instruments.fleet import fleet_device_path, fleet_yaml
from fluxcal.instruments.station import build_station
from fluxcal.instruments.wiring import station_groups
from fluxcal.snapshots.store import SnapshotStore

#: q0, q1 on feedline0; q4, q5 on feedline1 (instruments/device16.yaml)
QUBITS = ["q0", "q1", "q4", "q5"]
CHEAP = ["resonator_search", "readout_power"]


@dataclass
class Probe(Node):
    """One CW sweep of the readout; its analysis waits for a node of another group."""

    name: ClassVar[str] = "probe"
    produces: ClassVar[tuple[str, ...]] = ("readout_frequency",)
    meeting: ClassVar[threading.Barrier] = threading.Barrier(2, timeout=30)

    def acquire(self, session: QubitSession) -> xr.Dataset:
        session.configure(readout={"shots": 10, "integration_time": 2e-6})
        return session.measure("probe", "readout_frequency", np.linspace(5e9, 5.001e9, 11))

    def analyse(self, data: xr.Dataset) -> Analysis:
        self.meeting.wait()  # raises BrokenBarrierError unless another group is in here too
        return Analysis({"readout_frequency": (float(data["readout_frequency"][5]), 0.0)}, [])


PROBE_GRAPH = {"probe": GraphEntry(Probe, (), DAY)}


def fleet(qubits=QUBITS):
    device = SimulatedDevice.from_yaml(fleet_device_path(), time=0.0)
    station = build_station(device)
    return station, station_groups(station, qubits)


def test_the_16_qubit_chip_loads_builds_and_has_four_feedlines():
    assert fleet_device_path().read_text() == fleet_yaml()  # the file is what fleet.py makes
    config = load_device_config(fleet_device_path())
    station, groups = fleet(list(config.qubits))
    assert len(station.components["readout"].submodules) == 16
    assert groups == [[f"q{i}" for i in range(k, k + 4)] for k in range(0, 16, 4)]


def test_one_feedline_serialises_and_separate_feedlines_overlap():
    station, groups = fleet()
    assert groups == [["q0", "q1"], ["q4", "q5"]]

    run = run_graph(station, QUBITS, PROBE_GRAPH, groups=groups, workers=2)

    assert all(o == {"probe": "accepted"} for o in run.outcomes().values())
    span = {s.qubit: s for s in run.timeline}
    for first, second in (("q0", "q1"), ("q4", "q5")):
        assert span[first].end <= span[second].start  # one feedline: one after another
    assert span["q0"].start < span["q4"].end and span["q4"].start < span["q0"].end


def test_parallel_device_time_is_the_longest_group_and_the_sum_stays_reported():
    station, groups = fleet()
    run = run_graph(station, QUBITS, PROBE_GRAPH, groups=groups, workers=2)

    per_qubit = {q: run.results[q]["probe"].device_s for q in QUBITS}
    assert all(seconds > 0 for seconds in per_qubit.values())
    assert run.device_s() == pytest.approx(sum(per_qubit.values()))
    feedlines = [per_qubit["q0"] + per_qubit["q1"], per_qubit["q4"] + per_qubit["q5"]]
    assert run.parallel_device_s() == pytest.approx(max(feedlines))
    assert "in parallel (2 group(s), 2 worker(s))" in run.device_time_line()


#: Attributes that name the QCoDeS run a dataset came from: each run its own.
RUN_IDENTITY = {"run_id", "guid", "coarse_run_id", "averaging_runs"}


def test_a_parallel_run_stores_exactly_the_snapshot_a_sequential_one_does(tmp_path):
    """Same seeds, 1 worker and 2: the saved snapshots hold the same parameters, experiment
    records (fit values, outcomes, device time) and raw data; only timestamps differ."""
    runs, snapshots = [], []
    for workers in (1, 2):
        station, groups = fleet(["q0", "q4"])
        run = run_graph(station, ["q0", "q4"], nodes=CHEAP, groups=groups, workers=workers)
        store = SnapshotStore(tmp_path / f"store{workers}")
        snapshots.append(store.load(save_run(store, run, station, "bench")))
        runs.append(run)
    sequential, parallel = snapshots
    assert runs[0].outcomes() == runs[1].outcomes()
    assert all(o == "accepted" for q in runs[0].outcomes().values() for o in q.values())
    assert sequential.qubits == parallel.qubits == ["q0", "q4"]
    assert sequential.experiment_names == parallel.experiment_names
    assert sequential.settings == parallel.settings
    for qubit in sequential.qubits:
        assert set(sequential.parameters[qubit]) == set(parallel.parameters[qubit])
        for name, stored in sequential.parameters[qubit].items():
            other = parallel.parameters[qubit][name]
            assert (other.value, other.stderr, other.unit, other.experiment) == (
                stored.value,
                stored.stderr,
                stored.unit,
                stored.experiment,
            ), name
        records = sequential.experiments(qubit), parallel.experiments(qubit)
        for node, record in records[0].items():
            other = records[1][node]
            assert (other.fit, other.outcome, other.reason, other.report) == (
                record.fit,
                record.outcome,
                record.reason,
                record.report,
            ), node
            assert other.device_seconds == record.device_seconds
            xr.testing.assert_equal(other.data, record.data)
            differ = {
                k for k in record.data.attrs if other.data.attrs.get(k) != record.data.attrs[k]
            }
            assert differ <= RUN_IDENTITY, differ


def test_a_qubit_whose_instruments_fail_does_not_stop_the_others():
    station, groups = fleet()
    station.components["readout"].inject_fault("timeout", "q0", 5)

    run = run_graph(station, QUBITS, nodes=["resonator_search"], groups=groups, workers=2)

    assert run.results["q0"]["resonator_search"].outcome == "failed"
    assert "instrument fault" in run.results["q0"]["resonator_search"].reason
    for qubit in ("q1", "q4", "q5"):  # q1 shares q0's feedline: it still runs, after q0
        assert run.results[qubit]["resonator_search"].outcome == "accepted"
