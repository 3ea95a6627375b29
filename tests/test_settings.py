"""Calibration settings files: validation, per-qubit overrides, recording in snapshots, CLI.

Validation is checked on a small stand-in node that has every supported field type, and on
the real graph for the fields a lab sets first (the resonator band); the overrides are
checked on the node instance that actually runs (the band of the acquired sweep), and the
recorded settings and code version are read back through the store API.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import fluxcal
from fluxcal.calibrations.experiments.resonator_spectroscopy import COARSE
from fluxcal.calibrations.graph import DEFAULT_GRAPH, HOUR, GraphEntry
from fluxcal.calibrations.node import Node
from fluxcal.calibrations.persist import save_run
from fluxcal.calibrations.runner import run_graph
from fluxcal.calibrations.settings import CalibrationSettings, SettingsError, node_fields
from fluxcal.calibrations.settings_yaml import defaults_yaml, field_comments
from fluxcal.cli import app
from fluxcal.flows.deploy import build_deployments
from fluxcal.flows.lab import LiveStation
from fluxcal.flows.recalibrate import recalibrate_plain
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import SnapshotStore
from fluxcal.snapshots.layout import content_checksum, read_version


@dataclass(frozen=True)
class Limits:
    """Nested settings, given as a mapping."""

    min_snr: float = 10.0  # signal-to-noise the fit needs
    bounds: tuple[float, float] = (1.0, 2.0)


@dataclass
class Toy(Node):
    """A stand-in node with one field of every supported kind."""

    name = "toy"

    span: float = 1e6  # Hz, sweep width
    points: int = 101
    herald: bool = True
    mode: Literal["fast", "slow"] = "fast"
    label: str = "x"
    window: tuple[float, float] = (0.0, 1.0)
    #: Gate limits of the fit.
    limits: Limits = Limits()


@dataclass
class LoudToy(Toy):
    """Inherits the meaning of its fields; overrides a default."""

    span: float = 2e6


TOY_GRAPH = {"toy": GraphEntry(Toy, (), HOUR), "loud": GraphEntry(LoudToy, ("toy",), HOUR)}


def toy(data: object) -> CalibrationSettings:
    return CalibrationSettings.from_dict(data, graph=TOY_GRAPH)


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"defaults": {"toy": {"window": [1, 2, 3]}}},
            "defaults.toy.window: expected 2 numbers, got 3",
        ),
        (
            {"qubits": {"q1": {"toy": {"window": 5}}}},
            "qubits.q1.toy.window: expected a list of 2 numbers, got 5",
        ),
        (
            {"defaults": {"toy": {"window": [0, "one"]}}},
            "defaults.toy.window[1]: expected a valid number, got 'one'",
        ),
        ({"defaults": {"toy": {"spam": 1}}}, "defaults.toy.spam: unknown field of Toy"),
        ({"defaults": {"toi": {}}}, "defaults.toi: unknown calibration node (did you mean toy?)"),
        ({"default": {}}, "default: unknown section (did you mean defaults?)"),
        ({"defaults": {"toy": {"points": 10.5}}}, "defaults.toy.points: expected a valid integer"),
        ({"defaults": {"toy": {"span": "1 MHz"}}}, "defaults.toy.span: expected a valid number"),
        ({"defaults": {"toy": {"span": float("nan")}}}, "defaults.toy.span: expected a finite"),
        ({"defaults": {"toy": {"herald": 1}}}, "defaults.toy.herald: expected a valid boolean"),
        ({"defaults": {"toy": {"mode": "turbo"}}}, "defaults.toy.mode: expected 'fast' or 'slow'"),
        ({"defaults": {"toy": {"label": 3}}}, "defaults.toy.label: expected a valid string"),
        (
            {"qubits": {"q0": {"toy": {"limits": {"min_snr": float("inf")}}}}},
            "qubits.q0.toy.limits.min_snr: expected a finite number, got inf",
        ),
        (
            {"defaults": {"toy": {"limits": {"max_snr": 3}}}},
            "defaults.toy.limits.max_snr: unknown field of Limits (did you mean min_snr?)",
        ),
        (
            {"defaults": {"toy": {"limits": 3}}},
            "defaults.toy.limits: expected a mapping of Limits fields, got 3",
        ),
        ([1, 2], "<top level>: expected a mapping with defaults and qubits, got [1, 2]"),
    ],
)
def test_a_bad_value_is_rejected_with_the_path_of_the_field(data, message):
    with pytest.raises(SettingsError) as error:
        toy(data)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_every_problem_is_reported_at_once_and_ints_are_fine_floats():
    with pytest.raises(SettingsError, match=r"toy\.points: .*; defaults\.toy\.herald: "):
        toy({"defaults": {"toy": {"points": "many", "herald": "yes", "span": 2}}})
    assert toy({"defaults": {"toy": {"span": 2}}}).for_node("q0", "toy") == {"span": 2.0}


def test_the_real_graph_is_introspected_not_listed():
    bad = {"qubits": {"q1": {"resonator_search": {"band": [4.0e9, 5.0e9, 6.0e9]}}}}
    with pytest.raises(SettingsError, match=r"qubits\.q1\.resonator_search\.band: expected 2"):
        CalibrationSettings.from_dict(bad)
    for name, entry in DEFAULT_GRAPH.items():  # every field of every node is settable as-is
        defaults = CalibrationSettings().resolved(["q0"])["q0"][name]
        settings = CalibrationSettings.from_dict({"defaults": {name: defaults}})
        assert settings.resolved(["q0"])["q0"][name] == defaults
        assert set(defaults) == set(node_fields(entry.node))


def test_a_yaml_file_reads_exponents_as_numbers_and_errors_name_the_file(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text("defaults:\n  resonator_search: {band: [4.0e9, 5e9]}\n")
    kwargs = CalibrationSettings.load(path).for_node("q0", "resonator_search")
    assert kwargs == {"band": (4.0e9, 5.0e9)}
    path.write_text("defaults:\n  resonator_search: {band: [4.0e9, 5e9]\n")
    with pytest.raises(SettingsError, match=f"^{re.escape(str(path))}: not valid YAML"):
        CalibrationSettings.load(path)
    path.write_text("defaults:\n  resonator_search: {bands: [4.0e9, 5e9]}\n")
    with pytest.raises(SettingsError, match=r"yaml: defaults\.resonator_search\.bands: unknown"):
        CalibrationSettings.load(path)


# ------------------------------------------------------------------------------ overrides
def test_qubit_entries_merge_over_the_defaults_field_by_field():
    settings = toy(
        {
            "defaults": {"toy": {"points": 61, "limits": {"min_snr": 5}}},
            "qubits": {"q1": {"toy": {"limits": {"bounds": [0, 3]}}, "loud": {"mode": "slow"}}},
        }
    )
    assert settings.for_node("q0", "toy") == {"points": 61, "limits": Limits(5.0, (1.0, 2.0))}
    assert settings.for_node("q1", "toy") == {"points": 61, "limits": Limits(5.0, (0.0, 3.0))}
    assert settings.for_node("q0", "loud") == {}
    resolved = settings.resolved(["q0", "q1"])
    assert resolved["q1"]["loud"] == {
        "span": 2e6,
        "points": 101,
        "herald": True,
        "mode": "slow",
        "label": "x",
        "window": [0.0, 1.0],
        "limits": {"min_snr": 10.0, "bounds": [1.0, 2.0]},
    }
    json.dumps(resolved, allow_nan=False)
    assert toy(settings.as_dict()) == settings


def test_settings_for_a_qubit_the_station_lacks_are_an_error():
    settings = toy({"qubits": {"q7": {"toy": {"points": 3}}}})
    with pytest.raises(SettingsError, match=r"qubits\.q7: no such qubit on the station"):
        settings.check_qubits(["q0", "q1"])


@pytest.fixture(scope="module")
def narrowed_run():
    """resonator_search alone on the built-in two-qubit chip, the band narrowed for every
    qubit and narrowed further for q0."""
    station = build_station(SimulatedDevice.from_yaml(None, time=0.0))
    settings = CalibrationSettings.from_dict(
        {
            "defaults": {"resonator_search": {"band": [6.8e9, 7.6e9]}},
            "qubits": {"q0": {"resonator_search": {"band": [6.9e9, 7.1e9], "step": 400e3}}},
        }
    )
    run = run_graph(station, ["q0", "q1"], nodes=["resonator_search"], settings=settings)
    return station, run


def test_the_node_that_runs_sweeps_the_band_its_qubit_was_given(narrowed_run):
    _, run = narrowed_run
    q0 = run.results["q0"]["resonator_search"]
    q1 = run.results["q1"]["resonator_search"]
    for result, band in ((q0, (6.9e9, 7.1e9)), (q1, (6.8e9, 7.6e9))):
        coarse = result.data[COARSE].values
        np.testing.assert_allclose([coarse.min(), coarse.max()], band)
    assert np.diff(q0.data[COARSE].values)[0] == pytest.approx(400e3)
    assert q0.outcome == "accepted", q0.reason  # the q0 resonator (7.0 GHz) is in its band
    assert run.settings["q1"]["resonator_search"]["band"] == [6.8e9, 7.6e9]
    assert run.settings["q0"]["rabi"] == CalibrationSettings().resolved(["q0"])["q0"]["rabi"]


# ------------------------------------------------------------------------------ snapshots
def test_the_snapshot_records_the_settings_and_the_code_version(narrowed_run, tmp_path):
    station, run = narrowed_run
    store = SnapshotStore(tmp_path / "store")
    version = save_run(store, run, station, "narrowed")

    snapshot = store.load(version)
    assert snapshot.settings == run.settings
    assert snapshot.settings["q0"]["resonator_search"]["band"] == [6.9e9, 7.1e9]
    assert snapshot.code_version["fluxcal"] == fluxcal.__version__
    source = Path(fluxcal.__file__).resolve().parent.parent
    head = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if head.returncode == 0:  # a checkout: the commit is recorded
        assert snapshot.code_version["git_commit"] == head.stdout.strip()
        assert isinstance(snapshot.code_version["git_dirty"], bool)

    again = store.load(store.rollback(version, "undo"))
    assert (again.settings, again.code_version) == (snapshot.settings, snapshot.code_version)

    shown = CliRunner().invoke(app, ["snapshots", "show", str(version), "--store", store.path])
    assert f"settings: q0, q1 ({len(DEFAULT_GRAPH)} nodes each" in shown.output
    assert f"code: fluxcal {fluxcal.__version__}" in shown.output


def test_a_file_written_before_settings_were_recorded_still_reads(tmp_path):
    store = SnapshotStore(tmp_path / "store")
    path = store.path / "v000001.h5"
    store.save({}, reason="old", settings={"q0": {}})
    with h5py.File(path, "r+") as f:  # make it look like a file from before this change
        del f["settings"]
        del f.attrs["code_version"]
        f.attrs["checksum"] = content_checksum(f)
    old = read_version(path)
    assert (old.settings, old.code_version, old.reason) == ({}, {}, "old")


def test_a_snapshots_settings_repeat_its_calibration(narrowed_run, tmp_path):
    station, run = narrowed_run
    store = SnapshotStore(tmp_path / "store")
    version = save_run(store, run, station, "narrowed")
    repeated = CalibrationSettings.from_dict({"qubits": store.load(version).settings})
    assert repeated.resolved(["q0", "q1"]) == run.settings


def test_flows_take_the_settings_and_record_them(tmp_path):
    station = build_station(SimulatedDevice.from_yaml(None, time=0.0))
    settings = {"qubits": {"q0": {"resonator_search": {"band": [6.9e9, 7.1e9]}}}}
    outcome = recalibrate_plain(
        ["resonator_search"],
        qubits=["q0"],
        station=LiveStation(station),
        store=str(tmp_path / "store"),
        settings=settings,
    )
    coarse = outcome.run.results["q0"]["resonator_search"].data[COARSE].values
    assert (coarse.min(), coarse.max()) == pytest.approx((6.9e9, 7.1e9))
    recorded = SnapshotStore(tmp_path / "store").load(outcome.version).settings
    assert list(recorded) == ["q0"]
    assert recorded["q0"]["resonator_search"]["band"] == [6.9e9, 7.1e9]

    config = tmp_path / "lab.yaml"
    daily, drift, _ = build_deployments(None, None, tmp_path / "store", settings=config)
    assert daily.parameters["settings"] == drift.parameters["settings"] == str(config.resolve())


# ---------------------------------------------------------------------------- command line
@pytest.fixture
def bad_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("qubits:\n  q1:\n    resonator_search:\n      band: [4.0e9, 5.0e9, 6.0e9]\n")
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["calibrate"],
        ["recalibrate", "rabi", "--no-prefect"],
        ["drift-check", "--no-prefect"],
        ["settings", "check"],
    ],
)
def test_a_bad_settings_file_ends_the_command_with_one_line_naming_the_field(
    command, bad_file, tmp_path
):
    args = [*command, str(bad_file)] if command[0] == "settings" else [*command, "--config"]
    if command[0] != "settings":
        args += [str(bad_file), "--store", str(tmp_path / "store")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line == (
        f"error: {bad_file}: qubits.q1.resonator_search.band: expected 2 numbers, got 3"
    )


def test_calibrate_refuses_settings_for_a_qubit_the_station_lacks(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text("qubits:\n  q7:\n    rabi: {shots: 500}\n")
    args = ["calibrate", "--config", str(path), "--store", str(tmp_path / "store")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: qubits.q7: no such qubit on the station (it has q0, q1)"
    )


def test_the_defaults_file_lists_every_field_and_round_trips_through_check(tmp_path):
    printed = CliRunner().invoke(app, ["settings", "defaults"])
    assert printed.exit_code == 0
    path = tmp_path / "defaults.yaml"
    path.write_text(printed.output)
    checked = CliRunner().invoke(app, ["settings", "check", str(path)])
    assert checked.exit_code == 0, checked.output
    assert checked.output.startswith(f"ok: {path} sets ")
    loaded = CalibrationSettings.load(path)
    assert loaded.resolved(["q0"]) == CalibrationSettings().resolved(["q0"])
    assert set(loaded.defaults) == set(DEFAULT_GRAPH)
    for name, entry in DEFAULT_GRAPH.items():
        assert set(loaded.defaults[name]) == set(node_fields(entry.node))
    # Plain YAML 1.1 readers (PyYAML's safe_load) read the same numbers.
    assert yaml.safe_load(printed.output)["defaults"] == loaded.as_dict()["defaults"]


def test_the_defaults_file_carries_each_fields_source_comment():
    assert field_comments(LoudToy) == {
        "span": "Hz, sweep width",
        "limits": "Gate limits of the fit.",
    }
    text = defaults_yaml(TOY_GRAPH)
    assert "  # A stand-in node with one field of every supported kind.\n  toy:\n" in text
    assert "    span: 2.0e+6  # Hz, sweep width\n" in text
    assert '    mode: "fast"\n' in text
    assert "      min_snr: 10.0  # signal-to-noise the fit needs\n" in text
    assert CalibrationSettings.from_dict(yaml.safe_load(text), graph=TOY_GRAPH).resolved(
        ["q0"]
    ) == toy({}).resolved(["q0"])


def test_calibrate_can_repeat_the_settings_of_a_snapshot(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text("defaults:\n  resonator_search: {band: [6.9e9, 7.6e9], step: 1.0e+6}\n")
    store = str(tmp_path / "store")
    common = ["calibrate", "--node", "resonator_search", "--store", store, "--json"]
    first = CliRunner().invoke(app, [*common, "--config", str(path)])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(app, [*common, "--config-from-snapshot", "v1"])
    assert again.exit_code == 0, again.output
    snapshots = SnapshotStore(store)
    assert snapshots.load(2).settings == snapshots.load(1).settings
    assert snapshots.load(2).settings["q1"]["resonator_search"]["step"] == 1e6
