"""The hardware contract as code: sequences as data, ranges read from validators.

The simulator must measure a sequence given as data exactly as it measured the named
sequence it replaces, model what it claims (pulse phase, gaussian envelopes) and refuse what
it does not; nodes must take their limits from the instruments, not from copies.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from qcodes.utils import NumpyJSONEncoder
from qcodes.validators import Numbers, Strings

from fluxcal.calibrations.session import QubitSession
from fluxcal.instruments.contract import ContractError, Range, setting_range
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.pulses import (
    CUSTOM,
    LIBRARY,
    Pulse,
    PulseSequence,
    Wait,
    name_of,
    named,
    resolve,
)
from fluxcal.instruments.signals import PulseSettings, ReadoutSettings, averaged_iq, prepare
from fluxcal.instruments.station import build_station


@pytest.fixture(scope="module")
def physics():
    device = SimulatedDevice.from_yaml(time=0.0)
    return device.physics("q0")


def _populations(physics, sequence, amplitude, duration, delay, frequency=None):
    truth_f01 = float(physics.sweet_spot.transition_hz(0, 1))
    pulse = PulseSettings(
        sequence, truth_f01 if frequency is None else frequency, amplitude, duration, delay
    )
    readout = ReadoutSettings(7e9, 0.05, 2e-6, 100)
    populations, _, _ = prepare(physics, physics.sweet_spot_voltage, pulse, readout)
    return populations


def test_library_sequences_are_data_and_their_names_round_trip() -> None:
    for name, sequence in LIBRARY.items():
        assert name_of(sequence) == name
        assert named(name, herald=True).herald and name_of(named(name, herald=True)) == name
        assert PulseSequence.from_dict(json.loads(json.dumps(sequence.as_dict()))) == sequence
    assert name_of(PulseSequence((Pulse(amplitude=0.3),))) == CUSTOM


def test_a_named_sequence_and_its_data_measure_the_same(physics) -> None:
    delays = np.linspace(0, 20e-6, 9)
    rng = [np.random.default_rng(5) for _ in range(2)]
    readout = ReadoutSettings(7e9, 0.05, 2e-6, 500)
    by_name = averaged_iq(
        physics, 0.0, PulseSettings("ramsey", 3.6e8, 0.05, 1e-7, delays), readout, rng[0]
    )
    by_data = averaged_iq(
        physics, 0.0, PulseSettings(LIBRARY["ramsey"], 3.6e8, 0.05, 1e-7, delays), readout, rng[1]
    )
    np.testing.assert_array_equal(by_name, by_data)


def test_resolve_gives_absolute_pulses_and_waits_per_sweep_point() -> None:
    delays = np.array([0.0, 1e-6, 2e-6])
    pulses = resolve(named("echo"), 0.2, 40e-9, delays)
    assert [float(p.amplitude) for p in pulses] == [0.1, 0.2, 0.1]
    np.testing.assert_allclose(pulses[1].wait_before, delays / 2)
    np.testing.assert_allclose(pulses[2].wait_before, delays / 2)


def test_second_pulse_phase_shifts_the_ramsey_fringe(physics) -> None:
    """With a resonant drive, a π/2 pair in phase ends in |1⟩; the second pulse at π
    undoes the first and returns |0⟩: the phase is modelled, not ignored."""
    pi = physics.pi_amplitude
    in_phase = PulseSequence((Pulse(amplitude=0.5), Wait(), Pulse(amplitude=0.5)))
    reversed_ = PulseSequence((Pulse(amplitude=0.5), Wait(), Pulse(amplitude=0.5, phase=np.pi)))
    p_in = _populations(physics, in_phase, pi, 100e-9, 0.0)
    p_rev = _populations(physics, reversed_, pi, 100e-9, 0.0)
    thermal = _populations(physics, "none", pi, 100e-9, 0.0)
    assert p_in[1] > thermal[0] - 0.02  # the populations swapped
    np.testing.assert_allclose(p_rev[:2], thermal[:2], atol=1e-9)


def test_a_gaussian_pulse_flips_as_the_square_pulse_of_equal_area(physics) -> None:
    pi = physics.pi_amplitude
    square = _populations(physics, PulseSequence((Pulse(),)), pi, 100e-9, 0.0)
    area = 0.25 * np.sqrt(2 * np.pi) * 0.9544997361036416
    gaussian = _populations(physics, PulseSequence((Pulse("gaussian"),)), pi / area, 100e-9, 0.0)
    np.testing.assert_allclose(gaussian, square, atol=1e-12)


def test_a_sequence_the_simulator_does_not_model_is_refused_with_what_it_models(physics) -> None:
    four = PulseSequence(tuple(Pulse() for _ in range(4)))
    with pytest.raises(ValueError, match="it models"):
        _populations(physics, four, 0.05, 100e-9, 0.0)
    with pytest.raises(ValueError, match="shape"):
        Pulse("triangle")


def test_the_station_snapshot_stores_the_sequence_as_data() -> None:
    station = build_station(SimulatedDevice.from_yaml(time=0.0))
    drive = station.components["drive"].q0
    drive.sequence("echo")
    drive.herald(True)
    stored = station.snapshot()["instruments"]["drive"]["submodules"]["q0"]["parameters"]
    data = json.loads(json.dumps(stored["pulse_sequence"]["value"], cls=NumpyJSONEncoder))
    assert PulseSequence.from_dict(data) == named("echo", herald=True)


def test_nodes_read_limits_from_the_instruments_validators() -> None:
    station = build_station(SimulatedDevice.from_yaml(time=0.0))
    session = QubitSession(station, "q0")
    assert session.limits("drive", "delay") == Range(0.0, 1e-2)
    station.components["drive"].q0.amplitude.vals = Numbers(0, 0.4)  # a smaller AWG
    assert session.upper_limit("drive", "amplitude") == 0.4
    assert session.upper_limit("drive", "amplitude", 0.3) == 0.3
    station.components["readout"].q0.frequency.vals = Strings()
    with pytest.raises(ContractError, match="states no numeric range"):
        setting_range(station.components["readout"].q0.frequency)
