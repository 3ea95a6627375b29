"""A plasmon line that moves the readout point across the qubit's projection noise shows
at the height its own noise allows.

With a large thermal population the shot noise of a saturation sweep lies along the line
between the readout points of 0 and 1, many times the amplifier noise across it. A line to a
higher level moves the readout point partly across, and projected on the trace's direction
of largest variation (the noise's) it hid: on sampled chip 5000 a line seen at
signal-to-noise 17 in a 401-point sweep stayed at 4.4 in a 61-point sweep of as many shots,
and the zoom on it averaged 10 486 shots a point. `senses` now whitens the noise first.
Synthetic sweeps, several seeds: the noise covariance is found robustly, the line across the
noise shows near its true signal-to-noise, and noise alone shows no line.
"""

from __future__ import annotations

import numpy as np
import pytest

from fluxcal.calibrations.experiments.plasmon_lines import find_lines_any_sense
from fluxcal.calibrations.experiments.qubit_spectroscopy import lorentzian_peak
from fluxcal.calibrations.fitting.noise import whitened

FREQUENCY = np.linspace(5.91e9, 5.96e9, 61)
CENTRE, FWHM = 5.936e9, 4e6
ALONG, ACROSS = 5.0, 0.3  # noise deviations along and across the 0–1 axis
NOISE_AXIS = np.exp(0.4j)


def sweep(seed: int, height_across: float, height_along: float = 0.0) -> np.ndarray:
    """IQ of a 61-point sweep: anisotropic noise along `NOISE_AXIS`, a line moving the
    readout point by `height_across` across it and `height_along` along it, offset."""
    rng = np.random.default_rng(seed)
    shape = lorentzian_peak(FREQUENCY, CENTRE, FWHM, 1.0, 0.0)
    noise = rng.normal(0, ALONG, FREQUENCY.size) + 1j * rng.normal(0, ACROSS, FREQUENCY.size)
    signal = shape * (height_along + 1j * height_across)
    return (noise + signal) * NOISE_AXIS + (20 - 7j)


@pytest.mark.parametrize("seed", range(5))
def test_whitening_makes_the_noise_alike_in_every_direction(seed: int) -> None:
    points = whitened(sweep(seed, 0.0))
    covariance = np.cov(np.diff(points, axis=1) / np.sqrt(2))
    np.testing.assert_allclose(covariance, np.eye(2), atol=0.45)


@pytest.mark.parametrize("seed", range(5))
def test_a_strong_line_barely_moves_the_noise_estimate(seed: int) -> None:
    """The line (30 noise deviations across, 3 along) sits on a few differences only."""
    quiet = whitened(sweep(seed, 0.0))
    lined = whitened(sweep(seed, 30 * ACROSS, 3 * ALONG))
    far = np.abs(FREQUENCY - CENTRE) > 6 * FWHM
    ratio = np.std(np.diff(lined[:, far], axis=1)) / np.std(np.diff(quiet[:, far], axis=1))
    assert 0.75 < ratio < 1.33


@pytest.mark.parametrize("seed", range(8))
def test_a_line_across_the_noise_shows_near_its_own_signal_to_noise(seed: int) -> None:
    """A line 12 noise deviations across (2.4 % of the noise along): projected on the
    largest variation it would be lost; whitened, it is found where it is."""
    lines = find_lines_any_sense(FREQUENCY, sweep(seed, 12 * ACROSS), 6.0)
    assert lines, "the line across the noise was not found"
    assert abs(lines[0].centre - CENTRE) < FWHM / 2
    assert 7.0 < lines[0].snr < 17.0


@pytest.mark.parametrize("seed", range(8))
def test_noise_alone_shows_no_line(seed: int) -> None:
    assert find_lines_any_sense(FREQUENCY, sweep(seed, 0.0), 6.0) == []
