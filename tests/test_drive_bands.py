"""A drive with a gap between its paths: the spectroscopy nodes skip what it cannot play.

A Qblox drive reaches 0–0.5 GHz through a QCM's baseband NCO and 2–18 GHz through a QCM-RF's
upconverter, nothing between (`contract.Bands`, as `instruments/qblox.py` reads it from the
driver). A fluxonium's f01 climbs through that gap from half flux towards integer flux. Here
the simulated lab's drive is given such bands: qubit spectroscopy searches the lowest band,
qubit flux spectroscopy skips the rows predicted in the gap, picks the line up beyond it and
still recovers the simulator's energies; every tone it plays lies in a band (the validator
would refuse one in the gap mid-sweep).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_qubit_spectroscopy_nodes import session_for, verdict

from fluxcal.calibrations.experiments.qubit_flux_spectroscopy import (
    ENERGIES,
    QubitFluxSpectroscopy,
)
from fluxcal.calibrations.experiments.qubit_spectroscopy import QubitSpectroscopy
from fluxcal.instruments.contract import (
    Bands,
    ContractError,
    Range,
    band_of,
    band_pieces,
    setting_bands,
)

QBLOX_BANDS = ((0.0, 0.5e9), (2.0e9, 18e9))


def test_bands_are_read_from_the_validator_and_cut_a_span_into_pieces() -> None:
    bands = setting_bands(type("P", (), {"vals": Bands(*reversed(QBLOX_BANDS))})())
    assert bands == (Range(0.0, 0.5e9), Range(2e9, 18e9))
    assert band_of(bands, 1e9) is None and band_of(bands, 3e9) == Range(2e9, 18e9)
    assert band_pieces(bands, 0.3e9, 2.5e9) == [Range(0.3e9, 0.5e9), Range(2e9, 2.5e9)]
    assert band_pieces(bands, 0.6e9, 1.9e9) == []
    with pytest.raises(ValueError, match="lies between the bands"):
        Bands(*QBLOX_BANDS).validate(1e9)


def test_qubit_spectroscopy_searches_the_lowest_band_and_refuses_a_drive_reaching_nothing():
    session, _ = session_for(QubitSpectroscopy, "light", 1)
    drive = session.channel("drive").frequency
    node = QubitSpectroscopy()
    drive.vals = Bands(*QBLOX_BANDS)
    assert node._coarse_span(session) == (node.coarse_start, 0.5e9)
    drive.vals = Bands((3e9, 18e9))
    with pytest.raises(ContractError, match="drive reaches 3–18 GHz, nothing of the coarse"):
        node._coarse_span(session)


@pytest.mark.parametrize(("kind", "seed"), [("light", 1), ("heavy", 2)])
def test_flux_map_crosses_a_gap_in_the_drive_bands(kind, seed) -> None:
    """f01(Φ0/2) is 0.36 GHz (light) or 0.20 GHz (heavy); 0.5–2 GHz is skipped and the rows
    go on above it. Energies within 1 % of truth (stderr below 1 %, within 4σ)."""
    session, truth = session_for(QubitFluxSpectroscopy, kind, seed)
    session.channel("drive").frequency.vals = Bands(*QBLOX_BANDS)
    node = QubitFluxSpectroscopy()
    data = node.acquire(session)
    accepted, reason, analysis = verdict(node, data)
    assert accepted, reason
    tones = data["drive_frequency"].values
    tones = tones[np.isfinite(tones)]
    assert not np.any((tones > QBLOX_BANDS[0][1]) & (tones < QBLOX_BANDS[1][0]))
    centres = np.nanmean(data["drive_frequency"].values, axis=1)
    assert np.count_nonzero(centres > QBLOX_BANDS[1][0]) >= node.min_points
    for name in ENERGIES:
        value, stderr = analysis.values[name]
        assert value == pytest.approx(truth[name], rel=0.01), name
        assert 0 < stderr < 0.01 * value and abs(value - truth[name]) < 4 * stderr, name
