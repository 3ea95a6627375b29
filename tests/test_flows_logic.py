"""The Prefect flows' logic: retries, rejections, per-qubit independence, drift decisions.

In-process flows run against one temporary Prefect API (`prefect_harness`, session scope) on
a small graph of real time-domain nodes whose upstream inputs are seeded from the simulator's
truth, so each flow run takes seconds. The drift check's walk and its verdicts are also
tested without Prefect, on stand-in nodes and checks, where every branch costs microseconds.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, replace

import pytest
import typer
from devices import make_device
from prefect_support import (
    prefect_harness,
    read_back,
    seeded_store,
    truth_parameters,
    two_qubit_device,
)
from typer.testing import CliRunner

from fluxcal import runlog
from fluxcal.calibrations.experiments.rabi import Rabi
from fluxcal.calibrations.experiments.ramsey import Ramsey
from fluxcal.calibrations.experiments.t1 import T1
from fluxcal.calibrations.graph import HOUR, GraphEntry
from fluxcal.calibrations.node import Analysis, Node, now_iso
from fluxcal.calibrations.runner import NodeResult
from fluxcal.calibrations.session import MissingParameter, QubitSession
from fluxcal.flows.artifacts import fit_report_markdown, parameter_rows
from fluxcal.flows.checks import (
    CHECKS,
    CheckContext,
    CheckResult,
    DecayCheck,
    PiAmplitudeCheck,
    QubitFrequencyCheck,
    judge,
)
from fluxcal.flows.daily import daily_calibration
from fluxcal.flows.deploy import build_deployments, local_timezone
from fluxcal.flows.drift import drift_check
from fluxcal.flows.lab import LiveStation
from fluxcal.flows.maintain import maintain_qubit, run_check
from fluxcal.flows.probes import Estimate
from fluxcal.flows.recalibrate import recalibrate
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import CalibratedParameter, SnapshotStore

__all__ = ["prefect_harness"]  # the fixture is used by name

#: What the time-domain nodes need from earlier nodes, taken from the truth.
UPSTREAM = ("qubit_frequency", "readout_frequency", "flux_sweet_spot", "resonator_kappa")


@dataclass
class StrictRabi(Rabi):
    """A Rabi whose gate cannot pass: it wants the π amplitude to one part in a billion."""

    max_relative_error: float = 1e-9


def mini_graph(rabi: type[Node] = Rabi) -> dict[str, GraphEntry]:
    """rabi → ramsey, and t1 on its own branch (it runs on the seeded π amplitude)."""
    return {
        "rabi": GraphEntry(rabi, (), 24 * HOUR),
        "ramsey": GraphEntry(Ramsey, ("rabi",), 4 * HOUR),
        "t1": GraphEntry(T1, (), 4 * HOUR),
    }


MINI_CHECKS = {
    "rabi": PiAmplitudeCheck(),
    "ramsey": QubitFrequencyCheck(tolerance_hz=10e3),
    "t1": DecayCheck("T1", "t1"),
}


def last_snapshot(store):
    return SnapshotStore(store).load()


# ---------------------------------------------------------------- flows through Prefect
def test_an_instrument_timeout_is_retried_and_the_run_is_recorded(prefect_harness, tmp_path):
    device = make_device("light", 1)
    station = build_station(device)
    store = seeded_store(tmp_path / "store", device, UPSTREAM)
    station.components["readout"].inject_fault("timeout", "q0", 1)

    outcome = daily_calibration(
        station=LiveStation(station), store=str(store), graph={"rabi": mini_graph()["rabi"]}
    )

    assert outcome.run.results["q0"]["rabi"].outcome == "accepted"
    snapshot = last_snapshot(store)
    assert snapshot.version == outcome.version
    flow_run, task_runs, artifacts = read_back(snapshot.provenance["flow_run_id"])
    assert flow_run.state_name == "Completed"
    assert flow_run.name == "daily-calibration-all-qubits"
    assert task_runs["q0-rabi"].run_count == 2  # the timeout, then the retry that worked
    assert task_runs["q0-rabi"].state_name == "Accepted"
    assert "data:image/png;base64," in artifacts["q0-rabi-fit"].data
    assert artifacts["fluxcal-parameters"].type == "table"
    truth = device.truth()["q0"]["pi_amplitude"]
    assert abs(snapshot.parameters["q0"]["pi_amplitude"].value / truth - 1) < 0.02


def test_a_rejected_fit_is_not_retried_and_skips_its_dependents_only(prefect_harness, tmp_path):
    device = make_device("light", 1)
    station = build_station(device)
    store = seeded_store(tmp_path / "store", device, (*UPSTREAM, "pi_amplitude"))

    outcome = daily_calibration(
        station=LiveStation(station), store=str(store), graph=mini_graph(StrictRabi)
    )

    results = outcome.run.results["q0"]
    assert results["rabi"].outcome == "rejected"
    assert "pi_amplitude relative stderr" in results["rabi"].reason
    assert results["ramsey"].outcome == "skipped"
    assert results["t1"].outcome == "accepted"  # another branch of the graph still runs
    snapshot = last_snapshot(store)
    _, task_runs, _ = read_back(snapshot.provenance["flow_run_id"])
    assert task_runs["q0-rabi"].run_count == 1
    assert task_runs["q0-rabi"].state_name == "Rejected"
    assert "q0-ramsey" not in task_runs
    seeded = device.truth()["q0"]["pi_amplitude"]
    assert snapshot.parameters["q0"]["pi_amplitude"].value == seeded  # previous value kept


class BrokenAWG(Node):
    """A node whose acquisition fails for a reason that is no instrument hiccup."""

    name = "broken"
    produces = ("pi_amplitude",)

    def acquire(self, session):
        raise ValueError("AWG sequence memory full")


def test_a_node_that_cannot_run_fails_its_task_run_without_retries(prefect_harness, tmp_path):
    station = build_station(make_device("light", 1))
    store = tmp_path / "store"
    graph = {"broken": GraphEntry(BrokenAWG, (), HOUR)}

    outcome = daily_calibration(station=LiveStation(station), store=str(store), graph=graph)

    result = outcome.run.results["q0"]["broken"]
    assert (result.outcome, result.reason) == (
        "failed",
        "acquisition error: AWG sequence memory full",
    )
    _, task_runs, _ = read_back(last_snapshot(store).provenance["flow_run_id"])
    assert task_runs["q0-broken"].state_name == "Failed"
    assert task_runs["q0-broken"].run_count == 1


def test_one_qubits_failure_never_blocks_another(prefect_harness, tmp_path):
    device = two_qubit_device()
    station = build_station(device)
    store = seeded_store(tmp_path / "store", device, UPSTREAM)
    station.components["readout"].inject_fault("timeout", "q0", 3)  # more than the retries
    graph = {name: mini_graph()[name] for name in ("rabi", "ramsey")}

    outcome = daily_calibration(station=LiveStation(station), store=str(store), graph=graph)

    q0, q1 = outcome.run.results["q0"], outcome.run.results["q1"]
    assert q0["rabi"].outcome == "failed"
    assert "instrument fault, 3 attempts" in q0["rabi"].reason
    assert q0["ramsey"].outcome == "skipped"
    assert q1["rabi"].outcome == q1["ramsey"].outcome == "accepted"
    _, task_runs, _ = read_back(last_snapshot(store).provenance["flow_run_id"])
    assert task_runs["q0-rabi"].state.is_failed()  # Prefect names it TimedOut
    assert {"q1-rabi", "q1-ramsey"} <= task_runs.keys()


def test_recalibrate_runs_the_named_nodes_and_their_dependents(prefect_harness, tmp_path):
    device = make_device("light", 1)
    station = build_station(device)
    store = seeded_store(tmp_path / "store", device, (*UPSTREAM, "pi_amplitude", "T1"))

    outcome = recalibrate(
        ["rabi"],
        with_dependents=True,
        station=LiveStation(station),
        store=str(store),
        graph=mini_graph(),
    )

    assert set(outcome.run.results["q0"]) == {"rabi", "ramsey"}
    assert last_snapshot(store).reason == "recalibrate rabi, ramsey on q0"


def test_recalibrate_refuses_nodes_whose_inputs_are_not_calibrated(prefect_harness, tmp_path):
    station = build_station(make_device("light", 1))
    with pytest.raises(ValueError, match="q0: ramsey needs pi_amplitude"):
        recalibrate(
            ["ramsey"],
            station=LiveStation(station),
            store=str(tmp_path / "empty"),
            graph=mini_graph(),
        )


def test_drift_check_recalibrates_only_the_drifted_node(prefect_harness, tmp_path):
    device = make_device("light", 1)
    station = build_station(device)
    store = seeded_store(tmp_path / "store", device, (*UPSTREAM, "pi_amplitude", "T1"))

    steady = drift_check(
        station=LiveStation(station), store=str(store), graph=mini_graph(), checks=MINI_CHECKS
    )

    assert steady.version is None  # nothing drifted: no snapshot
    # T1 sets no gate: its check waits until its node is due (seeded now, timeout 4 h)
    assert steady.experiments() == {"checks": 2, "calibrations": 0}
    assert steady.qubits["q0"].decisions["t1"].reason.endswith("checked once due")
    # the drive line lost 10 %: the stored π amplitude is now 10 % off
    parameters = last_snapshot(store).parameters
    pi = parameters["q0"]["pi_amplitude"]
    parameters["q0"]["pi_amplitude"] = CalibratedParameter(
        pi.value * 1.1, pi.stderr, pi.unit, pi.experiment, pi.updated
    )
    SnapshotStore(store).save(parameters, reason="π amplitude off by 10 %")

    report = drift_check(
        station=LiveStation(station), store=str(store), graph=mini_graph(), checks=MINI_CHECKS
    )

    decisions = report.qubits["q0"].decisions
    assert decisions["rabi"].check.verdict == "out_of_spec"
    assert report.recalibrated() == {"q0": ["rabi"]}
    assert decisions["ramsey"].state.kind == "dependency recalibrated"
    assert decisions["ramsey"].action == decisions["t1"].action == "kept"
    snapshot = last_snapshot(store)
    assert snapshot.version == report.version
    assert abs(snapshot.parameters["q0"]["pi_amplitude"].value / pi.value - 1) < 0.02
    _, task_runs, artifacts = read_back(snapshot.provenance["flow_run_id"])
    assert task_runs["q0-check-rabi"].state_name == "Out of spec"
    assert task_runs["q0-rabi"].state_name == "Accepted"
    rows = artifacts["drift-check-decisions"].data
    assert "out of spec" in rows and "dependency recalibrated" in rows


def test_the_daily_run_of_a_calibrated_chip_is_its_maintenance_walk(prefect_harness, tmp_path):
    """Mode "auto": a chip without every node's results is brought up; once its snapshot
    holds them, the daily run is the maintenance walk (checks, nothing recalibrated while
    in spec); a named node is always calibrated."""
    device = make_device("light", 1)
    station = build_station(device)
    graph = mini_graph()
    store = seeded_store(tmp_path / "store", device, UPSTREAM)
    first = daily_calibration(station=LiveStation(station), store=str(store), graph=graph)
    assert last_snapshot(store).provenance["mode"] == "bring-up"  # results missing
    assert {r.outcome for r in first.run.results["q0"].values()} == {"accepted"}

    daily = daily_calibration(station=LiveStation(station), store=str(store), graph=graph)

    snapshot = last_snapshot(store)
    assert snapshot.version == daily.version  # one snapshot per daily run, as in bring-up
    assert snapshot.provenance["mode"] == "maintenance"
    assert "everything in spec" in snapshot.provenance["decisions"]
    assert daily.run.results["q0"] == {}  # nothing recalibrated
    asked = daily_calibration(
        station=LiveStation(station), store=str(store), graph=graph, nodes=["t1"]
    )
    assert last_snapshot(store).provenance["mode"] == "bring-up"
    assert asked.run.results["q0"]["t1"].outcome == "accepted"


# ---------------------------------------------------------------- the walk, without Prefect
def stand_in(name: str, produces: tuple[str, ...]) -> type[Node]:
    return type(name, (Node,), {"name": name, "produces": produces})


WALK_GRAPH = {
    "a": GraphEntry(stand_in("a", ("pa",)), (), HOUR),
    "b": GraphEntry(stand_in("b", ("pb",)), ("a",), HOUR),
    "c": GraphEntry(stand_in("c", ("pc",)), ("b",), HOUR),
    "d": GraphEntry(stand_in("d", ("pd",)), (), HOUR),
}
NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


def stored(*names: str, age_h: float = 0.5) -> dict[str, CalibratedParameter]:
    when = (NOW - dt.timedelta(hours=age_h)).isoformat()
    return {n: CalibratedParameter(1.0, 0.1, "", n[1], when) for n in names}


def verdicts(**by_node: str):
    """Checks that answer with a fixed verdict (or raise MissingParameter for 'missing')."""

    def make(verdict: str):
        def check(node, ctx):
            if verdict == "missing":
                raise MissingParameter("q0: no calibrated pz yet")
            return CheckResult(node, verdict, f"{node} is {verdict}")

        return check

    return {node: make(v) for node, v in by_node.items()}


def calibrator(outcomes: dict[str, str] | None = None):
    calls = []

    def calibrate(name, session):
        calls.append(name)
        outcome = (outcomes or {}).get(name, "accepted")
        parameters = {f"p{name}": CalibratedParameter(2.0, 0.1, "", name, now_iso())}
        return NodeResult(
            name,
            session.qubit,
            outcome,
            f"{name} {outcome}",
            parameters if outcome == "accepted" else {},
        )

    return calibrate, calls


def walk(known, checks, outcomes=None):
    calibrate, calls = calibrator(outcomes)
    session = QubitSession(None, "q0", dict(known))
    out = maintain_qubit(WALK_GRAPH, checks, session, NOW, run_check, calibrate)
    return out, calls, session


@dataclass(frozen=True)
class FigureOfMerit:
    """A check that guards no setting (like the decay checks): run only once due."""

    every_walk = False

    def __call__(self, node, ctx):
        return CheckResult(node, "in_spec", f"{node} is in_spec")


def test_the_hourly_check_runs_a_figure_of_merit_check_only_once_due():
    """Decay checks hold most of a drift check's device time (delays of several T1) and set
    nothing a gate uses: the hourly walk runs them when their node is older than its
    timeout counted from its calibration or its last in-spec check; the daily walk always."""
    checks = {"a": verdicts(a="in_spec")["a"], "d": FigureOfMerit()}

    def hourly(age_h: float, verified_h: float | None = None):
        session = QubitSession(None, "q0", stored("pa", "pb", "pc", "pd", age_h=age_h))
        verified = {} if verified_h is None else {"d": NOW - dt.timedelta(hours=verified_h)}
        calibrate, _ = calibrator()
        out = maintain_qubit(WALK_GRAPH, checks, session, NOW, run_check, calibrate, verified, True)
        return out.decisions

    fresh = hourly(age_h=0.5)
    assert fresh["a"].check is not None  # a setting: every walk
    assert fresh["d"].check is None and fresh["d"].reason.endswith("checked once due")
    assert hourly(age_h=1.5)["d"].check.verdict == "in_spec"  # due: checked
    assert hourly(age_h=1.5, verified_h=0.5)["d"].check is None  # vouched for since
    daily, _, _ = walk(stored("pa", "pb", "pc", "pd"), checks)
    assert daily.decisions["d"].check.verdict == "in_spec"


def test_the_run_log_vouches_for_a_node_only_with_in_spec_verdicts_before_now(tmp_path):
    def run(hours: float, verdict: str) -> runlog.RunRecord:
        decision = runlog.CheckDecision(verdict, "kept", 1.0)
        when = (NOW + dt.timedelta(hours=hours)).isoformat()
        return runlog.RunRecord("drift-check", when, None, {}, {"q0": {"t1": decision}})

    for hours, verdict in ((-3, "in_spec"), (-2, "in_spec"), (-1, "bad_data"), (+1, "in_spec")):
        runlog.append(tmp_path, run(hours, verdict))
    assert runlog.last_in_spec(tmp_path, NOW) == {("q0", "t1"): NOW - dt.timedelta(hours=2)}
    assert runlog.last_in_spec(tmp_path / "no log", NOW) == {}


def test_everything_in_spec_and_fresh_is_kept_without_calibrating():
    out, calls, _ = walk(stored("pa", "pb", "pc", "pd"), verdicts(a="in_spec", b="in_spec"))
    assert calls == []
    assert {n: d.action for n, d in out.decisions.items()} == dict.fromkeys("abcd", "kept")
    assert out.decisions["c"].reason.endswith("no cheap check")


def test_an_out_of_spec_node_is_recalibrated_and_its_dependents_rechecked():
    out, calls, session = walk(
        stored("pa", "pb", "pc", "pd"), verdicts(a="out_of_spec", b="in_spec")
    )
    assert calls == ["a"]
    assert session.known["pa"].value == 2.0
    b = out.decisions["b"]
    assert (b.state.kind, b.action) == ("dependency recalibrated", "kept")
    assert out.decisions["c"].action == "kept"  # b, its dependency, was confirmed in spec


def test_a_dependent_without_a_check_is_recalibrated_after_its_dependency():
    out, calls, _ = walk(stored("pa", "pb", "pc", "pd"), verdicts(a="out_of_spec"))
    assert calls == ["a", "b", "c"]
    assert out.decisions["d"].action == "kept"


def bad_data_within(tolerance: float):
    """A check of node a that gives bad data and names pa's tolerance, as a probe does."""

    def check(node, ctx):
        return CheckResult(node, "bad_data", "no dip", tolerance={"pa": tolerance})

    return check


