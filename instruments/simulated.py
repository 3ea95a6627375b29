"""Simulated QCoDeS instruments backed by a SimulatedDevice: flux source, drive AWG, digitiser.

Calibrations only ever touch these instruments' QCoDeS parameters, so a lab replaces them
with real drivers in its station YAML and nothing else changes. The three instruments of one
simulated lab share a `SimulatedLab` (looked up by device file, so a station YAML can build
them independently). The digitiser acquires a whole hardware sweep in one call: its channel
names the swept setting (`sweep_parameter`) and its values (`sweep_values`), and `iq` /
`iq_shots` are ParameterWithSetpoints over those values, like a real sweeper.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from qcodes.instrument import Instrument, InstrumentChannel
from qcodes.parameters import ParameterWithSetpoints
from qcodes.validators import Arrays, Enum, Ints, Numbers

from fluxcal.instruments.contract import SWEEPABLE
from fluxcal.instruments.contract_parameters import add_sequence_parameters, sweep_values_validator
from fluxcal.instruments.device import SimulatedDevice, default_device_path
from fluxcal.instruments.signals import (
    PulseSettings,
    ReadoutSettings,
    averaged_iq,
    single_shot_iq,
)

FAULTS = ("timeout", "glitch", "nan")


class InstrumentFault(TimeoutError):
    """An injected instrument failure (the kind a flow retries)."""


class SimulatedLab:
    """The device plus the instruments wired to it; one per device file per process.

    Qubits may be measured from several threads at once (the walker runs qubits that share
    no line concurrently). Each qubit's noise comes from its own acquisition counter, so a
    qubit sees the same noise whatever the other qubits do and whenever they do it: a
    parallel run measures exactly what a sequential one does. The shared counters are
    updated under a lock.
    """

    _labs: ClassVar[dict[str, SimulatedLab]] = {}
    #: Labs of device objects, dropped with their device (an id() key could be reused by a
    #: later device and hand it a stale lab with another chip and noise counter).
    _object_labs: ClassVar[weakref.WeakKeyDictionary] = weakref.WeakKeyDictionary()
    _labs_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, device: SimulatedDevice):
        self.device = device
        self.instruments: dict[str, Instrument] = {}
        #: what the acquisitions would take on hardware, per qubit read out
        self.device_seconds_by_qubit: dict[str, float] = {}
        self.simulation_seconds = 0.0  # wall time spent computing signals
        #: wall seconds an acquisition waits per device second it holds the qubit: 0 runs as
        #: fast as the model computes; a positive pace makes a run device-bound as in a lab,
        #: where qubits on separate lines overlap their waits (benchmarks/bench_fleet.py)
        self.pace = 0.0
        self._acquisitions: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def device_seconds(self) -> float:
        """What all acquisitions so far would take on hardware."""
        return sum(self.device_seconds_by_qubit.values())

    def acquisition_count(self, qubit: str | None = None) -> int:
        """Hardware sweeps made so far, on one qubit or on all."""
        with self._lock:
            counts = (
                self._acquisitions.values() if qubit is None else [self._acquisitions.get(qubit, 0)]
            )
            return sum(counts)

    @classmethod
    def shared(cls, device: str | Path | SimulatedDevice | None = None) -> SimulatedLab:
        """The lab for a device file (or device object), created on first use."""
        with cls._labs_lock:
            if isinstance(device, SimulatedDevice):
                if device not in cls._object_labs:
                    cls._object_labs[device] = cls(device)
                return cls._object_labs[device]
            path = str(Path(device).resolve()) if device else str(default_device_path())
            if path not in cls._labs:
                cls._labs[path] = cls(SimulatedDevice.from_yaml(path))
            return cls._labs[path]

    def register(self, role: str, instrument: Instrument) -> None:
        self.instruments[role] = instrument

    def setting(self, role: str, qubit: str, name: str) -> Any:
        try:
            instrument = self.instruments[role]
        except KeyError:
            raise RuntimeError(
                f"simulated lab has no {role} instrument; add it to the station"
            ) from None
        return instrument.submodules[qubit].parameters[name].get()

    def rng(self, qubit: str) -> np.random.Generator:
        """Noise generator: seeded by the qubit's seed and the qubit's acquisition counter."""
        with self._lock:
            count = self._acquisitions[qubit] = self._acquisitions.get(qubit, 0) + 1
        seed = self.device.config.qubits[qubit].seed
        return np.random.default_rng([seed, 7919, count])

    def acquire(self, qubit: str, sweep: str, values: np.ndarray, single_shot: bool) -> np.ndarray:
        """Run one hardware sweep on the device with the instruments' current settings."""
        current = {
            key: self.setting(role, qubit, name)
            for key, spec in SWEEPABLE.items()
            if spec is not None
            for role, name in [spec]
        }
        if sweep != "none":
            current[sweep] = np.asarray(values, float)
        pulse = PulseSettings(
            sequence=self.setting("drive", qubit, "pulse_sequence"),
            frequency=current["drive_frequency"],
            amplitude=current["drive_amplitude"],
            duration=current["drive_duration"],
            delay=current["delay"],
        )
        shots = int(self.setting("readout", qubit, "shots"))
        readout = ReadoutSettings(
            current["readout_frequency"],
            current["readout_amplitude"],
            current["readout_duration"],
            shots,
        )
        physics = self.device.physics(qubit)
        points = max(len(values), 1) if sweep != "none" else 1
        busy = points * shots * _seconds_per_shot(pulse, readout, single_shot, physics)
        with self._lock:
            spent = self.device_seconds_by_qubit.get(qubit, 0.0)
            self.device_seconds_by_qubit[qubit] = spent + busy
        measure = single_shot_iq if single_shot else averaged_iq
        start = time.perf_counter()
        data = measure(physics, current["flux_voltage"], pulse, readout, self.rng(qubit))
        with self._lock:
            self.simulation_seconds += time.perf_counter() - start
        if self.pace > 0:
            time.sleep(float(busy) * self.pace)
        return data


