"""Options shared by the `fluxcal` commands, and the store they default to.

Kept apart from `fluxcal.cli` so that `flows.commands` can declare the same options without
importing the command line it is registered on (no import cycle). Light imports only: every
command's start-up pays for this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

#: Where snapshots go when neither `--store` nor FLUXCAL_STORE says otherwise.
DEFAULT_STORE = "fluxcal-store"
#: QCoDeS databases of runs kept in STORE/runs (`fluxcal.run_retention`).
KEEP_DATABASES = 5

DeviceOption = Annotated[
    Path | None,
    typer.Option("--device", help="device.yaml of a simulated chip (default: built-in)"),
]
StationOption = Annotated[
    Path | None, typer.Option("--station", help="QCoDeS station YAML (default: simulated lab)")
]
StoreOption = Annotated[
    Path | None, typer.Option("--store", help="snapshot store directory [env FLUXCAL_STORE]")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="calibration settings YAML (`fluxcal settings defaults`)"),
]
QubitOption = Annotated[list[str] | None, typer.Option("--qubit", help="qubit(s); default all")]
VerboseOption = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="show QCoDeS's 'Starting experimental run' lines"),
]
SavePartialOption = Annotated[
    bool,
    typer.Option(
        "--save-partial",
        help="save the run even if nodes failed to run (not a physics rejection); "
        "without it such a run stores nothing and exits 1",
    ),
]

KeepDatabasesOption = Annotated[
    int,
    typer.Option(
        "--keep-databases",
        min=0,
        help="keep the QCoDeS databases of the newest N runs in STORE/runs, delete older ones "
        "(0: delete this run's once its snapshot is saved)",
    ),
]


def default_store(store: str | Path | None = None) -> Path:
    """`--store`, else $FLUXCAL_STORE, else ./fluxcal-store."""
    return Path(store or os.environ.get("FLUXCAL_STORE", DEFAULT_STORE))
