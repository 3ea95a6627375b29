"""Fits shared by the time-domain nodes (Rabi, Ramsey, echo, T1): projection, noise, models.

The averaged IQ of a two-level population moves along one line in the IQ plane, so a trace is
projected on its principal axis to a real signal (V). Every trace the fits judge is acquired as
two repeats: their difference measures the noise of the mean per point, projection noise
included, without any model. That noise is largest where the population is half-way between
the states, so each point's noise is a floor plus an excess that follows the fitted curve's
population (`repeat_noise`). The reduced chi-square against that noise is then a real test of
the fit (a glitch or a wrong model gives χ² ≫ 1) and the signal-to-noise ratio is the fitted
amplitude over its standard error with that noise (pure noise gives ~1–3). Pure functions of
numpy arrays.

Other stacks' recorded traces are measured once (`project_trace` takes them too). Their noise
can only come from the trace itself: the point-to-point spread of the fit residuals, which a
smooth misfit does not enter, and the stderrs are scaled by the residuals (lmfit's
`scale_covar`). Their χ² is then a check of misfit against white noise, not a test against an
independent noise measurement, and the criterion and report say so. With |0⟩/|1⟩ calibration
points the trace is the excited population, and a fitted swing beyond what the references
allow is held at that contrast.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import lmfit
import numpy as np

from fluxcal.calibrations.experiments.calibration_points import population
from fluxcal.calibrations.fitting import FitError
from fluxcal.calibrations.fitting.noise import (
    difference_noise,
    projection_shape,
    repeat_noise,
    robust_sigma,
)
from fluxcal.calibrations.gate import Criterion, at_least, at_most, chi2_limit, relative_error

#: Scale of the median absolute deviation to a Gaussian standard deviation.
#: Repeat differences further than this many robust deviations are glitches, not noise.
_OUTLIER_SIGMAS = 5.0
#: Fewest points for which a four- or five-parameter curve fit means anything.
_MIN_POINTS = 12


@dataclass(frozen=True)
class Trace:
    """A projected trace: sweep values, mean signal (V) and the noise of each mean point (V).

    `single`: measured once, so `sigma` is estimated from the trace itself (refined from the
    fit residuals by the fit). `population`: scaled by |0⟩/|1⟩ calibration points, so `y` and
    `sigma` are excited population, not volts. `half_difference`: of two repeats, per point;
    `sigma` is then first one noise for all points, and per point once a fit gives the
    population along the trace (`_fit`).
    """

    x: np.ndarray
    y: np.ndarray
    sigma: float | np.ndarray
    single: bool = False
    population: bool = False
    half_difference: np.ndarray | None = None

    @property
    def noise(self) -> float:
        """One point's noise: the rms of the points' (V, or population)."""
        return float(np.sqrt(np.mean(np.square(self.sigma))))

    @property
    def ylabel(self) -> str:
        return "excited population" if self.population else "projected IQ (V)"

    def notes(self) -> list[str]:
        """How the noise and the scale of this trace were obtained, when not from repeats."""
        notes = []
        if self.single:
            notes.append(
                "single trace (no repeats): noise from the point-to-point spread of the fit "
                "residuals, stderrs scaled by the residuals; the χ² criterion is a misfit "
                "check against that white-noise estimate, not a test"
            )
        if self.population:
            notes.append("signal scaled to excited population by the |0⟩/|1⟩ calibration points")
        return notes


def principal_axis(iq: np.ndarray) -> complex:
    """Unit vector (as a complex number) along which the IQ points spread the most."""
    centred = iq - iq.mean()
    covariance = np.cov(np.stack([centred.real, centred.imag]))
    _, vectors = np.linalg.eigh(covariance)
    return complex(vectors[0, -1], vectors[1, -1])


def project(x: np.ndarray, iq: np.ndarray) -> Trace:
    """Project two repeats of a complex trace, shape (2, n), on their principal axis.

    The noise of the mean is the spread of half the repeat difference with outliers clipped,
    so a burst of glitches in one repeat inflates the residuals, not the noise; the fit makes
    it per point (`repeat_noise`).
    """
    x = np.asarray(x, float)
    iq = np.asarray(iq, complex)
    if iq.ndim != 2 or iq.shape[0] != 2 or iq.shape[1] != x.size:
        raise FitError(f"expected two repeats of {x.size} points, got shape {iq.shape}")
    if not (np.all(np.isfinite(iq)) and np.all(np.isfinite(x))):
        raise FitError("trace has non-finite points (NaN or inf)")
    if x.size < _MIN_POINTS:
        raise FitError(f"only {x.size} points; need at least {_MIN_POINTS}")
    mean = iq.mean(axis=0)
    axis = principal_axis(mean).conjugate()
    y = ((mean - mean.mean()) * axis).real
    half_difference = ((iq[0] - iq[1]) * axis).real / 2
    return Trace(x, y, _clipped_rms(half_difference), half_difference=half_difference)


def project_trace(
    x: np.ndarray, iq: np.ndarray, calibration: tuple[complex, complex] | None = None
) -> Trace:
    """A trace of two repeats (`project`), or one measured once, shape (n,).

    A single trace is projected on its principal axis, or, with |0⟩/|1⟩ `calibration`
    points, on the axis between them and scaled to population. Its first noise figure is the
    point-to-point spread of the signal; the fit replaces it with that of its residuals.
    """
    iq = np.asarray(iq, complex)
    if iq.ndim != 1:
        return project(x, iq)
    x = np.asarray(x, float)
    if iq.size != x.size:
        raise FitError(f"{iq.size} signal points for {x.size} sweep values")
    if not (np.all(np.isfinite(iq)) and np.all(np.isfinite(x))):
        raise FitError("trace has non-finite points (NaN or inf)")
    if x.size < _MIN_POINTS:
        raise FitError(f"only {x.size} points; need at least {_MIN_POINTS}")
    y = project_single(iq) if calibration is None else population(iq, *calibration)
    sigma = difference_noise(y)
    if not sigma > 0:
        raise FitError("the trace does not vary from point to point: no noise estimate")
    return Trace(x, y, sigma, single=True, population=calibration is not None)


def _clipped_rms(values: np.ndarray) -> float:
    """RMS of `values` after dropping outliers beyond 5 robust standard deviations.

    The median absolute deviation alone would ignore glitches but underestimate the rms of
    noise whose size varies along the trace (projection noise is largest at P = 1/2).
    """
    centred = values - np.median(values)
    robust = robust_sigma(centred, about=0.0)
    if not robust > 0:
        raise FitError("the two repeats are identical: no noise estimate")
    kept = centred[np.abs(centred) <= _OUTLIER_SIGMAS * robust]
    return float(np.sqrt(np.mean(kept**2)))


def project_single(iq: np.ndarray) -> np.ndarray:
    """Real signal of one complex trace (for quick estimates that need no noise figure)."""
    iq = np.asarray(iq, complex)
    return ((iq - iq.mean()) * principal_axis(iq).conjugate()).real


def scan_frequency(
    x: np.ndarray, y: np.ndarray, frequencies: np.ndarray, free_phase: bool = True
) -> float:
    """Frequency whose sinusoid (plus offset) explains most of `y`, by linear least squares.

    A periodogram that works on short records and uneven spans where an FFT bins too coarsely;
    with `free_phase=False` the sinusoid is a cosine starting at its maximum (Rabi in amplitude).
    """
    phase = 2 * np.pi * np.asarray(frequencies, float)[:, None] * x[None, :]
    columns = [np.ones_like(phase), np.cos(phase)] + ([np.sin(phase)] if free_phase else [])
    design = np.stack(columns, axis=-1)  # (frequencies, points, columns)
    normal = np.einsum("fpi,fpj->fij", design, design)
    projected = np.einsum("fpi,p->fi", design, y)
    coefficients = np.linalg.solve(normal + 1e-12 * np.eye(len(columns)), projected[..., None])
    explained = np.einsum("fi,fi->f", projected, coefficients[..., 0])
    return float(frequencies[int(np.argmax(explained))])


def rabi_cosine(x, offset, amplitude, pi_amplitude):
    """Population signal of a rectangular pulse of amplitude x: flips fully at pi_amplitude."""
    return offset + amplitude * np.cos(np.pi * x / pi_amplitude)


def damped_cosine(x, offset, amplitude, decay, frequency, phase):
    """Ramsey fringe: a cosine at the detuning under an exponential T2 envelope."""
    return offset + amplitude * np.exp(-x / decay) * np.cos(2 * np.pi * frequency * x + phase)


def exponential(x, offset, amplitude, decay):
    """Relaxation (T1) or echo decay towards the steady state."""
    return offset + amplitude * np.exp(-x / decay)


@dataclass(frozen=True)
class CurveFit:
    """An lmfit result on a projected trace, with the numbers the gates judge."""

    result: lmfit.model.ModelResult
    trace: Trace
    notes: tuple[str, ...] = ()
    #: the fit with the amplitude free, when `result` holds it at the calibrated contrast
    free: lmfit.model.ModelResult | None = None

    def value(self, name: str) -> tuple[float, float]:
        parameter = self.result.params[name]
        stderr = parameter.stderr if parameter.stderr is not None else np.inf
        return float(parameter.value), float(stderr)

    @property
    def reduced_chi2(self) -> float:
        """χ² per degree of freedom against the repeat-difference noise."""
        return float(self.result.redchi)

    @property
    def snr(self) -> float:
        """Fitted oscillation or decay amplitude over its standard error: the evidence the
        whole trace holds that there is a signal. One point's noise would be the wrong
        yardstick: a hundred points at a per-point SNR of 1.6 (a weakly dispersive readout)
        still locate a Rabi oscillation to 1 %, while pure noise fits an amplitude of ~1–3
        standard errors."""
        # a held amplitude has no stderr: the evidence is that of the free fit
        amplitude = (self.free or self.result).params["amplitude"]
        stderr = amplitude.stderr if amplitude.stderr is not None else np.inf
        return abs(amplitude.value) / stderr if stderr > 0 else 0.0

    @property
    def amplitude_per_noise(self) -> float:
        """Fitted amplitude over one point's noise."""
        return abs(self.result.params["amplitude"].value) / self.trace.noise

    def curve(self, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
        x = np.linspace(self.trace.x.min(), self.trace.x.max(), points)
        return x, self.result.eval(x=x)

    def report(self) -> str:
        """lmfit's report, after a `note:` line for each way this fit differs from a fit of
        two repeats in volts (none for those, whose report is lmfit's alone)."""
        notes = [*self.trace.notes(), *self.notes]
        return "".join(f"note: {note}\n" for note in notes) + self.result.fit_report()


def _fit(
    model: lmfit.Model, trace: Trace, params: lmfit.Parameters, swing: float | None = None
) -> CurveFit:
    """Weighted lmfit fit; for two repeats, refitted with each point's noise from the fitted
    population (`_point_noise`); for a single trace, refitted with the noise of its residuals;
    for a population trace, with the amplitude held at `swing` when it would exceed it.

    The re-weighted fit starts from the data's own starting values, not from the first fit:
    a damped cosine has nearby local minima, and from the first fit's end point a change of
    the data by 10⁻⁹ (a snapshot's complex64) led one built-in sweet-spot row into another
    minimum, 0.07 standard errors away, where the re-analysis found the lower one."""
    result = _least_squares(model, trace, params)
    if trace.half_difference is not None:
        trace = replace(trace, sigma=_point_noise(trace, result, swing or FULL_SWING))
        result = _least_squares(model, trace, params)
    free = None
    notes: tuple[str, ...] = ()
    if trace.population and swing is not None and abs(result.params["amplitude"].value) > swing:
        free = result
        held = result.params.copy()
        held["amplitude"].set(value=float(np.sign(held["amplitude"].value)) * swing, vary=False)
        result = _least_squares(model, trace, held)
        notes = (
            f"fitted amplitude {abs(free.params['amplitude'].value):.3g} exceeded the "
            f"{swing:g} the calibration points allow for this experiment; held at {swing:g}",
        )
    if trace.single:
        residual_noise = difference_noise(trace.y - result.best_fit)
        if not residual_noise > 0:
            raise FitError(f"{model.name} fit leaves no residual: no noise estimate")
        trace = replace(trace, sigma=residual_noise)
        result = _least_squares(model, trace, result.params)
    return CurveFit(result, trace, notes, free)


def _point_noise(trace: Trace, result: lmfit.model.ModelResult, swing: float) -> np.ndarray:
    """Each point's noise of two repeats from the population the fit puts there.

    Every model here is an offset plus an amplitude times a shape that starts at ±1: the
    states' levels follow from the amplitude and the population it may `swing` over (a
    cosine about ½: offset ± amplitude; a decay by the whole population: offset and offset +
    amplitude). A trace of less than full contrast has its states further out; its ends then
    count as states, a noise model a little less varied than the truth, never more.
    """
    offset = result.params["offset"].value
    amplitude = result.params["amplitude"].value
    centre = offset + amplitude * (1.0 - 1.0 / (2.0 * swing))
    half = abs(amplitude) / (2.0 * swing)
    shape = projection_shape(result.best_fit, centre - half, centre + half)
    return repeat_noise(trace.half_difference, shape, float(trace.sigma), _OUTLIER_SIGMAS)


def _least_squares(model: lmfit.Model, trace: Trace, params: lmfit.Parameters):
    weights = 1.0 / np.broadcast_to(np.asarray(trace.sigma, float), trace.x.shape)
    try:
        result = model.fit(trace.y, params, x=trace.x, weights=weights)
    except (ValueError, TypeError) as error:
        raise FitError(f"{model.name} fit failed: {error}") from None
    if not np.all(np.isfinite(result.best_fit)):
        raise FitError(f"{model.name} fit diverged")
    return result


def _spread(y: np.ndarray) -> float:
    """Peak-to-peak of the data: the scale that bounds fitted amplitudes."""
    return float(np.ptp(y)) or 1e-12


#: Largest swing of each model's amplitude in excited population: a π pulse flips all of it
#: (T1), a cosine in amplitude or a Ramsey / echo fringe swings by half about ½.
FULL_SWING = 1.0
HALF_SWING = 0.5


def fit_rabi(trace: Trace) -> CurveFit:
    """Cosine in amplitude with its maximum at zero amplitude; pi_amplitude is half a period."""
    span = float(np.ptp(trace.x))
    step = span / (trace.x.size - 1)
    frequencies = np.arange(0.4 / span, 0.5 / step, 0.1 / span)
    frequency = scan_frequency(trace.x, trace.y, frequencies, free_phase=False)
    spread = _spread(trace.y)
    design = np.stack([np.ones_like(trace.x), np.cos(2 * np.pi * frequency * trace.x)], axis=-1)
    (offset, amplitude), *_ = np.linalg.lstsq(design, trace.y, rcond=None)
    params = lmfit.Parameters()
    params.add("offset", value=offset)
    params.add("amplitude", value=amplitude, min=-2 * spread, max=2 * spread)
    params.add("pi_amplitude", value=0.5 / frequency, min=step, max=10 * span)
    return _fit(lmfit.Model(rabi_cosine), trace, params, HALF_SWING)


def fit_ramsey(trace: Trace, decay_guess: float, max_frequency: float | None = None) -> CurveFit:
    """Damped cosine; the frequency comes from a periodogram, the decay from the caller.

    The periodogram scans up to the Nyquist frequency of a uniform grid of the trace's points,
    or up to `max_frequency` when the caller knows the fringe is slower: delays chosen by a
    design cluster at a few phases of the fringe and alias it at harmonics a full scan finds.
    """
    span = float(np.ptp(trace.x))
    step = span / (trace.x.size - 1)
    highest = 0.5 / step if max_frequency is None else max_frequency
    frequency = scan_frequency(trace.x, trace.y, np.arange(1.0 / span, highest, 0.1 / span))
    phase = 2 * np.pi * frequency * trace.x
    design = np.stack([np.ones_like(trace.x), np.cos(phase), np.sin(phase)], axis=-1)
    (offset, a, b), *_ = np.linalg.lstsq(design, trace.y, rcond=None)
    spread = _spread(trace.y)
    params = lmfit.Parameters()
    params.add("offset", value=offset)
    params.add("amplitude", value=max(np.hypot(a, b), spread / 4), min=0, max=2 * spread)
    params.add("decay", value=decay_guess, min=step, max=100 * span)
    params.add("frequency", value=frequency, min=0.5 / span, max=0.5 / step)
    params.add("phase", value=float(np.arctan2(-b, a)), min=-2 * np.pi, max=2 * np.pi)
    return _fit(lmfit.Model(damped_cosine), trace, params, HALF_SWING)


def fit_decay(
    trace: Trace, decay_guess: float, swing: float = FULL_SWING, longest: float = np.inf
) -> CurveFit:
    """Exponential towards a free offset; the amplitude sign follows the data.

    `swing`: the largest amplitude in population (a T1 decays by all of it, an echo by half).
    `longest`: a physical upper bound on the decay time, when one is known (an echo's 2·T1,
    with margin). Without it a faint trace can fit a decay far beyond its window, where
    amplitude and offset trade off and the fitted amplitude drowns in its stderr. A fit held
    at the bound may still report a small stderr: the caller's gate must reject a decay near
    it (`DecayNode.max_bound_ratio`).

    The decay may be as short as half the finest delay step (of a uniform grid, its step; of
    sequentially chosen delays, the closest pair, not the span over the point count).
    """
    span = float(np.ptp(trace.x))
    step = float(np.min(np.diff(np.unique(trace.x))))
    tail = max(3, trace.x.size // 10)
    offset = float(np.mean(trace.y[-tail:]))
    start = float(np.mean(trace.y[:3])) - offset
    spread = _spread(trace.y)
    params = lmfit.Parameters()
    params.add("offset", value=offset)
    params.add("amplitude", value=start or spread, min=-2 * spread, max=2 * spread)
    longest = min(100 * span, longest)
    params.add("decay", value=min(decay_guess, longest / 2), min=step / 2, max=longest)
    return _fit(lmfit.Model(exponential), trace, params, swing)


def quality(
    fit: CurveFit, label: str, key: str, max_chi2: float, max_relative_error: float, min_snr: float
) -> list[Criterion]:
    """The criteria every time-domain fit must pass: χ², precision of `key`, contrast."""
    value, stderr = fit.value(key)
    chi2_name = f"{label} reduced chi-square"
    if fit.trace.single:
        chi2_name += " vs its own residual noise (single trace: a misfit check, not a test)"
    return [
        at_most(
            chi2_name,
            fit.reduced_chi2,
            chi2_limit(max_chi2, fit.amplitude_per_noise),
        ),
        at_most(
            f"{label} {key} relative stderr", relative_error(value, stderr), max_relative_error
        ),
        at_least(f"{label} signal-to-noise", fit.snr, min_snr),
    ]
