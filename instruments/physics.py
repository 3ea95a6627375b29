"""One qubit's physics at one moment: the fluxonium, its resonator and its decoherence.

`QubitPhysics` joins a qubit's description (device_config.Qubit) with its drift at the
current time and answers the questions the simulated instruments ask: which flux a bias
voltage gives, the levels and matrix elements there, the thermal populations, the resonator
frequency for each qubit state, T1, T2 and the Rabi rate. Everything is vectorised over
bias voltage so a sweep is one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from fluxcal.instruments.device_config import Qubit
from fluxcal.instruments.drift import DriftState
from fluxcal.instruments.fluxonium import FluxoniumModel, Spectrum
from fluxcal.instruments.resonator import dressed_frequencies, thermal_populations

#: Levels kept in the simulation; the dispersive sum uses more (it converges slowly).
N_LEVELS = 6
N_DISPERSIVE_LEVELS = 10
#: Low-frequency cut-off factor of 1/f noise dephasing, ~sqrt(2·ln(f_high/f_low)).
_ONE_OVER_F_FACTOR = 4.0
_FLUX_STEP = 1e-4  # Φ0, for numerical derivatives of f01


@lru_cache(maxsize=32)
def fluxonium_model(ej: float, ec: float, el: float) -> FluxoniumModel:
    """Models are shared: building one chooses a converged basis, which is not free."""
    return FluxoniumModel(ej, ec, el)


@dataclass(frozen=True)
class LevelData:
    """Levels at an array of flux points, in SI units, shape (..., N_LEVELS)."""

    spectrum: Spectrum
    energies_hz: np.ndarray
    resonator_hz: np.ndarray
    populations: np.ndarray

    def transition_hz(self, i: int = 0, j: int = 1) -> np.ndarray:
        return self.energies_hz[..., j] - self.energies_hz[..., i]

    def charge_element(self, i: int = 0, j: int = 1) -> np.ndarray:
        return np.abs(self.spectrum.n_matrix[..., i, j])


class QubitPhysics:
    """A qubit's physical behaviour at the drift state of one moment."""

    def __init__(self, config: Qubit, drift: DriftState):
        self.config = config
        self.drift = drift
        self.model = fluxonium_model(config.EJ, config.EC, config.EL)

    def flux(self, voltage: float | np.ndarray) -> np.ndarray:
        """External flux in units of Φ0 for a bias voltage, including drift."""
        mapping = self.config.flux
        return (np.asarray(voltage, float) - mapping.offset) / mapping.period + (
            self.drift.flux_offset_phi0
        )

    @property
    def sweet_spot_voltage(self) -> float:
        """Bias of the half-flux point nearest 0 V (the operating point by convention)."""
        mapping = self.config.flux
        v0 = mapping.offset + (0.5 - self.drift.flux_offset_phi0) * mapping.period
        return float(v0 - mapping.period * np.round(v0 / mapping.period))

    @property
    def resonator_bare_hz(self) -> float:
        return self.config.resonator.frequency + self.drift.resonator_shift_hz

    def levels(self, flux: float | np.ndarray) -> LevelData:
        """Levels, dressed resonator frequencies and thermal populations at flux (Φ0)."""
        spectrum = self.model.spectrum(flux, n_levels=N_DISPERSIVE_LEVELS)
        resonator = 1e9 * dressed_frequencies(
            spectrum, self.resonator_bare_hz / 1e9, self.config.resonator.coupling / 1e9
        )
        kept = Spectrum(
            spectrum.flux,
            spectrum.energies[..., :N_LEVELS],
            spectrum.vectors[..., :N_LEVELS],
            spectrum.n_matrix[..., :N_LEVELS, :N_LEVELS],
            spectrum.phi_matrix[..., :N_LEVELS, :N_LEVELS],
        )
        energies = 1e9 * kept.energies
        return LevelData(
            kept,
            energies,
            resonator[..., :N_LEVELS],
            thermal_populations(kept.energies, self.config.temperature),
        )

    @cached_property
    def sweet_spot(self) -> LevelData:
        return self.levels(0.5)

    @property
    def t1(self) -> float:
        """Energy relaxation time (s); fluctuates with drift, flux independent here."""
        return self.config.coherence.T1 * self.drift.t1_factor

    def _flux_dephasing(self, flux: np.ndarray) -> np.ndarray:
        """1/f flux-noise dephasing rate (1/s): first order off the sweet spot, second on it.

        Sweeps at one bias repeat the same flux at every point: diagonalise each value once.
        """
        flux = np.asarray(flux, float)
        unique, inverse = np.unique(flux, return_inverse=True)
        if unique.size < flux.size:
            return self._flux_dephasing(unique)[inverse].reshape(flux.shape)
        steps = np.stack([flux - _FLUX_STEP, flux, flux + _FLUX_STEP], axis=-1)
        f01 = 1e9 * self.model.transition_frequency(steps)
        slope = (f01[..., 2] - f01[..., 0]) / (2 * _FLUX_STEP)
        curvature = (f01[..., 2] - 2 * f01[..., 1] + f01[..., 0]) / _FLUX_STEP**2
        amplitude = self.config.coherence.flux_noise
        return (
            2
            * np.pi
            * _ONE_OVER_F_FACTOR
            * (amplitude * np.abs(slope) + amplitude**2 * np.abs(curvature))
        )

    def pure_dephasing(self, flux: float | np.ndarray, echo: bool = False) -> np.ndarray:
        """Pure dephasing rate (1/s); an echo filters the low-frequency noise."""
        rate = self.config.coherence.dephasing_rate + self._flux_dephasing(np.asarray(flux))
        return rate / self.config.coherence.echo_filter if echo else rate

    def t2(self, flux: float | np.ndarray, echo: bool = False) -> np.ndarray:
        """T2 (s): 1/T2 = 1/(2·T1) + Γφ."""
        return 1.0 / (0.5 / self.t1 + self.pure_dephasing(flux, echo))

    def rabi_frequency(self, amplitude: np.ndarray, levels: LevelData, i: int = 0, j: int = 1):
        """Rabi frequency (Hz) of the i→j transition for a drive amplitude (V)."""
        return self.config.drive.coupling * np.asarray(amplitude) * levels.charge_element(i, j)

    @property
    def pi_amplitude(self) -> float:
        """Amplitude (V) of a π pulse of the configured duration at the sweet spot."""
        rate_per_volt = self.rabi_frequency(1.0, self.sweet_spot)
        return float(1.0 / (2.0 * self.config.drive.pi_duration * rate_per_volt))