def _seconds_per_shot(pulse, readout, single_shot: bool, physics) -> np.ndarray | float:
    """What one shot of a sweep point holds the device for, as a lab would run it.

    An averaged measurement without qubit pulses is a continuous-wave one (a VNA or a CW
    tone integrated per point): it costs its integration time. Anything with pulses, a
    herald or single shots needs the qubit back in equilibrium before each shot: the
    repetition time (twice with a herald's pre-measurement). Swept readout durations cost
    their mean.
    """
    if not pulse.sequence.pulses and not pulse.herald and not single_shot:
        return float(np.mean(readout.duration))
    repetitions = 2 if pulse.herald else 1
    return repetitions * physics.config.readout.repetition_time


def _lab_for(device: str | Path | SimulatedDevice | None) -> SimulatedLab:
    return SimulatedLab.shared(device)


class _QubitChannel(InstrumentChannel):
    """Per-qubit block of settings on a simulated instrument."""


class _SimulatedInstrument(Instrument):
    role: ClassVar[str]
    #: per-qubit channels on one in-process model with its own lock: qubits of separate
    #: lines may acquire from several threads at once (`runner.acquisition_turn`)
    concurrent_acquisitions: ClassVar[bool] = True

    def __init__(self, name: str, device: str | Path | SimulatedDevice | None = None, **kwargs):
        super().__init__(name, **kwargs)
        self.lab = _lab_for(device)
        for qubit in self.lab.device.qubits:
            channel = _QubitChannel(self, qubit)
            self._add_settings(channel)
            self.add_submodule(qubit, channel)
        self.lab.register(self.role, self)

    def _add_settings(self, channel: InstrumentChannel) -> None:
        raise NotImplementedError

    def get_idn(self) -> dict[str, str | None]:
        return {
            "vendor": "fluxcal",
            "model": type(self).__name__,
            "serial": self.name,
            "firmware": "simulated",
        }


def _setting(channel, name, unit, initial, vals, label=None) -> None:
    channel.add_parameter(
        name,
        unit=unit,
        label=label or name.replace("_", " "),
        initial_value=initial,
        vals=vals,
        get_cmd=None,
        set_cmd=None,
    )


class SimulatedFluxSource(_SimulatedInstrument):
    """DC flux-bias source: one voltage per qubit."""

    role = "flux"

    def _add_settings(self, channel):
        _setting(channel, "voltage", "V", 0.0, Numbers(-10, 10), "flux bias")


class SimulatedDriveAWG(_SimulatedInstrument):
    """Qubit drive: carrier frequency, amplitude, pulse length, delays and the sequence.

    `pulse_sequence` holds the sequence as data; `sequence` (a library name) and `herald`
    are views of it, kept because they are what the calibrations set.
    """

    role = "drive"

    def _add_settings(self, channel):
        _setting(channel, "frequency", "Hz", 1e9, Numbers(1e6, 20e9), "drive frequency")
        _setting(channel, "amplitude", "V", 0.0, Numbers(0, 2), "drive amplitude")
        _setting(channel, "duration", "s", 100e-9, Numbers(0, 1e-3), "pulse duration")
        _setting(channel, "delay", "s", 0.0, Numbers(0, 1e-2), "sequence delay")
        add_sequence_parameters(channel)


