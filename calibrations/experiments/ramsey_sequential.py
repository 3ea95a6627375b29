"""Ramsey's ±δ short windows measured in batches until their fringes are known well enough.

The short windows only fix the sign of the frequency error and place the long window's drive
well inside its fringe; the long window measures the frequency far better. So they need a
precision set by the long window (its detuning over a sign margin), not the ~200 Hz that
101 points × 2000 shots give. Batches of interleaved uniform delays (every point a fringe
needs, few shots each) are added, sized by the √shots law, until both fringe frequencies
reach the goal; a later, stricter goal (a long window re-sized to a slower fringe) resumes
the same data. The Dataset keeps the fixed grid's layout (detuning, repeat, delay_short)
with a batch coordinate (`delay_short_batch`).
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

    def refine(self, goals: Callable[[CurveFit], dict[str, float]], margin: float) -> None:
        """Batches until both fringe fits meet `goals` (stderr per parameter) with `margin`,
        or the budget is spent; the √shots law sizes each batch, at most doubling the points
        and never past the budget."""
        if not self.batches:
            self._add(self.points)
        while self._spent() < self.budget.shots and len(self.batches) < self.budget.batches:
            try:
                ratio = max(
                    fit.value(name)[1] * margin / goal
                    for fit in self.fits(self.dataset())
                    for name, goal in goals(fit).items()
                )
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
