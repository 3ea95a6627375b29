"""Simulated QCoDeS instruments: each signal shows its feature where the ground truth says.

These tests read the truth on purpose (calibrations never may): they check that what the
digitiser records is the chip described by device.yaml, so a calibration that recovers the
truth from these signals is measuring, not guessing. Fault injection and the station YAML are
the other half: what a flow has to survive, and what a lab edits to use its own drivers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pytest
from devices import make_device
from scipy.optimize import curve_fit

from fluxcal.calibrations.fitting.resonator import fit_notch
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.simulated import InstrumentFault, SimulatedLab
from fluxcal.instruments.station import build_station, default_station_path, load_station

KINDS = ("light", "intermediate", "heavy")
#: Readout good enough to tell single shots apart (separation ≈ 6σ on the light device).
CLEAR_READOUT = {"amplitude": 0.1, "integration_time": 5e-6}


@dataclass
class Bench:
    """One qubit's instrument channels, its lab and its truth."""

    flux: object
    drive: object
    readout: object
    lab: SimulatedLab
    truth: dict[str, float]
    pi_duration: float

    def sweep(self, setting: str, values: np.ndarray) -> np.ndarray:
        self.readout.sweep_parameter(setting)
        self.readout.sweep_values(np.asarray(values, float))
        return self.readout.iq()

    def shots(self, setting: str, values: np.ndarray) -> np.ndarray:
        self.readout.sweep_parameter(setting)
        self.readout.sweep_values(np.asarray(values, float))
        return self.readout.iq_shots()


def bench_for(kind: str, seed: int = 5) -> Bench:
    """Instruments at the true operating point: sweet spot, dressed readout, resonant drive."""
    device = make_device(kind, seed)
    station = build_station(device)
    channels = {role: station.components[role].submodules["q0"] for role in ("flux", "drive")}
    readout = station.components["readout"].submodules["q0"]
    truth = device.truth()["q0"]
    pi_duration = device.config.qubits["q0"].drive.pi_duration
    channels["flux"].voltage(truth["flux_sweet_spot"])
    readout.frequency(truth["readout_frequency"])
    channels["drive"].frequency(truth["qubit_frequency"])
    channels["drive"].duration(pi_duration)
    return Bench(
        channels["flux"],
        channels["drive"],
        readout,
        station.components["readout"].lab,
        truth,
        pi_duration,
    )


@pytest.fixture
def light() -> Bench:
    return bench_for("light")


def principal_component(iq: np.ndarray) -> np.ndarray:
    """Project IQ points on the direction along which they vary most (sign arbitrary)."""
    centred = iq - iq.mean()
    points = np.stack([centred.real, centred.imag])
    axis = np.linalg.svd(points, full_matrices=False)[0][:, 0]
    return axis @ points


def oscillation_frequency(x: np.ndarray, y: np.ndarray) -> float:
    """Peak of a zero-padded spectrum: a starting guess for a fit."""
    padded = 16 * len(y)
    spectrum = np.abs(np.fft.rfft(y - y.mean(), padded))
    frequencies = np.fft.rfftfreq(padded, x[1] - x[0])
    return float(frequencies[1 + np.argmax(spectrum[1:])])


@pytest.mark.parametrize("kind", KINDS)
def test_resonator_dip_sits_at_the_thermal_mixture_frequency(kind: str) -> None:
    # A notch fit of the mixture's line lands at its deepest point within κ/10 (on the
    # intermediate chip, χ ≈ κ/2 and 20 % excited, ~0.06 κ away: the line is not one Lorentzian).
    bench = bench_for(kind)
    kappa = bench.truth["resonator_kappa"]
    frequency = bench.truth["resonator_dip_frequency"] + np.linspace(-3, 3, 201) * kappa
    fit = fit_notch(frequency, bench.sweep("readout_frequency", frequency))
    assert abs(fit.fr - bench.truth["resonator_dip_frequency"]) < kappa / 10


def test_resonator_dip_follows_the_qubit_state(light: Bench) -> None:
    # The dressed dip moves by the dispersive shift when the qubit is excited: heralded ground
    # versus heralded and π-pulsed, read with the π pulse and without.
    kappa = light.truth["resonator_kappa"]
    frequency = light.truth["readout_frequency"] + np.linspace(-1.5, 1.5, 201) * kappa
    light.drive.sequence("rabi")
    light.drive.herald(True)
    dips = []
    for amplitude in (0.0, light.truth["pi_amplitude"]):
        light.drive.amplitude(amplitude)
        dips.append(frequency[np.argmin(np.abs(light.sweep("readout_frequency", frequency)))])
    shift = dips[1] - dips[0]
    assert shift == pytest.approx(light.truth["dispersive_shift"], abs=0.1 * kappa)


