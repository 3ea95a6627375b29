"""Short check measurements for the drift check: a few points around what is stored.

Each probe measures one quantity near its calibrated value with a handful of points (the
full calibrations sweep wide ranges with ~100 points) and returns the estimate with its
standard error and the quality problems that make the data unusable ("bad data"). They
reuse the calibration nodes' acquisition conventions (drive at the operating point, two
repeats per trace for the noise) and fit models; they herald only where it pays.

- qubit frequency: two short Ramsey traces driven at stored ± δ; the pair of fringe
  frequencies fixes the offset with its sign (as in the Ramsey node's first step), and two
  fringes that disagree mean the qubit is not within ±δ of where it is expected; when a
  tolerance needs more precision, one long trace just off that estimate refines it;
- π amplitude: a Rabi cosine sampled at a few multiples of the stored π amplitude, up to 2.5;
- decay times (T1, echo): a few delays in units of the stored decay time;
- readout resonator: a narrow sweep of a few linewidths around the stored frequency;
- assignment fidelity: single shots of |0⟩ and |1⟩ read with the stored threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import curve_fit
from scipy.stats import f as f_distribution

from fluxcal.calibrations.experiments.decay_fits import (
    exponential,
    fit_ramsey,
    principal_axis,
    project,
    quality,
    rabi_cosine,
    scan_frequency,
)
from fluxcal.calibrations.experiments.ramsey import resolve_sign
from fluxcal.calibrations.experiments.single_shot import Discrimination, discriminate, rotate
from fluxcal.calibrations.experiments.time_domain import measure_repeats, prepare_drive
from fluxcal.calibrations.fitting import FitError, fit_notch
from fluxcal.calibrations.fitting.errors import FaintSignal
from fluxcal.calibrations.fitting.noise import effective_dof, profiled_noise, projection_shape
from fluxcal.calibrations.session import DEFAULT_READOUT, QubitSession

#: Shots per point of a probe's first look, and the most it may take (the fixed count the
#: probes used before they were sized by precision): a chip with a clear readout is checked
#: in a few device-seconds, a faint one gets the shots its tolerance needs.
FIRST_SHOTS = 50
MAX_SHOTS = 2000
#: The qubit-frequency probe's coarse look spreads over 64 points (two fringe traces of 32),
#: eight times an ordinary probe, and only has to be usable: it fixes the offset's sign and
#: size to a few kHz (4–6 kHz on the built-in and sampled chips at this count, 1.5 device-s
#: on the built-in) and the refined look (`refine_qubit_frequency_offset`) gives the
#: precision. A faint chip's coarse look gets 4× the shots, as every probe's.
RAMSEY_FIRST_SHOTS = FIRST_SHOTS // 4
#: Aim a little below the target: the next look's stderr scatters around its prediction.
_MARGIN = 1.3

#: Confidence of the chi-square test: a good fit fails it once in ten thousand checks (a
#: false "bad data" costs a recalibration; a glitch gives a χ² in the hundreds).
CHI2_CONFIDENCE = 0.9999


def chi2_limit(points: int, parameters: int, noise_dof: float | None = None) -> float:
    """Largest reduced chi-square a good fit of `points` reaches at CHI2_CONFIDENCE.

    The noise is itself estimated from the repeat differences, so the statistic follows an
    F distribution (points − parameters, noise_dof) rather than a chi-square: with eight
    points, three parameters and alike noise (`noise_dof` = points) the limit is ~26, with
    thirty-two and five ~4; eight points whose noise rests on five (`_fit_probe`), ~77.
    """
    dof = points if noise_dof is None else noise_dof
    return float(f_distribution.ppf(CHI2_CONFIDENCE, points - parameters, dof))


@dataclass(frozen=True)
class Estimate:
    """A probed value (SI) with its standard error and what is wrong with the data, if any."""

    value: float
    stderr: float
    problems: list[str] = field(default_factory=list)
    #: the problems are all "too little signal for the noise": more shots would help (a
    #: misfit, a glitch or a missing feature would not)
    faint: bool = False

    @property
    def usable(self) -> bool:
        return not self.problems and math.isfinite(self.value) and math.isfinite(self.stderr)


@dataclass
class Pool:
    """The looks a probe took at the same points, averaged by their shots.

    A look whose stderr fell short of its target is not thrown away: the next look adds
    its shots to it, and the fit sees the mean of all of them (each repeat's trace the mean
    of n₁ + n₂ + … shots, so the repeat difference still measures the noise of that mean).
    On the drift check's π-amplitude probe a first look missed its target half the time on
    the built-in chip; the second look then took 2–5× the first's shots on its own.
    """

    iq: np.ndarray | None = None
    shots: int = 0

    def add(self, iq: np.ndarray, shots: int) -> np.ndarray:
        """The traces of every look so far, with this one's (`shots` per point) added."""
        iq = np.asarray(iq, complex)
        if self.iq is not None:
            iq = (self.shots * self.iq + shots * iq) / (self.shots + shots)
        self.iq, self.shots = iq, self.shots + shots
        return iq


