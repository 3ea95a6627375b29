"""Fluxonium Hamiltonian: spectrum, eigenvectors and matrix elements versus external flux.

This is the physics at the bottom of the simulator and of the spectrum fit in calibrations/:
H = 4·EC·n² + ½·EL·φ² − EJ·cos(φ − 2π·Φext/Φ0), energies in GHz, flux in units of Φ0.

It is diagonalised in the harmonic-oscillator basis of the inductive part (plasma frequency
sqrt(8·EC·EL)). cos φ and sin φ are flux independent, so they are built once per model from
the exact eigen-decomposition of φ in an enlarged basis, and the flux dependence is then
H(Φ) = H0 − EJ·(cos 2πΦ · cos φ + sin 2πΦ · sin φ); only the lowest levels are computed
(`_lowest_eigenpairs`). Small dense matrices run several times faster on one BLAS thread
than on two, so the diagonalisation limits BLAS threads itself (users need not remember to).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import scipy.linalg
from threadpoolctl import ThreadpoolController

#: Inspecting the loaded BLAS libraries costs ~5 ms, so it is done once per process.
_THREADPOOLS = ThreadpoolController()

#: Smallest basis tried when the cutoff is chosen automatically.
MIN_AUTO_CUTOFF = 30
#: Target convergence of the automatic cutoff: transition energies of the lowest levels move
#: by less than this (GHz) when the basis grows by `_CUTOFF_GAP` states.
CONVERGENCE_GHZ = 1e-7
_CUTOFF_GAP = 30
#: Resolution of the automatic cutoff (`FluxoniumModel._converged_cutoff`).
_CUTOFF_STEP = 10
_MAX_CUTOFF = 400
#: Extra oscillator states used to build cos φ / sin φ before truncation, so the matrix
#: functions are exact within the kept block.
_PADDING = 60


@lru_cache(maxsize=16)
def _quadrature_eigensystem(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors of a + a† in `size` oscillator states.

    φ = phi_zpf·(a + a†), so its eigenvectors do not depend on the energies and its
    eigenvalues only scale: a spectrum fit builds a model per residual evaluation, and
    diagonalising φ anew each time cost as much as the spectrum itself.
    """
    a = np.diag(np.sqrt(np.arange(1, size)), k=1)
    with _THREADPOOLS.limit(limits=1, user_api="blas"):
        values, vectors = np.linalg.eigh(a + a.T)
    values.setflags(write=False)
    vectors.setflags(write=False)
    return values, vectors


