"""Pulse sequences as data: what the drive plays before each readout, for any lab's hardware.

A sequence is a list of pulses and waits plus a herald flag. Its amplitudes, durations and
waits are *relative* to the drive channel's `amplitude`, `duration` and `delay` settings, the
three settings a hardware sweep steps (an amplitude Rabi sweeps `amplitude`, a T1 sweeps
`delay`): so one sequence describes a whole sweep, and a lab's adapter compiles it once per
sweep into its own program format (`resolve` gives the absolute values per sweep point).
A wait may also hold a fixed time in seconds.

The named sequences the calibrations use (`LIBRARY`) are only shorthands for such data:
`ramsey` is two π/2 pulses made as pulses at half the amplitude of the set duration, separated
by the delay; `echo` puts a π pulse in the middle of the delay; `t1` is a π pulse then the
delay; `saturation` a continuous tone long enough to reach steady state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Shape = Literal["square", "gaussian", "continuous"]
SHAPES: tuple[str, ...] = ("square", "gaussian", "continuous")


@dataclass(frozen=True)
class Pulse:
    """One drive pulse: envelope `shape`, amplitude and duration relative to the channel's,
    carrier phase in rad (relative to the first pulse). A `continuous` pulse is a tone held
    until the qubit reaches steady state (saturation spectroscopy); its duration is ignored.
    A `gaussian` envelope spans its duration as ±2σ."""

    shape: Shape = "square"
    amplitude: float = 1.0
    duration: float = 1.0
    phase: float = 0.0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"pulse shape {self.shape!r} unknown; shapes: {', '.join(SHAPES)}")
        if not (np.isfinite(self.amplitude) and np.isfinite(self.phase)):
            raise ValueError("pulse amplitude and phase must be finite")
        if not (np.isfinite(self.duration) and self.duration >= 0):
            raise ValueError("pulse duration must be finite and ≥ 0")


@dataclass(frozen=True)
class Wait:
    """Free evolution: `scale` × the channel's delay plus a fixed `seconds`."""

    scale: float = 1.0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if not (self.scale >= 0 and self.seconds >= 0):
            raise ValueError("a wait must not be negative")


Element = Pulse | Wait


@dataclass(frozen=True)
class PulseSequence:
    """What the drive plays before the readout; `herald`: a pre-measurement first, keeping
    only shots read as ground (post-selection by the readout)."""

    elements: tuple[Element, ...] = ()
    herald: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "elements", tuple(self.elements))
        for element in self.elements:
            if not isinstance(element, Pulse | Wait):
                raise TypeError(f"sequence elements are Pulse or Wait, not {element!r}")

    @property
    def pulses(self) -> tuple[Pulse, ...]:
        return tuple(e for e in self.elements if isinstance(e, Pulse))

    def with_herald(self, herald: bool) -> PulseSequence:
        return dataclasses.replace(self, herald=bool(herald))

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready), as stored in the station snapshot."""
        return {
            "herald": self.herald,
            "elements": [
                {"kind": type(e).__name__.lower(), **dataclasses.asdict(e)} for e in self.elements
            ],
        }

    def _JSONEncoder(self) -> dict[str, Any]:  # the name QCoDeS' JSON encoder looks for
        """How the station snapshot (QCoDeS' JSON encoder) stores the sequence."""
        return self.as_dict()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PulseSequence:
        kinds = {"pulse": Pulse, "wait": Wait}
        elements = []
        for item in data.get("elements", ()):
            fields = dict(item)
            kind = fields.pop("kind", None)
            if kind not in kinds:
                raise ValueError(f"sequence element kind {kind!r} unknown; kinds: pulse, wait")
            elements.append(kinds[kind](**fields))
        return cls(tuple(elements), bool(data.get("herald", False)))


def _library() -> dict[str, PulseSequence]:
    half = Pulse(amplitude=0.5)
    return {
        "none": PulseSequence(),
        "saturation": PulseSequence((Pulse(shape="continuous"),)),
        "rabi": PulseSequence((Pulse(),)),
        "ramsey": PulseSequence((half, Wait(), half)),
        "echo": PulseSequence((half, Wait(0.5), Pulse(), Wait(0.5), half)),
        "t1": PulseSequence((Pulse(), Wait())),
    }


#: The named sequences the calibrations use, as data.
LIBRARY: dict[str, PulseSequence] = _library()
SEQUENCES: tuple[str, ...] = tuple(LIBRARY)
#: What `name_of` returns for a sequence that is not in the library.
CUSTOM = "custom"


def named(name: str, herald: bool = False) -> PulseSequence:
    """A library sequence by name (the shorthand the calibrations set)."""
    try:
        return LIBRARY[name].with_herald(herald)
    except KeyError:
        known = ", ".join(SEQUENCES)
        raise ValueError(f"unknown pulse sequence {name!r}; known: {known}") from None


def name_of(sequence: PulseSequence) -> str:
    """The library name of a sequence (herald aside), or `custom`."""
    bare = sequence.with_herald(False)
    return next((name for name, known in LIBRARY.items() if known == bare), CUSTOM)


@dataclass(frozen=True)
class ResolvedPulse:
    """A pulse in absolute units; amplitude (V) and duration (s) may be arrays over points."""

    shape: Shape
    amplitude: np.ndarray | float
    duration: np.ndarray | float
    phase: float
    wait_before: np.ndarray | float  # s of free evolution since the previous pulse


def resolve(sequence: PulseSequence, amplitude, duration, delay) -> list[ResolvedPulse]:
    """Absolute pulses for channel settings that may be arrays over sweep points."""
    pulses: list[ResolvedPulse] = []
    waited: np.ndarray | float = 0.0
    for element in sequence.elements:
        if isinstance(element, Wait):
            waited = waited + element.scale * np.asarray(delay, float) + element.seconds
            continue
        pulses.append(
            ResolvedPulse(
                element.shape,
                element.amplitude * np.asarray(amplitude, float),
                element.duration * np.asarray(duration, float),
                element.phase,
                waited,
            )
        )
        waited = 0.0
    return pulses


def trailing_wait(sequence: PulseSequence, delay) -> np.ndarray | float:
    """Free evolution after the last pulse, before the readout (a T1 delay)."""
    waited: np.ndarray | float = 0.0
    for element in sequence.elements:
        waited = (
            waited + element.scale * np.asarray(delay, float) + element.seconds
            if isinstance(element, Wait)
            else 0.0
        )
    return waited
