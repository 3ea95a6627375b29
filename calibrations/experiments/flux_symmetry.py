"""Period and mirror axis of a resonator-versus-bias map, from whole columns, with no line model.

The readout resonator's response at bias V depends on V only through the flux, so the map is
periodic (one flux quantum per period P) and mirror-symmetric about every integer and every
half-integer flux point: column(V) = column(S + m·P − V) for all integers m, with the symmetry
points at S/2 + m·P/2. Comparing whole complex columns needs no assumption about the line
shape: it works for one Lorentzian, for the two dips of a thermal mixture with |χ| > κ, for a
line that leaves the window near a crossing, for any cable delay (the line environment is the
same in every column, so it cancels).

Distances are noise-normalised: d² = mean over frequency of |Δz|² / (expected |Δz|² of noise),
≈ 1 for columns that agree within noise. The noise comes from point-to-point differences along
frequency, pooled over columns with a median (blind to the resonance and to glitches).
Images between bias points are linearly interpolated; the cost of a trial (P, S) is the mean of
log(1 + d²) over every point whose image falls inside the scan, a robust loss that glitched
columns cannot dominate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from fluxcal.calibrations.fitting import FitError
from fluxcal.calibrations.fitting.noise import MAD_TO_SIGMA
from fluxcal.calibrations.fitting.reuse import reused

#: Mirror images S + m·P − V are taken for |m| up to this (enough for P ≥ span/8).
_MAX_MIRROR_ORDER = 8
#: Smallest standard error of P and S, in bias steps: linear interpolation across sharp
#: crossing features leaves errors of up to ~0.02 step that neither the noise nor the
#: even/odd comparison reveals (measured on 16 sampled chips; bench_robustness coverage).
_INTERPOLATION_FLOOR = 1 / 30
#: Twice the period replaces it when its cost is lower by this many of the cost's noise.
_DOUBLING_SIGMAS = 5.0
#: A pair of columns is an inlier for the error estimate when its d² is below this.
_INLIER_D2 = 3.0


@dataclass(frozen=True)
class BiasMap:
    """Complex response per (bias, frequency), its point noise, and which columns are usable."""

    bias: np.ndarray
    iq: np.ndarray
    noise: float  # standard deviation of one complex point, per quadrature
    finite: np.ndarray  # columns without a missing point

    @classmethod
    def from_scan(cls, bias: np.ndarray, iq: np.ndarray) -> BiasMap:
        """The noise comes from differences between neighbouring bias columns at the same
        frequency: the line moves little from one bias step to the next, while along
        frequency the cable delay winds the phase by more than the noise between points."""
        iq = np.asarray(iq, complex)
        finite = np.isfinite(iq).all(axis=1)
        if finite.sum() < 10:
            raise FitError(f"only {finite.sum()} bias columns without missing points")
        diffs = np.diff(iq[finite], axis=0)
        spread = np.median(np.abs(np.concatenate([diffs.real.ravel(), diffs.imag.ravel()])))
        noise = float(MAD_TO_SIGMA * spread / np.sqrt(2))
        iq = np.where(finite[:, None], iq, np.nanmedian(iq[finite], axis=0))
        return cls(np.asarray(bias, float), iq, max(noise, np.finfo(float).tiny), finite)

    @property
    def step(self) -> float:
        return float(self.bias[1] - self.bias[0])

    @cached_property
    def gram(self) -> np.ndarray:
        """Re mean over frequency of column_j · conj(column_k), for every pair of columns.

        The unguarded distance of a column to an interpolated image is a quadratic form in
        three columns, so with this matrix (one product per map) it costs O(1) per pair
        instead of O(frequencies): the refinement evaluates it thousands of times per map.
        """
        return (self.iq @ self.iq.conj().T).real / self.iq.shape[1]

    def _smoothed_magnitude(self) -> np.ndarray:
        magnitude = np.abs(self.iq)
        return (magnitude[:, :-2] + magnitude[:, 1:-1] + magnitude[:, 2:]) / 3

    def dip_trace(self) -> np.ndarray:
        """Frequency index of each column's deepest point of |S21| (smoothed over 3 points)."""
        return np.argmin(self._smoothed_magnitude(), axis=1) + 1

    def visibility(self) -> np.ndarray:
        """Per column, the depth of the deepest point below the median level, in noise units."""
        smooth = self._smoothed_magnitude()
        depth = np.median(np.abs(self.iq), axis=1) - smooth.min(axis=1)
        return depth / (self.noise / np.sqrt(3))


