"""A flux-map row's glitch test tells a digitiser glitch from the qubit's own shot noise.

A row point averages a few dozen heralded shots. On a bright readout one shot found excited
moves it by (state separation)/shots, several noise deviations at 50 shots, so points on and
near a line jump by 8 noise deviations and more without any glitch (sampled chips 5011, 5029,
5059: two thirds of their rows were called glitched and their maps rejected). The rows here
are drawn as the simulator draws them: binomial counts of excited shots between two state
points, plus amplifier noise. A glitch (the simulator's fault) must still be caught.
"""

from __future__ import annotations

import numpy as np
import pytest

from fluxcal.calibrations.experiments.qubit_flux_spectroscopy import glitched
from fluxcal.instruments.simulated import _corrupt

ROWS = 500
#: One shot's amplifier noise (V) and the distance between the |0⟩ and |1⟩ readout points in
#: units of it: 35, as on sampled chip 5011 (one excited shot in 50 is 5 noise deviations).
SHOT_NOISE = 0.017
SEPARATION = 35.0


def row(rng: np.random.Generator, shots: int, line: bool, points: int = 61) -> np.ndarray:
    """Averaged IQ of a row: a saturated line (half the shots excited at its centre, 3 steps
    wide) on a heralded ground state that leaves 0.3 % excited, at `shots` shots a point."""
    ground = 0.33 + 0.0j
    excited = ground - SEPARATION * SHOT_NOISE * np.exp(0.7j)
    offset = np.arange(points) - points / 2
    population = 0.003 + (0.45 / (1 + (offset / 1.5) ** 2) if line else 0.0)
    n_excited = rng.binomial(shots, population)
    mean = (n_excited * excited + (shots - n_excited) * ground) / shots
    noise = rng.standard_normal(points) + 1j * rng.standard_normal(points)
    return mean + noise * SHOT_NOISE / np.sqrt(2 * shots)


@pytest.mark.parametrize("shots", [50, 250])
@pytest.mark.parametrize("line", [True, False])
def test_shot_noise_of_a_bright_readout_is_no_glitch(shots: int, line: bool) -> None:
    rng = np.random.default_rng(11)
    flagged = sum(glitched(row(rng, shots, line)) for _ in range(ROWS))
    assert flagged == 0, f"{flagged} of {ROWS} clean rows called glitched"


@pytest.mark.parametrize("shots", [50, 250])
@pytest.mark.parametrize("line", [True, False])
def test_a_digitiser_glitch_is_caught(shots: int, line: bool) -> None:
    rng = np.random.default_rng(12)
    caught = sum(glitched(_corrupt(row(rng, shots, line), "glitch", rng)) for _ in range(ROWS))
    assert caught >= ROWS - 2, f"only {caught} of {ROWS} glitched rows caught"
