"""Time-domain nodes (Rabi, Ramsey, echo, T1): live on the simulator and on recorded data.

Live runs start from the truth for the upstream parameters a node requires (Ramsey's
qubit_frequency deliberately 150 kHz off, on either side, to show the correction and its
sign) and must land inside the acceptance tolerances of the full chain: pi_amplitude 2 %,
qubit_frequency 20 kHz, T1 / T2 15 %. Ramsey, echo and T1 run their default, sequentially
chosen delays (tests/test_adaptive_estimation.py compares them with the fixed grids); the
recorded runs are fixed grids. Recorded runs must give the recorded numbers, and
pathological data (pure noise, a glitch burst, a window far shorter than the decay, no drive
at all) must be rejected with the failed criterion named, never accepted with a wrong value.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from devices import make_device

from fluxcal.calibrations.adaptive import SequentialWindow
from fluxcal.calibrations.experiments.decay_fits import Trace, fit_ramsey, project
from fluxcal.calibrations.experiments.echo import Echo
from fluxcal.calibrations.experiments.rabi import Rabi
from fluxcal.calibrations.experiments.ramsey import Ramsey, resolve_sign
from fluxcal.calibrations.experiments.ramsey_sequential import fringe_snr
from fluxcal.calibrations.experiments.t1 import T1
from fluxcal.calibrations.experiments.time_domain import resolve_window
from fluxcal.calibrations.fitting import FitError
from fluxcal.calibrations.node import UNITS, Analysis, Node
from fluxcal.calibrations.session import QubitSession
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import CalibratedParameter

FIXTURES = Path(__file__).parent / "fixtures"
CASES = [(kind, seed) for kind in ("light", "intermediate", "heavy") for seed in (1, 2, 3)]
#: Analysis of the recorded files (tests/fixtures/record_time_domain.py prints these).
RECORDED = {
    "rabi": (Rabi, "heavy", 21, {"pi_amplitude": 0.09714276280961573}),
    "ramsey": (
        Ramsey,
        "light",
        22,
        {"qubit_frequency": 363421410.28203845, "T2_ramsey": 0.0002510329886887721},
    ),
    "echo": (Echo, "intermediate", 23, {"T2_echo": 0.00020422327942218462}),
    "t1": (T1, "light", 24, {"T1": 0.00024860232113360365}),
}
#: Acceptance tolerance of each produced parameter: (kind, limit).
TOLERANCE = {
    "pi_amplitude": ("relative", 0.02),
    "qubit_frequency": ("absolute", 20e3),
    "T2_ramsey": ("relative", 0.15),
    "T2_echo": ("relative", 0.15),
    "T1": ("relative", 0.15),
}


def session_for(
    node: type[Node], kind: str, seed: int, shifts: dict[str, float] | None = None
) -> tuple[QubitSession, dict[str, float]]:
    """A session on a test chip whose known parameters are the truth (+ `shifts`)."""
    device = make_device(kind, seed)
    truth = device.truth()["q0"]
    known = {
        name: CalibratedParameter(
            truth[name] + (shifts or {}).get(name, 0.0), math.nan, UNITS[name], "truth", ""
        )
        for name in node.requires
    }
    return QubitSession(build_station(device), "q0", known), truth


def judge(node: Node, data: xr.Dataset) -> tuple[bool, str, Analysis | None]:
    """Gate verdict; an analysis that cannot fit is a rejection, as in the runner."""
    try:
        analysis = node.analyse(data)
    except FitError as error:
        return False, f"analysis failed: {error}", None
    outcome = node.gate(analysis)
    return outcome.accepted, outcome.reason, analysis


def assert_within_tolerance(analysis: Analysis, node: Node, truth: dict[str, float]) -> None:
    for name in (produced for produced in node.produces if produced in TOLERANCE):
        value = analysis.values[name][0]
        kind, limit = TOLERANCE[name]
        error = abs(value - truth[name])
        assert error < (limit * truth[name] if kind == "relative" else limit), (name, value)


def run_live(node: Node, session: QubitSession, truth: dict[str, float]) -> Analysis:
    accepted, reason, analysis = judge(node, node.acquire(session))
    assert accepted, reason
    assert_within_tolerance(analysis, node, truth)
    return analysis


@pytest.mark.parametrize(("kind", "seed"), CASES)
def test_rabi_finds_the_pi_amplitude_without_knowing_the_drive_coupling(kind, seed):
    session, truth = session_for(Rabi, kind, seed)
    analysis = run_live(Rabi(), session, truth)
    assert analysis.values["pi_duration"] == (100e-9, 0.0)


@pytest.mark.parametrize(("kind", "seed"), CASES)
def test_ramsey_corrects_the_qubit_frequency_on_either_side(kind, seed):
    shift = 150e3 * (-1) ** seed
    session, truth = session_for(Ramsey, kind, seed, {"qubit_frequency": shift})
    analysis = run_live(Ramsey(), session, truth)
    correction = analysis.values["frequency_correction"][0]
    assert correction == pytest.approx(-shift, abs=1e3)


@pytest.mark.parametrize(("kind", "seed"), CASES)
def test_echo_measures_t2_echo(kind, seed):
    session, truth = session_for(Echo, kind, seed)
    run_live(Echo(), session, truth)


@pytest.mark.parametrize(("kind", "seed"), CASES)
def test_t1_measures_relaxation_from_a_generic_guess(kind, seed):
    session, truth = session_for(T1, kind, seed)
    run_live(T1(), session, truth)


@pytest.mark.parametrize(
    ("node", "kind", "shifts"),
    [
        (T1(t1_guess=20e-6), "heavy", {}),  # guess ~17× too short: the window grows
        (T1(t1_guess=3e-3), "intermediate", {}),  # guess 25× too long: the window shrinks
        (Ramsey(t2_guess=15e-6), "light", {}),
        (Echo(), "light", {"T2_ramsey": 2e-3}),  # a stale T2_ramsey 8× too long
    ],
    ids=["t1-short-guess", "t1-long-guess", "ramsey-short-guess", "echo-stale-t2"],
)
def test_window_is_resized_when_the_decay_is_not_resolved(node, kind, shifts):
    session, truth = session_for(type(node), kind, 4, shifts)
    run_live(node, session, truth)


@pytest.mark.parametrize("stem", RECORDED)
def test_recorded_run_gives_the_recorded_values(stem):
    node_class, kind, seed, recorded = RECORDED[stem]
    data = xr.load_dataset(FIXTURES / f"{stem}.nc", engine="h5netcdf")
    node = node_class()
    accepted, reason, analysis = judge(node, data)
    assert accepted, reason
    for name, value in recorded.items():
        assert analysis.values[name][0] == pytest.approx(value, rel=1e-7), name
    assert_within_tolerance(analysis, node, make_device(kind, seed).truth()["q0"])


def load(stem: str) -> tuple[Node, xr.Dataset]:
    return RECORDED[stem][0](), xr.load_dataset(FIXTURES / f"{stem}.nc", engine="h5netcdf")


def sweep_dim(data: xr.Dataset) -> str:
    return next(dim for dim in data["iq"].dims if dim != "repeat")


@pytest.mark.parametrize("stem", RECORDED)
def test_pure_noise_is_rejected_for_lack_of_signal(stem):
    node, data = load(stem)
    rng = np.random.default_rng(11)
    for name, variable in data.data_vars.items():
        values = variable.values
        scale = np.std(values)
        noise = rng.standard_normal(values.shape) + 1j * rng.standard_normal(values.shape)
        data[name] = variable.copy(data=values.mean() + scale * noise)
    accepted, reason, _ = judge(node, data)
    assert not accepted
    assert "signal-to-noise" in reason


@pytest.mark.parametrize("stem", RECORDED)
def test_glitch_burst_is_rejected_by_chi_square(stem):
    """Large spikes on an eighth of the points of one repeat, as the digitiser's glitch fault."""
    node, data = load(stem)
    rng = np.random.default_rng(12)
    iq = data["iq"].values.copy()
    hit = rng.choice(iq.shape[1], iq.shape[1] // 8, replace=False)
    iq[0, hit] += 20 * np.abs(iq).max() * (rng.standard_normal(hit.size) + 1j)
    data["iq"] = data["iq"].copy(data=iq)
    accepted, reason, _ = judge(node, data)
    assert not accepted
    assert "reduced chi-square" in reason


@pytest.mark.parametrize(
    ("stem", "kept", "failed"),
    [
        ("rabi", 25, "pi_amplitude / swept range"),  # sweep stops at ~0.6 π-amplitudes
        ("ramsey", 15, "delay window / T2_ramsey"),  # ~0.5 T2
        ("echo", 25, "delay window / T2_echo"),  # ~0.6 T2_echo
        ("t1", 20, "delay window / T1"),  # ~0.6 T1
    ],
)
def test_window_far_shorter_than_the_feature_is_rejected(stem, kept, failed):
    node, data = load(stem)
    accepted, reason, _ = judge(node, data.isel({sweep_dim(data): slice(0, kept)}))
    assert not accepted
    assert failed in reason


@pytest.mark.parametrize("stem", RECORDED)
def test_missing_points_are_rejected(stem):
    node, data = load(stem)
    iq = data["iq"].values.copy()
    iq[1, 3] = np.nan
    data["iq"] = data["iq"].copy(data=iq)
    accepted, reason, _ = judge(node, data)
    assert not accepted
    assert "non-finite" in reason


@pytest.mark.parametrize(
    ("node", "shifts"),
    [
        (Rabi(), lambda truth: {"qubit_frequency": 30e6}),  # far off resonance: nothing flips
        (Ramsey(), lambda truth: {"pi_amplitude": -0.999 * truth["pi_amplitude"]}),  # no fringes
        (T1(), lambda truth: {"pi_amplitude": -0.999 * truth["pi_amplitude"]}),  # no π pulse
    ],
    ids=["rabi-off-resonance", "ramsey-no-pulse", "t1-no-pulse"],
)
def test_live_run_without_signal_is_rejected(node, shifts):
    truth = make_device("light", 5).truth()["q0"]
    session, _ = session_for(type(node), "light", 5, shifts(truth))
    accepted, reason, _ = judge(node, node.acquire(session))
    assert not accepted
    assert "FAILED" in reason or "analysis failed" in reason


@pytest.mark.parametrize(
    ("node", "fault", "count"),
    [(T1(), "glitch", 2), (Rabi(), "nan", 1), (Ramsey(), "glitch", 1)],
    ids=["t1-glitch", "rabi-nan-in-coarse-sweep", "ramsey-glitch-in-short-window"],
)
def test_instrument_fault_never_passes_a_wrong_value(node, fault, count):
    session, truth = session_for(type(node), "light", 6)
    session.station.components["readout"].inject_fault(fault, "q0", count=count)
    accepted, reason, analysis = judge(node, node.acquire(session))
    if accepted:
        assert_within_tolerance(analysis, node, truth)
    else:
        assert "FAILED" in reason or "analysis failed" in reason


@pytest.mark.parametrize("error", [0.0, 150e3, -150e3, 1.5e6, -2.6e6, 3.1e6])
def test_two_detunings_give_the_frequency_error_with_its_sign(error):
    detuning = 2e6
    plus, minus = abs(detuning - error), abs(detuning + error)
    found, stderr, mismatch = resolve_sign(detuning, (plus, 100.0), (minus, 100.0))
    assert found == pytest.approx(error, abs=1e-6)
    assert stderr == pytest.approx(100 / math.sqrt(2))
    assert mismatch == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    ("guess", "decay", "windows"),
    [
        (10.0, 100.0, [50.0, 500.0]),  # too short: grows to 5 decay times
        (100.0, 100.0, [500.0]),  # right first time
        (1.0, 1e4, [5.0, 50.0, 500.0]),  # at most 10× per attempt, three attempts
        (1e3, 10.0, [1000.0, 100.0]),  # too long: capped by max_window, then shrinks
    ],
)
def test_delay_window_follows_the_fitted_decay(guess, decay, windows):
    acquired = []

    def acquire(window: float) -> float:
        acquired.append(window)
        return window

    last = resolve_window(acquire, lambda _: decay, guess, 5.0, (3.0, 10.0), max_window=1e3)
    assert acquired == pytest.approx(windows)
    assert last == acquired[-1]


