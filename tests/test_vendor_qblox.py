"""The contract over a real vendor driver: Qblox's QCoDeS driver with its dummy Cluster.

Sequences are compiled to Q1ASM, assembled by the vendor's own assembler inside the dummy,
uploaded, armed and started through the driver, and the bins read back through it; the
dummy's bins come from fluxcal's fluxonium physics, computed from what was compiled. Skips
where `qblox-instruments` (extra `qblox`) is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("qblox_instruments")

from fluxcal.calibrations.experiments.rabi import Rabi
from fluxcal.calibrations.experiments.readout_power import ReadoutPower
from fluxcal.calibrations.experiments.resonator_spectroscopy import ResonatorSearch
from fluxcal.calibrations.session import QubitSession
from fluxcal.instruments.conformance import CHECKS, check_described_sequence_acquires
from fluxcal.instruments.contract import ContractError
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.station import load_station
from fluxcal.snapshots import CalibratedParameter

STATION = Path(__file__).resolve().parents[1] / "instruments" / "qblox_station.yaml"
#: A lab states its readout band; 100 MHz around the built-in q0's resonator keeps it short.
BAND = (6.95e9, 7.05e9)


@pytest.fixture
def station(tmp_path, monkeypatch):
    """The dummy assembles in the working directory (tmp.q1asm): keep that in tmp_path."""
    monkeypatch.chdir(tmp_path)
    return load_station(STATION)


HERALD_FREE = [check for check in CHECKS if check is not check_described_sequence_acquires]


@pytest.mark.parametrize("check", HERALD_FREE, ids=lambda check: check.__name__)
def test_qblox_adapter_conforms(check, station) -> None:
    check(station, "q0")


def test_heralding_is_refused_in_one_line(station) -> None:
    """The one check the adapter does not pass: it has no herald post-selection yet."""
    with pytest.raises(ContractError, match="does not implement heralding"):
        check_described_sequence_acquires(station, "q0")


def _known(value: float, stderr: float, source: str) -> CalibratedParameter:
    return CalibratedParameter(value, stderr, "", source, "2026-01-01T00:00:00+00:00")


def test_chain_runs_through_the_vendor_driver_and_meets_the_truth(station) -> None:
    """resonator_search → readout_power → rabi on the dummy Cluster; qubit frequency and sweet
    spot (from nodes not run here) are the truth. Same tolerances as the simulated lab:
    readout at the line within a tenth of κ, π amplitude within 2 %."""
    truth = SimulatedDevice.from_yaml().truth()["q0"]
    session = QubitSession(station, "q0", {})
    for node in (ResonatorSearch(band=BAND), ReadoutPower()):
        analysis = node.analyse(node.acquire(session))
        outcome = node.gate(analysis)
        assert outcome.accepted, (node.name, outcome.reason)
        for name, (value, stderr) in analysis.values.items():
            session.known[name] = _known(value, stderr, node.name)
    kappa = truth["resonator_kappa"]
    assert session.value("readout_frequency") == pytest.approx(
        truth["resonator_dip_frequency"], abs=0.1 * kappa
    )
    for name in ("qubit_frequency", "flux_sweet_spot"):
        session.known[name] = _known(truth[name], 0.0, "truth")
    rabi = Rabi(herald=False)
    analysis = rabi.analyse(rabi.acquire(session))
    assert rabi.gate(analysis).accepted
    assert analysis.values["pi_amplitude"][0] == pytest.approx(truth["pi_amplitude"], rel=0.02)
    idn = station.components["readout"].get_idn()
    assert idn["vendor"] == "qblox" and "QbloxReadout" in idn["model"]