def test_a_recalibration_that_lands_back_in_tolerance_leaves_dependents_alone():
    """A probe's false bad data recalibrates its node; the value it finds again (2.0 for the
    stored 1.0, within a tolerance of 1.5) changes nothing its dependents build on, so the
    check-less dependents b and c are not rebuilt. Beyond the tolerance they are."""
    within, calls, _ = walk(stored("pa", "pb", "pc", "pd"), {"a": bad_data_within(1.5)})
    assert calls == ["a"]
    assert within.decisions["a"].action == "recalibrated" and not within.decisions["a"].moved
    assert "dependents keep theirs" in within.decisions["a"].reason
    assert within.decisions["b"].action == within.decisions["c"].action == "kept"
    beyond, calls, _ = walk(stored("pa", "pb", "pc", "pd"), {"a": bad_data_within(0.5)})
    assert calls == ["a", "b", "c"]
    assert beyond.decisions["b"].state.kind == "dependency recalibrated"


def test_bad_data_is_diagnosed_upstream_and_the_node_recalibrated():
    out, calls, _ = walk(stored("pa", "pb", "pc", "pd"), verdicts(a="in_spec", b="bad_data"))
    assert "b" in calls
    assert out.decisions["b"].diagnosis == "upstream: a in spec"
    assert out.decisions["b"].reason.startswith("bad data: b is bad_data")


