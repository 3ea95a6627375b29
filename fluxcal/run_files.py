"""What one calibration run owns besides its snapshot: its QCoDeS database and its plots.

Each run records its QCoDeS measurements in a database of its own, `STORE/runs/<run id>.db`,
the run id being the UTC start time and the process id. SQLite lets one process write at a
time: when every run shared `STORE/experiments.db`, concurrent runs had nodes fail on
"database is locked", and two processes creating the file together crashed QCoDeS's schema
set-up ("duplicate column name"). The snapshot names the file in its provenance
(`qcodes_database`), so the QCoDeS run ids its experiments carry stay traceable:
`fluxcal analyse STORE/runs/<run id>.db --run-id N`. The databases are raw material only;
a snapshot holds every node's data, so old ones may be deleted.

Fit plots are kept per saved version: the run draws them into `PLOTS/<run id>/`, renamed
`PLOTS/v000012/` once the run is saved as version 12 (named like the version file); a run
that is not saved keeps its run id, like its database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

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

    def open_database(self) -> None:
        """Create this run's database and make it QCoDeS's for the rest of the process."""
        from qcodes.dataset import initialise_or_create_database_at

        self.database.parent.mkdir(exist_ok=True)
        initialise_or_create_database_at(str(self.database))

    def provenance(self) -> dict[str, str]:
        """What the snapshot records about these files (relative to the store)."""
        return {"qcodes_database": f"{RUNS_FOLDER}/{self.run_id}.db"}

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
