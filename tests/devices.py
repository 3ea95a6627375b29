"""Device parameter sets for accuracy tests: light, intermediate and heavy fluxonium.

Each differs in energies, flux period and offset, resonator and coherence, so the chain is
tested on chips it was not tuned for. `make_device(kind, seed, time)` builds a one-qubit
SimulatedDevice (qubit "q0") with that noise/drift seed at a fixed clock.
"""

from __future__ import annotations

import copy

from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.device_config import parse_device_config

_COMMON_READOUT = {
    "saturation_amplitude": 0.3,
    "critical_amplitude": 0.5,
    "repetition_time": 500e-6,
}

QUBITS = {
    "light": {  # f01 = 363 MHz at half flux
        "EJ": 8.9,
        "EC": 2.5,
        "EL": 0.5,
        "temperature": 0.020,
        "flux": {"period": 0.84, "offset": 0.135},
        "resonator": {
            "frequency": 7.0e9,
            "coupling": 50e6,
            "kappa": 1.0e6,
            "coupling_ratio": 0.8,
            "environment": {"delay": 55e-9, "gain": 0.9, "phase": 0.4, "mismatch": 0.05},
        },
        "coherence": {"T1": 250e-6, "flux_noise": 1.5e-6, "dephasing_rate": 2000.0},
        "drive": {"coupling": 5.0e8, "pi_duration": 100e-9},
        "readout": {"noise": 1.2e-5, **_COMMON_READOUT},
    },
    "intermediate": {  # f01 ≈ 560 MHz at half flux
        "EJ": 6.0,
        "EC": 1.8,
        "EL": 0.9,
        "temperature": 0.022,
        "flux": {"period": 1.25, "offset": -0.42},
        "resonator": {
            "frequency": 6.6e9,
            "coupling": 45e6,
            "kappa": 1.4e6,
            "coupling_ratio": 0.85,
            "environment": {"delay": 40e-9, "gain": 1.2, "phase": -0.7, "mismatch": -0.1},
        },
        "coherence": {"T1": 120e-6, "flux_noise": 2.0e-6, "dephasing_rate": 3000.0},
        "drive": {"coupling": 4.0e8, "pi_duration": 100e-9},
        "readout": {"noise": 1.0e-5, **_COMMON_READOUT},
    },
    "heavy": {  # f01 ≈ 200 MHz at half flux
        "EJ": 5.0,
        "EC": 1.0,
        "EL": 0.7,
        "temperature": 0.025,
        "flux": {"period": 1.1, "offset": -0.31},
        "resonator": {
            "frequency": 7.5e9,
            "coupling": 40e6,
            "kappa": 0.8e6,
            "coupling_ratio": 0.75,
            "environment": {"delay": 48e-9, "gain": 1.1, "phase": -1.2, "mismatch": -0.08},
        },
        "coherence": {"T1": 350e-6, "flux_noise": 1.0e-6, "dephasing_rate": 1500.0},
        "drive": {"coupling": 8.0e8, "pi_duration": 100e-9},
        "readout": {"noise": 1.0e-5, **_COMMON_READOUT},
    },
}


def device_dict(kind: str, seed: int) -> dict:
    qubit = copy.deepcopy(QUBITS[kind])
    qubit["seed"] = seed
    return {
        "name": f"test-{kind}-{seed}",
        "epoch": "2026-01-01T00:00:00+00:00",
        "qubits": {"q0": qubit},
    }


def make_device(kind: str, seed: int, time: float = 0.0) -> SimulatedDevice:
    return SimulatedDevice(parse_device_config(device_dict(kind, seed)), time=time)
