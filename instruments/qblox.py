"""The hardware contract over Qblox's own QCoDeS driver (`qblox-instruments`, extra `qblox`).

Three thin instruments, `QbloxFlux`, `QbloxDrive` and `QbloxReadout`, give the contract's
per-qubit channels on a Qblox Cluster the station YAML names (`instruments/qblox_station.yaml`):
the flux bias is a QCM output offset, the drive a QCM sequencer (baseband NCO: a fluxonium's
sub-GHz transition needs no mixer), the readout a QRM-RF sequencer (LO + NCO) with binned
integration. Every acquisition compiles the sweep into Q1ASM (`qblox_program`), uploads it
through the driver, arms and starts both sequencers and reads the bins back. Ranges come from
the driver's own validators (output offset, NCO, LO, integration length) and the full-scale
volts the lab states for each output.

With a dummy Cluster (`dummy_cfg` in the YAML) the driver has no signal to acquire; `simulate`
then names a fluxcal device file whose physics turns what was compiled (biases read back from
the driver, NCO and LO frequencies, gains, timeline) into the bins the dummy returns.

Not implemented, refused with a one-line error: heralding (needs a herald acquisition and
post-selection with a calibrated threshold) and device-time accounting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from qcodes.instrument import Instrument, InstrumentChannel
from qcodes.parameters import ParameterWithSetpoints
from qcodes.validators import Arrays, Enum, Ints, Numbers

from fluxcal.instruments.contract import SWEEPABLE, ContractError
from fluxcal.instruments.contract_parameters import add_sequence_parameters, sweep_values_validator
from fluxcal.instruments.pulses import ResolvedPulse, resolve, trailing_wait
from fluxcal.instruments.qblox_program import (
    CHUNK_POINTS,
    PointTimeline,
    drive_program,
    gaussian_samples,
    ns,
    readout_program,
)

#: Bins one QRM sequencer holds.
MAX_BINS = 131_072
#: Widest span of readout tones one LO setting serves (the NCO reaches ±500 MHz).
LO_SEGMENT = 800e6
#: Minutes to wait for a sequencer to finish and its bins to arrive.
TIMEOUT_MINUTES = 1.0


def _cluster(name: str) -> Any:
    try:
        return Instrument.find_instrument(name)
    except KeyError:
        raise ContractError(f"no Qblox cluster instrument named {name!r} in the station") from None


@dataclass(frozen=True)
class Port:
    """Where a qubit's line is: module slot, sequencer and output of the cluster."""

    slot: int
    output: int = 0
    sequencer: int = 0


def _ports(wiring: Mapping[str, Mapping[str, int]]) -> dict[str, Port]:
    """Ports from the YAML wiring (its numbers are YAML scalar types: made plain ints)."""
    return {
        str(qubit): Port(**{key: int(value) for key, value in port.items()})
        for qubit, port in wiring.items()
    }


class _QbloxRole(Instrument):
    """An instrument of the contract whose channels are ports of one Qblox cluster."""

    def __init__(self, name: str, cluster: str, wiring: Mapping[str, Mapping[str, int]], **kwargs):
        super().__init__(name, **kwargs)
        self.cluster = _cluster(cluster)
        self.ports = _ports(wiring)
        for qubit, port in self.ports.items():
            channel = InstrumentChannel(self, qubit)
            self._add_settings(channel, port)
            self.add_submodule(qubit, channel)

    def get_idn(self) -> dict[str, str | None]:
        """The cluster's identity (what the snapshot records), with this adapter's role."""
        idn = self.cluster.get_idn()
        return {
            "vendor": str(idn.get("manufacturer", "qblox")),
            "model": f"{idn.get('model')} via fluxcal {type(self).__name__}",
            "serial": str(idn.get("serial_number")),
            "firmware": str(idn.get("firmware", {}).get("driver", {}).get("version")),
        }

    def module(self, port: Port) -> Any:
        return getattr(self.cluster, f"module{port.slot}")

    def _add_settings(self, channel: InstrumentChannel, port: Port) -> None:
        raise NotImplementedError


def _setting(channel, name, unit, initial, vals) -> None:
    channel.add_parameter(
        name, unit=unit, initial_value=initial, vals=vals, get_cmd=None, set_cmd=None
    )


