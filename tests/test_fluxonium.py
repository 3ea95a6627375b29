"""Fluxonium model and dispersive shifts: published numbers, convergence, symmetries, limits.

The simulator and the spectrum fit both stand on `FluxoniumModel`, so these tests pin it to
numbers from the literature, to its own larger-basis answer, and to the physics it must
reduce to (harmonic oscillator, transmon, heavy fluxonium, parity selection rules).
"""

from __future__ import annotations

import numpy as np
import pytest

from fluxcal.instruments.fluxonium import FluxoniumModel
from fluxcal.instruments.physics import N_DISPERSIVE_LEVELS
from fluxcal.instruments.resonator import dispersive_shifts

#: Manucharyan et al., Science 326, 113 (2009); scqubits' default fluxonium.
PUBLISHED = (8.9, 2.5, 0.5)
KHZ_IN_GHZ = 1e-6


@pytest.fixture(scope="module")
def published() -> FluxoniumModel:
    return FluxoniumModel(*PUBLISHED)


def test_published_transition_frequencies(published: FluxoniumModel) -> None:
    assert published.transition_frequency(0.5) == pytest.approx(0.363421, abs=1e-6)
    assert published.transition_frequency(0.0) == pytest.approx(8.758445, abs=1e-6)


def test_energies_shape_order_and_vectorisation(published: FluxoniumModel) -> None:
    flux = np.linspace(0.0, 1.0, 12).reshape(3, 4)
    energies = published.energies(flux, n_levels=5)
    assert energies.shape == (3, 4, 5)
    assert np.all(np.diff(energies, axis=-1) > 0)  # ground first, ascending
    assert energies[1, 2] == pytest.approx(published.energies(flux[1, 2], n_levels=5))


@pytest.mark.parametrize("EJ", [1.0, 5.0, 20.0])
@pytest.mark.parametrize("EC", [1.0, 5.0, 20.0])
@pytest.mark.parametrize("EL", [0.1, 0.5, 2.0])
def test_automatic_cutoff_converged_below_a_kilohertz(EJ: float, EC: float, EL: float) -> None:
    model = FluxoniumModel(EJ, EC, EL)
    reference = FluxoniumModel(EJ, EC, EL, cutoff=model.cutoff + 200)
    flux = np.array([0.0, 0.13, 0.37, 0.5])  # includes points the cutoff choice never saw
    change = np.diff(model.energies(flux), axis=-1) - np.diff(reference.energies(flux), axis=-1)
    assert np.abs(change).max() < KHZ_IN_GHZ


@pytest.mark.parametrize("energies", [(7.2, 1.95, 0.15), (4.9, 1.0, 1.24), PUBLISHED])
def test_automatic_cutoff_is_the_smallest_converged_one_on_its_grid(energies) -> None:
    """One grid step smaller does not converge: every state more costs every spectrum fit
    evaluation (a diagonalisation per flux point), so the basis is no larger than needed."""
    from fluxcal.instruments import fluxonium

    model = FluxoniumModel(*energies)
    smaller = model.cutoff - fluxonium._CUTOFF_STEP
    assert smaller >= fluxonium.MIN_AUTO_CUTOFF  # these chips need more than the least basis
    flux = np.array([0.0, 0.25, 0.5])

    def transitions(cutoff: int) -> np.ndarray:
        levels = FluxoniumModel(*energies, cutoff=cutoff).energies(flux)
        return levels - levels[:, :1]

    change = np.abs(transitions(smaller + fluxonium._CUTOFF_GAP) - transitions(smaller)).max()
    assert change >= fluxonium.CONVERGENCE_GHZ


def test_spectrum_is_periodic_in_one_flux_quantum(published: FluxoniumModel) -> None:
    flux = np.linspace(-0.7, 0.9, 17)
    assert np.allclose(published.energies(flux + 1.0), published.energies(flux), atol=1e-9)


