"""A flux-map row whose line is faint where it was predicted is not retried wider.

Where the dispersive shifts of 0 and 1 cross along flux the readout barely sees the qubit
line: averaging to the budget leaves it a few noise deviations high, at its predicted place.
A retry doubles the window and the tone (remedies for a line outside the window); there it
only costs device time (one built-in chip row: four retries, 580 device-s). A row that
shows nothing, or only something at its edge, is still retried.
"""

from __future__ import annotations

import numpy as np
import pytest

from fluxcal.calibrations.experiments.qubit_flux_spectroscopy import (
    QubitFluxSpectroscopy,
    Window,
)

FREQUENCY = np.linspace(4.0e9, 4.12e9, 61)
WINDOW = Window(4.06e9, 60e6)


def row(centre: float | None, height: float, seed: int) -> np.ndarray:
    """IQ of a row with unit complex noise per point and, if `centre`, an 8 MHz wide line
    `height` noise deviations high along one IQ direction."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=FREQUENCY.size) + 1j * rng.normal(size=FREQUENCY.size)
    if centre is None:
        return 0.2 + noise
    line = height / (1.0 + (2.0 * (FREQUENCY - centre) / 8e6) ** 2)
    return 0.2 + np.exp(0.4j) * line + noise


@pytest.mark.parametrize("seed", range(4))
def test_a_faint_line_where_predicted_ends_the_row(seed: int) -> None:
    node = QubitFluxSpectroscopy()
    assert node._faint_where_predicted(FREQUENCY, row(4.065e9, 5.0, seed), WINDOW)


@pytest.mark.parametrize("seed", range(4))
def test_nothing_or_a_line_on_the_edge_is_retried(seed: int) -> None:
    node = QubitFluxSpectroscopy()
    assert not node._faint_where_predicted(FREQUENCY, row(None, 0.0, seed), WINDOW)
    assert not node._faint_where_predicted(FREQUENCY, row(FREQUENCY[0], 8.0, seed), WINDOW)


def _row_looks(trusted: bool, tmp_path) -> tuple[int, float]:
    """Acquisitions and swept span of one flux-map row whose window holds no line (the
    qubit's lines lie far from it), on a sampled chip, with a small shot budget."""
    from qcodes.dataset import initialise_or_create_database_at

    from fluxcal.calibrations.node import UNITS
    from fluxcal.calibrations.session import QubitSession
    from fluxcal.instruments.design_space import sample_device
    from fluxcal.instruments.station import build_station
    from fluxcal.snapshots import CalibratedParameter

    initialise_or_create_database_at(str(tmp_path / f"row{trusted}.db"))
    device = sample_device(5009)
    truth = device.truth()["q0"]
    names = {
        "readout_frequency": "readout_frequency",
        "resonator_kappa": "resonator_kappa",
        "flux_sweet_spot": "flux_sweet_spot",
        "qubit_frequency": "qubit_frequency",
    }
    known = {
        name: CalibratedParameter(truth[source], 0.0, UNITS[name], "truth", "")
        for name, source in names.items()
    }
    station = build_station(device)
    session = QubitSession(station, "q0", known)
    session.operating_point()
    session.configure(drive={"sequence": "saturation", "herald": True})
    node = QubitFluxSpectroscopy(budget=400)
    band = node._bands(session)[0]
    empty = Window(truth["qubit_frequency"] + 300e6, 30e6)  # no transition within
    lab = station.components["readout"].lab
    before = lab.acquisition_count("q0")
    frequency, _, _, _, line = node._measure_row(
        session, empty, band, (0.005, 1e6), trusted=trusted
    )
    assert line is None
    return lab.acquisition_count("q0") - before, float(np.ptp(frequency))


def test_a_trusted_row_that_shows_nothing_is_retried_once_in_place(tmp_path) -> None:
    """Trusted predictions (the line was where predicted row after row): a row whose whole
    budget shows nothing is in a contrast null. It is measured again once with the readout
    re-centred, over the same window, instead of four widening retries each to the budget."""
    trusted_looks, trusted_span = _row_looks(True, tmp_path)
    widening_looks, widening_span = _row_looks(False, tmp_path)
    assert trusted_span == pytest.approx(60e6, rel=0.01)
    assert widening_span > 4 * trusted_span
    assert trusted_looks < widening_looks / 2
