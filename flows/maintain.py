"""The drift check's walk: Optimus-style maintenance of the calibration graph for one qubit.

For each node, dependencies first (Kelly et al. 2018):

- check_state: is it calibrated at all, is a dependency unresolved or freshly recalibrated,
  is it older than its `timeout_s`?
- check_data: its cheap check (`flows.checks`), when it has one: in spec, out of spec or
  bad data. Unlike Optimus's `maintain`, a node whose check guards a setting gates or
  readout use (qubit frequency, bias, resonator, π amplitude, readout) is checked even when
  its state is fresh: a flux jump does not wait for a timeout to expire. Decay times set
  nothing; the daily run checks them, the hourly drift check only when due
  (`checks_when_due`): older than their timeout since they were calibrated or last found
  in spec. Their delays of several T1 held most of a check's device time.
- calibrate: only a node that is out of spec, never calibrated, or without a usable check
  and stale or downstream of a recalibrated node. Dependents of a recalibrated node are
  re-checked at the new operating point, and recalibrated if their check fails or they have
  none; a recalibration back within its check's tolerance of the stored value moved nothing
  and triggers no dependent.
- diagnose: on bad data, the node's ancestors (nearest first) are looked up: each has been
  visited already, and their verdicts say whether the cause is upstream (an ancestor out of
  spec is recalibrated before its dependents are visited) or in the node itself, which is
  then recalibrated from scratch (its full sweep sees what the short check could not).

Every decision is recorded with its reason. The walk does no I/O of its own: it is given a
`check` and a `calibrate` callable, so the Prefect flow runs them as tasks and tests or the
plain command line run them directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from fluxcal.calibrations.fitting import FitError
from fluxcal.calibrations.graph import GraphEntry, ancestors, order
from fluxcal.calibrations.runner import INSTRUMENT_FAULTS, NodeResult, device_clock
from fluxcal.calibrations.session import MissingParameter, QubitSession
from fluxcal.flows.checks import Check, CheckContext, CheckResult, every_walk
from fluxcal.runlog import Rejection
from fluxcal.snapshots import CalibratedParameter

StateKind = Literal["fresh", "stale", "never calibrated", "dependency recalibrated", "blocked"]
Action = Literal[
    "kept", "recalibrated", "recalibration rejected", "recalibration failed", "skipped"
]


@dataclass(frozen=True)
class NodeState:
    kind: StateKind
    reason: str


@dataclass
class Decision:
    """What the walk found for one node and what it did about it, with the reasons."""

    qubit: str
    node: str
    state: NodeState
    check: CheckResult | None
    action: Action
    reason: str
    diagnosis: str = ""
    #: device time the check and any recalibration of this node took (s)
    device_s: float = 0.0
    #: whether a recalibration moved the node's values beyond its check's tolerance
    #: (`_moved`); dependents are recalibrated only for a node that moved
    moved: bool = True

    @property
    def resolved(self) -> bool:
        """Dependents may build on this node: kept, or recalibrated and accepted."""
        return self.action in ("kept", "recalibrated")

    @property
    def verified(self) -> str:
        """How this run vouched for the node, for diagnoses downstream."""
        if self.action == "recalibrated":
            return "recalibrated"
        if self.check is not None and self.check.verdict != "unavailable":
            return self.check.verdict.replace("_", " ")
        return f"{self.state.kind}, not checked"


CheckRunner = Callable[[str, Check, CheckContext], CheckResult]
Calibrator = Callable[[str, QubitSession], NodeResult]


def parse_time(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def check_state(
    graph: Mapping[str, GraphEntry],
    name: str,
    session: QubitSession,
    now: dt.datetime,
    decisions: Mapping[str, Decision],
    verified: dt.datetime | None = None,
) -> NodeState:
    """The node's state from what is stored and what the walk did to its dependencies.

    Its age counts from its calibration or, if later, `verified`: when a check last found
    it in spec.
    """
    entry = graph[name]
    blocked = [d for d in entry.depends_on if d in decisions and not decisions[d].resolved]
    if blocked:
        return NodeState("blocked", f"{', '.join(blocked)} unresolved")
    stored = [session.known[p] for p in entry.node.produces if p in session.known]
    if not stored:
        return NodeState("never calibrated", f"no stored {', '.join(entry.node.produces)}")
    recalibrated = [
        d
        for d in entry.depends_on
        if d in decisions and decisions[d].action == "recalibrated" and decisions[d].moved
    ]
    if recalibrated:
        return NodeState("dependency recalibrated", ", ".join(recalibrated))
    since = min(parse_time(p.updated) for p in stored)
    age = (now - max(since, verified or since)).total_seconds()
    timing = f"age {age / 3600:.2f} h, timeout {entry.timeout_s / 3600:.2f} h"
    return NodeState("stale" if age > entry.timeout_s else "fresh", timing)


def run_check(
    name: str, check: Check, ctx: CheckContext, reraise_faults: bool = False
) -> CheckResult:
    """A check whose failures become verdicts: a fit that cannot be made is bad data, a
    missing input or a crash leaves the node to its state (unavailable)."""
    try:
        return check(name, ctx)
    except INSTRUMENT_FAULTS as error:
        if reraise_faults:
            raise
        return CheckResult(name, "unavailable", f"instrument fault: {error}")
    except MissingParameter as error:
        return CheckResult(name, "unavailable", f"cannot check: {error.args[0]}")
    except FitError as error:
        return CheckResult(name, "bad_data", f"check fit failed: {error}")
    except Exception as error:  # a broken check must not stop the walk
        return CheckResult(name, "unavailable", f"check failed: {type(error).__name__}: {error}")


def diagnose(graph: Mapping[str, GraphEntry], name: str, decisions: Mapping[str, Decision]) -> str:
    """What this run found upstream of a node whose check gave bad data."""
    upstream = [f"{a} {decisions[a].verified}" for a in ancestors(graph, name) if a in decisions]
    return "upstream: " + ("; ".join(upstream) if upstream else "none (root node)")


@dataclass
class QubitMaintenance:
    decisions: dict[str, Decision] = field(default_factory=dict)
    calibrations: dict[str, NodeResult] = field(default_factory=dict)
    check_measurements: int = 0

    @property
    def device_s(self) -> float:
        """Device time of the whole walk on this qubit: checks and recalibrations."""
        return sum(d.device_s for d in self.decisions.values())


def maintain_qubit(
    graph: Mapping[str, GraphEntry],
    checks: Mapping[str, Check],
    session: QubitSession,
    now: dt.datetime,
    check: CheckRunner,
    calibrate: Calibrator,
    verified: Mapping[str, dt.datetime] | None = None,
    checks_when_due: bool = False,
    rejected: Mapping[str, Rejection] | None = None,
    costs: Mapping[str, float] | None = None,
) -> QubitMaintenance:
    """Walk the whole graph for one qubit, dependencies first; `session.known` ends holding
    the parameters after every recalibration.

    `verified`: when each node was last found in spec (the run log); `checks_when_due`:
    check a fresh node whose check guards no setting (`checks.every_walk`) only once due;
    `rejected`: the last run of each node never accepted since, a rejection (the run log;
    `rejection_stands`); `costs`: the device seconds each node's last calibration took (the
    run log), of which its check may spend `CHECK_SHARE` on a faint probe.
    """
    out = QubitMaintenance()
    ctx = CheckContext(session)
    verified = verified or {}
    rejected = rejected or {}
    costs = costs or {}
    for name in order(graph):
        state = check_state(graph, name, session, now, out.decisions, verified.get(name))
        device_seconds = device_clock(session)
        result: CheckResult | None = None
        diagnosis = ""
        if state.kind == "blocked":
            reason = f"blocked: {state.reason}"
            out.decisions[name] = Decision(session.qubit, name, state, None, "skipped", reason)
            continue
        if state.kind == "never calibrated":
            why = f"{state.kind}: {state.reason}"
        else:
            due = not (checks_when_due and state.kind == "fresh")
            if name in checks and (due or every_walk(checks[name])):
                ctx.allowance_s = CHECK_SHARE * costs.get(name, 0.0)
                result = check(name, checks[name], ctx)
            why = _why_calibrate(state, result)
            if result is not None and result.verdict == "bad_data":
                diagnosis = diagnose(graph, name, out.decisions)
        if why is None:
            reason = _why_keep(state, result, name in checks)
            out.decisions[name] = Decision(
                session.qubit, name, state, result, "kept", reason, device_s=device_seconds()
            )
            continue
        if rejection_stands(graph, name, rejected.get(name), now, out.decisions):
            reason = f"{why}; {_why_wait(graph[name], rejected[name], now)}"
            out.decisions[name] = Decision(
                session.qubit, name, state, result, "skipped", reason, diagnosis, device_seconds()
            )
            continue
        before = {
            p: session.known[p].value for p in graph[name].node.produces if p in session.known
        }
        calibration = calibrate(name, session)
        session.known.update(calibration.parameters)
        out.calibrations[name] = calibration
        action: Action = {
            "accepted": "recalibrated",
            "rejected": "recalibration rejected",
        }.get(calibration.outcome, "recalibration failed")
        moved = _moved(result, before, calibration.parameters)
        still = "" if moved else "; back within the check's tolerance, so dependents keep theirs"
        out.decisions[name] = Decision(
            session.qubit,
            name,
            state,
            result,
            action,
            f"{why} → {calibration.reason}{still}",
            diagnosis,
            device_seconds(),
            moved,
        )
    out.check_measurements = ctx.measurements
    return out


#: The share of a node's last calibration its check may spend while its probe is too faint
#: to judge (`CheckContext.allowance_s`): a check that gives up as bad data sets off that
#: calibration, so a tenth of its cost spent on a clearer look pays when it averts one time
#: in ten.
CHECK_SHARE = 0.1

#: The share of the chip's time a rejected node's retries may hold: it waits 1/`RETRY_DUTY`
#: times as long as its rejected run took, and never longer than its timeout.
RETRY_DUTY = 0.05


def rejection_stands(
    graph: Mapping[str, GraphEntry],
    name: str,
    rejection: Rejection | None,
    now: dt.datetime,
    decisions: Mapping[str, Decision],
) -> bool:
    """Whether a node the walk would calibrate waits instead: its last run was a rejection,
    with no acceptance since (its stored values, if any, are then those a rejected
    recalibration would keep, and its dependents are blocked either way).

    Its gate named a physical cause, and the same chip at the same operating point meets it
    again: sampled chip 5016, whose flux map was rejected at bring-up (the readout barely
    sees the qubit there), spent 20 000 device-s of every hourly drift check measuring the
    map again for the same verdict. So a rejected node is tried again only once its retries
    hold the chip at most `RETRY_DUTY` of the time (a rejected 30 s Rabi at the next hourly
    check, that flux map after its timeout), or when a dependency was recalibrated and
    moved in this walk.
    """
    if rejection is None:
        return False
    if (now - rejection.when).total_seconds() > _wait_s(graph[name], rejection):
        return False
    return not any(
        d in decisions and decisions[d].action == "recalibrated" and decisions[d].moved
        for d in graph[name].depends_on
    )


def _wait_s(entry: GraphEntry, rejection: Rejection) -> float:
    return min(entry.timeout_s, rejection.device_s / RETRY_DUTY)


def _why_wait(entry: GraphEntry, rejection: Rejection, now: dt.datetime) -> str:
    age = (now - rejection.when).total_seconds() / 3600
    return (
        f"last run rejected {age:.2f} h ago after {rejection.device_s:.0f} device-s: "
        f"tried again {_wait_s(entry, rejection) / 3600:.2f} h after it (retries hold the chip "
        f"≤ {RETRY_DUTY:.0%} of the time, within its timeout) or once a dependency moves"
    )


def _moved(
    result: CheckResult | None,
    before: Mapping[str, float],
    after: Mapping[str, CalibratedParameter],
) -> bool:
    """Whether a recalibration moved the values its dependents build on.

    The node's check says how far a value may move and stay in spec (its tolerance per
    parameter); a recalibration that lands within that of the stored value leaves the node
    where an in-spec check would have, so its dependents are not recalibrated for it. A
    probe's false "bad data" on the readout resonator otherwise rebuilt the qubit flux map
    behind it: 3 086 device-s of a daily run that changed nothing (sampled chip 5003).
    Without a check's tolerance, any recalibration counts as a move.
    """
    if result is None or not result.tolerance:
        return True
    for name, tolerance in result.tolerance.items():
        new = after.get(name)
        if name not in before or new is None:
            return True
        if abs(new.value - before[name]) > tolerance:
            return True
    return False


def _why_keep(state: NodeState, result: CheckResult | None, has_check: bool) -> str:
    if result is not None and result.verdict == "in_spec":
        return f"in spec: {result.reason}"
    if result is None and has_check:
        return f"{state.kind}: {state.reason}; slow drift, checked once due"
    if result is None:
        return f"{state.kind}: {state.reason}; no cheap check"
    return f"{state.kind}: {state.reason}; check unavailable: {result.reason}"


def _why_calibrate(state: NodeState, result: CheckResult | None) -> str | None:
    """The reason to recalibrate a calibrated, unblocked node, or None to keep it."""
    if result is not None and result.verdict == "out_of_spec":
        return f"out of spec: {result.reason}"
    if result is not None and result.verdict == "bad_data":
        return f"bad data: {result.reason}"
    if result is not None and result.verdict == "in_spec":
        return None
    note = f" (check unavailable: {result.reason})" if result is not None else ""
    if state.kind in ("stale", "dependency recalibrated"):
        return f"{state.kind}: {state.reason}{note}"
    return None
