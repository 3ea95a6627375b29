"""Fluxonium spectrum versus flux bias: peak extraction from a two-tone map, then an EJ/EC/EL fit.

Model: f01(V) = FluxoniumModel(EJ, EC, EL).transition_frequency((V − V_half)/period + 0.5),
so flux is Φ0/2 at the half-flux bias V_half (`flux_sweet_spot` in fluxcal) and `period` is
volts per Φ0 (`flux_period`). Energies are in GHz as in the model; frequencies and residuals
in Hz.

The starting point always comes from the data. f01 scales linearly with (EJ, EC, EL), so a
coarse table of f01(flux) over the two ratios EJ/EC and EL/EC (EC = 1) covers every energy
scale at once; the scale itself (= EC) is the linear least-squares factor between table and
data. When the flux mapping is unknown, symmetry points of the peak trace give candidate
sweet spots and a log-spaced scan gives candidate periods. The best grid point starts a robust
(soft-L1) lmfit least-squares fit, outliers are rejected, and a final plain least-squares fit
gives standard errors.

A flux period measured elsewhere (resonator versus flux) with a standard error enters as a
prior, one more residual, not as a held value: a heavy fluxonium's f01 trades the period
against EJ and EC along a long valley, so a period held one standard error off moved a
sampled chip's EJ by 25 % with a tight stderr (chip 3000: EJ 5.47 ± 0.01 GHz against 7.43),
while the map itself pins the period five times better than the prior did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import lmfit
import numpy as np
from threadpoolctl import threadpool_limits

from fluxcal.calibrations.fitting.covariance import (
    leverages,
    model_jacobian,
    scale_errors_by_misfit,
)
from fluxcal.calibrations.fitting.errors import FitError
from fluxcal.calibrations.fitting.noise import difference_noise, profiled_noise, robust_sigma
from fluxcal.calibrations.fitting.reuse import reused
from fluxcal.instruments.fluxonium import FluxoniumModel

#: Coarse search ranges of the energy ratios (EC = 1); they cover light to heavy fluxonium
#: (e.g. EJ, EC, EL ranging over 1–20, 0.5–5 and 0.1–2 GHz in typical combinations).
EJ_OVER_EC = (0.5, 20.0)
EL_OVER_EC = (0.04, 2.0)
_GRID_SHAPE = (24, 20)
#: Oscillator states for the coarse table: a few % error at the heaviest corner, which the
#: converged final fit corrects; a larger basis makes the grid search several times slower.
_GRID_CUTOFF = 40
#: Least 1 − leverage a residual is divided by: a point the fit nearly passes through tells
#: little of its noise, and dividing by ~0 would make it decide the excess alone.
_MIN_FREEDOM = 0.05
#: Flux points on [0, 1/2], denser towards 0 and 1/2 where f01 bends most.
_GRID_FLUX = 0.25 * (1 - np.cos(np.linspace(0.0, np.pi, 31)))
#: Extra oscillator states over the automatic cutoff at the start point, since the fit may
#: wander towards heavier parameters.
_CUTOFF_MARGIN = 30
_MIN_PEAKS = 6
#: Residuals beyond this many robust standard deviations are dropped before the final fit.
_OUTLIER_SIGMAS = 5.0
#: Residual evaluations allowed to a fit with transitions other than 0→1: a right reading
#: converges in a few tens, a wrong one crawls. Each evaluation diagonalises once with
#: eigenvectors (the analytic Jacobian's), about twice the cost of the eigenvalues alone, so
#: 200 is the work the 400 finite-difference evaluations allowed before. 70 was too few:
#: sampled chip 5013's right reading then did not converge (110 did).
_MAX_JOINT_EVALUATIONS = 200


@dataclass(frozen=True)
class PeakTrace:
    """Qubit transition frequency per bias point, for the columns with a usable peak."""

    bias: np.ndarray  # (N,) V
    peak_frequency: np.ndarray  # (N,) Hz
    peak_stderr: np.ndarray  # (N,) Hz
    snr: np.ndarray  # (N,) peak height over noise


@dataclass(frozen=True)
class OtherLine:
    """A transition other than 0→1 measured at one bias: i→j, its frequency and stderr (Hz).

    A heavy fluxonium's f01(Φ) pins EL and the half-flux gap but barely separates EJ from
    EC; a plasmon transition (1→2 or 0→3 near half flux, ≈ √(8·EJ·EC)) does.
    """

    bias: float
    frequency: float
    stderr: float
    lower: int
    upper: int


@dataclass(frozen=True)
class SpectrumFit:
    """Fitted fluxonium energies (GHz) and flux mapping (V) with standard errors.

    `residuals_hz` are data minus model for the `n_points` peaks kept (`used` marks them in
    the input trace); `n_rejected` outliers were dropped before the final fit.
    """

    result: lmfit.minimizer.MinimizerResult
    EJ: float
    EJ_stderr: float
    EC: float
    EC_stderr: float
    EL: float
    EL_stderr: float
    period: float
    period_stderr: float
    sweet_spot: float
    sweet_spot_stderr: float
    redchi: float
    residual_rms_hz: float
    residuals_hz: np.ndarray
    n_points: int
    n_rejected: int
    used: np.ndarray
    cutoff: int
    other_residuals_hz: np.ndarray  # data minus model of the other transitions, in order
    #: (value, stderr) of the flux period's prior, when it was fitted under one
    period_prior: tuple[float, float] | None = None

    def f01(self, bias: np.ndarray) -> np.ndarray:
        """Fitted qubit frequency (Hz) at bias values (V)."""
        model = FluxoniumModel(self.EJ, self.EC, self.EL, cutoff=self.cutoff)
        return 1e9 * model.transition_frequency(bias_to_flux(bias, self.period, self.sweet_spot))


def bias_to_flux(bias: np.ndarray, period: float, sweet_spot: float) -> np.ndarray:
    """External flux in units of Φ0: Φ0/2 at the sweet spot, one Φ0 per `period` volts."""
    return (np.asarray(bias, dtype=float) - sweet_spot) / period + 0.5


# --------------------------------------------------------------------------- peak extraction


def extract_peaks(
    bias: np.ndarray,
    frequency: np.ndarray,
    signal: np.ndarray,
    min_snr: float = 6.0,
    edge_points: int = 3,
) -> PeakTrace:
    """Transition frequency per bias row of a (B, F) two-tone map; NaN marks unmeasured points.

    Rows whose peak is weaker than `min_snr` or lies within `edge_points` of the measured
    window are dropped: a peak at the window edge is usually a transition just outside it.
    """
    bias = np.asarray(bias, dtype=float)
    frequency = np.asarray(frequency, dtype=float)
    signal = np.asarray(signal)
    if signal.shape != (bias.size, frequency.size):
        raise ValueError(
            f"signal shape {signal.shape} is not (bias, frequency) = {(bias.size, frequency.size)}"
        )
    rows = []
    for b, row in zip(bias, signal, strict=True):
        peak = _row_peak(frequency, row, edge_points)
        if peak is not None and peak[2] >= min_snr:
            rows.append((b, *peak))
    if not rows:
        return PeakTrace(*(np.empty(0) for _ in range(4)))
    return PeakTrace(*(np.array(column) for column in zip(*rows, strict=True)))


def response_to_peak(values: np.ndarray) -> np.ndarray:
    """Real response with the transition as a positive peak on a zero background.

    Complex data is centred on its median and projected on its principal direction of
    variation (where the qubit moves the readout point); the sign is chosen so that the
    largest excursion is positive, since drive can raise or lower the signal.
    """
    return projected_on(values, *peak_projection(values))


def peak_projection(values: np.ndarray) -> tuple[complex, complex]:
    """(centre, unit direction) `response_to_peak` projects `values` with, so that other
    traces of the same sweep (its repeats) can be projected alike."""
    values = np.asarray(values)
    if np.iscomplexobj(values):
        centre = complex(np.median(values.real), np.median(values.imag))
        centred = values - centre
        axis = np.linalg.svd(np.stack([centred.real, centred.imag]), full_matrices=False)[0][:, 0]
        direction = complex(axis[0], axis[1])
    else:
        centre, direction = complex(np.median(values)), 1.0 + 0j
    projected = projected_on(values, centre, direction)
    return centre, direction if projected.max() >= -projected.min() else -direction


def projected_on(values: np.ndarray, centre: complex, direction: complex) -> np.ndarray:
    """`values` − `centre` projected on the unit `direction` in the IQ plane (real)."""
    return np.real((np.asarray(values) - centre) * np.conj(direction))


def _row_peak(
    frequency: np.ndarray, row: np.ndarray, edge_points: int
) -> tuple[float, float, float] | None:
    """(peak frequency, stderr, snr) of one bias row, or None when there is no usable peak."""
    finite = np.isfinite(row)
    if finite.sum() < 4 * edge_points + 5:
        return None
    f, y = frequency[finite], response_to_peak(row[finite])
    smooth = np.convolve(y, np.ones(3) / 3, mode="same")
    k = int(np.argmax(smooth[1:-1])) + 1
    if k < edge_points or k >= len(f) - edge_points:
        return None
    noise = difference_noise(y)
    snr = float(smooth[k] / max(noise, np.finfo(float).tiny))
    centre, stderr = refine_peak(f, y, k)
    return centre, stderr, snr


def refine_peak(frequency: np.ndarray, y: np.ndarray, k: int) -> tuple[float, float]:
    """Sub-grid peak position: Lorentzian plus constant fitted to the peak neighbourhood,
    then refitted with each point weighted by its own noise (`_weighted_by_line_noise`).

    Falls back to the grid point (stderr = half a step) when the fit does not converge or
    wanders out of the neighbourhood.
    """
    step = float(np.median(np.diff(frequency)))
    above = y > y[k] / 2
    left = k - int(np.argmin(above[k::-1])) if not above[: k + 1].all() else 0
    right = k + int(np.argmin(above[k:])) if not above[k:].all() else len(y) - 1
    half_width = max((right - left) * step / 2, step)
    reach = max(int(3 * half_width / step), 5)
    lo, hi = max(k - reach, 0), min(k + reach + 1, len(y))
    model = lmfit.Model(_peak_on_background)
    params = model.make_params(
        amplitude=y[k] * np.pi * half_width, center=frequency[k], sigma=half_width, c=0.0
    )
    params["sigma"].set(min=step / 4, max=frequency[hi - 1] - frequency[lo])
    fallback = float(frequency[k]), step / 2
    try:
        result = model.fit(y[lo:hi], params, x=frequency[lo:hi])
    except ValueError:
        return fallback
    if not _placed(result, frequency[lo], frequency[hi - 1]):
        return fallback
    weighted = _weighted_by_line_noise(result, difference_noise(y) ** 2)
    if weighted is not None and _placed(weighted, frequency[lo], frequency[hi - 1]):
        result = weighted
    centre = result.params["center"]
    return float(centre.value), float(centre.stderr)


def _placed(result: lmfit.model.ModelResult, low: float, high: float) -> bool:
    """Whether a peak fit converged with a finite centre stderr inside (low, high)."""
    centre = result.params["center"]
    inside = low < centre.value < high
    return bool(result.success and inside and centre.stderr and np.isfinite(centre.stderr))


def _weighted_by_line_noise(
    result: lmfit.model.ModelResult, floor: float, rounds: int = 2
) -> lmfit.model.ModelResult | None:
    """The peak fit again with each point weighted by its own noise: the sweep's point noise
    `floor` (variance) plus an excess that follows the fitted line (`profiled_noise`), its
    errors scaled up by any misfit. None when a refit fails.

    Why: a driven qubit is found in 0 or 1 shot by shot, so on the line an averaged point
    scatters by the projection noise p(1 − p)·(separation)²/shots on top of the readout's;
    in 30 repeats of flux-map rows at 50 shots (sampled chips 5000, 5001, 5003, 5007) the
    points at the top of a line scattered 2–11× as much as those off it. A fit with one
    noise for all points, mostly the wings', stated row centres 1.3–2.8× too precisely
    (median |error|/stderr 0.93–1.18 over the four chips against 0.67 for honest errors;
    0.69–0.74 weighted) and the energy fit leaned on the rows that claimed most. The
    excess comes from the residuals, each divided by 1 − its leverage: the few points that
    place the line are the ones whose noise the fit absorbs most.
    """
    if not floor > 0:
        return None  # noiseless off the line: no scale to weigh the line's points against
    for _ in range(rounds):
        line = result.best_fit - result.params["c"].value
        if not line.max() > 0:
            return None
        weights = np.ones_like(line) if result.weights is None else result.weights
        absorbed = leverages(model_jacobian(result) * weights[:, None])
        residual = (result.data - result.best_fit) ** 2 / np.maximum(1 - absorbed, _MIN_FREEDOM)
        noise = profiled_noise(residual, np.clip(line / line.max(), 0.0, 1.0), floor)
        try:
            result = result.model.fit(
                result.data,
                result.params,
                x=result.userkws["x"],
                weights=1 / noise,
                scale_covar=False,
            )
        except ValueError:
            return None
        if result.covar is None:
            return None
    scale_errors_by_misfit(result)
    return result


def _peak_on_background(
    x: np.ndarray, amplitude: float, center: float, sigma: float, c: float
) -> np.ndarray:
    """lmfit's LorentzianModel() + ConstantModel() as one function, the same numbers.

    Why not the composite: its derived `fwhm` and `height` parameters are re-evaluated by
    lmfit's expression interpreter at every step and propagated at the end, which made the
    fit twice as slow; the flux map fits ~100 rows a chain.
    """
    return lmfit.lineshapes.lorentzian(x, amplitude, center, sigma) + c * np.ones(np.shape(x))


# --------------------------------------------------------------------------- coarse grid


@dataclass(frozen=True)
class _Start:
    """Best coarse-grid point: energies in GHz and flux mapping."""

    EJ: float
    EC: float
    EL: float
    period: float
    sweet_spot: float
    cost: float


def f01_table(
    ej_ratios: np.ndarray, el_ratios: np.ndarray, flux: np.ndarray, cutoff: int = _GRID_CUTOFF
) -> np.ndarray:
    """f01 (GHz) at EC = 1 for every (EJ/EC, EL/EC, flux): shape (J, L, flux).

    The Hamiltonian is linear in EJ, H = H0 + EJ·V, so for each EL two models give H0 and V
    and all EJ values are diagonalised in one stacked call.
    """
    table = np.empty((ej_ratios.size, el_ratios.size, flux.size))
    with threadpool_limits(limits=1, user_api="blas"):
        for j, el in enumerate(el_ratios):
            h1 = FluxoniumModel(1.0, 1.0, el, cutoff=cutoff).hamiltonian(flux)
            v = FluxoniumModel(2.0, 1.0, el, cutoff=cutoff).hamiltonian(flux) - h1
            stacked = (h1 - v)[None] + ej_ratios[:, None, None, None] * v[None]
            values = np.linalg.eigvalsh(stacked)
            table[:, j, :] = values[..., 1] - values[..., 0]
    return table


def _converged(ej_ratios: np.ndarray, el_ratios: np.ndarray) -> np.ndarray:
    """Grid points whose coarse-basis f01 is within 1 % of its flux swing of a smaller basis.

    Heavy corners of the grid (large EJ/EC, small EL/EC) are not converged in the coarse
    basis; their wrong tables can mimic the data and would start the fit far away.
    """
    flux = np.array([0.0, 0.25, 0.5])
    coarse = f01_table(ej_ratios, el_ratios, flux)
    smaller = f01_table(ej_ratios, el_ratios, flux, cutoff=_GRID_CUTOFF - 10)
    swing = np.abs(coarse[..., 0] - coarse[..., 2])
    return np.abs(coarse - smaller).max(axis=-1) <= 0.01 * swing


def _fold(flux: np.ndarray) -> np.ndarray:
    """Map flux onto [0, 1/2] using f01's period 1 and mirror symmetry about 0 and 1/2."""
    reduced = np.mod(flux, 1.0)
    return np.minimum(reduced, 1.0 - reduced)


