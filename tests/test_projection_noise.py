"""Each point of a time-domain trace is weighed by its own noise: projection noise included.

With a readout that tells the states apart in one shot, a point half-way through a decay
scatters several times more than one at either state (a qubit found in 0 or 1 shot by
shot). One noise for all points let a right exponential fail the χ² test whenever most delays
lay in the decay's tail (sampled chip 5011: T1's reduced χ² 8.4). Synthetic T1 traces of
binomial shots: χ² near 1 and standard errors that cover the error; a faint trace, whose
readout noise is alike everywhere, keeps one noise for all points.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fluxcal.calibrations.experiments.decay_fits import fit_decay, project
from fluxcal.calibrations.fitting.noise import projection_shape, repeat_noise

T1, SHOTS = 40e-6, 250
DELAYS = np.linspace(0.0, 8 * T1, 36)  # a window 8 × T1: most delays in the tail


def t1_repeats(rng: np.random.Generator, separation: float, readout_noise: float) -> np.ndarray:
    """Two repeats of a heralded T1 trace: each point the mean of SHOTS single shots, each
    shot at the level of the state it found (`separation` apart) plus the readout's noise."""
    excited = np.exp(-DELAYS / T1)
    found = rng.binomial(SHOTS, excited, size=(2, DELAYS.size)) / SHOTS
    noise = readout_noise / np.sqrt(SHOTS) * rng.standard_normal((2, DELAYS.size, 2))
    return 0.1 + separation * found * (0.8 + 0.6j) + noise @ np.array([1.0, 1.0j])


def fitted(seed: int, separation: float, readout_noise: float):
    rng = np.random.default_rng(seed)
    return fit_decay(project(DELAYS, t1_repeats(rng, separation, readout_noise)), 30e-6)


def test_a_projection_noise_limited_decay_fits_with_chi_square_near_one():
    """Reduced χ² near 1 (a little below: the floor is held at least 10 % of the mean
    variance, more than this readout's), and (T1 − truth)/stderr spread as a unit normal."""
    fits = [fitted(seed, 0.3, 0.02) for seed in range(60)]
    chi2 = np.array([f.reduced_chi2 for f in fits])
    pulls = np.array([(f.value("decay")[0] - T1) / f.value("decay")[1] for f in fits])
    assert 0.6 < np.median(chi2) < 1.3, np.median(chi2)
    assert np.mean(chi2 > 3.0) < 0.05
    assert 0.75 < np.std(pulls) < 1.3 and abs(np.mean(pulls)) < 0.5


def test_per_point_noise_rejects_fewer_right_decays_and_measures_them_better():
    """The same 100 traces weighed by the repeats' one noise (the fit's first pass): about
    one in ten right exponentials over χ² 3, and T1 ~1.4× less precise (2.1 % rms against
    1.5 %: twice the shots for the same precision)."""
    errors, chi2 = {"one": [], "per point": []}, {"one": [], "per point": []}
    for seed in range(100):
        trace = project(DELAYS, t1_repeats(np.random.default_rng(seed), 0.3, 0.02))
        for kind, weighed in (("one", replace(trace, half_difference=None)), ("per point", trace)):
            fit = fit_decay(weighed, 30e-6)
            errors[kind].append(fit.value("decay")[0] / T1 - 1)
            chi2[kind].append(fit.reduced_chi2)
    assert np.mean(np.array(chi2["one"]) > 3) > 0.05
    assert np.mean(np.array(chi2["per point"]) > 3) < 0.02
    assert np.std(errors["per point"]) < 0.85 * np.std(errors["one"])


def test_the_noise_follows_the_population():
    trace = project(DELAYS, t1_repeats(np.random.default_rng(0), 0.3, 0.02))
    shape = projection_shape(np.exp(-DELAYS / T1), 0.0, 1.0)
    per_point = repeat_noise(trace.half_difference, shape, float(trace.sigma))
    assert per_point[np.argmax(shape)] > 3 * per_point[-1]


def test_a_faint_trace_keeps_one_noise():
    """Readout noise far above the projection noise: no excess to find, one noise kept,
    but for the few traces whose excess passes its 2σ test by chance."""
    flat = [np.ptp(np.atleast_1d(fitted(seed, 0.3, 3.0).trace.sigma)) == 0 for seed in range(100)]
    assert np.mean(flat) > 0.92


def test_a_glitch_in_one_repeat_is_not_taken_for_noise():
    rng = np.random.default_rng(3)
    iq = t1_repeats(rng, 0.3, 0.02)
    iq[0, 20] += 0.5  # one point of one repeat far off
    fit = fit_decay(project(DELAYS, iq), 30e-6)
    assert fit.trace.sigma[20] < 0.02  # the noise there stays what the model gives
    assert fit.reduced_chi2 > 10  # the glitch shows as a misfit
