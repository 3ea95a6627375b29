"""Sequential design of delays: measure where the next shots shrink the wanted stderrs most.

A fixed grid spends most of its shots where a decay or a fringe tells little about the decay
time (a T1 trace long after it has decayed, every point of a fringe equally) and keeps
averaging after the target uncertainty is reached. Here a trace is measured in batches:

1. a coarse uniform batch over the expected window, fitted with the node's own lmfit model;
2. while the fitted stderrs of the parameters of interest are above their goals, the next
   batch of delays is chosen greedily from a fine candidate grid by the Fisher information
   the current fit predicts (a c-optimal design: each point is the one whose measurement
   would reduce Σ var(θ_q)/goal_q² most, given the current covariance and every point
   picked so far, so the design is a local Bayesian update with the current fit as prior;
   for an exponential this puts points near 0, around 1–1.5 τ and at the tail);
3. each batch is as large as the prediction says the goals need (with the node's margin),
   at least `min_batch` points and at most as many as already measured, so the estimate the
   design relies on is refitted before most of the shots are spent.

Every point has the same shots and two repeats, so the repeat-difference noise and the χ²
test of the fit mean what they mean on a fixed grid, and the reported value is still the
lmfit fit of all the collected data. The loop stops at the goals, or when the shot budget or
the batch count is spent; the gate then judges the data as it would a fixed grid's.

A faint trace (a weakly dispersive readout) first has to show its signal: a fit whose
amplitude is within a few stderrs of zero (`TRUST_SNR`; noise alone fits 1–3) says nothing
about the decay, so neither the window's size nor the design is taken from it. More of the
coarse grid is measured instead, each batch sized by the √shots law from the measured
signal-to-noise, until the signal stands out; a window is re-sized only when the decay
lies outside its accepted range by more than its stderr (taken on the rate 1/decay, which
a decay barely begun in its window bounds symmetrically). A window that restarts (Ramsey)
is not shrunk once the design has placed shots in it (the gate accepts a long window), but
it is still widened when the decay outgrows the gate's window/decay floor (`min_ratio`):
an early trusted fit at ~5σ can put a 350 µs T2* at 180 ± 60 µs, and a window shorter
than the decay fails that floor however many shots it gets (chip 5054: 4.7M shots in a
300 µs window). When the √shots law says the goals need more than `HOPELESS` × the budget,
the loop stops; `needed` records the shots the goals need, so the rejection names the
cause (too little signal per shot). Both count the shots of the trace being fitted only:
the batches a restart dropped taught the fit nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

from fluxcal.calibrations.experiments.decay_fits import CurveFit
from fluxcal.calibrations.fitting import FitError
from fluxcal.calibrations.gate import Criterion, at_most

#: Dimension of the repeats of a trace (as measured by `time_domain.measure_repeats`).
REPEAT = "repeat"
#: Candidate delays per window the design picks from.
_CANDIDATES = 400
#: A trace whose √shots extrapolation needs this many budgets to reach its goals has too
#: little signal for the fridge's time (the design spends the remaining shots up to ~2×
#: better than the data so far, so a trusted fit's extrapolation is good to that factor).
HOPELESS = 2.0
#: A fit's amplitude must be this many stderrs before its decay and design are trusted:
#: noise alone fits 1–3, and a decay fitted to such a trace can be anything.
TRUST_SNR = 5.0
#: Relative step of the numerical derivatives, in units of each parameter's stderr.
_STEP_IN_STDERR = 1e-3


@dataclass(frozen=True)
class Budget:
    """How far a sequential estimate may go: shots (both repeats) and batches."""

    shots: int
    batches: int


def stderr_goals_met(fit: CurveFit, goals: Mapping[str, float], margin: float) -> bool:
    """Whether every parameter in `goals` has a finite stderr at most goal / margin."""
    for name, goal in goals.items():
        _, stderr = fit.value(name)
        if not np.isfinite(stderr) or stderr > goal / margin:
            return False
    return True


def sensitivities(fit: CurveFit, x: np.ndarray) -> np.ndarray:
    """∂model/∂θ at delays `x` for the varied parameters, shape (len(x), parameters)."""
    result = fit.result
    columns = []
    for name in result.var_names:
        parameter = result.params[name]
        scale = parameter.stderr if parameter.stderr else abs(parameter.value) or 1.0
        step = _STEP_IN_STDERR * scale
        up, down = result.params.copy(), result.params.copy()
        up[name].set(value=parameter.value + step, min=-np.inf, max=np.inf)
        down[name].set(value=parameter.value - step, min=-np.inf, max=np.inf)
        columns.append((result.model.eval(up, x=x) - result.model.eval(down, x=x)) / (2 * step))
    return np.stack(columns, axis=-1)


def plan_delays(
    fit: CurveFit,
    candidates: np.ndarray,
    goals: Mapping[str, float],
    margin: float,
    min_points: int,
    max_points: int,
) -> np.ndarray:
    """The next batch of delays: greedy c-optimal picks until the predicted stderrs meet
    `goals` / `margin` (at least `min_points`, at most `max_points`; empty without a
    covariance to plan from).

    New points are assumed to carry the fit's noise per point scaled by its reduced χ², the
    same scaling lmfit applied to the covariance the prediction starts from.
    """
    if fit.result.covar is None or max_points <= 0:
        return np.empty(0)
    covariance, wanted, gradients, noise = _design_start(fit, candidates, goals, margin)
    available = np.ones(candidates.size, bool)
    picked: list[int] = []
    while len(picked) < max_points and available.any():
        projected = gradients @ covariance
        spread = noise + np.einsum("ij,ij->i", projected, gradients)
        gain = (projected**2 @ wanted) / spread
        gain[~available] = -np.inf
        best = int(np.argmax(gain))
        picked.append(best)
        available[best] = False
        row = projected[best]
        covariance = covariance - np.outer(row, row) / spread[best]
        predicted = np.sqrt(np.clip(np.diag(covariance), 0, None)) * np.sqrt(wanted)
        if len(picked) >= min_points and np.all(predicted[wanted > 0] <= 1.0):
            break
    return np.sort(candidates[picked])


def designed_shortfall(
    fit: CurveFit,
    candidates: np.ndarray,
    goals: Mapping[str, float],
    margin: float,
    points: int,
    lots: int = 64,
) -> float:
    """Largest predicted stderr × `margin` / goal after `points` more delays placed by the
    design, from the current fit (inf without a covariance to predict from).

    The design's picks are approximated by `lots` equal lots of points, each put at the
    candidate that helps most (a delay may be picked again: a budget's worth of points
    outnumbers the candidates). It is the √shots law evaluated where the design will measure:
    the current stderrs, taken from a coarse grid, can be several times worse per shot than
    the designed delays (an echo's uniform first batch needs ~3× the shots of a design for
    the same stderr of its decay time), and at a signal-to-noise of ~6 a linearised stderr is
    another ~2× worse than the Fisher information of the design predicts.
    """
    if fit.result.covar is None or not goals:
        return np.inf
    covariance, wanted, gradients, noise = _design_start(fit, candidates, goals, margin)
    lot = max(points, 1) / lots
    for _ in range(lots if points > 0 else 0):
        projected = gradients @ covariance
        spread = noise / lot + np.einsum("ij,ij->i", projected, gradients)
        best = int(np.argmax((projected**2 @ wanted) / spread))
        row = projected[best]
        covariance = covariance - np.outer(row, row) / spread[best]
    predicted = np.sqrt(np.clip(np.diag(covariance), 0, None) * wanted)
    return float(predicted[wanted > 0].max())


def _design_start(
    fit: CurveFit, candidates: np.ndarray, goals: Mapping[str, float], margin: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """What a design plans from: the fit's covariance, the weight (margin/goal)² of each
    parameter with a goal (0 for the others), the model's gradients at the candidates, and
    the noise variance a new point carries (the fit's per point, scaled by its reduced χ² as
    lmfit scaled the covariance)."""
    covariance = np.array(fit.result.covar, float)
    names = list(fit.result.var_names)
    wanted = np.zeros(len(names))
    for name, goal in goals.items():
        wanted[names.index(name)] = (margin / goal) ** 2
    noise = fit.trace.noise**2 * max(fit.reduced_chi2, 1e-12)
    return covariance, wanted, sensitivities(fit, candidates), noise


def candidate_delays(window: float, batch: int, count: int = _CANDIDATES) -> np.ndarray:
    """A fine grid of `count` delays over [0, window), shifted by a different fraction of
    its step for every batch so no delay is measured twice (the coordinate stays unique)."""
    step = window / count
    return (np.arange(count) + _golden_fraction(batch)) * step


def coarse_delays(window: float, points: int, batch: int = 0) -> np.ndarray:
    """Uniform delays over [0, window]; a later coarse batch interleaves with the first."""
    step = window / (points - 1)
    if batch == 0:
        return np.arange(points) * step
    return (np.arange(points - 1) + _golden_fraction(batch)) * step


def _golden_fraction(batch: int) -> float:
    """A fraction in (0, 1) different for every batch > 0 (the golden-ratio sequence)."""
    return (batch * 0.6180339887498949) % 1.0


def batch_coordinate(sweep: str) -> str:
    """Name of the coordinate along `sweep` saying which batch measured each point (one per
    sweep, so Ramsey's short and long windows keep theirs in one Dataset)."""
    return f"{sweep}_batch"


def combine(batches: list[xr.DataArray], sweep: str) -> xr.DataArray:
    """Batches of (repeat, sweep) IQ as one trace sorted by delay, with a batch coordinate
    and the run ids of every batch in its attrs."""
    name = batch_coordinate(sweep)
    labelled = [
        batch.assign_coords({name: (sweep, np.full(batch.sizes[sweep], index))})
        for index, batch in enumerate(batches)
    ]
    combined = xr.concat(labelled, dim=sweep).sortby(sweep)
    combined.attrs = {"run_ids": [i for batch in batches for i in batch.attrs.get("run_ids", [])]}
    return combined


@dataclass
class SequentialWindow:
    """Batches of one delay-swept trace until the fitted stderrs reach their goals.

    `measure(window, delays)` returns two repeats (repeat, sweep); `fit(trace)` the node's
    lmfit fit of a combined trace (raising what it raises when nothing fits); `goals(fit)`
    the stderr goal of each parameter of interest; `lacking(fit, trace)` delays the gate
    needs besides precision (e.g. enough points within the decay), measured before the
    design goes on. With `decay` set, a fit whose decay does
    not sit in `ratio_range` of the window re-sizes it to `window_factor` × decay (at most
    10× per step, `resizes` times); `restart` drops the earlier batches when the window
    changes (a Ramsey fringe measured at another detuning is another experiment).
    """

    measure: Callable[[float, np.ndarray], xr.DataArray]
    fit: Callable[[xr.DataArray], CurveFit]
    goals: Callable[[CurveFit], dict[str, float]]
    sweep: str
    shots_per_point: int
    coarse_points: int
    min_batch: int
    margin: float
    budget: Budget
    lacking: Callable[[CurveFit, xr.DataArray], np.ndarray] | None = None
    decay: str | None = None
    window_factor: float = 1.0
    ratio_range: tuple[float, float] = (0.0, np.inf)
    max_window: float = np.inf
    resizes: int = 2
    restart: bool = False
    trust_snr: float = TRUST_SNR
    #: Window / decay below which a restarting window is still re-sized once the design has
    #: placed shots in it (the gate's floor; None: `ratio_range[0]`): a window the gate
    #: accepts is worth more than the shots a restart drops.
    min_ratio: float | None = None
    #: Judge a trusted fit hopeless by what the design predicts the rest of the budget gives
    #: (`designed_shortfall`) rather than by the √shots law on the stderrs so far.
    predict: bool = False
    #: Set when the loop stops short of the goals: the shots (both repeats) the √shots law
    #: says they need, from the last fit's stderrs (0 when the goals were met).
    needed: float = 0.0

    def run(self, window: float) -> xr.DataArray:
        """The combined trace of every batch (of the last window when `restart`)."""
        window = min(window, self.max_window)
        batches = [self.measure(window, coarse_delays(window, self.coarse_points))]
        spent = self._shots(batches[0])
        resized, designed = 0, False
        while spent < self.budget.shots and len(batches) < self.budget.batches:
            trace = combine(batches, self.sweep)
            fit = self._fit_or_none(trace)
            trusted = fit is not None and fit.result.covar is not None
            trusted = trusted and fit.snr >= self.trust_snr
            # a restart drops the designed shots: worth it only for a window too short
            grow_only = designed and self.restart
            wanted = self._window_for(fit, window, grow_only) if trusted else None
            if fit is None or fit.result.covar is None:  # more of the coarse grid, interleaved
                delays = coarse_delays(window, self.coarse_points, len(batches))
            elif wanted is not None and resized < self.resizes:
                resized += 1
                window = wanted
                if self.restart:
                    batches = []
                delays = coarse_delays(window, self.coarse_points, len(batches))
            elif not trusted:
                delays = self._to_show_signal(fit, trace, window, len(batches))
            else:
                designed = True
                delays = self._next_delays(fit, trace, window, len(batches), spent)
            if delays.size == 0:
                break
            room = (self.budget.shots - spent) // (2 * self.shots_per_point)
            if room == 0:
                break
            batch = self.measure(window, delays[:room])
            spent += self._shots(batch)
            batches.append(batch)
        trace = combine(batches, self.sweep)
        if not self.needed:
            self.needed = self._shots_needed(self._fit_or_none(trace), self._shots(trace))
        return trace

    def _shots_needed(self, fit: CurveFit | None, spent: int) -> float:
        """Shots (both repeats) the √shots law says the goals (without the margin) and a
        trusted signal need, from `fit` of a trace of `spent` shots: 0 when met, inf without
        a fit."""
        if fit is None or fit.result.covar is None:
            return np.inf
        goals = self.goals(fit)
        ratios = [fit.value(name)[1] / goal for name, goal in goals.items()]
        ratios.append(self.trust_snr / fit.snr if fit.snr > 0 else np.inf)
        shortfall = max(ratios)
        return 0.0 if shortfall <= 1.0 else spent * shortfall**2

    def _hopeless(self, needed: float) -> bool:
        """Whether even `HOPELESS` × the budget would not reach the goals; records why."""
        if needed <= HOPELESS * self.budget.shots:
            return False
        self.needed = needed
        return True

    def _to_show_signal(
        self, fit: CurveFit, trace: xr.DataArray, window: float, batch: int
    ) -> np.ndarray:
        """More of the coarse grid, interleaved, until the fitted amplitude is `trust_snr`
        stderrs (with the margin): the √shots law sizes the batch, at most doubling the
        points; empty when hopeless.

        The window and the design wait for this: the decay of a trace with no visible signal
        is anything the noise makes it (a 160 µs T2 fitted as 2 ms, a window grown 30×).
        """
        shortfall = self.trust_snr * self.margin / max(fit.snr, 1e-12)
        if self._hopeless(self._shots(trace) * shortfall**2):
            return np.empty(0)
        have = trace.sizes[self.sweep]
        wanted = int(np.clip(have * (shortfall**2 - 1), self.min_batch, have))
        return coarse_delays(window, wanted + 1, batch)

    def _next_delays(
        self, fit: CurveFit, trace: xr.DataArray, window: float, batch: int, spent: int
    ) -> np.ndarray:
        """What the gate still lacks, else the designed batch; empty when done or hopeless.

        Hopeless: the √shots law says even `HOPELESS` × the budget would not reach the goals
        (no signal at all): the fridge's time is not spent on a trace the gate will reject.
        """
        needed = self.lacking(fit, trace) if self.lacking else np.empty(0)
        if needed.size:
            return needed
        goals = self.goals(fit)
        if stderr_goals_met(fit, goals, self.margin):
            return np.empty(0)
        room = (self.budget.shots - spent) // (2 * self.shots_per_point)
        measured = self._shots(trace)
        if self._hopeless(self._extrapolated(fit, goals, window, batch, measured, room)):
            return np.empty(0)
        most = min(trace.sizes[self.sweep], room)
        return plan_delays(
            fit,
            candidate_delays(window, batch, max(_CANDIDATES, 2 * most)),
            goals,
            self.margin,
            min(self.min_batch, room),
            most,
        )

    def _extrapolated(
        self,
        fit: CurveFit,
        goals: dict[str, float],
        window: float,
        batch: int,
        spent: int,
        room: int,
    ) -> float:
        """Shots (both repeats) the goals need: the √shots law on the stderrs of the trace's
        `spent` shots (a restart's dropped batches taught the fit nothing: counting them
        made chip 5016's Ramsey give up at 66M shots needed where 2M would do), or with
        `predict`, on those the design predicts for the `room` points left."""
        if not self.predict:
            shortfall = max(fit.value(name)[1] * self.margin / goal for name, goal in goals.items())
            return spent * shortfall**2
        candidates = candidate_delays(window, batch)
        shortfall = designed_shortfall(fit, candidates, goals, self.margin, room)
        if shortfall <= 1.0:
            return float(spent)
        return spent + 2 * self.shots_per_point * room * shortfall**2

    def _shots(self, batch: xr.DataArray) -> int:
        return int(batch.sizes[REPEAT] * batch.sizes[self.sweep] * self.shots_per_point)

    def _fit_or_none(self, trace: xr.DataArray) -> CurveFit | None:
        try:
            return self.fit(trace)
        except FitError:
            return None

    def _window_for(self, fit: CurveFit, window: float, grow_only: bool = False) -> float | None:
        """The window to re-measure over when the decay is not resolved in this one: when
        window / decay is outside `ratio_range` for every decay within one stderr (a window
        restarted on a noisy decay estimate throws the shots spent so far away); with
        `grow_only`, only when it is below `min_ratio` (the gate's floor) for all of them.
        The new window is `window_factor` × the decay; a restarting window, which drops
        what it measured, goes by the geometric mean of the decay and the decay within one
        stderr nearest the old window: a change the data demand, not more (a window from
        that nearest decay alone could end close to the gate's floor).

        The stderr is taken on the rate 1/decay: a decay barely begun in its window is seen
        as a slope, e^(−t/τ) ≈ 1 − t/τ, so it is the rate that the data bound symmetrically
        (chip 5054: a 430 µs T2* fitted as 780 ± 760 µs in a 300 µs window; the decays within
        one stderr of the rate run from 395 µs up, all too long for the window, while those
        within one stderr of the decay reached down to 23 µs and kept the window; a window of
        3 × 780 µs, 5.5 T2*, then took ~1.7× the shots of one of ~3 T2*).
        """
        if self.decay is None:
            return None
        decay, stderr = fit.value(self.decay)
        if not (np.isfinite(decay) and decay > 0):
            return None
        relative = stderr / decay
        longest = decay / (1 - relative) if relative < 1 else np.inf
        shortest = decay / (1 + relative)
        floor = self.ratio_range[0] if self.min_ratio is None else self.min_ratio
        too_long = window / longest > self.ratio_range[1]
        too_short = window / shortest < (floor if grow_only else self.ratio_range[0])
        if not (too_short or (too_long and not grow_only)):
            return None
        nearest = np.sqrt(decay * (shortest if too_short else longest)) if self.restart else decay
        wanted = float(np.clip(self.window_factor * nearest, window / 10, window * 10))
        wanted = min(wanted, self.max_window)
        return None if wanted == window else wanted


def shot_budget(
    attrs: Mapping, key: str = "long_shots", what: str = "long window"
) -> list[Criterion]:
    """Shots the `what` signal needs for the gate (√shots law from its last fit) within the
    budget (attrs `{key}_needed`, `{key}_budget`), when a sequential window stopped short of
    its goals: the rejection then names the cause, too little signal per shot, not only the
    stderrs it left."""
    needed = float(attrs.get(f"{key}_needed", 0.0))
    if not needed:
        return []
    name = f"{what} shots its signal-to-noise needs (√shots law)"
    return [at_most(name, needed, float(attrs[f"{key}_budget"]))]
