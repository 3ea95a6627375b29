"""Plasmon lines read out at the half-flux dip, wherever the f01 map left the readout.

The f01 map re-centres the readout tone where a row misses the line; on sampled chip 5018
(EJ 6.10, EC 1.31, EL 0.18 GHz, χ/κ ≈ +5.9) it ends 1 MHz (1.4 κ) below the half-flux dip.
Level 3 moves the resonator by only 0.1 MHz there, so 0→3 showed no contrast even at
16 000 shots, 1→2 alone fitted two readings, and the chain's energies stayed 7 %
uncertain. At the calibrated dip both lines show and pin EJ, EC. (With the upstream values
from the truth, as here, the f01 fit is tighter and the old node found 0→5 instead: the
test pins that 0→3, the line the off-dip readout hides, is seen.)

The chip is the sampled one, its upstream values handed on from the simulator's truth.
"""

from __future__ import annotations

import math

import pytest

from fluxcal.calibrations.experiments.qubit_flux_spectroscopy import ENERGIES, QubitFluxSpectroscopy
from fluxcal.calibrations.node import UNITS
from fluxcal.calibrations.session import QubitSession
from fluxcal.instruments.design_space import sample_device
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import CalibratedParameter

#: Sampled chip whose f01 map moves the readout off the half-flux dip.
SEED = 5018


def test_plasmon_lines_are_read_out_at_the_half_flux_dip() -> None:
    node = QubitFluxSpectroscopy()
    device = sample_device(SEED)
    truth = device.truth()["q0"]
    values = {**truth, "readout_frequency": truth["resonator_dip_frequency"]}
    known = {
        name: CalibratedParameter(values[name], math.nan, UNITS[name], "truth", "")
        for name in (*node.requires, "resonator_kappa")
    }
    session = QubitSession(build_station(device), "q0", known)
    data = node.acquire(session)
    # the case: the map left the readout more than a linewidth off the dip ...
    kappa = truth["resonator_kappa"]
    assert abs(data.attrs["readout_frequency"] - values["readout_frequency"]) > kappa
    # ... and the plasmon lines were read out at the dip
    assert data.attrs["plasmon_readout_frequency"] == values["readout_frequency"]
    analysis = node.analyse(data)
    outcome = node.gate(analysis)
    assert outcome.accepted, outcome.reason
    used = analysis.report.split("; used ")[-1]
    assert "f03 = " in used and "f12 = " in used, analysis.report
    for name in ENERGIES:
        value, stderr = analysis.values[name]
        assert value == pytest.approx(truth[name], rel=0.005), name
        assert abs(value - truth[name]) < 4 * stderr, name
