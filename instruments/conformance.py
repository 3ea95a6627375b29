"""Conformance checks of the hardware contract, for any lab's station.

Each check takes a station and a qubit, exercises one promise of `fluxcal.instruments.contract`
through QCoDeS parameters only, and raises `ConformanceError` saying what is wrong. Run them
all with `run_checks`, or parametrise pytest over `CHECKS`:

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    def test_my_lab(check, my_station):
        check(my_station, "q0")

The checks set settings inside the ranges the instruments state and acquire a few short
sweeps, so on hardware they hold the qubit for a few seconds; every setting they touch is put
back afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from fluxcal.instruments.contract import (
    CHANNEL_PROTOCOLS,
    PARAMETERS,
    RANGED,
    ROLES,
    SWEEPABLE,
    ContractError,
    channel_of,
    missing_parameters,
    setting_range,
)
from fluxcal.instruments.pulses import LIBRARY, Pulse, PulseSequence, Wait, named

#: Points and shots of the acquisitions the checks make: enough to see shapes, cheap on hardware.
POINTS = 5
SHOTS = 16


class ConformanceError(AssertionError):
    """A station breaks the hardware contract; the message names the parameter and the rule."""


Check = Callable[[Any, str], None]


def _fail(message: str) -> None:
    raise ConformanceError(message)


@contextmanager
def restored(*parameters: Any) -> Iterator[None]:
    """Put the parameters' values back after a check."""
    saved = [(p, p.get()) for p in parameters]
    try:
        yield
    finally:
        for parameter, value in saved:
            parameter.set(value)


def _parameter(station: Any, qubit: str, role: str, name: str) -> Any:
    return channel_of(station, role, qubit).parameters[name]


def _inside(parameter: Any, fraction: float) -> float | int:
    """A value `fraction` of the way through the parameter's range (a safe test value)."""
    span = setting_range(parameter)
    value = span.low + fraction * (span.high - span.low)
    return round(value) if _is_integer(parameter) else value


def _is_integer(parameter: Any) -> bool:
    return any(spec.kind == "integer" and spec.name == parameter.short_name for spec in RANGED)


def check_channels(station: Any, qubit: str) -> None:
    """Every role has an instrument with a channel for the qubit matching its Protocol."""
    for role in ROLES:
        try:
            channel = channel_of(station, role, qubit)
        except ContractError as error:
            _fail(str(error))
        if not isinstance(channel, CHANNEL_PROTOCOLS[role]):
            _fail(f"{role}.{qubit} does not provide {CHANNEL_PROTOCOLS[role].__name__}")


def check_parameters_exist(station: Any, qubit: str) -> None:
    """Every required parameter of the contract is there."""
    missing = missing_parameters(station, qubit)
    if missing:
        _fail(f"{qubit}: missing contract parameter(s) {', '.join(missing)}")


def check_units(station: Any, qubit: str) -> None:
    """Parameters with a unit in the contract state exactly that unit (SI, no prefixes)."""
    for spec in PARAMETERS:
        channel = channel_of(station, spec.role, qubit)
        if spec.unit is None or spec.name not in channel.parameters:
            continue
        unit = channel.parameters[spec.name].unit
        if unit != spec.unit:
            _fail(
                f"{spec.role}.{qubit}.{spec.name}: unit {unit!r}, the contract needs {spec.unit!r}"
            )


def check_ranges_from_validators(station: Any, qubit: str) -> None:
    """Every settable number states its range through its validator (what nodes read)."""
    for spec in RANGED:
        channel = channel_of(station, spec.role, qubit)
        parameter = channel.parameters.get(spec.name)
        if parameter is None or not parameter.settable:
            continue
        try:
            span = setting_range(parameter)
        except ContractError as error:
            _fail(str(error))
        if not (np.isfinite(span.low) and np.isfinite(span.high) and span.low < span.high):
            _fail(f"{spec.role}.{qubit}.{spec.name}: range [{span.low}, {span.high}] is empty")


