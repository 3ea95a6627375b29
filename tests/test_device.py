"""The simulated chip: device.yaml validation, ground truth, and drift as a function of time."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from fluxcal.instruments.device import SimulatedDevice, default_device_path
from fluxcal.instruments.device_config import DeviceConfigError
from fluxcal.instruments.drift import drift_at
from fluxcal.instruments.station import build_station

CANONICAL = (
    "readout_frequency",
    "flux_period",
    "flux_sweet_spot",
    "qubit_frequency",
    "EJ",
    "EC",
    "EL",
    "pi_amplitude",
    "T1",
    "T2_ramsey",
    "T2_echo",
)
HOUR = 3600.0
DAY = 24 * HOUR
PROBE = Path(__file__).with_name("drift_probe.py")


@pytest.fixture(scope="module")
def default_config() -> dict:
    return yaml.safe_load(default_device_path().read_text())


def write_device(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "device.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def test_default_device_loads_with_two_qubits() -> None:
    device = SimulatedDevice.from_yaml(time=0.0)
    assert device.qubits == ["q0", "q1"]
    assert device.now() == 0.0


def test_truth_has_every_canonical_name_in_si_units() -> None:
    truth = SimulatedDevice.from_yaml(time=0.0).truth()
    assert set(truth) == {"q0", "q1"}
    for qubit, values in truth.items():
        assert set(CANONICAL) <= set(values), qubit
        assert all(np.isfinite(values[name]) for name in CANONICAL), qubit
    q0 = truth["q0"]
    assert q0["EJ"] == 8.9e9 and q0["EC"] == 2.5e9 and q0["EL"] == 0.5e9  # Hz, not GHz
    assert q0["qubit_frequency"] == pytest.approx(363.42e6, abs=0.01e6)  # Hz
    assert abs(q0["readout_frequency"] - 7.0e9) < 2e6  # Hz, dressed by a few hundred kHz
    assert q0["flux_period"] == 0.84  # V per Φ0
    assert abs(q0["flux_sweet_spot"]) <= q0["flux_period"] / 2  # V, the one nearest 0 V
    assert 0 < q0["pi_amplitude"] < 2  # V, inside the AWG range
    assert 50e-6 < q0["T1"] < 1e-3  # s
    assert q0["T2_ramsey"] < q0["T2_echo"] <= 2 * q0["T1"]


def test_sweet_spot_voltage_is_half_flux(default_config: dict) -> None:
    device = SimulatedDevice.from_yaml(time=0.0)
    for qubit in device.qubits:
        voltage = device.truth()[qubit]["flux_sweet_spot"]
        flux = float(device.physics(qubit).flux(voltage))
        assert flux % 1.0 == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: c["qubits"]["q0"].pop("EC"), "qubits.q0.EC"),
        (lambda c: c["qubits"]["q0"].update(EJ=-1.0), "qubits.q0.EJ"),
        (lambda c: c["qubits"]["q1"]["resonator"].update(kappa=0.0), "qubits.q1.resonator.kappa"),
        (lambda c: c["qubits"]["q0"]["coherence"].update(T_1=1e-4), "qubits.q0.coherence.T_1"),
        (lambda c: c["qubits"]["q0"].update(seed="eleven"), "qubits.q0.seed"),
        (lambda c: c["qubits"]["q0"]["flux"].update(period="wide"), "qubits.q0.flux.period"),
        (lambda c: c["qubits"]["q0"]["events"][0].update(kind="quake"), "qubits.q0.events.0.kind"),
        (lambda c: c.update(qubits={}), "qubits"),
    ],
    ids=["missing", "negative", "zero", "unknown-key", "wrong-type", "string", "event", "empty"],
)
def test_bad_device_file_names_the_field(tmp_path, default_config, mutate, field) -> None:
    config = copy.deepcopy(default_config)
    mutate(config)
    with pytest.raises(DeviceConfigError, match=re.escape(f"{field}: ")):
        SimulatedDevice.from_yaml(write_device(tmp_path, config))


def test_unparsable_or_missing_file_is_a_config_error(tmp_path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: chip\nqubits: {q0: [unclosed\n")
    with pytest.raises(DeviceConfigError, match="not valid YAML"):
        SimulatedDevice.from_yaml(broken)
    with pytest.raises(DeviceConfigError, match="cannot read"):
        SimulatedDevice.from_yaml(tmp_path / "absent.yaml")


def test_bad_epoch_is_a_config_error(tmp_path, default_config) -> None:
    config = {**default_config, "epoch": "yesterday"}
    with pytest.raises(DeviceConfigError, match="epoch"):
        SimulatedDevice.from_yaml(write_device(tmp_path, config))


def test_any_number_of_qubits(tmp_path, default_config) -> None:
    template = default_config["qubits"]["q0"]
    qubits = {f"q{i}": {**copy.deepcopy(template), "seed": 100 + i} for i in range(3)}
    qubits["q2"]["EJ"] = 6.0
    device = SimulatedDevice.from_yaml(
        write_device(tmp_path, {**default_config, "qubits": qubits}), time=0.0
    )
    truth = device.truth()
    assert list(truth) == ["q0", "q1", "q2"]
    assert truth["q2"]["qubit_frequency"] != truth["q0"]["qubit_frequency"]
    station = build_station(device)
    for role in ("flux", "drive", "readout"):
        assert sorted(station.components[role].submodules) == ["q0", "q1", "q2"]
    readout = station.components["readout"].submodules["q2"]
    readout.sweep_parameter("readout_frequency")
    readout.sweep_values(np.linspace(6.99e9, 7.01e9, 11))
    assert readout.iq().shape == (11,)


def test_same_time_same_chip_within_one_process() -> None:
    time = 1.5 * DAY + 123.4
    first = SimulatedDevice.from_yaml(time=time).truth()
    second = SimulatedDevice.from_yaml().truth(time)
    assert first == second


def run_probe(*times: float) -> dict:
    result = subprocess.run(
        [sys.executable, str(PROBE), str(default_device_path()), *map(repr, times)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_same_time_same_chip_across_processes() -> None:
    times = (0.0, 5 * HOUR + 17.0, 2 * DAY + 0.5)
    first, second = run_probe(*times), run_probe(*times)
    assert first == second
    device = SimulatedDevice.from_yaml()
    for time in times:
        assert first[repr(time)] == device.truth(time)


def test_drift_spreads_like_a_random_walk() -> None:
    qubit = SimulatedDevice.from_yaml().config.qubits["q0"]
    walk = qubit.drift.flux_walk  # Φ0/√hour
    seeds = [qubit.model_copy(update={"seed": seed}) for seed in range(300)]
    spread = {
        hours: np.std([drift_at(q, hours * HOUR).flux_offset_phi0 for q in seeds])
        for hours in (1.0, 4.0, 16.0)
    }
    assert spread[1.0] == pytest.approx(walk, rel=0.2)
    assert spread[4.0] == pytest.approx(2 * walk, rel=0.2)
    assert spread[16.0] == pytest.approx(4 * walk, rel=0.2)


def test_drift_moves_the_chip_over_time() -> None:
    device = SimulatedDevice.from_yaml()
    start, later = device.truth(0.0)["q1"], device.truth(12 * HOUR)["q1"]
    assert start["flux_sweet_spot"] != later["flux_sweet_spot"]
    assert start["readout_frequency"] != later["readout_frequency"]
    assert start["EJ"] == later["EJ"]  # the junction itself does not drift


def test_flux_jump_moves_the_sweet_spot_only_after_it_happens(tmp_path, default_config) -> None:
    config = copy.deepcopy(default_config)
    q0 = config["qubits"]["q0"]
    q0["drift"] = {"flux_walk": 0.0, "resonator_walk": 0.0}  # isolate the event
    q0["events"] = [{"time": 10 * HOUR, "kind": "flux_jump", "size": 0.004}]
    device = SimulatedDevice.from_yaml(write_device(tmp_path, config))
    sweet_spot = {
        t: device.truth(t)["q0"]["flux_sweet_spot"] for t in (0.0, 9.99 * HOUR, 10 * HOUR)
    }
    assert sweet_spot[9.99 * HOUR] == sweet_spot[0.0]
    jump = sweet_spot[10 * HOUR] - sweet_spot[0.0]
    # Φext = (V − offset)/period + drift: extra flux means half flux is reached at lower V.
    assert jump == pytest.approx(-0.004 * q0["flux"]["period"], rel=1e-9)


def test_scheduled_flux_jump_in_the_default_device(default_config) -> None:
    event = default_config["qubits"]["q0"]["events"][0]
    period = default_config["qubits"]["q0"]["flux"]["period"]
    device = SimulatedDevice.from_yaml()

    def sweet_spot(t: float) -> float:
        return device.truth(t)["q0"]["flux_sweet_spot"]

    before = sweet_spot(event["time"] - 1.0) - sweet_spot(event["time"] - 2.0)
    across = sweet_spot(event["time"] + 0.5) - sweet_spot(event["time"] - 0.5)
    walk_per_second = 1e-5 * period  # the random walk moves ~1e-5 Φ0 in a second at most
    assert abs(before) < walk_per_second
    assert abs(across + event["size"] * period) < walk_per_second


def test_t1_fluctuates_smoothly() -> None:
    device = SimulatedDevice.from_yaml()
    times = np.arange(0.0, 2 * DAY, 0.5 * HOUR)
    t1 = np.array([device.physics("q0", t).t1 for t in times])
    assert np.all(t1 > 0)
    assert t1.max() / t1.min() > 1.3
    minute_later = np.array([device.physics("q0", t + 60.0).t1 for t in times])
    assert np.abs(np.log(minute_later / t1)).max() < 0.05  # a slow wander, not a jump
