"""The calibration node: acquire → analyse → gate → update, the same order for every experiment.

A node is one experiment on one qubit. `acquire` drives QCoDeS parameters and returns the
measured xarray Dataset (with the settings it used in `attrs`, so the analysis needs nothing
else); `analyse` is a pure function of that Dataset returning fitted values with standard
errors and the numbers the gate judges; `gate` turns declared criteria into accepted or
rejected with a reason; `update` names the canonical parameters handed to later nodes.
Reading one experiment module teaches all of them.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import xarray as xr

from fluxcal.calibrations.gate import Criterion, GateOutcome, evaluate, off_bounds
from fluxcal.calibrations.session import QubitSession
from fluxcal.snapshots import CalibratedParameter

#: SI units of the canonical parameters (DESIGN.md) and the extra ones fluxcal keeps.
UNITS = {
    "readout_frequency": "Hz",
    "resonator_frequency": "Hz",
    "resonator_kappa": "Hz",
    "resonator_splitting": "Hz",
    "flux_period": "V",
    "flux_sweet_spot": "V",
    "flux_symmetry_point": "V",
    "flux_symmetry_alternate": "V",
    "qubit_frequency": "Hz",
    "EJ": "Hz",
    "EC": "Hz",
    "EL": "Hz",
    "pi_amplitude": "V",
    "pi_duration": "s",
    "T1": "s",
    "T2_ramsey": "s",
    "T2_echo": "s",
    "readout_amplitude": "V",
    "readout_amplitude_linear": "V",
    "readout_duration": "s",
    "state_integration": "s",
    "readout_threshold": "V",
    "readout_angle": "rad",
    "assignment_fidelity": "",
    "thermal_population": "",
    "effective_temperature": "K",
}


@dataclass
class Analysis:
    """What an analysis found: values ±stderr, gate criteria, a report and plot curves."""

    values: dict[str, tuple[float, float]]
    criteria: list[Criterion]
    report: str = ""
    fit: Any = None  # the lmfit result, when there is one
    curves: dict[str, Any] = field(default_factory=dict)  # what the plot draws


def now_iso() -> str:
    """The time a result was measured, as its `updated` stamp.

    In microseconds: overlapping runs merge parameter by parameter on this stamp
    (`snapshots.merge`), and runs of one chain finish the same node within the same second.
    """
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


class Node:
    """Base of every experiment; subclasses set the class attributes and four methods."""

    name: ClassVar[str]
    #: Canonical parameters this node needs from earlier nodes.
    requires: ClassVar[tuple[str, ...]] = ()
    #: Canonical parameters it hands on when accepted.
    produces: ClassVar[tuple[str, ...]] = ()

    def acquire(self, session: QubitSession) -> xr.Dataset:
        raise NotImplementedError

    def analyse(self, data: xr.Dataset) -> Analysis:
        raise NotImplementedError

    def gate(self, analysis: Analysis) -> GateOutcome:
        """The analysis' criteria, plus a rejection for every fitted parameter on a bound.

        A parameter pinned at a bound is where the optimiser was stopped, not a measurement;
        every node gets that check from its lmfit result (`analysis.fit`), whatever its own
        criteria say.
        """
        return evaluate([*analysis.criteria, *off_bounds(analysis.fit)])

    def update(self, analysis: Analysis, when: str) -> dict[str, CalibratedParameter]:
        """Canonical parameters from an accepted analysis."""
        return {
            name: CalibratedParameter(
                value=float(analysis.values[name][0]),
                stderr=float(analysis.values[name][1]),
                unit=UNITS.get(name, ""),
                experiment=self.name,
                updated=when,
            )
            for name in self.produces
            if name in analysis.values and math.isfinite(analysis.values[name][0])
        }

    def plot(self, data: xr.Dataset, analysis: Analysis, path: str | Path) -> Path:
        """Data, fit and key numbers with uncertainties, written to `path`."""
        from fluxcal.calibrations.plotting import plot_analysis

        return plot_analysis(self.name, data, analysis, Path(path))
