"""Ramsey sizes its first long window from T1 when it has no T2*, so it rarely restarts.

A Ramsey window that does not fit the decay restarts and drops its shots (another detuning
is another experiment), where a T1 window re-sized keeps them. T1 runs first; Ramsey's
window then holds the longest T2* physics allows (2·T1) at the low end of the ratio it
accepts, so any T2* from 2·T1 down to 2/3·T1 is measured in the first window.
"""

from __future__ import annotations

import math

import pytest
from test_qubit_spectroscopy_nodes import session_on, verdict

from fluxcal.calibrations.experiments.ramsey import Ramsey
from fluxcal.calibrations.graph import DEFAULT_GRAPH, dependents, order
from fluxcal.calibrations.node import UNITS
from fluxcal.instruments.design_space import sample_device
from fluxcal.snapshots import CalibratedParameter

pytestmark = pytest.mark.slow(60)


def known(name: str, value: float) -> CalibratedParameter:
    return CalibratedParameter(value, 0.02 * value, UNITS[name], "test", "")


def test_t1_runs_before_ramsey_without_depending_on_it():
    sequence = order(DEFAULT_GRAPH)
    assert sequence.index("t1") < sequence.index("ramsey")
    assert "t1" not in DEFAULT_GRAPH["ramsey"].depends_on  # a T1 drift leaves T2* be
    assert "ramsey" not in dependents(DEFAULT_GRAPH, ["t1"])
    # readout optimisation last: after Ramsey's frequency and echo's state integration
    assert sequence[-1] == "readout_optimisation"
    assert order(DEFAULT_GRAPH, ["ramsey", "t1"]) == ["t1", "ramsey"]


def test_the_expected_t2_is_the_last_one_else_from_t1_else_the_guess():
    node = Ramsey()
    session, _ = session_on(Ramsey, sample_device(5007))
    assert node.expected_t2(session) == node.t2_guess
    session.known["T1"] = known("T1", 300e-6)
    window = node.window_factor * node.expected_t2(session)
    assert window / (2 * 300e-6) == pytest.approx(node.ratio_range[0])  # 2·T1 fits
    assert window / (300e-6 * 2 / 3) == pytest.approx(node.ratio_range[1])  # so does ⅔·T1
    session.known["T2_ramsey"] = known("T2_ramsey", 50e-6)
    assert node.expected_t2(session) == 50e-6


@pytest.mark.parametrize("seed", [5001, 5003])  # T2* / T1 of 1.7 and 0.7
def test_a_window_from_t1_measures_t2_without_a_restart(seed):
    costs = {}
    for with_t1 in (False, True):
        device = sample_device(seed)
        session, truth = session_on(Ramsey, device)
        if with_t1:
            session.known["T1"] = known("T1", truth["T1"])
        node = Ramsey()
        data = node.acquire(session)
        accepted, reason, analysis = verdict(node, data)
        assert accepted, reason
        value, stderr = analysis.values["T2_ramsey"]
        assert abs(value - truth["T2_ramsey"]) < 4 * stderr
        costs[with_t1] = session.device_time()
        if with_t1:
            window = float(data["delay"].values.max())
            assert math.isclose(
                window, node.window_factor * node.expected_t2(session), rel_tol=0.05
            )
    assert costs[True] < 0.85 * costs[False]  # measured: 113 against 157, 85 against 115