@dataclass(frozen=True)
class Allowance:
    """Device seconds a check's probes may spend in all, the looks up to `MAX_SHOTS`
    included, once a look at `MAX_SHOTS` cannot be judged (not usable, or less precise than
    `judged_stderr`), and the clock that counts them from the check's start
    (`calibrations.runner.device_clock`): probes that share one allowance share its
    seconds."""

    seconds: float
    clock: Callable[[], float]
    judged_stderr: float = math.inf

    def judges(self, estimate: Estimate) -> bool:
        """Whether a verdict can rest on `estimate` (more shots would only refine it)."""
        return estimate.usable and estimate.stderr <= self.judged_stderr

    def most(self, shots: int, look: int, look_s: float, spent_s: float, pooled: bool) -> int:
        """Shots per point the looks may reach in all, at the device time per shot of the
        last look (`look` shots in `look_s`) with `spent_s` spent so far: a pooled probe's
        looks add up to its total, another's next look measures the whole total again."""
        if look <= 0 or look_s <= 0:
            return 0
        per_shot = look_s / look
        if pooled:
            return int((self.seconds - spent_s) / per_shot) + shots
        return int((self.seconds - spent_s) / per_shot)


def to_precision(
    probe: Callable[[int], Estimate],
    target: float,
    first: int = FIRST_SHOTS,
    most: int = MAX_SHOTS,
    pooled: bool = False,
    allowance: Allowance | None = None,
) -> Estimate:
    """`probe(shots)` with as few shots as give a stderr ≤ `target`.

    A first look with `first` shots per point; when its stderr is above `target`, a new look
    with as many shots as the √shots law says reach it (2× to 16× more), and with 4× more
    when the look was too faint to use, up to `most`; with an `allowance`, a look at `most`
    that it cannot judge is followed by more, as many as its device seconds pay for. Any
    other problem (a misfit, a glitch) ends the probing at once: more shots would not cure
    it, and the verdict (bad data) sends the walk upstream. The last look is returned as it
    is, problems included.

    A `pooled` probe adds each look to the ones before (`Pool`) and estimates from all of
    them: the counts above are then the looks' total, and a look brings only the shots the
    total still lacks.
    """
    shots = look = first
    while True:
        start_s = allowance.clock() if allowance else 0.0
        estimate = probe(look)
        spent_s = allowance.clock() if allowance else 0.0  # by every probe of the check
        look_s = spent_s - start_s
        limit = most  # passed only by a look at `most` that cannot be judged
        if allowance is not None and shots >= most and not allowance.judges(estimate):
            limit = max(most, allowance.most(shots, look, look_s, spent_s, pooled))
        done = estimate.usable and estimate.stderr <= target
        hopeless = not estimate.usable and not estimate.faint
        if done or hopeless or shots >= limit:
            return estimate
        if estimate.usable:
            factor = float(np.clip((_MARGIN * estimate.stderr / target) ** 2, 2.0, 16.0))
        else:
            factor = 4.0
        wanted = min(int(np.ceil(shots * factor)), limit)
        look = wanted - shots if pooled else wanted
        shots = wanted


