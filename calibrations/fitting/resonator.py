"""Resonator line shapes with the measurement environment: cable delay, gain and Fano asymmetry.

Model (Khalil et al., J. Appl. Phys. 111, 054510 (2012); Probst et al., Rev. Sci. Instrum.
86, 024706 (2015)) for a notch-coupled resonator:

    S21(f) = a·e^{iα}·e^{−2πi·f·τ} · [1 − (Ql/|Qc|)·e^{iφ} / (1 + 2i·Ql·(f/fr − 1))]

and, for a resonator measured in reflection, the same with twice the coupling term. A symmetric
Lorentzian dip is not enough on real data: the cable delay τ winds the phase, the line adds a
complex gain, and an impedance mismatch (φ ≠ 0) makes the dip asymmetric. The internal quality
factor uses the diameter correction 1/Qi = 1/Ql − cos(φ)/|Qc|.

The fit never needs a starting point from the user: the delay is found as the value that makes
the data most circular, an algebraic circle fit gives the centre and radius, the phase around
the centre gives fr and Ql, the off-resonant point gives the gain, and a final least-squares fit
of the full complex model gives every parameter with a standard error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import lmfit
import numpy as np
from scipy.optimize import least_squares, minimize_scalar

from calibrations.fitting.errors import FitError

Kind = Literal["notch", "reflection"]

#: Coupling-term multiplier: a reflection circle has twice the diameter of a notch circle.
_COUPLING_FACTOR: dict[str, float] = {"notch": 1.0, "reflection": 2.0}
#: Fewest points for which the seven-parameter complex model is meaningful.
_MIN_POINTS = 20
#: Default minimum signal-to-noise ratio (circle diameter over noise per quadrature); below
#: it the "resonance" is indistinguishable from a noise fluctuation.
DEFAULT_MIN_SNR = 5.0


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
    """Complex S21 of a notch-coupled resonator with environment (Probst et al. 2015, eq. 1)."""
    return _line_shape(frequency, fr, Ql, Qc, phi, a, alpha, delay, 0.0, "notch")


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
    return _line_shape(frequency, fr, Ql, Qc, phi, a, alpha, delay, 0.0, "reflection")


def _line_shape(
    frequency: np.ndarray,
    fr: float,
    Ql: float,
    Qc: float,
    phi: float,
    a: float,
    alpha: float,
    delay: float,
    f_ref: float,
    kind: Kind,
) -> np.ndarray:
    """Line shape with the delay phase referred to f_ref.

    Referring the delay to a frequency inside the window decorrelates τ from α (otherwise
    α absorbs 2π·f·τ ≈ thousands of radians and the fit is badly conditioned).
    """
    f = np.asarray(frequency, dtype=float)
    environment = a * np.exp(1j * alpha) * np.exp(-2j * np.pi * (f - f_ref) * delay)
    coupling = _COUPLING_FACTOR[kind] * (Ql / Qc) * np.exp(1j * phi)
    return environment * (1.0 - coupling / (1.0 + 2j * Ql * (f / fr - 1.0)))


def _notch_referenced(frequency, fr, Ql, Qc, phi, a, alpha_ref, delay, f_ref):
    """lmfit model function (lmfit reads parameter names from the signature)."""
    return _line_shape(frequency, fr, Ql, Qc, phi, a, alpha_ref, delay, f_ref, "notch")


def _reflection_referenced(frequency, fr, Ql, Qc, phi, a, alpha_ref, delay, f_ref):
    """lmfit model function (lmfit reads parameter names from the signature)."""
    return _line_shape(frequency, fr, Ql, Qc, phi, a, alpha_ref, delay, f_ref, "reflection")


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


def estimate_delay(frequency: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """Cable delay (value, stderr) that makes the data most circular (Probst et al. 2015).

    A first value comes from the phase slopes of the outer fifths of the window (mostly away
    from the resonance); the resonance's own phase excursion biases it, so a grid search and
    a least-squares refinement minimise the radial scatter around the fitted circle. The
    stderr comes from the Jacobian of the radial residuals.
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
    delay = float(
        minimize_scalar(
            scatter,
            bounds=(best - step, best + step),
            method="bounded",
            options={"xatol": 1e-6 / span},
        ).x
    )
    return delay, _delay_stderr(frequency, z, delay, 1e-3 / span)


