"""Resonator versus flux bias: the flux period and the half-flux sweet spot, from the resonator.

Second node of the graph. Nothing is known about the qubit yet, only where the readout
resonator sits (`readout_frequency`) and how wide it is (`resonator_kappa`). The dressed
resonator frequency fr(V) follows the fluxonium spectrum, so it is periodic in the bias with
one flux quantum per period and mirror-symmetric about every integer and every half-integer
flux point (the Hamiltonian is even in Φext about both). In the simulator and on real chips
fr moves by only a fraction of κ over most of a period, with sharp avoided-crossing-sized
pulls where a fluxonium transition crosses the resonator; those sharp features fix the
symmetry to a small fraction of the bias step.

Steps:
1. A 2-D scan: a readout-frequency sweep of a few κ around `readout_frequency` (the hardware
   sweep) at each bias of a wide symmetric range (default ±1.6 V, ≥ 2 periods of any device
   with 0.4–1.6 V/Φ0).
2. The line environment (gain, phase, cable delay) from a notch fit to the median over bias,
   then per bias the resonance centre from a weighted linear fit of 1/(1 − S21/env), which is
   linear in frequency for a Lorentzian (vectorised over all biases, with standard errors).
3. The period from the lag that best superposes fr(V) on itself (a robust structure
   function), then the mirror axis and the period together from a least-mismatch fit of
   fr(V) against its reflected images (S + m·P − V for all m, linear interpolation, robust
   loss). This finds all symmetry points, S/2 + m·P/2, without telling half from integer flux.
4. Half flux versus integer flux, decided physically: at half flux the fluxonium is at its
   lowest frequency (a few hundred MHz), so it is tens of percent thermally excited and its
   states pull the resonator differently, which makes single-shot IQ at the resonator
   bimodal: the shot-to-shot variance exceeds the amplifier noise by p(1 − p)·|ΔIQ|². At
   integer flux f01 is several GHz, the qubit is in its ground state and the variance is
   amplifier noise only. The node records single shots at one point of each symmetry class
   and calls the class with the larger variance half flux (gated on the significance).

`flux_sweet_spot` is the half-flux point nearest 0 V; `flux_symmetry_alternate` is the
nearest point of the other class, handed on for a downstream node that finds no qubit at the
sweet spot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import xarray as xr
from scipy.optimize import minimize

from calibrations.fitting import FitError, ResonatorFit, fit_notch
from calibrations.fitting.noise import robust_sigma
from calibrations.gate import at_least, at_most, relative_error, within
from calibrations.node import Analysis, Node
from calibrations.session import DEFAULT_READOUT, QubitSession

BIAS = "flux_voltage"
FREQUENCY = "readout_frequency"
#: Dimensions of the single-shot discrimination data.
CANDIDATE, SHOT_POINT, SHOT = "candidate", "shot_point", "shot"
#: A bias column counts as a resolved resonance when its linewidth lies within this factor of
#: the known κ and its centre inside the window: thermal mixtures broaden a little, a glitch,
#: an empty window or a crossing pull outside the window do not look like that.
_KAPPA_FACTOR = 3.0
#: Residual of a column fit, in units of the point noise, above which the column is glitched.
_MAX_COLUMN_RESIDUAL = 3.0
#: Median absolute deviation of a unit Gaussian.
#: Mirror images S + m·P − V are taken for |m| up to this (enough for P ≥ span/8).
_MAX_MIRROR_ORDER = 8
#: A recorded shot point belongs to a symmetry class when it lies this close (in periods).
_CLASS_TOLERANCE = 0.05


# --------------------------------------------------------------------------- per-bias centres


@dataclass(frozen=True)
class ResonatorTrace:
    """Resonance centre versus bias (Hz), with standard errors and a validity mask."""

    bias: np.ndarray
    centre: np.ndarray
    stderr: np.ndarray
    kappa: np.ndarray
    residual: np.ndarray  # column fit residual in units of the point noise
    valid: np.ndarray


def line_environment(frequency: np.ndarray, iq: np.ndarray) -> tuple[np.ndarray, ResonatorFit]:
    """Gain·e^{i(phase − 2πfτ)} of the line, from a notch fit to the median over bias.

    The resonance moves by less than κ over most of a period, so the median column is a
    clean, slightly broadened dip whose off-resonant circle gives the environment; columns
    pulled far by crossings are outvoted. Raises FitError when there is no resonance.
    """
    median = np.nanmedian(iq.real, axis=0) + 1j * np.nanmedian(iq.imag, axis=0)
    fit = fit_notch(frequency, median)
    return fit.a * np.exp(1j * (fit.alpha - 2 * np.pi * frequency * fit.delay)), fit


def resonator_trace(
    bias: np.ndarray, frequency: np.ndarray, iq: np.ndarray, env: np.ndarray, kappa: float
) -> ResonatorTrace:
    """Centre of the dip at every bias: Sanathanan–Koerner fit of 1/(1 − S21/env) = A + B·x.

    For a notch, u = 1 − S21/env = q/(1 + 2i(f − fr)/κ), so 1/u is linear in f; minimising
    Σ w·|u·(A + B·x) − 1|² is linear in (A, B) and, re-weighted with w = 1/|A + B·x|², becomes
    the least-squares fit of u itself. fr and κ follow from A/B; standard errors from the
    Jacobian of u at the solution. Non-finite points get zero weight.
    """
    f0 = float(frequency.mean())
    half = float(frequency[-1] - frequency[0]) / 2
    x = (frequency - f0) / half
    finite = np.isfinite(iq)
    u = np.where(finite, 1.0 - np.where(finite, iq, 0) / env, 0.0)
    weight = finite.astype(float)
    with np.errstate(all="ignore"):  # an empty column gives NaN, and is then invalid
        for _ in range(3):
            wu2 = weight * np.abs(u) ** 2
            g00, g01, g11 = wu2.sum(1), (wu2 * x).sum(1), (wu2 * x * x).sum(1)
            r0, r1 = (weight * np.conj(u)).sum(1), (weight * np.conj(u) * x).sum(1)
            det = g00 * g11 - g01**2
            a = (g11 * r0 - g01 * r1) / det
            b = (g00 * r1 - g01 * r0) / det
            weight = finite / np.maximum(np.abs(a[:, None] + b[:, None] * x) ** 2, 1e-300)
        ratio = a / b
        centre = f0 - half * ratio.real
        width = -2 * half * ratio.imag
        depth = 1 / (a - b * ratio.real)  # q: u at the centre
        stderr, residual = _column_errors(frequency, u, finite, centre, width, depth)
    window = (centre > frequency[0]) & (centre < frequency[-1])
    resolved = (width > kappa / _KAPPA_FACTOR) & (width < kappa * _KAPPA_FACTOR)
    valid = window & resolved & np.isfinite(stderr) & (residual < _MAX_COLUMN_RESIDUAL)
    return ResonatorTrace(bias, centre, stderr, width, residual, valid)


def _column_errors(frequency, u, finite, centre, width, q) -> tuple[np.ndarray, np.ndarray]:
    """Standard error of each centre and its fit residual relative to the noise.

    The noise comes from successive differences of the fit residuals along frequency (white
    noise survives, any slow misfit cancels), pooled over all columns with a median, so a
    glitched column cannot hide its spikes by inflating its own noise estimate: a clean
    column scores ≈ 1, a column with spikes or a line shape the model cannot follow more.
    """
    detuning = frequency[None] - centre[:, None]
    denominator = 1 + 2j * detuning / width[:, None]
    resid = np.where(finite, u - q[:, None] / denominator, np.nan)
    dof = np.maximum(2 * finite.sum(1) - 4, 1)  # real residuals minus (fr, κ, q)
    sigma2 = np.nansum(np.abs(resid) ** 2, axis=1) / dof  # per quadrature
    # |Δn|² of complex white noise with variance σ² per quadrature has median 4·ln2·σ².
    noise2 = np.nanmedian(np.abs(np.diff(resid, axis=1)) ** 2) / (4 * np.log(2))
    common = q[:, None] * 2j / denominator**2
    jac = np.stack(
        [
            common / width[:, None],
            common * detuning / width[:, None] ** 2,
            1 / denominator,
            1j / denominator,
        ],
        axis=-1,
    )
    jac = np.where(finite[..., None], jac, 0.0)
    real = np.concatenate([jac.real, jac.imag], axis=1)
    cov = np.linalg.pinv(np.einsum("nfa,nfb->nab", real, real))
    stderr = np.sqrt(np.abs(cov[:, 0, 0]) * sigma2)
    return stderr, np.sqrt(sigma2 / max(noise2, np.finfo(float).tiny))


# --------------------------------------------------------------------------- symmetry


@dataclass(frozen=True)
class Symmetry:
    """Period P (V/Φ0) and mirror axis S (V): fr(V) = fr(S + m·P − V) for every integer m.

    The symmetry points are S/2 + m·P/2, alternating between the two classes (half-integer
    and integer flux). `contrast` is how much better the best axis superposes the trace than
    a typical one (0: no structure, 1: perfect); `mismatch` the robust spread of the mirror
    residuals at the best axis in units of their error bars (≈ 1 when the trace agrees with
    its images to within its noise, as it must if fr depends on flux alone).
    """

    period: float
    period_stderr: float
    axis: float
    axis_stderr: float
    contrast: float
    mismatch: float
    pairs: int


def _robust(r: np.ndarray) -> np.ndarray:
    return np.log1p(r * r)


def mirror_pairs(bias: np.ndarray, period: float, axis: float) -> tuple[np.ndarray, np.ndarray]:
    """(point index, mirror order m) of every image S + m·P − V that falls inside the scan."""
    orders = np.arange(-_MAX_MIRROR_ORDER, _MAX_MIRROR_ORDER + 1)[:, None]
    image = axis + orders * period - bias[None, :]
    inside = (image >= bias[0]) & (image <= bias[-1]) & (np.abs(image - bias[None, :]) > 1e-12)
    order, index = np.nonzero(inside)
    return index, orders[order, 0]


def mirror_residuals(
    bias: np.ndarray,
    y: np.ndarray,
    sigma: np.ndarray,
    period: float,
    axis: float,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """(y(V) − y(S + m·P − V)) / combined error, for `pairs` (default: all inside the scan)."""
    index, order = mirror_pairs(bias, period, axis) if pairs is None else pairs
    image = axis + order * period - bias[index]
    mirrored = np.interp(image, bias, y)
    return (y[index] - mirrored) / np.hypot(sigma[index], np.interp(image, bias, sigma))


def _mismatch(bias, y, sigma, period, axis) -> float:
    r = mirror_residuals(bias, y, sigma, period, axis)
    return float(_robust(r).mean()) if r.size else np.inf


def period_guess(
    bias: np.ndarray, y: np.ndarray, sigma: np.ndarray, bounds: tuple[float, float]
) -> float:
    """The lag (within `bounds`) at which the trace best matches itself shifted by one lag.

    A robust structure function D(L) = mean log(1 + r²) of normalised differences. A lag that
    is a multiple of the period matches too, so the shortest lag whose D is much nearer the
    best than the typical value wins.
    """
    step = bias[1] - bias[0]
    lags = np.arange(max(int(np.ceil(bounds[0] / step)), 1), int(bounds[1] / step) + 1)
    lags = lags[lags < bias.size - 2]
    if lags.size == 0:
        raise FitError("the bias scan is shorter than the smallest period searched")
    structure = np.array(
        [_robust((y[n:] - y[:-n]) / np.hypot(sigma[n:], sigma[:-n])).mean() for n in lags]
    )
    best = int(np.argmin(structure))
    typical = float(np.median(structure))
    threshold = structure[best] + 0.25 * (typical - structure[best])
    for divisor in (3, 2):
        lag = int(np.rint(lags[best] / divisor))
        index = np.searchsorted(lags, lag)
        if index < lags.size and lags[index] == lag and structure[index] <= threshold:
            best = int(index)
            break
    return float(lags[best] * step)


def find_symmetry(trace: ResonatorTrace, bounds: tuple[float, float]) -> Symmetry:
    """Period and mirror axis of fr(V): coarse lag search, axis scan, joint refinement.

    The standard errors combine the statistical error (Jacobian of the mirror residuals) with
    the grid dependence of linear interpolation across sharp crossing features: half the
    difference between refinements on the even and on the odd bias points (a twice coarser
    grid, so a conservative estimate).
    """
    keep = trace.valid
    if keep.sum() < 0.5 * keep.size:
        raise FitError(f"only {keep.sum()} of {keep.size} bias points show a resolved resonance")
    bias = trace.bias
    # Invalid columns take the median centre with a huge error: they neither match nor clash.
    # Error bars are floored at a tenth of the median so no over-confident centre dominates.
    y = np.where(keep, trace.centre, np.median(trace.centre[keep]))
    scale = float(np.median(trace.stderr[keep]))
    sigma = np.where(keep, np.maximum(trace.stderr, 0.1 * scale), 1e3 * scale + np.ptp(y))
    period = period_guess(bias, y, sigma, bounds)
    step = float(bias[1] - bias[0])
    axes = np.arange(0.0, period, step / 4)
    costs = np.array([_mismatch(bias, y, sigma, period, s) for s in axes])
    start = np.array([period, axes[int(np.argmin(costs))]])
    best, cost = _refine(bias, y, sigma, start, step)
    halves = [_refine(bias[k::2], y[k::2], sigma[k::2], best, 2 * step)[0] for k in (0, 1)]
    grid = np.abs(halves[0] - halves[1]) / 2
    statistical = _symmetry_stderr(bias, y, sigma, best[0], best[1], step)
    residuals = mirror_residuals(bias, y, sigma, best[0], best[1])
    typical = float(np.median(costs))
    return Symmetry(
        period=float(best[0]),
        period_stderr=float(np.hypot(statistical[0], grid[0])),
        axis=float(best[1]),
        axis_stderr=float(np.hypot(statistical[1], grid[1])),
        contrast=float(1 - cost / typical) if typical > 0 else 0.0,
        mismatch=robust_sigma(residuals, about=0.0),
        pairs=int(residuals.size),
    )


def _refine(bias, y, sigma, start: np.ndarray, step: float) -> tuple[np.ndarray, float]:
    """Nelder–Mead on (P, S) from `start`: the mismatch is piecewise smooth (interpolation)."""
    result = minimize(
        lambda p: _mismatch(bias, y, sigma, p[0], p[1]),
        start,
        method="Nelder-Mead",
        options={
            "xatol": 1e-4 * step,
            "fatol": 1e-9,
            "initial_simplex": start + np.array([[0, 0], [step / 2, 0], [0, step / 2]]),
        },
    )
    return np.asarray(result.x, float), float(result.fun)


def _symmetry_stderr(bias, y, sigma, period, axis, step) -> tuple[float, float]:
    """Standard errors of (P, S) from the Jacobian of the inlier mirror residuals.

    Each pair of points enters twice (each is the other's image), so the covariance is
    doubled; it is scaled by the reduced χ² of the inliers, so a trace that agrees with its
    mirror images worse than its error bars say gets proportionally larger errors.
    """
    pairs = mirror_pairs(bias, period, axis)
    base = mirror_residuals(bias, y, sigma, period, axis, pairs)
    inlier = np.abs(base) < 3.0
    h = 0.05 * step
    columns = []
    for dp, ds in ((h, 0.0), (0.0, h)):
        upper = mirror_residuals(bias, y, sigma, period + dp, axis + ds, pairs)
        lower = mirror_residuals(bias, y, sigma, period - dp, axis - ds, pairs)
        columns.append(((upper - lower) / (2 * h))[inlier])
    jac = np.stack(columns, axis=1)
    dof = max(int(inlier.sum()) - 2, 1)
    redchi = float((base[inlier] ** 2).sum() / dof)
    try:
        cov = 2 * redchi * np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        return np.inf, np.inf
    return float(np.sqrt(abs(cov[0, 0]))), float(np.sqrt(abs(cov[1, 1])))


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


# --------------------------------------------------------------------------- half vs integer


def thermal_excess(shots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean single-shot IQ variance per candidate and its standard error.

    `shots` has dims (candidate, frequency point, shot). The variance of each frequency point
    is the mean of |z − mean|², its error the spread of those squares over √shots.
    """
    deviation = np.abs(shots - np.nanmean(shots, axis=-1, keepdims=True)) ** 2
    count = np.isfinite(deviation).sum(axis=-1)
    variance = np.nanmean(deviation, axis=-1)
    error = np.nanstd(deviation, axis=-1) / np.sqrt(np.maximum(count, 1))
    points = variance.shape[-1]
    return variance.mean(axis=-1), np.sqrt((error**2).sum(axis=-1)) / points


# --------------------------------------------------------------------------- the node


@dataclass
class ResonatorFlux(Node):
    """Resonator frequency versus flux bias → flux period and half-flux sweet spot."""

    name: ClassVar[str] = "resonator_flux"
    requires: ClassVar[tuple[str, ...]] = ("readout_frequency", "resonator_kappa")
    #: The alternate (integer-flux) point is handed on too, so qubit spectroscopy can look
    #: there should the thermal evidence have misled this node.
    produces: ClassVar[tuple[str, ...]] = (
        "flux_period",
        "flux_sweet_spot",
        "flux_symmetry_alternate",
    )

    bias_range: tuple[float, float] = (-1.6, 1.6)  # V, symmetric about 0 V
    bias_points: int = 301
    period_bounds: tuple[float, float] = (0.4, 1.6)  # V/Φ0 searched
    window_linewidths: float = 4.0  # frequency window half-width in κ
    frequency_points: int = 41
    readout_amplitude: float = DEFAULT_READOUT["amplitude"]
    readout_duration: float = DEFAULT_READOUT["integration_time"]
    shots: int = DEFAULT_READOUT["shots"]
    shot_points: int = 5  # readout frequencies per candidate, across ±κ/2
    # Gate thresholds.
    min_valid_fraction: float = 0.8
    min_contrast: float = 0.3
    max_mismatch: float = 2.0
    max_period_rel_stderr: float = 0.005
    max_sweet_spot_stderr: float = 0.002  # in periods
    min_thermal_sigma: float = 4.0

    def acquire(self, session: QubitSession) -> xr.Dataset:
        kappa = session.value("resonator_kappa")
        centre = session.value("readout_frequency")
        session.configure(
            drive={"sequence": "none", "herald": False},
            readout={
                "amplitude": self.readout_amplitude,
                "integration_time": self.readout_duration,
                "shots": self.shots,
            },
        )
        half = self.window_linewidths * kappa
        frequency = np.linspace(centre - half, centre + half, self.frequency_points)
        bias = np.linspace(*self.bias_range, self.bias_points)
        attrs = {
            "kappa": kappa,
            "readout_frequency_reference": centre,
            "period_min": self.period_bounds[0],
            "period_max": self.period_bounds[1],
            "readout_amplitude": self.readout_amplitude,
            "readout_duration": self.readout_duration,
            "shots": self.shots,
        }
        data = session.measure(
            self.name, FREQUENCY, frequency, outer=("flux.voltage", bias), attrs=attrs
        )
        try:
            trace = _trace(data)
            candidates = symmetry_candidates(find_symmetry(trace, self.period_bounds))
        except FitError:
            return data  # nothing to discriminate; the analysis rejects with the reason
        return self._record_shots(session, data, trace, candidates, kappa)

    def _record_shots(self, session, data, trace, candidates, kappa) -> xr.Dataset:
        """Single shots across the dip at one point of each symmetry class."""
        valid = trace.valid
        offsets = np.linspace(-kappa / 2, kappa / 2, self.shot_points)
        shots, frequencies, run_ids = [], [], []
        for voltage in candidates:
            centre = float(np.interp(voltage, trace.bias[valid], trace.centre[valid]))
            session.configure(flux={"voltage": voltage})
            measured = session.measure(
                f"{self.name}_shots", FREQUENCY, centre + offsets, single_shot=True
            )
            shots.append(measured["iq"].transpose(FREQUENCY, SHOT).values)
            frequencies.append(centre + offsets)
            run_ids.append(measured.attrs.get("run_id"))
        data = data.assign(shot_iq=((CANDIDATE, SHOT_POINT, SHOT), np.stack(shots)))
        data = data.assign_coords(
            candidate_voltage=(CANDIDATE, np.asarray(candidates)),
            shot_frequency=((CANDIDATE, SHOT_POINT), np.stack(frequencies)),
        )
        data.attrs["shot_run_ids"] = ",".join(str(r) for r in run_ids)
        return data

    def analyse(self, data: xr.Dataset) -> Analysis:
        bounds = (float(data.attrs["period_min"]), float(data.attrs["period_max"]))
        try:
            trace = _trace(data)
            symmetry = find_symmetry(trace, bounds)
        except FitError as error:
            return Analysis({}, [at_least(f"resonator trace ({error})", 0, 1)], str(error))
        valid_fraction = float(trace.valid.mean())
        span = float(trace.bias[-1] - trace.bias[0])
        period = symmetry.period
        candidates = symmetry_candidates(symmetry)
        criteria = [
            at_least(
                "bias points with a resolved resonance (fraction)",
                valid_fraction,
                self.min_valid_fraction,
            ),
            at_least("symmetry contrast", symmetry.contrast, self.min_contrast),
            at_most("mirror mismatch (σ)", symmetry.mismatch, self.max_mismatch),
            at_least("periods covered by the scan", span / period, 2.0),
            *within("flux period (V)", period, *bounds),
            at_most(
                "flux period relative stderr",
                relative_error(period, symmetry.period_stderr),
                self.max_period_rel_stderr,
            ),
            at_most(
                "symmetry point stderr (periods)",
                max(point_stderr(symmetry, v) for v in candidates) / period,
                self.max_sweet_spot_stderr,
            ),
        ]
        values = {"flux_period": (period, symmetry.period_stderr)}
        report = [
            f"period {period:.5f} ± {symmetry.period_stderr:.1e} V/Φ0 from {symmetry.pairs} "
            f"mirror pairs; contrast {symmetry.contrast:.2f}, mismatch {symmetry.mismatch:.2f}; "
            f"{valid_fraction:.0%} of biases resolved",
            f"symmetry points nearest 0 V: {candidates[0]:+.5f} V and {candidates[1]:+.5f} V",
        ]
        if "shot_iq" not in data:
            criteria.append(at_least("half-flux evidence recorded", 0, 1))
        else:
            sweet, alternate, sigma, variance = _half_flux(data, symmetry)
            criteria.append(
                at_least("thermal IQ variance contrast (σ)", sigma, self.min_thermal_sigma)
            )
            values["flux_sweet_spot"] = (sweet, point_stderr(symmetry, sweet))
            values["flux_symmetry_alternate"] = (alternate, point_stderr(symmetry, alternate))
            report.append(
                f"single-shot variances {' vs '.join(f'{v:.3g}' for v in variance)} V² "
                f"({sigma:.1f} σ): half flux at {sweet:+.5f} V, integer flux at {alternate:+.5f} V"
            )
        return Analysis(values, criteria, "\n".join(report), symmetry, _curves(data, trace))


def _trace(data: xr.Dataset) -> ResonatorTrace:
    """Per-bias resonance centres of the 2-D scan (the analysis' first step)."""
    iq = data["iq"].transpose(BIAS, FREQUENCY).values.astype(complex)
    frequency = data[FREQUENCY].values.astype(float)
    env, _ = line_environment(frequency, iq)
    return resonator_trace(
        data[BIAS].values.astype(float), frequency, iq, env, float(data.attrs["kappa"])
    )


def _half_flux(data: xr.Dataset, symmetry: Symmetry) -> tuple[float, float, float, np.ndarray]:
    """(sweet spot, alternate, significance σ, variance per class) from the single shots.

    Each recorded point is assigned to its symmetry class; evidence that does not cover both
    classes (shots taken elsewhere) has significance 0.
    """
    shots = data["shot_iq"].transpose(CANDIDATE, SHOT_POINT, SHOT).values
    variance, error = thermal_excess(shots)
    phase = (data["candidate_voltage"].values - symmetry.axis / 2) / (symmetry.period / 2)
    order = np.rint(phase)
    classes = order.astype(int) % 2
    on_point = np.abs(phase - order) < 2 * _CLASS_TOLERANCE
    candidates = symmetry_candidates(symmetry)
    if variance.size != 2 or not on_point.all() or classes[0] == classes[1]:
        return candidates[0], candidates[1], 0.0, variance
    sigma = abs(variance[0] - variance[1]) / max(float(np.hypot(*error)), np.finfo(float).tiny)
    half_class = int(classes[int(np.argmax(variance))])
    return candidates[half_class], candidates[1 - half_class], float(sigma), variance


def _curves(data: xr.Dataset, trace: ResonatorTrace) -> dict:
    magnitude = np.abs(data["iq"].transpose(BIAS, FREQUENCY).values)
    return {
        "image": magnitude.T,
        "image_x": trace.bias,
        "image_y": data[FREQUENCY].values,
        "trace_x": trace.bias[trace.valid],
        "trace_y": trace.centre[trace.valid],
        "xlabel": "flux bias (V)",
        "ylabel": "readout frequency (Hz)",
    }