def _drive(
    session: QubitSession, sequence: str, shots: int, herald: bool | None = None, **settings: float
) -> None:
    """The stored drive at the operating point; heralded when it pays (`herald_pays`) unless
    `herald` says otherwise."""
    prepare_drive(
        session,
        sequence,
        shots,
        frequency=session.value("qubit_frequency"),
        duration=session.pi_duration(),
        herald=herald_pays(session) if herald is None else herald,
        **settings,
    )


def herald_pays(session: QubitSession) -> bool:
    """Whether a herald shortens a contrast probe at the stored thermal population p.

    A herald costs a second readout per shot and keeps the (1 − p) shots found in |0⟩;
    without it the contrast shrinks by (1 − 2p), so the shots a stderr needs grow by
    1/(1 − 2p)². Per device-second the herald wins when 2/(1 − p) < 1/(1 − 2p)², from
    p ≈ 0.16: a cold qubit is checked in half the time, a warm one keeps its herald. The
    probes fit a contrast's shape, never its size, so the choice does not bias them. An
    unknown population is heralded, as the calibrations do.
    """
    known = session.known.get("thermal_population")
    if known is None or not math.isfinite(known.value):
        return True
    p = min(max(float(known.value), 0.0), 0.5)
    return 2.0 * (1.0 - 2.0 * p) ** 2 < 1.0 - p


def qubit_frequency_offset(
    session: QubitSession,
    detuning: float = 2e6,
    fringes: float = 10.0,
    points: int = 32,
    shots: int = 1000,
    min_snr: float = 5.0,
    max_mismatch: float = 5.0,
) -> Estimate:
    """Qubit frequency − stored qubit_frequency (Hz) from Ramsey fringes at stored ± δ.

    The offset is found unambiguously while |offset| < δ·(1 − 1/fringes) and the faster
    fringe stays below the Nyquist frequency; beyond that the two fringes disagree (or
    vanish) and the estimate comes back with problems. The χ² limit is twice the F quantile:
    `project` clips outliers from its noise figure, which fattens the statistic's tail; a
    glitch still gives χ² ≫ 10.
    """
    reference = session.value("qubit_frequency")
    _drive(session, "ramsey", shots, amplitude=session.value("pi_amplitude"))
    delays = np.linspace(0.0, fringes / detuning, points)
    fits = []
    for sign in (1, -1):
        session.configure(drive={"frequency": reference + sign * detuning})
        iq = measure_repeats(session, "check_qubit_frequency", "delay", delays)
        fits.append(fit_ramsey(project(delays, iq.values), decay_guess=10 * delays[-1]))
    plus, minus = fits
    offset, stderr, mismatch = resolve_sign(
        detuning, plus.value("frequency"), minus.value("frequency")
    )
    problems, faint = _fringe_problems({"fringe +δ": plus, "fringe −δ": minus}, points, min_snr)
    if not mismatch <= max_mismatch:
        # Fringes too faint to fit place the qubit nowhere, so their disagreement stays "too
        # little signal" (`faint`: more shots tell); clear fringes that disagree are bad data.
        # Sampled chip 5006 (blob SNR ~2) read its undrifted qubit as moved at the first
        # look's 12 shots (fringe SNR 3.8 and 0.9) and recalibrated four nodes every hour.
        problems.append(
            f"the ±δ fringes disagree by {mismatch:.1f} stderr: the qubit is not within "
            f"±{detuning / 1e6:g} MHz of the stored frequency"
        )
    return Estimate(offset, stderr, problems, faint)


