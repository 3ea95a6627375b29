"""Resonator line shapes with the measurement environment, and the thermal mixture of lines.

Model (Khalil et al., J. Appl. Phys. 111, 054510 (2012); Probst et al., Rev. Sci. Instrum.
86, 024706 (2015); the gain slope as in Bruno et al., arXiv:1502.04082, eq. S4) for a
notch-coupled resonator:

    S21(f) = a·(1 + s·(f − fc)/fc)·e^{iα}·e^{−2πi·f·τ}
             · [1 − (Ql/|Qc|)·e^{iφ} / (1 + 2i·Ql·(f/fr − 1))]

and, for a resonator measured in reflection, the same with twice the coupling term. A symmetric
Lorentzian dip is not enough on real data: the cable delay τ winds the phase, the line adds a
complex gain whose magnitude drifts across the window (slope s about the window centre fc),
and an impedance mismatch (φ ≠ 0) makes the dip asymmetric. The internal quality factor uses
the diameter correction 1/Qi = 1/Ql − cos(φ)/|Qc|.

A fluxonium at its sweet spot is thermally excited, so the resonator line is the
population-weighted sum of the lines dressed by each qubit state, which share κ and the
coupling: S21 = env · [1 − (Ql/|Qc|)·e^{iφ}·Σ_i p_i / (1 + 2i·(f − f_i)/κ)]. One Lorentzian fitted
to two lines a fraction of κ apart reads their spread as width; `fit_notch_lines` fits both
models and keeps the mixture only when the data demand it and constrain it.

The fits never need a starting point from the user: the delay is first found as the value
that makes the data most circular, an algebraic circle fit gives the centre and radius, the
phase around the centre gives fr and Ql, the off-resonant point gives the gain; a final
least-squares fit of the full complex model, delay included, gives every parameter with a
standard error. The noise is measured from point-to-point differences of the residual, so a
misfit is never mistaken for noise: the signal-to-noise ratio stays honest, and the reduced χ²
with that noise measures the misfit alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import lmfit
import numpy as np
from scipy.optimize import brentq, least_squares, minimize_scalar
from scipy.stats import chi2

from fluxcal.calibrations.fitting.covariance import model_jacobian, parameter_step
from fluxcal.calibrations.fitting.errors import FaintSignal, FitError
from fluxcal.calibrations.fitting.noise import complex_difference_noise
from fluxcal.calibrations.fitting.reuse import reused
from fluxcal.calibrations.gate import pinned_parameters

Kind = Literal["notch", "reflection"]

#: Coupling-term multiplier: a reflection circle has twice the diameter of a notch circle.
_COUPLING_FACTOR: dict[str, float] = {"notch": 1.0, "reflection": 2.0}
#: Fewest points for which the eight-parameter complex model is meaningful.
_MIN_POINTS = 20
#: Default minimum signal-to-noise ratio (circle diameter over noise per quadrature); below
#: it the "resonance" is indistinguishable from a noise fluctuation.
DEFAULT_MIN_SNR = 5.0
#: False-alarm probability of the χ² test that prefers two dressed lines over one.
MIXTURE_FALSE_ALARM = 1e-4
#: The mixture is believed only when its weight and its line separation each stand this many
#: standard errors clear of zero; otherwise the two lines are degenerate.
MIN_RESOLUTION = 3.0
#: Starting separations of the second line, in single-line linewidths, tried on both sides.
_SEPARATION_STARTS = (0.3, 0.6, 1.2, 2.5, 4.5)
#: Starting weight of the weaker line (a fluxonium at its sweet spot is 10–45 % excited).
_WEIGHT_START = 0.3
#: Starting weight and offsets (in κ, from either line) of a third dressed line: the thermal
#: population of the next level, a few per cent (see `_next_line_kappa`).
_THIRD_WEIGHT_START = 0.03
_THIRD_OFFSETS = (-0.5, 0.5)


def _environment(
    frequency: np.ndarray, a: float, alpha_ref: float, delay: float, slope: float, f_ref: float
) -> np.ndarray:
    """Complex gain of the line, referred to f_ref (the window centre).

    Referring the delay phase and the gain slope to a frequency inside the window decorrelates
    them from α and a (otherwise α absorbs 2π·f·τ ≈ thousands of radians and the fit is badly
    conditioned).
    """
    f = np.asarray(frequency, dtype=float)
    gain = a * (1.0 + slope * (f - f_ref) / f_ref)
    return gain * np.exp(1j * (alpha_ref - 2 * np.pi * (f - f_ref) * delay))


def _resonance(frequency: np.ndarray, fr: float, Ql: float, Qc: float, phi: float, kind: Kind):
    """The resonator's own factor: 1 far from resonance, a circle through 1 in the plane."""
    f = np.asarray(frequency, dtype=float)
    coupling = _COUPLING_FACTOR[kind] * (Ql / Qc) * np.exp(1j * phi)
    return 1.0 - coupling / (1.0 + 2j * Ql * (f / fr - 1.0))


def dressed_lines(
    frequency: np.ndarray,
    f0: float,
    f1: float,
    p1: float,
    kappa: float,
    ratio: float,
    phi: float = 0.0,
) -> np.ndarray:
    """Resonator factor of two dressed notch lines weighted 1 − p1 and p1 (no environment).

    `ratio` = Ql/|Qc| and κ are common to both: the qubit state moves the resonator, it does
    not change its losses.
    """
    f = np.asarray(frequency, dtype=float)
    lines = (1.0 - p1) / (1.0 + 2j * (f - f0) / kappa) + p1 / (1.0 + 2j * (f - f1) / kappa)
    return 1.0 - ratio * np.exp(1j * phi) * lines