@pytest.mark.parametrize(("kind", "seed"), [("light", 1), ("heavy", 3)])
def test_echo_window_comes_from_the_physical_bound_when_t1_is_known(kind, seed):
    """T2_echo ≤ 2·T1: with T1 calibrated the first window holds the tail of any echo decay,
    and the bound goes with the data so the analysis keeps it."""
    session, truth = session_for(Echo, kind, seed)
    session.known["T1"] = CalibratedParameter(truth["T1"], math.nan, UNITS["T1"], "truth", "")
    node = Echo()
    assert node.expected_decay(session) == pytest.approx(2 * truth["T1"])
    data = node.acquire(session)
    assert data.attrs["longest_decay"] == pytest.approx(2 * truth["T1"])
    accepted, reason, analysis = judge(node, data)
    assert accepted, reason
    assert_within_tolerance(analysis, node, truth)


def test_echo_beyond_its_physical_bound_is_rejected():
    """A T1 far shorter than the echo says (a wrong T1, or a wrong trace): the fit is held
    within twice the bound and the gate rejects a decay beyond 1.5× it, never reports it."""
    node, data = load("echo")
    truth = make_device("intermediate", 23).truth()["q0"]
    data.attrs["longest_decay"] = truth["T2_echo"] / 3
    accepted, reason, _ = judge(node, data)
    assert not accepted
    assert "T2_echo / physical bound" in reason
    data.attrs["longest_decay"] = 2 * truth["T1"]
    accepted, reason, analysis = judge(node, data)
    assert accepted, reason
    assert analysis.values["T2_echo"][0] == pytest.approx(RECORDED["echo"][3]["T2_echo"], rel=0.01)


