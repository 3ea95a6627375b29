"""A flux-map row whose line needs far more shots than its neighbours' is deferred.

Where the dispersive shifts of 0 and 1 cross along flux, the readout barely sees the qubit
line, and averaging one such row to the full budget cost the built-in chip 207 of its map's
332 device-s. Every found line places f01 alike, so such a row is measured only as far as
a few times what the last lines needed. Only if the map without it fails the node's gate
is the map tracked again from that row on, every row at the full budget.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_qubit_spectroscopy_nodes import handed_on, verdict

from fluxcal.calibrations.experiments.qubit_flux_spectroscopy import (
    ENERGIES,
    QubitFluxSpectroscopy,
    _Tracking,
    rows,
)
from fluxcal.calibrations.experiments.qubit_spectroscopy import find_lines
from fluxcal.calibrations.node import UNITS
from fluxcal.calibrations.session import QubitSession
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import CalibratedParameter

pytestmark = pytest.mark.slow(60)


def test_a_row_may_take_a_few_times_what_the_last_lines_needed():
    node = QubitFluxSpectroscopy()
    track = _Tracking(1.0, 0.0, 4e8, 1.0, node.first_step)
    assert node._row_budget(track) == node.budget  # nothing found yet: no measure of a row
    track.found_needed += [50, 800, 200]  # the faintest sets it
    assert node._row_budget(track) == node.defer_factor * 800
    track.deferring = 1  # past a deferred row the contrast is lower: the next may take more
    assert node._row_budget(track) == 2 * node.defer_factor * 800
    track.deferring = 0
    track.found_needed += [5, 3, 4]  # bright lines: still a few first looks
    assert node._row_budget(track) == node.defer_factor * node.shots
    track.found_needed += [8000, 9000, 7000]
    assert node._row_budget(track) == node.budget  # never beyond the node's budget
    track.found_needed += [50, 50, 50]
    track.defer = False  # deferred rows are being measured: the full budget again
    assert node._row_budget(track) == node.budget


def built_in_session() -> tuple[QubitSession, dict[str, float]]:
    """The built-in chip with the map's inputs known as the chain would hand them on."""
    device = SimulatedDevice.from_yaml(time=0.0)
    values = handed_on(QubitFluxSpectroscopy, device)
    names = (*QubitFluxSpectroscopy.requires, "resonator_kappa")
    known = {
        name: CalibratedParameter(values[name], math.nan, UNITS[name], "truth", "")
        for name in names
    }
    return QubitSession(build_station(device), "q0", known), device.truth()["q0"]


def test_the_built_in_maps_contrast_null_row_is_deferred_and_the_map_still_passes():
    session, truth = built_in_session()
    node = QubitFluxSpectroscopy()
    data = node.acquire(session)
    assert data.attrs["deferred_rows"] >= 1
    assert data.attrs["tracked_in_full"] == 0
    capped = data["row_budget"].values < node.budget
    assert np.count_nonzero(capped) > data["row_budget"].size / 2  # all but the first rows
    assert np.all(data["shots"].values[capped] <= data["row_budget"].values[capped])
    accepted, reason, analysis = verdict(node, data)
    assert accepted, reason
    for name in ENERGIES:
        value, stderr = analysis.values[name]
        assert abs(value - truth[name]) < 4 * stderr, name


def test_a_map_that_fails_without_its_deferred_rows_is_tracked_in_full_from_the_first():
    """A gate the map cannot pass without them (here: more peaks than it has rows)."""
    session, _ = built_in_session()
    node = QubitFluxSpectroscopy(min_points=40)
    data = node.acquire(session)
    assert data.attrs["deferred_rows"] >= 1
    assert data.attrs["tracked_in_full"] == 1
    budgets = data["row_budget"].values
    # the rows before the first deferral keep what they measured: each showed its line
    capped = np.flatnonzero(budgets < node.budget)
    again = np.arange(capped[-1] + 1, budgets.size)
    assert capped.size >= 1 and again.size >= 2
    for k, (_, frequency, iq) in enumerate(rows(data)):
        shown = find_lines(frequency, iq, node.min_line_snr)
        if k in capped:
            assert shown
        if k in again:  # averaged until its line showed, or to the full budget
            assert shown or data["shots"].values[k] >= node.budget
