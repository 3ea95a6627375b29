"""Plasmon search of flux spectroscopy where f01(Φ) leaves a long valley of EJ, EC.

- The valley walk starts from the f01-only fit, which on a flat valley may sit beyond the
  EJ bound: it walks back inside rather than giving up.
- The valleys at the held flux period ± its stderr hold the lines when the period is a
  standard error off; a range too wide for one sweep is cut into pieces, lowest first.
- Seen lines rank by SNR per √shot, and carry the bare model's (dressing) error.
- When the lines found leave EJ, EC uncertain, the unassigned line that moves most along
  the valley is searched next.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from fluxcal.calibrations.experiments.plasmon_lines import (
    _EDGE_RESOLUTION,
    ALLOWED,
    DRESSING,
    PLASMON,
    as_reading,
    cut_windows,
    valley,
    valley_windows,
)
from fluxcal.calibrations.experiments.qubit_flux_spectroscopy import (
    QubitFluxSpectroscopy,
    distinct_lines,
)
from fluxcal.calibrations.experiments.qubit_spectroscopy import Line
from fluxcal.calibrations.fitting.spectrum import (
    OtherLine,
    PeakTrace,
    bias_to_flux,
    fit_flux_spectrum,
    fit_with_EJ_held,
)
from fluxcal.instruments.fluxonium import FluxoniumModel

#: Like sampled chip 5013: f01 over half a period leaves EJ free along a long valley.
TRUTH = FluxoniumModel(9.23, 2.10, 0.19)
PERIOD, SWEET_SPOT = 0.54, -0.1


def trace(period: float, seed: int = 1) -> PeakTrace:
    rng = np.random.default_rng(seed)
    bias = SWEET_SPOT + np.linspace(0.0, 0.5, 13) * period
    f01 = 1e9 * TRUTH.transition_frequency(bias_to_flux(bias, period, SWEET_SPOT))
    sigma = np.full(bias.size, 0.5e6)
    return PeakTrace(bias, f01 + sigma * rng.standard_normal(bias.size), sigma, sigma * 0 + 20)


def true_lines() -> np.ndarray:
    levels = 1e9 * TRUTH.energies(0.5, n_levels=4).ravel()
    return np.array([levels[u] - levels[lo] for lo, u in PLASMON])


def test_cut_windows_merges_overlaps_and_cuts_lowest_first() -> None:
    pieces = cut_windows([(9e9, 12e9), (7e9, 9.5e9), (15e9, 16e9)], span=2e9)
    assert pieces[0][0] == 7e9 and pieces[-1] == (15e9, 16e9)
    assert all(hi - lo <= 2e9 + 1 for lo, hi in pieces)
    assert [lo for lo, _ in pieces] == sorted(lo for lo, _ in pieces)
    # the merged 7–12 GHz range is covered without gaps
    assert pieces[:3][-1][1] == 12e9
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces[:3]))


def test_a_fit_beyond_the_EJ_bound_walks_back_inside() -> None:
    peaks = trace(PERIOD)
    fit = fit_flux_spectrum(peaks, period=PERIOD, sweet_spot_guess=SWEET_SPOT)
    bound = (1.2 * fit.EJ, 50.0)  # the f01-only fit sits beyond a bound (the valley goes on)
    profile = valley(peaks, fit, 5.0, bound)
    assert len(profile) > 2
    assert all(bound[0] <= f.EJ <= bound[1] for f in profile)


def test_valleys_at_the_period_plus_minus_its_stderr_hold_the_lines() -> None:
    """The period is held 0.3 % off (one stderr): the valley at the held period alone may
    miss the lines; with the valleys at period ± stderr the windows hold them."""
    stderr = 0.003 * PERIOD
    held = PERIOD + stderr
    peaks = trace(PERIOD)
    fit = fit_flux_spectrum(peaks, period=held, sweet_spot_guess=SWEET_SPOT)
    refits = [
        fit_flux_spectrum(peaks, period=held + s, sweet_spot_guess=SWEET_SPOT, start=fit)
        for s in (stderr, -stderr)
    ]
    node = QubitFluxSpectroscopy()
    fits = node._valleys(peaks, fit, refits)
    assert len(fits) > len(node._valley(peaks, fit))
    windows = valley_windows(fits, SWEET_SPOT, node.min_frequency)
    for (low, high), line in zip(windows, true_lines(), strict=True):
        assert low < line < high


def lorentzian_row(centre: float, height: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frequency = np.linspace(centre - 100e6, centre + 100e6, 201)
    line = height / (1 + ((frequency - centre) / 4e6) ** 2)
    noise = rng.standard_normal(frequency.size) + 1j * rng.standard_normal(frequency.size)
    return frequency, line + noise


def test_lines_rank_by_snr_per_root_shot() -> None:
    """A faint (parity-forbidden) line averaged 11 464 shots to show outranks, by raw SNR, an
    allowed one seen in 250; per √shot the allowed one is the stronger."""
    allowed = lorentzian_row(8.0e9, 20.0, seed=1)
    forbidden = lorentzian_row(9.5e9, 40.0, seed=2)
    rows = [(*allowed, 0.01, 250, False), (*forbidden, 0.01, 11_464, False)]
    lines = distinct_lines(rows, 6.0)
    assert [round(x.centre / 1e9, 1) for x in lines] == [8.0, 9.5]


def test_a_reading_carries_the_dressing_error() -> None:
    line = Line(10e9, 0.26e6, 5e6, 30.0, 0)
    reading = as_reading(line, 400)
    assert reading.snr == pytest.approx(1.5)
    assert reading.stderr == pytest.approx(np.hypot(0.26e6, DRESSING * 10e9))


def test_the_plasma_line_that_moves_along_the_valley_is_searched_next() -> None:
    """Levels 2, 3 of this chip are fluxon states of the next wells out (4π²·EL below the
    plasma frequency): 1→2 and 0→3 go mostly as EL and, even read right, leave EJ ~1 %
    uncertain. The plasma excitation of the inner wells (1→4 here) moves by GHz along
    the valley: it is the line searched next, its window holds it, and with it EJ and EC
    come out to 0.1 % (sampled chips 3000, 3008)."""
    levels = 1e9 * TRUTH.energies(0.5, n_levels=6).ravel()
    lines = {t: levels[t[1]] - levels[t[0]] for t in ALLOWED}

    def reading(t: tuple[int, int]) -> OtherLine:
        return OtherLine(SWEET_SPOT, lines[t], DRESSING * lines[t], *t)

    peaks = trace(PERIOD)
    # where the f01-only fit of these peaks lands along the valley (EJ ≈ 9.1 ± 0.5 GHz)
    start = SimpleNamespace(EJ=9.1, EC=2.07, EL=0.19, period=PERIOD, sweet_spot=SWEET_SPOT)
    plasmon = tuple(reading(t) for t in PLASMON)
    joint = fit_flux_spectrum(peaks, period=PERIOD, others=plasmon, start=start)
    assert joint.EJ_stderr / joint.EJ > 0.005
    node = QubitFluxSpectroscopy()
    remaining = tuple(t for t in ALLOWED if t not in PLASMON)
    transition, (low, high) = node._informative_window(joint, SWEET_SPOT, None, remaining)
    assert transition == (1, 4) and low < lines[transition] < high
    final = fit_flux_spectrum(
        peaks, period=PERIOD, others=(*plasmon, reading(transition)), start=joint
    )
    for name, true in (("EJ", TRUTH.EJ), ("EC", TRUTH.EC)):
        value, stderr = getattr(final, name), getattr(final, f"{name}_stderr")
        assert stderr / value < 0.002 and abs(value - true) < 4 * stderr


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_valley_reaches_its_edges(seed: int) -> None:
    """The extreme points lie within the chi-square limit and within twice the edge
    resolution of where it is crossed: a line read near the edge (sampled chip 3009's
    0→3 line, 2 % in EJ past the last point two bisections left) is on the valley."""
    peaks = trace(PERIOD, seed)
    fit = fit_flux_spectrum(peaks, period=PERIOD, sweet_spot_guess=SWEET_SPOT)
    sigmas = 5.0
    allowed = fit.result.chisqr + sigmas**2 * max(fit.redchi, 1.0)
    profile = valley(peaks, fit, sigmas, (0.5, 50.0))
    for extreme, sign in ((profile[0], -1.0), (profile[-1], 1.0)):
        assert extreme.result.chisqr <= allowed
        beyond = fit_with_EJ_held(peaks, extreme, extreme.EJ * np.exp(sign * 2 * _EDGE_RESOLUTION))
        if not 0.5 < beyond.EJ < 50.0:
            continue  # the valley runs into the bound there: no edge to reach
        assert beyond.result.chisqr > allowed, (extreme.EJ, beyond.result.chisqr, allowed)
