"""Shared fixtures: a QCoDeS database per test session and simulated stations."""

from __future__ import annotations

import pytest
from qcodes.dataset import initialise_or_create_database_at

from fluxcal.instruments.station import build_station


@pytest.fixture(scope="session", autouse=True)
def qcodes_database(tmp_path_factory):
    """Every QCoDeS measurement of the test session goes to one temporary database."""
    path = tmp_path_factory.mktemp("qcodes") / "experiments.db"
    initialise_or_create_database_at(str(path))
    return path


@pytest.fixture
def station_for():
    """station_for(device) -> Station wired to that SimulatedDevice."""
    return build_station