def test_spectrum_is_symmetric_about_half_flux(published: FluxoniumModel) -> None:
    flux = np.linspace(0.0, 1.0, 17)
    assert np.allclose(published.energies(1.0 - flux), published.energies(flux), atol=1e-9)


@pytest.mark.parametrize("energies", [PUBLISHED, (5.0, 1.0, 0.7), (3.0, 1.5, 1.0)])
def test_qubit_frequency_is_lowest_at_half_flux(energies: tuple[float, float, float]) -> None:
    flux = np.linspace(0.0, 1.0, 401)
    f01 = FluxoniumModel(*energies).transition_frequency(flux)
    assert flux[np.argmin(f01)] == pytest.approx(0.5)


@pytest.mark.parametrize("energies", [PUBLISHED, (6.9, 1.8, 0.15), (4.0, 1.0, 0.8)])
def test_energy_gradients_match_finite_differences(energies: tuple[float, float, float]) -> None:
    """The spectrum fit's analytic Jacobian (Hellmann–Feynman) against central differences
    of the transition energies in EJ, EC, EL and flux, on a light, a heavy and a typical
    design, at flux points from integer to half flux."""
    model = FluxoniumModel(*energies)
    flux = np.array([0.0, 0.1, 0.3, 0.45, 0.5])
    values, gradients = model.energy_gradients(flux, n_levels=4)
    assert values == pytest.approx(model.energies(flux, n_levels=4), abs=1e-12)
    step = 1e-6
    numeric = []
    for k in range(3):
        shift = np.eye(3)[k] * step
        up = FluxoniumModel(*(np.add(energies, shift)), cutoff=model.cutoff).energies(flux, 4)
        down = FluxoniumModel(*(np.subtract(energies, shift)), cutoff=model.cutoff).energies(
            flux, 4
        )
        numeric.append((up - down) / (2 * step))
    numeric.append((model.energies(flux + step, 4) - model.energies(flux - step, 4)) / (2 * step))
    numeric = np.stack(numeric, axis=-1)
    transitions = gradients[:, 1:] - gradients[:, :1]  # what a fit of transitions uses
    expected = numeric[:, 1:] - numeric[:, :1]
    assert np.abs(transitions - expected).max() < 1e-6 * max(1.0, np.abs(expected).max())


def test_vanishing_josephson_energy_gives_a_harmonic_ladder() -> None:
    model = FluxoniumModel(1e-4, 2.5, 0.5)
    spacings = np.diff(model.energies(np.array([0.0, 0.3, 0.5])), axis=-1)
    assert np.allclose(spacings, np.sqrt(8 * 2.5 * 0.5), atol=1e-3)


def test_large_ej_over_ec_at_zero_flux_is_transmon_like() -> None:
    EJ, EC, EL = 50.0, 0.5, 1.0  # EJ/EC = 100; EL large enough that the outer wells sit high
    transmon = np.sqrt(8 * EJ * EC) - EC
    assert FluxoniumModel(EJ, EC, EL).transition_frequency(0.0) == pytest.approx(transmon, rel=0.03)


@pytest.mark.parametrize("energies", [(10.0, 1.0, 0.5), (8.0, 1.0, 0.3)])
def test_heavy_fluxonium_at_half_flux_is_far_below_ec(energies: tuple[float, ...]) -> None:
    EC = energies[1]
    assert FluxoniumModel(*energies).transition_frequency(0.5) < EC / 20


def test_parity_forbids_zero_two_transition_at_half_flux(published: FluxoniumModel) -> None:
    half = published.spectrum(0.5, n_levels=4)
    assert abs(half.n_matrix[0, 2]) < 1e-8 and abs(half.phi_matrix[0, 2]) < 1e-8
    assert abs(half.n_matrix[0, 1]) > 0.01 and abs(half.phi_matrix[0, 1]) > 0.1
    away = published.spectrum(0.3, n_levels=4)
    assert abs(away.n_matrix[0, 2]) > 1e-3 and abs(away.phi_matrix[0, 2]) > 1e-3


