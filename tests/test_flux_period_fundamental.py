"""The resonator-vs-flux period is the fundamental one, not a multiple on the bias grid.

Sampled chip 5149 (period 0.3726 V/Φ0, a resonator that hardly moves with flux: χ/κ =
−0.05) as its bring-up recorded the map (tests/fixtures/resonator_flux_5149.nc, complex64;
401 columns 13 mV apart). The true period spans 28.66 bias steps, three periods 85.98:
whole-map costs are lowest where every image falls on a bias point, so the lag search
found 3P, and the third of it, refined, came out 31 % of the way from 3P's cost to a
typical axis' cost, above the 25 % the test for a shorter period then allowed for every
divisor. The chain accepted 1.118 V/Φ0 and, with it, EJ, EC and EL 30–250 % off.

A false P/k keeps a fraction 1 − 1/k of the way (only every k-th image order is a true
one), so P/k is now taken below half that fraction, midway: 25 % for halves, 33 % for thirds.
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from fluxcal.calibrations.experiments.resonator_flux import ResonatorFlux

FIXTURES = Path(__file__).parent / "fixtures"
TRUE_PERIOD = 0.372593  # V/Φ0


def test_a_period_off_the_bias_grid_is_found_not_its_multiple() -> None:
    data = xr.load_dataset(FIXTURES / "resonator_flux_5149.nc", engine="h5netcdf")
    node = ResonatorFlux()
    analysis = node.analyse(data)
    period, stderr = analysis.values["flux_period"]
    assert abs(period - TRUE_PERIOD) < 0.005 * TRUE_PERIOD, analysis.report
    assert abs(period - TRUE_PERIOD) < 4 * stderr, (period, stderr)
