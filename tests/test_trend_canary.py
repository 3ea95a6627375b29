"""Trends, the calibration a job cites, and a canary rollout on the simulated chip.

The canary scenario calibrates only `t1` (seeded from the truth, about 0.2 s a run) on a
two-qubit chip, so a settings change is rolled out, judged and promoted or rolled back in
seconds of CPU.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import snapshot_samples as samples
from prefect_support import seeded_store, two_qubit_device
from typer.testing import CliRunner

from fluxcal import canary
from fluxcal.calibrations.persist import current_parameters, save_run
from fluxcal.calibrations.runner import run_graph
from fluxcal.calibrations.settings import settings_from
from fluxcal.cli import app
from fluxcal.flows.artifacts import trend_markdown
from fluxcal.instruments.station import build_station
from fluxcal.metrics_push import after_flow_run
from fluxcal.snapshots import CalibratedParameter, SnapshotStore

runner = CliRunner()


@pytest.fixture
def history(tmp_path):
    """Four versions: T1 measured at v1, carried forward in v2, re-measured at v3 and v4."""
    store = SnapshotStore(tmp_path / "store")
    t1 = [(2.1e-4, "2025-11-25T10:00:00+00:00"), (1.6e-4, "2025-11-26T10:00:00+00:00")]
    for i, (value, when) in enumerate([t1[0], t1[0], t1[1], (1.9e-4, "2025-11-27T10:00:00+00:00")]):
        params = samples.parameters()
        params["q0"]["T1"] = CalibratedParameter(value, 1e-5 * (i + 1), "s", "t1", when)
        store.save(params, reason=f"run {i}")
    return store


def cli(store, *args):
    return runner.invoke(app, [*args, "--store", str(store.path)])


def test_trend_lists_each_measurement_once_with_si_prefixes(history, tmp_path):
    result = cli(history, "snapshots", "trend", "T1", "--plot", str(tmp_path / "t1.png"))
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()[1:]
    assert [r.split()[1] for r in rows] == ["1", "3", "4"]  # v2 carried v1's measurement
    assert "210 µs ± 10 µs" in rows[0] and "160 µs ± 30 µs" in rows[1]
    assert (tmp_path / "t1.png").read_bytes()[:4] == b"\x89PNG"
    last = json.loads(cli(history, "snapshots", "trend", "T1", "--last", "1", "--json").stdout)
    assert [p["version"] for p in last["q0"]] == [4]
    missing = cli(history, "snapshots", "trend", "T9")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: no version holds T9")


def test_daily_trend_artifact_embeds_a_plot_and_the_latest_values(history):
    markdown = trend_markdown(history, last=2)
    assert "data:image/png;base64," in markdown
    assert "| T1 | q0 | 0.00019 ± 4e-05 s | 2025-11-27T10:00:00+00:00 | v4 | 2 |" in markdown


def test_current_json_and_show_at_answer_which_calibration_a_job_ran_with(history):
    current = json.loads(cli(history, "snapshots", "current", "--json").stdout)
    snap = history.load()
    assert current["version"] == 4 and current["checksum"] == snap.checksum
    assert 0 <= current["age_seconds"] < 60
    assert current["oldest_parameter_updated"] == samples.UPDATED
    created = {v.version: dt.datetime.fromisoformat(v.created) for v in history.versions()}
    between = created[2] + (created[3] - created[2]) / 2
    shown = cli(history, "snapshots", "show", "--at", between.isoformat(), "--json")
    assert json.loads(shown.stdout)["version"] == 2
    naive_utc = created[4].astimezone(dt.UTC).replace(tzinfo=None).isoformat()
    assert (
        json.loads(cli(history, "snapshots", "show", "--at", naive_utc, "--json").stdout)["version"]
        == 4
    )
    before = cli(history, "snapshots", "show", "--at", "2000-01-01T00:00:00Z")
    assert before.exit_code == 1 and "no version" in before.stderr
    both = cli(history, "snapshots", "show", "1", "--at", "2000-01-01")
    assert both.exit_code == 1 and "not both" in both.stderr


# ------------------------------------------------------------------------ canary
@pytest.fixture
def lab(tmp_path):
    """A two-qubit simulated chip, a store seeded from its truth and the lab's settings."""
    device = two_qubit_device()
    station = build_station(device)
    store = seeded_store(tmp_path / "store", device, tuple(device.truth()["q0"]))
    settings = tmp_path / "lab-settings.yaml"
    settings.write_text("defaults:\n  t1: {max_chi2: 3.0}\n")
    run_t1(station, store, settings)  # the baseline the canary is judged against
    return station, store, settings


