"""Offline re-analysis: run one experiment's analysis and gate on a recorded file.

The same pure analysis functions the live chain uses, fed by `calibrations.importers`, so a
lab can re-fit saved data or a trace from another tool without touching an instrument. A
snapshot version file holds every node's Dataset as its analysis saw it (raw data packed to
well within its noise, see docs/snapshots.md), so it is the source that re-analyses every
node; a QCoDeS run id only serves nodes whose Dataset is one run, bit for bit.

Data from other stacks (quantify-core datasets, single traces in npz/CSV) are analysed as they
come: a time-domain trace measured once takes its noise from its own residuals, calibration
points scale it to population, and a Ramsey fringe without its ±δ pair gives both candidate
qubit frequencies. What an analysis did differently says itself in `note:` lines of its
report, which the text output shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from fluxcal.calibrations.fitting import FitError
from fluxcal.calibrations.gate import GateOutcome
from fluxcal.calibrations.importers import load_recorded
from fluxcal.calibrations.node import UNITS, Analysis, Node

SINGLE_RUN_HINT = (
    "a node whose Dataset combines several runs is re-analysed from its snapshot or netCDF "
    "file, not from one run id"
)
WRONG_EXPERIMENT_HINT = "is --experiment the node that recorded it?"
#: Units of values analyses report beyond the canonical parameters (`node.UNITS`).
REPORTED_UNITS = {
    "frequency_correction": "Hz",
    "fringe_frequency": "Hz",
    "qubit_frequency_below_drive": "Hz",
    "qubit_frequency_above_drive": "Hz",
}
NOTE = "note: "


def unit_of(name: str) -> str:
    return UNITS.get(name, REPORTED_UNITS.get(name, ""))


class OfflineAnalysisError(ValueError):
    """The recorded data lack what the chosen experiment's analysis needs."""


@dataclass
class OfflineResult:
    experiment: str
    data: xr.Dataset
    analysis: Analysis
    outcome: GateOutcome

    def as_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "accepted": self.outcome.accepted,
            "reason": self.outcome.reason,
            "values": {
                name: {"value": float(value), "stderr": float(stderr), "unit": unit_of(name)}
                for name, (value, stderr) in self.analysis.values.items()
            },
            "criteria": [c.describe() for c in self.outcome.criteria],
            "report": self.analysis.report,
        }

    def text(self) -> str:
        lines = [f"{self.experiment}: {'accepted' if self.outcome.accepted else 'REJECTED'}"]
        lines += [
            f"  {name} = {value:.10g} ± {stderr:.2g} {unit_of(name)}".rstrip()
            for name, (value, stderr) in self.analysis.values.items()
        ]
        lines += [f"  {c.describe()}" for c in self.outcome.criteria]
        lines += [
            f"  {line}" for line in self.analysis.report.splitlines() if line.startswith(NOTE)
        ]
        if not self.outcome.accepted:
            lines.append(f"  reason: {self.outcome.reason}")
        return "\n".join(lines)


def node_for(experiment: str, settings: Path | None = None, qubit: str | None = None) -> Node:
    """The experiment's node, configured as a calibration run would configure it.

    A recorded trace from another lab is often shorter or noisier than what our gate demands
    (the quantify echo trace gives T2 to 6.2 % against the node's 5 %); the lab relaxes the
    gate in the same settings file `fluxcal calibrate --config` reads, with the same
    validation and per-qubit overrides (`qubit`; without one, the file's defaults).
    """
    from fluxcal.calibrations.graph import DEFAULT_GRAPH
    from fluxcal.calibrations.settings import CalibrationSettings

    if experiment not in DEFAULT_GRAPH:
        known = ", ".join(DEFAULT_GRAPH)
        raise ValueError(f"unknown experiment {experiment!r}; known: {known}")
    if settings is None:
        return DEFAULT_GRAPH[experiment].node()
    configured = CalibrationSettings.load(settings)
    return DEFAULT_GRAPH[experiment].node(**configured.for_node(qubit or "", experiment))


def analyse_file(
    path: str | Path,
    experiment: str,
    qubit: str | None = None,
    run_id: int | None = None,
    axes: dict[str, str] | None = None,
    data: str = "data",
    plot: Path | None = None,
    settings: Path | None = None,
) -> OfflineResult:
    """Load `path`, analyse it as `experiment`, gate it with the node's settings (from the
    `settings` file if given), and optionally plot the fit."""
    node = node_for(experiment, settings, qubit)
    dataset = load_recorded(path, experiment, qubit=qubit, run_id=run_id, axes=axes, data=data)
    hint = SINGLE_RUN_HINT if run_id is not None else WRONG_EXPERIMENT_HINT
    analysis = analyse_dataset(node, dataset, str(path), hint)
    result = OfflineResult(experiment, dataset, analysis, node.gate(analysis))
    if plot is not None:
        node.plot(dataset, analysis, plot)
    return result


def analyse_dataset(node: Node, dataset: xr.Dataset, source: str, hint: str = "") -> Analysis:
    """`node.analyse`, with a missing variable or setting reported as what the data lack.

    A live analysis may raise on data it was not built for; offline, that is the usual
    mistake (wrong experiment, a run that is only part of a node's Dataset), so say which.
    """
    suffix = f"; {hint}" if hint else ""
    try:
        return node.analyse(dataset)
    except KeyError as error:
        text = str(error).strip("'\"")
        named = re.search(r"variable named '([^']+)'", text)
        missing = named.group(1) if named else text
        raise OfflineAnalysisError(
            f"{source}: the {node.name} analysis needs {missing!r}, which this data lacks "
            f"(it holds {_describe(dataset)}){suffix}"
        ) from None
    except (ValueError, IndexError, TypeError, FitError) as error:
        raise OfflineAnalysisError(
            f"{source}: the {node.name} analysis cannot use this data ({error}; it holds "
            f"{_describe(dataset)}){suffix}"
        ) from None


def _describe(dataset: xr.Dataset) -> str:
    variables = ", ".join(
        f"{name}({', '.join(map(str, variable.dims))})"
        for name, variable in dataset.data_vars.items()
    )
    settings = ", ".join(str(key) for key in dataset.attrs) or "none"
    return f"variables {variables or 'none'}; settings {settings}"
