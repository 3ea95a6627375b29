"""Ramsey: the qubit frequency corrected to well below a kilohertz, and T2* (T2_ramsey).

Two π/2 pulses separated by a delay, driven detuned on purpose so the fringe frequency is
|drive − qubit|. A fringe alone does not say on which side of the drive the qubit is, so:

1. short window, two drives at reference ± δ (δ larger than the expected error): the fringes
   F+ = |δ − x| and F− = |δ + x| have a single common solution for the error x, which fixes the
   frequency to a few hundred hertz with its sign;
2. long window of ~3 expected T2 (the last T2_ramsey, else sized from T1, else a generic
   guess; re-sized when the decay is not resolved), driven at the corrected frequency + a
   detuning giving a few fringes over the window — far larger than the error left after
   step 1, so its sign is known. Its fit gives T2_ramsey and the final frequency; the two
   windows must agree.

By default both steps are sequential (`adaptive=False` measures the fixed grids): the short
windows in batches until their frequency error is known to the long detuning over
`sign_margin` (`ramsey_sequential.ShortWindows`), the long window by the design of
`calibrations.adaptive` (a coarse batch of ~5 points per fringe, then batches placed by the
Fisher information of the damped-cosine fit) until T2's relative stderr and the frequency's
stderr reach the gate's limits with margin. The fixed grids spend 600–800 s, mostly on
precision nobody uses; this spends what the gate needs. Both give the same Dataset layout.

A recorded Ramsey trace from another stack usually has no ±δ pair: one fringe gives
|qubit − drive| and T2*, not the side of the drive the qubit is on. Its analysis
(`analyse_fringe`) reports both candidate frequencies and hands on T2_ramsey only: a
qubit_frequency whose sign is a guess would steer every later node to the wrong side.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr

from fluxcal.calibrations.adaptive import Budget, SequentialWindow, batch_coordinate, shot_budget
from fluxcal.calibrations.experiments.calibration_points import references
from fluxcal.calibrations.experiments.decay_fits import (
    CurveFit,
    fit_ramsey,
    project,
    project_trace,
    quality,
)
from fluxcal.calibrations.experiments.ramsey_sequential import (
    DETUNING,
    SHORT,
    ShortWindows,
    fringe_snr,
)
from fluxcal.calibrations.experiments.time_domain import (
    measure_repeats,
    prepare_drive,
    resolve_window,
    with_enough_shots,
)
from fluxcal.calibrations.fitting import FitError
from fluxcal.calibrations.gate import Criterion, at_least, at_most
from fluxcal.calibrations.node import Analysis, Node
from fluxcal.calibrations.session import QubitSession

SWEEP = "delay"


@dataclass
class Ramsey(Node):
    """Ramsey fringes at ±δ then over ~3·T2; produces qubit_frequency (Hz) and T2_ramsey (s)."""

    name = "ramsey"
    requires = ("pi_amplitude", "qubit_frequency", "readout_frequency", "flux_sweet_spot")
    produces = ("qubit_frequency", "T2_ramsey")

    short_detuning: float = 2e6  # Hz, at least; grows to 10× the known frequency stderr
    max_pulse_detuning: float = 0.3  # δ × pulse duration, beyond which pulses lose contrast
    short_fringes: float = 20.0  # fringes at δ in the short window
    short_points: int = 101
    t2_guess: float = 100e-6  # s, generic when no T2_ramsey is known
    window_factor: float = 3.0  # long window = this many expected T2
    ratio_range: tuple[float, float] = (2.0, 6.0)  # window/T2 accepted without re-measuring
    # Fringes over the long window. The short windows must know the frequency to its
    # detuning / sign_margin, so twice the fringes need a quarter of their shots; the
    # design does as well on a faster fringe (a Ramsey T2* to 4 %: ~4 % fewer points
    # at the optimum for 16 fringes than for 8).
    long_fringes: float = 16.0
    long_points: int = 101
    shots: int = 1000
    budget: int = 16_000  # shots per point a noisy long window may take
    herald: bool = True
    max_delay: float | None = None  # s; None: the longest delay the drive takes (its validator)
    max_chi2: float = 3.0
    max_relative_error: float = 0.05  # of T2_ramsey
    max_fringe_error: float = 0.01  # relative stderr of each short-window fringe frequency
    min_snr: float = 8.0
    min_window_ratio: float = 1.5  # window/T2 below this: the decay is not resolved
    max_disagreement: float = 5.0  # standard errors between the two frequency estimates
    max_frequency_stderr: float = 2e3  # Hz
    adaptive: bool = True  # sequential batches (False: the fixed grids of *_points)
    adaptive_shots: int = 250  # shots per repeat of every sequentially chosen long delay
    short_shots: int = 50  # shots per repeat of the sequential short windows' points
    long_coarse_points: int = 81  # the long window's first, uniform batch: ~5 per fringe
    min_batch: int = 8
    stderr_margin: float = 1.25  # stop at the gate's stderr limits / this
    sign_margin: float = 6.0  # long detuning / stderr of each short-window fringe frequency
    # Shots (both repeats) the long window may take: the stderr goals, not this cap, set
    # what it spends (~1 h of a 0.5 ms shot when the per-shot signal-to-noise is ~0.05).
    adaptive_budget: int = 8_000_000
    short_budget: int = 800_000  # shots (both detunings and repeats) of the short windows
    max_batches: int = 12

    def acquire(self, session: QubitSession) -> xr.Dataset:
        reference = session.value("qubit_frequency")
        duration = session.pi_duration()
        detuning = self.short_detuning_for(session.known["qubit_frequency"].stderr, duration)
        prepare_drive(
            session,
            "ramsey",
            self.shots,
            amplitude=session.value("pi_amplitude"),
            duration=duration,
            herald=self.herald,
        )
        attrs = {
            "experiment": self.name,
            "qubit": session.qubit,
            "reference_frequency": reference,
            "pi_amplitude": session.value("pi_amplitude"),
            "pi_duration": duration,
            "herald": int(self.herald),
            "shots": self.shots,
        }
        if self.adaptive:
            return self._acquire_sequentially(session, reference, detuning, attrs)
        short = np.linspace(0.0, self.short_fringes / detuning, self.short_points)
        fringes = []
        for sign in (1, -1):
            session.configure(drive={"frequency": reference + sign * detuning})
            fringes.append(measure_repeats(session, self.name, SWEEP, short).rename({SWEEP: SHORT}))
        short_data = xr.Dataset(
            {"iq_short": xr.concat(fringes, dim=DETUNING)},
            coords={DETUNING: [detuning, -detuning]},
            attrs=attrs,
        )
        try:
            (error, _), _ = self.short_window(short_data)
        except FitError:  # keep the reference; the analysis of this data will say why
            error = 0.0

        def measure(window: float) -> xr.Dataset:
            long_detuning = self.long_fringes / window
            drive = reference + error + long_detuning
            session.configure(drive={"frequency": drive})
            delays = np.linspace(0.0, window, self.long_points)
            iq = measure_repeats(session, self.name, SWEEP, delays)
            data = short_data.assign(iq=iq)
            data.attrs = {**attrs, "drive_frequency": drive, "long_detuning": long_detuning}
            data.attrs["long_shots"] = int(session.channel("readout").shots())
            return data

        data = resolve_window(
            measure,
            self._t2_or_nan,
            self.expected_t2(session),
            self.window_factor,
            self.ratio_range,
            session.upper_limit("drive", "delay", self.max_delay),
        )
        window = float(data[SWEEP].values.max())
        return with_enough_shots(session, measure, data, window, self.analyse, self.budget)

    def _acquire_sequentially(
        self, session: QubitSession, reference: float, detuning: float, attrs: dict
    ) -> xr.Dataset:
        """Short windows, then the long window, each to the precision its job needs."""

        def measure_short(delays: np.ndarray) -> xr.DataArray:
            fringes = []
            for sign in (1, -1):
                session.configure(drive={"frequency": reference + sign * detuning})
                iq = measure_repeats(session, self.name, SWEEP, delays)
                fringes.append(iq.rename({SWEEP: SHORT}))
            return xr.concat(fringes, dim=DETUNING).assign_coords({DETUNING: [detuning, -detuning]})

        short = ShortWindows(
            measure_short,
            lambda data: short_fits(data)[1:],
            self.short_fringes / detuning,
            self.short_points,
            self.min_batch,
            self.short_shots,
            Budget(self.short_budget, self.max_batches),
        )
        long: dict[str, float] = {}

        def measure_long(window: float, delays: np.ndarray) -> xr.DataArray:
            if long.get("window") != window:  # a new window: its drive from the short ones
                long_detuning = self.long_fringes / window
                precision = min(
                    self.max_fringe_error * detuning,
                    math.sqrt(2) * long_detuning / self.sign_margin,
                )
                session.configure(readout={"shots": self.short_shots})
                short.refine(lambda fit, precision=precision: self._short_shortfall(fit, precision))
                try:
                    (error, _), _ = self.short_window(short.dataset())
                except FitError:  # keep the reference; the analysis will say why
                    error = 0.0
                long.update(
                    window=window, detuning=long_detuning, drive=reference + error + long_detuning
                )
            session.configure(
                drive={"frequency": long["drive"]}, readout={"shots": self.adaptive_shots}
            )
            return measure_repeats(session, self.name, SWEEP, delays)

        design = self.long_window_design(
            measure_long,
            lambda iq: long_window_fit(xr.Dataset({"iq": iq}), long["detuning"]),
            session.upper_limit("drive", "delay", self.max_delay),
        )
        iq = design.run(self.window_factor * self.expected_t2(session))
        data = short.dataset().assign(iq=iq)
        data.attrs = {
            **attrs,
            "long_shots_needed": design.needed,
            "long_shots_budget": self.adaptive_budget,
            "shots": self.short_shots,
            "long_shots": self.adaptive_shots,
            "drive_frequency": long["drive"],
            "long_detuning": long["detuning"],
            "batches": int(iq[batch_coordinate(SWEEP)].values.max()) + 1,
        }
        return data

    def long_window_design(
        self,
        measure: Callable[[float, np.ndarray], xr.DataArray],
        fit: Callable[[xr.DataArray], CurveFit],
        max_window: float,
    ) -> SequentialWindow:
        """The sequential design of the long window: stderr goals from the gate, a window
        that restarts when the decay does not fit it (re-sized once designed only below the
        gate's floor, `min_window_ratio`)."""
        return SequentialWindow(
            measure=measure,
            fit=fit,
            goals=lambda fit: {
                "decay": self.max_relative_error * abs(fit.value("decay")[0]),
                "frequency": self.max_frequency_stderr,
                "amplitude": abs(fit.value("amplitude")[0]) / self.min_snr,
            },
            sweep=SWEEP,
            shots_per_point=self.adaptive_shots,
            coarse_points=self.long_coarse_points,
            min_batch=self.min_batch,
            margin=self.stderr_margin,
            budget=Budget(self.adaptive_budget, self.max_batches),
            decay="decay",
            window_factor=self.window_factor,
            ratio_range=self.ratio_range,
            max_window=max_window,
            restart=True,
            min_ratio=self.min_window_ratio,
        )

    def expected_t2(self, session: QubitSession) -> float:
        """The T2* the first long window is sized for: the last T2_ramsey; else, from a
        calibrated T1, the value whose window holds the longest T2* physics allows (2·T1) at
        the low end of `ratio_range`; else the generic guess.

        The long window restarts when its decay does not fit it, and a restart drops every
        shot taken (another detuning is another experiment): ~40 device-s on a chip whose
        T2* is a few times the generic guess. Sized from T1, the window is accepted as it is
        for any T2* from 2·T1 down to 2·T1·ratio_range[0]/ratio_range[1].
        """
        t1 = session.get("T1", math.nan)
        guess = self.t2_guess
        if math.isfinite(t1):
            guess = self.ratio_range[0] * 2 * t1 / self.window_factor
        return session.get("T2_ramsey", guess)

    def _short_shortfall(self, fit: CurveFit, precision: float) -> float:
        """How far a short-window fringe is from what the long window and the gate need
        (margin included; ≤ 1 when there): its frequency to `precision`, its fringe to
        `min_snr` (`fringe_snr`)."""
        evidence = self.min_snr / max(fringe_snr(fit), 1e-12)
        return self.stderr_margin * max(fit.value("frequency")[1] / precision, evidence)

    def short_detuning_for(self, known_stderr: float, pulse_duration: float) -> float:
        """δ of the short window: 10× the known frequency uncertainty, within the pulse band.

        A detuning beyond ~0.3/pulse duration leaves the π/2 pulses too far off resonance to
        rotate the qubit; the ±δ pair still resolves errors up to ~1.5·δ.
        """
        wanted = 10 * known_stderr if math.isfinite(known_stderr) else 0.0
        return min(max(self.short_detuning, wanted), self.max_pulse_detuning / pulse_duration)

    def _t2_or_nan(self, data: xr.Dataset) -> float:
        try:
            return long_window_fit(data).value("decay")[0]
        except FitError:
            return float("nan")

    def analyse(self, data: xr.Dataset) -> Analysis:
        if "iq_short" not in data:
            return self.analyse_fringe(data)
        (error, error_stderr), short_criteria = self.short_window(data)
        fit = long_window_fit(data)
        fringe, fringe_stderr = fit.value("frequency")
        frequency = float(data.attrs["drive_frequency"]) - fringe
        short_frequency = float(data.attrs["reference_frequency"]) + error
        t2 = fit.value("decay")
        window = float(np.ptp(fit.trace.x))
        disagreement = abs(frequency - short_frequency) / math.hypot(fringe_stderr, error_stderr)
        criteria = short_criteria + quality(
            fit, "long window", "decay", self.max_chi2, self.max_relative_error, self.min_snr
        )
        criteria += [
            at_least("delay window / T2_ramsey", window / t2[0], self.min_window_ratio),
            at_most("short vs long window frequency (stderr)", disagreement, self.max_disagreement),
            at_most("qubit_frequency stderr (Hz)", fringe_stderr, self.max_frequency_stderr),
            *shot_budget(data.attrs),
        ]
        return Analysis(
            values={
                "qubit_frequency": (frequency, fringe_stderr),
                "T2_ramsey": t2,
                "frequency_correction": (
                    frequency - float(data.attrs["reference_frequency"]),
                    fringe_stderr,
                ),
            },
            criteria=criteria,
            report=fit.result.fit_report(),
            fit=fit.result,
            curves=fringe_curves(fit, "projected IQ (V)"),
        )

    def analyse_fringe(self, data: xr.Dataset) -> Analysis:
        """One fringe without its ±δ pair: T2_ramsey, |detuning| and both candidate qubit
        frequencies (when the data record the drive frequency), no qubit_frequency."""
        fit = long_window_fit(data)
        fringe = fit.value("frequency")
        t2 = fit.value("decay")
        window = float(np.ptp(fit.trace.x))
        criteria = quality(
            fit, "ramsey fringe", "decay", self.max_chi2, self.max_relative_error, self.min_snr
        )
        criteria.append(at_least("delay window / T2_ramsey", window / t2[0], self.min_window_ratio))
        values = {"T2_ramsey": t2, "fringe_frequency": fringe}
        note = (
            f"sign of the detuning unknown (no ±δ pair): the fringe gives |qubit − drive| = "
            f"{fringe[0]:.6g} Hz, so the qubit is at drive − or + that; qubit_frequency is "
            f"not handed on"
        )
        if "drive_frequency" in data.attrs:
            drive = float(data.attrs["drive_frequency"])
            # a drive frequency read from a rounded label is known to its last digit only
            resolution = float(data.attrs.get("drive_frequency_resolution", 0.0))
            stderr = math.hypot(fringe[1], resolution / math.sqrt(12))
            values["qubit_frequency_below_drive"] = (drive - fringe[0], stderr)
            values["qubit_frequency_above_drive"] = (drive + fringe[0], stderr)
            note += f": {drive - fringe[0]:.10g} Hz or {drive + fringe[0]:.10g} Hz"
        return Analysis(
            values=values,
            criteria=criteria,
            report=f"note: {note}\n{fit.report()}",
            fit=fit.result,
            curves=fringe_curves(fit, fit.trace.ylabel),
        )

    def short_window(self, data: xr.Dataset) -> tuple[tuple[float, float], list[Criterion]]:
        """Qubit − reference frequency (Hz, stderr) from the ±δ fringes, with its criteria."""
        detuning, plus, minus = short_fits(data)
        error, stderr, mismatch = resolve_sign(
            detuning, plus.value("frequency"), minus.value("frequency")
        )
        criteria = [at_most("±δ fringes mismatch (stderr)", mismatch, self.max_disagreement)]
        for label, fit in (("short window +δ", plus), ("short window −δ", minus)):
            chi2, precision, _ = quality(
                fit, label, "frequency", self.max_chi2, self.max_fringe_error, self.min_snr
            )
            # the amplitude at zero delay trades off against a decay the window hardly sees
            name = f"{label} signal-to-noise of the fitted fringe"
            criteria += [chi2, precision, at_least(name, fringe_snr(fit), self.min_snr)]
        return (error, stderr), criteria


def long_window_fit(data: xr.Dataset, long_detuning: float | None = None) -> CurveFit:
    """Damped-cosine fit of the long window.

    A sequential trace's delays cluster at the fringe phases that inform most, which aliases
    the fringe at harmonics; its fringe is the long detuning (± the short windows' small
    error), so the periodogram stops at twice that detuning.
    """
    trace = project_trace(data[SWEEP].values, data["iq"].values, references(data))
    if long_detuning is None and batch_coordinate(SWEEP) in data["iq"].coords:
        long_detuning = float(data.attrs["long_detuning"])
    fastest = None if long_detuning is None else 2 * long_detuning
    return fit_ramsey(trace, decay_guess=float(np.ptp(trace.x)) / 3, max_frequency=fastest)


def short_fits(data: xr.Dataset) -> tuple[float, CurveFit, CurveFit]:
    """δ and the fringe fits of the short window at reference + δ and reference − δ."""
    detuning = float(np.abs(data[DETUNING]).max())
    fits = []
    for signed in (detuning, -detuning):
        iq = data["iq_short"].sel({DETUNING: signed}).transpose("repeat", SHORT)
        trace = project(data[SHORT].values, iq.values)
        # |δ ∓ error| stays below 2δ for every error the pair resolves; a sequential trace's
        # dense interleaved delays would otherwise scan up to a needlessly high Nyquist
        fastest = 2 * detuning if batch_coordinate(SHORT) in iq.coords else None
        fits.append(fit_ramsey(trace, 10 * float(np.ptp(trace.x)), fastest))
    return detuning, fits[0], fits[1]


def resolve_sign(
    detuning: float, plus: tuple[float, float], minus: tuple[float, float]
) -> tuple[float, float, float]:
    """Qubit − reference frequency from the fringes at reference ± detuning.

    F+ = |δ − x| allows x ∈ {δ − F+, δ + F+} and F− = |δ + x| allows x ∈ {F− − δ, −F− − δ};
    the true x is in both. Returns (x, stderr, mismatch in standard errors of the best pair).
    """
    (f_plus, e_plus), (f_minus, e_minus) = plus, minus
    stderr = math.hypot(e_plus, e_minus)
    candidates = [
        (a, b)
        for a in (detuning - f_plus, detuning + f_plus)
        for b in (f_minus - detuning, -f_minus - detuning)
    ]
    a, b = min(candidates, key=lambda pair: abs(pair[0] - pair[1]))
    return (a + b) / 2, stderr / 2, abs(a - b) / stderr if stderr > 0 else math.inf


def fringe_curves(fit: CurveFit, ylabel: str) -> dict:
    """The plotted trace and its fit, delays in µs."""
    fit_x, fit_y = fit.curve()
    return {
        "x": fit.trace.x * 1e6,
        "y": fit.trace.y,
        "fit_x": fit_x * 1e6,
        "fit_y": fit_y,
        "xlabel": "delay (µs)",
        "ylabel": ylabel,
    }