def _lowest_eigenpairs(matrices: np.ndarray, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """The `n_levels` lowest eigenvalues and eigenvectors of each real symmetric matrix in a
    stack (..., k, k): shapes (..., n_levels) and (..., k, n_levels).

    Why: the physics needs a handful of levels of a basis of 50–400 states, and a full
    decomposition computes every eigenvector; LAPACK's selected-eigenvalue driver (`evx`)
    computes only the wanted ones, 1.6× faster at 50 states and 2.8× at 260–400 (40 flux
    points, one BLAS thread). The spectrum fits of the flux map spent most of a chain's
    processor time here.
    """
    size = matrices.shape[-1]
    flat = matrices.reshape(-1, size, size)
    values = np.empty((flat.shape[0], n_levels))
    vectors = np.empty((flat.shape[0], size, n_levels))
    for index, matrix in enumerate(flat):
        values[index], vectors[index] = scipy.linalg.eigh(
            matrix, subset_by_index=(0, n_levels - 1), driver="evx", check_finite=False
        )
    shape = matrices.shape[:-2]
    return values.reshape(*shape, n_levels), vectors.reshape(*shape, size, n_levels)


@dataclass(frozen=True)
class Spectrum:
    """Eigen-decomposition of the fluxonium at an array of flux points."""

    flux: np.ndarray  # (...,) in units of Φ0
    energies: np.ndarray  # (..., n_levels) GHz, ground state first, not shifted
    vectors: np.ndarray  # (..., cutoff, n_levels) eigenvectors in the oscillator basis
    n_matrix: np.ndarray  # (..., n_levels, n_levels) charge matrix elements <i|n|j>
    phi_matrix: np.ndarray  # (..., n_levels, n_levels) phase matrix elements <i|φ|j>

    def transitions(self, i: int = 0, j: int = 1) -> np.ndarray:
        """Transition frequency f_ij = E_j − E_i in GHz, same shape as `flux`."""
        return self.energies[..., j] - self.energies[..., i]


@dataclass(frozen=True)
class FluxoniumModel:
    """Fluxonium with Josephson, charging and inductive energies EJ, EC, EL in GHz."""

    EJ: float
    EC: float
    EL: float
    cutoff: int | None = None

    def __post_init__(self) -> None:
        for name in ("EJ", "EC", "EL"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(
                    f"FluxoniumModel: {name} must be a positive energy in GHz, got {value}"
                )
        if self.cutoff is None:
            object.__setattr__(self, "cutoff", self._converged_cutoff())
        elif self.cutoff < 10:
            raise ValueError(f"FluxoniumModel: cutoff must be at least 10, got {self.cutoff}")

    def _converged_cutoff(self) -> int:
        """Smallest basis whose low transitions agree with one `_CUTOFF_GAP` states larger to
        CONVERGENCE_GHZ, on a grid of `_CUTOFF_STEP` states.

        A heavy, weakly inductive fluxonium (large EJ, EL ~ 0.1 GHz) spreads over many wells
        and needs ~100 oscillator states, a typical one ~40; one fixed number would be either
        slow or wrong, so each model checks its own at flux 0, 1/4 and 1/2. The grid is finer
        than the gap because a spectrum fit diagonalises this basis at every flux point of
        every evaluation: stepping by the gap itself overshot by up to a gap (110 states
        where 90 agree with 120), and the fits took a quarter longer for it.
        """
        flux = np.array([0.0, 0.25, 0.5])
        transitions: dict[int, np.ndarray] = {}

        def at(cutoff: int) -> np.ndarray:
            if cutoff not in transitions:
                energies = FluxoniumModel(self.EJ, self.EC, self.EL, cutoff).energies(flux)
                transitions[cutoff] = energies - energies[:, :1]
            return transitions[cutoff]

        cutoff = MIN_AUTO_CUTOFF
        while cutoff < _MAX_CUTOFF:
            if np.abs(at(cutoff + _CUTOFF_GAP) - at(cutoff)).max() < CONVERGENCE_GHZ:
                return cutoff
            cutoff += _CUTOFF_STEP
        return _MAX_CUTOFF

    @property
    def plasma_frequency(self) -> float:
        """sqrt(8·EC·EL) in GHz, the oscillator spacing of the inductive part."""
        return float(np.sqrt(8.0 * self.EC * self.EL))

    @property
    def phi_zpf(self) -> float:
        """Zero-point phase spread: φ = phi_zpf·(a + a†)."""
        return float((2.0 * self.EC / self.EL) ** 0.25)

    @cached_property
    def _operators(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """H0, cos φ, sin φ, n and φ in the truncated oscillator basis."""
        x_values, x_vectors = _quadrature_eigensystem(self.cutoff + _PADDING)
        w = self.phi_zpf * x_values
        with _THREADPOOLS.limit(limits=1, user_api="blas"):
            cos_phi = (x_vectors * np.cos(w)) @ x_vectors.T
            sin_phi = (x_vectors * np.sin(w)) @ x_vectors.T
        k = self.cutoff
        a = np.diag(np.sqrt(np.arange(1, k)), k=1)
        h0 = np.diag(self.plasma_frequency * (np.arange(k) + 0.5))
        n_op = 1j / (2.0 * self.phi_zpf) * (a.T - a)
        return h0, cos_phi[:k, :k], sin_phi[:k, :k], n_op, self.phi_zpf * (a + a.T)

    def _check_levels(self, n_levels: int) -> None:
        """More levels than the basis holds would silently come back short; refuse instead."""
        if not 1 <= n_levels <= self.cutoff:
            raise ValueError(f"n_levels must be in 1..{self.cutoff}, got {n_levels}")

    def hamiltonian(self, flux: float | np.ndarray) -> np.ndarray:
        """Hamiltonian matrices (..., cutoff, cutoff) in GHz at flux (units of Φ0)."""
        h0, cos_phi, sin_phi, _, _ = self._operators
        phase = 2.0 * np.pi * np.asarray(flux, dtype=float)[..., None, None]
        return h0 - self.EJ * (np.cos(phase) * cos_phi + np.sin(phase) * sin_phi)

    def spectrum(self, flux: float | np.ndarray, n_levels: int = 6) -> Spectrum:
        """Diagonalise at every flux point at once; matrix elements in the eigenbasis.

        Eigenvector phases are fixed so that each vector's largest component is real
        positive, which makes matrix elements continuous enough for plotting; physics uses
        only their magnitudes.
        """
        self._check_levels(n_levels)
        flux_arr = np.asarray(flux, dtype=float)
        _, _, _, n_op, phi_op = self._operators
        with _THREADPOOLS.limit(limits=1, user_api="blas"):
            values, vectors = _lowest_eigenpairs(self.hamiltonian(flux_arr), n_levels)
            pivot = np.take_along_axis(vectors, np.abs(vectors).argmax(axis=-2)[..., None, :], -2)
            vectors = vectors * np.sign(pivot)
            vt = np.swapaxes(vectors, -1, -2)
            n_matrix = vt @ n_op @ vectors
            phi_matrix = vt @ phi_op @ vectors
        return Spectrum(flux_arr, values, vectors, n_matrix, phi_matrix)

    def energies(self, flux: float | np.ndarray, n_levels: int = 6) -> np.ndarray:
        """Eigenenergies in GHz, shape (..., n_levels), ground state first, not shifted."""
        self._check_levels(n_levels)
        flux_arr = np.asarray(flux, dtype=float)
        with _THREADPOOLS.limit(limits=1, user_api="blas"):
            values = np.linalg.eigvalsh(self.hamiltonian(flux_arr))
        return values[..., :n_levels]

    def energy_gradients(
        self, flux: float | np.ndarray, n_levels: int = 2
    ) -> tuple[np.ndarray, np.ndarray]:
        """Eigenenergies (..., n_levels) and their derivatives (..., n_levels, 4) with respect
        to EJ, EC, EL and the flux (GHz per GHz, GHz per Φ0), from one diagonalisation.

        Why: a spectrum fit's Jacobian by finite differences costs one diagonalisation per
        parameter, four or five per step, and was most of a heavy chip's analysis time. The
        Hellmann–Feynman theorem gives every derivative from the eigenvectors instead:
        dE/dθ = ⟨ψ|∂H/∂θ|ψ⟩, with ∂H/∂EC = 4n², ∂H/∂EL = ½φ², ∂H/∂EJ = −cos(φ − 2πΦ) and
        ∂H/∂Φ = −2π·EJ·sin(φ − 2πΦ). The oscillator basis moves with EC and EL, which adds
        nothing once the basis has converged for these levels (as the cutoff ensures).
        """
        spectrum = self.spectrum(flux, n_levels)
        vectors, flux_arr = spectrum.vectors, spectrum.flux
        _, cos_phi, sin_phi, n_op, phi_op = self._operators
        with _THREADPOOLS.limit(limits=1, user_api="blas"):

            def expectation(operator: np.ndarray) -> np.ndarray:
                return np.einsum("...ik,...ik->...k", vectors, operator @ vectors)

            def squared_norm(operator: np.ndarray) -> np.ndarray:  # ⟨A²⟩ of a Hermitian A
                return np.sum(np.abs(operator @ vectors) ** 2, axis=-2)

            cos_part, sin_part = expectation(cos_phi), expectation(sin_phi)
            c = np.cos(2.0 * np.pi * flux_arr)[..., None]
            s = np.sin(2.0 * np.pi * flux_arr)[..., None]
            gradients = np.stack(
                [
                    -(c * cos_part + s * sin_part),  # −⟨cos(φ − 2πΦ)⟩
                    4.0 * squared_norm(n_op),
                    0.5 * squared_norm(phi_op),
                    -2.0 * np.pi * self.EJ * (c * sin_part - s * cos_part),  # ⟨sin(φ − 2πΦ)⟩
                ],
                axis=-1,
            )
        return spectrum.energies, gradients

    def transition_frequency(self, flux: float | np.ndarray, i: int = 0, j: int = 1) -> np.ndarray:
        """f_ij = E_j − E_i in GHz at flux (units of Φ0)."""
        e = self.energies(flux, n_levels=max(i, j) + 1)
        return e[..., j] - e[..., i]