def _short_fringe(rng: np.random.Generator, amplitude: float) -> Trace:
    """Two repeats of a 10 µs Ramsey window at 2 MHz, T2* 150 µs, one point's noise ~1.3×
    the fringe amplitude (chip 5016's ±δ windows)."""
    delays = np.linspace(0.0, 10e-6, 401)
    fringe = amplitude * np.exp(-delays / 150e-6) * np.cos(2 * np.pi * 2e6 * delays + 0.4)
    iq = fringe + 1.3 * rng.standard_normal((2, delays.size)) + 0j
    return project(delays, iq)


def test_short_ramsey_window_shows_its_fringe_by_the_fitted_shape():
    """A 10 µs ±δ window hardly sees a 150 µs T2* decay, so its amplitude at zero delay
    trades off against a loose decay (or one at its bound): chip 5016 measured ~1000 points
    per detuning only to show a signal-to-noise of 8 on it. The fringe's shape held at the
    fit carries the evidence (the stderr of a cosine's amplitude, σ·√(2/N)); pure noise
    still shows none."""
    rng = np.random.default_rng(5)
    fit = fit_ramsey(_short_fringe(rng, 1.0), 100e-6, 4e6)
    sigma = fit.trace.sigma * math.sqrt(2 / fit.trace.x.size)
    expected = math.exp(-5e-6 / 150e-6) / sigma
    assert fringe_snr(fit) == pytest.approx(expected, rel=0.25)
    assert fringe_snr(fit) > 1.5 * fit.snr
    noise = fit_ramsey(_short_fringe(rng, 0.0), 100e-6, 4e6)
    assert fringe_snr(noise) < 5.0


