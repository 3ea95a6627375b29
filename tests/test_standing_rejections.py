"""A node its gate rejected waits before a walk tries it again.

The rejection names a physical cause (a readout too faint for the flux map), which the same
chip meets again: sampled chip 5016, whose flux map was rejected at bring-up, spent 20 000
device-s of every hourly drift check measuring it again, and in mode auto the daily run
brought the whole chip up again every morning. The run log says when each node was last
rejected and what that run cost; the maintenance walk skips such a node until its retries
would hold the chip at most 5 % of the time (within its timeout) or a dependency moved, and
the daily run maintains a chip that is as calibrated as it can be.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from fluxcal import runlog
from fluxcal.calibrations.graph import DAY, GraphEntry
from fluxcal.calibrations.node import Node
from fluxcal.calibrations.runner import NodeResult
from fluxcal.calibrations.session import QubitSession
from fluxcal.flows.checks import CheckResult
from fluxcal.flows.daily import choose_mode, settled
from fluxcal.flows.maintain import maintain_qubit, run_check
from fluxcal.snapshots import CalibratedParameter

NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


def stand_in(name: str) -> type[Node]:
    return type(name, (Node,), {"name": name, "produces": (f"p{name}",)})


# map → spectroscopy-like chain: b needs a, c needs b
GRAPH = {
    "a": GraphEntry(stand_in("a"), (), DAY),
    "b": GraphEntry(stand_in("b"), ("a",), DAY),
    "c": GraphEntry(stand_in("c"), ("b",), DAY),
}


def hours_ago(hours: float) -> dt.datetime:
    return NOW - dt.timedelta(hours=hours)


def stored_a() -> dict[str, CalibratedParameter]:
    return {"pa": CalibratedParameter(1.0, 0.1, "", "a", hours_ago(0.5).isoformat())}


def rejected_after(hours: float, device_s: float = 5000.0) -> runlog.Rejection:
    return runlog.Rejection(hours_ago(hours), device_s)


def walk(rejected: dict[str, runlog.Rejection], a_verdict: str = "in_spec"):
    """The maintenance walk with `a` calibrated and checked, `b` and `c` never accepted."""
    calls: list[str] = []

    def calibrate(name: str, session: QubitSession) -> NodeResult:
        calls.append(name)
        value = CalibratedParameter(2.0, 0.1, "", name, NOW.isoformat())
        return NodeResult(name, session.qubit, "accepted", "fitted", {f"p{name}": value})

    def check(node, ctx):
        return CheckResult(node, a_verdict, f"{node} is {a_verdict}")

    session = QubitSession(None, "q0", stored_a())
    out = maintain_qubit(
        GRAPH, {"a": check}, session, NOW, run_check, calibrate, None, True, rejected
    )
    return out.decisions, calls


def test_a_fresh_rejection_stands_and_blocks_its_dependents_without_device_time():
    decisions, calls = walk({"b": rejected_after(1)})
    assert calls == []
    assert decisions["b"].action == "skipped"
    assert "rejected 1.00 h ago after 5000 device-s" in decisions["b"].reason
    assert decisions["b"].reason.startswith("never calibrated")
    assert "tried again 24.00 h after it" in decisions["b"].reason  # 20 × 5000 s > a day
    assert decisions["c"].action == "skipped" and "b unresolved" in decisions["c"].reason


def test_a_rejection_older_than_the_timeout_is_tried_again():
    decisions, calls = walk({"b": rejected_after(25)})
    assert calls == ["b", "c"]
    assert decisions["b"].action == "recalibrated"


def test_a_cheap_rejection_is_tried_again_sooner():
    """Retries of a node rejected after 90 device-s hold the chip 5 % of the time when 30
    minutes apart: the next hourly check tries it."""
    decisions, calls = walk({"b": rejected_after(1, device_s=90.0)})
    assert calls == ["b", "c"]
    decisions, calls = walk({"b": rejected_after(0.25, device_s=90.0)})
    assert calls == [] and "tried again 0.50 h after it" in decisions["b"].reason


def test_a_rejection_is_tried_again_once_a_dependency_moved():
    """Recalibrated upstream, the chip is at another operating point: the cause may be gone."""
    decisions, calls = walk({"b": rejected_after(1)}, a_verdict="out_of_spec")
    assert calls == ["a", "b", "c"]
    assert decisions["b"].action == "recalibrated"


def test_the_run_log_keeps_the_last_rejection_until_an_acceptance(tmp_path):
    """A failure (a fault, a crash) says nothing of the chip and ends no rejection; runs
    stamped after `before` count for nothing."""

    def run(hours: float, node: str, outcome: str) -> runlog.RunRecord:
        when = (NOW + dt.timedelta(hours=hours)).isoformat()
        nodes = {"q0": {node: runlog.NodeRun(outcome, 10.0)}}
        return runlog.RunRecord("daily-calibration", when, None, nodes)

    for record in (
        run(-5, "x", "rejected"),
        run(-4, "y", "rejected"),
        run(-3, "y", "accepted"),
        run(-2, "z", "rejected"),
        run(-1, "z", "failed"),
        run(+1, "w", "rejected"),
    ):
        runlog.append(tmp_path, record)
    assert runlog.standing_rejections(tmp_path, NOW) == {
        ("q0", "x"): rejected_after(5, 10.0),
        ("q0", "z"): rejected_after(2, 10.0),
    }
    assert runlog.standing_rejections(tmp_path / "no log", NOW) == {}


def test_the_daily_run_maintains_a_chip_whose_missing_nodes_were_rejected(tmp_path):
    """Mode auto: b was rejected and c is behind it, so the chip has been brought up and the
    daily run is the maintenance walk, which tries b again when its rejection no longer
    stands; without the rejection on record, the missing nodes call for a bring-up."""
    lab = SimpleNamespace(graph=GRAPH, qubits=["q0"], store=SimpleNamespace(path=tmp_path))
    known = {"q0": stored_a()}
    assert choose_mode("auto", lab, None, known, NOW) == "bring-up"
    nodes = {"q0": {"b": runlog.NodeRun("rejected", 5000.0)}}
    runlog.append(tmp_path, runlog.RunRecord("daily-calibration", NOW.isoformat(), None, nodes))
    for later in (1, 25):
        assert choose_mode("auto", lab, None, known, NOW + dt.timedelta(hours=later)) == (
            "maintenance"
        )
    assert choose_mode("auto", lab, ["c"], known, NOW + dt.timedelta(hours=1)) == "bring-up"
    assert settled(GRAPH, ["q0"], known, tmp_path, NOW + dt.timedelta(hours=1))
    assert not settled(GRAPH, ["q0"], known, tmp_path, NOW - dt.timedelta(hours=1))


def test_a_calibrated_node_whose_last_recalibration_was_rejected_waits_too():
    """Its check finds it out of spec again; the stored value is what a rejected
    recalibration would keep, so the walk records the verdict and waits."""
    calls: list[str] = []

    def calibrate(name: str, session: QubitSession) -> NodeResult:
        calls.append(name)
        return NodeResult(name, session.qubit, "rejected", "too faint", {})

    def check(node, ctx):
        verdict = "out_of_spec" if node == "b" else "in_spec"
        return CheckResult(node, verdict, f"{node} is {verdict}")

    when = hours_ago(0.5).isoformat()
    known = {
        **stored_a(),
        "pb": CalibratedParameter(1.0, 0.1, "", "b", when),
        "pc": CalibratedParameter(1.0, 0.1, "", "c", when),
    }
    session = QubitSession(None, "q0", known)
    rejected = {"b": rejected_after(1)}
    out = maintain_qubit(
        GRAPH, {"a": check, "b": check}, session, NOW, run_check, calibrate, None, True, rejected
    )
    assert calls == []
    assert out.decisions["b"].action == "skipped"
    assert out.decisions["b"].check.verdict == "out_of_spec"
    assert out.decisions["b"].reason.startswith("out of spec")
    assert out.decisions["c"].action == "skipped" and "b unresolved" in out.decisions["c"].reason
