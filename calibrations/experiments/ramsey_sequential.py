"""Ramsey's ±δ short windows measured in batches until their fringes are known well enough.

The short windows only fix the sign of the frequency error and place the long window's drive
well inside its fringe; the long window measures the frequency far better. So they need a
precision set by the long window (its detuning over a sign margin), not the ~200 Hz that
101 points × 2000 shots give. Batches of interleaved uniform delays (every point a fringe
needs, few shots each) are added, sized by the √shots law, until both fringe frequencies
reach the goal; a later, stricter goal (a long window re-sized to a slower fringe) resumes
the same data. The Dataset keeps the fixed grid's layout (detuning, repeat, delay_short)
with a batch coordinate (`delay_short_batch`).

The evidence that a short window shows its fringe is the signal-to-noise of the fitted fringe
shape (`fringe_snr`), not of the amplitude at zero delay: a window of 10 µs hardly sees a
T2* of 100 µs decay, so the fitted decay is loose and the amplitude at zero delay trades
off against it (chip 5016: a stderr ~2× that of the fringe's scale, and ~1000 points per
detuning measured only to pass a signal-to-noise of 8 on it, with the fringe frequency
already 4× better than needed).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from fluxcal.calibrations.adaptive import REPEAT, Budget, batch_coordinate, coarse_delays
from fluxcal.calibrations.experiments.decay_fits import CurveFit
from fluxcal.calibrations.fitting import FitError

SHORT = "delay_short"
DETUNING = "detuning"


@dataclass
class ShortWindows:
    """The ±δ fringes over one window, in batches measured at both detunings alike."""

    measure: Callable[[np.ndarray], xr.DataArray]  # delays -> (detuning, repeat, delay_short)
    fits: Callable[[xr.Dataset], tuple[CurveFit, CurveFit]]
    window: float
    points: int
    min_batch: int
    shots_per_point: int
    budget: Budget
    batches: list[xr.DataArray] = field(default_factory=list)

    def refine(self, shortfall: Callable[[CurveFit], float]) -> None:
        """Batches until `shortfall` (a fit's largest stderr over its goal, margin included)
        is at most 1 for both fringe fits, or the budget is spent; the √shots law sizes each
        batch, at most doubling the points and never past the budget."""
        if not self.batches:
            self._add(self.points)
        while self._spent() < self.budget.shots and len(self.batches) < self.budget.batches:
            try:
                ratio = max(shortfall(fit) for fit in self.fits(self.dataset()))
            except FitError:
                ratio = math.inf
            if ratio <= 1.0:
                return
            have = self.dataset().sizes[SHORT]
            wanted = have * (ratio**2 - 1) if math.isfinite(ratio) else have
            self._add(int(np.clip(wanted, self.min_batch, min(have, self._room()))))

    def dataset(self) -> xr.Dataset:
        """Every batch so far, sorted by delay, as `iq_short` (detuning, repeat, delay_short)."""
        name = batch_coordinate(SHORT)
        labelled = [
            batch.assign_coords({name: (SHORT, np.full(batch.sizes[SHORT], index))})
            for index, batch in enumerate(self.batches)
        ]
        combined = xr.concat(labelled, dim=SHORT).sortby(SHORT)
        return xr.Dataset({"iq_short": combined})

    def _add(self, points: int) -> None:
        delays = coarse_delays(self.window, max(points, 2), len(self.batches))
        self.batches.append(self.measure(np.unique(delays)))

    def _room(self) -> int:
        """Points (at both detunings and repeats) the budget has left, at least one."""
        per_point = 2 * 2 * self.shots_per_point
        return max((self.budget.shots - self._spent()) // per_point, 1)

    def _spent(self) -> int:
        return sum(
            batch.sizes[DETUNING] * batch.sizes[REPEAT] * batch.sizes[SHORT] * self.shots_per_point
            for batch in self.batches
        )


def fringe_snr(fit: CurveFit) -> float:
    """Signal-to-noise of a fringe with its shape (decay, frequency, phase) held at the fit:
    the scale of that shape over an offset, by linear least squares against the trace's
    noise (scaled by the reduced χ², as lmfit scales its stderrs).

    A window far shorter than the decay pins the fringe where its data are, not the
    amplitude at zero delay, which trades off against the decay; holding the shape removes
    that trade-off (and lmfit's covariance of a decay at its bound, which a window that sees
    no decay often reaches). Pure noise still fits its best frequency and phase to ~2–4.
    """
    params = fit.result.params
    x = fit.trace.x
    shape = np.exp(-x / params["decay"].value) * np.cos(
        2 * np.pi * params["frequency"].value * x + params["phase"].value
    )
    design = np.stack([np.ones_like(x), shape], axis=-1)
    (_, scale), *_ = np.linalg.lstsq(design, fit.trace.y, rcond=None)
    normal = design.T @ design
    if abs(np.linalg.det(normal)) <= 0:
        return 0.0
    noise = fit.trace.noise * math.sqrt(max(fit.reduced_chi2, 1.0))
    stderr = noise * math.sqrt(float(np.linalg.inv(normal)[1, 1]))
    return abs(float(scale)) / stderr if stderr > 0 else 0.0
