"""Fluxonium spectrum fit: recorded SuperGrad two-tone map and seeded synthetic f01(V) traces."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fluxcal.calibrations.fitting.errors import FitError
from fluxcal.calibrations.fitting.spectrum import (
    PeakTrace,
    bias_to_flux,
    extract_peaks,
    fit_flux_spectrum,
)
from fluxcal.instruments.fluxonium import FluxoniumModel


def shared_data_dir() -> Path:
    """../shared/data relative to the repo root, unless FLUXCAL_SHARED_DATA says otherwise."""
    override = os.environ.get("FLUXCAL_SHARED_DATA")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "data"


TWOTONE = shared_data_dir() / "supergrad_fluxonium_twotone.npz"
# Authors' fit (SuperGrad example notebook), see shared/data/README.md.
REFERENCE = {"EJ": 2.8479, "EC": 1.5494, "EL": 0.3599}
REFERENCE_SWEET_SPOT = -0.0151
REFERENCE_PERIOD = 2 * (-0.0151 + 0.6575)


@pytest.fixture(scope="module")
def recorded_peaks() -> PeakTrace:
    if not TWOTONE.exists():
        pytest.skip(f"recorded two-tone data not found at {TWOTONE}")
    data = np.load(TWOTONE)
    return extract_peaks(data["xs"], data["ys"], data["data"])


def test_recorded_peaks_skip_empty_windows(recorded_peaks: PeakTrace) -> None:
    # Near -0.15 V the measured windows miss the transition: those rows must be dropped.
    assert 20 <= recorded_peaks.bias.size < 35
    assert not np.any((recorded_peaks.bias > -0.16) & (recorded_peaks.bias < -0.01))


def test_recorded_spectrum_unknown_mapping(recorded_peaks: PeakTrace) -> None:
    fit = fit_flux_spectrum(recorded_peaks)
    for name, value in REFERENCE.items():
        assert getattr(fit, name) == pytest.approx(value, rel=0.03), name
    assert abs(fit.sweet_spot - REFERENCE_SWEET_SPOT) < 0.01
    assert fit.period == pytest.approx(REFERENCE_PERIOD, rel=0.01)
    assert np.isfinite([fit.EJ_stderr, fit.EC_stderr, fit.EL_stderr, fit.period_stderr]).all()
    assert fit.residual_rms_hz < 20e6


def test_recorded_spectrum_known_mapping(recorded_peaks: PeakTrace) -> None:
    fit = fit_flux_spectrum(
        recorded_peaks, period=REFERENCE_PERIOD, sweet_spot=REFERENCE_SWEET_SPOT
    )
    for name, value in REFERENCE.items():
        assert getattr(fit, name) == pytest.approx(value, rel=0.03), name
    assert fit.period == REFERENCE_PERIOD


SYNTHETIC = [
    # EJ, EC, EL (GHz), period (V/Φ0), half-flux bias (V), bias range in flux quanta
    (8.9, 2.5, 0.5, 0.8, 0.10, (-0.05, 0.62)),
    (4.5, 1.0, 0.8, 2.0, -0.30, (0.35, 1.05)),
    (2.85, 1.55, 0.36, 1.285, -0.015, (-0.03, 0.63)),
]


def synthetic_trace(case: tuple, seed: int) -> PeakTrace:
    """f01 at 30 bias points with 100 kHz Gaussian frequency noise."""
    ej, ec, el, period, sweet_spot, (lo, hi) = case
    bias = sweet_spot + (np.linspace(lo, hi, 30) - 0.5) * period
    f01 = 1e9 * FluxoniumModel(ej, ec, el).transition_frequency(
        bias_to_flux(bias, period, sweet_spot)
    )
    noise = np.random.default_rng(seed).normal(0.0, 100e3, bias.size)
    return PeakTrace(bias, f01 + noise, np.full(bias.size, 100e3), np.full(bias.size, 50.0))


@pytest.mark.parametrize("index", range(len(SYNTHETIC)))
def test_synthetic_known_mapping(index: int) -> None:
    case = SYNTHETIC[index]
    fit = fit_flux_spectrum(synthetic_trace(case, index), period=case[3], sweet_spot=case[4])
    for value, name in zip(case[:3], ("EJ", "EC", "EL"), strict=True):
        assert getattr(fit, name) == pytest.approx(value, rel=0.02), name
    assert fit.redchi == pytest.approx(1.0, abs=0.8)


@pytest.mark.parametrize("index", range(len(SYNTHETIC)))
def test_synthetic_unknown_mapping(index: int) -> None:
    case = SYNTHETIC[index]
    fit = fit_flux_spectrum(synthetic_trace(case, 10 + index))
    for value, name in zip(case[:3], ("EJ", "EC", "EL"), strict=True):
        assert getattr(fit, name) == pytest.approx(value, rel=0.03), name
    assert fit.period == pytest.approx(case[3], rel=0.01)
    assert abs(fit.sweet_spot - case[4]) < 0.01 * case[3]


def test_overstated_peak_errors_do_not_shrink_the_energy_errors() -> None:
    """Peaks whose stated stderr is 5× their scatter give a reduced χ² near 1/25: the energy
    errors must then stay those the stated stderrs imply (lmfit's default would shrink them
    5×, and a map of few rows was once accepted 4σ off the truth that way)."""
    case = SYNTHETIC[0]
    honest = synthetic_trace(case, 3)
    overstated = PeakTrace(honest.bias, honest.peak_frequency, 5 * honest.peak_stderr, honest.snr)
    fits = [fit_flux_spectrum(t, period=case[3], sweet_spot=case[4]) for t in (honest, overstated)]
    assert fits[1].redchi < 0.1
    for name in ("EJ", "EC", "EL"):
        ratio = getattr(fits[1], f"{name}_stderr") / getattr(fits[0], f"{name}_stderr")
        assert ratio == pytest.approx(5 / np.sqrt(max(fits[0].redchi, 1.0)), rel=0.05), name


def test_synthetic_two_tone_map_peaks() -> None:
    """Peaks of a Lorentzian map with complex background and noise land on f01."""
    rng = np.random.default_rng(3)
    bias = np.linspace(-0.4, 0.4, 9)
    frequency = np.arange(0.2e9, 9e9, 2e6)
    f01 = 1e9 * FluxoniumModel(8.9, 2.5, 0.5).transition_frequency(bias_to_flux(bias, 1.0, 0.0))
    line = 1 / (1 + ((frequency[None, :] - f01[:, None]) / 5e6) ** 2)
    signal = (0.3 + 0.1j) + (0.02 - 0.05j) * line
    signal = signal + 2e-3 * (rng.normal(size=line.shape) + 1j * rng.normal(size=line.shape))
    peaks = extract_peaks(bias, frequency, signal)
    assert peaks.bias.size == bias.size
    assert np.abs(peaks.peak_frequency - f01).max() < 1e6


def test_noise_map_has_no_peaks_and_fit_refuses() -> None:
    rng = np.random.default_rng(4)
    signal = rng.normal(size=(12, 150)) + 1j * rng.normal(size=(12, 150))
    peaks = extract_peaks(np.linspace(0, 1, 12), np.linspace(1e9, 1.3e9, 150), signal)
    assert peaks.bias.size <= 2
    with pytest.raises(FitError, match="at least"):
        fit_flux_spectrum(peaks)


@pytest.mark.parametrize("half_width_steps", [1.75, 2.5])
def test_row_peak_stderr_covers_projection_noise(half_width_steps: float) -> None:
    """A saturated line a few steps wide, as the flux map takes it, read out in 50 shots a
    point: on the line each point also scatters by the qubit's projection noise,
    p(1 − p)·separation²/shots (here 5× the readout's noise in amplitude), which one noise
    for all points missed: |error|/stderr had a median of 1.1–1.2, centres stated ~1.7× too
    precisely. Over 300 noise draws (fixed seed) the median must be near the 0.67 of honest
    errors (weights from the true variances give 0.8 here: a line on a few points is not
    quite linear) and the tail beyond 2 near its 4.6 %."""
    rng = np.random.default_rng(11)
    step, shots, separation, readout_noise = 2e6, 50, 1.0, 0.1
    frequency = 4e9 + step * np.arange(61)
    z = []
    for _ in range(300):
        centre = 4e9 + step * rng.uniform(28, 32)
        excited = 0.5 / (1 + ((frequency - centre) / (half_width_steps * step)) ** 2)
        states = rng.binomial(shots, excited) / shots
        signal = separation * states + readout_noise * rng.normal(size=frequency.size) / np.sqrt(
            shots
        )
        peaks = extract_peaks(np.array([0.0]), frequency, signal[None])
        z.append((peaks.peak_frequency[0] - centre) / peaks.peak_stderr[0])
    z = np.abs(np.array(z))
    assert 0.6 < np.median(z) < 0.88
    assert np.mean(z > 2) < 0.11
