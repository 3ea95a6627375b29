"""A chip drifts between checks: the drift check finds it and recalibrates only what moved.

A heavy fluxonium is calibrated once with the full chain at device time 0. Its device file
schedules two flux jumps: a small one (3·10⁻⁴ Φ0) at one hour and a large one (10⁻³ Φ0, a
thermal event) at three hours. The tests follow the chip through the day, in order:

- half an hour in, everything is in spec and nothing is written;
- two hours in, the qubit frequency has risen by ~110 kHz at the stored bias: the qubit-based
  sweet-spot refinement is redone, the resonator scan is not;
- four hours in, the qubit is out of reach of the short check (bad data): the resonator scan
  is redone, then whatever the new bias needs.

Nodes that do not depend on the flux offset are never recalibrated. The walk runs without
Prefect here (its flow form is tested in test_flows_logic.py).
"""

from __future__ import annotations

import datetime as dt

import pytest
from prefect_support import device_with_events

from fluxcal.calibrations.graph import DEFAULT_GRAPH
from fluxcal.calibrations.persist import save_run
from fluxcal.calibrations.runner import run_graph
from fluxcal.flows.drift import drift_check_plain
from fluxcal.flows.lab import LiveStation
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import SnapshotStore

HOUR_S = 3600.0
SMALL_JUMP, LARGE_JUMP = 3e-4, 1e-3  # Φ0
FULL_CHAIN = len(DEFAULT_GRAPH)  # calibration experiments in a full chain
UNAFFECTED = {"resonator_search", "resonator_spectroscopy", "qubit_flux_spectroscopy", "rabi", "t1"}


@pytest.fixture(scope="module")
def chip(tmp_path_factory):
    """(device, station, store, wall time of the calibration) after one full chain."""
    events = [
        {"time": 1 * HOUR_S, "kind": "flux_jump", "size": SMALL_JUMP},
        {"time": 3 * HOUR_S, "kind": "flux_jump", "size": LARGE_JUMP},
    ]
    device = device_with_events("heavy", 1, events, time=0.0)
    station = build_station(device)
    store = tmp_path_factory.mktemp("drift") / "store"
    run = run_graph(station, ["q0"])
    assert all(r.outcome == "accepted" for r in run.results["q0"].values()), run.outcomes()
    save_run(SnapshotStore(store), run, station, "initial calibration")
    return device, station, store, dt.datetime.now(dt.UTC)


def check_at(chip, hours: float):
    """Advance the chip's clock and the parameters' age together, then run the drift check."""
    device, station, store, calibrated_at = chip
    device.time = hours * HOUR_S
    return drift_check_plain(
        station=LiveStation(station),
        store=str(store),
        now=calibrated_at + dt.timedelta(hours=hours),
    )


def assert_back_on_the_sweet_spot(chip, report):
    device, _, store, _ = chip
    snapshot = SnapshotStore(store).load()
    assert snapshot.version == report.version
    truth = device.truth()["q0"]
    new = snapshot.parameters["q0"]
    assert abs(new["qubit_frequency"].value - truth["qubit_frequency"]) < 20e3
    period = truth["flux_period"]
    assert abs(new["flux_sweet_spot"].value - truth["flux_sweet_spot"]) < 0.002 * period
    return new


def test_no_drift_recalibrates_nothing_and_writes_no_snapshot(chip):
    store = SnapshotStore(chip[2])
    before = store.current_version()

    report = check_at(chip, 0.5)

    assert report.recalibrated() == {"q0": []}, report.summary()
    assert report.version is None
    assert store.current_version() == before
    counts = report.experiments()
    assert counts["calibrations"] == 0
    assert 0 < counts["checks"] < FULL_CHAIN  # one shared qubit probe serves four nodes
    verdicts = {d.check.verdict for d in report.qubits["q0"].decisions.values() if d.check}
    assert verdicts == {"in_spec"}


def test_a_small_flux_jump_is_refined_on_the_qubit_without_a_resonator_scan(chip):
    old = SnapshotStore(chip[2]).load().parameters["q0"]

    report = check_at(chip, 2)

    decisions = report.qubits["q0"].decisions
    assert decisions["resonator_flux"].action == "kept", report.summary()
    assert decisions["sweet_spot"].check.verdict == "out_of_spec"  # f01 rose at the old bias
    assert decisions["sweet_spot"].action == "recalibrated"
    assert not set(report.recalibrated()["q0"]) & UNAFFECTED
    assert report.experiments()["calibrations"] <= 3
    new = assert_back_on_the_sweet_spot(chip, report)
    moved = abs(new["flux_sweet_spot"].value - old["flux_sweet_spot"].value)
    assert moved == pytest.approx(SMALL_JUMP * chip[0].truth()["q0"]["flux_period"], rel=0.3)


def test_a_large_flux_jump_rescans_the_resonator_and_recalibrates_only_what_depends_on_it(chip):
    report = check_at(chip, 4)

    decisions = report.qubits["q0"].decisions
    assert decisions["resonator_flux"].check.verdict == "bad_data", report.summary()
    assert decisions["resonator_flux"].action == "recalibrated"
    assert "resonator_search" in decisions["resonator_flux"].diagnosis
    recalibrated = set(report.recalibrated()["q0"])
    assert not recalibrated & UNAFFECTED, recalibrated
    assert report.experiments()["calibrations"] <= FULL_CHAIN // 2
    assert_back_on_the_sweet_spot(chip, report)
