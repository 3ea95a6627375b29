"""The fine saturation line's fit weighs each point by the noise its runs measured.

On the line a driven qubit is found in 0 or 1 shot by shot, so a point there scatters more
than off it; with uniform weights a right Lorentzian failed the χ² test and its centre
stderr was stated 2–3× too small (sampled chip 5048; the heavy chip's drift check). The
fine sweep is measured in runs whose scatter is each point's noise (`measured_noise`).
Synthetic sweeps with that noise: χ² near 1 and honest centre errors; a wrong model (a second
line) still fails the χ² test, since the runs' scatter holds no misfit.
"""

from __future__ import annotations

import numpy as np

from fluxcal.calibrations.experiments.qubit_spectroscopy import fit_line, lorentzian_peak
from fluxcal.calibrations.gate import chi2_limit

CENTRE, FWHM, HEIGHT, NOISE = 300e6, 0.5e6, 0.04, 1e-3
FREQUENCY = np.linspace(CENTRE - 3e6, CENTRE + 3e6, 61)
SHOTS = np.array([200, 200])


def runs(
    seed: int, on_line_noise: float = 3.0, second_line: float = 0.0, apart: float = 1.0
) -> np.ndarray:
    """IQ of the runs of a saturation sweep (the mean has NOISE off the line,
    `on_line_noise` times it at the line's top; a `second_line` as high `apart` linewidths
    above), rotated and offset in the IQ plane."""
    rng = np.random.default_rng(seed)
    shape = lorentzian_peak(FREQUENCY, CENTRE, FWHM, 1.0, 0.0)
    other = lorentzian_peak(FREQUENCY, CENTRE + apart * FWHM, FWHM, 1.0, 0.0)
    signal = HEIGHT * shape + second_line * other
    per_run = NOISE * np.sqrt(SHOTS.size) * np.sqrt(1 + (on_line_noise**2 - 1) * shape)
    real = signal + per_run * rng.standard_normal((SHOTS.size, FREQUENCY.size))
    imag = NOISE * np.sqrt(SHOTS.size) * rng.standard_normal((SHOTS.size, FREQUENCY.size))
    return (real + 1j * imag) * np.exp(0.7j) + (0.01 - 0.02j)


def fit(traces: np.ndarray, with_runs: bool = True):
    mean = (SHOTS[:, None] * traces).sum(axis=0) / SHOTS.sum()
    return fit_line(FREQUENCY, mean, (traces, SHOTS) if with_runs else None)


def test_projection_noise_on_the_line_keeps_chi2_near_one_and_errors_honest() -> None:
    fits = [fit(runs(seed)) for seed in range(60)]
    redchi = np.array([f.result.redchi for f in fits])
    centre, stderr = np.array([f.value("centre") for f in fits]).T
    assert (redchi > chi2_limit(3.0, HEIGHT / NOISE)).sum() == 0
    assert 0.7 < np.median(redchi) < 1.3
    z = (centre - CENTRE) / stderr
    assert 0.7 < np.std(z) < 1.3
    uniform = np.array([fit(runs(seed), with_runs=False).value("centre") for seed in range(60)])
    assert np.std((uniform[:, 0] - CENTRE) / uniform[:, 1]) > 1.5  # what the weights mend


def test_a_second_line_still_fails_the_chi2_test() -> None:
    """Half as high, two linewidths apart, with or without projection noise; one linewidth
    apart where no projection noise hides it (uniform weights: median χ² 3.3)."""
    limit = chi2_limit(3.0, HEIGHT / NOISE)
    for on_line, apart in ((3.0, 2.0), (1.0, 2.0), (1.0, 1.0)):
        redchi = [fit(runs(seed, on_line, 0.5 * HEIGHT, apart)).result.redchi for seed in range(20)]
        assert min(redchi) > limit, (on_line, apart, redchi)


def test_without_projection_noise_the_weights_stay_even() -> None:
    for seed in range(3):
        line = fit(runs(seed, on_line_noise=1.0))
        centre, stderr = line.value("centre")
        assert abs(centre - CENTRE) < 4 * stderr
        assert line.point_noise.min() > 0.6 * line.point_noise.max()