class QbloxFlux(_QbloxRole):
    """Flux bias = the DC offset of a QCM output (the driver's `outN_offset`, its range)."""

    def _add_settings(self, channel, port):
        offset = self.module(port).parameters[f"out{port.output}_offset"]
        channel.add_parameter(
            "voltage",
            unit="V",
            label="flux bias",
            vals=offset.vals,
            get_cmd=offset.get,
            set_cmd=offset.set,
        )


class QbloxDrive(_QbloxRole):
    """Qubit drive on a QCM sequencer: carrier = NCO (baseband), pulses as data."""

    def __init__(self, name: str, cluster: str, wiring, full_scale: float = 1.0, **kwargs):
        self.full_scale = float(full_scale)  # V at the output for gain 1
        super().__init__(name, cluster, wiring, **kwargs)

    def _add_settings(self, channel, port):
        sequencer = getattr(self.module(port), f"sequencer{port.sequencer}")
        nco = sequencer.nco_freq.vals
        _setting(channel, "frequency", "Hz", 100e6, Numbers(0.0, nco.max_value))
        _setting(channel, "amplitude", "V", 0.0, Numbers(0.0, self.full_scale))
        _setting(channel, "duration", "s", 100e-9, Numbers(4e-9, 16e-6))
        _setting(channel, "delay", "s", 0.0, Numbers(0.0, 10e-3))
        add_sequence_parameters(channel)


