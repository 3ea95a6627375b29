"""Brute-force best assignment fidelity of a simulated chip, for accuracy tests.

A dense grid of readout frequency × amplitude × integration time with thousands of heralded
shots per prepared state, drawn from the simulator's single-shot model (the function the
digitiser calls) and scored with an independent threshold scan.
"""

from __future__ import annotations

import numpy as np

from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.signals import PulseSettings, ReadoutSettings, single_shot_iq

BRUTE_SHOTS = 4000


def brute_force_fidelity(device: SimulatedDevice) -> float:
    """Best fidelity over a dense readout grid, heralded |0⟩ and π-pulsed |1⟩ shots."""
    truth = device.truth()["q0"]
    physics = device.physics("q0")
    f0, f1 = physics.sweet_spot.resonator_hz[:2]
    midpoint = (f0 + f1) / 2
    amplitudes = np.geomspace(0.05, 1.0, 14)[:, None]
    durations = np.geomspace(50e-9, 10e-6, 16)[None, :]
    rng = np.random.default_rng(2024)
    best = 0.0
    for frequency in (
        truth["readout_frequency"],
        midpoint,
        2 * midpoint - truth["readout_frequency"],
    ):
        readout = ReadoutSettings(frequency, amplitudes, durations, BRUTE_SHOTS)
        shots = [
            single_shot_iq(
                physics,
                truth["flux_sweet_spot"],
                PulseSettings("rabi", truth["qubit_frequency"], amplitude, 100e-9, 0.0, True),
                readout,
                rng,
            ).reshape(-1, BRUTE_SHOTS)
            for amplitude in (0.0, truth["pi_amplitude"])
        ]
        best = max(best, *(threshold_scan(s0, s1) for s0, s1 in zip(*shots, strict=True)))
    return best


def threshold_scan(iq0: np.ndarray, iq1: np.ndarray) -> float:
    """Fidelity of the best of 400 thresholds along the axis joining the two means."""
    axis = np.conj(iq1.mean() - iq0.mean()) / abs(iq1.mean() - iq0.mean())
    x0 = np.sort((iq0 * axis).real)
    x1 = np.sort((iq1 * axis).real)
    thresholds = np.linspace(min(x0[0], x1[0]), max(x0[-1], x1[-1]), 400)
    error0 = 1 - np.searchsorted(x0, thresholds) / x0.size
    error1 = np.searchsorted(x1, thresholds) / x1.size
    return float(1 - np.min(error0 + error1) / 2)