def notch_s21(
    frequency: np.ndarray,
    fr: float,
    Ql: float,
    Qc: float,
    phi: float = 0.0,
    a: float = 1.0,
    alpha: float = 0.0,
    delay: float = 0.0,
) -> np.ndarray:
    """Complex S21 of a notch-coupled resonator with environment; α is the gain phase at f = 0."""
    line = _environment(frequency, a, alpha - 2 * np.pi * fr * delay, delay, 0.0, fr)
    return line * _resonance(frequency, fr, Ql, Qc, phi, "notch")


def reflection_s11(
    frequency: np.ndarray,
    fr: float,
    Ql: float,
    Qc: float,
    phi: float = 0.0,
    a: float = 1.0,
    alpha: float = 0.0,
    delay: float = 0.0,
) -> np.ndarray:
    """Complex S11 of a resonator measured in reflection, with the same environment terms."""
    line = _environment(frequency, a, alpha - 2 * np.pi * fr * delay, delay, 0.0, fr)
    return line * _resonance(frequency, fr, Ql, Qc, phi, "reflection")


def notch_mixture_s21(
    frequency: np.ndarray,
    f0: float,
    f1: float,
    p1: float,
    kappa: float,
    ratio: float,
    phi: float = 0.0,
    a: float = 1.0,
    alpha: float = 0.0,
    delay: float = 0.0,
) -> np.ndarray:
    """Complex S21 of the thermal mixture of two dressed notch lines, with environment."""
    line = _environment(frequency, a, alpha - 2 * np.pi * f0 * delay, delay, 0.0, f0)
    return line * dressed_lines(frequency, f0, f1, p1, kappa, ratio, phi)


def _notch_referenced(frequency, fr, Ql, Qc, phi, a, alpha_ref, delay, gain_slope, f_ref):
    """lmfit model function (lmfit reads parameter names from the signature)."""
    line = _environment(frequency, a, alpha_ref, delay, gain_slope, f_ref)
    return line * _resonance(frequency, fr, Ql, Qc, phi, "notch")


def _reflection_referenced(frequency, fr, Ql, Qc, phi, a, alpha_ref, delay, gain_slope, f_ref):
    """lmfit model function (lmfit reads parameter names from the signature)."""
    line = _environment(frequency, a, alpha_ref, delay, gain_slope, f_ref)
    return line * _resonance(frequency, fr, Ql, Qc, phi, "reflection")


def _mixture_referenced(
    frequency, f0, f1, p1, kappa, ratio, phi, a, alpha_ref, delay, gain_slope, f_ref
):
    """lmfit model function of the two-line mixture."""
    line = _environment(frequency, a, alpha_ref, delay, gain_slope, f_ref)
    return line * dressed_lines(frequency, f0, f1, p1, kappa, ratio, phi)


def _three_lines_referenced(
    frequency, f0, f1, f2, p1, p2, kappa, ratio, phi, a, alpha_ref, delay, gain_slope, f_ref
):
    """lmfit model function of the mixture with a third dressed line of weight p2."""
    line = _environment(frequency, a, alpha_ref, delay, gain_slope, f_ref)
    f = np.asarray(frequency, dtype=float)
    weights_and_lines = ((1.0 - p1 - p2, f0), (p1, f1), (p2, f2))
    lines = sum(w / (1.0 + 2j * (f - fi) / kappa) for w, fi in weights_and_lines)
    return line * (1.0 - ratio * np.exp(1j * phi) * lines)


_MODEL_FUNCTIONS = {"notch": _notch_referenced, "reflection": _reflection_referenced}


@dataclass(frozen=True)
class Circle:
    """Circle in the complex plane."""

    centre: complex
    radius: float


def fit_circle(z: np.ndarray) -> Circle:
    """Algebraic (Kåsa) circle fit: linear least squares of x² + y² + D·x + E·y + F = 0.

    Linear, so it needs no start point; at the signal-to-noise of a resonator scan its bias
    is negligible and the final complex fit removes it anyway.
    """
    x, y = z.real, z.imag
    scale = max(np.abs(z).max(), np.finfo(float).tiny)
    xs, ys = x / scale, y / scale
    design = np.column_stack([xs, ys, np.ones_like(xs)])
    (d, e, f), *_ = np.linalg.lstsq(design, -(xs**2 + ys**2), rcond=None)
    centre = complex(-d / 2, -e / 2)
    radius = float(np.sqrt(max(centre.real**2 + centre.imag**2 - f, 0.0)))
    return Circle(centre * scale, radius * scale)


def remove_delay(frequency: np.ndarray, z: np.ndarray, delay: float) -> np.ndarray:
    """Undo the cable-delay phase e^{−2πi·f·τ}, referred to the first frequency."""
    return z * np.exp(2j * np.pi * (frequency - frequency[0]) * delay)


def _circle_residual(frequency: np.ndarray, z: np.ndarray, delay: float) -> np.ndarray:
    """Radial distances from the best circle after removing `delay`: zero for a perfect circle."""
    flat = remove_delay(frequency, z, delay)
    circle = fit_circle(flat)
    return np.abs(flat - circle.centre) - circle.radius