def _fringe_problems(fits: dict, points: int, min_snr: float) -> tuple[list[str], bool]:
    """The failed quality criteria of labelled Ramsey fringe fits, and whether they are all
    "too little signal" (faint: more shots help). The χ² limit is twice the F quantile:
    `project` clips outliers from its noise figure, which fattens the statistic's tail."""
    failed = [
        c
        for label, fit in fits.items()
        for c in quality(fit, label, "frequency", 2 * chi2_limit(points, 5), 0.05, min_snr)
        if not c.passed
    ]
    faint = bool(failed) and all("chi-square" not in c.name for c in failed)
    return [c.describe() for c in failed], faint


def refine_qubit_frequency_offset(
    session: QubitSession,
    coarse: Estimate,
    fringes: float = 5.0,
    points: int = 32,
    shots: int = 1000,
    min_snr: float = 5.0,
    decay_fraction: float = 0.25,
    max_disagreement: float = 5.0,
) -> Estimate:
    """Qubit frequency − stored qubit_frequency (Hz) from one long Ramsey trace driven just
    off the coarse estimate.

    A fringe's phase grows with the delay, so a trace `decay_fraction` of T2* long tells
    the frequency ~(length ratio)× more precisely per shot than the coarse look's few
    microseconds (0.4–1.4 kHz against 4–6 kHz on the built-in and sampled chips, at the
    same shots per point). The coarse look has already fixed the sign, so one trace does:
    driven at coarse + δ₂, with δ₂ at least 8 coarse stderr so the fringe cannot fold
    through zero, it shows `fringes` fringes over the trace. A refined value more than
    `max_disagreement` combined stderr from the coarse one means the two looks saw different
    qubits (a jump between them, a wrong sign): bad data, not faint.
    """
    reference = session.value("qubit_frequency")
    dephasing = session.value("T2_ramsey")
    spacing = max(8.0 * coarse.stderr, fringes / (decay_fraction * dephasing))
    _drive(session, "ramsey", shots, amplitude=session.value("pi_amplitude"))
    session.configure(drive={"frequency": reference + coarse.value + spacing})
    delays = np.linspace(0.0, fringes / spacing, points)
    iq = measure_repeats(session, "check_qubit_frequency", "delay", delays)
    fit = fit_ramsey(project(delays, iq.values), decay_guess=dephasing)
    fringe, stderr = fit.value("frequency")
    offset = coarse.value + spacing - fringe  # the drive sits `fringe` above the qubit
    problems, faint = _fringe_problems({"refined fringe": fit}, points, min_snr)
    disagreement = abs(offset - coarse.value) / math.hypot(coarse.stderr, stderr)
    if not problems and not disagreement <= max_disagreement:
        faint = False
        problems.append(
            f"the refined look lies {disagreement:.1f} stderr from the coarse one: the qubit "
            "moved between them or the coarse sign was wrong"
        )
    return Estimate(offset, stderr, problems, faint)


def _projected(iq: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Two repeats (2, n) of a short trace projected to a real signal, in units of its
    pooled noise, each point's variance from the repeat difference (one degree of freedom
    each) and the readout's variance alone: with few points the repeats are the only honest
    noise figure.

    The readout's (amplifier) noise is the same in every direction of the IQ plane, while
    the qubit's projection noise lies along the line between the states' levels, so the
    repeat difference across the projection axis measures the readout's share by itself.
    """
    iq = np.asarray(iq, complex)
    if not np.all(np.isfinite(iq)):
        raise FitError("trace has non-finite points (NaN or inf)")
    mean = iq.mean(axis=0)
    axis = principal_axis(mean).conjugate()
    y = ((mean - mean.mean()) * axis).real
    difference = (iq[0] - iq[1]) * axis / 2
    variance = difference.real**2
    noise = float(np.sqrt(np.mean(variance)))
    if not noise > 0:
        raise FitError("the two repeats are identical: no noise estimate")
    readout = float(np.mean(difference.imag**2))
    return y / noise, variance / noise**2, readout / noise**2


def _relaxation_levels(offset: float, amplitude: float) -> tuple[float, float]:
    """A relaxation's two state levels: it ends in the ground state at its offset."""
    return offset, offset + amplitude


