"""Resonator nodes: search, resonator versus flux, spectroscopy at the sweet spot.

Live runs on the light, intermediate and heavy test chips recover the simulator's truth
within the acceptance tolerances; recorded runs (tests/fixtures/resonator_*.nc, regenerated
by tests/fixtures/record_resonator.py) give the same accepted values offline; pathological
data (pure noise, a resonance outside the window, glitches) are rejected with a reason naming
the failed criterion. resonator_flux does not decide half versus integer flux (qubit
spectroscopy does, from f01): it hands on both symmetry points, the one its thermal evidence
makes likelier half flux first, and weak evidence is not a rejection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from devices import make_device

from fluxcal.calibrations.experiments.flux_symmetry import (
    BiasMap,
    find_symmetry,
    point_stderr,
    refine_axis,
    symmetry_candidates,
)
from fluxcal.calibrations.experiments.resonator_flux import ResonatorFlux
from fluxcal.calibrations.experiments.resonator_spectroscopy import (
    ResonatorSearch,
    ResonatorSpectroscopy,
)
from fluxcal.calibrations.fitting.reuse import fits_reused
from fluxcal.calibrations.gate import GateOutcome
from fluxcal.calibrations.node import Analysis, Node
from fluxcal.calibrations.session import QubitSession
from fluxcal.instruments.device import SimulatedDevice, mixture_dip
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import CalibratedParameter

KINDS = ("light", "intermediate", "heavy")
FIXTURES = Path(__file__).parent / "fixtures"


def session_for(device: SimulatedDevice, **known: float) -> QubitSession:
    parameters = {name: CalibratedParameter(v, 0.0, "", "truth", "") for name, v in known.items()}
    return QubitSession(build_station(device), "q0", parameters)


def upstream(node: type[Node], truth: dict[str, float]) -> dict[str, float]:
    """What earlier nodes would have handed on: the truth, readout at the line's dip."""
    values = {**truth, "readout_frequency": truth["resonator_dip_frequency"]}
    return {name: values[name] for name in node.requires}


def calibrate(node: Node, session: QubitSession) -> tuple[Analysis, GateOutcome]:
    """Acquire, analyse and gate as `run_node` does: the analysis reuses the fits the
    acquisition made of the same data (`fitting.reuse`)."""
    with fits_reused():
        analysis = node.analyse(node.acquire(session))
    return analysis, node.gate(analysis)


def phase(voltage: float, truth: dict[str, float]) -> float:
    """Flux offset of `voltage` from the true half-flux point, in periods, wrapped to ±1/2."""
    offset = (voltage - truth["flux_sweet_spot"]) / truth["flux_period"]
    return float(offset - np.round(offset))


def dip_at_zero_bias(device: SimulatedDevice) -> float:
    """Where the search looks: the (ground-state) line at 0 V."""
    physics = device.physics("q0")
    return mixture_dip(physics.levels(physics.flux(0.0)), physics.config.resonator)


def load(stem: str) -> xr.Dataset:
    return xr.load_dataset(FIXTURES / f"{stem}.nc", engine="h5netcdf")


