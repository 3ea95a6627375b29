"""The drift check's resonator probe takes more shots for a faint dip instead of calling it bad.

A dip whose fit has too little signal for the noise is faint, not missing: the probe's first
look is 50 shots a point, and on a noisy amplifier (sampled chip 5003, noise ×2) half the
first looks stayed below the fit's signal-to-noise floor. Each was reported as bad data,
which recalibrated the resonator and, behind it, the qubit flux map. The fit now says which
failures more shots can cure (`FaintSignal`), and the probe takes them.
"""

from __future__ import annotations

import numpy as np
import pytest

from fluxcal.calibrations.fitting import fit_notch
from fluxcal.calibrations.fitting.errors import FaintSignal
from fluxcal.calibrations.node import UNITS
from fluxcal.calibrations.session import QubitSession
from fluxcal.flows import probes
from fluxcal.flows.checks import CheckContext
from fluxcal.instruments.design_space import sample_device
from fluxcal.instruments.resonator import notch_response
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import CalibratedParameter

PROBES = 40


def test_a_dip_below_the_noise_is_faint_and_above_it_is_found() -> None:
    rng = np.random.default_rng(5)
    frequency = 7e9 + np.linspace(-2.5e6, 2.5e6, 31)
    dip = notch_response(frequency, 7e9, 1e6, 0.8)
    noise = rng.standard_normal(frequency.size) + 1j * rng.standard_normal(frequency.size)
    with pytest.raises(FaintSignal):
        fit_notch(frequency, dip + 0.3 * noise)
    assert fit_notch(frequency, dip + 0.003 * noise).fr == pytest.approx(7e9, abs=2e4)


def test_a_noisy_amplifiers_resonator_is_probed_not_called_bad(tmp_path) -> None:
    from qcodes.dataset import initialise_or_create_database_at

    initialise_or_create_database_at(str(tmp_path / "probe.db"))
    device = sample_device(5003)
    truth = device.truth()["q0"]
    sources = {
        "readout_frequency": "resonator_dip_frequency",
        "resonator_kappa": "resonator_kappa",
        "flux_sweet_spot": "flux_sweet_spot",
        "flux_period": "flux_period",
    }
    known = {
        name: CalibratedParameter(truth[source], 0.0, UNITS[name], "truth", "")
        for name, source in sources.items()
    }
    station = build_station(device)
    kappa = truth["resonator_kappa"]
    unusable = 0
    for _ in range(PROBES):
        context = CheckContext(QubitSession(station, "q0", dict(known)))
        estimate = context.measure(
            0.25 * kappa, probes.resonator_frequency, "readout_frequency", kappa
        )
        unusable += not estimate.usable
    # 4 of 40 here (a single notch fitted to the dips of both qubit states, χ = 2κ, can
    # misfit); 19 of 40 when a faint first look was reported as bad data
    assert unusable <= 8, f"{unusable} of {PROBES} probes unusable"