def _swing_levels(offset: float, amplitude: float) -> tuple[float, float]:
    """A Rabi cosine's or an echo's two state levels: they swing about an equal mixture."""
    return offset - amplitude, offset + amplitude


@dataclass(frozen=True)
class _ProbeFit:
    """A probe trace's three-parameter fit (offset, amplitude, value), its reduced χ² and
    the degrees of freedom its noise figure rests on."""

    values: np.ndarray
    errors: np.ndarray
    chi2: float
    points: int
    noise_dof: float

    @property
    def max_chi2(self) -> float:
        return chi2_limit(self.points, self.values.size, self.noise_dof)

    def estimate(self, min_snr: float) -> Estimate:
        """The fitted value with its problems (the amplitude is in units of the noise)."""
        return _estimate(
            self.values[2], self.errors[2], self.chi2, self.max_chi2, abs(self.values[1]), min_snr
        )


def _fit_probe(model, x, y, variance: np.ndarray, floor: float, start, levels) -> _ProbeFit:
    """Least squares of a three-parameter model through a few points in units of their
    pooled noise, with errors and a χ² limit that allow for each point's own noise.

    On the trace the qubit's projection noise adds to the readout's, up to ~30× in variance
    at an equal mixture (a T1 probe of the built-in chip), so the pooled noise rests on the
    few points near the middle (~5 degrees of freedom of 8: a good fit failed the limit of
    eight ten times as often as it should), and those points are where a Rabi cosine's
    slope is steepest (its errors were 1.5× too small). The points' expected variances are
    the readout's floor plus the projection noise the fitted curve implies
    (`profiled_noise`); they set the errors (the sandwich covariance of the unweighted
    fit, whose weights one-degree estimates would make noisy) and the noise's degrees of
    freedom (`effective_dof`).
    """
    try:
        values, covariance = curve_fit(model, x, y, p0=start, absolute_sigma=True, method="trf")
    except (RuntimeError, ValueError) as error:
        raise FitError(f"{model.__name__} fit failed: {error}") from None
    shape = projection_shape(model(x, *values), *levels(values[0], values[1]))
    expected = profiled_noise(variance, shape, floor) ** 2
    jacobian = _jacobian(model, x, values)
    sandwich = covariance @ jacobian.T @ (expected[:, None] * jacobian) @ covariance
    errors = np.sqrt(np.clip(np.diag(sandwich), 0, np.inf))
    chi2 = float(np.sum((model(x, *values) - y) ** 2) / max(x.size - len(start), 1))
    return _ProbeFit(values, errors, chi2, x.size, effective_dof(expected))


def _jacobian(model, x: np.ndarray, values: np.ndarray) -> np.ndarray:
    """∂model/∂parameter at `values` by central differences, (points, parameters)."""
    columns = []
    for k, value in enumerate(values):
        step = 1e-6 * max(abs(float(value)), 1e-30)
        up, down = values.copy(), values.copy()
        up[k] += step
        down[k] -= step
        columns.append((model(x, *up) - model(x, *down)) / (2 * step))
    return np.column_stack(columns)


#: Where the π-amplitude probe samples its Rabi cosine, in stored π amplitudes. A point at
#: fraction f turns the qubit by f·π, so a relative error of the π amplitude moves its angle
#: f times as far: per shot, a projection-limited point tells the π amplitude with a Fisher
#: information ∝ f², and a readout-limited one ∝ f²·sin²(πf). The points therefore crowd
#: toward the Rabi node's own fine span (2.5 π amplitudes, within which the cosine was
#: calibrated), with 0, 1 and 2 to fix the two levels, and an uneven step so that no
#: cosine within the candidate range aliases onto the true one. Against the even
#: 0–1.75 grid it replaced, the same shots give 2.3–3.0× the information on the built-in
#: and four sampled chips, and honester errors ((value − truth)/stderr spread 1.04–1.05 against
#: 1.22–1.38 at 200 shots).
PI_AMPLITUDE_FRACTIONS = (0.0, 0.5, 1.0, 1.5, 1.75, 2.0, 2.25, 2.5)