def check_settings_round_trip(station: Any, qubit: str) -> None:
    """Setting a value inside the range and getting it back gives that value."""
    for spec in RANGED:
        parameter = channel_of(station, spec.role, qubit).parameters.get(spec.name)
        if parameter is None or not parameter.settable:
            continue
        with restored(parameter):
            for fraction in (0.31, 0.57):
                value = _inside(parameter, fraction)
                parameter.set(value)
                got = parameter.get()
                if not np.isclose(got, value, rtol=1e-6, atol=0.0):
                    _fail(f"{spec.role}.{qubit}.{spec.name}: set {value!r}, got back {got!r}")


def check_out_of_range_is_refused(station: Any, qubit: str) -> None:
    """A value beyond the stated range raises ValueError naming the parameter."""
    for spec in RANGED:
        parameter = channel_of(station, spec.role, qubit).parameters.get(spec.name)
        if parameter is None or not parameter.settable:
            continue
        span = setting_range(parameter)
        beyond = span.high + max(1.0, abs(span.high))
        with restored(parameter):
            try:
                parameter.set(int(beyond) if _is_integer(parameter) else beyond)
            except ValueError as error:
                if spec.name not in str(error):
                    _fail(f"{spec.role}.{qubit}.{spec.name}: refusal does not name it: {error}")
                continue
        _fail(f"{spec.role}.{qubit}.{spec.name}: accepted {beyond}, beyond its range {span}")


def check_sweepable_names(station: Any, qubit: str) -> None:
    """The readout accepts every sweep name of the contract and refuses an unknown one."""
    readout = channel_of(station, "readout", qubit)
    with restored(readout.sweep_parameter):
        for name in SWEEPABLE:
            readout.sweep_parameter(name)
            if readout.sweep_parameter() != name:
                _fail(f"readout.{qubit}.sweep_parameter: set {name!r}, got another")
        try:
            readout.sweep_parameter("not_a_setting")
        except ValueError:
            return
    _fail(f"readout.{qubit}.sweep_parameter accepted an unknown sweep name")


#: A sequence beyond the library: gaussian π/2 pulses, the second at 90°, a fixed extra wait.
CUSTOM_SEQUENCE = PulseSequence(
    (
        Pulse("gaussian", 0.5, 1.0, 0.0),
        Wait(1.0, 20e-9),
        Pulse("gaussian", 0.5, 1.0, np.pi / 2),
    ),
    herald=True,
)


def check_sequences_as_data(station: Any, qubit: str) -> None:
    """The drive takes sequences as data (library and custom) and gives them back; library
    names and the herald flag are views of that data."""
    drive = channel_of(station, "drive", qubit)
    with restored(drive.pulse_sequence):
        for name, sequence in LIBRARY.items():
            drive.pulse_sequence(sequence)
            if drive.pulse_sequence() != sequence or drive.sequence() != name:
                _fail(f"drive.{qubit}.pulse_sequence: {name} did not round-trip")
        drive.pulse_sequence(CUSTOM_SEQUENCE)
        if drive.pulse_sequence() != CUSTOM_SEQUENCE:
            _fail(f"drive.{qubit}.pulse_sequence: a custom sequence did not round-trip")
        drive.pulse_sequence(CUSTOM_SEQUENCE.as_dict())
        if drive.pulse_sequence() != CUSTOM_SEQUENCE:
            _fail(f"drive.{qubit}.pulse_sequence: its dict form did not round-trip")
        drive.sequence("ramsey")
        drive.herald(False)
        if drive.pulse_sequence() != named("ramsey", herald=False) or drive.herald():
            _fail(f"drive.{qubit}: sequence/herald do not set the pulse_sequence data")


def _acquire(station: Any, qubit: str, sweep: str, values: np.ndarray, single: bool) -> Any:
    readout = channel_of(station, "readout", qubit)
    readout.sweep_parameter(sweep)
    readout.sweep_values(values)
    return (readout.iq_shots if single else readout.iq).get()


