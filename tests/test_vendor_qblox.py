"""The contract over a real vendor driver: Qblox's QCoDeS driver with its dummy Cluster.

Sequences are compiled to Q1ASM, assembled by the vendor's own assembler inside the dummy,
uploaded, armed and started through the driver, and the bins read back through it; the
dummy's bins come from fluxcal's fluxonium physics, computed from what was compiled. Heralded
sequences acquire a herald and a measurement bin per shot and keep the shots whose herald
read ground. The drive has a baseband QCM path and an upconverted QCM-RF path (LO + NCO,
one LO setting per segment of a sweep); a station without the QCM-RF keeps the baseband
range. Skips where `qblox-instruments` (extra `qblox`) is not installed.

The whole chain (all twelve nodes, ~30 min on a loaded box) runs in
`benchmarks/bench_qblox_chain.py`; here
a representative part: the resonator and readout nodes, then the heralded Rabi and T1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("qblox_instruments")

from fluxcal.calibrations.experiments.rabi import Rabi
from fluxcal.calibrations.experiments.readout_power import ReadoutPower
from fluxcal.calibrations.experiments.resonator_spectroscopy import ResonatorSearch
from fluxcal.calibrations.experiments.t1 import T1
from fluxcal.calibrations.session import QubitSession
from fluxcal.instruments import qblox, signals
from fluxcal.instruments.conformance import CHECKS
from fluxcal.instruments.contract import ContractError
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.qblox import herald_ground, lo_plan
from fluxcal.instruments.qblox_program import (
    PointTimeline,
    drive_program,
    period_ns,
    readout_program,
)
from fluxcal.instruments.station import load_station
from fluxcal.snapshots import CalibratedParameter

STATION = Path(__file__).resolve().parents[1] / "instruments" / "qblox_station.yaml"
#: A lab states its readout band; 100 MHz around the built-in q0's resonator keeps it short.
BAND = (6.95e9, 7.05e9)


@pytest.fixture
def station(tmp_path, monkeypatch):
    """The dummy assembles in the working directory (tmp.q1asm): keep that in tmp_path."""
    monkeypatch.chdir(tmp_path)
    station = load_station(STATION)
    station.components["readout"].simulated_device.time = 0.0  # the truth's clock: no drift
    return station


@pytest.fixture
def baseband_station(tmp_path, monkeypatch):
    """The shipped station without its QCM-RF: a drive of one baseband QCM."""
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load(STATION.read_text())
    init = config["instruments"]
    del init["cluster"]["init"]["dummy_cfg"]["3"]
    del init["drive"]["init"]["rf_wiring"], init["drive"]["init"]["rf_full_scale"]
    path = tmp_path / "baseband_station.yaml"
    path.write_text(yaml.safe_dump(config))
    station = load_station(path)
    station.components["readout"].simulated_device.time = 0.0
    return station


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_qblox_adapter_conforms(check, station) -> None:
    """On the shipped station: the drive's range is both paths' (0 … 18 GHz), so the
    drive-frequency sweeps run through the QCM-RF in several LO segments."""
    check(station, "q0")


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_baseband_only_adapter_conforms(check, baseband_station) -> None:
    check(baseband_station, "q0")


def test_drive_tones_reach_the_physics_through_their_path_and_lo(station, monkeypatch) -> None:
    """A sweep over baseband and 2.4 GHz of upconverted tones runs in parts: the baseband
    tones in one program, the others in one program per LO segment, each within the NCO's
    reach of its LO; the physics sees every tone at LO + NCO, read back from the driver."""
    rf_module = station.components["cluster"].module3
    seen: list[tuple[np.ndarray, float]] = []
    measure = signals.averaged_iq

    def spy(physics, bias, pulse, settings, rng):
        lo = float(rf_module.out0_lo_freq()) if np.max(pulse.frequency) > 5e8 else 0.0
        seen.append((np.array(pulse.frequency, float), lo))
        return measure(physics, bias, pulse, settings, rng)

    monkeypatch.setattr(signals, "averaged_iq", spy)
    readout, drive = station.components["readout"].q0, station.components["drive"].q0
    values = np.concatenate([[1e8, 3e8], np.linspace(2e9, 4.4e9, 13)])
    readout.shots(16)
    readout.sweep_parameter("drive_frequency")
    readout.sweep_values(values)
    drive.sequence("saturation")
    drive.amplitude(0.01)
    assert np.all(np.isfinite(readout.iq.get()))
    played = np.sort(np.concatenate([frequency for frequency, _ in seen]))
    assert played == pytest.approx(np.sort(values), rel=1e-12)
    baseband = [f for f, lo in seen if lo == 0.0]
    assert len(baseband) == 1 and np.all(baseband[0] <= 5e8)
    upconverted = [(f, lo) for f, lo in seen if lo]
    assert len(upconverted) == 4  # 2.0 … 4.4 GHz: four segments of 800 MHz
    assert all(np.all(np.abs(f - lo) <= 4e8 + 1) for f, lo in upconverted)


def test_lo_plan_centres_the_lo_and_refuses_what_one_lo_cannot_serve() -> None:
    assert lo_plan(np.array([3.0e9, 3.1e9, 3.8e9]), 5e8) == 3.4e9
    with pytest.raises(ContractError, match="more than one LO setting"):
        lo_plan(np.array([3.0e9, 4.2e9]), 5e8)


def _program_ns(program: str) -> int:
    """Real-time length of one shot of a Q1ASM program: its waits, upd_params and plays."""
    total = 0
    for line in program.splitlines():
        words = line.replace(",", " ").split()
        if words and words[0] in ("wait", "upd_param"):
            total += int(words[1])
        elif words and words[0] in ("play", "acquire"):
            total += int(words[3])
    return total


def test_heralded_programs_acquire_twice_per_shot_and_stay_in_step() -> None:
    """Herald into acquisition 0, measurement into 1, the same bin; drive and readout
    sequencers take exactly the same time per point, so they never drift apart."""
    from fluxcal.instruments.pulses import ResolvedPulse

    pulses = (
        ResolvedPulse("square", 0.2, 48e-9, 0.0, 0.0),
        ResolvedPulse("gaussian", 0.2, 40e-9, 1.0, 1e-6),
    )
    points = [
        PointTimeline(1e8, pulses, trailing, 3e6, 0.1, 1000, True, 400, 20000)
        for trailing in (0, 70_001)  # no wait, and one split over two `wait`s
    ]
    drive = drive_program(points, 3, {40: 0})
    readout = readout_program(points, 3, single=False)
    assert _program_ns(drive) == _program_ns(readout) == sum(period_ns(p) for p in points)
    assert readout.count("acquire 0, R1") == 2 and readout.count("acquire 1, R1") == 2
    assert readout.count("add R1, 1, R1") == 2


def test_herald_keeps_the_ground_blob_and_keeps_all_when_blobs_overlap() -> None:
    rng = np.random.default_rng(3)
    excited = rng.random((4, 2000)) < 0.35
    noise = rng.standard_normal((4, 2000)) + 1j * rng.standard_normal((4, 2000))
    shots = np.where(excited, 1.0 + 2.0j, 0.2 - 0.5j) + 0.15 * noise
    keep = herald_ground(shots)
    assert np.mean(keep[~excited]) > 0.99 and np.mean(keep[excited]) < 0.01
    assert herald_ground(0.2 - 0.5j + 0.15 * noise).all()  # one blob: nothing to tell apart


def test_more_shots_than_bins_are_taken_in_several_runs(station, monkeypatch) -> None:
    """A sequencer holds 131 072 bins; here 600, so 500 single shots of 3 points, and 500
    heralded shots (two bins each), need several runs of the program."""
    monkeypatch.setattr(qblox, "MAX_BINS", 600)
    readout, drive = station.components["readout"].q0, station.components["drive"].q0
    readout.shots(500)
    readout.sweep_parameter("drive_amplitude")
    readout.sweep_values(np.array([0.0, 0.05, 0.1]))
    drive.sequence("rabi")
    assert readout.iq_shots.get().shape == (3, 500)
    drive.herald(True)
    assert np.all(np.isfinite(readout.iq.get()))
    assert readout.iq_shots.get().shape == (3, 500)


def _known(value: float, stderr: float, source: str) -> CalibratedParameter:
    return CalibratedParameter(value, stderr, "", source, "2026-01-01T00:00:00+00:00")


def test_chain_runs_through_the_vendor_driver_and_meets_the_truth(station) -> None:
    """resonator_search → readout_power → rabi → t1 on the dummy Cluster, Rabi and T1
    heralded; qubit frequency and sweet spot (from nodes not run here) are the truth. Same
    tolerances as the simulated lab: readout at the line within a tenth of κ, π amplitude
    within 2 %, T1 within 15 %."""
    truth = SimulatedDevice.from_yaml(time=0.0).truth()["q0"]
    session = QubitSession(station, "q0", {})
    for node in (ResonatorSearch(band=BAND), ReadoutPower()):
        analysis = node.analyse(node.acquire(session))
        outcome = node.gate(analysis)
        assert outcome.accepted, (node.name, outcome.reason)
        for name, (value, stderr) in analysis.values.items():
            session.known[name] = _known(value, stderr, node.name)
    kappa = truth["resonator_kappa"]
    assert session.value("readout_frequency") == pytest.approx(
        truth["resonator_dip_frequency"], abs=0.1 * kappa
    )
    for name in ("qubit_frequency", "flux_sweet_spot"):
        session.known[name] = _known(truth[name], 0.0, "truth")
    for node, name, tolerance in ((Rabi(), "pi_amplitude", 0.02), (T1(), "T1", 0.15)):
        assert node.herald  # the node's default: a herald before every shot
        analysis = node.analyse(node.acquire(session))
        outcome = node.gate(analysis)
        assert outcome.accepted, (node.name, outcome.reason)
        assert analysis.values[name][0] == pytest.approx(truth[name], rel=tolerance), name
        for key, (value, stderr) in analysis.values.items():
            session.known[key] = _known(value, stderr, node.name)
    assert station.components["readout"].q0.device_time() > 0
    idn = station.components["readout"].get_idn()
    assert idn["vendor"] == "qblox" and "QbloxReadout" in idn["model"]


def test_a_sweep_beyond_the_drive_nco_is_refused_in_one_line(baseband_station) -> None:
    """Without a QCM-RF the drive reaches what a QCM's NCO does, 500 MHz: a spectroscopy
    sweep past it is refused, naming the setting and its range, before anything is compiled."""
    readout = baseband_station.components["readout"].q0
    readout.sweep_parameter("drive_frequency")
    readout.sweep_values(np.linspace(300e6, 700e6, 5))
    with pytest.raises(ContractError, match=r"outside drive\.q0\.frequency's 0…5e\+08"):
        readout.iq.get()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.linspace(300e6, 700e6, 5), r"2 values \(6e\+08…7e\+08\) lie between drive\.q0"),
        (np.linspace(1.8e9, 2.2e9, 5), r"2 values \(1\.8e\+09…1\.9e\+09\) lie between"),
        (np.linspace(17e9, 19e9, 5), r"outside drive\.q0\.frequency's 0…1\.8e\+10"),
    ],
)
def test_tones_the_drive_paths_cannot_play_are_refused_in_one_line(
    station, values, message
) -> None:
    """With the QCM-RF the drive reaches 0 … 500 MHz (QCM) and 2 … 18 GHz (QCM-RF, LO + NCO):
    a sweep into the gap between them, or beyond, is refused naming the bands."""
    readout = station.components["readout"].q0
    readout.sweep_parameter("drive_frequency")
    readout.sweep_values(values)
    with pytest.raises(ContractError, match=message):
        readout.iq.get()
    with pytest.raises(ValueError, match="lies between the bands"):
        station.components["drive"].q0.frequency(1e9)
