"""Random realistic fluxonium chips: the design space fluxcal must calibrate without tuning.

A lab's chip is never one of ours, so robustness is measured on chips drawn from published
ranges rather than on named test chips. `sample_qubit(rng)` draws one qubit description
(device.yaml form) and `sample_device(seed)` a one-qubit device at a fixed clock. Ranges:
EJ 2–10 GHz, EC 0.8–2.6 GHz, EL 0.15–1.5 GHz with f01(Φ0/2) between 50 MHz and 1.2 GHz,
resonator 4.5–8 GHz, κ/2π 0.3–5 MHz, g/2π 15–80 MHz, 10–60 mK, T1 30–600 µs, amplifier
noise 0.5–4× the built-in chip's, flux period 0.3–2.5 V/Φ0 with any offset. Designs where a
higher transition comes near the resonator (|χ| > κ) are not excluded: they occur naturally.

Drive coupling is what a lab sets with its line attenuation, so it is drawn to give a π
pulse between 0.05 and 0.6 V for the sampled matrix element, not as a free constant.
"""

from __future__ import annotations

import numpy as np

from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.device_config import parse_device_config
from fluxcal.instruments.fluxonium import FluxoniumModel

#: Amplifier noise density of the built-in chip (V·√s); the sampler scales it 0.5–4×.
BUILT_IN_NOISE = 1.2e-5
#: Pulse length the simulated chip's π pulse is defined at (s).
PI_DURATION = 100e-9
F01_RANGE_HZ = (50e6, 1.2e9)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _sample_energies(rng: np.random.Generator) -> tuple[float, float, float, float]:
    """EJ, EC, EL (GHz) with f01 at half flux inside F01_RANGE_HZ, and |n01| there."""
    while True:
        ej = rng.uniform(2.0, 10.0)
        ec = rng.uniform(0.8, 2.6)
        el = _log_uniform(rng, 0.15, 1.5)
        model = FluxoniumModel(ej, ec, el)
        spectrum = model.spectrum(0.5, n_levels=2)
        f01 = 1e9 * float(spectrum.transitions(0, 1))
        if F01_RANGE_HZ[0] <= f01 <= F01_RANGE_HZ[1]:
            return ej, ec, el, float(abs(spectrum.n_matrix[..., 0, 1]))


def sample_qubit(rng: np.random.Generator, seed: int) -> dict:
    """One qubit's device.yaml entry drawn from the realistic design space."""
    ej, ec, el, n01 = _sample_energies(rng)
    period = _log_uniform(rng, 0.3, 2.5)
    pi_amplitude = _log_uniform(rng, 0.05, 0.6)
    return {
        "EJ": round(ej, 4),
        "EC": round(ec, 4),
        "EL": round(el, 4),
        "temperature": rng.uniform(0.010, 0.060),
        "seed": seed,
        "flux": {"period": period, "offset": rng.uniform(-1.0, 1.0) * period},
        "resonator": {
            "frequency": rng.uniform(4.5e9, 8.0e9),
            "coupling": rng.uniform(15e6, 80e6),
            "kappa": _log_uniform(rng, 0.3e6, 5e6),
            "coupling_ratio": rng.uniform(0.5, 0.95),
            "environment": {
                "delay": rng.uniform(20e-9, 80e-9),
                "gain": _log_uniform(rng, 0.3, 3.0),
                "phase": rng.uniform(-np.pi, np.pi),
                "mismatch": rng.uniform(-0.2, 0.2),
            },
        },
        "coherence": {
            "T1": _log_uniform(rng, 30e-6, 600e-6),
            "flux_noise": _log_uniform(rng, 0.5e-6, 3e-6),
            "dephasing_rate": _log_uniform(rng, 300.0, 5000.0),
        },
        "drive": {
            "coupling": 1.0 / (2.0 * PI_DURATION * n01 * pi_amplitude),
            "pi_duration": PI_DURATION,
        },
        "readout": {
            "noise": BUILT_IN_NOISE * _log_uniform(rng, 0.5, 4.0),
            "saturation_amplitude": _log_uniform(rng, 0.15, 0.6),
            "critical_amplitude": _log_uniform(rng, 0.3, 1.0),
            "repetition_time": 500e-6,
        },
    }


def sample_device_dict(seed: int) -> dict:
    """A one-qubit device description (qubit `q0`) drawn with `seed`."""
    rng = np.random.default_rng([20261205, seed])
    return {
        "name": f"sampled-{seed}",
        "epoch": "2026-01-01T00:00:00+00:00",
        "qubits": {"q0": sample_qubit(rng, seed)},
    }


def sample_device(seed: int, time: float = 0.0) -> SimulatedDevice:
    """A sampled chip at a fixed clock (no drift between nodes)."""
    return SimulatedDevice(parse_device_config(sample_device_dict(seed)), time=time)
