"""Retention of the per-run QCoDeS databases: keep the newest N, never one a run still writes.

Each run measures into `STORE/runs/<run id>.db` (`fluxcal.run_files`), 5-15 MB per qubit,
and a scheduled store gains about 25 a day (the daily calibration, hourly drift checks), so
they are pruned whenever a run ends. They are raw material only: a saved snapshot holds every
node's data; its provenance keeps naming a pruned database, which is then simply gone.

Whether a run has finished is decided by a lock, not by names or process ids (hosts may share
the store): a run holds `runs/<run id>.lock` from before its database exists until it ends,
and the kernel drops the lock of a run that crashed. A database is deleted only by a pruner
holding its run's lock, so never while its run is still going, and never by two pruners.
Only files named like a run's database are ever deleted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from pathlib import Path

from filelock import FileLock, Timeout

#: `<UTC start>-<pid>.db`, as `RunFiles.start` names them; nothing else is ever deleted.
_DATABASE = re.compile(r"\d{8}T\d{6}\.\d{6}Z-\d+\.db")
#: What SQLite keeps next to a database (QCoDeS uses WAL mode).
_SIDECARS = ("-wal", "-shm", "-journal")

log = logging.getLogger(__name__)


def run_lock(database: Path) -> FileLock:
    """The lock a run holds on its database while the run is going (not per thread: a flow
    may end its run on another thread than the one that started it)."""
    return FileLock(database.with_suffix(".lock"), thread_local=False)


def prune_databases(folder: Path, keep: int, spare: Collection[str] = ()) -> list[Path]:
    """Delete the run databases in `folder` beyond the newest `keep` whose runs have ended,
    except those named in `spare`; return the deleted ones.

    Run ids start with the UTC start time, so names sort oldest first. A file that cannot be
    deleted is logged and left: pruning must never fail a run whose snapshot is saved.
    """
    try:
        names = sorted(p.name for p in folder.iterdir() if _DATABASE.fullmatch(p.name))
    except FileNotFoundError:
        return []
    except OSError as error:
        log.warning("fluxcal: run databases not pruned in %s: %s", folder, error)
        return []
    old = names[: max(len(names) - keep, 0)]
    return [folder / name for name in old if name not in spare and _delete(folder / name)]


def _delete(database: Path) -> bool:
    """Delete a database, its SQLite files and its lock file, if its run has ended.

    The lock file goes last, while still held: a pruner that opens it afterwards locks a new
    file and finds no database left to delete.
    """
    lock = run_lock(database)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        return False  # its run is still going
    except OSError as error:
        log.warning("fluxcal: %s not pruned: %s", database, error)
        return False
    files = [database, *(Path(f"{database}{end}") for end in _SIDECARS), Path(lock.lock_file)]
    try:
        for path in files:
            path.unlink(missing_ok=True)
    except OSError as error:
        log.warning("fluxcal: %s not pruned: %s", database, error)
        return False
    finally:
        lock.release()
    return True