def symmetry_points(bias: np.ndarray, freq: np.ndarray, n_best: int = 3) -> np.ndarray:
    """Bias values about which the trace is most nearly mirror-symmetric (best first).

    For each candidate centre c the trace is compared with itself reflected about c, over
    the overlap of at least three reflected points; local minima of that mismatch are the
    candidates for integer or half-integer flux.
    """
    order = np.argsort(bias)
    b, f = bias[order], freq[order]
    centres = np.linspace(b[0], b[-1], 8 * b.size)
    cost = np.full(centres.size, np.inf)
    for i, c in enumerate(centres):
        mirrored = 2 * c - b
        overlap = (mirrored >= b[0]) & (mirrored <= b[-1]) & (np.abs(b - c) > 1e-12)
        if overlap.sum() >= 3 and np.ptp(b[overlap]) > 0:
            cost[i] = np.mean((f[overlap] - np.interp(mirrored[overlap], b, f)) ** 2)
    interior = np.isfinite(cost[1:-1]) & (cost[1:-1] <= cost[:-2]) & (cost[1:-1] <= cost[2:])
    minima = np.flatnonzero(interior) + 1
    return centres[minima[np.argsort(cost[minima])][:n_best]]


def _mapping_candidates(
    bias: np.ndarray, freq: np.ndarray, period: float | None, sweet_spot: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """(period, sweet spot) pairs to try, as two flat arrays.

    A symmetry point may be half-integer flux (a minimum of f01) or integer flux (a maximum),
    so each is tried both as the sweet spot and half a period away from it.
    """
    span = max(np.ptp(bias), np.finfo(float).tiny)
    periods = np.array([period]) if period is not None else np.geomspace(span / 3, 20 * span, 80)
    if sweet_spot is not None:
        return periods, np.full(periods.size, sweet_spot)
    centres = np.r_[symmetry_points(bias, freq), bias[np.argmin(freq)], bias[np.argmax(freq)]]
    shifts = np.array([0.0, 0.5])
    p, c, s = np.meshgrid(periods, centres, shifts, indexing="ij")
    return p.ravel(), (c + s * p).ravel()


@lru_cache(maxsize=1)
def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The coarse f01 grid and which of its points are converged: built once per process."""
    ej_ratios = np.geomspace(*EJ_OVER_EC, _GRID_SHAPE[0])
    el_ratios = np.geomspace(*EL_OVER_EC, _GRID_SHAPE[1])
    table = f01_table(ej_ratios, el_ratios, _GRID_FLUX).reshape(-1, _GRID_FLUX.size)
    trusted = _converged(ej_ratios, el_ratios).ravel()
    for array in (ej_ratios, el_ratios, table, trusted):
        array.setflags(write=False)
    return ej_ratios, el_ratios, table, trusted


def grid_start(
    bias: np.ndarray, freq_ghz: np.ndarray, period: float | None, sweet_spot: float | None
) -> _Start:
    """Best coarse-grid point over energy ratios, energy scale and flux-mapping candidates."""
    ej_ratios, el_ratios, table, trusted = _grid()
    periods, sweet_spots = _mapping_candidates(bias, freq_ghz, period, sweet_spot)
    best: _Start | None = None
    for p, v in zip(periods, sweet_spots, strict=True):
        flux = _fold(bias_to_flux(bias, p, v))
        model = _interpolate_rows(table, _GRID_FLUX, flux)  # (models, points)
        scale = np.clip((model @ freq_ghz) / np.einsum("ij,ij->i", model, model), 0, None)
        cost = np.where(trusted, np.sum((freq_ghz - scale[:, None] * model) ** 2, axis=1), np.inf)
        i = int(np.argmin(cost))
        if best is None or cost[i] < best.cost:
            j, k = np.unravel_index(i, _GRID_SHAPE)
            ec = float(scale[i])
            best = _Start(ej_ratios[j] * ec, ec, el_ratios[k] * ec, float(p), float(v), cost[i])
    if best is None or best.EC <= 0:
        raise FitError("spectrum grid search found no fluxonium matching the peaks")
    return best


def _interpolate_rows(table: np.ndarray, grid: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Linear interpolation of every row of `table` (sampled on `grid`) at points x."""
    index = np.clip(np.searchsorted(grid, x) - 1, 0, grid.size - 2)
    weight = (x - grid[index]) / (grid[index + 1] - grid[index])
    return table[:, index] * (1 - weight) + table[:, index + 1] * weight


# --------------------------------------------------------------------------- least squares


def fit_flux_spectrum(
    peaks: PeakTrace,
    period: float | None = None,
    sweet_spot: float | None = None,
    sweet_spot_guess: float | None = None,
    others: tuple[OtherLine, ...] = (),
    start: SpectrumFit | None = None,
    period_stderr: float | None = None,
) -> SpectrumFit:
    """Fit EJ, EC, EL (and the flux mapping unless given) to a peak trace, from the data alone.

    `start`, a fit of the same peaks, replaces the grid search: a refit with a slightly
    different held period must stay in the same minimum, not look for the best one anew.

    `others` (transitions other than 0→1) join the weighted fit; the grid start and the
    outlier rejection use the 0→1 peaks alone (an f01 trace of a heavy fluxonium leaves a
    valley of EJ, EC along which the other lines hold the fit).

    `period` (V per Φ0) and `sweet_spot` (V at Φ0/2), when known from a resonator-vs-flux
    experiment, are held fixed; a `period` given with a finite `period_stderr` is fitted
    under that prior instead (see the module). `sweet_spot_guess` starts the search at a
    known half-flux bias but lets the fit move it: a trace measured on one side of half flux
    has no mirror symmetry of its own to find it by. Raises FitError on too few peaks or a
    failed fit.
    """
    begin = None
    if start is not None:
        begin = _Start(start.EJ, start.EC, start.EL, start.period, start.sweet_spot, 0.0)
    return _fit(peaks, period, sweet_spot, sweet_spot_guess, others, begin, period_stderr)


@reused
def _fit(
    peaks: PeakTrace,
    period: float | None,
    sweet_spot: float | None,
    sweet_spot_guess: float | None,
    others: tuple[OtherLine, ...],
    start: _Start | None,
    period_stderr: float | None,
) -> SpectrumFit:
    """`fit_flux_spectrum` from the start fit's energies and mapping alone: nothing else of
    it changes the result, so a repeat from equal numbers is a repeat (`fitting.reuse`)."""
    prior = _prior(period, period_stderr)
    bias = np.asarray(peaks.bias, dtype=float)
    freq = np.asarray(peaks.peak_frequency, dtype=float)
    n_free = 3 + (period is None) + (sweet_spot is None)
    if bias.size < max(_MIN_PEAKS, n_free + 2):
        raise FitError(
            f"spectrum fit needs at least {max(_MIN_PEAKS, n_free + 2)} peaks, got {bias.size}"
        )
    if start is None:
        begin = grid_start(
            bias, freq / 1e9, period, sweet_spot if sweet_spot is not None else sweet_spot_guess
        )
    else:
        begin = _Start(
            start.EJ,
            start.EC,
            start.EL,
            period if period is not None and prior is None else start.period,
            sweet_spot if sweet_spot is not None else start.sweet_spot,
            0.0,
        )
    cutoff = FluxoniumModel(begin.EJ, begin.EC, begin.EL).cutoff + _CUTOFF_MARGIN
    params = _parameters(
        begin, vary_period=period is None or prior is not None, vary_sweet_spot=sweet_spot is None
    )
    sigma = _frequency_sigma(peaks)

    # soft-L1 needs its scale in residual units: far outside it, it converges very slowly.
    start_residual = (freq - _model_hz(params, bias, cutoff)) / sigma
    scale = robust_sigma(start_residual)
    robust = _minimize(params, bias, freq, sigma, cutoff, scale, others=others, prior=prior)
    scaled = robust.residual[: bias.size]
    spread = robust_sigma(scaled, about=0.0)
    used = np.abs(scaled) <= _OUTLIER_SIGMAS * max(spread, np.finfo(float).tiny)
    if used.sum() < max(_MIN_PEAKS, n_free + 2):
        raise FitError(f"only {used.sum()} of {bias.size} peaks agree with a fluxonium spectrum")
    final = _minimize(
        robust.params, bias[used], freq[used], sigma[used], cutoff, others=others, prior=prior
    )
    return _summarise(final, bias, freq, used, cutoff, others, prior)


def _prior(period: float | None, stderr: float | None) -> tuple[float, float] | None:
    """The period's prior (value, stderr), None when it is held or free."""
    if period is None or stderr is None or not np.isfinite(stderr) or stderr <= 0:
        return None
    return float(period), float(stderr)


def fit_with_EJ_held(peaks: PeakTrace, start: SpectrumFit, EJ: float) -> SpectrumFit:
    """`start` (a fit of `peaks`) refitted with EJ held at `EJ`: one point of the profile
    along the valley of EJ, EC that f01(Φ) of a heavy fluxonium leaves open (its chi-square
    says how far along the valley the data still allow). EC starts scaled with EJ; the
    peaks `start` used are fitted, the rest of its mapping held or freed as it was.
    Raises FitError."""
    params = start.result.params.copy()
    params["EJ"].set(value=EJ, vary=False)
    params["EC"].set(value=start.EC * EJ / start.EJ)
    used = np.asarray(start.used, bool)
    bias = np.asarray(peaks.bias, dtype=float)
    freq = np.asarray(peaks.peak_frequency, dtype=float)
    sigma = _frequency_sigma(peaks)
    prior = start.period_prior
    result = _minimize(params, bias[used], freq[used], sigma[used], start.cutoff, prior=prior)
    return _summarise(result, bias, freq, used, start.cutoff, prior=prior)


def _frequency_sigma(peaks: PeakTrace) -> np.ndarray:
    """Per-peak frequency uncertainty (Hz) for weighting, floored at a tenth of the median.

    The floor stops one over-confident peak fit from dominating the spectrum fit.
    """
    stderr = np.asarray(peaks.peak_stderr, dtype=float)
    finite = np.isfinite(stderr) & (stderr > 0)
    if not finite.any():
        return np.ones_like(stderr)
    floor = 0.1 * np.median(stderr[finite])
    return np.where(finite, np.maximum(stderr, floor), np.median(stderr[finite]))


#: The spectrum fit's parameters, in the order `_parameters` adds them (lmfit's order).
_NAMES = ("EJ", "EC", "EL", "period", "sweet_spot")


def _parameters(start: _Start, vary_period: bool, vary_sweet_spot: bool) -> lmfit.Parameters:
    """lmfit parameters at the grid start; the mapping is fixed when it is known."""
    params = lmfit.Parameters()
    for name in ("EJ", "EC", "EL"):
        params.add(name, value=getattr(start, name), min=1e-3)
    params.add("period", value=start.period, vary=vary_period, min=start.period / 3)
    params.add("sweet_spot", value=start.sweet_spot, vary=vary_sweet_spot)
    return params


def _model_hz(params: lmfit.Parameters, bias: np.ndarray, cutoff: int) -> np.ndarray:
    """f01 (Hz) at the bias points for the current parameter values."""
    v = params.valuesdict()
    model = FluxoniumModel(v["EJ"], v["EC"], v["EL"], cutoff=cutoff)
    return 1e9 * model.transition_frequency(bias_to_flux(bias, v["period"], v["sweet_spot"]))


def _others_hz(params: lmfit.Parameters, others: tuple[OtherLine, ...], cutoff: int) -> np.ndarray:
    """Model frequencies (Hz) of the other transitions for the current parameter values."""
    if not others:
        return np.empty(0)
    v = params.valuesdict()
    model = FluxoniumModel(v["EJ"], v["EC"], v["EL"], cutoff=cutoff)
    flux = bias_to_flux(np.array([o.bias for o in others]), v["period"], v["sweet_spot"])
    levels = model.energies(flux, n_levels=max(o.upper for o in others) + 1)
    rows = np.arange(len(others))
    upper = np.array([o.upper for o in others])
    lower = np.array([o.lower for o in others])
    return 1e9 * (levels[rows, upper] - levels[rows, lower])


def _transitions(
    params: lmfit.Parameters, bias: np.ndarray, lower: np.ndarray, upper: np.ndarray, cutoff: int
) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (Hz) of the transitions lower → upper at the bias points, and their
    derivatives in EJ, EC, EL, period and sweet_spot, shape (points, 5): one diagonalisation
    gives both (Hellmann–Feynman, `FluxoniumModel.energy_gradients`), the flux mapping's
    chain rule the last two columns."""
    v = params.valuesdict()
    model = FluxoniumModel(v["EJ"], v["EC"], v["EL"], cutoff=cutoff)
    flux = bias_to_flux(bias, v["period"], v["sweet_spot"])
    energies, gradients = model.energy_gradients(flux, n_levels=int(upper.max()) + 1)
    rows = np.arange(bias.size)
    frequency = energies[rows, upper] - energies[rows, lower]
    transition = gradients[rows, upper] - gradients[rows, lower]  # (points, EJ EC EL Φ)
    per_flux = transition[:, 3]
    by_period = -per_flux * (bias - v["sweet_spot"]) / v["period"] ** 2
    by_sweet_spot = -per_flux / v["period"]
    return 1e9 * frequency, 1e9 * np.column_stack([transition[:, :3], by_period, by_sweet_spot])


def _minimize(
    params: lmfit.Parameters,
    bias: np.ndarray,
    freq: np.ndarray,
    sigma: np.ndarray,
    cutoff: int,
    robust_scale: float | None = None,
    others: tuple[OtherLine, ...] = (),
    prior: tuple[float, float] | None = None,
) -> lmfit.minimizer.MinimizerResult:
    """Weighted least squares of f01 (and any other transitions, and the period's prior)
    with scipy's least_squares and an analytic Jacobian; with a `robust_scale`, the f01
    residuals under a soft-L1 loss of that scale (`_soft_l1_on_first`).

    Why analytic: a finite-difference Jacobian diagonalises once more per parameter, and was
    ~80 % of a joint fit's time (sampled chip 3000: 4 s a fit, ~100 fits in its plasmon
    search). The residual's diagonalisation gives the Jacobian at the same point too, so
    the last one is kept for it.
    """
    all_bias = np.r_[bias, [o.bias for o in others]]
    lower = np.r_[np.zeros(bias.size), [o.lower for o in others]].astype(int)
    upper = np.r_[np.ones(bias.size), [o.upper for o in others]].astype(int)
    measured = np.r_[freq, [o.frequency for o in others]]
    all_sigma = np.r_[sigma, [o.stderr for o in others]]
    last: dict[tuple[float, ...], tuple[np.ndarray, np.ndarray]] = {}

    def evaluate(p: lmfit.Parameters) -> tuple[np.ndarray, np.ndarray]:
        key = tuple(p.valuesdict().values())
        if key not in last:
            last.clear()
            last[key] = _transitions(p, all_bias, lower, upper, cutoff)
        return last[key]

    def residual(p: lmfit.Parameters) -> np.ndarray:
        scaled = (measured - evaluate(p)[0]) / all_sigma
        if prior is None:
            return scaled
        return np.r_[scaled, (p["period"].value - prior[0]) / prior[1]]

    def jacobian(p: lmfit.Parameters) -> np.ndarray:
        """The residual's derivatives, in the varying parameters' order (lmfit's)."""
        varying = [k for k, name in enumerate(_NAMES) if p[name].vary]
        rows = -evaluate(p)[1][:, varying] / all_sigma[:, None]
        if prior is None:
            return rows
        period = np.array([[1.0 / prior[1] if _NAMES[k] == "period" else 0.0 for k in varying]])
        return np.r_[rows, period]

    # Relative tolerances of 1e-7 are far below the parameters' standard errors; the default
    # 1e-8 costs many more (~15 ms) model evaluations for no change in the answer.
    result = lmfit.minimize(
        residual,
        params,
        method="least_squares",
        jac=jacobian,
        loss="linear" if robust_scale is None else _soft_l1_on_first(bias.size),
        f_scale=1.0 if robust_scale is None else max(robust_scale, 1e-3),
        x_scale="jac",
        ftol=1e-7,
        xtol=1e-7,
        gtol=1e-7,
        # A joint fit whose reading of the other lines is wrong does not converge, it crawls:
        # cap it (`_MAX_JOINT_EVALUATIONS`).
        max_nfev=_MAX_JOINT_EVALUATIONS if others else None,
        scale_covar=False,
    )
    if not result.success:
        raise FitError(f"spectrum least squares did not converge: {result.message}")
    scale_errors_by_misfit(result)
    return result


def _soft_l1_on_first(count: int) -> Callable[[np.ndarray], np.ndarray]:
    """scipy's soft-L1 loss on the first `count` residuals (the f01 peaks, where a peak
    tracked off its line is an outlier) and the plain squares on the rest (other lines, the
    period's prior).

    Why not soft-L1 on all: a line other than 0→1 holds a heavy chip's fit at its place
    along the valley of EJ, EC, and the prior holds the period; under a robust loss, far
    from the start's f01 residuals, both count as outliers and stop holding. On sampled
    chip 5000 the joint fit of a right 0→3 reading, started where it fits, then walked the
    period 10 σ from its prior and crawled along the valley for 200 evaluations.
    """

    def loss(z: np.ndarray) -> np.ndarray:
        root = np.sqrt(1.0 + z[:count])
        rest = z[count:]
        return np.array(
            [
                np.r_[2.0 * (root - 1.0), rest],
                np.r_[1.0 / root, np.ones_like(rest)],
                np.r_[-0.5 / root**3, np.zeros_like(rest)],
            ]
        )

    return loss


def _summarise(
    result: lmfit.minimizer.MinimizerResult,
    bias: np.ndarray,
    freq: np.ndarray,
    used: np.ndarray,
    cutoff: int,
    others: tuple[OtherLine, ...] = (),
    prior: tuple[float, float] | None = None,
) -> SpectrumFit:
    """Values, standard errors and residuals (Hz) of the final fit."""
    values = {}
    for name, p in result.params.items():
        values[name] = float(p.value)
        values[f"{name}_stderr"] = float(p.stderr) if p.stderr is not None else np.nan
    residuals = freq[used] - _model_hz(result.params, bias[used], cutoff)
    return SpectrumFit(
        result=result,
        redchi=float(result.redchi),
        residual_rms_hz=float(np.sqrt(np.mean(residuals**2))),
        residuals_hz=residuals,
        n_points=int(used.sum()),
        n_rejected=int((~used).sum()),
        used=used,
        cutoff=cutoff,
        other_residuals_hz=np.array([o.frequency for o in others])
        - _others_hz(result.params, others, cutoff),
        period_prior=prior,
        **values,
    )