def test_a_rejected_recalibration_skips_dependents_but_not_other_branches():
    out, calls, _ = walk(
        stored("pa", "pb", "pc", "pd", age_h=5), verdicts(), outcomes={"a": "rejected"}
    )
    assert out.decisions["a"].action == "recalibration rejected"
    assert out.decisions["b"].action == out.decisions["c"].action == "skipped"
    assert out.decisions["d"].action == "recalibrated"  # stale (5 h > 1 h), no check
    assert calls == ["a", "d"] or calls == ["d", "a"]


def test_never_calibrated_nodes_are_calibrated_and_unusable_checks_fall_back_to_state():
    out, calls, _ = walk(stored("pa", "pb", "pc"), verdicts(a="missing"))
    assert out.decisions["a"].action == "kept"
    assert "check unavailable: cannot check: q0: no calibrated pz yet" in out.decisions["a"].reason
    assert out.decisions["d"].state.kind == "never calibrated"
    assert calls == ["d"]


def test_an_instrument_fault_during_a_check_leaves_the_node_to_its_state():
    def timeout(node, ctx):
        raise TimeoutError("digitiser timed out")

    result = run_check("a", timeout, None)
    assert (result.verdict, result.reason) == (
        "unavailable",
        "instrument fault: digitiser timed out",
    )


