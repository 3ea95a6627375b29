"""Runs on one store: concurrent processes, each run's own QCoDeS database, saved plots, and
runs whose nodes could not run.

Four real `fluxcal calibrate` processes calibrate one cheap node on one store at once (the
whole chain takes minutes of CPU; the database contention is the same for any node); the
rest runs in-process through Typer's CliRunner.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from fluxcal.cli import app
from fluxcal.snapshots import SnapshotStore

FLUXCAL = Path(sys.executable).with_name("fluxcal")
CHEAP = ["--qubit", "q0", "--node", "resonator_search"]
CONCURRENT = 4
TIMEOUT_S = 80.0


def start(store: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(FLUXCAL), "calibrate", "--store", str(store), *CHEAP, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(processes: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each process; all are killed by PID at the deadline."""
    deadline = time.monotonic() + TIMEOUT_S
    try:
        done = []
        for process in processes:
            out, err = process.communicate(timeout=max(deadline - time.monotonic(), 0.1))
            done.append((process.returncode, out, err))
        return done
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()


def test_concurrent_calibrations_of_one_store_all_succeed(tmp_path):
    store = tmp_path / "store"
    results = finish([start(store) for _ in range(CONCURRENT)])

    for code, out, err in results:
        assert code == 0, err
        assert "database is locked" not in err + out
        outcomes = json.loads(out)["outcomes"]["q0"]
        assert set(outcomes.values()) <= {"accepted", "rejected"}, outcomes
    versions = sorted(json.loads(out)["version"] for _, out, _ in results)
    assert versions == list(range(1, CONCURRENT + 1))
    databases = {SnapshotStore(store).load(v).provenance["qcodes_database"] for v in versions}
    assert {f"runs/{path.name}" for path in (store / "runs").glob("*.db")} == databases
    assert len(databases) == CONCURRENT


def calibrate(store: Path, *args: str):
    return CliRunner().invoke(app, ["calibrate", "--store", str(store), *CHEAP, *args])


def test_each_saved_version_keeps_its_plots_and_names_its_database(tmp_path):
    store, plots = tmp_path / "store", tmp_path / "plots"
    for _ in range(2):
        result = calibrate(store, "--plots", str(plots))
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in plots.iterdir()) == ["v000001", "v000002"]
    for version in (1, 2):
        assert (plots / f"v{version:06d}" / "q0_resonator_search.png").is_file()
        database = SnapshotStore(store).load(version).provenance["qcodes_database"]
        assert (store / database).is_file()


def test_a_run_with_a_failed_node_is_saved_only_when_asked(tmp_path, faulty_readout):
    store = tmp_path / "store"
    unsaved = calibrate(store, "--json")
    assert unsaved.exit_code == 1
    assert json.loads(unsaved.stdout)["version"] is None
    (line,) = unsaved.stderr.strip().splitlines()
    assert line.startswith("error: run not saved, 1 node(s) failed to run: q0 resonator_search")
    assert SnapshotStore(store).current_version() is None

    saved = calibrate(store, "--save-partial")
    assert saved.exit_code == 0, saved.output
    assert saved.stderr.startswith("warning: v1 saved with node(s) that failed")
    assert SnapshotStore(store).current_version() == 1
    assert len(list((store / "runs").glob("*.db"))) == 2  # the unsaved run's data is kept