class _FittedDecay:
    """A fit as the window rule reads it: one decay and its stderr."""

    def __init__(self, decay: float, stderr: float) -> None:
        self.decay = (decay, stderr)

    def value(self, _name: str) -> tuple[float, float]:
        return self.decay


def _ramsey_window() -> SequentialWindow:
    """The node's own long-window design, with nothing to measure or fit."""
    return Ramsey().long_window_design(lambda _w, _d: None, lambda _trace: None, np.inf)


def test_ramsey_window_grows_on_a_decay_known_only_as_a_slow_rate():
    """Chip 5054: T2* 430 µs fitted as 780 ± 760 µs in the first 300 µs window. Every rate
    within one stderr puts the decay beyond 395 µs, too long for the window: it grows, to
    fewer than 3 × 780 µs (5.5 T2*, where the design took ~1.7× the shots)."""
    window = _ramsey_window()._window_for(_FittedDecay(780e-6, 760e-6), 300e-6)
    assert window is not None
    assert 2 * 395e-6 < window < 3 * 780e-6


def test_ramsey_window_kept_once_designed_while_the_gate_accepts_it():
    """Chip 5016: the design had placed ~2M shots in a 300 µs window when T2* showed as
    163 ± 13 µs (window/T2* 1.84, the gate's floor 1.5); the restart to 490 µs threw them
    away and the budget ran out. Once designed, the window is re-sized only below the
    gate's floor; before the design, below the accepted range."""
    fit = _FittedDecay(163e-6, 13e-6)
    ramsey = _ramsey_window()
    assert ramsey._window_for(fit, 300e-6, grow_only=True) is None
    assert ramsey._window_for(fit, 300e-6) is not None
    assert ramsey._window_for(_FittedDecay(240e-6, 13e-6), 300e-6, grow_only=True) is not None