# ---------------------------------------------------------------- verdicts
@pytest.mark.parametrize(
    ("value", "stderr", "direction", "verdict"),
    [
        (10.5, 0.1, 0, "in_spec"),  # within tolerance 1.0
        (11.1, 0.1, 0, "in_spec"),  # beyond tolerance, not beyond tolerance + 2σ
        (11.3, 0.1, 0, "out_of_spec"),
        (8.7, 0.1, 0, "out_of_spec"),
        (8.7, 0.1, 1, "in_spec"),  # a decrease does not count one-sided upwards
        (12.0, 2.0, 0, "bad_data"),  # the check cannot resolve the tolerance
    ],
)
def test_judge_needs_the_drift_beyond_tolerance_plus_twice_the_uncertainty(
    value, stderr, direction, verdict
):
    result = judge("n", "x", Estimate(value, stderr), 10.0, 0.0, 1.0, direction=direction)
    assert result.verdict == verdict


#: Bias checks and the spectroscopy line between them, as the walk visits them.
QUBIT_PROBE_NODES = ("resonator_flux", "qubit_spectroscopy", "sweet_spot")


def probe_verdicts(station, known) -> dict[str, str]:
    ctx = CheckContext(QubitSession(station, "q0", known))
    return {n: run_check(n, CHECKS[n], ctx).verdict for n in QUBIT_PROBE_NODES}