class QbloxReadout(_QbloxRole):
    """Readout on a QRM-RF sequencer: tone = LO + NCO, binned integration, one sweep per
    acquisition compiled for both sequencers of the qubit."""

    def __init__(
        self,
        name: str,
        cluster: str,
        wiring,
        drive: str = "drive",
        flux: str = "flux",
        full_scale: float = 1.0,
        repetition_time: float = 500e-6,
        simulate: bool | str = False,
        **kwargs,
    ):
        self.full_scale = float(full_scale)
        self.repetition_time = float(repetition_time)
        self._roles = {"drive": drive, "flux": flux}
        self._simulation = None
        super().__init__(name, cluster, wiring, **kwargs)
        if simulate:
            self._simulation = _DummySignals(None if simulate is True else simulate)

    def _add_settings(self, channel, port):
        module = self.module(port)
        sequencer = getattr(module, f"sequencer{port.sequencer}")
        lo = module.parameters[f"out{port.output}_in{port.output}_lo_freq"].vals
        length = sequencer.integration_length_acq.vals
        _setting(channel, "frequency", "Hz", 7e9, Numbers(lo.min_value, lo.max_value))
        _setting(channel, "amplitude", "V", 0.05, Numbers(0.0, self.full_scale))
        integration = Numbers(length.min_value * 1e-9, length.max_value * 1e-9)
        _setting(channel, "integration_time", "s", 2e-6, integration)
        _setting(channel, "shots", None, 1000, Ints(1, 2**24))
        _setting(channel, "sweep_parameter", None, "none", Enum(*SWEEPABLE))
        values_vals, length_of = sweep_values_validator(channel)
        channel.add_parameter(
            "sweep_values", get_cmd=None, set_cmd=None, initial_value=np.zeros(1), vals=values_vals
        )
        channel.add_parameter(
            "shot_index",
            vals=Arrays(shape=(channel.shots,)),
            get_cmd=lambda ch=channel: np.arange(ch.shots()),
            snapshot_value=False,  # 0 … shots−1: no information, 0.1 MB of station JSON
        )
        qubit = channel.short_name
        for name, single, shape in (
            ("iq", False, (length_of,)),
            ("iq_shots", True, (length_of, channel.shots)),
        ):
            setpoints = (channel.sweep_values,) + ((channel.shot_index,) if single else ())
            channel.add_parameter(
                name,
                parameter_class=ParameterWithSetpoints,
                unit="V",
                setpoints=setpoints,
                vals=Arrays(shape=shape, valid_types=(np.complexfloating,)),
                get_cmd=lambda q=qubit, s=single: self.acquire(q, s),
            )

    # ------------------------------------------------------------------ one acquisition
    def _channel(self, role: str, qubit: str) -> Any:
        return Instrument.find_instrument(self._roles[role]).submodules[qubit]

    def acquire(self, qubit: str, single: bool) -> np.ndarray:
        """Compile, upload, run and read back one sweep (in chunks of equal integration)."""
        channel = self.submodules[qubit]
        sweep = channel.sweep_parameter()
        values = np.asarray(channel.sweep_values(), float)
        drive = self._channel("drive", qubit)
        if drive.herald():
            raise ContractError(
                "the Qblox adapter does not implement heralding yet; set herald: false"
            )
        settings = self._settings(qubit, sweep, values)
        shots = int(channel.shots())
        if single and shots * min(CHUNK_POINTS, values.size) > MAX_BINS:
            raise ContractError(f"{shots} single shots × points exceed {MAX_BINS} bins")
        result = np.empty((values.size, shots) if single else values.size, complex)
        flux = self._channel("flux", qubit).voltage
        bias = flux()
        try:
            for chunk in _chunks(
                settings["readout_duration"],
                settings["flux_voltage"],
                settings["readout_frequency"],
            ):
                flux(float(settings["flux_voltage"][chunk][0]))  # a DC offset, set per program
                result[chunk] = self._run(qubit, settings, chunk, shots, single)
        finally:
            flux(bias)
        return result

    def _settings(self, qubit: str, sweep: str, values: np.ndarray) -> dict[str, np.ndarray]:
        """Every sweepable setting per point: the channels' values, the swept one replaced."""
        drive, flux = self._channel("drive", qubit), self._channel("flux", qubit)
        readout = self.submodules[qubit]
        current = {
            "flux_voltage": flux.voltage(),
            "drive_frequency": drive.frequency(),
            "drive_amplitude": drive.amplitude(),
            "drive_duration": drive.duration(),
            "delay": drive.delay(),
            "readout_frequency": readout.frequency(),
            "readout_amplitude": readout.amplitude(),
            "readout_duration": readout.integration_time(),
        }
        if sweep != "none":
            current[sweep] = values
        return {
            key: np.broadcast_to(np.asarray(v, float), values.shape) for key, v in current.items()
        }

    def _run(
        self,
        qubit: str,
        settings: dict[str, np.ndarray],
        chunk: np.ndarray,
        shots: int,
        single: bool,
    ) -> np.ndarray:
        drive_channel = self._channel("drive", qubit)
        sequence = drive_channel.pulse_sequence()
        drive_port = Instrument.find_instrument(self._roles["drive"]).ports[qubit]
        port = self.ports[qubit]
        part = {key: value[chunk] for key, value in settings.items()}
        lo = float(np.mean(part["readout_frequency"]))
        drive_scale = Instrument.find_instrument(self._roles["drive"]).full_scale
        pulses = resolve(sequence, part["drive_amplitude"], part["drive_duration"], part["delay"])
        count = part["delay"].size
        trailing = np.broadcast_to(trailing_wait(sequence, part["delay"]), (count,))
        points = [
            PointTimeline(
                drive_nco=float(part["drive_frequency"][i]),
                pulses=tuple(_at(p, i, drive_scale) for p in pulses),
                trailing_ns=ns(trailing[i]),
                readout_nco=float(part["readout_frequency"][i] - lo),
                readout_gain=float(part["readout_amplitude"][i]) / self.full_scale,
                integration_ns=ns(part["readout_duration"][i]),
            )
            for i in range(count)
        ]
        rest = ns(self.repetition_time)
        durations = sorted(
            {max(ns(p.duration), 4) for q in points for p in q.pulses if p.shape == "gaussian"}
        )
        waveforms = {length: index for index, length in enumerate(durations)}
        readout_module = self.module(port)
        readout_module.parameters[f"out{port.output}_in{port.output}_lo_freq"](lo)
        readout_sequencer = getattr(readout_module, f"sequencer{port.sequencer}")
        readout_sequencer.integration_length_acq(points[0].integration_ns)
        drive_module = getattr(self.cluster, f"module{drive_port.slot}")
        drive_sequencer = getattr(drive_module, f"sequencer{drive_port.sequencer}")
        bins = len(points) * (shots if single else 1)
        drive_sequencer.sequence(
            {
                "waveforms": {
                    f"gaussian_{i}": {"data": gaussian_samples(length), "index": i}
                    for length, i in waveforms.items()
                },
                "weights": {},
                "acquisitions": {},
                "program": drive_program(points, shots, rest, waveforms),
            }
        )
        readout_sequencer.sequence(
            {
                "waveforms": {},
                "weights": {},
                "acquisitions": {"iq": {"num_bins": bins, "index": 0}},
                "program": readout_program(points, shots, rest, single),
            }
        )
        if self._simulation is not None:
            self._simulation.inject(self, qubit, points, lo, part, sequence, shots, single)
        for slot, seq in ((drive_port.slot, drive_port.sequencer), (port.slot, port.sequencer)):
            self.cluster.arm_sequencer(slot, seq)
        for slot, seq in ((drive_port.slot, drive_port.sequencer), (port.slot, port.sequencer)):
            self.cluster.start_sequencer(slot, seq)
        self.cluster.get_acquisition_status(port.slot, port.sequencer, timeout=TIMEOUT_MINUTES)
        data = self.cluster.get_acquisitions(port.slot, port.sequencer)["iq"]["acquisition"]
        integration = data["bins"]["integration"]
        length = points[0].integration_ns
        iq = (np.asarray(integration["path0"]) + 1j * np.asarray(integration["path1"])) / length
        volts = iq * self.full_scale
        return volts.reshape(shots, len(points)).T if single else volts


