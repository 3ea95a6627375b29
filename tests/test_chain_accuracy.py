"""The full chain from no prior knowledge recovers the simulator's truth.

Three chips (light, intermediate, heavy fluxonium: different energies, flux periods and
offsets, resonators, coherence) × three noise seeds, each calibrated from scratch by the
plain runner with default settings. Tolerances are the acceptance criteria of the
calibration issue.
"""

from __future__ import annotations

import pytest
from devices import make_device
from readout_brute_force import brute_force_fidelity

from fluxcal.calibrations.runner import run_graph
from fluxcal.instruments.station import build_station

pytestmark = pytest.mark.slow(185)

CASES = [(kind, seed) for kind in ("light", "intermediate", "heavy") for seed in (1, 2, 3)]


def relative(value: float, true: float) -> float:
    return abs(value - true) / abs(true)


@pytest.fixture(scope="module")
def chains():
    """Calibrated chains, computed once per case and shared by the assertions."""
    cache = {}

    def get(kind: str, seed: int):
        if (kind, seed) not in cache:
            device = make_device(kind, seed)
            run = run_graph(build_station(device), ["q0"])
            cache[kind, seed] = (run, device)
        return cache[kind, seed]

    return get


@pytest.mark.parametrize(("kind", "seed"), CASES)
def test_full_chain_recovers_truth(chains, kind, seed):
    run, device = chains(kind, seed)
    truth = device.truth()["q0"]
    outcomes = {name: (r.outcome, r.reason) for name, r in run.results["q0"].items()}
    assert all(o == "accepted" for o, _ in outcomes.values()), outcomes
    p = {name: c.value for name, c in run.parameters["q0"].items()}
    assert abs(p["qubit_frequency"] - truth["qubit_frequency"]) < 20e3
    for name in ("EJ", "EC", "EL"):
        assert relative(p[name], truth[name]) < 0.02, name
    assert relative(p["flux_period"], truth["flux_period"]) < 0.005
    assert abs(p["flux_sweet_spot"] - truth["flux_sweet_spot"]) < 0.002 * truth["flux_period"]
    assert abs(p["readout_frequency"] - truth["readout_frequency"]) < truth["resonator_kappa"] / 10
    assert relative(p["pi_amplitude"], truth["pi_amplitude"]) < 0.02
    for name in ("T1", "T2_ramsey", "T2_echo"):
        assert relative(p[name], truth[name]) < 0.15, name
    assert abs(p["assignment_fidelity"] - brute_force_fidelity(device)) < 0.01
    for name, c in run.parameters["q0"].items():
        assert c.stderr >= 0 or c.stderr != c.stderr, f"{name} has a negative stderr"
