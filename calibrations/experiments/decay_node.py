"""The exponential-decay experiment shared by T1 and spin echo: a sequence, a delay, a decay.

Both drive at the calibrated qubit frequency with the calibrated π pulse, sweep the delay
from zero to a few expected decay times, and fit an exponential towards a free steady state.
The window is chosen from what is known (a subclass says what the expected decay time is)
and re-measured when the decay turns out not to be resolved in it. By default the delays are
chosen sequentially (`calibrations.adaptive`): a coarse batch, then batches placed where the
current fit says they pin the decay time most, until its relative stderr is within the gate's
limit with margin; `adaptive=False` measures the fixed grid of `points` instead. A faint
trace is given up only when the design's own prediction says the budget cannot reach the
goal (`adaptive.designed_shortfall`), not by the √shots law on its coarse stderrs. When
physics bounds the decay (an echo's 2·T1, `longest_decay`) the fit is held within twice the
bound, so a faint trace cannot run off to a decay far beyond its window, and the gate
rejects a decay beyond 1.5× it. The gate
checks the fit (χ² against the repeat noise, relative stderr, contrast) and that the decay
time sits inside the window with margin, so a decay far longer than the window is never
reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import xarray as xr

from fluxcal.calibrations.adaptive import Budget, SequentialWindow, batch_coordinate, shot_budget
from fluxcal.calibrations.experiments.calibration_points import references
from fluxcal.calibrations.experiments.decay_fits import (
    FULL_SWING,
    CurveFit,
    fit_decay,
    project_trace,
    quality,
)
from fluxcal.calibrations.experiments.time_domain import (
    measure_repeats,
    prepare_drive,
    resolve_window,
    with_enough_shots,
)
from fluxcal.calibrations.fitting import FitError
from fluxcal.calibrations.gate import at_least, at_most
from fluxcal.calibrations.node import Analysis, Node
from fluxcal.calibrations.session import QubitSession

SWEEP = "delay"
#: Attribute holding the longest decay time physics allows (s), when one is known.
LONGEST = "longest_decay"


@dataclass
class DecayNode(Node):
    """Base of T1 and echo; subclasses set `sequence`, `produces` and `expected_decay`."""

    sequence: ClassVar[str]
    #: Largest decay amplitude in excited population (with calibration points).
    swing: ClassVar[float] = FULL_SWING

    window_factor: float = 5.0  # delays up to this many expected decay times
    ratio_range: tuple[float, float] = (3.0, 10.0)  # window/decay accepted without re-measuring
    points: int = 101
    shots: int = 1000
    budget: int = 16_000  # shots per point a noisy trace may take
    herald: bool = True
    max_delay: float | None = None  # s; None: the longest delay the drive takes (its validator)
    max_chi2: float = 3.0
    max_relative_error: float = 0.05
    min_snr: float = 8.0
    min_window_ratio: float = 2.0  # window/decay below this: the decay is not resolved
    min_points_per_decay: float = 4.0  # distinct delays within the first decay time
    adaptive: bool = True  # sequential delays (False: the fixed grid of `points`)
    adaptive_shots: int = 250  # shots per repeat of every sequentially chosen delay
    coarse_points: int = 24  # the first, uniform batch
    min_batch: int = 8
    stderr_margin: float = 1.25  # stop at max_relative_error / this
    adaptive_budget: int = 3_200_000  # shots (both repeats), as the fixed grid's 16k per point
    max_batches: int = 12
    #: With a physical bound on the decay (`longest_decay`): the fit may reach this many times
    #: it, the gate accepts at most `max_bound_ratio` times it (the bound's own error).
    bound_margin: float = 2.0
    max_bound_ratio: float = 1.5

    @property
    def key(self) -> str:
        return self.produces[0]

    def expected_decay(self, session: QubitSession) -> float:
        """Decay time (s) to size the first window from."""
        raise NotImplementedError

    def longest_decay(self, session: QubitSession) -> float:
        """The longest decay time (s) physics allows from what is calibrated (inf: no bound)."""
        return np.inf

    def acquire(self, session: QubitSession) -> xr.Dataset:
        frequency = session.value("qubit_frequency")
        pi_amplitude = session.value("pi_amplitude")
        duration = session.pi_duration()
        prepare_drive(
            session,
            self.sequence,
            self.shots,
            frequency=frequency,
            amplitude=pi_amplitude,
            duration=duration,
            herald=self.herald,
        )
        guess = self.expected_decay(session)
        attrs = {
            "experiment": self.name,
            "qubit": session.qubit,
            "sequence": self.sequence,
            "drive_frequency": frequency,
            "pi_amplitude": pi_amplitude,
            "pi_duration": duration,
            "expected_decay": guess,
            "herald": int(self.herald),
            "shots": self.shots,
        }
        longest = self.longest_decay(session)
        if np.isfinite(longest):
            attrs[LONGEST] = longest

        if self.adaptive:
            return self._acquire_sequentially(session, guess, attrs)

        def measure(window: float) -> xr.Dataset:
            delays = np.linspace(0.0, window, self.points)
            iq = measure_repeats(session, self.name, SWEEP, delays)
            shots = int(session.channel("readout").shots())
            return xr.Dataset({"iq": iq}, attrs={**attrs, "shots": shots})

        data = resolve_window(
            measure,
            self._decay_or_nan,
            guess,
            self.window_factor,
            self.ratio_range,
            session.upper_limit("drive", "delay", self.max_delay),
        )
        window = float(data[SWEEP].values.max())
        return with_enough_shots(session, measure, data, window, self.analyse, self.budget)

    def _acquire_sequentially(self, session: QubitSession, guess: float, attrs: dict) -> xr.Dataset:
        """Batches of delays chosen by the current fit until T1/T2 is known well enough."""
        session.configure(readout={"shots": self.adaptive_shots})
        design = SequentialWindow(
            measure=lambda _window, delays: measure_repeats(session, self.name, SWEEP, delays),
            fit=lambda iq: self._fit(iq[SWEEP].values, iq.values, longest=attrs.get(LONGEST)),
            goals=self._stderr_goals,
            sweep=SWEEP,
            shots_per_point=self.adaptive_shots,
            coarse_points=self.coarse_points,
            min_batch=self.min_batch,
            margin=self.stderr_margin,
            budget=Budget(self.adaptive_budget, self.max_batches),
            lacking=self._lacking_delays,
            decay="decay",
            predict=True,
            window_factor=self.window_factor,
            ratio_range=self.ratio_range,
            max_window=session.upper_limit("drive", "delay", self.max_delay),
        )
        iq = design.run(self.window_factor * guess)
        batches = int(iq[batch_coordinate(SWEEP)].values.max()) + 1
        return xr.Dataset(
            {"iq": iq},
            attrs={
                **attrs,
                "shots": self.adaptive_shots,
                "batches": batches,
                "shots_needed": design.needed,
                "shots_budget": self.adaptive_budget,
            },
        )

    def _stderr_goals(self, fit: CurveFit) -> dict[str, float]:
        """The stderrs the gate needs: the decay's relative one, and the contrast's."""
        return {
            "decay": self.max_relative_error * abs(fit.value("decay")[0]),
            "amplitude": abs(fit.value("amplitude")[0]) / self.min_snr,
        }

    def _lacking_delays(self, fit: CurveFit, iq: xr.DataArray) -> np.ndarray:
        """Delays spread over the first decay time when it holds fewer than the gate needs
        (a coarse batch over a window much longer than the decay leaves it unresolved)."""
        decay = fit.value("decay")[0]
        delays = iq[SWEEP].values
        if np.unique(delays[(delays > 0) & (delays <= decay)]).size >= self.min_points_per_decay:
            return np.empty(0)
        spread = np.linspace(0.0, decay, int(self.min_points_per_decay) + 2)[1:-1]
        return spread[~np.isin(spread, delays)]

    def _fit(
        self,
        delays: np.ndarray,
        iq: np.ndarray,
        calibration: tuple[complex, complex] | None = None,
        longest: float | None = None,
    ) -> CurveFit:
        """The exponential fit; with a physical bound on the decay, the fit's own bound is
        `bound_margin` × it (room for the error of what the bound comes from)."""
        trace = project_trace(delays, iq, calibration)
        guess = float(np.ptp(trace.x)) / self.window_factor
        bound = np.inf if longest is None else self.bound_margin * longest
        return fit_decay(trace, decay_guess=guess, swing=self.swing, longest=bound)

    def _decay_or_nan(self, data: xr.Dataset) -> float:
        try:
            return self.analyse(data).values[self.key][0]
        except FitError:
            return float("nan")

    def analyse(self, data: xr.Dataset) -> Analysis:
        longest = data.attrs.get(LONGEST)
        fit = self._fit(data[SWEEP].values, data["iq"].values, references(data), longest)
        trace = fit.trace
        window = float(np.ptp(trace.x))
        decay = fit.value("decay")
        resolved = np.unique(trace.x[(trace.x > 0) & (trace.x <= decay[0])]).size
        criteria = quality(
            fit, f"{self.name} fit", "decay", self.max_chi2, self.max_relative_error, self.min_snr
        )
        criteria += [
            at_least(f"delay window / {self.key}", window / decay[0], self.min_window_ratio),
            at_least(f"delays within one {self.key}", resolved, self.min_points_per_decay),
        ]
        if longest is not None:
            bound_ratio = decay[0] / longest
            criteria.append(
                at_most(f"{self.key} / physical bound", bound_ratio, self.max_bound_ratio)
            )
        if not all(c.passed for c in criteria):  # the cause of a rejection, never a new one
            criteria += shot_budget(data.attrs, "shots", "trace")
        fit_x, fit_y = fit.curve()
        return Analysis(
            values={self.key: decay},
            criteria=criteria,
            report=fit.report(),
            fit=fit.result,
            curves={
                "x": trace.x * 1e6,
                "y": trace.y,
                "fit_x": fit_x * 1e6,
                "fit_y": fit_y,
                "xlabel": "delay (µs)",
                "ylabel": trace.ylabel,
            },
        )
