"""Real measured traces through `fluxcal analyse`: the lab's way in, no instrument needed.

The files live in ../shared/data (see its README for sources and the authors' reference
fits); they are not copied into the project, so these tests skip where the folder is absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fluxcal.analyse import analyse_file
from fluxcal.calibrations.experiments.resonator_spectroscopy import ResonatorSpectroscopy
from fluxcal.calibrations.importers import load_recorded
from fluxcal.cli import app


def shared_data_dir() -> Path:
    """repo_root/../shared/data, unless FLUXCAL_SHARED_DATA names another folder."""
    override = os.environ.get("FLUXCAL_SHARED_DATA")
    repo_root = Path(__file__).resolve().parents[1]
    return Path(override) if override else repo_root.parent / "shared" / "data"


S2P = shared_data_dir() / "S21testdata.s2p"
TWOTONE = shared_data_dir() / "supergrad_fluxonium_twotone.npz"
needs_s2p = pytest.mark.skipif(not S2P.is_file(), reason=f"real resonator trace not at {S2P}")
needs_twotone = pytest.mark.skipif(
    not TWOTONE.is_file(), reason=f"real two-tone map not at {TWOTONE}"
)

# resonator_tools 2.2.0 notch_port().autofit() on the same file (shared/data/README.md).
REFERENCE_FR = 5.922519e9
REFERENCE_FR_STDERR = 0.46e3
REFERENCE_QL = 87128.0
REFERENCE_QI = 127755.0
#: Allowed relative deviation of Ql and Qi from the reference (see assert_matches_reference).
REFERENCE_Q_DEVIATION = 0.08
#: Fit windows, as fractions of the measured span centred on the line (4.7–16 κ wide), and
#: how far Ql and Qi may move between them: 5 stderrs of Ql (0.1 %); they move by 0.2 %.
WINDOWS = (0.8, 0.6, 0.4, 0.3)
WINDOW_STABILITY = 0.005
# SuperGrad's own fit of the two-tone map (GHz, V).
REFERENCE_ENERGIES = {"EJ": 2.8479e9, "EC": 1.5494e9, "EL": 0.3599e9}
REFERENCE_SWEET_SPOT = -0.0151


def assert_matches_reference(values: dict[str, tuple[float, float]]) -> None:
    """fr within 3σ of the reference (both stderrs combined); Ql and Qi within 8 % of it.

    The Q factors are not compared within their stderrs (0.1 % here, 1 % for the reference)
    because the two fits differ in how they treat the cable delay, and this trace is
    sensitive to it. resonator_tools fixes the delay from the circularity of the data before
    fitting the circle; with that delay its model misses the wings of this trace by ~16× the
    noise, and its Ql drifts from 81 k to 87 k as the window changes. The joint fit here
    keeps the delay free: its wings sit at the noise and its Ql stays at 93.1–93.3 k across
    windows (the two tests below), 6.9 % above the reference's 87 128 (Qi 136.3 k, +6.7 %).
    That difference is the reference's own delay systematic, the size of its window drift
    (~7 %); 8 % admits it while still catching a real error in the linewidth (a thermal
    mixture read as one line widened κ by 40 % on the intermediate chip, a convention slip
    would be a factor of 2).
    """
    fr, fr_stderr = values["readout_frequency"]
    assert abs(fr - REFERENCE_FR) < 3 * np.hypot(fr_stderr, REFERENCE_FR_STDERR)
    assert values["loaded_q"][0] == pytest.approx(REFERENCE_QL, rel=REFERENCE_Q_DEVIATION)
    assert values["internal_q"][0] == pytest.approx(REFERENCE_QI, rel=REFERENCE_Q_DEVIATION)
    assert values["resonator_kappa"][0] == pytest.approx(
        values["readout_frequency"][0] / values["loaded_q"][0]
    )
    assert all(np.isfinite(stderr) and stderr > 0 for _, stderr in values.values())


@needs_s2p
def test_nist_resonator_through_the_command_line_matches_the_reference_fit(tmp_path) -> None:
    figure = tmp_path / "out.png"
    command = ["analyse", str(S2P), "--experiment", "resonator_spectroscopy"]
    result = CliRunner().invoke(app, [*command, "--plot", str(figure), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accepted"], report["reason"]
    values = {k: (v["value"], v["stderr"]) for k, v in report["values"].items()}
    assert_matches_reference(values)
    assert report["values"]["readout_frequency"]["unit"] == "Hz"
    assert figure.stat().st_size > 10_000


@needs_s2p
def test_nist_resonator_through_the_api_matches_the_reference_fit() -> None:
    result = analyse_file(S2P, "resonator_spectroscopy")
    assert result.outcome.accepted, result.outcome.reason
    assert_matches_reference(result.analysis.values)
    # The Touchstone trace carries no live settings: the analysis used the data alone.
    assert result.data["readout_frequency"].attrs["units"] == "Hz"
    assert result.data["iq"].attrs["units"] == ""
    assert "kappa_reference" not in result.data.attrs


@needs_s2p
def test_nist_resonator_q_does_not_depend_on_the_fit_window() -> None:
    """The joint fit's Ql and Qi stay put as the window shrinks from 16 κ to 4.7 κ wide: a
    delay that the fit got wrong would tilt the wings and move them, as it moves the
    reference's."""
    data = load_recorded(S2P, "resonator_spectroscopy")
    node = ResonatorSpectroscopy()
    full = node.analyse(data).values
    frequency = data["readout_frequency"].values
    fr = full["readout_frequency"][0]
    for fraction in WINDOWS:
        half = fraction * np.ptp(frequency) / 2
        analysis = node.analyse(data.sel(readout_frequency=slice(fr - half, fr + half)))
        outcome = node.gate(analysis)
        assert outcome.accepted, (fraction, outcome.reason)
        for name in ("loaded_q", "internal_q"):
            value = analysis.values[name][0]
            assert value == pytest.approx(full[name][0], rel=WINDOW_STABILITY), (fraction, name)
        fr_window, fr_stderr = analysis.values["readout_frequency"]
        assert abs(fr_window - REFERENCE_FR) < 3 * np.hypot(fr_stderr, REFERENCE_FR_STDERR)


