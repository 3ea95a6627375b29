"""Qubit spectroscopy's search over the two flux-symmetry points spends its averaging where
the line is: each point gets a first look before either is averaged up to the budget.

Averaging a full coarse sweep at integer flux, where f01 lies far above the search range,
up to the budget costs 496 points × 16 000 heralded shots (~2.2 device-h); a sampled chip whose
thermal evidence put integer flux first spent that before its half-flux line showed in the
first 200 shots. The half-flux point must still be found, with the integer one searched
below its line as before.
"""

from __future__ import annotations

import numpy as np
from test_qubit_spectroscopy_nodes import symmetry_points_session, verdict

from fluxcal.calibrations.experiments.qubit_spectroscopy import QubitSpectroscopy


def test_integer_flux_first_costs_a_first_look_not_the_budget():
    session, truth, half, _ = symmetry_points_session(integer_first=True)
    node = QubitSpectroscopy()
    data = node.acquire(session)
    accepted, reason, analysis = verdict(node, data)
    assert accepted, reason
    assert analysis.values["flux_sweet_spot"] == (half.value, half.stderr)
    assert abs(analysis.values["qubit_frequency"][0] - truth["qubit_frequency"]) < 40e3
    lab = session.station.components["readout"].lab
    shot = 2 * lab.device.physics("q0").config.readout.repetition_time  # heralded
    sweep = np.arange(node.coarse_start, node.coarse_stop + node.coarse_step / 2, node.coarse_step)
    # the budget at integer flux alone would be ~16× this; a first look at each point, the
    # integer one again below the line, and the fine sweep are well within it
    assert session.device_time() < sweep.size * shot * node.budget / 4
    assert data.attrs["coarse_shots"] < node.budget