@pytest.mark.parametrize("kind", KINDS)
def test_two_tone_peak_at_qubit_frequency(kind: str) -> None:
    bench = bench_for(kind)
    f01 = bench.truth["qubit_frequency"]
    bench.drive.sequence("saturation")
    bench.drive.amplitude(2e-4 * bench.truth["pi_amplitude"])  # Rabi rate ~1 kHz: weak tone
    offset_khz = np.linspace(-20, 20, 201)
    iq = bench.sweep("drive_frequency", f01 + 1e3 * offset_khz)
    response = np.abs(iq - np.median(iq[:40]))
    assert response.max() > 6 * np.std(response[:40])

    def lorentzian(x, height, centre, half_width, floor):
        return height / (1 + ((x - centre) / half_width) ** 2) + floor

    start = [response.max(), offset_khz[np.argmax(response)], 1.0, 0.0]
    (_, centre_khz, _, _), _ = curve_fit(lorentzian, offset_khz, response, p0=start)
    assert abs(centre_khz) < 0.5


def rabi_fit(amplitude: np.ndarray, iq: np.ndarray) -> tuple[float, float]:
    """(π amplitude, contrast) from P_flip = sin²(π·a / (2·a_π))."""
    y = principal_component(iq)
    guess = 1 / (2 * oscillation_frequency(amplitude, y))

    def model(a, contrast, a_pi, offset):
        return contrast * np.sin(np.pi * a / (2 * a_pi)) ** 2 + offset

    start = [y[np.argmin(np.abs(amplitude - guess))] - y[0], guess, y[0]]
    (contrast, a_pi, _), _ = curve_fit(model, amplitude, y, p0=start)
    return a_pi, abs(contrast)


@pytest.mark.parametrize("kind", KINDS)
def test_rabi_period_gives_pi_amplitude(kind: str) -> None:
    bench = bench_for(kind)
    bench.drive.sequence("rabi")
    amplitude = np.linspace(0, 2.5 * bench.truth["pi_amplitude"], 201)
    pi_amplitude, _ = rabi_fit(amplitude, bench.sweep("drive_amplitude", amplitude))
    assert pi_amplitude == pytest.approx(bench.truth["pi_amplitude"], rel=0.01)


def test_heralding_increases_rabi_contrast(light: Bench) -> None:
    light.readout.amplitude(CLEAR_READOUT["amplitude"])
    light.readout.integration_time(CLEAR_READOUT["integration_time"])
    light.drive.sequence("rabi")
    amplitude = np.linspace(0, 2.5 * light.truth["pi_amplitude"], 201)
    contrast = {}
    for herald in (False, True):
        light.drive.herald(herald)
        contrast[herald] = rabi_fit(amplitude, light.sweep("drive_amplitude", amplitude))[1]
    # Without heralding the contrast is that of the thermal polarisation p0 − p1.
    polarisation = 1 - 2 * light.truth["thermal_population"]
    assert contrast[True] / contrast[False] == pytest.approx(1 / polarisation, rel=0.15)


@pytest.mark.parametrize("detuning", [1.0e6, -2.0e6])
def test_ramsey_fringes_at_the_set_detuning(light: Bench, detuning: float) -> None:
    light.drive.sequence("ramsey")
    light.drive.amplitude(light.truth["pi_amplitude"])
    light.drive.frequency(light.truth["qubit_frequency"] + detuning)
    delay_us = np.linspace(0, 5, 201)
    y = principal_component(light.sweep("delay", delay_us * 1e-6))
    y = y / np.std(y)  # centred and of unit scale

    def fringe(t, amplitude, f_mhz, phase, offset):
        return amplitude * np.cos(2 * np.pi * f_mhz * t + phase) + offset

    start = [np.ptp(y) / 2, oscillation_frequency(delay_us, y), 0.0, 0.0]
    (_, f_mhz, _, _), _ = curve_fit(fringe, delay_us, y, p0=start)
    assert abs(f_mhz) * 1e6 == pytest.approx(abs(detuning), rel=5e-3)


def classify(shots: np.ndarray, ground: complex, excited: complex) -> np.ndarray:
    """True for shots on the excited side of the midpoint between the blob centres."""
    axis = (excited - ground) / abs(excited - ground)
    return ((shots - ground) * np.conj(axis)).real > abs(excited - ground) / 2