@needs_s2p
def test_nist_resonator_fit_meets_the_wings_at_the_noise() -> None:
    """Beyond 3 κ from the line the residual is noise (rms per quadrature within 1.5× the
    point-to-point noise; it is 1.27×). The misfit left is in the line's core (4.7× the
    noise within κ), where the report finds the line distorted beyond one Lorentzian."""
    result = analyse_file(S2P, "resonator_spectroscopy")
    fit = result.analysis.fit
    frequency = result.data["readout_frequency"].values
    residual = result.data["iq"].values - fit.best_fit(frequency)
    wings = np.abs(frequency - fit.fr) >= 3 * fit.kappa
    assert wings.sum() > 300
    rms = np.sqrt(np.mean(np.abs(residual[wings]) ** 2) / 2)
    assert rms < 1.5 * fit.noise


def _notch_with_background(
    frequency,
    fr,
    Ql,
    Qc,
    phi,
    a,
    alpha_ref,
    delay,
    gain_slope,
    f_ref,
    gain_curvature=0.0,
    slope_phase=0.0,
    phase_curvature=0.0,
):
    """The notch model of `fitting.resonator` with a richer line: a quadratic gain, a complex
    gain slope and a quadratic phase (in rad at the window's edge scale) about f_ref."""
    x = (frequency - f_ref) / f_ref
    gain = a * (1 + (gain_slope + 1j * slope_phase) * x + gain_curvature * x**2)
    winding = alpha_ref - 2 * np.pi * (frequency - f_ref) * delay + phase_curvature * 1e6 * x**2
    return (
        gain
        * np.exp(1j * winding)
        * (1 - (Ql / Qc) * np.exp(1j * phi) / (1 + 2j * Ql * (frequency / fr - 1)))
    )


