"""Robust noise estimates shared by the analyses.

Median-based, so a resonance, a Rabi fringe or a glitch burst in the data barely moves them;
1.4826 scales a median absolute deviation to a Gaussian standard deviation.
"""

from __future__ import annotations

import numpy as np

MAD_TO_SIGMA = 1.4826


def robust_sigma(values: np.ndarray, about: float | None = None) -> float:
    """Standard deviation from the median absolute deviation about `about` (default: median)."""
    values = np.asarray(values)
    centre = np.median(values) if about is None else about
    return float(MAD_TO_SIGMA * np.median(np.abs(values - centre)))


def difference_noise(y: np.ndarray) -> float:
    """Noise of one point from point-to-point differences: blind to peaks and slow baselines."""
    return float(MAD_TO_SIGMA * np.median(np.abs(np.diff(y))) / np.sqrt(2))


def complex_difference_noise(z: np.ndarray) -> float:
    """Noise per quadrature of complex data, from point-to-point differences of each part.

    Applied to fit residuals it measures the noise alone: a misfit varies smoothly along the
    sweep and cancels in the differences, so it is never counted as noise.
    """
    z = np.asarray(z, dtype=complex)
    return float(np.hypot(difference_noise(z.real), difference_noise(z.imag)) / np.sqrt(2))


def projection_shape(signal: np.ndarray, level_0: float, level_1: float) -> np.ndarray:
    """4·p(1 − p) for the population p of state 1 that `signal` implies between the two
    states' levels: 0 at either state, 1 at an equal mixture.

    A two-outcome measurement of a qubit found in state 1 with probability p adds a variance
    p(1 − p)·(level_1 − level_0)²/shots to an averaged signal: the projection noise, which is
    the part of a trace's noise that follows its shape.
    """
    span = level_1 - level_0
    if span == 0 or not np.isfinite(span):
        return np.zeros_like(np.asarray(signal, float))
    p = np.clip((np.asarray(signal, float) - level_0) / span, 0.0, 1.0)
    return 4.0 * p * (1.0 - p)


def profiled_noise(variance: np.ndarray, shape: np.ndarray, floor: float) -> np.ndarray:
    """Each point's noise from per-point variance estimates too scattered to weight by
    (a repeat difference holds one degree of freedom per point): the readout's `floor`,
    measured apart, plus the least-squares excess (≥ 0) that follows `shape`, the
    projection noise.

    The floor comes from elsewhere because a fit of both terms to a few one-degree
    estimates puts it near zero by chance, and a point weighted by that decides χ² alone.
    """
    variance = np.asarray(variance, float)
    shape = np.asarray(shape, float)
    weight = float(np.sum(shape**2))
    excess = max(float(np.sum(shape * (variance - floor))) / weight, 0.0) if weight > 0 else 0.0
    return np.sqrt(floor + excess * shape)


def effective_dof(variances: np.ndarray) -> float:
    """Degrees of freedom of a pooled variance whose one-degree terms have these expected
    sizes, (Σv)²/Σv² (Satterthwaite): n when all are alike, near 1 when one dominates."""
    v = np.asarray(variances, float)
    total = float(np.sum(v**2))
    return float(np.sum(v) ** 2 / total) if total > 0 else float(v.size)