@contextmanager
def _acquisition_settings(station: Any, qubit: str) -> Iterator[None]:
    readout = channel_of(station, "readout", qubit)
    drive = channel_of(station, "drive", qubit)
    with restored(
        readout.shots, readout.sweep_parameter, readout.sweep_values, drive.pulse_sequence
    ):
        readout.shots(SHOTS)
        yield


def _sweep_values(station: Any, qubit: str, sweep: str) -> np.ndarray:
    role, name = SWEEPABLE[sweep] or ("readout", "frequency")
    parameter = _parameter(station, qubit, role, name)
    return np.linspace(_inside(parameter, 0.4), _inside(parameter, 0.6), POINTS)


def _check_array(data: Any, shape: tuple[int, ...], what: str) -> None:
    array = np.asarray(data)
    if array.shape != shape:
        _fail(f"{what}: shape {array.shape}, the contract needs {shape}")
    if not np.iscomplexobj(array):
        _fail(f"{what}: dtype {array.dtype}, the contract needs complex IQ")
    if not np.all(np.isfinite(array)):
        _fail(f"{what}: non-finite values")


def check_averaged_acquisition(station: Any, qubit: str) -> None:
    """`iq` gives one finite complex value per sweep point, for every sweepable setting."""
    with _acquisition_settings(station, qubit):
        for sweep in SWEEPABLE:
            values = _sweep_values(station, qubit, sweep)
            data = _acquire(station, qubit, sweep, values, single=False)
            _check_array(data, (POINTS,), f"readout.{qubit}.iq over {sweep}")


def check_single_shots(station: Any, qubit: str) -> None:
    """`iq_shots` gives (points, shots) complex values; `shot_index` is 0 … shots−1."""
    readout = channel_of(station, "readout", qubit)
    with _acquisition_settings(station, qubit):
        channel_of(station, "drive", qubit).sequence("rabi")
        values = _sweep_values(station, qubit, "drive_amplitude")
        data = _acquire(station, qubit, "drive_amplitude", values, single=True)
        _check_array(data, (POINTS, SHOTS), f"readout.{qubit}.iq_shots")
        if not np.array_equal(readout.shot_index(), np.arange(SHOTS)):
            _fail(f"readout.{qubit}.shot_index is not 0 … shots−1")


def check_described_sequence_acquires(station: Any, qubit: str) -> None:
    """A custom sequence (gaussian pulses, a phase, a fixed wait, heralded) is measured."""
    with _acquisition_settings(station, qubit):
        channel_of(station, "drive", qubit).pulse_sequence(CUSTOM_SEQUENCE)
        values = _sweep_values(station, qubit, "delay")
        data = _acquire(station, qubit, "delay", values, single=False)
        _check_array(data, (POINTS,), f"readout.{qubit}.iq with a custom sequence")


def check_device_time(station: Any, qubit: str) -> None:
    """`device_time` is optional; when present it is in s and grows with each acquisition."""
    readout = channel_of(station, "readout", qubit)
    parameter = readout.parameters.get("device_time")
    if parameter is None:
        return
    before = float(parameter.get())
    with _acquisition_settings(station, qubit):
        _acquire(station, qubit, "none", np.zeros(POINTS), single=False)
    after = float(parameter.get())
    if not (np.isfinite(before) and before >= 0 and after > before):
        _fail(f"readout.{qubit}.device_time did not grow with an acquisition ({before}→{after})")


CHECKS: tuple[Check, ...] = (
    check_channels,
    check_parameters_exist,
    check_units,
    check_ranges_from_validators,
    check_settings_round_trip,
    check_out_of_range_is_refused,
    check_sweepable_names,
    check_sequences_as_data,
    check_averaged_acquisition,
    check_single_shots,
    check_described_sequence_acquires,
    check_device_time,
)


def run_checks(station: Any, qubit: str) -> dict[str, str | None]:
    """Every check by name: None when it passed, else what failed."""
    results: dict[str, str | None] = {}
    for check in CHECKS:
        try:
            check(station, qubit)
        except (ConformanceError, ContractError, ValueError, TypeError) as error:
            results[check.__name__] = str(error)
        else:
            results[check.__name__] = None
    return results