@pytest.mark.parametrize("flux", [0.0, 0.3, 0.5])
def test_matrix_elements_are_hermitian_and_obey_the_commutator(
    published: FluxoniumModel, flux: float
) -> None:
    # [H, φ] = −8i·EC·n with [φ, n] = i, so ⟨i|n|j⟩ = i·(E_i − E_j)·⟨i|φ|j⟩ / (8·EC).
    spectrum = published.spectrum(flux, n_levels=8)
    n, phi, energies = spectrum.n_matrix, spectrum.phi_matrix, spectrum.energies
    assert np.allclose(n, n.conj().T, atol=1e-12)
    assert np.allclose(phi, phi.conj().T, atol=1e-12)
    gaps = energies[:, None] - energies[None, :]
    assert np.allclose(n, 1j * gaps * phi / (8 * published.EC), atol=1e-8)


@pytest.mark.parametrize(
    ("energies", "message"),
    [((-8.9, 2.5, 0.5), "EJ"), ((8.9, 0.0, 0.5), "EC"), ((8.9, 2.5, np.nan), "EL")],
)
def test_bad_energies_are_refused(energies: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FluxoniumModel(*energies)


def test_too_many_levels_are_refused(published: FluxoniumModel) -> None:
    too_many = published.cutoff + 1
    with pytest.raises(ValueError, match="n_levels"):
        published.energies(0.5, n_levels=too_many)
    with pytest.raises(ValueError, match="n_levels"):
        published.spectrum(0.5, n_levels=too_many)
    with pytest.raises(ValueError, match="n_levels"):
        published.energies(0.5, n_levels=0)


def test_dispersive_shift_matches_published_value(published: FluxoniumModel) -> None:
    shifts = dispersive_shifts(published.spectrum(0.5, N_DISPERSIVE_LEVELS), 7.0, 0.05)
    assert (shifts[1] - shifts[0]) == pytest.approx(-268e-6, abs=5e-6)  # GHz


def exact_resonator_shifts(
    model: FluxoniumModel, flux: float, resonator: float, coupling: float, photons: int = 5
) -> np.ndarray:
    """Resonator frequency shift per qubit level from diagonalising qubit ⊗ resonator.

    H = Σ E_i|i⟩⟨i| + ω_r·a†a + g·n·(a + a†) on the same levels the formula sums over;
    the dressed |i, k⟩ is the eigenstate with the largest overlap on the bare one.
    """
    spectrum = model.spectrum(flux, N_DISPERSIVE_LEVELS)
    lower = np.diag(np.sqrt(np.arange(1, photons)), k=1)
    hamiltonian = (
        np.kron(np.diag(spectrum.energies), np.eye(photons))
        + np.kron(np.eye(N_DISPERSIVE_LEVELS), resonator * lower.T @ lower)
        + coupling * np.kron(spectrum.n_matrix, lower + lower.T)
    )
    values, vectors = np.linalg.eigh(hamiltonian)

    def dressed(level: int, photon: int) -> float:
        return values[np.argmax(np.abs(vectors[level * photons + photon]))]

    return np.array([dressed(i, 1) - dressed(i, 0) - resonator for i in (0, 1, 2)])


def test_dispersive_formula_agrees_with_exact_diagonalisation(
    published: FluxoniumModel,
) -> None:
    resonator, coupling = 7.0, 0.05
    flux = np.linspace(0.0, 0.5, 11)
    spectrum = published.spectrum(flux, N_DISPERSIVE_LEVELS)
    gaps = spectrum.energies[:, None, :] - spectrum.energies[:, :3, None]  # from levels 0..2
    far = np.abs(np.abs(gaps) - resonator).min(axis=(1, 2)) > 0.5  # no transition within 0.5 GHz
    assert far.sum() >= 5
    formula = dispersive_shifts(spectrum, resonator, coupling)[far, :3]
    exact = np.array([exact_resonator_shifts(published, f, resonator, coupling) for f in flux[far]])
    assert np.abs(formula - exact).max() < KHZ_IN_GHZ
