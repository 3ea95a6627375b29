"""QCoDeS parameters every implementation of the contract shares: the sequence as data (with
its `sequence` name and `herald` views) and the sweep values, so adapters do not re-invent them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from qcodes.validators import Arrays, Bool, Enum, Validator

from fluxcal.instruments.pulses import CUSTOM, SEQUENCES, PulseSequence, name_of, named


class SequenceData(Validator[PulseSequence | dict]):
    """A PulseSequence, or its `as_dict` form (which the parameter's set_parser converts)."""

    def validate(self, value: PulseSequence | dict, context: str = "") -> None:
        if isinstance(value, dict):
            PulseSequence.from_dict(value)
        elif not isinstance(value, PulseSequence):
            raise TypeError(f"{value!r} is not a PulseSequence; {context}")


def _as_sequence(value: PulseSequence | dict) -> PulseSequence:
    return value if isinstance(value, PulseSequence) else PulseSequence.from_dict(value)


def add_sequence_parameters(channel: Any) -> None:
    """`pulse_sequence` (the data), and `sequence` (a library name) and `herald` as views of
    it: the calibrations set names and the flag, an adapter compiles the data."""
    channel.add_parameter(
        "pulse_sequence",
        label="pulse sequence",
        docstring="The drive's pulses and waits as data (fluxcal.instruments.pulses), "
        "relative to amplitude, duration and delay.",
        initial_value=named("none"),
        vals=SequenceData(),
        set_parser=_as_sequence,
        get_cmd=None,
        set_cmd=None,
    )
    data = channel.pulse_sequence
    channel.add_parameter(
        "sequence",
        label="pulse sequence name",
        vals=Enum(*SEQUENCES),
        get_cmd=lambda: name_of(data.cache.get()),
        set_cmd=lambda name: data.set(named(name, data.cache.get().herald)),
        docstring=f"Library name of pulse_sequence ('{CUSTOM}' for any other).",
    )
    channel.add_parameter(
        "herald",
        label="herald with a pre-measurement",
        vals=Bool(),
        get_cmd=lambda: data.cache.get().herald,
        set_cmd=lambda flag: data.set(data.cache.get().with_herald(flag)),
    )


class SweepValues(Arrays):
    """A 1-D real array of any length; its shape (for the setpoints) is the current one."""

    def __init__(self, length: Callable[[], int]):
        super().__init__(shape=(length,))

    def validate(self, value: np.ndarray, context: str = "") -> None:
        array = np.asarray(value)
        if array.ndim != 1 or array.size == 0 or not np.isrealobj(array):
            raise ValueError(f"sweep values must be a non-empty 1-D real array; {context}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"sweep values must be finite; {context}")


def sweep_values_validator(channel: Any) -> tuple[SweepValues, Callable[[], int]]:
    """The validator of `sweep_values` and the current sweep length (for the setpoints)."""

    def length() -> int:
        return len(channel.sweep_values.cache.get(get_if_invalid=False))

    return SweepValues(length), length
