"""Fluxonium model and simulated-instrument timings: what a calibration chain pays to simulate.

Spectrum versus flux (201 points, 6 levels) for the default device's q0 and for the slowest
corner of the convergence grid (EJ = 20, EC = 20, EL = 0.1 GHz, the largest basis), with the
model's construction (automatic cutoff choice, operator build) timed separately; then one
201-point hardware sweep on each simulated-instrument setting the calibrations use.

Run: .venv/bin/python benchmarks/bench_model.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.fluxonium import FluxoniumModel
from fluxcal.instruments.station import build_station

POINTS = 201
LEVELS = 6


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of `repeat` calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def model_timings(label: str, ej: float, ec: float, el: float) -> None:
    flux = np.linspace(0.0, 1.0, POINTS)

    def construct() -> FluxoniumModel:
        model = FluxoniumModel(ej, ec, el)
        model.hamiltonian(0.5)  # builds the cached operators
        return model

    t_build = timed(construct, 5)
    model = construct()
    t_energies = timed(lambda: model.energies(flux, LEVELS), 10)
    t_spectrum = timed(lambda: model.spectrum(flux, LEVELS), 10)
    print(f"{label} (EJ={ej}, EC={ec}, EL={el} GHz, cutoff {model.cutoff}):")
    print(f"  construction (cutoff choice + operators):      {t_build * 1e3:8.1f} ms")
    print(f"  energies, {POINTS} flux points, {LEVELS} levels:          {t_energies * 1e3:8.1f} ms")
    print(f"  spectrum with matrix elements, same points:   {t_spectrum * 1e3:8.1f} ms")


def instrument_timings() -> None:
    device = SimulatedDevice.from_yaml(time=0.0)
    truth = device.truth()["q0"]
    station = build_station(device)
    flux = station.components["flux"].submodules["q0"]
    drive = station.components["drive"].submodules["q0"]
    readout = station.components["readout"].submodules["q0"]
    flux.voltage(truth["flux_sweet_spot"])
    readout.frequency(truth["readout_frequency"])
    drive.frequency(truth["qubit_frequency"])
    kappa, pi_amplitude = truth["resonator_kappa"], truth["pi_amplitude"]

    sweeps = [
        (
            "resonator frequency",
            {"sequence": "none"},
            "readout_frequency",
            truth["readout_frequency"] + np.linspace(-3, 3, POINTS) * kappa,
        ),
        (
            "flux bias",
            {"sequence": "none"},
            "flux_voltage",
            truth["flux_sweet_spot"] + np.linspace(-0.5, 0.5, POINTS) * truth["flux_period"],
        ),
        (
            "drive frequency (saturation)",
            {"sequence": "saturation", "amplitude": 1e-3 * pi_amplitude},
            "drive_frequency",
            truth["qubit_frequency"] + np.linspace(-2e6, 2e6, POINTS),
        ),
        (
            "Rabi amplitude",
            {"sequence": "rabi"},
            "drive_amplitude",
            np.linspace(0, 2.5 * pi_amplitude, POINTS),
        ),
        (
            "Ramsey delay",
            {"sequence": "ramsey", "amplitude": pi_amplitude},
            "delay",
            np.linspace(0, 5e-6, POINTS),
        ),
    ]
    print(f"simulated instruments, default device q0, {readout.shots()} shots per point:")
    for label, drive_settings, setting, values in sweeps:
        for name, value in drive_settings.items():
            drive.parameters[name](value)
        readout.sweep_parameter(setting)
        readout.sweep_values(values)
        readout.iq()  # warm-up
        t_sweep = timed(readout.iq, 5)
        print(f"  {POINTS}-point {label + ' sweep:':34s}  {t_sweep * 1e3:8.1f} ms")

    drive.sequence("rabi")
    readout.shots(2000)
    readout.sweep_parameter("drive_amplitude")
    readout.sweep_values(np.array([0.0, pi_amplitude]))
    readout.iq_shots()
    t_shots = timed(readout.iq_shots, 5)
    print(f"  single shot, 2 preparations x 2000 shots:         {t_shots * 1e3:8.1f} ms")


def main() -> None:
    model_timings("default device q0", 8.9, 2.5, 0.5)
    model_timings("worst-case corner", 20.0, 20.0, 0.1)
    instrument_timings()


if __name__ == "__main__":
    main()
