"""The simulated chip: qubits from device.yaml, a clock, drift, and the ground truth.

`SimulatedDevice` is what the simulated QCoDeS instruments measure and what tests compare
calibrations against (`truth()`), under the canonical parameter names and SI units of the
snapshot store. Its clock is either fixed (tests, replays: `device.time = ...`) or follows
the wall clock from the device epoch, so scheduled runs on different days see drift.
"""

from __future__ import annotations

import datetime as dt
from importlib import resources
from pathlib import Path

import numpy as np

from fluxcal.instruments.device_config import (
    DeviceConfig,
    DeviceConfigError,
    Resonator,
    load_device_config,
)
from fluxcal.instruments.drift import drift_at
from fluxcal.instruments.physics import LevelData, QubitPhysics
from fluxcal.instruments.resonator import notch_response


def default_device_path() -> Path:
    """The device file shipped with fluxcal, used when no --device is given."""
    return Path(str(resources.files("fluxcal.instruments") / "device.yaml"))


def state_separation(levels: LevelData, resonator: Resonator, frequency) -> np.ndarray:
    """|S21(0) − S21(1)| at readout `frequency` (Hz), per unit drive: what tells 0 from 1."""
    f0, f1 = levels.resonator_hz[:2]
    return np.abs(
        notch_response(frequency, f0, resonator.kappa, resonator.coupling_ratio)
        - notch_response(frequency, f1, resonator.kappa, resonator.coupling_ratio)
    )


def best_discrimination(levels: LevelData, resonator: Resonator) -> tuple[float, float]:
    """Readout frequencies where |S21(0) − S21(1)| peaks: the best one and its rival.

    With |χ| small against κ there is one maximum, midway between the dressed lines; with
    |χ| ≳ κ there is one near each line, of nearly equal height, and either is a correct
    readout point. The rival is the other local maximum when it reaches 97 % of the best,
    else the best again.
    """
    f0, f1 = levels.resonator_hz[:2]
    spread = 3 * resonator.kappa + abs(f1 - f0)
    frequency = (f0 + f1) / 2 + np.linspace(-spread, spread, 8001)
    separation = state_separation(levels, resonator, frequency)
    interior = (separation[1:-1] >= separation[:-2]) & (separation[1:-1] >= separation[2:])
    peaks = np.flatnonzero(interior) + 1
    peaks = peaks[np.argsort(separation[peaks])[::-1]]
    best = float(frequency[peaks[0]])
    rivals = [p for p in peaks[1:] if separation[p] >= 0.97 * separation[peaks[0]]]
    far = [p for p in rivals if abs(frequency[p] - best) > resonator.kappa / 10]
    return best, float(frequency[far[0]]) if far else best


def mixture_dip(levels: LevelData, resonator: Resonator) -> float:
    """Frequency of the deepest point of |S21| for the thermal mixture of qubit states."""
    centre = float((levels.populations * levels.resonator_hz).sum())
    spread = 3 * resonator.kappa + np.ptp(levels.resonator_hz[:2])
    frequency = centre + np.linspace(-spread, spread, 6001)
    response = (
        levels.populations
        * notch_response(
            frequency[:, None], levels.resonator_hz, resonator.kappa, resonator.coupling_ratio
        )
    ).sum(axis=-1)
    return float(frequency[np.argmin(np.abs(response))])


class SimulatedDevice:
    """A chip of fluxonium qubits whose state is a pure function of its file and the time."""

    def __init__(self, config: DeviceConfig, time: float | None = None):
        self.config = config
        self.time = time
        try:
            self._epoch = dt.datetime.fromisoformat(config.epoch)
        except ValueError:
            raise DeviceConfigError(f"epoch: not an ISO 8601 time: {config.epoch!r}") from None
        if self._epoch.tzinfo is None:
            self._epoch = self._epoch.replace(tzinfo=dt.UTC)

    @classmethod
    def from_yaml(cls, path: str | Path | None = None, time: float | None = None):
        """Build from a device file (default: the built-in one); time fixes the clock."""
        return cls(load_device_config(path or default_device_path()), time)

    @property
    def qubits(self) -> list[str]:
        return list(self.config.qubits)

    def now(self) -> float:
        """Seconds since the device epoch: the fixed time, or the wall clock."""
        if self.time is not None:
            return float(self.time)
        return (dt.datetime.now(dt.UTC) - self._epoch).total_seconds()

    def physics(self, qubit: str, time: float | None = None) -> QubitPhysics:
        """The qubit's physics at `time` (default: now)."""
        try:
            config = self.config.qubits[qubit]
        except KeyError:
            raise KeyError(f"unknown qubit {qubit!r}; device has {self.qubits}") from None
        return QubitPhysics(config, drift_at(config, self.now() if time is None else time))

    def truth(self, t: float | None = None) -> dict[str, dict[str, float]]:
        """True value of every calibrated parameter, {qubit: {name: value}}, SI units.

        The operating point is the half-flux sweet spot nearest 0 V. readout_frequency is the
        frequency that best tells 0 from 1 (where |S21(0) − S21(1)| peaks): midway between
        the dressed lines when |χ| < κ; with |χ| > κ there are two maxima of equal height, and
        readout_frequency_alternate names the second (a choice, either is right; equal to
        readout_frequency when there is one). resonator_dip_frequency is the
        deepest point of the thermal mixture's line, which is what resonator spectroscopy
        sees before the readout is optimised; with χ a large fraction of κ the two differ.
        Readout-optimisation results (amplitude, duration, fidelity) are choices, not
        properties, and are found by brute force in the tests instead of being claimed here.
        """
        return {qubit: self._qubit_truth(self.physics(qubit, t)) for qubit in self.qubits}

    @staticmethod
    def _qubit_truth(physics: QubitPhysics) -> dict[str, float]:
        levels = physics.sweet_spot
        f01 = float(levels.transition_hz(0, 1))
        config = physics.config
        thermal = 1.0 - float(levels.populations[0])
        best, rival = best_discrimination(levels, config.resonator)
        return {
            "readout_frequency": best,
            "readout_frequency_alternate": rival,
            "resonator_dip_frequency": mixture_dip(levels, config.resonator),
            "resonator_kappa": config.resonator.kappa,
            "flux_period": config.flux.period,
            "flux_sweet_spot": physics.sweet_spot_voltage,
            "qubit_frequency": f01,
            "EJ": config.EJ * 1e9,
            "EC": config.EC * 1e9,
            "EL": config.EL * 1e9,
            "pi_amplitude": physics.pi_amplitude,
            "T1": physics.t1,
            "T2_ramsey": float(physics.t2(0.5)),
            "T2_echo": float(physics.t2(0.5, echo=True)),
            "thermal_population": thermal,
            "effective_temperature": config.temperature,
            "dispersive_shift": float(levels.resonator_hz[1] - levels.resonator_hz[0]),
        }