def _delay_stderr(frequency: np.ndarray, z: np.ndarray, delay: float, h: float) -> float:
    """Standard error of the circularity delay from a central-difference Jacobian."""
    residual = _circle_residual(frequency, z, delay)
    upper = _circle_residual(frequency, z, delay + h)
    lower = _circle_residual(frequency, z, delay - h)
    jac = (upper - lower) / (2 * h)
    dof = max(len(frequency) - 4, 1)
    variance = float(residual @ residual) / dof / max(float(jac @ jac), np.finfo(float).tiny)
    return float(np.sqrt(variance))


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
    """Result of a resonator fit: parameters with standard errors and fit-quality figures.

    Frequencies and κ in Hz, delay in s, angles in rad. `kappa` = fr/Ql is the full
    linewidth (κ/2π in Hz). `snr` is the circle diameter (dip depth) over the residual noise
    per quadrature, the figure a gate should threshold. `alpha` follows the convention of the
    model formula (phase of the gain at f = 0), wrapped to (−π, π].
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
    alpha: float
    alpha_stderr: float
    redchi: float
    noise: float
    snr: float

    def best_fit(self, frequency: np.ndarray) -> np.ndarray:
        """Fitted complex response evaluated at any frequencies (Hz)."""
        return self.result.eval(frequency=np.asarray(frequency, dtype=float))


def fit_notch(
    frequency: np.ndarray,
    s21: np.ndarray,
    min_snr: float = DEFAULT_MIN_SNR,
    fit_delay: bool = False,
) -> ResonatorFit:
    """Fit a notch-coupled resonator (S21) from the data alone; FitError if there is none."""
    return fit_resonator(frequency, s21, "notch", min_snr, fit_delay)


def fit_reflection(
    frequency: np.ndarray,
    s11: np.ndarray,
    min_snr: float = DEFAULT_MIN_SNR,
    fit_delay: bool = False,
) -> ResonatorFit:
    """Fit a resonator measured in reflection (S11) from the data alone."""
    return fit_resonator(frequency, s11, "reflection", min_snr, fit_delay)


def fit_resonator(
    frequency: np.ndarray,
    response: np.ndarray,
    kind: Kind = "notch",
    min_snr: float = DEFAULT_MIN_SNR,
    fit_delay: bool = False,
) -> ResonatorFit:
    """Circle-fit initial guesses, then a least-squares fit of the full complex model.

    By default the cable delay stays at the value that makes the data most circular (as in
    Probst et al.): in a window of a few linewidths the delay trades off against Ql, and
    line-shape distortions near resonance (frequency jitter, weak nonlinearity) then pull a
    free delay and bias Ql by several percent. `fit_delay=True` frees it in the final fit.

    Raises FitError when the window holds no resolvable resonance: too few points, fit not
    converged, fr outside the window, a linewidth narrower than the frequency step or wider
    than the window, or a signal-to-noise ratio below `min_snr`.
    """
    frequency, response = _clean(frequency, response)
    delay, delay_stderr = estimate_delay(frequency, response)
    params = initial_parameters(frequency, response, kind, delay)
    params["delay"].set(vary=fit_delay)
    model = lmfit.Model(_MODEL_FUNCTIONS[kind], independent_vars=["frequency"])
    try:
        result = model.fit(response, params, frequency=frequency)
    except ValueError as exc:  # lmfit refuses NaN model values, e.g. Ql driven to 0
        raise FitError(f"no resonance found: least squares failed ({exc})") from exc
    fit = _summarise(result, kind, response, None if fit_delay else delay_stderr)
    _check(fit, frequency, min_snr)
    return fit


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
    """
    flat = remove_delay(frequency, z, delay)
    circle = fit_circle(flat)
    phase = fit_phase(frequency, flat, circle)
    off_resonant = circle.centre + circle.radius * np.exp(1j * (phase.theta0 + np.pi))
    normalised_centre = circle.centre / off_resonant
    normalised_radius = circle.radius / abs(off_resonant)
    qc = _COUPLING_FACTOR[kind] * phase.Ql / (2 * normalised_radius)

    params = lmfit.Parameters()
    params.add("f_ref", value=float(frequency[0]), vary=False)
    params.add("fr", value=phase.fr, min=frequency[0], max=frequency[-1])
    params.add("Ql", value=phase.Ql, min=0)
    params.add("Qc", value=qc, min=0)
    params.add("phi", value=float(np.angle(1 - normalised_centre)), min=-np.pi, max=np.pi)
    params.add("a", value=abs(off_resonant), min=0)
    params.add("alpha_ref", value=float(np.angle(off_resonant)))
    params.add("delay", value=delay)
    params.add("Qi", expr="1/(1/Ql - cos(phi)/Qc)")
    params.add("kappa", expr="fr/Ql")
    params.add("alpha", expr="alpha_ref + 2*pi*f_ref*delay")
    return params


def _estimate(params: lmfit.Parameters, name: str) -> tuple[float, float]:
    """(value, stderr) of a parameter; stderr is NaN when the covariance is not available."""
    p = params[name]
    stderr = p.stderr if p.stderr is not None else np.nan
    return float(p.value), float(stderr)


def _summarise(
    result: lmfit.model.ModelResult,
    kind: Kind,
    z: np.ndarray,
    fixed_delay_stderr: float | None,
) -> ResonatorFit:
    """Collect values, standard errors, noise and SNR into a ResonatorFit.

    A delay held fixed in the final fit keeps the standard error of its circularity fit.
    """
    p = result.params
    names = ("fr", "Ql", "Qc", "Qi", "kappa", "phi", "delay", "a", "alpha")
    values = {name: _estimate(p, name) for name in names}
    if fixed_delay_stderr is not None:
        values["delay"] = (values["delay"][0], fixed_delay_stderr)
    alpha, alpha_stderr = values.pop("alpha")
    residual = z - result.best_fit
    noise = float(np.sqrt(np.mean(np.abs(residual) ** 2) / 2))
    diameter = _COUPLING_FACTOR[kind] * p["a"].value * p["Ql"].value / p["Qc"].value
    fields = {}
    for name, (value, stderr) in values.items():
        fields[name], fields[f"{name}_stderr"] = value, stderr
    return ResonatorFit(
        result=result,
        kind=kind,
        alpha=float(np.angle(np.exp(1j * alpha))),
        alpha_stderr=alpha_stderr,
        redchi=float(result.redchi),
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
    if problems:
        raise FitError("no resonance found: " + "; ".join(problems))
