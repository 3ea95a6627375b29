"""What one calibration run owns besides its snapshot: its QCoDeS database and its plots.

Each run records its QCoDeS measurements in a database of its own, `STORE/runs/<run id>.db`,
the run id being the UTC start time and the process id. SQLite lets one process write at a
time: when every run shared `STORE/experiments.db`, concurrent runs had nodes fail on
"database is locked", and two processes creating the file together crashed QCoDeS's schema
set-up ("duplicate column name"). The snapshot names the file in its provenance
(`qcodes_database`), so the QCoDeS run ids its experiments carry stay traceable:
`fluxcal analyse STORE/runs/<run id>.db --run-id N`.

The databases are raw material only (a snapshot holds every node's data), 5-15 MB per qubit
and run, so they are not kept forever: when a run ends (`finish`), the newest N databases
in `STORE/runs` are kept (default 5, `fluxcal calibrate --keep-databases N`) and older ones
are deleted, never one whose run is still going (each run holds `runs/<run id>.lock`, see
`fluxcal.run_retention`). A run that was saved with N = 0 deletes its own database at once;
the database of a run that was not saved (nodes failed to run) is the only record of its
data, so that run keeps it, until later runs push it beyond the newest N.

Fit plots are kept per saved version: the run draws them into `PLOTS/<run id>/`, renamed
`PLOTS/v000012/` once the run is saved as version 12 (named like the version file); a run
that is not saved keeps its run id, like its database.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from filelock import FileLock

from fluxcal.options import KEEP_DATABASES
from fluxcal.run_retention import prune_databases, run_lock
from fluxcal.snapshots.fsio import probe_writable

#: Folder of the store that holds one QCoDeS database per run.
RUNS_FOLDER = "runs"


@dataclass(frozen=True)
class RunFiles:
    store: Path
    run_id: str
    plot_root: Path | None = None

    @classmethod
    def start(cls, store: str | Path, plot_root: str | Path | None = None) -> RunFiles:
        """A new run's files: unique per process and microsecond, sortable by start time."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        root = Path(plot_root) if plot_root is not None else None
        return cls(Path(store), f"{stamp}-{os.getpid()}", root)

    @property
    def database(self) -> Path:
        return self.store / RUNS_FOLDER / f"{self.run_id}.db"

    @property
    def plots(self) -> Path | None:
        """Where this run draws its fit plots (None: no plots asked for)."""
        return None if self.plot_root is None else self.plot_root / self.run_id

    @cached_property
    def _running(self) -> FileLock:
        """Held from `open_database` to `finish`: pruners leave this run's database alone."""
        return run_lock(self.database)

    def open_database(self) -> None:
        """Create this run's database and make it QCoDeS's for the rest of the process.

        The folder is tried for writing first, so a read-only store fails with the OSError
        naming it, not with SQLite's "unable to open database file". The run's lock is
        taken before its database exists, so no pruner ever sees the file unlocked.
        """
        from qcodes.dataset import initialise_or_create_database_at

        folder = self.database.parent
        folder.mkdir(exist_ok=True)
        try:
            probe_writable(folder)
        except OSError as error:  # name the folder, not the probe file
            raise OSError(error.errno, error.strerror, str(folder)) from error
        self._running.acquire(timeout=10)
        try:
            initialise_or_create_database_at(str(self.database))
        except sqlite3.Error as error:
            raise OSError(f"{self.database}: cannot create a QCoDeS database: {error}") from error

    def provenance(self) -> dict[str, str]:
        """What the snapshot records about these files (relative to the store)."""
        return {"qcodes_database": f"{RUNS_FOLDER}/{self.run_id}.db"}

    def finish(self, version: int | None, keep: int = KEEP_DATABASES) -> Path | None:
        """End the run: keep its plots under `version` (None: not saved), prune the run
        databases to the newest `keep` (see the module docstring); return the plot folder."""
        plots = self.keep_plots(version)
        self._running.release()
        spare = () if version is not None else (self.database.name,)
        prune_databases(self.database.parent, keep, spare)
        return plots

    def keep_plots(self, version: int | None) -> Path | None:
        """Name the run's plot folder after the version it was saved as; return the folder
        (None: no plot was drawn).

        An existing folder of that name (a plot root shared by two stores) is never merged
        into or replaced: the plots then keep their run id.
        """
        staged = self.plots
        if staged is None or not staged.is_dir():
            return None
        if version is None:
            return staged
        final = staged.with_name(f"v{version:06d}")
        if final.exists():
            return staged
        staged.rename(final)
        return final
