"""The hardware contract: exactly what the calibrations need from a lab's instruments.

Calibrations reach hardware only through three QCoDeS instruments named `flux`, `drive` and
`readout` in the station, each with one channel (submodule) per qubit. This module states that
interface as code: `Protocol`s for the three channels (what a type checker and
`isinstance` can verify), `PARAMETERS` (every QCoDeS parameter, its unit and kind), the
sweepable settings, and `setting_range`, which reads a setting's range from the instrument's
own validator so that nodes never copy one instrument's limits. A lab implements it with its
drivers or a thin wrapper around them (`docs/adapters.md`) and proves it with
`fluxcal.instruments.conformance`.

The drive plays a pulse sequence described as data (`fluxcal.instruments.pulses`) relative to
its `amplitude`, `duration` and `delay`; the readout acquires one hardware sweep of one of
those settings (or of flux, drive or readout frequency, readout amplitude or duration) per
`iq` (averaged complex IQ, one value per sweep point) or `iq_shots` (complex IQ per shot).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from qcodes.validators import Numbers, Validator

ROLES: tuple[str, ...] = ("flux", "drive", "readout")

#: Settings a hardware sweep can step, as (instrument role, parameter name).
SWEEPABLE: dict[str, tuple[str, str] | None] = {
    "none": None,
    "flux_voltage": ("flux", "voltage"),
    "drive_frequency": ("drive", "frequency"),
    "drive_amplitude": ("drive", "amplitude"),
    "drive_duration": ("drive", "duration"),
    "delay": ("drive", "delay"),
    "readout_frequency": ("readout", "frequency"),
    "readout_amplitude": ("readout", "amplitude"),
    "readout_duration": ("readout", "integration_time"),
}

Kind = Literal["number", "integer", "bool", "name", "sequence", "array", "complex_array"]


@dataclass(frozen=True)
class ParameterSpec:
    """One QCoDeS parameter of the contract. `unit` is what the parameter's `unit` must read
    (None: not checked, e.g. a count); optional parameters may be absent."""

    role: str
    name: str
    kind: Kind
    unit: str | None
    required: bool = True
    meaning: str = ""


PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("flux", "voltage", "number", "V", meaning="DC flux bias"),
    ParameterSpec("drive", "frequency", "number", "Hz", meaning="carrier frequency"),
    ParameterSpec("drive", "amplitude", "number", "V", meaning="amplitude of a unit pulse"),
    ParameterSpec("drive", "duration", "number", "s", meaning="length of a unit pulse"),
    ParameterSpec("drive", "delay", "number", "s", meaning="length of a unit wait"),
    ParameterSpec("drive", "pulse_sequence", "sequence", None, meaning="pulses and waits"),
    ParameterSpec("drive", "sequence", "name", None, meaning="library name of the sequence"),
    ParameterSpec("drive", "herald", "bool", None, meaning="pre-measure, keep ground shots"),
    ParameterSpec("readout", "frequency", "number", "Hz", meaning="readout tone"),
    ParameterSpec("readout", "amplitude", "number", "V", meaning="readout tone amplitude"),
    ParameterSpec("readout", "integration_time", "number", "s", meaning="integration window"),
    ParameterSpec("readout", "shots", "integer", None, meaning="shots per sweep point"),
    ParameterSpec("readout", "sweep_parameter", "name", None, meaning="the swept setting"),
    ParameterSpec("readout", "sweep_values", "array", None, meaning="its values"),
    ParameterSpec("readout", "shot_index", "array", None, meaning="setpoints of iq_shots"),
    ParameterSpec("readout", "iq", "complex_array", "V", meaning="averaged IQ per point"),
    ParameterSpec("readout", "iq_shots", "complex_array", "V", meaning="IQ per point, shot"),
    ParameterSpec(
        "readout", "device_time", "number", "s", False, "seconds the acquisitions held the chip"
    ),
)

#: Settings whose range nodes read from the instrument (numbers with a validator).
RANGED = tuple(spec for spec in PARAMETERS if spec.kind in ("number", "integer"))


@runtime_checkable
class FluxChannel(Protocol):
    """`flux.<qubit>`: the DC bias line."""

    voltage: Any


@runtime_checkable
class DriveChannel(Protocol):
    """`drive.<qubit>`: the carrier, the unit pulse and wait, and the sequence as data."""

    frequency: Any
    amplitude: Any
    duration: Any
    delay: Any
    pulse_sequence: Any
    sequence: Any
    herald: Any


@runtime_checkable
class ReadoutChannel(Protocol):
    """`readout.<qubit>`: tone, integration, shots, one hardware sweep per acquisition.

    `iq` is a ParameterWithSetpoints over `sweep_values` (complex, one value per point);
    `iq_shots` over (`sweep_values`, `shot_index`). With `sweep_parameter` = `none` the current
    settings are measured once per value. `device_time` is optional (cumulative seconds).
    """

    frequency: Any
    amplitude: Any
    integration_time: Any
    shots: Any
    sweep_parameter: Any
    sweep_values: Any
    shot_index: Any
    iq: Any
    iq_shots: Any


CHANNEL_PROTOCOLS: dict[str, type] = {
    "flux": FluxChannel,
    "drive": DriveChannel,
    "readout": ReadoutChannel,
}


class ContractError(ValueError):
    """An instrument does not provide what the contract needs; the message says what."""


@dataclass(frozen=True)
class Range:
    """Closed interval of a setting's valid values, from the instrument's validator."""

    low: float
    high: float

    def clip(self, value: float) -> float:
        return float(np.clip(value, self.low, self.high))


def setting_range(parameter: Any) -> Range:
    """The range a QCoDeS parameter accepts, read from its validator (`Numbers`/`Ints` or
    anything with `min_value`/`max_value`); ContractError when it states none."""
    validator = getattr(parameter, "vals", None)
    low = getattr(validator, "min_value", None)
    high = getattr(validator, "max_value", None)
    if low is None or high is None:
        raise ContractError(
            f"{getattr(parameter, 'full_name', parameter)}: its validator "
            f"({validator!r}) states no numeric range; give it Numbers(min, max)"
        )
    return Range(float(low), float(high))


class Bands(Validator[float]):
    """Values a setting reaches through separate paths: the union of their bands.

    A drive whose baseband NCO and upconverter cover disjoint frequencies (e.g. 0–0.5 and
    2–18 GHz) states both, so that nodes skip what no path plays instead of being refused
    mid-sweep. `min_value`/`max_value` span them all (what `setting_range` reads); a value
    between two bands is refused in one line naming them, as one beyond them is.
    """

    def __init__(self, *bands: tuple[float, float]):
        self.bands = tuple(sorted((float(low), float(high)) for low, high in bands))
        self.min_value, self.max_value = self.bands[0][0], self.bands[-1][1]
        self._valid_values = (self.min_value,)
        self.is_numeric = True

    def validate(self, value: float, context: str = "") -> None:
        Numbers(self.min_value, self.max_value).validate(value, context)
        if not any(low <= value <= high for low, high in self.bands):
            raise ValueError(f"{value!r} lies between the bands {self}; {context}")

    def __repr__(self) -> str:
        return ", ".join(f"{low:.6g}…{high:.6g}" for low, high in self.bands)


def setting_bands(parameter: Any) -> tuple[Range, ...]:
    """The bands a setting accepts, lowest first: a `Bands` validator's (anything with a
    `bands` attribute of (low, high) pairs), else its one `setting_range`."""
    bands = getattr(getattr(parameter, "vals", None), "bands", None)
    if bands:
        return tuple(Range(float(low), float(high)) for low, high in bands)
    return (setting_range(parameter),)


def band_of(bands: tuple[Range, ...], value: float) -> Range | None:
    """The band holding `value`, or None when it lies between or beyond them."""
    return next((band for band in bands if band.low <= value <= band.high), None)


def bands_text(bands: tuple[Range, ...], scale: float = 1e9, unit: str = "GHz") -> str:
    """The bands in one phrase for an error message, e.g. '0–0.5, 2–18 GHz'."""
    return ", ".join(f"{b.low / scale:.4g}–{b.high / scale:.4g}" for b in bands) + f" {unit}"


def band_pieces(bands: tuple[Range, ...], low: float, high: float) -> list[Range]:
    """The parts of [low, high] the bands reach, lowest first (empty parts dropped)."""
    pieces = [Range(max(low, band.low), min(high, band.high)) for band in bands]
    return [piece for piece in pieces if piece.high > piece.low]


def channel_of(station: Any, role: str, qubit: str) -> Any:
    """The per-qubit channel of a role's instrument; ContractError naming what is missing."""
    components = getattr(station, "components", {})
    if role not in components:
        raise ContractError(f"station has no '{role}' instrument (needs {', '.join(ROLES)})")
    submodules = getattr(components[role], "submodules", {})
    if qubit not in submodules:
        raise ContractError(f"'{role}' has no channel '{qubit}' (has {', '.join(submodules)})")
    return submodules[qubit]


def missing_parameters(station: Any, qubit: str) -> list[str]:
    """Required contract parameters the station lacks for a qubit, as `role.name`."""
    missing = []
    for spec in PARAMETERS:
        channel = channel_of(station, spec.role, qubit)
        if spec.required and spec.name not in channel.parameters:
            missing.append(f"{spec.role}.{spec.name}")
    return missing
