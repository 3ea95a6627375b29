"""Where the |0⟩ and |1⟩ readout responses separate most: the fit behind the readout frequency.

The separation of the mean IQ without and with a π pulse follows |L(f − f0) − L(f − f1)| for
the Lorentzian L of each dressed resonator frequency (any mixture of the states only scales
it). With |χ| < κ it has one maximum between the lines, with |χ| > κ one near each line.

Two parametrisations of that one curve are fitted, because each is well conditioned where
the other is not:

- *centred*: midpoint, κ and (χ/κ)², with (χ/κ)² allowed below zero so that χ → 0 (one
  sharp maximum) is no boundary;
- *anchored*: one line, κ and the signed reach κ/χ of the other. When the other line lies
  outside the sweep (|χ| ≫ κ with an unresolved splitting), the visible maximum is
  asymmetric: the partner's tail lifts one side. A symmetric fit of it puts the maximum
  several κ/10 towards the heavy side; the anchored fit follows the asymmetry. The reach,
  not χ, is fitted because a partner far outside the sweep is then an interior value (0,
  reached continuously from either side): with χ itself the fit ran off towards ∞, where
  its covariance is singular and the maximum had no standard error (sampled chip 5048,
  |χ| = 9κ), and partners on either side were separate fits whose maxima counted as an
  ambiguity the data had in fact settled.

Frequencies are fitted as offsets from the start in units of the starting κ: in Hz (or at
GHz) the finite-difference Jacobian's relative steps are too small or too coarse, and the
line stayed at its initial value on chip 5048.

When the data cannot tell fits with different maxima apart (χ² within `AMBIGUOUS_CHI2`),
the spread of their maxima is part of the stated uncertainty: the sweep then buys more shots
rather than reporting a point its model choice has not settled.
"""

from __future__ import annotations

from dataclasses import dataclass

import lmfit
import numpy as np
from scipy.optimize import minimize_scalar
from scipy.signal import find_peaks

from fluxcal.calibrations.experiments.single_shot import BlobMixture, fit_blob_mixture
from fluxcal.calibrations.fitting import FitError
from fluxcal.calibrations.fitting.covariance import scale_errors_by_misfit

#: Starting values of (χ/κ)² for the centred fit, one or two maxima (best χ² is kept).
_RATIO_STARTS = (0.1, 1.5, 6.0)
#: Starting reaches κ/χ of the partner line: none, or near on either side.
_REACH_STARTS = (0.0, -0.5, 0.5)
#: |κ/χ| at most this: smaller splittings are the centred fit's (this one degenerates).
_MAX_REACH = 2.0
#: Fits whose χ² is within this of the best describe the data as well (likelihood ratio
#: e^(−1), Δχ² = 2): the spread of their maxima is an uncertainty the data leave open.
AMBIGUOUS_CHI2 = 2.0
#: Blob separation in noise widths from which a sweep point takes the mixture's |Δμ|. Below
#: `single_shot.RESOLVED_SNR`: on 500 shots per state of a 47 % excited qubit the mixture
#: is unbiased to 1 % at 2 noise widths, its stderr matching the scatter. The difference
#: of means it replaces has 1/(1 − 2p) of its stderr, so a point just under a higher
#: threshold barely counted and the fit hung on the two or three points above it: on
#: sampled chip 5051 (p = 0.47) the maximum landed 0.057 κ off with a stated 0.0055 κ.
_MIXTURE_SNR = 2.0
#: Maxima within this fraction of the highest count as equal (the two of a pair differ by
#: far less than any noise): the one nearer the start is taken.
_EQUAL_HEIGHT = 0.97
Estimate = tuple[float, float]  # value, stderr
UNKNOWN: Estimate = (float("nan"), float("nan"))  # no value, no stderr


def centred_model(x, amplitude, centre, kappa, ratio):
    """|L(f − f0) − L(f − f1)| up to a constant, for (f0 + f1)/2 = centre, ratio = (χ/κ)²:
    |(1 + 2i(x − χ/2)/κ)(1 + 2i(x + χ/2)/κ)|² = (1 + ratio − 4x²/κ²)² + 16x²/κ², x = f − centre.
    """
    u = 4 * (x - centre) ** 2 / kappa**2
    return amplitude / np.sqrt((1 + ratio - u) ** 2 + 4 * u)


