"""The thermal mixture of dressed resonator lines: κ from the model the data support.

A fluxonium at its sweet spot is 10–45 % excited, so the resonator line is the
population-weighted sum of the lines dressed by each qubit state. Forty seeded one-qubit chips
(couplings 15–80 MHz, κ 0.3–5 MHz, resonators 4.5–8 GHz, 10–60 mK, so |χ|/κ spans 0.05–5) are
measured by the simulator's own readout chain (multinomial projection noise, amplifier noise,
higher levels, line environment) and analysed by `fit_notch_lines`; κ must match the device
within 5 % with an honest stderr, where one Lorentzian is off by up to +150 %.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
from devices import QUBITS

from fluxcal.calibrations.experiments.resonator_spectroscopy import ResonatorSpectroscopy
from fluxcal.calibrations.fitting import (
    fit_notch_lines,
    fit_notch_mixture,
    notch_mixture_s21,
    notch_s21,
)
from fluxcal.calibrations.fitting.resonator import NotchLines
from fluxcal.calibrations.session import DEFAULT_READOUT, QubitSession
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.device_config import parse_device_config
from fluxcal.instruments.signals import PulseSettings, ReadoutSettings, averaged_iq
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import CalibratedParameter

SEEDS = range(40)
KINDS = ("light", "intermediate", "heavy")


def dispersive_device(seed: int) -> SimulatedDevice:
    """A test chip with a random readout resonator and temperature, κ set for a random |χ|/κ."""
    rng = np.random.default_rng(seed)
    qubit = copy.deepcopy(QUBITS[KINDS[seed % 3]])
    qubit["seed"] = seed
    qubit["temperature"] = float(rng.uniform(0.010, 0.060))
    resonator = qubit["resonator"]
    resonator["frequency"] = float(rng.uniform(4.5e9, 8e9))
    resonator["coupling"] = float(rng.uniform(15e6, 80e6))
    resonator["coupling_ratio"] = float(rng.uniform(0.5, 0.95))
    environment = resonator["environment"]
    environment["delay"] = float(rng.uniform(20e-9, 80e-9))
    environment["phase"] = float(rng.uniform(-3, 3))
    environment["mismatch"] = float(rng.uniform(-0.15, 0.15))
    chip = {"name": f"mixture-{seed}", "epoch": "2026-01-01T00:00:00+00:00", "qubits": {}}
    chip["qubits"]["q0"] = qubit
    chi = abs(SimulatedDevice(parse_device_config(chip), 0.0).truth()["q0"]["dispersive_shift"])
    target = float(np.exp(rng.uniform(np.log(0.05), np.log(5.0))))
    resonator["kappa"] = float(np.clip(chi / target, 0.3e6, 5e6))
    return SimulatedDevice(parse_device_config(chip), time=0.0)


@dataclass(frozen=True)
class Case:
    truth: dict[str, float]
    lines: NotchLines

    @property
    def kappa(self) -> float:
        return self.truth["resonator_kappa"]

    @property
    def chi_over_kappa(self) -> float:
        return abs(self.truth["dispersive_shift"]) / self.kappa

    @property
    def error(self) -> float:
        return self.lines.kappa / self.kappa - 1


@cache
def case(seed: int) -> Case:
    """A 301-point trace at the sweet spot, ±6 κ around a centre up to κ off the dip."""
    device = dispersive_device(seed)
    physics = device.physics("q0")
    truth = device.truth()["q0"]
    kappa = truth["resonator_kappa"]
    rng = np.random.default_rng(1000 + seed)
    centre = truth["resonator_dip_frequency"] + rng.uniform(-1, 1) * kappa
    frequency = centre + np.linspace(-6, 6, 301) * kappa
    pulse = PulseSettings("none", 0.0, 0.0, 0.0, 0.0)
    readout = ReadoutSettings(
        frequency,
        DEFAULT_READOUT["amplitude"],
        DEFAULT_READOUT["integration_time"],
        DEFAULT_READOUT["shots"],
    )
    iq = averaged_iq(physics, physics.sweet_spot_voltage, pulse, readout, rng)
    return Case(truth, fit_notch_lines(frequency, iq))


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return [case(seed) for seed in SEEDS]


def test_the_chips_span_the_weak_and_the_strong_dispersive_regime(cases) -> None:
    ratios = [c.chi_over_kappa for c in cases]
    assert min(ratios) < 0.1 and max(ratios) > 3
    assert sum(r > 0.5 for r in ratios) >= 15 and sum(r < 0.2 for r in ratios) >= 10


def test_one_line_alone_reads_the_spread_of_the_lines_as_width(cases) -> None:
    # What the node reported before: one Lorentzian, biased by far more than its stderr.
    biases = [c.lines.single.kappa / c.kappa - 1 for c in cases]
    assert max(biases) > 0.3
    assert sum(abs(b) > 0.05 for b in biases) >= 15


def test_kappa_matches_the_device_within_five_percent(cases) -> None:
    worst = max(cases, key=lambda c: abs(c.error))
    assert abs(worst.error) < 0.05, (worst.truth, worst.lines.reason)


def test_kappa_stderr_is_honest(cases) -> None:
    pulls = np.array([abs(c.lines.kappa - c.kappa) / c.lines.kappa_stderr for c in cases])
    assert np.mean(pulls < 3) >= 0.97, pulls.round(1)
    # ...and not inflated beyond use: most stay within 2 % of κ.
    relative = [c.lines.kappa_stderr / c.lines.kappa for c in cases]
    assert np.median(relative) < 0.02


def test_resolved_lines_are_fitted_as_the_thermal_mixture(cases) -> None:
    for c in (c for c in cases if c.chi_over_kappa > 0.5):
        assert c.lines.is_mixture, c.lines.reason
        mixture = c.lines.mixture
        populations = c.truth["thermal_population"]
        assert mixture.p1 == pytest.approx(populations, abs=0.03)
        shift = abs(mixture.f1 - mixture.f0)
        assert shift == pytest.approx(abs(c.truth["dispersive_shift"]), rel=0.03)
        assert abs(c.lines.dip - c.truth["resonator_dip_frequency"]) < c.kappa / 50


def test_degenerate_lines_keep_one_line(cases) -> None:
    # |χ| ≪ κ: weight and separation are unconstrained, so no mixture may be chosen.
    for c in (c for c in cases if c.chi_over_kappa < 0.1):
        assert not c.lines.is_mixture, c.lines.reason
        assert abs(c.lines.dip - c.truth["resonator_dip_frequency"]) < c.kappa / 50


# --------------------------------------------------------------------------- synthetic lines


def noisy(rng: np.random.Generator, clean: np.ndarray, sigma: float) -> np.ndarray:
    return clean + sigma * (rng.normal(size=clean.size) + 1j * rng.normal(size=clean.size))


@pytest.mark.parametrize("seed", range(4))
def test_a_single_lorentzian_is_never_taken_for_a_mixture(seed: int) -> None:
    rng = np.random.default_rng(500 + seed)
    fr, ql = 7.0e9, 7000.0
    kappa = fr / ql
    frequency = fr + np.linspace(-6, 6, 301) * kappa
    clean = notch_s21(frequency, fr, ql, 1.5 * ql, phi=0.1, a=0.05, alpha=1.0, delay=50e-9)
    lines = fit_notch_lines(frequency, noisy(rng, clean, 2e-4))
    assert not lines.is_mixture, lines.reason
    assert abs(lines.kappa - kappa) < 3 * lines.kappa_stderr


@pytest.mark.parametrize(("separation", "weight"), [(1.5, 0.3), (0.6, 0.4), (-3.0, 0.2)])
def test_the_mixture_fit_recovers_both_lines(separation: float, weight: float) -> None:
    rng = np.random.default_rng(0)
    f0, kappa = 6.5e9, 1.0e6
    f1 = f0 + separation * kappa
    frequency = f0 + np.linspace(-7, 7, 401) * kappa
    clean = notch_mixture_s21(frequency, f0, f1, weight, kappa, 0.8, 0.05, 0.04, -2.0, 45e-9)
    fit = fit_notch_mixture(frequency, noisy(rng, clean, 1e-4))
    for value, stderr, truth in (
        (fit.f0, fit.f0_stderr, f0),
        (fit.f1, fit.f1_stderr, f1),
        (fit.p1, fit.p1_stderr, weight),
        (fit.kappa, fit.kappa_stderr, kappa),
    ):
        assert abs(value - truth) < 4 * stderr
    assert fit.kappa == pytest.approx(kappa, rel=0.01)
    assert fit.redchi == pytest.approx(1.0, abs=0.2)


# --------------------------------------------------------------------------- the node


def test_the_resonator_spectroscopy_node_reports_the_dressed_lines() -> None:
    seed = next(s for s in SEEDS if 1.0 < case(s).chi_over_kappa < 3.0)
    device = dispersive_device(seed)
    truth = device.truth()["q0"]
    known = {
        "flux_sweet_spot": truth["flux_sweet_spot"],
        "readout_frequency": truth["resonator_dip_frequency"],
        "resonator_kappa": truth["resonator_kappa"],
    }
    parameters = {k: CalibratedParameter(v, 0.0, "", "truth", "") for k, v in known.items()}
    node = ResonatorSpectroscopy()
    session = QubitSession(build_station(device), "q0", parameters)
    analysis = node.analyse(node.acquire(session))
    outcome = node.gate(analysis)
    assert outcome.accepted, outcome.reason
    values = {name: value for name, (value, _) in analysis.values.items()}
    assert values["resonator_kappa"] == pytest.approx(truth["resonator_kappa"], rel=0.05)
    assert values["excited_weight"] == pytest.approx(truth["thermal_population"], abs=0.03)
    assert (
        abs(values["readout_frequency"] - truth["resonator_dip_frequency"])
        < 0.05 * (truth["resonator_kappa"])
    )
    dressed = sorted([values["dressed_frequency_0"], values["dressed_frequency_1"]])
    assert dressed[1] - dressed[0] == pytest.approx(abs(truth["dispersive_shift"]), rel=0.05)