def pi_amplitude(
    session: QubitSession,
    fractions: tuple[float, ...] = PI_AMPLITUDE_FRACTIONS,
    shots: int = 2000,
    min_snr: float = 5.0,
    pool: Pool | None = None,
) -> Estimate:
    """π amplitude (V) from a Rabi cosine sampled at fractions of the stored one; the
    fractions shrink together when the largest would pass the drive's full scale. With a
    `pool`, from this look and the pool's earlier ones."""
    stored = session.value("pi_amplitude")
    _drive(session, "rabi", shots, delay=0.0)
    fractions_arr = np.asarray(fractions, dtype=float)
    reach = session.upper_limit("drive", "amplitude") / (stored * fractions_arr.max())
    amplitudes = stored * fractions_arr * min(1.0, reach)
    iq = measure_repeats(session, "check_pi_amplitude", "drive_amplitude", amplitudes).values
    y, variance, floor = _projected(_pooled(iq, shots, pool))
    candidates = stored * np.linspace(0.5, 2.0, 151)
    guess = 0.5 / scan_frequency(amplitudes, y, 0.5 / candidates, free_phase=False)
    start = [float(y.mean()), float(y[0] - y.mean()), guess]
    return _probe_estimate(
        rabi_cosine, amplitudes, y, variance, floor, start, _swing_levels, min_snr
    )


def decay_time(
    session: QubitSession,
    parameter: str,
    sequence: str,
    multiples: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 6.0),
    shots: int = 1000,
    min_snr: float = 5.0,
    pool: Pool | None = None,
) -> Estimate:
    """A decay time (s) from a few delays in units of its stored value (`t1` or `echo`);
    with a `pool`, from this look and the pool's earlier ones."""
    stored = session.value(parameter)
    _drive(session, sequence, shots, amplitude=session.value("pi_amplitude"))
    delays = stored * np.asarray(multiples)
    iq = measure_repeats(session, f"check_{parameter}", "delay", delays).values
    y, variance, floor = _projected(_pooled(iq, shots, pool))
    start = [float(y[-1]), float(y[0] - y[-1]), stored]
    levels = _relaxation_levels if sequence == "t1" else _swing_levels
    return _probe_estimate(exponential, delays, y, variance, floor, start, levels, min_snr)


def _pooled(iq: np.ndarray, shots: int, pool: Pool | None) -> np.ndarray:
    """A look's traces, with the `pool`'s earlier looks when there is one."""
    return iq if pool is None else pool.add(iq, shots)


def _probe_estimate(model, x, y, variance, floor, start, levels, min_snr: float) -> Estimate:
    """`_fit_probe`'s estimate, or what a failed fit says of the trace (`_unfitted`)."""
    try:
        fit = _fit_probe(model, x, y, variance, floor, start, levels)
    except FitError as error:
        return _unfitted(y, min_snr, error)
    return fit.estimate(min_snr)


def _unfitted(y: np.ndarray, min_snr: float, error: FitError) -> Estimate:
    """A probe trace (in noise units) whose fit failed: too little signal (`faint`: more
    shots may show the curve) when it swings less than twice `min_snr` (a curve that just
    passes the amplitude criterion swings about that), else bad data.

    Sampled chip 5006 (blob SNR ~2): the daily echo check's first look, 50 shots of a trace
    that hardly rose above its noise, failed its fit, and the verdict (bad data) bought a
    2 700 device-s recalibration of an echo time that had not moved.
    """
    swing = float(np.ptp(y))
    problem = f"{error} (the trace swings {swing:.3g} noise deviations)"
    return Estimate(math.nan, math.nan, [problem], faint=swing < 2 * min_snr)


