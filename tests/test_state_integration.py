"""The readout integration of the qubit's state is measured at the line, not assumed.

The pooled moments are those of all shots; the separation estimate is honest on synthetic
blobs; on simulated chips from a 30 µs to a 456 µs T1 the chosen time separates the states
at least as well as the old fixed 10 µs when measured again with fresh shots, several times
better on the long-lived chip, and never integrates far past T1 (4 T1 at most: the optimum
is broad, within ~10 % from T1 to 2.7 T1).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from fluxcal.calibrations.experiments.state_integration import (
    IntegrationChoice,
    StateIntegration,
    _dataset,
    _moments,
    _pool,
    separations,
)
from fluxcal.calibrations.node import UNITS
from fluxcal.calibrations.session import UNOPTIMISED_QUBIT_INTEGRATION, QubitSession
from fluxcal.instruments.design_space import sample_device
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import CalibratedParameter

pytestmark = pytest.mark.slow(30)

DRIVE_AMPLITUDE = 0.02  # V: saturates the line at the sweet spot on these chips


def test_pooled_moments_are_those_of_all_shots() -> None:
    rng = np.random.default_rng(3)
    first = rng.normal(1.0, 2.0, (3, 2, 50)) + 1j * rng.normal(-1.0, 0.5, (3, 2, 50))
    second = rng.normal(0.0, 1.0, (3, 2, 150)) + 1j * rng.normal(2.0, 3.0, (3, 2, 150))
    pooled = _pool(_moments(first), 50, *_moments(second), 150)
    together = _moments(np.concatenate([first, second], axis=-1))
    np.testing.assert_allclose(pooled[0], together[0])
    np.testing.assert_allclose(pooled[1], together[1])


@pytest.mark.parametrize("seed", range(6))
def test_the_separation_is_estimated_within_its_stated_error(seed: int) -> None:
    """Blobs `d` shot-noise deviations apart, anisotropic and rotated: the estimate lies
    within 3 of its standard errors of the truth."""
    rng = np.random.default_rng(seed)
    truth = np.array([0.3, 1.0, 2.5])
    shots = 800
    noise = rng.normal(0, 1.0, (3, 2, shots)) + 1j * rng.normal(0, 0.2, (3, 2, shots))
    iq = noise + np.stack([np.zeros(3), truth], axis=1)[..., None]
    iq = iq * np.exp(0.7j) + (3 - 2j)
    choice = separations(_dataset(np.array([1e-6, 2e-6, 4e-6]), *_moments(iq), shots))
    assert np.all(np.abs(choice.separation - truth) < 3 * choice.separation_stderr)
    assert choice.duration == 4e-6


@pytest.mark.parametrize(
    ("separation", "chosen"),
    [
        ([0.9, 1.24, 1.25, 1.30, 1.22], 10e-6),  # within one stderr (0.08) of the best: kept
        ([0.9, 1.00, 1.05, 1.30, 1.28], 40e-6),  # the best by more: the shortest as good
        ([0.9, 1.00, 1.25, 1.30, 1.28], 20e-6),
        ([2.0, 1.80, 1.00, 0.80, 0.50], 5e-6),  # a short-lived qubit: shorter than before
    ],
)
def test_the_integration_in_use_stays_unless_another_is_clearly_better(
    separation: list[float], chosen: float
) -> None:
    choice = IntegrationChoice(
        np.array([5e-6, 10e-6, 20e-6, 40e-6, 80e-6]),
        np.array(separation),
        np.full(5, 0.08),
        preferred=10e-6,
    )
    assert choice.duration == chosen


def _session(device: SimulatedDevice) -> QubitSession:
    truth = device.truth()["q0"]
    values = {**truth, "readout_frequency": truth["resonator_dip_frequency"]}
    known = {
        name: CalibratedParameter(values[name], 0.0, UNITS[name], "truth", "")
        for name in ("flux_sweet_spot", "readout_frequency", "qubit_frequency")
    }
    session = QubitSession(build_station(device), "q0", known)
    session.operating_point()
    session.configure(
        drive={"sequence": "saturation", "herald": True, "frequency": truth["qubit_frequency"]}
    )
    return session


def _again(session: QubitSession, durations: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """(integration times, separations), measured once more with 2 000 fresh shots."""
    trial = StateIntegration(first_shots=2000, budget=2000)
    measured = trial.measure_at(session, "again", DRIVE_AMPLITUDE, np.array(durations))
    choice = separations(measured)
    return choice.durations, choice.separation


@pytest.mark.parametrize(
    ("device", "at_least"),
    [
        (lambda: sample_device(5009), 2.0),  # T1 456 µs, weak dispersive shift
        (lambda: sample_device(5033), 1.0),  # T1 30 µs
        (lambda: SimulatedDevice.from_yaml(time=0.0), 1.0),  # the built-in chip, T1 384 µs
    ],
)
def test_the_chosen_integration_separates_the_states_best(
    device: Callable[[], SimulatedDevice], at_least: float
) -> None:
    device = device()
    t1 = device.truth()["q0"]["T1"]
    session = _session(device)
    data = StateIntegration().measure(session, "integration", DRIVE_AMPLITUDE)
    choice = separations(data)
    assert choice.resolved > 3.0
    assert choice.duration <= 4 * t1
    again = dict(
        zip(*_again(session, [choice.duration, UNOPTIMISED_QUBIT_INTEGRATION]), strict=True)
    )
    chosen, fixed = again[choice.duration], again[UNOPTIMISED_QUBIT_INTEGRATION]
    assert chosen >= 0.9 * at_least * fixed