def anchored_model(x, amplitude, line, kappa, reach):
    """|L(f − line) − L(f − line − χ)| for reach = κ/χ: the same curve named by one line and
    the other's signed reach, so a partner far outside the sweep is reach ≈ 0, not χ ≈ ∞.
    L(f − line − χ) = reach / (reach·(1 + 2i(x − line)/κ) − 2i), which vanishes at reach 0."""
    detuning = 1 + 2j * (x - line) / kappa
    return amplitude * np.abs(1 / detuning - reach / (reach * detuning - 2j))


@dataclass(frozen=True)
class SeparationFit:
    """Fit of |mean(|1⟩ shots) − mean(|0⟩ shots)| against readout frequency."""

    result: lmfit.model.ModelResult | None  # of offsets from `reference` in `scale`s
    optimum: Estimate  # Hz, ±stderr: frequency of the largest separation
    splitting: Estimate  # |f1 − f0| (Hz)
    linewidth: Estimate  # κ (Hz) of each dressed resonance
    reduced_chi2: float
    model_spread: float = 0.0  # Hz: how far equally good fits put the maximum
    reference: float = 0.0  # Hz: the frequency the fit's offsets count from ...
    scale: float = 1.0  # Hz: ... in this unit

    def loss(self, sigmas: float = 3.0) -> float:
        """Fraction of the largest separation lost `sigmas` standard errors off the optimum
        (the worse side), from the fitted curve: what the frequency's uncertainty costs.

        A sharp maximum (|χ| ≪ κ) loses ~3 % at κ/10; the flat top of |χ| ≈ κ loses almost
        nothing where its maximum is poorly located, so the uncertainty that matters there
        is far larger than any fixed fraction of κ would allow."""
        if self.result is None or not np.all(np.isfinite(self.optimum)):
            return float("inf")
        best, stderr = self.optimum
        offsets = best - self.reference + sigmas * stderr * np.array([0.0, -1.0, 1.0])
        values = self.result.eval(x=offsets / self.scale)
        if not values[0] > 0:
            return float("inf")
        return float(max(0.0, 1.0 - min(values[1:]) / values[0]))


FAILED = SeparationFit(None, UNKNOWN, UNKNOWN, UNKNOWN, float("nan"))


def fit_separation(
    frequency: np.ndarray,
    iq0: np.ndarray,
    iq1: np.ndarray,
    kappa: float,
    start: float,
    mixture: BlobMixture | None = None,
) -> SeparationFit:
    """Fit the blob-mean separation over a frequency sweep; shots of shape (freq, shots).

    κ starts at the resonator-spectroscopy value but is fitted: that value is the width of
    the thermal mixture's line, which the dispersive splitting broadens (by 40 % on the
    intermediate test chip). Of two maxima, the one nearer `start` is taken. `mixture`: the
    shots' `sweep_mixture`, when the caller has it already (it is the costly part).
    """
    iq0 = np.asarray(iq0, complex)
    iq1 = np.asarray(iq1, complex)
    if not (np.all(np.isfinite(iq0)) and np.all(np.isfinite(iq1))):
        raise FitError("frequency sweep has non-finite shots")
    separation, noise = separation_points(iq0, iq1, mixture)
    reference, scale = float(start), float(kappa)
    offsets = (np.asarray(frequency, float) - reference) / scale
    try:
        fits = _centred_fits(offsets, separation, noise, 1.0)
        fits += _anchored_fits(offsets, separation, noise, 1.0)
    except (ValueError, TypeError) as error:
        raise FitError(f"separation fit failed: {error}") from None
    best = min(fits, key=lambda fit: fit.chisqr)
    window = (float(offsets.min()), float(offsets.max()))
    optimum = curve_optimum(best, window, 0.0)
    rivals = [  # where equally good fits put the maximum; their stderrs are not needed
        _maximum(fit, fit.params, window, 0.0)
        for fit in fits
        if fit is not best and fit.chisqr <= best.chisqr + AMBIGUOUS_CHI2
    ]
    spread = max((abs(r - optimum[0]) for r in rivals if np.isfinite(r)), default=0.0)
    splitting, linewidth = _splitting_and_linewidth(best)
    return SeparationFit(
        best,
        (reference + scale * optimum[0], scale * float(np.hypot(optimum[1], spread))),
        (scale * splitting[0], scale * splitting[1]),
        (scale * linewidth[0], scale * linewidth[1]),
        float(best.redchi),
        scale * spread,
        reference,
        scale,
    )


