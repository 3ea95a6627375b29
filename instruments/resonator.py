"""Readout resonator dispersively coupled to the fluxonium through its charge operator.

The coupling g·n·(a + a†) shifts the resonator by a state-dependent amount; summing over all
computed levels (not a two-level formula) matters for fluxonium, whose 1→2 and 0→3
transitions sit near typical resonators:

    χ_i = Σ_j |g·n_ij|² · 2ω_ij / (ω_r² − ω_ij²),   ω_ij = E_j − E_i

with the resonator at ω_r + χ_i when the qubit is in state i. The identity
2ω/(ω_r² − ω²) = 1/(ω_r − ω) − 1/(ω_r + ω) lets the near-resonant term be regularised
(Δ → Δ/(1 + 4g²/Δ²)) so a transition crossing the resonator gives a bounded, avoided-crossing-
sized pull instead of a divergence; far from crossings (|Δ| ≫ g) it is the formula above.
"""

from __future__ import annotations

import numpy as np

from fluxcal.instruments.fluxonium import Spectrum


def dispersive_shifts(
    spectrum: Spectrum, resonator_frequency_ghz: float, coupling_ghz: float
) -> np.ndarray:
    """χ_i in GHz for every computed level i, shape (..., n_levels)."""
    omega = spectrum.energies[..., None, :] - spectrum.energies[..., :, None]  # ω_ij
    g_ij_sq = (coupling_ghz * np.abs(spectrum.n_matrix)) ** 2
    detuning = resonator_frequency_ghz - omega
    resonant = detuning / (detuning**2 + 4.0 * g_ij_sq + 1e-300)
    counter = 1.0 / (resonator_frequency_ghz + omega)
    terms = g_ij_sq * (resonant - counter)
    diagonal = np.eye(omega.shape[-1], dtype=bool)
    return np.where(diagonal, 0.0, terms).sum(axis=-1)


def dressed_frequencies(
    spectrum: Spectrum, resonator_frequency_ghz: float, coupling_ghz: float
) -> np.ndarray:
    """Resonator frequency in GHz with the qubit in each level, shape (..., n_levels)."""
    return resonator_frequency_ghz + dispersive_shifts(
        spectrum, resonator_frequency_ghz, coupling_ghz
    )


def thermal_populations(energies_ghz: np.ndarray, temperature_k: float) -> np.ndarray:
    """Boltzmann populations of the computed levels at the given temperature."""
    kt_ghz = temperature_k * 20.836619  # k_B/h in GHz per kelvin
    shifted = energies_ghz - energies_ghz[..., :1]
    weights = np.exp(-shifted / max(kt_ghz, 1e-12))
    return weights / weights.sum(axis=-1, keepdims=True)


def notch_response(
    frequency_hz: np.ndarray, resonance_hz: np.ndarray, kappa_hz: float, coupling_ratio: float
) -> np.ndarray:
    """Ideal notch-type S21 of a resonator (no environment), 1 far from resonance.

    coupling_ratio = Ql/|Qc| sets the dip depth (1 would be critically deep); the linewidth
    κ = f_r/Ql is the full width at half depth of |S21|².
    """
    detuning = frequency_hz - resonance_hz
    return 1.0 - coupling_ratio / (1.0 + 2j * detuning / kappa_hz)
