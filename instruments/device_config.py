"""Schema of `device.yaml`, the description of a simulated chip (see docs/device.md).

Validated with pydantic so that a bad file fails at load time with an error naming the
field (`qubits.q0.EJ: must be > 0`) instead of producing a wrong simulation later. Units are
SI except EJ/EC/EL, which are GHz as physicists quote them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


class DeviceConfigError(ValueError):
    """A device file that cannot describe a chip; the message names the offending field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FluxBias(_Strict):
    period: Positive = Field(description="bias volts per flux quantum (V/Φ0)")
    offset: float = Field(description="bias voltage at Φext = 0 (V)")


class Environment(_Strict):
    """Microwave line between the chip and the digitiser: what real resonator traces carry."""

    delay: NonNegative = Field(0.0, description="cable delay (s)")
    gain: Positive = Field(1.0, description="line gain (V/V)")
    phase: float = Field(0.0, description="line phase (rad)")
    mismatch: float = Field(0.0, ge=-1.0, le=1.0, description="impedance-mismatch angle (rad)")


class Resonator(_Strict):
    frequency: Positive = Field(description="bare resonator frequency (Hz)")
    coupling: Positive = Field(description="charge coupling g (Hz)")
    kappa: Positive = Field(description="linewidth κ (Hz)")
    coupling_ratio: float = Field(0.8, gt=0, le=1, description="Ql/|Qc|, sets the dip depth")
    environment: Environment = Environment()


class Coherence(_Strict):
    T1: Positive = Field(description="energy relaxation time at the sweet spot (s)")
    flux_noise: NonNegative = Field(description="1/f flux-noise amplitude A (Φ0)")
    dephasing_rate: NonNegative = Field(
        0.0, description="flux-independent pure dephasing rate in Ramsey (1/s)"
    )
    echo_filter: Positive = Field(
        5.0, description="factor by which an echo suppresses the low-frequency dephasing"
    )


class Drive(_Strict):
    coupling: Positive = Field(description="Rabi frequency per volt per unit |n01| (Hz/V)")
    pi_duration: Positive = Field(100e-9, description="rectangular pulse length in use (s)")


class Readout(_Strict):
    noise: Positive = Field(description="amplifier noise density (V·√s): σ per shot = noise/√τ")
    saturation_amplitude: Positive = Field(
        0.3, description="drive amplitude where the resonator response saturates (V)"
    )
    critical_amplitude: Positive = Field(
        0.5, description="amplitude where measurement-induced transitions reach 1 %/µs (V)"
    )
    repetition_time: Positive = Field(500e-6, description="shot repetition time (s)")


class Drift(_Strict):
    flux_walk: NonNegative = Field(0.0, description="flux-offset random walk (Φ0/√hour)")
    resonator_walk: NonNegative = Field(0.0, description="resonator random walk (Hz/√hour)")
    t1_fluctuation: NonNegative = Field(0.0, description="relative T1 swing (log scale)")
    t1_timescale: Positive = Field(3600.0, description="T1 fluctuation timescale (s)")


class Event(_Strict):
    time: NonNegative = Field(description="seconds after the device epoch")
    kind: Literal["flux_jump", "t1_drop", "resonator_jump"]
    size: float = Field(description="Φ0 for flux_jump, factor for t1_drop, Hz for resonator_jump")


class Lines(_Strict):
    """The hardware lines a qubit uses. Qubits that share any named line cannot be measured
    at the same time (one digitiser per feedline, one source per flux or drive channel), so
    the walker serialises them; a line left unnamed is the qubit's own."""

    feedline: str | None = Field(None, description="readout feedline (multiplexed resonators)")
    flux: str | None = Field(None, description="flux-bias channel, if shared")
    drive: str | None = Field(None, description="drive/AWG channel, if shared")

    def named(self) -> set[tuple[str, str]]:
        """(kind, name) of every line this qubit declares."""
        return {(kind, name) for kind, name in self.model_dump().items() if name is not None}


class Qubit(_Strict):
    EJ: Positive = Field(description="Josephson energy (GHz)")
    EC: Positive = Field(description="charging energy (GHz)")
    EL: Positive = Field(description="inductive energy (GHz)")
    temperature: Positive = Field(0.020, description="effective temperature (K)")
    seed: int = Field(description="seed of this qubit's noise and drift")
    flux: FluxBias
    resonator: Resonator
    coherence: Coherence
    drive: Drive
    readout: Readout
    drift: Drift = Drift()
    events: list[Event] = []
    lines: Lines = Lines()


class DeviceConfig(_Strict):
    name: str
    epoch: str = Field(description="ISO 8601 UTC time at which drift time is zero")
    qubits: dict[str, Qubit] = Field(min_length=1)


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "<top level>"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


def parse_device_config(data: object, source: str = "device config") -> DeviceConfig:
    """Validate a parsed YAML document; raise DeviceConfigError naming each bad field."""
    try:
        return DeviceConfig.model_validate(data)
    except ValidationError as error:
        raise DeviceConfigError(f"{source}: {_describe(error)}") from None


def load_device_config(path: str | Path) -> DeviceConfig:
    """Read and validate a device.yaml."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise DeviceConfigError(f"{path}: cannot read device file ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise DeviceConfigError(f"{path}: not valid YAML ({error})") from None
    return parse_device_config(data, source=str(path))
