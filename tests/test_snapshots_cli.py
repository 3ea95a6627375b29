"""`fluxcal snapshots` commands through Typer's CliRunner, including error exits."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import snapshot_samples as samples
from typer.testing import CliRunner

from fluxcal.snapshots import CalibratedParameter, SnapshotStore
from fluxcal.snapshots.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory) -> Path:
    """A store of two versions, the first with raw data, saved once for the module."""
    store = SnapshotStore(tmp_path_factory.mktemp("saved") / "store")
    store.save(samples.parameters(), samples.experiments(n=20), samples.STATION, reason="daily")
    params = samples.parameters(shift=3)
    params["q0"]["chi"] = CalibratedParameter(-268e3, 2e3, "Hz", "readout", "t")
    store.save(params, reason="drift")
    return store.path


@pytest.fixture
def store(two_versions, tmp_path):
    """A copy of the two saved versions for each test to change or damage."""
    shutil.copytree(two_versions, tmp_path / "store", symlinks=True)
    return SnapshotStore(tmp_path / "store")


def run(store, *args: str):
    return runner.invoke(app, [*args, "--store", str(store.path)])


def test_list(store):
    result = run(store, "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["version", "parent", "created", "reason"]
    assert lines[1].split()[0] == "1" and lines[1].endswith("daily")
    assert lines[2].startswith("*") and lines[2].split()[1] == "2"
    data = json.loads(run(store, "list", "--json").stdout)
    assert [(d["version"], d["current"]) for d in data] == [(1, False), (2, True)]


def test_store_from_environment(store):
    result = runner.invoke(app, ["list", "--json"], env={"FLUXCAL_STORE": str(store.path)})
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)) == 2


def test_show(store):
    result = run(store, "show", "1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("version 1  parent -1")
    assert "reason: daily" in out
    assert "363.4 MHz ± 5 kHz" in out  # qubit_frequency with SI prefix and stderr
    assert "210 µs ± 10 µs" in out  # T1
    assert "fidelity below 0.9" in out  # experiment outcome table
    current = run(store, "show", "current", "--json")
    data = json.loads(current.stdout)
    assert data["version"] == 2 and data["current"] is True
    assert data["parameters"]["q0"]["chi"]["value"] == -268e3
    assert data["parameters"]["q0"]["readout_amplitude"]["stderr"] is None  # nan -> null
    assert data["experiments"] == {}
    first = json.loads(run(store, "show", "v1", "--json").stdout)
    assert first["experiments"]["q0"]["ramsey"]["data_variables"] == ["iq"]
    assert first["station"] == samples.STATION


def test_diff(store):
    result = run(store, "diff", "1", "current")
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.stdout.splitlines()[1:]}
    assert "added" in rows["chi"]
    assert "+2.1" in rows["T1"]  # 3 stderr shift / sqrt(2)
    data = json.loads(run(store, "diff", "1", "2", "--json").stdout)
    t1 = next(d for d in data if d["name"] == "T1")
    assert math.isclose(t1["delta_sigma"], 3 / math.sqrt(2))
    assert run(store, "diff", "2", "2").stdout.strip() == "no parameter changes"


def test_history(store):
    result = run(store, "history", "q0", "T1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["version", "1", "2"]
    assert "240 µs" in lines[2]
    data = json.loads(run(store, "history", "q0", "T1", "--json").stdout)
    assert [d["version"] for d in data] == [1, 2]
    missing = run(store, "history", "q0", "nope")
    assert missing.exit_code == 1 and "no version holds parameter" in missing.stderr


def test_rollback(store):
    result = run(store, "rollback", "1", "--reason", "drift was a glitch")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "created v3 with the content of v1"
    assert store.load(3).reason == "rollback to v1: drift was a glitch"
    data = json.loads(run(store, "rollback", "2", "--reason", "again", "--json").stdout)
    assert data == {"version": 4, "rollback_of": 2}
    assert store.current_version() == 4


def test_verify_ok_and_damaged(store):
    result = run(store, "verify")
    assert result.exit_code == 0 and result.stdout.startswith("ok: 2 versions")
    path = store.path / "v000001.h5"
    path.write_bytes(path.read_bytes()[:1000])
    bad = run(store, "verify")
    assert bad.exit_code == 1
    assert "damaged" in bad.stdout and "v000001.h5 is damaged" in bad.stdout
    data = json.loads(run(store, "verify", "--json").stdout)
    assert [(d["kind"], d["version"]) for d in data] == [("damaged", 1)]
    shown = run(store, "show", "1")
    assert shown.exit_code == 1
    assert shown.stderr.startswith("error: v000001.h5 is damaged")
    assert len(shown.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "7"], "error: no version 7"),
        (["show", "seven"], "error: not a version: 'seven'"),
        (["diff", "1", "9"], "error: no version 9"),
        (["rollback", "9", "--reason", "x"], "error: no version 9"),
    ],
)
def test_error_exits_are_one_line(store, args, message):
    result = run(store, *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "command", [["list"], ["show", "current"], ["verify"], ["history", "q0", "T1"]]
)
def test_missing_store(tmp_path, command):
    missing = tmp_path / "nowhere"
    result = runner.invoke(app, [*command, "--store", str(missing)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: no snapshot store at {missing}"
    assert not missing.exists()
