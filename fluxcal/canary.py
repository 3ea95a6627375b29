"""Canary rollout of a calibration settings change: a few qubits first, then all or none.

`start` records a candidate settings file, the lab's settings file it would replace and the
canary qubits. While it runs, `effective_settings` (what a flow calls on the settings it was
given) hands the canary qubits every field of the candidate and the other qubits the lab's
file. `evaluate` compares what the canary qubits did under the candidate with what they did
before it, and `decide` acts:

- **promote**: the candidate replaces the lab's settings file (the old one is kept next to it
  as `<name>.canary-<id>.bak`); deployed runs read the file afresh, so the next run uses it
  on every qubit.
- **roll back**: the lab's file is untouched, and a new snapshot version restores the canary
  qubits' parameters from the version that was current when the canary started; every other
  qubit keeps its newest values, and no version is removed, so nothing is lost.

Only runs whose snapshot records the candidate's settings for a canary qubit count as canary
runs (a snapshot stores the resolved settings of every qubit it calibrated), so a run that
ignored the canary cannot promote it. A regression is a node that was accepted on that qubit
before and is not under the candidate, an assignment fidelity lower by more than
`FIDELITY_DROP`, or a key parameter whose relative stderr grew more than `STDERR_GROWTH`
times. The record of every canary and its decision lives in `STORE/journal/canary.json`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from filelock import FileLock

from fluxcal.calibrations.settings import CalibrationSettings, SettingsLoader
from fluxcal.runlog import JOURNAL_DIR, RunRecord, read
from fluxcal.snapshots import SnapshotStore, StoreError

CANARY_NAME = "canary.json"
#: Parameters whose precision a settings change must not spoil.
GUARDED = ("qubit_frequency", "T1", "T2_echo", "T2_ramsey", "pi_amplitude", "readout_frequency")
FIDELITY_DROP = 0.02
STDERR_GROWTH = 2.0

State = Literal["running", "promoted", "rolled back"]
Verdict = Literal["wait", "promote", "rollback"]


class CanaryError(ValueError):
    """A canary request that cannot be carried out (one line, names what is wrong)."""


@dataclass
class Canary:
    id: int
    state: State
    started: str  # ISO 8601 UTC
    qubits: list[str]
    candidate_path: str
    candidate_sha256: str
    candidate: dict[str, Any]  # the candidate file's content, as validated at start
    settings_path: str  # the lab's settings file the candidate would replace
    baseline_version: int | None  # current snapshot when the canary started
    runs_before: int  # runs in the run log when it started: later ones may be canary runs
    min_runs: int = 1
    decided: str = ""
    decision: str = ""
    reasons: list[str] = field(default_factory=list)
    restored_version: int | None = None  # the rollback's new snapshot


@dataclass(frozen=True)
class Evaluation:
    verdict: Verdict
    runs: int  # canary runs seen
    reasons: list[str]


def start(
    store: Path, candidate: Path, settings: Path, qubits: Iterable[str], min_runs: int = 1
) -> Canary:
    """Begin a canary: the candidate file goes to `qubits` only, until `decide`."""
    qubits = sorted(set(qubits))
    if not qubits:
        raise CanaryError("name at least one canary qubit (--qubit)")
    candidate_doc = _load(candidate)
    CalibrationSettings.from_dict(candidate_doc, source=str(candidate))  # fails on a typo now
    snapshots = SnapshotStore(store, create=False)
    with _locked(store):
        canaries = _read(store)
        if canaries and canaries[-1].state == "running":
            raise CanaryError(f"canary {canaries[-1].id} is still running; decide it first")
        canary = Canary(
            id=len(canaries) + 1,
            state="running",
            started=_now(),
            qubits=qubits,
            candidate_path=str(Path(candidate).resolve()),
            candidate_sha256=_sha256(candidate),
            candidate=candidate_doc,
            settings_path=str(Path(settings).resolve()),
            baseline_version=snapshots.current_version(),
            runs_before=len(read(Path(store))),
            min_runs=min_runs,
        )
        _write(store, [*canaries, canary])
    return canary


def current(store: Path) -> Canary | None:
    """The latest canary (running or decided), None if there was never one."""
    canaries = _read(store)
    return canaries[-1] if canaries else None


def effective_settings(store: Path, settings: CalibrationSettings) -> CalibrationSettings:
    """What a run should use: `settings`, with every candidate field on the canary qubits
    while a canary is running (their resolved candidate settings replace the lab's)."""
    canary = current(store)
    if canary is None or canary.state != "running":
        return settings
    return _with_candidate(settings, canary)


def evaluate(store: Path) -> Evaluation:
    """Compare the canary qubits under the candidate with themselves before it."""
    canary = _running(store)
    snapshots = SnapshotStore(store, create=False)
    expected = _candidate_settings(canary)
    log = read(Path(store))
    before, runs = log[: canary.runs_before], log[canary.runs_before :]
    canary_runs = [r for r in runs if _ran_candidate(snapshots, r, canary.qubits, expected)]
    if len(canary_runs) < canary.min_runs:
        seen = f"{len(canary_runs)} of {canary.min_runs} canary runs so far"
        return Evaluation("wait", len(canary_runs), [seen])
    reasons = _outcome_regressions(canary.qubits, before, canary_runs)
    reasons += _metric_regressions(snapshots, canary, canary_runs[-1].version)
    verdict: Verdict = "rollback" if reasons else "promote"
    return Evaluation(verdict, len(canary_runs), reasons or ["no regression on the canary qubits"])


def decide(store: Path, force: Verdict | None = None) -> Canary:
    """Act on `evaluate` (or on `force`: promote or rollback) and record the decision."""
    canary = _running(store)
    evaluation = evaluate(store)
    verdict = force or evaluation.verdict
    if verdict == "wait":
        raise CanaryError(f"canary {canary.id}: not enough runs yet ({evaluation.reasons[0]})")
    reasons = evaluation.reasons if force is None else [f"forced {force}", *evaluation.reasons]
    with _locked(store):
        if verdict == "promote":
            _promote(canary)
        else:
            canary.restored_version = _roll_back(SnapshotStore(store, create=False), canary)
        canary.state = "promoted" if verdict == "promote" else "rolled back"
        canary.decided, canary.decision, canary.reasons = _now(), verdict, reasons
        canaries = _read(store)
        _write(store, [*canaries[:-1], canary])
    return canary


# ---------------------------------------------------------------- comparing
def _ran_candidate(
    store: SnapshotStore, record: RunRecord, qubits: list[str], expected: Mapping[str, Any]
) -> bool:
    """The run calibrated a canary qubit and its snapshot says it used the candidate."""
    if record.version is None or not any(q in record.nodes for q in qubits):
        return False
    try:
        recorded = store.load(record.version).settings
    except StoreError:
        return False
    return all(recorded.get(q) == expected[q] for q in qubits if q in record.nodes)


def _outcome_regressions(
    qubits: list[str], before: list[RunRecord], during: list[RunRecord]
) -> list[str]:
    last_before = _last_outcomes(before, qubits)
    reasons = []
    for (qubit, node), outcome in sorted(_last_outcomes(during, qubits).items()):
        if outcome in ("rejected", "failed") and last_before.get((qubit, node)) == "accepted":
            reasons.append(f"{qubit} {node}: {outcome} under the candidate, accepted before")
    return reasons


def _last_outcomes(records: list[RunRecord], qubits: list[str]) -> dict[tuple[str, str], str]:
    last = {}
    for record in records:
        for qubit in qubits:
            for node, run in record.nodes.get(qubit, {}).items():
                if run.outcome != "skipped":
                    last[qubit, node] = run.outcome
    return last


def _metric_regressions(store: SnapshotStore, canary: Canary, version: int | None) -> list[str]:
    if canary.baseline_version is None or version is None:
        return []
    old = store.load(canary.baseline_version).parameters
    new = store.load(version).parameters
    reasons = []
    for qubit in canary.qubits:
        before, after = old.get(qubit, {}), new.get(qubit, {})
        if "assignment_fidelity" in before and "assignment_fidelity" in after:
            drop = before["assignment_fidelity"].value - after["assignment_fidelity"].value
            if drop > FIDELITY_DROP:
                reasons.append(f"{qubit} assignment_fidelity dropped by {drop:.3f}")
        for name in GUARDED:
            if name in before and name in after:
                growth = _relative(after[name]) / _relative(before[name])
                if math.isfinite(growth) and growth > STDERR_GROWTH:
                    reasons.append(f"{qubit} {name}: relative stderr {growth:.1f}× larger")
    return reasons


def _relative(p: Any) -> float:
    if not math.isfinite(p.stderr) or p.value == 0:
        return math.nan
    return p.stderr / abs(p.value) or math.nan


# ---------------------------------------------------------------- acting
def _promote(canary: Canary) -> None:
    """The candidate replaces the lab's file; the old file is kept as a backup."""
    if _sha256(Path(canary.candidate_path)) != canary.candidate_sha256:
        raise CanaryError(f"{canary.candidate_path} changed since the canary started")
    target = Path(canary.settings_path)
    if target.exists():
        shutil.copy2(target, target.with_name(f"{target.name}.canary-{canary.id}.bak"))
    temp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.copyfile(canary.candidate_path, temp)
    os.replace(temp, target)


def _roll_back(store: SnapshotStore, canary: Canary) -> int | None:
    """A new version: the canary qubits' parameters as they were at the start, the rest as
    they are now. None if the canary qubits' parameters never changed."""
    if canary.baseline_version is None:
        return None
    then = store.load(canary.baseline_version)
    now = store.load()
    parameters = {q: dict(ps) for q, ps in now.parameters.items()}
    for qubit in canary.qubits:
        if qubit in then.parameters:
            parameters[qubit] = dict(then.parameters[qubit])
    if parameters == now.parameters:
        return None
    settings = {q: s for q, s in now.settings.items() if q not in canary.qubits}
    settings.update({q: then.settings[q] for q in canary.qubits if q in then.settings})
    return store.save(
        parameters,
        station=now.station,
        reason=f"canary {canary.id} rolled back: {', '.join(canary.qubits)} "
        f"restored from v{canary.baseline_version}",
        provenance={"canary": str(canary.id), "canary_decision": "rollback"},
        settings=settings,
    )


# ---------------------------------------------------------------- settings
def _candidate_settings(canary: Canary) -> dict[str, Any]:
    """The candidate's resolved settings of each canary qubit (every field explicit)."""
    settings = CalibrationSettings.from_dict(canary.candidate, source=canary.candidate_path)
    return settings.resolved(canary.qubits)


def _with_candidate(settings: CalibrationSettings, canary: Canary) -> CalibrationSettings:
    document = settings.as_dict()
    qubits = {q: s for q, s in document["qubits"].items() if q not in canary.qubits}
    qubits.update(_candidate_settings(canary))
    return CalibrationSettings.from_dict(
        {"defaults": document["defaults"], "qubits": qubits},
        settings.graph,
        source=f"canary {canary.id}",
    )


# ---------------------------------------------------------------- the record
def _path(store: Path) -> Path:
    return Path(store) / JOURNAL_DIR / CANARY_NAME


def _locked(store: Path) -> FileLock:
    folder = Path(store) / JOURNAL_DIR
    folder.mkdir(exist_ok=True)
    return FileLock(folder / ".lock", timeout=60)


def _read(store: Path) -> list[Canary]:
    try:
        data = json.loads(_path(store).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        raise CanaryError(f"{_path(store)}: unreadable canary record ({error})") from None
    return [Canary(**entry) for entry in data["canaries"]]


def _write(store: Path, canaries: list[Canary]) -> None:
    path = _path(store)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temp.write_text(json.dumps({"canaries": [asdict(c) for c in canaries]}, indent=2))
    os.replace(temp, path)


def _running(store: Path) -> Canary:
    canary = current(store)
    if canary is None or canary.state != "running":
        raise CanaryError("no canary is running (fluxcal canary start)")
    return canary


def _load(path: Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"settings file not found: {path}")
    data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=SettingsLoader) or {}
    if not isinstance(data, dict):
        raise CanaryError(f"{path}: not a settings mapping")
    return data


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
