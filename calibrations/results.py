"""What a walk of the calibration graph produces: node results, the run, its device time.

Kept apart from the runner and the walker so both (and the flows) share one definition.
Device time is counted twice over a run: summed (what every node held the chip for, one
after another) and in parallel (the wall time the fridge is busy when groups of qubits that
share no line run at once).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import xarray as xr

from fluxcal.calibrations.node import Analysis
from fluxcal.calibrations.settings import Resolved
from fluxcal.snapshots import CalibratedParameter, ExperimentRecord


@dataclass
class NodeResult:
    node: str
    qubit: str
    outcome: str  # accepted | rejected | failed | skipped
    reason: str
    parameters: dict[str, CalibratedParameter] = field(default_factory=dict)
    data: xr.Dataset | None = None
    analysis: Analysis | None = None
    acquire_s: float = 0.0
    analyse_s: float = 0.0
    finished: str = ""
    plot: Path | None = None
    #: what the node cost the fridge: the driver's device-time count over the acquisition,
    #: else the acquisition's wall time (a real instrument is busy while we wait for it)
    device_s: float = 0.0

    def record(self) -> ExperimentRecord:
        """The form the snapshot store keeps."""
        fit = dict(self.analysis.values) if self.analysis else {}
        report = self.analysis.report if self.analysis else ""
        return ExperimentRecord(
            self.data, fit, self.outcome, self.reason, report, self.finished, self.device_s
        )


@dataclass(frozen=True)
class Span:
    """When one node ran on one qubit (time.perf_counter seconds): the walk's timeline."""

    qubit: str
    node: str
    start: float
    end: float


def parallel_device_s(group_seconds: Iterable[float], workers: int) -> float:
    """Wall time the fridge is busy when groups run on `workers` slots at once.

    Groups are taken in order, each by the slot that frees first (as the walker's thread
    pool does): with one worker this is the sum, with a worker per group the longest group.
    """
    slots = [0.0] * max(1, workers)
    for seconds in group_seconds:
        heapq.heapreplace(slots, slots[0] + seconds)
    return max(slots)


@dataclass
class GraphRun:
    results: dict[str, dict[str, NodeResult]]  # qubit -> node -> result
    parameters: dict[str, dict[str, CalibratedParameter]]  # qubit -> name -> latest
    settings: Resolved = field(default_factory=dict)  # qubit -> node -> field -> value used
    #: qubits that share a line, run one after another; groups ran concurrently
    groups: list[list[str]] = field(default_factory=list)
    workers: int = 1
    timeline: list[Span] = field(default_factory=list)

    def outcomes(self) -> dict[str, dict[str, str]]:
        return {q: {n: r.outcome for n, r in nodes.items()} for q, nodes in self.results.items()}

    def qubit_device_s(self, qubit: str) -> float:
        return sum(r.device_s for r in self.results.get(qubit, {}).values())

    def device_s(self) -> float:
        """Device time summed over every node of every qubit."""
        return sum(self.qubit_device_s(q) for q in self.results)

    def parallel_device_s(self) -> float:
        """Device time as the fridge sees it: the groups' sums, overlapped on the workers."""
        groups = self.groups or [[q] for q in self.results]
        seconds = [sum(self.qubit_device_s(q) for q in group) for group in groups]
        return parallel_device_s(seconds, self.workers)

    def device_time_line(self) -> str:
        """Both device-time counts in one line, for summaries."""
        return (
            f"device time {self.device_s():.1f} s summed, {self.parallel_device_s():.1f} s "
            f"in parallel ({len(self.groups or self.results)} group(s), "
            f"{self.workers} worker(s))"
        )