def test_a_qubit_rise_at_the_stored_bias_is_the_sweet_spots_and_a_fall_the_lines():
    """The bias 4.5e-4 Φ0 off the sweet spot (an hour of the device file's flux walk at
    2σ): f01 at the stored bias rises by ~250 kHz, beyond the line's tolerance (200 kHz),
    within the resonator scan's (300 kHz). Only the sweet spot is out of spec: the line,
    recalibrated there, would be stored off the sweet spot (the simulated week's hour 14).
    A fall of as much is the line's own: no bias brings f01 below its minimum."""
    device = make_device("heavy", 1)
    station = build_station(device)
    truth = device.truth()["q0"]
    known = truth_parameters(device, (*UPSTREAM, "pi_amplitude"))["q0"]
    off = truth["flux_sweet_spot"] + 4.5e-4 * truth["flux_period"]
    rise = dict(known, flux_sweet_spot=replace(known["flux_sweet_spot"], value=off))
    ctx = CheckContext(QubitSession(station, "q0", rise))
    offset, _ = ctx.qubit_offset(200e3)
    assert 220e3 < offset.value < 280e3  # in the gap between the two tolerances
    assert probe_verdicts(station, rise) == {
        "resonator_flux": "in_spec",
        "qubit_spectroscopy": "in_spec",
        "sweet_spot": "out_of_spec",
    }
    line = known["qubit_frequency"]
    fall = dict(known, qubit_frequency=replace(line, value=line.value + 250e3))
    assert probe_verdicts(station, fall) == {
        "resonator_flux": "in_spec",
        "qubit_spectroscopy": "out_of_spec",
        "sweet_spot": "in_spec",
    }


