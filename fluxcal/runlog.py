"""The run log: one JSON line per calibration or drift-check run, kept next to the snapshots.

Snapshots hold what a run *changed*; a drift check that found everything in spec writes no
version, and a run whose nodes failed may write none either. Operating the service needs
every run (success rate, last outcome per node, when the chip was last checked, the device
time spent), so each run also appends one line to `STORE/journal/runs.jsonl`. The store's
own files are never touched: the snapshot store ignores everything that is not a version
file, an index or its pointer.

Appends run under a file lock of their own, so two runs never interleave their lines, and a
torn last line (a run killed mid-write) is skipped on reading rather than failing a scrape.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

JOURNAL_DIR = "journal"
RUNS_NAME = "runs.jsonl"
_LOCK_NAME = ".lock"


@dataclass(frozen=True)
class NodeRun:
    """One node on one qubit in one run: its outcome and the device time it held the chip."""

    outcome: str  # accepted | rejected | failed | skipped
    device_s: float


@dataclass(frozen=True)
class CheckDecision:
    """One node's drift-check decision: the check's verdict (None: no check) and the action;
    `shift`: how far the checked parameters had moved, in units of the check's tolerance
    (None: not measured)."""

    verdict: str | None
    action: str
    device_s: float
    shift: float | None = None


@dataclass(frozen=True)
class RunRecord:
    """One line of the run log."""

    flow: str
    finished: str  # ISO 8601 UTC
    version: int | None  # snapshot the run wrote, None if it wrote none
    nodes: dict[str, dict[str, NodeRun]] = field(default_factory=dict)
    decisions: dict[str, dict[str, CheckDecision]] = field(default_factory=dict)

    @property
    def finished_at(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.finished)

    def as_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "finished": self.finished,
            "version": self.version,
            "nodes": _plain(self.nodes),
            "decisions": _plain(self.decisions),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        return cls(
            flow=str(data["flow"]),
            finished=str(data["finished"]),
            version=None if data.get("version") is None else int(data["version"]),
            nodes={
                q: {n: NodeRun(str(r["outcome"]), _seconds(r)) for n, r in nodes.items()}
                for q, nodes in data.get("nodes", {}).items()
            },
            decisions={
                q: {
                    n: CheckDecision(
                        d.get("verdict"), str(d["action"]), _seconds(d), _shift(d.get("shift"))
                    )
                    for n, d in nodes.items()
                }
                for q, nodes in data.get("decisions", {}).items()
            },
        )


def runs_path(store: Path) -> Path:
    return Path(store) / JOURNAL_DIR / RUNS_NAME


def append(store: Path, record: RunRecord) -> None:
    """Add one run to the log (creating the journal folder on first use)."""
    path = runs_path(store)
    path.parent.mkdir(exist_ok=True)
    line = json.dumps(record.as_json(), allow_nan=False, sort_keys=True) + "\n"
    with FileLock(path.parent / _LOCK_NAME, timeout=60), path.open("a", encoding="utf-8") as f:
        f.write(line)


def read(store: Path) -> list[RunRecord]:
    """Every complete, well-formed line, oldest first; none for a store without a log."""
    return list(_records(runs_path(store)))


def _records(path: Path) -> Iterator[RunRecord]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        try:
            yield RunRecord.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a torn line of a killed writer, or a hand edit: not a run


def _seconds(data: Mapping[str, Any]) -> float:
    value = data.get("device_s")
    return float(value) if isinstance(value, int | float) else 0.0


def _shift(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _plain(table: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    return {
        q: {
            n: {
                k: (v if not isinstance(v, float) or math.isfinite(v) else 0.0)
                for k, v in vars(item).items()
            }
            for n, item in nodes.items()
        }
        for q, nodes in table.items()
    }


def last_in_spec(store: Path, before: dt.datetime) -> dict[tuple[str, str], dt.datetime]:
    """When each (qubit, node) was last found in spec by a drift check, up to `before`.

    A check in spec vouches for a stored value as a recalibration would, so the drift walk
    measures a slowly drifting node's age from the later of the two. Runs stamped after
    `before` (a walk on a simulated clock, a log from a clock that runs ahead) count for
    nothing rather than making a node look fresh.
    """
    found: dict[tuple[str, str], dt.datetime] = {}
    for when, record in _up_to(store, before):
        for qubit, nodes in record.decisions.items():
            for node, decision in nodes.items():
                if decision.verdict == "in_spec":
                    found[qubit, node] = max(when, found.get((qubit, node), when))
    return found


@dataclass(frozen=True)
class Rejection:
    """A node's last run, a rejection: when it ended and the device time it took."""

    when: dt.datetime
    device_s: float


def standing_rejections(store: Path, before: dt.datetime) -> dict[tuple[str, str], Rejection]:
    """Each (qubit, node) whose last outcome up to `before` was a rejection, and that run.

    A gate's rejection names a physical cause (a readout too faint for the flux map, a line
    out of the drive's reach), which the next run on the same chip meets again; the walks
    wait before trying such a node again (`flows.maintain.rejection_stands`). A later
    acceptance ends it; a run that failed (a fault, a crash) says nothing of the chip and
    leaves it as it was.
    """
    return {
        key: Rejection(when, run.device_s)
        for key, (when, run) in _last_calibrations(store, before).items()
        if run.outcome == "rejected"
    }


def calibration_costs(store: Path, before: dt.datetime) -> dict[tuple[str, str], float]:
    """The device seconds each (qubit, node)'s last calibration up to `before` took, accepted
    or rejected: what calibrating it again is likely to cost, and so what its drift check
    may spend before giving up on a faint probe (`flows.maintain.CHECK_SHARE`)."""
    return {key: run.device_s for key, (_, run) in _last_calibrations(store, before).items()}


def _last_calibrations(
    store: Path, before: dt.datetime
) -> dict[tuple[str, str], tuple[dt.datetime, NodeRun]]:
    """Each (qubit, node)'s last run up to `before` that calibrated it, accepted or rejected,
    and when it ended: a run that failed or skipped the node measured nothing of it."""
    last: dict[tuple[str, str], tuple[dt.datetime, NodeRun]] = {}
    for when, record in _up_to(store, before):
        for qubit, nodes in record.nodes.items():
            for node, run in nodes.items():
                if run.outcome in ("accepted", "rejected"):
                    last[qubit, node] = (when, run)
    return last


def _up_to(store: Path, before: dt.datetime) -> list[tuple[dt.datetime, RunRecord]]:
    """The log's runs finished by `before` (UTC where unstamped), in the order they finished."""
    stamped = []
    for record in read(store):
        when = record.finished_at
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        if when <= before:
            stamped.append((when, record))
    return sorted(stamped, key=lambda pair: pair[0])