def run_t1(station, store, settings_file) -> int:
    """What a flow does each run: the lab's settings through the canary, then log it."""
    settings = canary.effective_settings(store, settings_from(settings_file))
    snapshots = SnapshotStore(store)
    run = run_graph(
        station,
        ["q0", "q1"],
        nodes=["t1"],
        known=current_parameters(snapshots),
        settings=settings,
    )
    version = save_run(snapshots, run, station, "t1 run")
    after_flow_run(store, "daily-calibration", run.results, version)
    return version


def test_a_good_settings_change_is_promoted_to_every_qubit(lab, tmp_path):
    station, store, settings = lab
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text("defaults:\n  t1: {max_chi2: 3.0, stderr_margin: 1.5}\n")
    started = cli(
        SnapshotStore(store),
        "canary",
        "start",
        str(candidate),
        "--settings",
        str(settings),
        "--qubit",
        "q1",
    )
    assert started.exit_code == 0, started.output
    assert canary.evaluate(store).verdict == "wait"

    version = run_t1(station, store, settings)

    recorded = SnapshotStore(store).load(version).settings
    assert recorded["q1"]["t1"]["stderr_margin"] == 1.5  # the canary qubit ran the candidate
    assert recorded["q0"]["t1"]["stderr_margin"] == 1.25  # the rest the lab's file
    decided = cli(SnapshotStore(store), "canary", "decide")
    assert decided.exit_code == 0, decided.output
    assert "promoted" in decided.stdout
    assert settings.read_text() == candidate.read_text()
    assert (tmp_path / "lab-settings.yaml.canary-1.bak").read_text().endswith("3.0}\n")
    assert canary.current(store).state == "promoted"
    status = json.loads(cli(SnapshotStore(store), "canary", "status", "--json").stdout)
    assert status["decision"] == "promote"


def test_a_bad_settings_change_is_rolled_back_and_nothing_is_lost(lab, tmp_path):
    station, store, settings = lab
    before = SnapshotStore(store).load()
    rejecting = tmp_path / "rejecting.yaml"
    rejecting.write_text("defaults:\n  t1: {min_snr: 1.0e+6}\n")  # no T1 trace passes that
    canary.start(store, rejecting, settings, ["q1"])
    run_t1(station, store, settings)
    evaluation = canary.evaluate(store)
    assert evaluation.verdict == "rollback"
    assert evaluation.reasons == ["q1 t1: rejected under the candidate, accepted before"]
    first = canary.decide(store)
    assert first.state == "rolled back" and first.restored_version is None  # q1 kept its T1

    imprecise = tmp_path / "imprecise.yaml"  # accepted, but T1 about 4 times less precise
    imprecise.write_text(
        "defaults:\n  t1: {adaptive_shots: 10, coarse_points: 8, max_relative_error: 0.5}\n"
    )
    canary.start(store, imprecise, settings, ["q1"])
    run_t1(station, store, settings)
    latest_q0 = SnapshotStore(store).load().parameters["q0"]["T1"]
    second = canary.decide(store)
    assert second.state == "rolled back"
    assert any(r.startswith("q1 T1: relative stderr") for r in second.reasons), second.reasons
    restored = SnapshotStore(store).load()
    assert restored.version == second.restored_version
    assert restored.provenance["canary_decision"] == "rollback"
    assert (
        restored.parameters["q1"]["T1"]
        == SnapshotStore(store).load(second.baseline_version).parameters["q1"]["T1"]
    )
    assert restored.parameters["q0"]["T1"] == latest_q0  # q0's newer calibration kept
    assert settings.read_text() == "defaults:\n  t1: {max_chi2: 3.0}\n"  # lab file untouched
    assert len(SnapshotStore(store).versions()) == before.version + 3  # none removed
    after = canary.effective_settings(store, settings_from(settings))
    assert after.for_node("q1", "t1") == {"max_chi2": 3.0}  # q1 back on the lab's settings