@needs_s2p
def test_nist_loaded_q_holds_under_richer_backgrounds_and_not_with_the_reference_delay() -> None:
    """Why fluxcal's Ql (93.1 k) stays 6.9 % above resonator_tools' 87 128 rather than within
    1 %: every richer line model (a quadratic gain, a complex gain slope, a quadratic phase,
    all at once) fits the trace at least as well and keeps Ql within 0.3 % of 93.1 k, while
    the only way to 87 k, the delay held at the circularity estimate as resonator_tools
    does, fits 20 × worse. (A Kerr-bifurcation line, Swenson et al. 2013, lowers χ² by 40 %
    more in the core and also keeps Ql at 93.1 k; not run here, it is slow.)"""
    lmfit = pytest.importorskip("lmfit")
    from fluxcal.calibrations.fitting import resonator

    data = load_recorded(S2P, "resonator_spectroscopy")
    frequency, s21 = data["readout_frequency"].values, data["iq"].values
    start = resonator.initial_parameters(
        frequency, s21, "notch", resonator.estimate_delay(frequency, s21)
    )
    model = lmfit.Model(_notch_with_background, independent_vars=["frequency"])

    def fit(free=(), hold_delay=False):
        params = start.copy()
        for name in ("gain_curvature", "slope_phase", "phase_curvature"):
            params.add(name, value=0.0, vary=name in free)
        params["delay"].vary = not hold_delay
        result = model.fit(s21, params, frequency=frequency)
        return result.params["Ql"].value, result.chisqr

    joint_q, joint_chi2 = fit()
    for free in (
        ["gain_curvature"],
        ["slope_phase"],
        ["phase_curvature"],
        ["gain_curvature", "slope_phase", "phase_curvature"],
    ):
        q, chi2 = fit(free)
        assert q == pytest.approx(joint_q, rel=0.003), free
        assert chi2 <= joint_chi2 * 1.0001, free
    held_q, held_chi2 = fit(hold_delay=True)
    assert held_q == pytest.approx(REFERENCE_QL, rel=0.01)
    assert held_chi2 > 15 * joint_chi2
    assert joint_q / REFERENCE_QL - 1 == pytest.approx(0.069, abs=0.005)


@needs_s2p
def test_nist_resonator_text_output_names_the_values_with_units() -> None:
    result = CliRunner().invoke(
        app, ["analyse", str(S2P), "--experiment", "resonator_spectroscopy"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("resonator_spectroscopy: accepted")
    assert "readout_frequency = 59225" in result.stdout
    assert "loaded_q = " in result.stdout and "internal_q = " in result.stdout


@needs_twotone
def test_supergrad_map_imports_as_a_flux_map_with_units() -> None:
    data = load_recorded(
        TWOTONE, "qubit_flux_spectroscopy", axes={"xs": "flux_voltage", "ys": "drive_frequency"}
    )
    assert data["iq"].dims == ("flux_voltage", "drive_frequency")
    assert data["iq"].shape == (35, 1828)
    assert data["flux_voltage"].attrs["units"] == "V"
    assert data["drive_frequency"].attrs["units"] == "Hz"
    # only a 150-point window per bias row was measured; the rest stays NaN
    assert (np.isfinite(data["iq"].values).sum(axis=1) == 150).all()


@needs_twotone
def test_supergrad_flux_map_through_the_command_line_matches_the_authors_fit() -> None:
    command = ["analyse", str(TWOTONE), "--experiment", "qubit_flux_spectroscopy"]
    axes = ["--axes", "xs=flux_voltage,ys=drive_frequency"]
    result = CliRunner().invoke(app, [*command, *axes, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    values = report["values"]
    for name, reference in REFERENCE_ENERGIES.items():
        assert values[name]["value"] == pytest.approx(reference, rel=0.03), name
    assert abs(values["flux_sweet_spot"]["value"] - REFERENCE_SWEET_SPOT) < 0.01
    assert report["accepted"]