def _at(pulse: ResolvedPulse, index: int, full_scale: float) -> ResolvedPulse:
    """One point's pulse, its amplitude as a fraction of the output's full scale."""

    def pick(value) -> float:
        array = np.asarray(value, float)
        return float(array if array.ndim == 0 else array[index])

    return ResolvedPulse(
        pulse.shape,
        pick(pulse.amplitude) / full_scale,
        pick(pulse.duration),
        pulse.phase,
        pick(pulse.wait_before),
    )


def _chunks(integration: np.ndarray, bias: np.ndarray, frequency: np.ndarray) -> list[np.ndarray]:
    """Points run by one program: equal integration time (a static acquisition length), equal
    flux bias (a DC offset), readout tones within one LO setting's NCO reach, at most
    CHUNK_POINTS of them."""
    segment = np.floor((frequency - frequency.min()) / LO_SEGMENT)
    keys = np.stack([integration, bias, segment], axis=1)
    chunks = []
    for key in np.unique(keys, axis=0):
        where = np.flatnonzero(np.all(keys == key, axis=1))
        chunks += [where[i : i + CHUNK_POINTS] for i in range(0, where.size, CHUNK_POINTS)]
    return chunks


class _DummySignals:
    """Acquisition data for a dummy Cluster from fluxcal's physics, given what was compiled."""

    def __init__(self, device: str | None):
        from fluxcal.instruments.device import SimulatedDevice

        self.device = SimulatedDevice.from_yaml(device)
        self._count = 0

    def inject(self, readout: QbloxReadout, qubit, points, lo, part, sequence, shots, single):
        from qblox_instruments.ieee488_2 import DummyBinnedAcquisitionData

        from fluxcal.instruments.signals import (
            PulseSettings,
            ReadoutSettings,
            averaged_iq,
            single_shot_iq,
        )

        self._count += 1
        physics = self.device.physics(qubit)
        rng = np.random.default_rng([physics.config.seed, 4217, self._count])
        flux_port = Instrument.find_instrument(readout._roles["flux"]).ports[qubit]
        flux_module = getattr(readout.cluster, f"module{flux_port.slot}")
        bias = float(flux_module.parameters[f"out{flux_port.output}_offset"]())
        readout_frequency = lo + np.array([p.readout_nco for p in points])
        pulse = PulseSettings(
            sequence,
            np.array([p.drive_nco for p in points]),
            part["drive_amplitude"],
            part["drive_duration"],
            part["delay"],
        )
        settings = ReadoutSettings(
            readout_frequency,
            np.array([p.readout_gain for p in points]) * readout.full_scale,
            np.array([p.integration_ns for p in points]) * 1e-9,
            shots,
        )
        measure = single_shot_iq if single else averaged_iq
        iq = measure(physics, bias, pulse, settings, rng)
        bins = (iq.T.reshape(-1) if single else iq) / readout.full_scale * points[0].integration_ns
        port = readout.ports[qubit]
        readout.cluster.set_dummy_binned_acquisition_data(
            port.slot,
            port.sequencer,
            "iq",
            [
                DummyBinnedAcquisitionData(
                    data=(float(z.real), float(z.imag)), thres=0, avg_cnt=shots
                )
                for z in bins
            ],
        )