def estimate_delay(frequency: np.ndarray, z: np.ndarray) -> float:
    """Cable delay that makes the data most circular (Probst et al. 2015): the fit's start.

    A first value comes from the phase slopes of the outer fifths of the window (mostly away
    from the resonance); the resonance's own phase excursion biases it, so a grid search and
    a bounded refinement minimise the radial scatter around the fitted circle. The final fit
    frees the delay: circularity alone is biased by any distortion of the circle (its value
    moves with the window width on the NIST trace, and leaves a linear misfit in the wings).
    """
    span = frequency[-1] - frequency[0]
    edge = max(len(frequency) // 5, 3)
    # Each side separately: an overcoupled reflection winds a full turn between the two sides.
    slopes = [
        np.polyfit(frequency[part] - frequency[0], np.unwrap(np.angle(z[part])), 1)[0]
        for part in (slice(0, edge), slice(-edge, None))
    ]
    first = -float(np.mean(slopes)) / (2 * np.pi)

    def scatter(delay: float) -> float:
        return float(np.sum(_circle_residual(frequency, z, delay) ** 2))

    # A delay error of 1/span winds the data once more around the origin: search within it.
    grid = first + np.linspace(-0.5 / span, 0.5 / span, 41)
    best = grid[int(np.argmin([scatter(d) for d in grid]))]
    step = grid[1] - grid[0]
    return float(
        minimize_scalar(
            scatter,
            bounds=(best - step, best + step),
            method="bounded",
            options={"xatol": 1e-6 / span},
        ).x
    )


@dataclass(frozen=True)
class _PhaseFit:
    """fr, Ql and the phase θ0 of the centred circle (off-resonant point at θ0 + π)."""

    fr: float
    Ql: float
    theta0: float


def _initial_resonance(frequency: np.ndarray, z: np.ndarray, circle: Circle) -> tuple[float, float]:
    """fr and Ql from geometry: the point opposite the off-resonant one, and the half-power width.

    The off-resonant point is taken as the circle point nearest the mean of the two window
    ends; points farther than diameter/√2 from it lie inside the full width at half maximum.
    """
    ends = np.r_[z[:3], z[-3:]].mean()
    direction = (ends - circle.centre) / max(abs(ends - circle.centre), np.finfo(float).tiny)
    off_resonant = circle.centre + circle.radius * direction
    distance = np.abs(z - off_resonant)
    fr = float(frequency[int(np.argmax(distance))])
    inside = frequency[distance > np.sqrt(2) * circle.radius]
    step = float(np.median(np.diff(frequency)))
    fwhm = max(inside.max() - inside.min() if inside.size else 0.0, 2 * step)
    return fr, fr / fwhm


def fit_phase(frequency: np.ndarray, z: np.ndarray, circle: Circle) -> _PhaseFit:
    """Fit θ(f) = θ0 + 2·arctan(2·Ql·(1 − f/fr)) to the angle around the circle centre.

    The residual is wrapped to (−π, π], so no phase unwrapping of noisy points is needed.
    """
    fr0, ql0 = _initial_resonance(frequency, z, circle)
    angle = np.angle(z - circle.centre)
    theta0 = float(np.angle(z[int(np.argmin(np.abs(frequency - fr0)))] - circle.centre))
    span = frequency[-1] - frequency[0]

    def residual(p: np.ndarray) -> np.ndarray:
        theta, ql, fr = p[0], np.exp(p[1]), fr0 + p[2] * span
        model = theta + 2 * np.arctan(2 * ql * (1 - frequency / fr))
        return np.angle(np.exp(1j * (angle - model)))

    fit = least_squares(residual, [theta0, np.log(ql0), 0.0], loss="soft_l1", f_scale=0.3)
    return _PhaseFit(fr=fr0 + fit.x[2] * span, Ql=float(np.exp(fit.x[1])), theta0=float(fit.x[0]))


@dataclass(frozen=True)
class ResonatorFit:
    """Result of a one-line resonator fit: parameters with standard errors and fit quality.

    Frequencies and κ in Hz, delay in s, angles in rad. `kappa` = fr/Ql is the full
    linewidth (κ/2π in Hz); `gain_slope` is the relative change of the line's gain per
    relative change of frequency. `noise` is the noise per quadrature from point-to-point
    differences of the residual, blind to misfit; `snr` is the circle diameter (dip depth)
    over it, the figure a gate should threshold; `redchi` is the reduced χ² with that noise
    (≈ 1 when the model describes the data, large when it misfits). `alpha` follows the
    convention of the model formula (phase of the gain at f = 0), wrapped to (−π, π].
    """

    result: lmfit.model.ModelResult
    kind: Kind
    fr: float
    fr_stderr: float
    Ql: float
    Ql_stderr: float
    Qc: float
    Qc_stderr: float
    Qi: float
    Qi_stderr: float
    kappa: float
    kappa_stderr: float
    phi: float
    phi_stderr: float
    delay: float
    delay_stderr: float
    a: float
    a_stderr: float
    gain_slope: float
    gain_slope_stderr: float
    alpha: float
    alpha_stderr: float
    redchi: float
    noise: float
    snr: float

    def best_fit(self, frequency: np.ndarray) -> np.ndarray:
        """Fitted complex response evaluated at any frequencies (Hz)."""
        return self.result.eval(frequency=np.asarray(frequency, dtype=float))


def fit_notch(
    frequency: np.ndarray, s21: np.ndarray, min_snr: float = DEFAULT_MIN_SNR
) -> ResonatorFit:
    """Fit a notch-coupled resonator (S21) from the data alone; FitError if there is none."""
    return fit_resonator(frequency, s21, "notch", min_snr)


def fit_reflection(
    frequency: np.ndarray, s11: np.ndarray, min_snr: float = DEFAULT_MIN_SNR
) -> ResonatorFit:
    """Fit a resonator measured in reflection (S11) from the data alone."""
    return fit_resonator(frequency, s11, "reflection", min_snr)


def fit_resonator(
    frequency: np.ndarray,
    response: np.ndarray,
    kind: Kind = "notch",
    min_snr: float = DEFAULT_MIN_SNR,
) -> ResonatorFit:
    """Circle-fit initial guesses, then a least-squares fit of the full complex model.

    The delay is free in the final fit: jointly with the resonance it is fixed by the phase
    winding of the wings, which the circularity estimate alone gets wrong whenever the circle
    is slightly distorted (on the NIST trace that start leaves a 13σ linear misfit in the
    wings and moves Ql by 7 % as the window changes; the joint fit does not move).

    Raises FitError when the window holds no resolvable resonance: too few points, fit not
    converged, fr outside the window, a linewidth narrower than the frequency step or wider
    than the window, or a signal-to-noise ratio below `min_snr`.
    """
    frequency, response = _clean(frequency, response)
    params = initial_parameters(frequency, response, kind, estimate_delay(frequency, response))
    result = _least_squares(_MODEL_FUNCTIONS[kind], response, params, frequency)
    fit = _summarise(result, kind, response)
    _check(fit, frequency, min_snr)
    return fit


def _least_squares(function, data: np.ndarray, params: lmfit.Parameters, frequency: np.ndarray):
    """lmfit fit of a complex model; FitError when the model cannot be evaluated."""
    model = lmfit.Model(function, independent_vars=["frequency"])
    try:
        return model.fit(data, params, frequency=frequency)
    except ValueError as exc:  # lmfit refuses NaN model values, e.g. Ql driven to 0
        raise FitError(f"no resonance found: least squares failed ({exc})") from exc


def _clean(frequency: np.ndarray, response: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted finite points as float/complex arrays; FitError if too few remain."""
    f = np.asarray(frequency, dtype=float).ravel()
    z = np.asarray(response, dtype=complex).ravel()
    if f.shape != z.shape:
        raise ValueError(f"frequency {f.shape} and response {z.shape} differ in shape")
    keep = np.isfinite(f) & np.isfinite(z)
    if keep.sum() < _MIN_POINTS:
        raise FitError(
            f"resonator fit needs at least {_MIN_POINTS} finite points, got {keep.sum()}"
        )
    order = np.argsort(f[keep])
    return f[keep][order], z[keep][order]


def initial_parameters(
    frequency: np.ndarray, z: np.ndarray, kind: Kind, delay: float
) -> lmfit.Parameters:
    """Every model parameter estimated from the data, as lmfit Parameters with derived Qi, κ, α.

    After removing the delay: circle centre and radius, fr and Ql from the phase around the
    centre, the gain from the off-resonant point, then |Qc| and φ from the circle normalised
    by that gain (centre 1 − k·(Ql/2|Qc|)·e^{iφ}, radius k·Ql/2|Qc|, k = 1 notch, 2 reflection).
    The gain slope starts at zero.
    """
    flat = remove_delay(frequency, z, delay)
    circle = fit_circle(flat)
    phase = fit_phase(frequency, flat, circle)
    off_resonant = circle.centre + circle.radius * np.exp(1j * (phase.theta0 + np.pi))
    normalised_centre = circle.centre / off_resonant
    normalised_radius = circle.radius / abs(off_resonant)
    qc = _COUPLING_FACTOR[kind] * phase.Ql / (2 * normalised_radius)
    f_ref = float(frequency[0] + frequency[-1]) / 2

    params = lmfit.Parameters()
    params.add("f_ref", value=f_ref, vary=False)
    edge = {"at_bound": "the resonance lies at or beyond the window edge"}
    params.add("fr", value=phase.fr, min=frequency[0], max=frequency[-1], user_data=edge)
    params.add("Ql", value=phase.Ql, min=0, user_data={"at_bound": "no resonance: Ql → 0"})
    params.add("Qc", value=qc, min=0, user_data={"at_bound": "no coupling: |Qc| → 0"})
    phi = float(np.angle(1 - normalised_centre))
    mismatch = {"at_bound": "the circle's asymmetry is not resolved"}
    params.add("phi", value=phi, min=-np.pi, max=np.pi, user_data=mismatch)
    params.add("a", value=abs(off_resonant), min=0, user_data={"at_bound": "no signal"})
    # remove_delay refers the phase to frequency[0]; the model refers it to f_ref.
    alpha_ref = np.angle(off_resonant) - 2 * np.pi * (f_ref - frequency[0]) * delay
    params.add("alpha_ref", value=float(alpha_ref))
    params.add("delay", value=delay)
    params.add("gain_slope", value=0.0)
    params.add("Qi", expr="1/(1/Ql - cos(phi)/Qc)")
    params.add("kappa", expr="fr/Ql")
    params.add("alpha", expr="alpha_ref + 2*pi*f_ref*delay")
    return params


def _estimate(params: lmfit.Parameters, name: str) -> tuple[float, float]:
    """(value, stderr) of a parameter; stderr is NaN when the covariance is not available."""
    p = params[name]
    stderr = p.stderr if p.stderr is not None else np.nan
    return float(p.value), float(stderr)


def _noise_and_redchi(result: lmfit.model.ModelResult, z: np.ndarray) -> tuple[float, float]:
    """Noise per quadrature from the residual's point-to-point differences, and χ²/ν with it."""
    noise = complex_difference_noise(z - result.best_fit)
    scale = max(noise, np.finfo(float).tiny) ** 2 * max(result.nfree, 1)
    return noise, float(result.chisqr / scale)


def _summarise(result: lmfit.model.ModelResult, kind: Kind, z: np.ndarray) -> ResonatorFit:
    """Collect values, standard errors, noise and SNR into a ResonatorFit."""
    p = result.params
    names = ("fr", "Ql", "Qc", "Qi", "kappa", "phi", "delay", "a", "gain_slope", "alpha")
    fields = {}
    for name in names:
        fields[name], fields[f"{name}_stderr"] = _estimate(p, name)
    fields["alpha"] = float(np.angle(np.exp(1j * fields["alpha"])))
    noise, redchi = _noise_and_redchi(result, z)
    diameter = _COUPLING_FACTOR[kind] * p["a"].value * p["Ql"].value / p["Qc"].value
    return ResonatorFit(
        result=result,
        kind=kind,
        redchi=redchi,
        noise=noise,
        snr=float(diameter / max(noise, np.finfo(float).tiny)),
        **fields,
    )


def _check(fit: ResonatorFit, frequency: np.ndarray, min_snr: float) -> None:
    """Raise FitError when the fitted resonance is not supported by the window."""
    step = float(np.median(np.diff(frequency)))
    span = float(frequency[-1] - frequency[0])
    problems = []
    if not fit.result.success:
        problems.append(f"least squares did not converge ({fit.result.message})")
    if not frequency[0] < fit.fr < frequency[-1]:
        problems.append(f"fr = {fit.fr:.6e} Hz lies at the edge of the window")
    if not step <= fit.kappa <= span:
        problems.append(
            f"linewidth {fit.kappa:.3g} Hz is not resolved in a {span:.3g} Hz "
            f"window with {step:.3g} Hz steps"
        )
    if not fit.snr >= min_snr:
        problems.append(f"signal-to-noise {fit.snr:.2f} below {min_snr}")
        # a fit to a dip lost in the noise also misplaces its edge and linewidth
        raise FaintSignal("no resonance found: " + "; ".join(problems))
    if problems:
        raise FitError("no resonance found: " + "; ".join(problems))


# --------------------------------------------------------------------------- thermal mixture


@dataclass(frozen=True)
class MixtureFit:
    """Two dressed notch lines sharing κ, coupling and environment.

    `f0` is the stronger line (the qubit's ground state), `f1` the weaker one with weight
    `p1` ≤ 1/2 (the excited population seen by the readout). `dip` is the deepest point of
    the mixture's own line (mismatch and environment removed), the frequency a single-line fit
    reports as fr. `noise` and `redchi` as in ResonatorFit.
    """

    result: lmfit.model.ModelResult
    f0: float
    f0_stderr: float
    f1: float
    f1_stderr: float
    p1: float
    p1_stderr: float
    kappa: float
    kappa_stderr: float
    ratio: float
    ratio_stderr: float
    phi: float
    phi_stderr: float
    delay: float
    delay_stderr: float
    separation_stderr: float
    dip: float
    dip_stderr: float
    noise: float
    redchi: float

    def best_fit(self, frequency: np.ndarray) -> np.ndarray:
        """Fitted complex response evaluated at any frequencies (Hz)."""
        return self.result.eval(frequency=np.asarray(frequency, dtype=float))

    @property
    def resolved(self) -> float:
        """How many standard errors the weaker line's weight and separation stand from zero.

        The smaller of the two; NaN stderrs (no covariance) count as unresolved.
        """
        weight = self.p1 / self.p1_stderr
        separation = abs(self.f1 - self.f0) / self.separation_stderr
        return float(np.nan_to_num(min(weight, separation), nan=0.0))


def fit_notch_mixture(
    frequency: np.ndarray, s21: np.ndarray, start: ResonatorFit | None = None
) -> MixtureFit:
    """Fit the thermal mixture of two dressed notch lines, starting from a one-line fit.

    The second line is searched from several separations on both sides of the first (a
    least-squares fit only finds the nearest minimum); the best χ² wins. The environment and
    coupling start from the one-line fit (`start`, fitted here when not given).
    """
    frequency, s21 = _clean(frequency, s21)
    start = start or fit_notch(frequency, s21)
    results = []
    for params in _mixture_starts(frequency, s21, start):
        try:
            results.append(_least_squares(_mixture_referenced, s21, params, frequency))
        except FitError:
            continue
    if not results:
        raise FitError("no mixture of two lines could be fitted")
    return _summarise_mixture(min(results, key=lambda r: r.chisqr), s21)


def _mixture_starts(
    frequency: np.ndarray, s21: np.ndarray, single: ResonatorFit
) -> Iterator[lmfit.Parameters]:
    """Start points of the two-line fit: the one-line fit split about its centre.

    The weaker line is put `separation` away with weight 0.3, the stronger one shifted so the
    mean stays at the one-line centre (where a one-line fit puts a close pair); a last start
    puts it where the one-line fit misses most (a resolved second line the fit left out),
    the stronger one at the one-line centre: a one-line fit sits on the deeper of two
    resolved lines, and shifting it there by 0.3 of a separation of many κ would start it
    off its dip, where the fit loses it (the weaker line then takes all the weight).
    """
    for separation in np.outer((1.0, -1.0), _SEPARATION_STARTS).ravel() * single.kappa:
        yield _mixture_parameters(frequency, single, separation, single.kappa)
    misfit = np.abs(s21 - single.result.best_fit)
    smooth = np.convolve(misfit, np.ones(5) / 5, mode="same")
    separation = frequency[int(np.argmax(smooth))] - single.fr
    yield _mixture_parameters(frequency, single, separation, single.kappa, f0=single.fr)


def _mixture_parameters(
    frequency: np.ndarray,
    single: ResonatorFit,
    separation: float,
    kappa: float,
    vary_kappa: bool = True,
    f0: float | None = None,
) -> lmfit.Parameters:
    """Two-line parameters around a one-line fit: lines `separation` apart, weights 0.7/0.3.

    The stronger line starts at `f0`, by default shifted so the weighted mean stays at the
    one-line centre. Each line is bounded by the window, the weight by [0, 1] (either line
    may be the stronger: the labels are sorted after the fit), κ by a hundredth of the step.
    """
    p = single.result.params
    low, high = float(frequency[0]), float(frequency[-1])
    step = float(np.median(np.diff(frequency)))
    if f0 is None:
        f0 = single.fr - _WEIGHT_START * separation
    f0 = float(np.clip(f0, low, high))
    window = {"min": low, "max": high, "user_data": {"at_bound": "a line at the window edge"}}
    params = lmfit.Parameters()
    params.add("f_ref", value=p["f_ref"].value, vary=False)
    params.add("f0", value=f0, **window)
    params.add("f1", value=float(np.clip(f0 + separation, low, high)), **window)
    one_line = {"at_bound": "one line only: the second has no weight"}
    params.add("p1", value=_WEIGHT_START, min=0.0, max=1.0, user_data=one_line)
    narrow = {"at_bound": "a linewidth far below the frequency step"}
    params.add("kappa", value=kappa, min=step / 100, vary=vary_kappa, user_data=narrow)
    params.add("ratio", value=single.Ql / single.Qc, min=0.0, user_data={"at_bound": "no dip"})
    mismatch = {"at_bound": "the lines' asymmetry is not resolved"}
    params.add("phi", value=single.phi, min=-np.pi, max=np.pi, user_data=mismatch)
    params.add("a", value=single.a, min=0.0, user_data={"at_bound": "no signal"})
    for name in ("alpha_ref", "delay", "gain_slope"):
        params.add(name, value=p[name].value)
    return params


def _summarise_mixture(result: lmfit.model.ModelResult, z: np.ndarray) -> MixtureFit:
    """Values with robust stderrs, the weaker line labelled 1 (the model is symmetric)."""
    covariance = _robust_covariance(result)
    values = {
        name: (float(result.params[name].value), _stderr(result, covariance, name))
        for name in ("f0", "f1", "p1", "kappa", "ratio", "phi", "delay")
    }
    if values["p1"][0] > 0.5:
        values["f0"], values["f1"] = values["f1"], values["f0"]
        values["p1"] = (1.0 - values["p1"][0], values["p1"][1])
    fields = {}
    for name, (value, stderr) in values.items():
        fields[name], fields[f"{name}_stderr"] = value, stderr
    noise, redchi = _noise_and_redchi(result, z)
    dip, dip_stderr = _propagate(result, covariance, _dip_of)
    separation_stderr = _propagate(result, covariance, lambda v: v["f1"] - v["f0"])[1]
    return MixtureFit(
        result=result,
        separation_stderr=separation_stderr,
        dip=dip,
        dip_stderr=dip_stderr,
        noise=noise,
        redchi=redchi,
        **fields,
    )


def _robust_covariance(result: lmfit.model.ModelResult) -> np.ndarray | None:
    """Heteroscedasticity-consistent covariance of the varied parameters (White's HC1).

    Each point averages a finite number of shots of a random qubit state, so the noise grows
    where the dressed lines differ, near the resonance, which is what fixes κ and the line
    positions; the ordinary covariance, scaled by the mean residual, understates their errors
    there. The sandwich (JᵀJ)⁻¹·Jᵀ·diag(r²)·J·(JᵀJ)⁻¹ weighs each point by its own residual.
    None when the fit has no covariance.
    """
    if result.covar is None:
        return None
    jacobian = _real(model_jacobian(result))
    scale = 1.0 / np.maximum(np.linalg.norm(jacobian, axis=0), np.finfo(float).tiny)
    jacobian *= scale  # unit columns: frequencies and fractions side by side stay invertible
    residual = _real(result.data - result.best_fit)
    bread = np.linalg.pinv(jacobian.T @ jacobian)
    meat = (jacobian.T * residual**2) @ jacobian
    n, k = jacobian.shape
    return np.outer(scale, scale) * (bread @ meat @ bread) * n / max(n - k, 1)


def _real(z: np.ndarray) -> np.ndarray:
    """Complex residuals as the real vector least squares minimises."""
    return np.concatenate([z.real, z.imag])


def _stderr(result: lmfit.model.ModelResult, covariance: np.ndarray | None, name: str) -> float:
    """Standard error of a varied parameter from `covariance`; NaN without one."""
    if covariance is None:
        return float("nan")
    index = result.var_names.index(name)
    return float(np.sqrt(covariance[index, index]))


def _dip_of(values: dict[str, float]) -> float:
    """Frequency of the deepest point of the mixture's line (φ = 0: mismatch is environment).

    A grid finds the deepest point; the root of d|S|²/df refines it to machine precision, so
    that finite differences of the dip (for its stderr) are not numerical noise.
    """
    f0, f1, p1 = values["f0"], values["f1"], values["p1"]
    kappa, ratio = values["kappa"], values["ratio"]
    grid = np.linspace(min(f0, f1) - kappa, max(f0, f1) + kappa, 2001)
    k = int(np.argmin(np.abs(dressed_lines(grid, f0, f1, p1, kappa, ratio))))

    def slope(f: float) -> float:
        x0, x1 = 1 + 2j * (f - f0) / kappa, 1 + 2j * (f - f1) / kappa
        response = 1 - ratio * ((1 - p1) / x0 + p1 / x1)
        derivative = ratio * (2j / kappa) * ((1 - p1) / x0**2 + p1 / x1**2)
        return float((np.conj(response) * derivative).real)

    low, high = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    if slope(low) * slope(high) > 0:
        return float(grid[k])
    return float(brentq(slope, low, high, xtol=1e-12 * kappa, rtol=4 * np.finfo(float).eps))


def _propagate(
    result: lmfit.model.ModelResult, covariance: np.ndarray | None, function
) -> tuple[float, float]:
    """Value and stderr of a function of the fitted values, by linear error propagation.

    Central differences per varied parameter, combined with `covariance`; stderr NaN when
    there is none.
    """
    values = result.params.valuesdict()
    value = float(function(values))
    if covariance is None:
        return value, float("nan")
    gradient = np.zeros(len(result.var_names))
    for i, name in enumerate(result.var_names):
        h = parameter_step(result, i, values[name])
        upper = function({**values, name: values[name] + h})
        gradient[i] = (upper - function({**values, name: values[name] - h})) / (2 * h)
    return value, float(np.sqrt(max(gradient @ covariance @ gradient, 0.0)))


# --------------------------------------------------------------------------- model choice


@dataclass(frozen=True)
class NotchLines:
    """The notch line as one Lorentzian or as the thermal mixture of two dressed lines.

    `chosen` is the model the numbers come from; `reason` says why. `delta_chi2` is how much
    the second line lowers χ² in units of the (misfit-blind) noise, `threshold` what it had to
    exceed. When one line is kept, `kappa_stderr` also covers every smaller κ that a pair of
    lines too close to resolve would fit as well (see `_kappa_floor`); when the mixture is
    kept, it includes `kappa_model_error`, how far κ moves when a third line is let in (see
    `_next_line_kappa`).
    """

    single: ResonatorFit
    mixture: MixtureFit | None
    chosen: ResonatorFit | MixtureFit
    delta_chi2: float
    threshold: float
    kappa: float
    kappa_stderr: float
    dip: float
    dip_stderr: float
    reason: str
    kappa_model_error: float = 0.0

    @property
    def is_mixture(self) -> bool:
        return self.chosen is self.mixture


@reused
def fit_notch_lines(
    frequency: np.ndarray, s21: np.ndarray, min_snr: float = DEFAULT_MIN_SNR
) -> NotchLines:
    """One line or the two-line thermal mixture, whichever the data support.

    The mixture is chosen when it is (1) significant: it lowers χ² (with the noise from the
    residual differences of the mixture fit) by more than a χ² with two degrees of freedom
    exceeds with probability MIXTURE_FALSE_ALARM; (2) the explanation: what misfit it leaves
    is within noise or smaller than what it removed (a line distorted by something else is
    not a thermal mixture just because a second line mops up part of the misfit);
    (3) constrained: its weight and separation each at least MIN_RESOLUTION stderrs from
    zero and no parameter pinned at a bound. With |χ| ≪ κ the two lines are degenerate and
    (3) fails: the one-line κ is kept, with a stderr that covers the degeneracy.
    """
    frequency, s21 = _clean(frequency, s21)
    single = fit_notch(frequency, s21, min_snr)
    threshold = float(chi2.isf(MIXTURE_FALSE_ALARM, 2))
    try:
        mixture = fit_notch_mixture(frequency, s21, single)
    except FitError:
        return _one_line(frequency, s21, single, None, 0.0, threshold, ("two lines failed", False))
    delta = float((single.result.chisqr - mixture.result.chisqr) / _unit(mixture))
    problem = _mixture_problem(mixture, delta, threshold)
    if problem[0]:
        return _one_line(frequency, s21, single, mixture, delta, threshold, problem)
    model_error = abs(_next_line_kappa(frequency, s21, mixture) - mixture.kappa)
    reason = (
        f"two dressed lines: χ² lower by {delta:.1f} ≥ {threshold:.1f}, "
        f"resolved to {mixture.resolved:.1f} stderr; a third line moves κ by {model_error:.0f} Hz"
    )
    return NotchLines(
        single,
        mixture,
        mixture,
        delta,
        threshold,
        mixture.kappa,
        float(np.hypot(mixture.kappa_stderr, model_error)),
        mixture.dip,
        mixture.dip_stderr,
        reason,
        model_error,
    )


def _next_line_kappa(frequency: np.ndarray, s21: np.ndarray, mixture: MixtureFit) -> float:
    """κ of the mixture refitted with a third dressed line: the model error of the two lines.

    Every thermally populated level dresses the resonator at its own frequency; the next one
    (|2⟩ at a few per cent at 30–60 mK) sits a fraction of κ from the pair, unresolved, and
    the two-line fit reads it as width (+0.5–1 % on sampled chips, several times κ's
    statistical stderr once the lines are resolved). Its weight and position are not known
    here, so the shift of κ when the data may place a third line where they like is how far
    the two-line κ can be off; the starts put it half a linewidth either side of each line.
    The two-line κ is returned when no three-line fit succeeds.
    """
    best = None
    for base, offset in itertools.product(("f0", "f1"), _THIRD_OFFSETS):
        params = mixture.result.params.copy()
        third = params[base].value + offset * params["kappa"].value
        window = params["f0"]
        params.add(
            "f2",
            value=float(np.clip(third, window.min, window.max)),
            min=window.min,
            max=window.max,
        )
        params.add("p2", value=_THIRD_WEIGHT_START, min=0.0, max=1.0)
        try:
            result = _least_squares(_three_lines_referenced, s21, params, frequency)
        except FitError:
            continue
        if best is None or result.chisqr < best.chisqr:
            best = result
    return mixture.kappa if best is None else float(best.params["kappa"].value)


def _unit(fit: ResonatorFit | MixtureFit) -> float:
    """One unit of χ² in the fit's sum of squares: the noise variance per quadrature."""
    return max(fit.noise, np.finfo(float).tiny) ** 2


def _mixture_problem(mixture: MixtureFit, delta: float, threshold: float) -> tuple[str, bool]:
    """Why the mixture must not be chosen ("" when it may), and whether the data still allow
    an unresolved pair of lines (not when the misfit is shown to be something else)."""
    if delta < threshold:
        return f"a second line lowers χ² by only {delta:.1f} < {threshold:.1f}", True
    residual = mixture.result.data - mixture.result.best_fit
    left, spread = (x / _unit(mixture) for x in structured_misfit(residual))
    if left > max(delta, 3 * spread):
        return (
            f"a second line lowers χ² by {delta:.1f} but leaves {left:.0f} ± {spread:.0f} of "
            f"misfit (reduced χ² {mixture.redchi:.2f}): the line is distorted otherwise",
            False,
        )
    pinned = pinned_parameters(mixture.result.params)
    if pinned:
        at = ", ".join(f"{name} at its {side} bound" for name, side, _ in pinned)
        return f"a second line lowers χ² by {delta:.1f} but is pinned ({at})", True
    if mixture.resolved < MIN_RESOLUTION:
        return (
            f"a second line lowers χ² by {delta:.1f} but its weight and separation stand "
            f"only {mixture.resolved:.1f} stderr from zero",
            True,
        )
    return "", False


def structured_misfit(residual: np.ndarray) -> tuple[float, float]:
    """Sum of squares of a complex residual's smooth part, and its spread under noise alone.

    Σ Re(rᵢ·r̄ᵢ₊₁), the residual's lag-one autocovariance summed: a misfit varies smoothly
    along the sweep and adds its Σ|m|², independent noise averages to zero however its
    variance varies along the sweep. (χ² − ν) with the median noise would not: the thermal
    mixture's projection noise is largest at the lines, a few points of the window, so χ²
    exceeds ν there with no misfit at all (reduced χ² 1.2–20 on sampled chips) and an
    unresolved pair would be called "distorted otherwise". The spread is the statistic's
    own standard deviation, √Σ(Re rᵢ·r̄ᵢ₊₁)², equally blind to how the noise varies.
    """
    residual = np.asarray(residual, dtype=complex)
    products = (residual[:-1] * np.conj(residual[1:])).real
    return float(products.sum()), float(np.sqrt(np.sum(products**2)))


def _one_line(
    frequency: np.ndarray,
    s21: np.ndarray,
    single: ResonatorFit,
    mixture: MixtureFit | None,
    delta: float,
    threshold: float,
    problem: tuple[str, bool],
) -> NotchLines:
    """Keep one line; while a pair of lines is possible, κ's stderr reaches to its floor."""
    reason, pair_possible = problem
    floor = _kappa_floor(frequency, s21, single) if pair_possible else single.kappa
    stderr = max(single.kappa_stderr, single.kappa - floor)
    return NotchLines(
        single,
        mixture,
        single,
        delta,
        threshold,
        single.kappa,
        float(stderr),
        single.fr,
        single.fr_stderr,
        "one line: " + reason,
    )


def _kappa_floor(frequency: np.ndarray, s21: np.ndarray, single: ResonatorFit) -> float:
    """Smallest κ that two unresolved lines fit as well as one (within one unit of χ²).

    A pair of lines δ apart fitted by one line reads as a width κ·(1 + 5·p0·p1·(δ/κ)²), while
    its shape differs from a Lorentzian only at order δ⁴: the one-line κ is an upper end,
    and how far below it the truth may lie is what the data cannot exclude. Profile: at a
    fixed κ below the one-line value, the best pair split just enough to restore the width;
    the floor is where its χ² exceeds the one-line χ² by one unit (noise variance, scaled by
    the reduced χ² when the line misfits, as lmfit scales its covariance). Stops at κ/2.
    """
    unit = _unit(single) * max(single.redchi, 1.0)

    def excess(kappa: float) -> float:
        return _split_chisqr(frequency, s21, single, kappa) - single.result.chisqr - unit

    high, step = single.kappa, max(single.kappa_stderr, 1e-3 * single.kappa)
    low = high - step
    while excess(low) < 0:
        if low <= single.kappa / 2:
            return low
        high, step = low, 2 * step
        low = max(high - step, single.kappa / 2)
    return float(brentq(excess, low, high, xtol=max(single.kappa_stderr / 10, 1e-6 * high)))


def _split_chisqr(
    frequency: np.ndarray, s21: np.ndarray, single: ResonatorFit, kappa: float
) -> float:
    """Best χ² of two lines with κ held fixed, split to restore the one-line width."""
    spread = np.sqrt(max(single.kappa / kappa - 1.0, 1e-4) / (5 * 0.21))
    best = np.inf
    for sign in (1.0, -1.0):
        params = _mixture_parameters(frequency, single, sign * spread * kappa, kappa, False)
        try:
            result = _least_squares(_mixture_referenced, s21, params, frequency)
        except FitError:
            continue
        best = min(best, result.chisqr)
    return float(best)
