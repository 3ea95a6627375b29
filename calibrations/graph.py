"""The calibration graph as data: which experiments exist and what each depends on.

Flows (plain runner, Prefect daily chain, drift check, targeted recalibration) all walk this
one declaration; none of them knows the order by heart. Each entry also carries the
Optimus-style maintenance data: how long a calibration stays valid (`timeout_s`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from graphlib import TopologicalSorter

from fluxcal.calibrations.experiments.echo import Echo
from fluxcal.calibrations.experiments.qubit_flux_spectroscopy import QubitFluxSpectroscopy
from fluxcal.calibrations.experiments.qubit_spectroscopy import QubitSpectroscopy
from fluxcal.calibrations.experiments.rabi import Rabi
from fluxcal.calibrations.experiments.ramsey import Ramsey
from fluxcal.calibrations.experiments.readout_optimisation import ReadoutOptimisation
from fluxcal.calibrations.experiments.readout_power import ReadoutPower
from fluxcal.calibrations.experiments.resonator_flux import ResonatorFlux
from fluxcal.calibrations.experiments.resonator_spectroscopy import (
    ResonatorSearch,
    ResonatorSpectroscopy,
)
from fluxcal.calibrations.experiments.sweet_spot import SweetSpot
from fluxcal.calibrations.experiments.t1 import T1
from fluxcal.calibrations.node import Node


@dataclass(frozen=True)
class GraphEntry:
    node: type[Node]
    depends_on: tuple[str, ...]
    timeout_s: float  # a calibration older than this is re-checked by the drift check
    #: nodes run before this one when both run, without being dependencies: their values
    #: size its sweeps when known, and neither their rejection nor their recalibration
    #: concerns it
    after: tuple[str, ...] = ()


DAY = 86400.0
HOUR = 3600.0

DEFAULT_GRAPH: dict[str, GraphEntry] = {
    "resonator_search": GraphEntry(ResonatorSearch, (), 7 * DAY),
    "readout_power": GraphEntry(ReadoutPower, ("resonator_search",), DAY),
    "resonator_flux": GraphEntry(ResonatorFlux, ("readout_power",), DAY),
    "qubit_spectroscopy": GraphEntry(QubitSpectroscopy, ("resonator_flux",), DAY),
    "resonator_spectroscopy": GraphEntry(ResonatorSpectroscopy, ("qubit_spectroscopy",), DAY),
    "qubit_flux_spectroscopy": GraphEntry(
        QubitFluxSpectroscopy, ("resonator_spectroscopy",), 7 * DAY
    ),
    "rabi": GraphEntry(Rabi, ("resonator_spectroscopy",), DAY),
    "sweet_spot": GraphEntry(SweetSpot, ("rabi",), 4 * HOUR),
    "t1": GraphEntry(T1, ("sweet_spot",), 4 * HOUR),
    # after t1: Ramsey sizes its first long window from T1 when it has no T2_ramsey (a
    # Ramsey window that restarts drops its shots, a T1 window re-sized keeps them); a T1
    # drift leaves the qubit frequency and T2* as they were
    "ramsey": GraphEntry(Ramsey, ("sweet_spot",), 4 * HOUR, after=("t1",)),
    "echo": GraphEntry(Echo, ("ramsey",), DAY),
    # on t1: the integration times it searches reach T1/5; after Ramsey's qubit frequency,
    # and after echo, which reads the qubit better at the state integration than at the
    # single-shot readout this node chooses (+54 device-s over 20 chips the other way)
    "readout_optimisation": GraphEntry(
        ReadoutOptimisation, ("sweet_spot", "t1"), DAY, after=("ramsey", "echo")
    ),
}


def order(graph: dict[str, GraphEntry], names: Iterable[str] | None = None) -> list[str]:
    """Dependencies-first order of `names` (default: the whole graph), each also after the
    nodes it lists in `after`."""
    wanted = set(graph if names is None else names)
    unknown = wanted - set(graph)
    if unknown:
        raise KeyError(f"unknown calibration node(s): {', '.join(sorted(unknown))}")
    sorter = TopologicalSorter(
        {name: (*graph[name].depends_on, *graph[name].after) for name in graph}
    )
    return [name for name in sorter.static_order() if name in wanted]


def dependents(graph: dict[str, GraphEntry], names: Iterable[str]) -> set[str]:
    """`names` and everything downstream of them."""
    found = set(names)
    changed = True
    while changed:
        changed = False
        for name, entry in graph.items():
            if name not in found and found.intersection(entry.depends_on):
                found.add(name)
                changed = True
    return found


def ancestors(graph: dict[str, GraphEntry], name: str) -> list[str]:
    """Everything `name` depends on, nearest first (for diagnosing bad data upstream)."""
    seen: list[str] = []
    frontier = list(graph[name].depends_on)
    while frontier:
        current = frontier.pop(0)
        if current not in seen:
            seen.append(current)
            frontier.extend(graph[current].depends_on)
    return seen
