"""Qubit spectroscopy's search over the two flux-symmetry points spends its averaging where
the line is: each point gets a first look before either is averaged up to the budget.

Averaging a full coarse sweep at integer flux, where f01 lies far above the search range,
up to the budget costs 496 points × 16 000 heralded shots (~2.2 device-h); a sampled chip whose
thermal evidence put integer flux first spent that before its half-flux line showed in the
first 200 shots. The half-flux point must still be found, with the integer one searched
below its line as before.

A point's first look is itself taken sparse first: every third coarse point, finished at
every point around a line seen there, and over the whole range only when none is.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_qubit_spectroscopy_nodes import session_on, symmetry_points_session, verdict

from fluxcal.calibrations.experiments.qubit_spectroscopy import QubitSpectroscopy
from fluxcal.instruments.design_space import sample_device


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
    sweep = full_sweep(node)
    # the budget at integer flux alone would be ~16× this; a first look at each point, the
    # integer one again below the line, and the fine sweep are well within it
    assert session.device_time() < sweep.size * shot * node.budget / 4
    assert data.attrs["coarse_shots"] < node.budget


def sampled_session(seed: int):
    """A sampled design chip's session with the node's inputs known as the chain hands them."""
    return session_on(QubitSpectroscopy, sample_device(seed))


def full_sweep(node: QubitSpectroscopy) -> np.ndarray:
    return np.arange(node.coarse_start, node.coarse_stop + node.coarse_step / 2, node.coarse_step)


@pytest.mark.parametrize("seed", [3000, 5003, 5025])
def test_a_broad_line_shows_in_a_sparse_first_look_and_is_confirmed_around_it(seed):
    """Lines tens of MHz wide show on every third point: the look is finished only around
    the line, at every point, and the fine sweep finds f01 as a whole first look would."""
    session, truth = sampled_session(seed)
    node = QubitSpectroscopy()
    data = node.acquire(session)
    accepted, reason, analysis = verdict(node, data)
    assert accepted, reason
    assert abs(analysis.values["qubit_frequency"][0] - truth["qubit_frequency"]) < 40e3
    coarse = data["coarse_frequency"].values
    assert coarse.size < full_sweep(node).size / 2
    assert np.allclose(np.diff(coarse), node.coarse_step)  # confirmed at every point


def test_a_line_too_narrow_for_the_sparse_look_is_found_in_the_whole_sweep():
    """Sampled chip 3005's strong-tone line is ~4 MHz wide, one coarse step: every third
    point misses it, and the rest of the sweep is measured."""
    session, truth = sampled_session(3005)
    node = QubitSpectroscopy()
    data = node.acquire(session)
    accepted, reason, analysis = verdict(node, data)
    assert accepted, reason
    assert abs(analysis.values["qubit_frequency"][0] - truth["qubit_frequency"]) < 40e3
    assert data["coarse_frequency"].size == full_sweep(node).size