@pytest.mark.parametrize("node", ["rabi", "t1", "ramsey"])
def test_a_glitched_check_trace_is_bad_data_never_a_drift(node):
    device = make_device("light", 1)
    station = build_station(device)
    names = (*UPSTREAM, "pi_amplitude", "T1")
    session = QubitSession(station, "q0", truth_parameters(device, names)["q0"])
    assert run_check(node, CHECKS[node], CheckContext(session)).verdict == "in_spec"
    # every look glitched: a probe sized by precision may look again with more shots, and a
    # glitch hidden in a first look's noise is rightly outvoted by a clean second look
    station.components["readout"].inject_fault("glitch", "q0", 8)
    assert run_check(node, CHECKS[node], CheckContext(session)).verdict == "bad_data"


def test_judge_reports_probe_problems_as_bad_data():
    result = judge("n", "x", Estimate(math.nan, math.nan, ["no fringes"]), 10.0, 0.0, 1.0)
    assert (result.verdict, result.reason) == ("bad_data", "x: no fringes")


# ---------------------------------------------------------------- artifacts and deployments
def test_fit_report_embeds_the_plot_and_names_the_failed_criterion(tmp_path):
    from fluxcal.calibrations.gate import at_most

    analysis = Analysis(
        values={"pi_amplitude": (0.2, 0.01)},
        criteria=[at_most("reduced chi-square", 7.0, 3.0)],
        report="[[Fit Statistics]]",
        curves={"x": [0, 1, 2], "y": [0, 1, 0], "xlabel": "a", "ylabel": "b"},
    )
    result = NodeResult(
        "rabi", "q0", "rejected", "reduced chi-square = 7 (needs <= 3): FAILED", analysis=analysis
    )
    result.plot = Rabi().plot(_dataset(), analysis, tmp_path / "q0_rabi.png")
    text = fit_report_markdown(result)
    assert "## q0 · rabi — rejected" in text
    assert "| reduced chi-square | 7 | ≤ 3 | **FAIL** |" in text
    assert "![q0 rabi fit](data:image/png;base64,iVBOR" in text


