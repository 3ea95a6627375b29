"""Two-tone spectroscopy nodes: f01 at the sweet spot, and EJ/EC/EL from f01 versus flux.

Live runs start from what the chain hands on, taken from the truth (`handed_on`), and must
meet the tolerances of the full chain for what they hand on (EJ, EC, EL within 2 %;
qubit_frequency, which Ramsey refines, within 40 kHz here). Qubit spectroscopy runs before
resonator spectroscopy, so it gets the two flux-symmetry points of resonator_flux (not a
sweet spot) and the readout frequency the search found at 0 V, and must decide half flux
itself. Recorded runs must give the recorded numbers, and pathological data (pure noise, the
line outside or at the edge of the window, glitches, a wrong upstream frequency) must be
rejected with the failed criterion named, never accepted with a wrong value.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from devices import make_device

from fluxcal.calibrations.experiments.qubit_flux_spectroscopy import (
    ENERGIES,
    QubitFluxSpectroscopy,
    glitched,
    predict,
)
from fluxcal.calibrations.experiments.qubit_spectroscopy import (
    COARSE,
    SWEEP,
    Line,
    QubitSpectroscopy,
    find_lines,
    qubit_line,
    refine_strong_tone_line,
    strong_tone_lines,
)
from fluxcal.calibrations.node import UNITS, Analysis, Node
from fluxcal.calibrations.session import UNOPTIMISED_QUBIT_INTEGRATION, QubitSession
from fluxcal.instruments.device import SimulatedDevice, mixture_dip
from fluxcal.instruments.fluxonium import FluxoniumModel
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import CalibratedParameter

FIXTURES = Path(__file__).parent / "fixtures"
CASES = [(kind, seed) for kind in ("light", "intermediate", "heavy") for seed in (1, 2)]
#: Analysis of the recorded files (tests/fixtures/record_qubit_spectroscopy.py prints these).
RECORDED = {
    "qubit_spectroscopy": (
        QubitSpectroscopy,
        {"qubit_frequency": 201367110.04060414, "flux_sweet_spot": 0.24000000000000005},
    ),
    "qubit_spectroscopy_flux": (
        QubitFluxSpectroscopy,
        {"EJ": 8915206670.118973, "EC": 2503854694.0878286, "EL": 499810306.69516027},
    ),
}
#: Chip of the recorded qubit_spectroscopy run (RUNS of the recording script).
RECORDED_CHIP = ("heavy", 31)


#: What a node knows besides what it requires, because the chain has measured it before:
#: both re-centre their readout within a few κ; qubit spectroscopy may look at the alternate
#: symmetry point.
CONTEXT: dict[type[Node], tuple[str, ...]] = {
    QubitSpectroscopy: ("flux_symmetry_alternate", "resonator_kappa", "flux_period"),
    QubitFluxSpectroscopy: ("resonator_kappa",),
}


def nearest_zero(voltage: float, period: float) -> float:
    return voltage - period * round(voltage / period)


def handed_on(node: type[Node], device: SimulatedDevice) -> dict[str, float]:
    """The truth as the chain would hand it on to `node`.

    resonator_flux gives the half-flux point nearest 0 V as `flux_symmetry_point` and the
    integer-flux one as `flux_symmetry_alternate`. `readout_frequency` is where the search
    found the line, at 0 V, before resonator spectroscopy has run (at qubit spectroscopy), and
    the dip of the thermal mixture at the sweet spot after it; the truth's readout_frequency,
    the best-discriminating point, is only known once readout optimisation has run.
    """
    truth = device.truth()["q0"]
    period = truth["flux_period"]
    values = {
        **truth,
        "flux_symmetry_point": nearest_zero(truth["flux_sweet_spot"], period),
        "flux_symmetry_alternate": nearest_zero(truth["flux_sweet_spot"] + period / 2, period),
    }
    if node is QubitSpectroscopy:
        physics = device.physics("q0")
        levels = physics.levels(physics.flux(0.0))
        values["readout_frequency"] = mixture_dip(levels, physics.config.resonator)
    else:
        values["readout_frequency"] = truth["resonator_dip_frequency"]
    return values


def session_for(node: type[Node], kind: str, seed: int) -> tuple[QubitSession, dict[str, float]]:
    """A session on a test chip whose known upstream parameters are the truth, as handed on."""
    return session_on(node, make_device(kind, seed))


def session_on(node: type[Node], device: SimulatedDevice) -> tuple[QubitSession, dict[str, float]]:
    """A session on `device` whose known upstream parameters are the truth, as handed on."""
    values = handed_on(node, device)
    known = {
        name: CalibratedParameter(values[name], math.nan, UNITS[name], "truth", "")
        for name in (*node.requires, *CONTEXT.get(node, ()))
    }
    return QubitSession(build_station(device), "q0", known), device.truth()["q0"]


def verdict(node: Node, data: xr.Dataset) -> tuple[bool, str, Analysis]:
    analysis = node.analyse(data)
    outcome = node.gate(analysis)
    return outcome.accepted, outcome.reason, analysis


def recorded(stem: str) -> xr.Dataset:
    return xr.load_dataset(FIXTURES / f"{stem}.nc", engine="h5netcdf")


def with_glitches(data: xr.Dataset, seed: int = 0) -> xr.Dataset:
    """A burst of large spikes on an eighth of the points, as the digitiser's glitch fault."""
    rng = np.random.default_rng(seed)
    iq = data["iq"].values.copy()
    flat = iq.reshape(-1)
    where = rng.choice(flat.size, flat.size // 8, replace=False)
    spikes = rng.standard_normal(where.size) + 1j * rng.standard_normal(where.size)
    flat[where] += 20 * np.abs(flat).max() * spikes
    return data.assign(iq=(data["iq"].dims, iq))


def pure_noise(data: xr.Dataset, seed: int = 0) -> xr.Dataset:
    """The recorded IQ replaced by white noise of the recorded point-to-point scatter."""
    rng = np.random.default_rng(seed)
    iq = data["iq"].values
    scale = np.std(np.diff(iq.reshape(-1))) / 2
    noise = rng.standard_normal(iq.shape) + 1j * rng.standard_normal(iq.shape)
    return data.assign(iq=(data["iq"].dims, np.median(iq.real) + scale * noise))


# --------------------------------------------------------------------------- qubit spectroscopy


@pytest.mark.parametrize(("kind", "seed"), CASES)
def test_qubit_line_found_from_nothing_at_the_sweet_spot(kind, seed):
    session, truth = session_for(QubitSpectroscopy, kind, seed)
    node = QubitSpectroscopy()
    accepted, reason, analysis = verdict(node, node.acquire(session))
    assert accepted, reason
    frequency, stderr = analysis.values["qubit_frequency"]
    assert abs(frequency - truth["qubit_frequency"]) < 40e3
    # the node's own promise: a tenth of the fine line's wanted width
    assert 0 < stderr < node.max_relative_error * node.fine_linewidth
    assert analysis.values["flux_sweet_spot"][0] == truth["flux_sweet_spot"]
    assert set(node.update(analysis, "now")) == {
        "qubit_frequency",
        "flux_sweet_spot",
        "state_integration",
    }
    # measured at the line: 10 µs or longer, never far past T1 (tests/test_state_integration)
    assert analysis.values["state_integration"][0] >= UNOPTIMISED_QUBIT_INTEGRATION
    assert analysis.values["state_integration"][0] <= max(4 * truth["T1"], 10e-6)


@pytest.mark.parametrize(("kind", "seed"), [("light", 1), ("heavy", 2)])
@pytest.mark.parametrize("drifted_by", [0.3e6, 400e6])
def test_a_daily_run_looks_where_f01_was_and_searches_anew_only_if_it_is_gone(
    kind, seed, drifted_by
):
    """With yesterday's qubit_frequency known the coarse look covers ± warm_half_span around
    it at one symmetry point (a fraction of the device time of a bring-up); a line that has
    moved out of that window (a flux jump) is found by the full search, as in a bring-up."""
    lab_time, coarse_points = {}, {}
    for warm in (False, True):
        session, truth = session_for(QubitSpectroscopy, kind, seed)
        if warm:
            session.known["qubit_frequency"] = CalibratedParameter(
                truth["qubit_frequency"] + drifted_by, 10e3, "Hz", "ramsey", "yesterday"
            )
        node = QubitSpectroscopy()
        data = node.acquire(session)
        accepted, reason, analysis = verdict(node, data)
        assert accepted, reason
        assert abs(analysis.values["qubit_frequency"][0] - truth["qubit_frequency"]) < 40e3
        lab_time[warm] = session.device_time()
        coarse_points[warm] = data[COARSE].size
    if drifted_by < node.warm_half_span:
        # the coarse look covers a fraction of the band (the fine sweep is the same in both);
        # a bring-up's record keeps only the window its sparse first look confirmed a line in
        band = np.arange(node.coarse_start, node.coarse_stop, node.coarse_step).size
        assert lab_time[True] < lab_time[False]
        assert coarse_points[True] < 0.5 * band
    else:
        assert lab_time[True] > lab_time[False]  # the narrow look, then the full search


def symmetry_points_session(integer_first: bool):
    """A light test chip's session whose flux_symmetry_point is the integer-flux one
    (`integer_first`) or the half-flux one; returns it, the truth and both points."""
    session, truth = session_for(QubitSpectroscopy, "light", 3)
    period = truth["flux_period"]
    half = CalibratedParameter(
        nearest_zero(truth["flux_sweet_spot"], period), 2e-4, "V", "resonator_flux", ""
    )
    integer = CalibratedParameter(
        nearest_zero(truth["flux_sweet_spot"] + period / 2, period), 1e-4, "V", "resonator_flux", ""
    )
    point, alternate = (integer, half) if integer_first else (half, integer)
    session.known["flux_symmetry_point"] = point
    session.known["flux_symmetry_alternate"] = alternate
    return session, truth, half, integer


@pytest.mark.parametrize("integer_first", [True, False])
def test_integer_flux_mistaken_for_the_sweet_spot_is_corrected(integer_first):
    """Whichever symmetry point resonator_flux thought likelier half flux, the node keeps the
    one with the lowest qubit line (f01 is lowest at half flux) and hands it on, with its
    own stderr, as the sweet spot."""
    session, truth, half, integer = symmetry_points_session(integer_first)
    node = QubitSpectroscopy()
    data = node.acquire(session)
    accepted, reason, analysis = verdict(node, data)
    assert accepted, reason
    assert analysis.values["flux_sweet_spot"] == (half.value, half.stderr)
    assert abs(analysis.values["qubit_frequency"][0] - truth["qubit_frequency"]) < 40e3
    # Both points were looked at; the sweet spot is the one measured last (the fine sweep).
    tried = np.atleast_1d(data.attrs["symmetry_points_tried"])
    assert list(tried) == [integer.value, half.value]
    assert set(node.update(analysis, "now")) == {
        "qubit_frequency",
        "flux_sweet_spot",
        "state_integration",
    }


def test_the_qubit_is_the_lowest_line_not_much_weaker_than_the_strongest():
    blip = Line(60e6, 2e6, 8e6, 9.0, 10)
    f01 = Line(360e6, 1e6, 30e6, 40.0, 85)
    one_to_two = Line(900e6, 1e6, 30e6, 15.0, 220)
    assert qubit_line([blip, f01, one_to_two], min_relative_snr=0.25) is f01
    assert qubit_line([], min_relative_snr=0.25) is None


def strong_tone_sweep(height: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A coarse strong-tone sweep (4 MHz steps, 20 MHz–2 GHz) of unit complex noise per
    point, with a Lorentzian line at 600 MHz, 40 MHz (ten steps) wide, `height` noise
    deviations high along an arbitrary IQ direction."""
    rng = np.random.default_rng(seed)
    frequency = np.arange(20e6, 2.0e9 + 2e6, 4e6)
    line = height / (1.0 + (2.0 * (frequency - 600e6) / 40e6) ** 2)
    noise = rng.normal(size=frequency.size) + 1j * rng.normal(size=frequency.size)
    return frequency, (0.3 - 0.2j) + np.exp(0.7j) * line + noise


@pytest.mark.parametrize("seed", range(4))
def test_a_faint_broad_line_shows_averaged_over_its_width(seed):
    """A power-broadened line ten steps wide and five point-noise deviations high: three-point
    smoothing leaves it below the threshold of 8 (the chips with weak dispersive contrast);
    averaged over its width it stands ~12 standard errors out, within a quarter of its width
    of where it is (the fine sweep's window and its re-centring take it from there)."""
    frequency, iq = strong_tone_sweep(5.0, seed)
    assert find_lines(frequency, iq, 8.0) == []
    line = qubit_line(strong_tone_lines(frequency, iq, 8.0), min_relative_snr=0.25)
    assert line is not None and line.scale > 3
    line = refine_strong_tone_line(frequency, iq, line)
    assert abs(line.centre - 600e6) < 10e6
    assert line.stderr < 5e6
    assert 20e6 < line.fwhm < 80e6


@pytest.mark.parametrize("seed", range(4))
def test_a_line_filling_a_chosen_window_leaves_no_lines_at_its_edges(seed):
    """A drift check recalibrated f01 off the sweet spot, where flux noise broadened the line
    to fill the ±100 MHz warm window: the median baseline made both window edges look like
    lines, and the lowest was taken for f01. Lines whose half maximum lies beyond an edge the
    node chose are not lines; the line itself is kept or, if it cannot be told from the
    edges, none is (the node then searches the whole range)."""
    rng = np.random.default_rng(seed)
    frequency = np.arange(500e6, 700e6 + 2e6, 4e6)
    line = 30.0 / (1.0 + (2.0 * (frequency - 600e6) / 150e6) ** 2)
    noise = rng.normal(size=frequency.size) + 1j * rng.normal(size=frequency.size)
    iq = (0.3 - 0.2j) + np.exp(0.7j) * line + noise
    lines = QubitSpectroscopy()._lines(frequency, iq)
    assert all(abs(ln.centre - 600e6) < 20e6 for ln in lines)
    full_range = np.arange(20e6, 2.0e9 + 2e6, 4e6)  # the search range's own edges keep lines
    edge_line = 30.0 / (1.0 + (2.0 * (full_range - 24e6) / 40e6) ** 2)
    kept = QubitSpectroscopy()._lines(full_range, edge_line + noise[:1].repeat(full_range.size))
    assert any(abs(ln.centre - 24e6) < 10e6 for ln in kept)


@pytest.mark.parametrize("seed", range(4))
def test_noise_shows_no_line_at_any_averaging(seed):
    frequency, iq = strong_tone_sweep(0.0, seed)
    assert strong_tone_lines(frequency, iq, 8.0) == []


def test_recorded_qubit_spectroscopy_gives_the_recorded_values():
    node_class, values = RECORDED["qubit_spectroscopy"]
    accepted, reason, analysis = verdict(node_class(), recorded("qubit_spectroscopy"))
    assert accepted, reason
    for name, value in values.items():
        assert analysis.values[name][0] == pytest.approx(value, rel=1e-9, abs=1.0), name


def test_recorded_qubit_spectroscopy_matches_its_chip():
    """The recorded run (heavy chip, seed 31) looked at both symmetry points nearest 0 V and
    kept half flux, where f01 is (the point kept is listed last)."""
    truth = make_device(*RECORDED_CHIP).truth()["q0"]
    data = recorded("qubit_spectroscopy")
    values = RECORDED["qubit_spectroscopy"][1]
    assert abs(values["qubit_frequency"] - truth["qubit_frequency"]) < 40e3
    assert values["flux_sweet_spot"] == truth["flux_sweet_spot"]
    integer = nearest_zero(
        truth["flux_sweet_spot"] + truth["flux_period"] / 2, truth["flux_period"]
    )
    tried = np.atleast_1d(data.attrs["symmetry_points_tried"])
    assert tried == pytest.approx([integer, truth["flux_sweet_spot"]], abs=1e-12)


def test_pure_noise_has_no_qubit_line():
    data = pure_noise(recorded("qubit_spectroscopy"))
    accepted, reason, _ = verdict(QubitSpectroscopy(), data)
    assert not accepted
    assert "FAILED" in reason


@pytest.mark.parametrize(
    ("offset", "failed"), [(1.5e6, "FAILED"), (-0.3e6, "centre to window edge")]
)
def test_line_outside_or_at_the_edge_of_the_window_is_rejected(offset, failed):
    data = recorded("qubit_spectroscopy")
    start = RECORDED["qubit_spectroscopy"][1]["qubit_frequency"] + offset
    accepted, reason, _ = verdict(QubitSpectroscopy(), data.sel({SWEEP: slice(start, None)}))
    assert not accepted
    assert failed in reason


def test_glitched_fine_sweep_is_rejected_by_chi_square():
    accepted, reason, _ = verdict(
        QubitSpectroscopy(), with_glitches(recorded("qubit_spectroscopy"))
    )
    assert not accepted
    assert "reduced chi-square" in reason


def test_live_glitches_never_pass_a_wrong_frequency():
    session, _ = session_for(QubitSpectroscopy, "intermediate", 4)
    session.station.components["readout"].inject_fault("glitch", "q0", count=2)
    node = QubitSpectroscopy()
    accepted, reason, analysis = verdict(node, node.acquire(session))
    assert not accepted, analysis.values
    assert "FAILED" in reason


# --------------------------------------------------------------------------- flux spectroscopy


@pytest.mark.parametrize(("kind", "seed"), CASES)
def test_energies_from_the_tracked_qubit_line(kind, seed):
    session, truth = session_for(QubitFluxSpectroscopy, kind, seed)
    node = QubitFluxSpectroscopy()
    accepted, reason, analysis = verdict(node, node.acquire(session))
    assert accepted, reason
    for name in ENERGIES:
        value, stderr = analysis.values[name]
        assert value == pytest.approx(truth[name], rel=0.02), name
        assert 0 < stderr < 0.01 * value
    sweet_spot = analysis.values["flux_sweet_spot"][0]
    assert abs(sweet_spot - truth["flux_sweet_spot"]) < 2e-4 * truth["flux_period"]
    assert set(node.update(analysis, "now")) == set(ENERGIES)


def test_recorded_flux_map_gives_the_recorded_energies():
    node_class, values = RECORDED["qubit_spectroscopy_flux"]
    data = recorded("qubit_spectroscopy_flux")
    accepted, reason, analysis = verdict(node_class(), data)
    assert accepted, reason
    for name, value in values.items():
        assert analysis.values[name][0] == pytest.approx(value, rel=1e-6), name
    assert analysis.curves["image"].shape == (400, data.sizes["flux_voltage"])


def test_map_inconsistent_with_the_calibrated_sweet_spot_is_rejected():
    """The map says where half flux is; 0.02 Φ0 away from the calibration means a wrong mapping."""
    data = recorded("qubit_spectroscopy_flux")
    data.attrs["flux_sweet_spot"] += 0.02 * data.attrs["flux_period"]
    accepted, reason, _ = verdict(QubitFluxSpectroscopy(), data)
    assert not accepted
    assert "fitted − calibrated sweet spot" in reason


def test_flux_map_of_pure_noise_has_no_peaks():
    data = pure_noise(recorded("qubit_spectroscopy_flux"))
    accepted, reason, analysis = verdict(QubitFluxSpectroscopy(), data)
    assert not accepted
    assert "row peaks found" in reason
    assert all(math.isnan(analysis.values[name][0]) for name in ENERGIES)


def test_glitched_flux_map_is_rejected():
    data = with_glitches(recorded("qubit_spectroscopy_flux"))
    accepted, reason, _ = verdict(QubitFluxSpectroscopy(), data)
    assert not accepted
    assert "glitched rows (fraction) = 1" in reason


def test_glitched_rows_are_left_out_of_the_fit():
    data = recorded("qubit_spectroscopy_flux")
    burst = with_glitches(data.isel(flux_voltage=slice(10, 13)))
    data["iq"][10:13] = burst["iq"].values
    accepted, reason, analysis = verdict(QubitFluxSpectroscopy(), data)
    assert accepted, reason
    values = RECORDED["qubit_spectroscopy_flux"][1]
    for name in ENERGIES:
        assert analysis.values[name][0] == pytest.approx(values[name], rel=2e-3), name


def test_live_glitch_is_measured_again():
    session, _ = session_for(QubitFluxSpectroscopy, "intermediate", 3)
    session.station.components["readout"].inject_fault("glitch", "q0", count=1)
    node = QubitFluxSpectroscopy(rows=6, flux_span=0.1)
    data = node.acquire(session)
    assert not any(map(glitched, data["iq"].values))


def test_a_wrong_half_flux_frequency_never_gives_wrong_energies():
    """qubit_frequency 150 MHz below the line: the sweet-spot row sees nothing and the first
    rows are predicted from the wrong value. The fit uses only the lines the rows found, so
    the node either recovers the true energies or rejects; it never hands on wrong ones."""
    session, truth = session_for(QubitFluxSpectroscopy, "heavy", 3)
    session.known["qubit_frequency"] = CalibratedParameter(
        truth["qubit_frequency"] - 150e6, math.nan, "Hz", "", ""
    )
    node = QubitFluxSpectroscopy()
    accepted, reason, analysis = verdict(node, node.acquire(session))
    if accepted:
        for name in ENERGIES:
            assert analysis.values[name][0] == pytest.approx(truth[name], rel=0.02), name
    else:
        assert "FAILED" in reason


def test_prediction_is_exact_on_the_half_flux_hyperbola():
    """Near Φ0/2, f01² = f0² + (s·δ)²: two rows predict the third exactly."""
    f0, slope = 300e6, 20e9
    flux = np.array([0.0, 0.02])
    f01 = np.sqrt(f0**2 + (slope * flux) ** 2)
    window = predict(flux, f01, 0.04, floor=10e6)
    assert window.centre == pytest.approx(np.sqrt(f0**2 + (slope * 0.04) ** 2), rel=1e-9)
    assert window.half_width >= 10e6


def test_prediction_follows_a_real_spectrum_within_its_window():
    model = FluxoniumModel(5.0, 1.0, 0.7)
    offsets = np.linspace(0.0, 0.5, 26)
    f01 = 1e9 * model.transition_frequency(0.5 + offsets)
    for k in range(2, offsets.size):
        window = predict(offsets[:k], f01[:k], offsets[k], floor=15e6)
        assert abs(window.centre - f01[k]) < window.half_width, offsets[k]