def noise_like(values: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scale = np.nanstd(values)
    return scale * (rng.standard_normal(values.shape) + 1j * rng.standard_normal(values.shape))


def assert_rejected(node: Node, data: xr.Dataset, reason: str) -> None:
    outcome = node.gate(node.analyse(data))
    assert not outcome.accepted
    assert reason in outcome.reason, outcome.reason


# --------------------------------------------------------------------------- live simulator


@pytest.mark.parametrize("kind", KINDS)
def test_search_finds_the_resonator_dip_at_zero_bias(kind: str) -> None:
    device = make_device(kind, 1)
    kappa = device.truth()["q0"]["resonator_kappa"]
    analysis, outcome = calibrate(ResonatorSearch(), session_for(device))
    assert outcome.accepted, outcome.reason
    assert abs(analysis.values["readout_frequency"][0] - dip_at_zero_bias(device)) < kappa / 10
    assert analysis.values["resonator_kappa"][0] == pytest.approx(kappa, rel=0.1)


@pytest.mark.parametrize(("kind", "seed"), [(kind, seed) for kind in KINDS for seed in (1, 2)])
def test_flux_scan_finds_the_period_and_the_half_flux_sweet_spot(kind: str, seed: int) -> None:
    device = make_device(kind, seed)
    truth = device.truth()["q0"]
    period = truth["flux_period"]
    session = session_for(device, **upstream(ResonatorFlux, truth))
    node = ResonatorFlux()
    analysis, outcome = calibrate(node, session)
    assert outcome.accepted, outcome.reason
    values = {name: value for name, (value, _) in analysis.values.items()}
    assert values["flux_period"] == pytest.approx(period, rel=0.005)
    # The two symmetry points nearest 0 V: one at half flux, the other (integer flux) half a
    # period away; which is which is for the thermal evidence to suggest.
    points = (values["flux_symmetry_point"], values["flux_symmetry_alternate"])
    offsets = sorted(abs(phase(v, truth)) for v in points)
    assert offsets[0] < 0.002
    assert abs(offsets[1] - 0.5) < 0.002
    assert all(abs(v) <= period / 2 for v in points)
    # On these chips the fluxonium at half flux is hot enough for the single shots to tell.
    significance = values["half_flux_significance"]
    assert significance >= node.min_thermal_sigma
    assert abs(phase(values["flux_symmetry_point"], truth)) < 0.002
    parameters = node.update(analysis, "now")
    assert set(parameters) == {"flux_period", "flux_symmetry_point", "flux_symmetry_alternate"}
    assert {parameter.unit for parameter in parameters.values()} == {"V"}


@pytest.mark.parametrize("kind", KINDS)
def test_spectroscopy_at_the_sweet_spot_sits_at_the_thermal_mixture_dip(kind: str) -> None:
    device = make_device(kind, 1)
    truth = device.truth()["q0"]
    kappa = truth["resonator_kappa"]
    # The search ran at 0 V: start from that line, as the chain does.
    known = {
        **upstream(ResonatorSpectroscopy, truth),
        "readout_frequency": dip_at_zero_bias(device),
    }
    assert "flux_sweet_spot" in known  # measured there, not at 0 V where the search ran
    analysis, outcome = calibrate(ResonatorSpectroscopy(), session_for(device, **known))
    assert outcome.accepted, outcome.reason
    fr, stderr = analysis.values["readout_frequency"]
    assert abs(fr - truth["resonator_dip_frequency"]) < kappa / 10
    assert 0 < stderr < kappa / 20
    # The bare linewidth, not that of the thermal mixture, and the dressed lines' splitting.
    assert analysis.values["resonator_kappa"][0] == pytest.approx(kappa, rel=0.05)
    splitting, splitting_stderr = analysis.values["resonator_splitting"]
    assert abs(splitting - abs(truth["dispersive_shift"])) < 3 * splitting_stderr


# --------------------------------------------------------------------------- recorded runs

RECORDED = {
    "resonator_search": (
        ResonatorSearch(),
        {"readout_frequency": 6599614463.560097, "resonator_kappa": 1399102.1847861677},
    ),
    "resonator_flux": (
        ResonatorFlux(),
        {
            "flux_period": 0.8399581266326592,
            "flux_symmetry_point": -0.28493719596501577,
            "flux_symmetry_alternate": 0.1350418673513138,
            "half_flux_significance": 7.571536540985107,
        },
    ),
    "resonator_spectroscopy": (
        ResonatorSpectroscopy(),
        {
            "readout_frequency": 6599949456.828841,
            "resonator_kappa": 1409871.9189707,
            "resonator_splitting": 776897.7341423035,
        },
    ),
}


@pytest.mark.parametrize("stem", RECORDED)
def test_recorded_run_gives_the_recorded_accepted_values(stem: str) -> None:
    node, expected = RECORDED[stem]
    analysis = node.analyse(load(stem))
    outcome = node.gate(analysis)
    assert outcome.accepted, outcome.reason
    for name, value in expected.items():
        assert analysis.values[name][0] == pytest.approx(value, rel=1e-7, abs=1e-7), name


def test_recorded_flux_run_matches_the_light_chip() -> None:
    truth = make_device("light", 1).truth()["q0"]
    values = RECORDED["resonator_flux"][1]
    assert values["flux_period"] == pytest.approx(truth["flux_period"], rel=0.005)
    assert values["half_flux_significance"] >= ResonatorFlux().min_thermal_sigma
    assert abs(phase(values["flux_symmetry_point"], truth)) < 0.002
    assert abs(abs(phase(values["flux_symmetry_alternate"], truth)) - 0.5) < 0.002


def test_recorded_spectroscopy_matches_the_intermediate_chip() -> None:
    truth = make_device("intermediate", 1).truth()["q0"]
    values = RECORDED["resonator_spectroscopy"][1]
    kappa = truth["resonator_kappa"]
    assert abs(values["readout_frequency"] - truth["resonator_dip_frequency"]) < kappa / 10
    assert values["resonator_kappa"] == pytest.approx(kappa, rel=0.02)
    assert values["resonator_splitting"] == pytest.approx(abs(truth["dispersive_shift"]), rel=0.03)


# --------------------------------------------------------------------------- pathological


def test_search_over_a_band_without_resonator_is_rejected() -> None:
    node = ResonatorSearch(band=(4.0e9, 4.2e9))
    _, outcome = calibrate(node, session_for(make_device("light", 1)))
    assert not outcome.accepted
    assert "coarse dip prominence" in outcome.reason


def test_search_on_pure_noise_is_rejected() -> None:
    data = load("resonator_search")
    data["iq"].values = noise_like(data["iq"].values, 1)
    data["coarse_iq"].values = noise_like(data["coarse_iq"].values, 2)
    assert_rejected(ResonatorSearch(), data, "coarse dip prominence")


def test_glitched_search_is_rejected() -> None:
    session = session_for(make_device("heavy", 1))
    session.station.components["readout"].inject_fault("glitch", "q0", count=2)
    _, outcome = calibrate(ResonatorSearch(), session)
    assert not outcome.accepted
    assert "notch fit" in outcome.reason


def test_spectroscopy_on_pure_noise_is_rejected() -> None:
    data = load("resonator_spectroscopy")
    data["iq"].values = noise_like(data["iq"].values, 3)
    assert_rejected(ResonatorSpectroscopy(), data, "notch fit (no resonance found")


def test_spectroscopy_with_the_resonance_outside_the_window_is_rejected() -> None:
    """Nothing of the line in the window (20 κ beyond its edge): nothing to re-centre on."""
    device = make_device("intermediate", 1)
    truth = device.truth()["q0"]
    known = upstream(ResonatorSpectroscopy, truth)
    node = ResonatorSpectroscopy()
    kappa = truth["resonator_kappa"]
    known["readout_frequency"] += max(node.window_linewidths * kappa, node.min_window) + 20 * kappa
    _, outcome = calibrate(node, session_for(device, **known))
    assert not outcome.accepted
    assert "notch fit" in outcome.reason


def test_spectroscopy_recentres_on_a_line_at_the_window_edge() -> None:
    """A line at the edge of the first window (the last readout frequency 8 κ off) is
    re-centred on and measured whole, not rejected."""
    device = make_device("intermediate", 1)
    truth = device.truth()["q0"]
    known = upstream(ResonatorSpectroscopy, truth)
    known["readout_frequency"] += 8 * truth["resonator_kappa"]
    analysis, outcome = calibrate(ResonatorSpectroscopy(), session_for(device, **known))
    assert outcome.accepted, outcome.reason
    found = analysis.values["readout_frequency"][0]
    assert abs(found - truth["resonator_dip_frequency"]) < truth["resonator_kappa"]


def test_glitched_spectroscopy_is_rejected() -> None:
    device = make_device("light", 2)
    session = session_for(device, **upstream(ResonatorSpectroscopy, device.truth()["q0"]))
    session.station.components["readout"].inject_fault("glitch", "q0")
    _, outcome = calibrate(ResonatorSpectroscopy(), session)
    assert not outcome.accepted
    # spikes either break the notch fit or leave it too uncertain to pass
    assert "notch fit" in outcome.reason or "stderr" in outcome.reason, outcome.reason


def test_flux_scan_on_pure_noise_is_rejected() -> None:
    data = load("resonator_flux")
    data["iq"].values = noise_like(data["iq"].values, 4)
    assert_rejected(ResonatorFlux(), data, "bias columns showing the resonator")


def test_flux_scan_with_the_resonance_outside_the_window_is_rejected() -> None:
    device = make_device("heavy", 2)
    truth = device.truth()["q0"]
    known = upstream(ResonatorFlux, truth)
    known["readout_frequency"] += 10 * truth["resonator_kappa"]
    _, outcome = calibrate(ResonatorFlux(bias_points=61), session_for(device, **known))
    assert not outcome.accepted
    assert "bias columns showing the resonator" in outcome.reason


def test_glitched_flux_scan_is_rejected() -> None:
    data = load("resonator_flux")
    iq = data["iq"].transpose("flux_voltage", "readout_frequency").values.copy()
    rng = np.random.default_rng(5)
    spikes = rng.random(iq.shape) < 1 / 8  # what inject_fault("glitch") does to each sweep
    iq[spikes] += 20 * np.abs(iq).max() * noise_like(iq[spikes], 6) / np.nanstd(iq[spikes])
    data["iq"] = (("flux_voltage", "readout_frequency"), iq)
    assert_rejected(ResonatorFlux(), data, "mirror mismatch")


def test_flux_scan_without_half_flux_evidence_leaves_the_choice_to_qubit_spectroscopy() -> None:
    """Classes that look alike: accepted, both points handed on, significance ~0."""
    data = load("resonator_flux")
    decided = ResonatorFlux().analyse(data).values
    shots = data["shot_iq"].values
    data["shot_iq"].values = np.stack([shots[1], shots[1]])  # both classes look alike
    analysis = ResonatorFlux().analyse(data)
    outcome = ResonatorFlux().gate(analysis)
    assert outcome.accepted, outcome.reason
    assert analysis.values["half_flux_significance"][0] < 1
    assert "qubit spectroscopy decides" in analysis.report
    handed_on = ResonatorFlux().update(analysis, "now")
    assert {
        handed_on[name].value for name in ("flux_symmetry_point", "flux_symmetry_alternate")
    } == {decided[name][0] for name in ("flux_symmetry_point", "flux_symmetry_alternate")}


def test_flux_scan_without_single_shots_is_rejected() -> None:
    data = load("resonator_flux").drop_vars(["shot_iq", "candidate_voltage", "shot_frequency"])
    assert_rejected(ResonatorFlux(), data, "half-flux evidence recorded")


def test_half_flux_is_where_the_single_shots_are_thermally_spread() -> None:
    data = load("resonator_flux")
    swapped = data.copy(deep=True)
    swapped["shot_iq"].values = data["shot_iq"].values[::-1]
    original = ResonatorFlux().analyse(data).values
    exchanged = ResonatorFlux().analyse(swapped).values
    assert exchanged["flux_symmetry_point"][0] == original["flux_symmetry_alternate"][0]
    assert exchanged["flux_symmetry_alternate"][0] == original["flux_symmetry_point"][0]
    assert exchanged["half_flux_significance"][0] == original["half_flux_significance"][0]


def weakly_modulated_map(bias: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Five readout points across a dip that moves by a twentieth of its width with flux
    (|χ| ≪ κ), period 0.31 V, symmetry points at 0.0342 V + m·0.155 V, noisy."""
    phase = (bias - 0.0342) / 0.31
    nearest = (phase + 0.5) % 1.0 - 0.5
    shift = np.exp(-((nearest / 0.05) ** 2)) + 0.3 * np.cos(2 * np.pi * phase)
    offsets = np.linspace(-1, 1, 5)
    iq = 1 - 1 / (1 + 2j * (offsets[None, :] - 0.05 * shift[:, None]))
    return iq + 0.02 * (rng.standard_normal(iq.shape) + 1j * rng.standard_normal(iq.shape))


def test_finer_map_pins_the_symmetry_point_the_whole_map_leaves_loose() -> None:
    """A resonator that hardly moves with flux leaves the whole map's mirror axis loose (its
    symmetry points, located one at a time, scatter by about a bias step, and its stderr
    says so); re-measured over one period around the two symmetry points nearest 0 V with
    as many columns, the axis is pinned tighter, within its stderr, which meets the gate's
    limit."""
    rng = np.random.default_rng(1)
    bias = np.linspace(-2.6, 2.6, 401)
    whole = find_symmetry(BiasMap.from_scan(bias, weakly_modulated_map(bias, rng)), (0.25, 2.6))
    points = symmetry_candidates(whole)
    assert abs(whole.axis - 2 * 0.0342) < 3 * whole.axis_stderr
    fine = np.linspace(min(points) - whole.period / 4, max(points) + whole.period / 4, 401)
    refined = refine_axis(BiasMap.from_scan(fine, weakly_modulated_map(fine, rng)), whole)
    assert abs(refined.axis - 2 * 0.0342) < 3 * refined.axis_stderr
    assert refined.axis_stderr < whole.axis_stderr
    worst = max(point_stderr(refined, v) for v in symmetry_candidates(refined))
    assert worst / refined.period <= ResonatorFlux().max_sweet_spot_stderr
