"""A flux-map row sweeps what its prediction needs, and averages as its line needs.

A wide window (after a row without its line the flux step doubles) is swept only a few
times the last lines' prediction misses around its centre, on its own grid and never on
fewer points than a row has. A row whose line does not show yet averages on by what the
lines found so far say it needs, not by the largest round; one that shows nothing at all
after a quarter of its budget ends there: a line unseen then would stand below the
detection threshold at the budget.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from fluxcal.calibrations import averaging
from fluxcal.calibrations.experiments.qubit_flux_spectroscopy import (
    QubitFluxSpectroscopy,
    Window,
    _Tracking,
)
from fluxcal.instruments.contract import Range

BAND = Range(10e6, 20e9)
WINDOW = Window(4.06e9, 60e6)


WIDE = Window(4.06e9, 600e6)  # 241 points at the 5 MHz step


def tracking(misses: list[float]) -> _Tracking:
    track = _Tracking(1.0, 0.0, 4e8, 1.0, 0.01)
    track.misses += misses
    return track


def test_a_row_after_lines_near_their_predictions_sweeps_a_few_of_their_misses():
    node = QubitFluxSpectroscopy()
    assert node._narrowed(WIDE, tracking([])) is None  # nothing predicted yet
    narrowed = node._narrowed(WIDE, tracking([0.05, 0.02, 0.01, 0.03]))
    assert narrowed.centre == WIDE.centre
    assert narrowed.half_width == pytest.approx(node.narrowing * 0.03 * WIDE.half_width)
    assert node._narrowed(WIDE, tracking([0.02, 0.3, 0.01])) is None  # a poor prediction


def test_a_narrowed_sweep_keeps_the_windows_step_and_a_rows_points():
    node = QubitFluxSpectroscopy()
    whole = node._sweep(WIDE, BAND)
    step = whole[1] - whole[0]
    assert whole.size == 241 and step == pytest.approx(node.max_step)
    narrowed = node._sweep(WIDE, BAND, Window(WIDE.centre + 3e6, 20e6))
    assert np.allclose(np.diff(narrowed), step)
    assert narrowed.size == node.points  # never fewer points than a row has
    assert narrowed[0] < WIDE.centre + 3e6 - 20e6 and narrowed[-1] > WIDE.centre + 3e6 + 20e6
    wider = node._sweep(WIDE, BAND, Window(WIDE.centre, 200e6))
    assert wider.size == int(np.ceil(400e6 / step)) + 1
    assert np.array_equal(node._sweep(WIDE, BAND, Window(WIDE.centre, 600e6)), whole)
    # a window of a row's points is swept whole: no fewer points
    assert np.array_equal(
        node._sweep(WINDOW, BAND, Window(WINDOW.centre, 5e6)), node._sweep(WINDOW, BAND)
    )
    # at the band's edge the sweep stays inside it
    edge = node._sweep(WIDE, Range(10e6, 4.07e9), Window(4.068e9, 5e6))
    assert edge[-1] <= 4.07e9 + 1 and np.allclose(np.diff(edge), step)


def line_row(frequency: np.ndarray, height: float, seed: int) -> np.ndarray:
    """Unit complex noise per point and a line four steps wide, `height` deviations high."""
    rng = np.random.default_rng(seed)
    step = frequency[1] - frequency[0]
    line = height / (1.0 + (2.0 * (frequency - WINDOW.centre) / (4 * step)) ** 2)
    return 0.2 + np.exp(0.4j) * line + rng.normal(size=frequency.size) * (1 + 1j) / np.sqrt(2)


def test_a_row_showing_nothing_after_a_quarter_of_its_budget_ends_there():
    """Unseen at 3 deviations, a line would stand below 6 with four times the shots."""
    node = QubitFluxSpectroscopy()
    frequency = node._sweep(WINDOW, BAND)
    shots, futile = node._futile(frequency, 16000)
    assert shots == 4000
    assert futile(line_row(frequency, 0.0, 2))
    assert not futile(line_row(frequency, 4.5, 2))  # a faint line: averaged on


def test_the_averaging_stops_where_it_judges_futility(monkeypatch):
    """Its rounds stop at the judged shots on their way, and end there when it says so."""
    measured: list[int] = []

    class Readout:
        value = 50

        def shots(self, value=None):
            if value is None:
                return self.value
            self.value = value

    class Session:
        def __init__(self):
            self.readout = Readout()

        def channel(self, role):
            return self.readout

        def configure(self, readout):
            self.readout.value = readout["shots"]

        def measure(self, name, sweep, values, attrs=None):
            measured.append(self.readout.value)
            return xr.Dataset({"iq": (("f",), np.zeros(3, complex))})

    monkeypatch.setattr(averaging, "_record_averaging", lambda record: None)
    # nothing scored: 16× rounds, the second cut at the judged 4 000 shots
    for judged, rounds in ((True, [50, 750, 3200]), (False, [50, 750, 3200, 12000])):
        measured.clear()
        data = averaging.measure_averaged(
            Session(),
            "row",
            "f",
            [1, 2, 3],
            lambda iq: 0.0,
            6.0,
            16000,
            futile=(4000, lambda iq, judged=judged: judged),
        )
        assert measured == rounds and data.attrs["shots"] == sum(rounds)


def test_a_row_without_its_line_yet_is_averaged_by_the_height_the_lines_found_had():
    node = QubitFluxSpectroscopy()
    frequency = node._sweep(WINDOW, BAND)
    noise = line_row(frequency, 0.0, 1)
    assert node._score(frequency, WINDOW)(noise) == 0.0  # nothing expected: nothing known
    faint = node._score(frequency, WINDOW, expected=0.5)(noise)
    assert 0.3 < faint < 0.7  # 0.5 over a unit noise
    assert node._score(frequency, WINDOW, expected=50.0)(noise) == 3.0  # unseen: below 3
    bright = line_row(frequency, 12.0, 1)
    assert node._score(frequency, WINDOW, expected=0.5)(bright) > 6.0  # seen: its own SNR
