"""Resonator fit: recorded NIST notch resonance, seeded synthetic resonances, and pure noise."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from calibrations.fitting.errors import FitError
from calibrations.fitting.resonator import fit_notch, fit_reflection, notch_s21, reflection_s11


def shared_data_dir() -> Path:
    """../shared/data relative to the repo root, unless FLUXCAL_SHARED_DATA says otherwise."""
    override = os.environ.get("FLUXCAL_SHARED_DATA")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "data"


S2P = shared_data_dir() / "S21testdata.s2p"


@pytest.mark.skipif(not S2P.exists(), reason=f"recorded resonator data not found at {S2P}")
def test_recorded_notch_resonance_matches_reference_circle_fit() -> None:
    skrf = pytest.importorskip("skrf")
    network = skrf.Network(str(S2P))
    fit = fit_notch(network.f, network.s[:, 1, 0])
    # Reference: resonator_tools 2.2.0 notch_port().autofit() (see shared/data/README.md).
    assert abs(fit.fr - 5.922519e9) < 2e3
    assert fit.Ql == pytest.approx(87128, rel=0.05)
    assert fit.Qi == pytest.approx(127755, rel=0.10)
    assert fit.kappa == pytest.approx(fit.fr / fit.Ql)
    assert all(np.isfinite([fit.fr_stderr, fit.Ql_stderr, fit.Qi_stderr, fit.Qc_stderr]))
    assert fit.snr > 20


def synthetic(
    rng: np.random.Generator, kind: str
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Random resonance with delay, complex gain, Fano angle and white noise on both quadratures."""
    fr = rng.uniform(5e9, 8e9)
    truth = {
        "fr": fr,
        "Ql": rng.uniform(5e3, 5e4),
        "phi": rng.uniform(-0.4, 0.4),
        "a": rng.uniform(0.01, 3.0),
        "alpha": rng.uniform(-np.pi, np.pi),
        "delay": rng.uniform(20e-9, 80e-9),
    }
    truth["Qc"] = truth["Ql"] * rng.uniform(1.3, 4.0)
    kappa = fr / truth["Ql"]
    frequency = np.linspace(fr - 8 * kappa, fr + 8 * kappa, 801) + rng.uniform(-1, 1) * kappa
    shape = notch_s21 if kind == "notch" else reflection_s11
    clean = shape(frequency, **truth)
    white = rng.normal(size=frequency.size) + 1j * rng.normal(size=frequency.size)
    noise = 0.01 * truth["a"] * white
    return truth, frequency, clean + noise


@pytest.mark.parametrize("seed", range(6))
def test_synthetic_notch_recovers_parameters(seed: int) -> None:
    truth, frequency, s21 = synthetic(np.random.default_rng(seed), "notch")
    fit = fit_notch(frequency, s21)
    kappa = truth["fr"] / truth["Ql"]
    assert abs(fit.fr - truth["fr"]) < 0.02 * kappa
    assert fit.Ql == pytest.approx(truth["Ql"], rel=0.03)
    assert fit.Qc == pytest.approx(truth["Qc"], rel=0.03)
    assert fit.phi == pytest.approx(truth["phi"], abs=0.03)
    # The delay matters through the phase it winds across the window: < 0.01 turn of error.
    assert abs(fit.delay - truth["delay"]) * np.ptp(frequency) < 0.01
    assert fit.a == pytest.approx(truth["a"], rel=0.01)
    # Standard errors are honest: the truth lies within a few of them.
    assert abs(fit.fr - truth["fr"]) < 5 * fit.fr_stderr
    assert abs(fit.best_fit(frequency) - s21).std() < 0.03 * truth["a"]


@pytest.mark.parametrize("seed", range(3))
def test_synthetic_notch_with_free_delay(seed: int) -> None:
    truth, frequency, s21 = synthetic(np.random.default_rng(100 + seed), "notch")
    fit = fit_notch(frequency, s21, fit_delay=True)
    assert abs(fit.fr - truth["fr"]) < 0.02 * truth["fr"] / truth["Ql"]
    assert fit.Ql == pytest.approx(truth["Ql"], rel=0.03)
    assert abs(fit.delay - truth["delay"]) * np.ptp(frequency) < 0.01


@pytest.mark.parametrize("seed", range(3))
def test_synthetic_reflection_recovers_parameters(seed: int) -> None:
    truth, frequency, s11 = synthetic(np.random.default_rng(200 + seed), "reflection")
    fit = fit_reflection(frequency, s11)
    assert abs(fit.fr - truth["fr"]) < 0.02 * truth["fr"] / truth["Ql"]
    assert fit.Ql == pytest.approx(truth["Ql"], rel=0.03)
    assert fit.Qc == pytest.approx(truth["Qc"], rel=0.03)


@pytest.mark.parametrize("seed", range(5))
def test_pure_noise_is_rejected(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    frequency = np.linspace(6.99e9, 7.01e9, 801)
    gain = 0.5 * np.exp(-2j * np.pi * frequency * 50e-9)
    noise = 0.01 * (rng.normal(size=frequency.size) + 1j * rng.normal(size=frequency.size))
    with pytest.raises(FitError, match="no resonance"):
        fit_notch(frequency, gain + noise)


def test_resonance_outside_window_is_rejected() -> None:
    rng = np.random.default_rng(7)
    frequency = np.linspace(6.99e9, 7.0e9, 801)
    s21 = notch_s21(frequency, fr=7.05e9, Ql=2e4, Qc=4e4, delay=30e-9)
    s21 = s21 + 1e-3 * (rng.normal(size=frequency.size) + 1j * rng.normal(size=frequency.size))
    with pytest.raises(FitError):
        fit_notch(frequency, s21)


def test_too_few_points_raise() -> None:
    with pytest.raises(FitError, match="at least"):
        fit_notch(np.linspace(1e9, 2e9, 5), np.ones(5, dtype=complex))
