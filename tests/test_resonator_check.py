"""The resonator's drift check judges the dip against the dip, whatever readout optimisation did.

Readout optimisation moves `readout_frequency` to where the qubit states separate best, up to
a linewidth from the dip. Judged against that, an unmoved resonator read as moved every hour
on sampled chip 5015 (0.35 κ against a 0.25 κ tolerance), and each false verdict rebuilt the
flux map and the readout behind it. The resonator node keeps its dip as `resonator_frequency`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from qcodes.dataset import initialise_or_create_database_at

from fluxcal.calibrations.runner import run_graph
from fluxcal.calibrations.session import QubitSession
from fluxcal.flows.checks import CHECKS, CheckContext
from fluxcal.flows.maintain import run_check
from fluxcal.instruments.design_space import sample_device
from fluxcal.instruments.station import build_station
from fluxcal.snapshots import CalibratedParameter

UP_TO_RESONATOR = [
    "resonator_search",
    "readout_power",
    "resonator_flux",
    "qubit_spectroscopy",
    "resonator_spectroscopy",
]


def test_a_readout_frequency_moved_by_optimisation_is_no_resonator_drift():
    initialise_or_create_database_at(str(Path(tempfile.mkdtemp()) / "check.db"))
    station = build_station(sample_device(5015))
    run = run_graph(station, ["q0"], nodes=UP_TO_RESONATOR)
    known = dict(run.parameters["q0"])
    dip = known["resonator_frequency"]
    assert dip.value == known["readout_frequency"].value  # the node stores its dip twice
    kappa = known["resonator_kappa"].value
    optimised = CalibratedParameter(dip.value + 0.6 * kappa, 1e3, "Hz", "readout", dip.updated)
    check = CHECKS["resonator_spectroscopy"]

    def verdict(parameters) -> tuple[str, str]:
        result = run_check(
            "resonator_spectroscopy", check, CheckContext(QubitSession(station, "q0", parameters))
        )
        return result.verdict, result.reason

    assert verdict({**known, "readout_frequency": optimised})[0] == "in_spec"
    # a store from before the dip was kept apart: the optimised frequency is all there is
    older = {k: v for k, v in known.items() if k != "resonator_frequency"}
    assert verdict({**older, "readout_frequency": optimised})[0] == "out_of_spec"