class SimulatedDigitiser(_SimulatedInstrument):
    """Readout tone + digitiser: averaged or single-shot IQ over a hardware sweep."""

    role = "readout"

    def __init__(self, name: str, device: str | Path | SimulatedDevice | None = None, **kwargs):
        self._faults: dict[str, list[str]] = {}
        super().__init__(name, device, **kwargs)

    def _add_settings(self, channel):
        values_vals, length = sweep_values_validator(channel)
        _setting(channel, "frequency", "Hz", 7e9, Numbers(1e9, 20e9), "readout frequency")
        _setting(channel, "amplitude", "V", 0.05, Numbers(0, 2), "readout amplitude")
        _setting(channel, "integration_time", "s", 2e-6, Numbers(1e-8, 1e-3), "integration time")
        _setting(channel, "shots", None, 1000, Ints(1, 10_000_000), "shots")
        _setting(channel, "sweep_parameter", None, "none", Enum(*SWEEPABLE), "swept setting")
        channel.add_parameter(
            "sweep_values",
            unit="",
            label="sweep values",
            get_cmd=None,
            set_cmd=None,
            initial_value=np.zeros(1),
            vals=values_vals,
        )
        channel.add_parameter(
            "shot_index",
            unit="",
            label="shot",
            vals=Arrays(shape=(channel.shots,)),
            get_cmd=lambda ch=channel: np.arange(ch.shots()),
            snapshot_value=False,  # 0 … shots−1: 0.1 MB of every snapshot's station JSON
        )
        qubit = channel.short_name
        channel.add_parameter(
            "device_time",
            unit="s",
            label="device time used",
            docstring="Seconds the acquisitions of this qubit held the device, cumulative "
            "(shots × repetitions × repetition time): what calibration costs the fridge.",
            get_cmd=lambda: self.lab.device_seconds_by_qubit.get(qubit, 0.0),
        )
        channel.add_parameter(
            "iq",
            parameter_class=ParameterWithSetpoints,
            unit="V",
            label="averaged IQ",
            setpoints=(channel.sweep_values,),
            vals=Arrays(shape=(length,), valid_types=(np.complexfloating,)),
            get_cmd=self._acquirer(qubit, single_shot=False),
        )
        channel.add_parameter(
            "iq_shots",
            parameter_class=ParameterWithSetpoints,
            unit="V",
            label="single-shot IQ",
            setpoints=(channel.sweep_values, channel.shot_index),
            vals=Arrays(shape=(length, channel.shots), valid_types=(np.complexfloating,)),
            get_cmd=self._acquirer(qubit, single_shot=True),
        )

    def _acquirer(self, qubit: str, single_shot: bool) -> Callable[[], np.ndarray]:
        def acquire() -> np.ndarray:
            channel = self.submodules[qubit]
            sweep = channel.sweep_parameter()
            values = np.asarray(channel.sweep_values(), float)
            fault = self._next_fault(qubit)
            if fault == "timeout":
                raise InstrumentFault(f"{self.name}.{qubit}: acquisition timed out (injected)")
            data = self.lab.acquire(qubit, sweep, values, single_shot)
            if sweep == "none":
                data = np.repeat(np.asarray(data)[None], len(values), axis=0)
            return _corrupt(data, fault, self.lab.rng(qubit)) if fault else data

        return acquire

    def inject_fault(self, kind: str, qubit: str | None = None, count: int = 1) -> None:
        """Make the next `count` acquisitions of a qubit (default: all) fail as `kind`."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        for name in [qubit] if qubit else self.lab.device.qubits:
            self._faults.setdefault(name, []).extend([kind] * count)

    def _next_fault(self, qubit: str) -> str | None:
        queue = self._faults.get(qubit)
        return queue.pop(0) if queue else None


def _corrupt(data: np.ndarray, fault: str, rng: np.random.Generator) -> np.ndarray:
    """A glitched trace (a burst of large spikes) or a trace with NaN gaps."""
    data = np.array(data, dtype=complex)
    flat = data.reshape(-1)
    count = max(1, flat.size // 8)
    where = rng.choice(flat.size, count, replace=False)
    if fault == "nan":
        flat[where] = np.nan
    else:
        scale = np.nanmax(np.abs(flat)) if flat.size else 1.0
        flat[where] += 20 * scale * (rng.standard_normal(count) + 1j * rng.standard_normal(count))
    return data
