"""Device time per node: counted by the driver, stored in the snapshot, shown by the CLI.

The fridge's time is what calibration costs a lab, so each node's share must be known, not
estimated after the fact: the simulated digitiser counts shots × repetitions × repetition
time per qubit (`device_time`), the runner records the difference over each acquisition, and
the snapshot keeps it next to the experiment's outcome.
"""

from __future__ import annotations

import math

import pytest
from devices import make_device
from typer.testing import CliRunner

from fluxcal.calibrations.graph import DEFAULT_GRAPH
from fluxcal.calibrations.persist import save_run
from fluxcal.calibrations.runner import GraphRun, run_node
from fluxcal.calibrations.session import QubitSession
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import CalibratedParameter, SnapshotStore
from fluxcal.snapshots.cli import app


@pytest.fixture
def session() -> QubitSession:
    device = make_device("light", seed=3)
    truth = device.truth()["q0"]
    known = {
        name: CalibratedParameter(truth[key], 0.0, "Hz", "truth", "")
        for name, key in (
            ("readout_frequency", "resonator_dip_frequency"),
            ("resonator_kappa", "resonator_kappa"),
        )
    }
    return QubitSession(build_station(device), "q0", known)


def repetition_time(session: QubitSession) -> float:
    lab = session.station.components["readout"].lab
    return lab.device.physics("q0").config.readout.repetition_time


def test_a_node_records_the_device_time_its_shots_took(session) -> None:
    node = DEFAULT_GRAPH["readout_power"].node()
    result = run_node(DEFAULT_GRAPH["readout_power"], "readout_power", session)
    assert result.outcome == "accepted", result.reason
    # averaged, no qubit pulses: continuous-wave, each shot costs its integration time;
    # one point per amplitude and readout frequency (5)
    expected = node.points * 5 * node.shots * node.readout_duration
    assert result.device_s == pytest.approx(expected)
    assert session.device_time() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("herald", "single_shot", "repetitions"), [(False, True, 1), (True, False, 2)]
)
def test_pulsed_shots_cost_the_repetition_time(session, herald, single_shot, repetitions) -> None:
    """A shot after a qubit pulse, or a single shot, waits for the qubit to relax first."""
    session.configure(
        drive={"sequence": "rabi", "amplitude": 0.0, "herald": herald}, readout={"shots": 200}
    )
    session.measure("cost", "drive_amplitude", [0.0, 0.1, 0.2], single_shot=single_shot)
    assert session.device_time() == pytest.approx(3 * 200 * repetitions * repetition_time(session))


def test_without_a_device_time_parameter_the_acquisition_wall_time_stands_in(session) -> None:
    del session.channel("readout").parameters["device_time"]  # a driver that cannot count
    assert session.device_time() is None
    result = run_node(DEFAULT_GRAPH["readout_power"], "readout_power", session)
    assert 0 < result.device_s == pytest.approx(result.acquire_s, rel=0.05)


def test_the_snapshot_keeps_each_nodes_device_time_and_the_cli_shows_it(session, tmp_path):
    result = run_node(DEFAULT_GRAPH["readout_power"], "readout_power", session)
    run = GraphRun({"q0": {"readout_power": result}}, {"q0": dict(result.parameters)})
    store = SnapshotStore(tmp_path / "store")
    version = save_run(store, run, session.station, "test", {})
    record = store.load(version).experiments("q0")["readout_power"]
    assert record.device_seconds == pytest.approx(result.device_s)
    output = CliRunner().invoke(app, ["show", str(version), "--store", str(store.path)])
    assert output.exit_code == 0, output.output
    assert "device time" in output.stdout
    shown = f"{result.device_s:.1f} s"  # 77.5 s: below two minutes, shown in seconds
    assert shown in output.stdout.split("reason\n")[-1]
    assert f"device time in total: {shown}" in output.stdout


def test_records_written_without_device_time_read_back_as_not_recorded(tmp_path) -> None:
    from fluxcal.snapshots import ExperimentRecord

    store = SnapshotStore(tmp_path / "store")
    store.save({"q0": {}}, {"q0": {"t1": ExperimentRecord(None, {}, "skipped", "not due")}})
    assert math.isnan(store.load(1).experiments("q0")["t1"].device_seconds)


def test_drift_check_probes_take_the_shots_their_tolerance_needs_and_record_them() -> None:
    """A drift check on an undrifted chip: each check's device time is recorded with its
    decision, they add up to the qubit's count, and a probe sized by precision uses fewer
    shots than the fixed count it replaces on a chip with a clear readout."""
    import datetime as dt

    from prefect_support import truth_parameters

    from fluxcal.flows.checks import CHECKS
    from fluxcal.flows.maintain import maintain_qubit, run_check
    from fluxcal.flows.probes import MAX_SHOTS

    device = make_device("light", seed=1)
    station = build_station(device)
    names = (
        "qubit_frequency",
        "readout_frequency",
        "flux_sweet_spot",
        "resonator_kappa",
        "pi_amplitude",
        "T1",
    )
    session = QubitSession(station, "q0", truth_parameters(device, names)["q0"])
    graph = {name: DEFAULT_GRAPH[name] for name in ("rabi", "t1")}

    def never(name: str, _: QubitSession):
        raise AssertionError(f"{name} recalibrated on an undrifted chip")

    start = session.device_time()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    walk = maintain_qubit(graph, CHECKS, session, later, run_check, never)
    assert {n: d.action for n, d in walk.decisions.items()} == {"rabi": "kept", "t1": "kept"}
    assert walk.device_s == pytest.approx(session.device_time() - start)
    # the π-amplitude probe: 8 amplitudes × 2 repeats, heralded (two repetition times a shot)
    fixed = 8 * 2 * MAX_SHOTS * 2 * repetition_time(session)
    assert 0 < walk.decisions["rabi"].device_s < fixed / 4
