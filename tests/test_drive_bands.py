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
    Window,
)
from fluxcal.calibrations.experiments.qubit_spectroscopy import Line, QubitSpectroscopy
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


@pytest.mark.parametrize(
    ("kind", "seed", "draws"), [("light", 1, 0), ("heavy", 2, 0), ("heavy", 2, 1000)]
)
def test_flux_map_crosses_a_gap_in_the_drive_bands(kind, seed, draws) -> None:
    """f01(Φ0/2) is 0.36 GHz (light) or 0.20 GHz (heavy); 0.5–2 GHz is skipped and the rows
    go on above it. Energies within 1 % of truth (stderr below 1 %, within 4σ). `draws`
    acquisitions are skipped first, so the noise differs: under those draws the heavy
    chip's first row past the gap (f01 2.005 GHz) was missed and the next took the 0–2 line
    at 5.24 GHz for f01 (`_across_gap`)."""
    session, truth = session_for(QubitFluxSpectroscopy, kind, seed)
    session.channel("drive").frequency.vals = Bands(*QBLOX_BANDS)
    lab = session.station.components["readout"].lab
    for _ in range(draws):
        lab.rng("q0")
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


def test_across_a_gap_only_a_line_within_the_narrowed_prediction_is_f01() -> None:
    """The heavy chip's prediction past the gap, 2.02 ± 1.98 GHz after f01 = 0.45 GHz, is
    narrowed to half its rise; f01 at 2.03 GHz is taken, the 0–2 line at 5.10 GHz is not
    (4 half-widths, the allowance away from a gap, reached it)."""
    node = QubitFluxSpectroscopy()
    window = node._across_gap(Window(2.0245e9, 1.9751e9), 0.4536e9)
    assert window.centre == 2.0245e9
    assert window.half_width == pytest.approx(0.5 * (2.0245e9 - 0.4536e9))
    frequency = np.linspace(2.0e9, 6.0e9, 401)

    def taken(centre: float, across_gap: bool) -> bool:
        line = Line(centre=centre, stderr=1e5, fwhm=5e6, snr=20.0, index=0)
        return node._predicted_line([line], window, window, frequency, across_gap) is not None

    assert taken(2.03e9, across_gap=True)
    assert not taken(5.10e9, across_gap=True)
    assert taken(5.10e9, across_gap=False)