def _interpolate(
    bmap: BiasMap, voltage: np.ndarray, guarded: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns at `voltage` (linear between bias points), their variance and usability.

    The variance (per quadrature, per point) is the noise of the interpolated column; when
    `guarded`, plus the error linear interpolation may make across a feature sharper than
    the bias step, w(1 − w)·|Δcolumn|²: zero on a bias point, largest halfway. Without that
    guard a period spanning a whole number of steps (a multiple of the true one) can match
    better than the true one; with it, the sharp features that pin the period most
    precisely count less. So candidates are chosen guarded and refined unguarded.
    Unguarded, the variance is one number per column (shape (points, 1)): the cost is
    evaluated thousands of times per map, so nothing per frequency is computed that is
    not needed.
    """
    position = np.clip((voltage - bmap.bias[0]) / bmap.step, 0, bmap.bias.size - 1)
    lower = np.minimum(np.floor(position).astype(int), bmap.bias.size - 2)
    w = (position - lower)[:, None]
    below, above = bmap.iq[lower], bmap.iq[lower + 1]
    difference = above - below
    columns = below + w * difference
    variance = bmap.noise**2 * ((1 - w) ** 2 + w**2)
    if guarded:
        variance = variance + w * (1 - w) * _squared_magnitude(difference) / 2  # per quadrature
    usable = bmap.finite[lower] & bmap.finite[lower + 1]
    return columns, variance, usable


def _squared_magnitude(z: np.ndarray) -> np.ndarray:
    """|z|² without the square root np.abs would take."""
    return z.real**2 + z.imag**2


def mirror_pairs(bias: np.ndarray, period: float, axis: float) -> tuple[np.ndarray, np.ndarray]:
    """(point index, image voltage) of every image S + m·P − V that falls inside the scan."""
    orders = np.arange(-_MAX_MIRROR_ORDER, _MAX_MIRROR_ORDER + 1)[:, None]
    image = axis + orders * period - bias[None, :]
    inside = (image >= bias[0]) & (image <= bias[-1]) & (np.abs(image - bias[None, :]) > 1e-12)
    order, index = np.nonzero(inside)
    return index, image[order, index]


def pair_residuals(
    bmap: BiasMap, index: np.ndarray, image: np.ndarray, guarded: bool = False
) -> np.ndarray:
    """Noise-normalised complex differences column(V) − column(image), shape (pairs, freq)."""
    keep = bmap.finite[index]
    index, image = index[keep], image[keep]
    columns, variance, usable = _interpolate(bmap, image, guarded)
    scale = np.sqrt(2 * (bmap.noise**2 + variance[usable]))
    return (bmap.iq[index[usable]] - columns[usable]) / scale


def _d2(residuals: np.ndarray) -> np.ndarray:
    return np.mean(_squared_magnitude(residuals), axis=1)


def pair_distances(
    bmap: BiasMap, index: np.ndarray, image: np.ndarray, guarded: bool = False
) -> np.ndarray:
    """d² of every pair, as `_d2(pair_residuals(...))`, without forming the residuals.

    Unguarded, |a − (1 − w)·b − w·c|² averaged over frequency expands into the columns' mean
    products (the map's `gram`) and the scale is one number per pair, so nothing per
    frequency is computed. Guarded, the scale varies with frequency; the residual's squared
    magnitude is divided by it directly (no square roots, no complex division).
    """
    keep = bmap.finite[index]
    index, image = index[keep], image[keep]
    position = np.clip((image - bmap.bias[0]) / bmap.step, 0, bmap.bias.size - 1)
    lower = np.minimum(np.floor(position).astype(int), bmap.bias.size - 2)
    usable = bmap.finite[lower] & bmap.finite[lower + 1]
    a, b, c = index[usable], lower[usable], lower[usable] + 1
    w = (position - lower)[usable]
    v = 1 - w
    noise_scale = 2 * bmap.noise**2 * (1 + v * v + w * w)  # 2 (noise² + variance)
    if guarded:
        difference = bmap.iq[c] - bmap.iq[b]
        residual = bmap.iq[a] - bmap.iq[b]
        residual -= w[:, None] * difference
        scale = (v * w)[:, None] * _squared_magnitude(difference)
        scale += noise_scale[:, None]
        return np.mean(_squared_magnitude(residual) / scale, axis=1)
    g = bmap.gram
    squared = (
        g[a, a]
        + v * v * g[b, b]
        + w * w * g[c, c]
        - 2 * v * g[a, b]
        - 2 * w * g[a, c]
        + 2 * v * w * g[b, c]
    )
    return np.maximum(squared, 0.0) / noise_scale


def mirror_cost(bmap: BiasMap, period: float, axis: float, guarded: bool = False) -> float:
    terms = _cost_terms(bmap, period, axis, guarded)
    return float(terms.mean()) if terms.size else np.inf


def shift_cost(bmap: BiasMap, lag: int) -> float:
    """Cost of superposing the map on itself shifted by `lag` bias points."""
    index = np.arange(bmap.bias.size - lag)
    d2 = pair_distances(bmap, index, bmap.bias[index + lag], guarded=True)
    return float(np.log1p(d2).mean()) if d2.size else np.inf


def period_guess(bmap: BiasMap, bounds: tuple[float, float]) -> float:
    """The shortest lag within `bounds` at which the map matches itself shifted.

    Every multiple of the period matches too, so the answer is the first local minimum of
    the cost over lags that comes much nearer the best cost than the typical one does.
    """
    step = bmap.step
    lags = np.arange(max(int(np.ceil(bounds[0] / step)), 1), int(bounds[1] / step) + 1)
    lags = lags[lags < bmap.bias.size - 2]
    if lags.size < 3:
        raise FitError("the bias scan is shorter than the smallest period searched")
    structure = np.array([shift_cost(bmap, int(n)) for n in lags])
    best = float(structure.min())
    threshold = best + 0.25 * (float(np.median(structure)) - best)
    padded = np.concatenate(([np.inf], structure, [np.inf]))
    minima = (structure <= padded[:-2]) & (structure <= padded[2:]) & (structure <= threshold)
    return float(lags[int(np.argmax(minima))] * step)


@dataclass(frozen=True)
class Symmetry:
    """Period P (V/Φ0) and mirror axis S (V), with errors and how well the map obeys them.

    `contrast`: how far the best axis brings the mirror cost from a typical axis' down to the
    noise floor (1: to the floor, 0: no better than a typical axis). `mismatch`: median d² of
    the mirror pairs at the best axis (≈ 1 when the map agrees with its images within noise).
    `modulation`: how far a typical axis' cost lies above that of columns equal within noise
    (log(1 + d²) − log 2); near 0 the resonator hardly moves with flux and the contrast of
    two small numbers means nothing.
    """

    period: float
    period_stderr: float
    axis: float
    axis_stderr: float
    contrast: float
    mismatch: float
    pairs: int
    modulation: float  # typical mirror cost above the noise-only cost: how much flux shows


@reused
def find_symmetry(bmap: BiasMap, bounds: tuple[float, float]) -> Symmetry:
    """Lag search for the period, axis scan, then a joint Nelder–Mead refinement.

    Standard errors combine the statistical error (Jacobian of the inlier residuals, scaled by
    their reduced χ²) with the grid dependence of linear interpolation across sharp crossing
    features: half the difference between refinements on the even and on the odd bias points,
    never less than `_INTERPOLATION_FLOOR` bias steps. Both also include the spread of the
    symmetry points located one at a time (`_point_spread`): the whole-map cost is
    lowest where every image falls on a bias point (P and S whole numbers of steps), a pull
    of up to a few tenths of a step that the even and odd halves share (their images align
    on the same lattice), so only estimates from separate columns reveal it.
    """
    period = period_guess(bmap, bounds)
    step = bmap.step
    axes = np.arange(0.0, period, step / 4)
    costs = np.array([mirror_cost(bmap, period, s, guarded=True) for s in axes])
    start = np.array([period, axes[int(np.argmin(costs))]])
    candidate, cost = _refine(bmap, start, guarded=True)
    candidate, cost = _fundamental(bmap, candidate, cost, float(np.median(costs)))
    candidate, cost = _not_half(bmap, candidate, cost, bounds)
    best, _ = _refine(bmap, candidate)
    halves = [_refine(_subsample(bmap, k), best)[0] for k in (0, 1)]
    grid = np.abs(halves[0] - halves[1]) / 2
    statistical, d2 = _statistics(bmap, best[0], best[1])
    noise_cost = float(np.log(2.0))  # log(1 + d²) of columns equal within noise
    typical = float(np.median(costs))
    contrast = (typical - cost) / (typical - noise_cost) if typical > noise_cost else 0.0
    floor = _INTERPOLATION_FLOOR * step
    spread = _point_spread(bmap, best[0], best[1])
    return Symmetry(
        period=float(best[0]),
        period_stderr=max(float(np.linalg.norm([statistical[0], grid[0], spread[0]])), floor),
        axis=float(best[1]),
        axis_stderr=max(float(np.linalg.norm([statistical[1], grid[1], spread[1]])), floor),
        contrast=float(contrast),
        mismatch=float(np.median(d2)) if d2.size else np.inf,
        pairs=int(d2.size),
        modulation=typical - noise_cost,
    )


def _fundamental(
    bmap: BiasMap, best: np.ndarray, cost: float, typical: float
) -> tuple[np.ndarray, float]:
    """A fifth, quarter, third or half of the period when the map obeys that too.

    A multiple of the period is a symmetry of the map as well, and with sharp crossing
    features the integer-lag search can miss a period that spans a fractional number of
    bias steps; the refined (P, S) is tested directly at P/3 and P/2 (the axis S stays a
    mirror axis of the shorter period).
    """
    for divisor in (5, 4, 3, 2):
        trial = np.array([best[0] / divisor, best[1]])
        if trial[0] < 2 * bmap.step:
            continue
        # A true shorter period superposes as well as P once refined; for a false P/k only
        # the images of every k-th order are true ones, so its cost stays a fraction
        # 1 − 1/k ≥ 1/2 of the way from the best to a typical axis' cost: P/k is taken
        # below half that fraction, midway between the two.
        refined, refined_cost = _refine(bmap, trial, guarded=True)
        if refined_cost <= cost + (1 - 1 / divisor) / 2 * (typical - cost):
            return refined, refined_cost
    return best, cost


def _not_half(
    bmap: BiasMap, best: np.ndarray, cost: float, bounds: tuple[float, float]
) -> tuple[np.ndarray, float]:
    """Twice the period when the map clearly obeys that better.

    A true period P makes 2P a symmetry as well, with the same cost within noise (a subset of
    the same pairs). When P is half the true period (a weak map in which the lag search
    found a near-match at P/2), only every other image order is a true one, and 2P, with
    the axis S or S + P, superposes distinctly better: by more than `_DOUBLING_SIGMAS` times
    the cost's own noise, estimated from the spread of the per-pair terms.
    """
    if 2 * best[0] > bounds[1]:
        return best, cost
    terms = _cost_terms(bmap, best[0], best[1], guarded=True)
    if terms.size < 2:
        return best, cost
    # Every column appears in several pairs (one per image order): count them as fewer.
    noise = float(np.std(terms)) / np.sqrt(terms.size / (2 * _MAX_MIRROR_ORDER))
    for axis in (best[1], best[1] + best[0]):
        doubled, doubled_cost = _refine(bmap, np.array([2 * best[0], axis]), guarded=True)
        if doubled_cost < cost - _DOUBLING_SIGMAS * noise and doubled[0] <= bounds[1]:
            return doubled, doubled_cost
    return best, cost


def _cost_terms(bmap: BiasMap, period: float, axis: float, guarded: bool = False) -> np.ndarray:
    """log(1 + d²) of every mirror pair at (P, S): their mean is the mirror cost."""
    index, image = mirror_pairs(bmap.bias, period, axis)
    return np.log1p(pair_distances(bmap, index, image, guarded))


def _point_spread(bmap: BiasMap, period: float, axis: float) -> tuple[float, float]:
    """Standard errors of (P, S) from the symmetry points located one at a time.

    Each symmetry point (S + k·P)/2 at least P/4 inside the scan gets its own mirror axis
    from the columns within ±P/4 of it (no two points share a column, so their noise is
    independent, and each sits at its own fraction of a bias step, so their interpolation
    errors differ). The axes lie on the line S + k·P; the standard errors of its slope and
    of its value at k = 0 from their scatter about it hold both noise and interpolation
    error (0 with fewer than 3 points: no scatter to measure).
    """
    low, high = bmap.bias[0] + period / 4, bmap.bias[-1] - period / 4
    orders = np.arange(np.ceil((2 * low - axis) / period), np.floor((2 * high - axis) / period) + 1)
    if orders.size < 3:
        return 0.0, 0.0
    axes = np.array([_local_axis(bmap, axis + k * period, period / 4) for k in orders])
    centred = orders - orders.mean()
    slope = float(centred @ (axes - axes.mean()) / (centred @ centred))
    residual = axes - axes.mean() - slope * centred
    scatter = float(residual @ residual) / (orders.size - 2)
    spread = centred @ centred
    period_stderr = np.sqrt(scatter / spread)
    axis_stderr = np.sqrt(scatter * (1 / orders.size + orders.mean() ** 2 / spread))
    return float(period_stderr), float(axis_stderr)


def _local_axis(bmap: BiasMap, start: float, reach: float) -> float:
    """Mirror axis of the columns within `reach` of the symmetry point start/2, searched
    within ±2 bias steps of `start` (the whole map's axis for that point)."""
    index = np.nonzero(np.abs(bmap.bias - start / 2) < reach)[0]

    def cost(axis: float) -> float:
        image = axis - bmap.bias[index]
        keep = (image >= bmap.bias[0]) & (image <= bmap.bias[-1])
        keep &= np.abs(image - bmap.bias[index]) > 1e-12
        d2 = pair_distances(bmap, index[keep], image[keep])
        return float(np.log1p(d2).mean()) if d2.size else np.inf

    step = bmap.step
    result = minimize_scalar(
        cost,
        bounds=(start - 2 * step, start + 2 * step),
        method="bounded",
        options={"xatol": 1e-4 * step},
    )
    return float(result.x)


def _subsample(bmap: BiasMap, start: int) -> BiasMap:
    return BiasMap(bmap.bias[start::2], bmap.iq[start::2], bmap.noise, bmap.finite[start::2])


def _refine(bmap: BiasMap, start: np.ndarray, guarded: bool = False) -> tuple[np.ndarray, float]:
    """Nelder–Mead on (P, S): the cost is piecewise smooth (linear interpolation)."""
    step = bmap.step
    result = minimize(
        lambda p: mirror_cost(bmap, p[0], p[1], guarded),
        start,
        method="Nelder-Mead",
        options={
            "xatol": 1e-4 * step,
            "fatol": 1e-9,
            "initial_simplex": start + np.array([[0, 0], [step / 2, 0], [0, step / 2]]),
        },
    )
    return np.asarray(result.x, float), float(result.fun)


def statistical_axis_stderr(bmap: BiasMap, symmetry: Symmetry) -> float:
    """The noise part of the axis stderr of `symmetry` on `bmap` (the Jacobian's)."""
    return float(_statistics(bmap, symmetry.period, symmetry.axis)[0][1])


def refine_axis(bmap: BiasMap, symmetry: Symmetry) -> Symmetry:
    """`symmetry` with its mirror axis refined on `bmap`, a finer map of about one period
    around two symmetry points, the period held at the whole map's.

    Linear interpolation across features sharper than the bias step shifts the axis by an
    amount the even/odd comparison measures; on a finer map that error shrinks with the
    step, so the axis is pinned where the coarse map could not. Its stderr combines the
    statistical and grid parts of this map alone (floor: `_INTERPOLATION_FLOOR` steps).
    """
    period, step = symmetry.period, bmap.step
    reach = max(3 * symmetry.axis_stderr, 8 * step)  # the whole map's axis, ± 3 stderr
    axes = symmetry.axis + np.arange(-reach, reach + step / 8, step / 4)
    costs = [mirror_cost(bmap, period, axis) for axis in axes]
    axis = _axis_minimum(bmap, period, float(axes[int(np.argmin(costs))]))
    halves = [_axis_minimum(_subsample(bmap, k), period, axis) for k in (0, 1)]
    statistical, _ = _statistics(bmap, period, axis, vary_period=False)
    grid = abs(halves[0] - halves[1]) / 2
    stderr = max(float(np.hypot(statistical[1], grid)), _INTERPOLATION_FLOOR * step)
    return replace(symmetry, axis=axis, axis_stderr=stderr)


def _axis_minimum(bmap: BiasMap, period: float, start: float) -> float:
    """Nelder–Mead on the axis alone, the period held."""
    result = minimize(
        lambda s: mirror_cost(bmap, period, float(s[0])),
        np.array([start]),
        method="Nelder-Mead",
        options={
            "xatol": 1e-4 * bmap.step,
            "fatol": 1e-9,
            "initial_simplex": [[start], [start + bmap.step / 2]],
        },
    )
    return float(result.x[0])


def _statistics(
    bmap: BiasMap, period: float, axis: float, vary_period: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Standard errors of (P, S) and the d² of every mirror pair at the solution (with the
    period held, only S varies and the first error is 0).

    Each pair enters twice (each column is the other's image), so the covariance is doubled.
    """
    index, image = mirror_pairs(bmap.bias, period, axis)
    base = pair_residuals(bmap, index, image)
    d2 = _d2(base)
    inlier = d2 < _INLIER_D2
    if inlier.sum() < 3:
        return np.array([np.inf, np.inf]), d2
    h = 0.05 * bmap.step
    columns = []
    for dp, ds in ((h, 0.0), (0.0, h)) if vary_period else ((0.0, h),):
        shifted = []
        for sign in (1, -1):
            moved = image + sign * (ds + np.rint((image + bmap.bias[index] - axis) / period) * dp)
            shifted.append(pair_residuals(bmap, index, moved))
        derivative = (shifted[0] - shifted[1]) / (2 * h)
        columns.append(np.concatenate([derivative.real, derivative.imag], axis=1)[inlier].ravel())
    jac = np.stack(columns, axis=1)
    resid = np.concatenate([base.real, base.imag], axis=1)[inlier].ravel()
    redchi = float((resid**2).sum() / max(resid.size - 2, 1))
    try:
        cov = 2 * redchi * np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        return np.array([np.inf, np.inf]), d2
    stderr = np.sqrt(np.abs(np.diag(cov)))
    return stderr if vary_period else np.array([0.0, stderr[0]]), d2


def symmetry_candidates(symmetry: Symmetry) -> tuple[float, float]:
    """The point of each symmetry class (S/2 + k·P and S/2 + P/2 + k·P) nearest 0 V."""
    period = symmetry.period
    first = symmetry.axis / 2
    second = first + period / 2
    return (
        float(first - period * np.round(first / period)),
        float(second - period * np.round(second / period)),
    )


def point_stderr(symmetry: Symmetry, voltage: float) -> float:
    """Standard error of the symmetry point S/2 + m·P/2 at `voltage` (covariance neglected)."""
    order = np.rint((voltage - symmetry.axis / 2) / (symmetry.period / 2))
    return float(np.hypot(symmetry.axis_stderr, order * symmetry.period_stderr) / 2)
