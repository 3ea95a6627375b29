"""The conformance suite on the simulated lab, and its messages on a lab that breaks it.

`fluxcal.instruments.conformance.CHECKS` is what a lab's adapter runs against its own
station (docs/adapters.md); here it runs against the simulated lab, which must pass every
check, and against deliberately broken channels, which must fail with the parameter named.
"""

from __future__ import annotations

import pytest
from qcodes.validators import Numbers

from fluxcal.instruments.conformance import CHECKS, ConformanceError, run_checks
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.station import build_station


@pytest.fixture
def station():
    return build_station(SimulatedDevice.from_yaml(time=0.0))


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_simulated_lab_conforms(check, station) -> None:
    check(station, "q0")


def test_a_wrong_unit_is_named(station) -> None:
    station.components["drive"].q0.delay.unit = "us"
    failures = {k: v for k, v in run_checks(station, "q0").items() if v}
    assert list(failures) == ["check_units"]
    assert "drive.q0.delay" in failures["check_units"] and "'s'" in failures["check_units"]


def test_a_missing_parameter_is_named(station) -> None:
    del station.components["readout"].q0.parameters["iq_shots"]
    with pytest.raises(ConformanceError, match=r"readout\.iq_shots"):
        CHECKS[1](station, "q0")


def test_a_setting_that_drops_values_fails_the_round_trip(station) -> None:
    flux = station.components["flux"].q0.voltage
    flux.set_parser = lambda value: round(value)  # a driver that quantises to 1 V
    flux.vals = Numbers(-10, 10)
    with pytest.raises(ConformanceError, match=r"flux\.q0\.voltage: set"):
        run_checks_by_name(station, "check_settings_round_trip")


def test_a_missing_qubit_channel_says_which_exist(station) -> None:
    results = run_checks(station, "q7")
    assert "'flux' has no channel 'q7' (has q0, q1)" in results["check_channels"]


def run_checks_by_name(station, name: str) -> None:
    next(check for check in CHECKS if check.__name__ == name)(station, "q0")
