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
