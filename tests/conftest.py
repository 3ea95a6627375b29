"""Shared fixtures: a QCoDeS database per test file and simulated stations."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from qcodes.dataset import initialise_or_create_database_at

from fluxcal.instruments.station import build_station


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files marked `slow(seconds)` run first, longest first.

    Why: xdist hands out whole files (`--dist loadfile --no-loadscope-reorder` keeps this
    order; its default sorts by test count instead). The design-space file, a few tests
    behind one fixture of minutes, was handed out late and kept one worker busy alone at
    the end of the suite while the other had finished.
    """

    def order(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return -float(marker.args[0]) if marker else 0.0

    items.sort(key=order)


#: A memory-backed file system, used for the QCoDeS databases when it has this much room.
SHARED_MEMORY = Path("/dev/shm")
_SHARED_MEMORY_ROOM = 2**30


@pytest.fixture(scope="module", autouse=True)
def qcodes_database(tmp_path_factory):
    """Each test file's QCoDeS measurements go to a temporary database of their own, kept in
    memory (/dev/shm) when there is room for it.

    Why: QCoDeS commits ~4,700 times for a chain's ~80 datasets and SQLite syncs each commit
    to disk: 1,000 fdatasync calls, 3 s of a 12 s chain on this machine's disk, for a
    database nobody keeps. One per file bounds the memory to one file's measurements (a
    chain adds ~7 MB); a machine without the room writes to the test's temporary folder.
    """
    in_memory = (
        SHARED_MEMORY.is_dir() and shutil.disk_usage(SHARED_MEMORY).free > _SHARED_MEMORY_ROOM
    )
    if in_memory:
        folder = Path(tempfile.mkdtemp(prefix="fluxcal-qcodes-", dir=SHARED_MEMORY))
    else:
        folder = tmp_path_factory.mktemp("qcodes")
    path = folder / "experiments.db"
    initialise_or_create_database_at(str(path))
    yield path
    if in_memory:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def station_for():
    """station_for(device) -> Station wired to that SimulatedDevice."""
    return build_station


@pytest.fixture(autouse=True)
def no_handlers_on_closed_streams():
    """Drop logging handlers left writing to a stream that has been closed.

    Typer's CliRunner swaps sys.stderr for a buffer it closes afterwards; Prefect, loaded by
    an in-process `recalibrate` or `drift-check`, attaches its console handler to whatever
    stderr was then. The next log record in the same process (a later test file on the same
    xdist worker) would print "--- Logging error ---" onto the real stderr and break that
    test's one-line-error check.
    """
    yield
    import logging

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in list(getattr(logger, "handlers", [])):
            stream = getattr(handler, "stream", None)
            if getattr(stream, "closed", False):
                logger.removeHandler(handler)


@pytest.fixture
def faulty_readout(monkeypatch):
    """Every calibration's readout times out on q0's first acquisition: an instrument fault,
    which the runner records as a node that failed to run, not as a rejection."""
    import fluxcal.calibrate

    open_lab = fluxcal.calibrate.open_lab

    def with_fault(request):
        station, device = open_lab(request)
        station.components["readout"].inject_fault("timeout", "q0", 1)
        return station, device

    monkeypatch.setattr(fluxcal.calibrate, "open_lab", with_fault)
