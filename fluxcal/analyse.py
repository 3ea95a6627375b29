"""Offline re-analysis: run one experiment's analysis and gate on a recorded file.

The same pure analysis functions the live chain uses, fed by `calibrations.importers`, so a
lab can re-fit saved data or a trace from another tool without touching an instrument.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from calibrations.gate import GateOutcome
from calibrations.importers import load_recorded
from calibrations.node import Analysis, Node


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
            "values": {k: {"value": v, "stderr": e} for k, (v, e) in self.analysis.values.items()},
            "criteria": [c.describe() for c in self.outcome.criteria],
        }

    def text(self) -> str:
        lines = [f"{self.experiment}: {'accepted' if self.outcome.accepted else 'REJECTED'}"]
        lines += [f"  {k} = {v:.7g} ± {e:.2g}" for k, (v, e) in self.analysis.values.items()]
        lines += [f"  {c.describe()}" for c in self.outcome.criteria]
        if not self.outcome.accepted:
            lines.append(f"  reason: {self.outcome.reason}")
        return "\n".join(lines)


def node_for(experiment: str) -> Node:
    from calibrations.graph import DEFAULT_GRAPH

    try:
        return DEFAULT_GRAPH[experiment].node()
    except KeyError:
        known = ", ".join(DEFAULT_GRAPH)
        raise ValueError(f"unknown experiment {experiment!r}; known: {known}") from None


def analyse_file(
    path: str | Path,
    experiment: str,
    qubit: str | None = None,
    run_id: int | None = None,
    axes: dict[str, str] | None = None,
    data: str = "data",
    plot: Path | None = None,
) -> OfflineResult:
    node = node_for(experiment)
    dataset = load_recorded(path, experiment, qubit=qubit, run_id=run_id, axes=axes, data=data)
    analysis = node.analyse(dataset)
    result = OfflineResult(experiment, dataset, analysis, node.gate(analysis))
    if plot is not None:
        node.plot(dataset, analysis, plot)
    return result
