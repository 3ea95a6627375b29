"""The per-run QCoDeS databases in STORE/runs are pruned to the newest N when a run ends, and
never while their run is still going (`fluxcal.run_retention`, `fluxcal.run_files`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluxcal.cli import app
from fluxcal.run_retention import prune_databases, run_lock
from fluxcal.snapshots import SnapshotStore

CHEAP = ["--qubit", "q0", "--node", "resonator_search"]
#: Files in the runs folder that are not a run's database: never deleted.
FOREIGN = ["notes.db", "export.csv", "20260101T000000.000000Z-1.db.bak"]


def run_databases(folder: Path, count: int) -> list[Path]:
    """`count` databases named as runs name them, oldest first, each with its SQLite files
    and a lock file left by its (ended) run."""
    folder.mkdir(parents=True, exist_ok=True)
    databases = []
    for day in range(1, count + 1):
        database = folder / f"202601{day:02d}T090000.000000Z-{100 + day}.db"
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
            path.write_bytes(b"sqlite")
        run_lock(database).acquire()
        run_lock(database).release()
        databases.append(database)
    for name in FOREIGN:
        (folder / name).write_text("kept")
    return databases


@pytest.fixture
def held(tmp_path) -> Iterator[Callable[[Path], subprocess.Popen]]:
    """held(database): another process holds the database's run lock until the test ends."""
    holders: list[subprocess.Popen] = []

    def hold(database: Path) -> subprocess.Popen:
        script = (
            "import sys\nfrom filelock import FileLock\n"
            "lock = FileLock(sys.argv[1])\nlock.acquire()\nprint('held', flush=True)\n"
            "sys.stdin.read()\n"
        )
        lock_file = run_lock(database).lock_file
        holder = subprocess.Popen(
            [sys.executable, "-c", script, lock_file],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        holders.append(holder)
        assert holder.stdout.readline().strip() == "held"
        return holder

    yield hold
    for holder in holders:
        holder.kill()
        holder.communicate(timeout=30)


def test_the_newest_are_kept_older_ones_deleted_with_their_files(tmp_path):
    folder = tmp_path / "runs"
    databases = run_databases(folder, 6)

    deleted = prune_databases(folder, keep=3, spare={databases[0].name})

    assert deleted == databases[1:3]
    left = sorted(p.name for p in folder.iterdir())
    kept = [databases[0], *databases[3:]]
    expected = [f"{p.name}{end}" for p in kept for end in ("", "-shm", "-wal")]
    expected += [p.with_suffix(".lock").name for p in kept]
    assert left == sorted(expected + FOREIGN)


def test_a_database_whose_run_is_still_going_is_never_deleted(tmp_path, held):
    folder = tmp_path / "runs"
    oldest, *others = run_databases(folder, 3)
    holder = held(oldest)

    assert prune_databases(folder, keep=0) == others
    assert oldest.is_file()

    holder.kill()  # the run crashed: the kernel drops its lock, its database may go
    holder.communicate(timeout=30)
    assert prune_databases(folder, keep=0) == [oldest]
    assert sorted(p.name for p in folder.iterdir()) == sorted(FOREIGN)


def calibrate(store: Path, *args: str):
    return CliRunner().invoke(app, ["calibrate", "--store", str(store), *CHEAP, *args])


def test_calibrate_keeps_the_newest_databases_it_is_told_to(tmp_path):
    store = tmp_path / "store"
    old = run_databases(store / "runs", 3)

    result = calibrate(store, "--keep-databases", "2")

    assert result.exit_code == 0, result.output
    own = store / SnapshotStore(store).load(1).provenance["qcodes_database"]
    assert sorted((store / "runs").glob("*.db")) == sorted([old[-1], own, store / "runs/notes.db"])


def test_keep_zero_deletes_a_saved_runs_database_never_an_unsaved_ones_own(
    tmp_path, faulty_readout
):
    """An unsaved run's database is the only record of its data: that run keeps it; the
    next run prunes it like any other once it is beyond the newest N."""
    store = tmp_path / "store"
    unsaved = calibrate(store, "--keep-databases", "0")
    assert unsaved.exit_code == 1
    assert len(list((store / "runs").glob("*.db"))) == 1

    saved = calibrate(store, "--keep-databases", "0", "--save-partial")
    assert saved.exit_code == 0, saved.output
    assert list((store / "runs").iterdir()) == []
    assert SnapshotStore(store).load(1).provenance["qcodes_database"].startswith("runs/")