def _dataset():
    import xarray as xr

    return xr.Dataset(attrs={"qubit": "q0"})


def test_parameter_table_shows_the_change_since_the_previous_snapshot():
    old = {"q0": {"T1": CalibratedParameter(200e-6, 10e-6, "s", "t1", "t0")}}
    new = {"q0": {"T1": CalibratedParameter(230e-6, 10e-6, "s", "t1", "t1")}}
    run = {"q0": {"t1": NodeResult("t1", "q0", "accepted", "ok", dict(new["q0"]))}}
    (row,) = parameter_rows(old, new, run)
    assert row["change"] == "+3e-05 (+2.1σ)"
    assert row["outcome"] == "accepted (t1)"


def test_deployments_schedule_daily_at_six_local_time_and_drift_hourly(tmp_path):
    daily, drift, recal = build_deployments(None, None, tmp_path / "store")
    (cron,) = [s.schedule for s in daily.schedules]
    assert (cron.cron, cron.timezone) == ("0 6 * * *", local_timezone())
    (interval,) = [s.schedule for s in drift.schedules]
    assert interval.interval == dt.timedelta(hours=1)
    assert not recal.schedules
    assert daily.parameters["store"] == str((tmp_path / "store").resolve())
    assert daily.entrypoint == "fluxcal.flows.daily.daily_calibration"


# ---------------------------------------------------------------- command line
def cli() -> typer.Typer:
    from fluxcal.flows.commands import register_commands

    app = typer.Typer()
    register_commands(app)
    return app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recalibrate", "bogus"], "error: unknown calibration node(s): bogus"),
        (["recalibrate", "rabi", "--device", "missing.yaml"], "error: device file not found"),
        (["drift-check", "--station", "missing.yaml"], "error: station file not found"),
    ],
)
def test_bad_input_ends_with_one_line_and_exit_code_1(args, message, tmp_path):
    result = CliRunner().invoke(cli(), [*args, "--store", str(tmp_path / "s")])
    assert result.exit_code == 1
    assert result.output.strip().startswith(message)
    assert len(result.output.strip().splitlines()) == 1