def sweep_mixture(iq0: np.ndarray, iq1: np.ndarray) -> BlobMixture:
    """The shared-blob mixture of each sweep point, its populations common to all of them
    (the readout frequency does not change what was prepared)."""
    return fit_blob_mixture(iq0, iq1, common_populations=True)


def separation_points(
    iq0: np.ndarray, iq1: np.ndarray, mixture: BlobMixture | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Blob separation per frequency ± stderr, from shots of shape (freq, shots).

    Where the two blobs are resolved (`_MIXTURE_SNR`), the shared-blob mixture's |Δμ|,
    whose stderr excludes the switching between blobs; elsewhere (the sweep's wings) the
    difference of the preparations' means, divided by the population contrast that relates
    the two estimators on the resolved points (its uncertainty added). Without resolved
    points, the difference of means as it is: any common scale leaves the shape alone.
    """
    difference = np.abs(iq1.mean(-1) - iq0.mean(-1))
    noise = np.sqrt(iq0.var(-1) / iq0.shape[-1] + iq1.var(-1) / iq1.shape[-1])
    mixture = sweep_mixture(iq0, iq1) if mixture is None else mixture
    resolved = (mixture.snr >= _MIXTURE_SNR) & np.isfinite(mixture.stderr) & (noise > 0)
    if not resolved.any():
        return difference, noise
    blobs, difference_noise = mixture.separation[resolved], noise[resolved]
    contrast = np.sum(difference[resolved] * blobs / difference_noise**2) / np.sum(
        (blobs / difference_noise) ** 2
    )
    return (
        np.where(resolved, mixture.separation, difference / contrast),
        np.where(resolved, mixture.stderr, noise / contrast),
    )


def _centred_fits(frequency, separation, noise, kappa) -> list[lmfit.model.ModelResult]:
    weights = separation**2
    model = lmfit.Model(centred_model)
    params = model.make_params(
        amplitude={"value": float(separation.max()), "min": 0},
        centre={
            "value": float(np.sum(frequency * weights) / np.sum(weights)),
            "min": frequency.min(),
            "max": frequency.max(),
        },
        kappa={"value": kappa, "min": kappa / 4, "max": 4 * kappa},
        ratio={"value": _RATIO_STARTS[0], "min": -0.9, "max": 1000.0},
    )
    starts = [(ratio, params["centre"].value) for ratio in _RATIO_STARTS]
    starts += _two_peak_start(frequency, separation, noise, kappa)
    fits = []
    for ratio, centre in starts:  # one or two maxima: start from both regimes
        params["ratio"].value = ratio
        params["centre"].value = centre
        fits.append(_fit(model, separation, params, frequency, noise))
    return fits


def _anchored_fits(frequency, separation, noise, kappa) -> list[lmfit.model.ModelResult]:
    """Fits with one line at the highest point and its partner absent or near either side.

    |χ| is kept at least κ/`_MAX_REACH` (the centred fit covers smaller splittings, where
    this parametrisation degenerates)."""
    model = lmfit.Model(anchored_model)
    line = float(frequency[np.argmax(separation)])
    fits = []
    for reach in _REACH_STARTS:
        params = model.make_params(
            amplitude={"value": float(separation.max()), "min": 0},
            line={"value": line, "min": frequency.min(), "max": frequency.max()},
            kappa={"value": kappa, "min": kappa / 4, "max": 4 * kappa},
            reach={"value": reach, "min": -_MAX_REACH, "max": _MAX_REACH},
        )
        fits.append(_fit(model, separation, params, frequency, noise))
    return fits


def _fit(model, separation, params, frequency, noise) -> lmfit.model.ModelResult:
    """Weighted fit whose covariance is scaled by the reduced χ² only when that exceeds 1.

    Why: lmfit's default also scales it down below 1, but a χ² below 1 here is no sign of
    smaller errors: the wing points are magnitudes of mostly noise (|·| of noise is biased
    and narrower than its stated error), pushing χ² to ~0.5 and the maximum's stderr to
    ~0.6 of its actual scatter in synthetic sweeps."""
    result = model.fit(separation, params, x=frequency, weights=1 / noise, scale_covar=False)
    scale_errors_by_misfit(result)
    return result


def _two_peak_start(
    frequency: np.ndarray, separation: np.ndarray, noise: np.ndarray, kappa: float
) -> list[tuple[float, float]]:
    """(ratio, centre) read off the curve when it shows two separate maxima.

    With |χ| ≫ κ the maxima sit near each dressed line, far apart: a fit started from a
    small ratio settles on one broad peak. Two peaks Δ apart mean ratio = (Δ/κ)² + 1
    (maxima at centre ± (κ/2)·√(ratio − 1)), centred between them.
    """
    peaks, _ = find_peaks(separation, prominence=5 * float(np.median(noise)))
    if peaks.size < 2:
        return []
    first, second = sorted(peaks[np.argsort(separation[peaks])[-2:]])
    gap = float(frequency[second] - frequency[first])
    return [((gap / kappa) ** 2 + 1, float(frequency[first] + gap / 2))]


def curve_optimum(
    result: lmfit.model.ModelResult, window: tuple[float, float], start: float
) -> Estimate:
    """Frequency of the fitted curve's maximum in `window` (the highest, or of equally high
    ones the nearest `start`) ± its standard error, propagated from the fit's covariance
    by moving each parameter and finding the maximum again; ∞ without a covariance."""
    best = _maximum(result, result.params, window, start)
    if not np.isfinite(best):
        return UNKNOWN
    names = result.var_names
    if result.covar is None or len(names) != np.shape(result.covar)[0]:
        return best, float("inf")
    gradient = np.zeros(len(names))
    for k, name in enumerate(names):
        step = 0.1 * (result.params[name].stderr or abs(result.params[name].value) * 1e-3)
        if not step > 0:
            return best, float("inf")
        moved = []
        for sign in (-1.0, 1.0):
            params = result.params.copy()
            params[name].set(value=params[name].value + sign * step, min=-np.inf, max=np.inf)
            moved.append(_maximum(result, params, window, best))
        gradient[k] = (moved[1] - moved[0]) / (2 * step)
    variance = float(gradient @ np.asarray(result.covar) @ gradient)
    return best, float(np.sqrt(variance)) if variance >= 0 else float("inf")


def _maximum(result, params, window: tuple[float, float], near: float) -> float:
    """The curve's highest maximum in `window` (of equal ones, the nearest `near`), refined."""
    grid = np.linspace(*window, 4001)
    values = result.eval(params=params, x=grid)
    if not (np.all(np.isfinite(values)) and values.max() > 0):
        return float("nan")  # e.g. the amplitude moved below zero: no maximum at all
    peaks = np.flatnonzero((values[1:-1] >= values[:-2]) & (values[1:-1] >= values[2:])) + 1
    if peaks.size == 0:  # rising to the window's edge: the maximum is there
        return float(grid[np.argmax(values)])
    high = peaks[values[peaks] >= _EQUAL_HEIGHT * values[peaks].max()]
    chosen = high[np.argmin(np.abs(grid[high] - near))]
    # searched as an offset from the grid point: Brent's relative tolerance on the absolute
    # frequency (√ε·7 GHz ≈ 100 Hz) would hide the small moves the error propagation makes
    anchor, step = float(grid[chosen]), float(grid[1] - grid[0])
    refined = minimize_scalar(
        lambda offset: -float(result.eval(params=params, x=np.array([anchor + offset]))[0]),
        bounds=(-step, step),
        method="bounded",
        options={"xatol": 1e-7 * step},
    )
    return anchor + float(refined.x)


def _splitting_and_linewidth(result: lmfit.model.ModelResult) -> tuple[Estimate, Estimate]:
    """|χ| and κ ± stderr from either parametrisation; a ratio ≤ 0 resolves no splitting,
    a reach of 0 (partner beyond every tail the sweep sees) no finite one."""
    width = _estimate(result.params["kappa"])
    if "reach" in result.params:
        reach = _estimate(result.params["reach"])
        if reach[0] == 0:
            return (float("inf"), float("inf")), width
        splitting = width[0] / abs(reach[0])
        relative = float(np.hypot(width[1] / width[0], reach[1] / reach[0]))
        return (splitting, splitting * relative), width
    ratio = _estimate(result.params["ratio"])
    if ratio[0] <= 0:
        return (0.0, float("inf")), width
    root = np.sqrt(ratio[0])
    return (
        width[0] * root,
        float(np.hypot(root * width[1], 0.5 * width[0] / root * ratio[1])),
    ), width


def _estimate(parameter: lmfit.Parameter) -> Estimate:
    """Value and stderr of a fitted parameter; an unknown stderr is infinite."""
    stderr = parameter.stderr if parameter.stderr is not None else np.inf
    return float(parameter.value), float(stderr)
