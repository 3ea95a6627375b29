"""Robust noise estimates shared by the analyses.

Median-based, so a resonance, a Rabi fringe or a glitch burst in the data barely moves them;
1.4826 scales a median absolute deviation to a Gaussian standard deviation.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

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


def whitened(z: np.ndarray) -> np.ndarray:
    """Complex data as a 2 × n array of I, Q transformed so that its point noise is the
    same, and uncorrelated, in every direction of the IQ plane.

    A qubit's projection noise lies along the line between its states' readout points: with
    a large thermal population (a heavy fluxonium at half flux) it is many times the
    amplifier noise across that line. A transition to a higher level moves the readout point
    partly across it, and projected on the trace's direction of largest variation (the noise
    direction) it hides: on sampled chip 5000 a plasmon line seen at signal-to-noise 17 in a
    401-point sweep stayed at 4.4 in a 61-point sweep of the same shots, whose main direction
    the noise set. Data whose noise covariance cannot be estimated is returned as it is.
    """
    z = np.asarray(z, complex)
    points = np.stack([z.real, z.imag])
    covariance = difference_covariance(points)
    if covariance is None:
        return points
    values, vectors = np.linalg.eigh(covariance)
    return (vectors / np.sqrt(values)) @ vectors.T @ points


#: Differences kept by `difference_covariance`: within the 99 % contour of two-dimensional
#: Gaussian noise; the mean squared distance of those kept is 1.907 (of 2 for all), hence the
#: consistency factor.
_KEPT_CHI2 = 9.21
_KEPT_CONSISTENCY = 2.0 / 1.907


def difference_covariance(points: np.ndarray) -> np.ndarray | None:
    """The 2 × 2 covariance of one point's noise in `points` (2 × n), from point-to-point
    differences: a first robust estimate (Gnanadesikan–Kettenring, from median-based scales
    of the standardised sum and difference), then the plain covariance of the differences
    inside its 99 % contour, twice. Lines and slow baselines barely enter it, and unlike the
    median-based scales alone (±40 % on 61 points) it is nearly as precise as the plain
    covariance. None when a quadrature has no noise or there are too few points."""
    differences = np.diff(points, axis=1) / np.sqrt(2)
    scales = np.array([difference_noise(points[0]), difference_noise(points[1])])
    if differences.shape[1] < 4 or not np.all(scales > 0):
        return None
    standard = points / scales[:, None]
    plus = difference_noise(standard[0] + standard[1]) ** 2
    minus = difference_noise(standard[0] - standard[1]) ** 2
    correlation = (plus - minus) / (plus + minus) if plus + minus > 0 else 0.0
    covariance = np.array([[1.0, correlation], [correlation, 1.0]]) * np.outer(scales, scales)
    for _ in range(2):
        try:
            inverse = np.linalg.inv(covariance)
        except np.linalg.LinAlgError:
            return None
        distance = np.einsum("in,ij,jn->n", differences, inverse, differences)
        kept = differences[:, distance <= _KEPT_CHI2]
        if kept.shape[1] < 4:
            return None
        covariance = _KEPT_CONSISTENCY * (kept @ kept.T) / kept.shape[1]
    if not np.all(np.linalg.eigvalsh(covariance) > 0):
        return None
    return covariance


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


def repeat_noise(
    half_difference: np.ndarray,
    shape: np.ndarray,
    uniform: float,
    outlier_sigmas: float = 5.0,
    floor_fraction: float = 0.1,
    rounds: int = 4,
    significance: float = 2.0,
) -> np.ndarray:
    """Each point's noise of the mean of two repeats: a floor (the readout's) plus an excess
    that follows `shape` (`projection_shape`: 0 at either state, 1 at an equal mixture).

    Why: with a readout that tells the states apart in one shot, the projection noise of a
    point halfway through a decay is several times the noise at its ends; one noise for all
    points let a right exponential fail the χ² test (sampled chip 5011: T1's reduced χ² 8.4,
    residuals ±6σ mid-decay and ±0.7σ in the tail) whenever most delays lay in the tail. The
    half differences (`half_difference`, one degree of freedom each) are fitted by
    non-negative least squares weighted by the variance model's own size (a Gamma fit,
    re-weighted `rounds` times). A point further than `outlier_sigmas` from its model is a
    glitch and is left out of the fit, as before; `uniform` (one noise for all points,
    glitches clipped) is where the re-weighting starts. The floor is kept at least
    `floor_fraction` of the mean variance: a floor fitted near zero by chance would let the
    points at the states decide χ² alone. An excess within `significance` standard errors of
    none is noise of the estimate (a faint trace's readout noise is alike at every point):
    the points then keep the one noise.
    """
    squared = np.asarray(half_difference, float) ** 2
    shape = np.asarray(shape, float)
    design = np.stack([np.ones_like(shape), shape], axis=-1)
    variance = np.full(squared.size, float(uniform) ** 2)
    if not _excess_is_significant(squared, design, variance[0], outlier_sigmas, significance):
        return np.full(squared.size, float(uniform))
    for _ in range(rounds):
        kept = squared <= outlier_sigmas**2 * variance
        weighted = design[kept] / variance[kept][:, None]
        (floor, excess), _ = nnls(weighted, squared[kept] / variance[kept])
        floor = max(floor, floor_fraction * float(np.mean(squared[kept])))
        variance = floor + excess * shape
    return np.sqrt(variance)


def _excess_is_significant(
    squared: np.ndarray,
    design: np.ndarray,
    uniform_variance: float,
    outlier_sigmas: float,
    significance: float,
) -> bool:
    """Whether the squared half differences grow with the projection shape by more than
    `significance` standard errors of that slope if every point had `uniform_variance`.

    Judged under that null hypothesis, by ordinary least squares: a slope fitted with the
    model's own weights is overconfident when a few points at the states happen to be
    small (a faint trace whose fit puts only its first delays at a state: its floor fell
    to a quarter of the noise and its excess looked certain).
    """
    kept = squared <= outlier_sigmas**2 * uniform_variance
    normal = design[kept].T @ design[kept]
    if kept.sum() < 3 or not abs(np.linalg.det(normal)) > 0:
        return False
    inverse = np.linalg.inv(normal)
    slope = float((inverse @ design[kept].T @ squared[kept])[1])
    stderr = uniform_variance * float(np.sqrt(2.0 * inverse[1, 1]))  # Var(z²σ²) = 2σ⁴
    return slope > significance * stderr


def effective_dof(variances: np.ndarray) -> float:
    """Degrees of freedom of a pooled variance whose one-degree terms have these expected
    sizes, (Σv)²/Σv² (Satterthwaite): n when all are alike, near 1 when one dominates."""
    v = np.asarray(variances, float)
    total = float(np.sum(v**2))
    return float(np.sum(v) ** 2 / total) if total > 0 else float(v.size)