def test_single_shot_blobs_and_thermal_population(light: Bench) -> None:
    light.readout.amplitude(CLEAR_READOUT["amplitude"])
    light.readout.integration_time(CLEAR_READOUT["integration_time"])
    light.readout.shots(2000)
    light.drive.sequence("rabi")
    prepared = [0.0, light.truth["pi_amplitude"]]
    light.drive.herald(True)
    heralded = light.shots("drive_amplitude", prepared)  # (2, 2000): ground, then excited
    light.drive.herald(False)
    unheralded = light.shots("drive_amplitude", prepared)

    ground = complex(np.median(heralded[0].real), np.median(heralded[0].imag))
    excited = complex(np.median(heralded[1].real), np.median(heralded[1].imag))
    axis = (excited - ground) / abs(excited - ground)
    spread = np.std(((heralded[0] - ground) * np.conj(axis)).imag)  # across the axis: no tails
    assert abs(excited - ground) > 5 * spread

    excited_fraction = classify(unheralded, ground, excited).mean(axis=-1)
    thermal = light.truth["thermal_population"]
    assert excited_fraction[0] == pytest.approx(thermal, abs=0.03)
    assert excited_fraction[1] == pytest.approx(1 - thermal, abs=0.03)
    assert classify(heralded[0], ground, excited).mean() < 0.02


def test_a_201_point_sweep_is_one_acquisition(light: Bench) -> None:
    before = light.lab.acquisition_count()
    light.sweep("flux_voltage", light.truth["flux_sweet_spot"] + np.linspace(-0.1, 0.1, 201))
    assert light.lab.acquisition_count() == before + 1
    light.shots("readout_frequency", light.truth["readout_frequency"] + np.array([0.0, 1e5]))
    assert light.lab.acquisition_count() == before + 2


def test_unswept_acquisition_repeats_one_point(light: Bench) -> None:
    light.readout.sweep_parameter("none")
    light.readout.sweep_values(np.zeros(3))
    iq = light.readout.iq()
    assert iq.shape == (3,) and np.all(iq == iq[0])


def test_injected_timeout_raises_once() -> None:
    station = build_station(make_device("light", 5))
    readout = station.components["readout"]
    readout.inject_fault("timeout", "q0")
    channel = readout.submodules["q0"]
    channel.sweep_parameter("readout_frequency")
    channel.sweep_values(np.linspace(6.99e9, 7.01e9, 21))
    with pytest.raises(InstrumentFault, match="timed out") as caught:
        channel.iq()
    assert isinstance(caught.value, TimeoutError)  # what flows retry on
    assert np.all(np.isfinite(channel.iq()))  # only `count` acquisitions fail


@pytest.mark.parametrize("kind", ["glitch", "nan"])
def test_injected_glitch_and_nan_corrupt_the_trace(kind: str) -> None:
    station = build_station(make_device("light", 5))
    readout = station.components["readout"]
    channel = readout.submodules["q0"]
    channel.sweep_parameter("readout_frequency")
    channel.sweep_values(np.linspace(6.99e9, 7.01e9, 201))
    clean = channel.iq()
    readout.inject_fault(kind, "q0")
    corrupted = channel.iq()
    if kind == "nan":
        assert np.isnan(corrupted).sum() >= 20
    else:
        assert np.abs(corrupted).max() > 5 * np.abs(clean).max()
    assert np.all(np.isfinite(channel.iq()))


def test_faults_hit_only_the_named_qubit() -> None:
    station = build_station(SimulatedDevice.from_yaml(time=0.0))  # the two-qubit chip
    readout = station.components["readout"]
    readout.inject_fault("timeout", "q1")
    assert np.all(np.isfinite(readout.submodules["q0"].iq()))
    with pytest.raises(InstrumentFault):
        readout.submodules["q1"].iq()
    with pytest.raises(ValueError, match="unknown fault"):
        readout.inject_fault("fire")


def test_station_yaml_loads_and_snapshots_cleanly(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        station = load_station(default_station_path())
        snapshot = station.snapshot(update=True)
    assert set(snapshot["instruments"]) >= {"flux", "drive", "readout"}
    idn = snapshot["instruments"]["readout"]["parameters"]["IDN"]["value"]
    assert idn["vendor"] == "fluxcal" and idn["model"] == "SimulatedDigitiser"
    assert "q0" in snapshot["instruments"]["drive"]["submodules"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert "Traceback" not in caplog.text