def _estimate(
    value: float, stderr: float, chi2: float, max_chi2: float, snr: float, min_snr: float
) -> Estimate:
    """A few-point fit's estimate with its problems; faint when the contrast alone falls
    short or the points leave the value unconstrained (the fit itself is good).

    Unconstrained: a zero error says no sampled point depends on the value, e.g. a decay
    fitted 100× shorter than the first non-zero delay onto one noisy point (sampled chip
    5006's T1 probe at 50 shots, one draw in 40: "T1 moved by −141 µs ± 0", out of spec).
    More shots show whether the curve really left the sampled range (then the probe ends
    with the problem and its node is recalibrated) or the noise made it.
    """
    misfit = not chi2 <= max_chi2
    problems = [f"reduced chi-square {chi2:.3g} > {max_chi2:.3g}"] if misfit else []
    if not snr >= min_snr:
        problems.append(f"signal-to-noise {snr:.3g} < {min_snr:g}")
    if not stderr > 0:
        problems.append("the sampled points leave the value unconstrained (zero error)")
    return Estimate(float(value), float(stderr), problems, faint=bool(problems) and not misfit)


def resonator_frequency(
    session: QubitSession,
    parameter: str,
    kappa: float,
    span: float = 5.0,
    points: int = 31,
    shots: int = 1000,
) -> Estimate:
    """Readout resonator dip (Hz) from `span` linewidths around the stored `parameter`."""
    stored = session.value(parameter)
    session.operating_point()
    session.configure(  # the resonator node's readout power: the dip moves with power
        readout={
            "shots": shots,
            "amplitude": DEFAULT_READOUT["amplitude"],
            "integration_time": DEFAULT_READOUT["integration_time"],
        },
        drive={"sequence": "none", "amplitude": 0.0},
    )
    frequencies = stored + kappa * span * np.linspace(-0.5, 0.5, points)
    data = session.measure("check_readout_frequency", "readout_frequency", frequencies)
    try:
        fit = fit_notch(frequencies, data["iq"].values)
    except FaintSignal as error:  # more shots may show the dip
        return Estimate(math.nan, math.nan, [str(error)], faint=True)
    except FitError as error:
        return Estimate(math.nan, math.nan, [str(error)])
    margin = min(fit.fr - frequencies[0], frequencies[-1] - fit.fr) / kappa
    problems = (
        []
        if margin >= 1.0
        else [f"the dip is {margin:.2f} linewidths from the edge of the window: not centred"]
    )
    return Estimate(fit.fr, fit.fr_stderr, problems)


def assignment_fidelity(
    session: QubitSession, shots: int = 2000, min_contrast: float = 0.6
) -> Estimate:
    """Assignment fidelity with the stored readout settings, angle and threshold.

    When even the best threshold on the same shots cannot tell |0⟩ from |1⟩ (a fidelity below
    `min_contrast`), the problem is upstream of the readout (the π pulse, the qubit
    frequency), so the data is reported as bad.
    """
    states = np.array([0.0, session.value("pi_amplitude")])
    session.operating_point()
    _drive(session, "rabi", shots, herald=True, delay=0.0)  # as the stored fidelity was measured
    data = session.measure("check_assignment_fidelity", "drive_amplitude", states, single_shot=True)
    iq0, iq1 = np.asarray(data["iq"].values, complex)
    if not (np.all(np.isfinite(iq0)) and np.all(np.isfinite(iq1))):
        return Estimate(math.nan, math.nan, ["shots have non-finite values"])
    angle = session.value("readout_angle")
    threshold = session.value("readout_threshold")
    stored = Discrimination(
        np.asarray(angle),
        np.asarray(threshold),
        np.asarray(np.mean(rotate(iq0, angle).real > threshold)),
        np.asarray(np.mean(rotate(iq1, angle).real <= threshold)),
        iq0.size,
        iq1.size,
    )
    best = float(discriminate(iq0, iq1).fidelity)
    problems = (
        []
        if best >= min_contrast
        else [
            f"even the best threshold reaches only F = {best:.3f} < {min_contrast:g}: "
            "the states are not told apart"
        ]
    )
    return Estimate(float(stored.fidelity), float(stored.fidelity_stderr), problems)
