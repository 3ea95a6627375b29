"""The hardware contract over Qblox's own QCoDeS driver (`qblox-instruments`, extra `qblox`).

Three thin instruments, `QbloxFlux`, `QbloxDrive` and `QbloxReadout`, give the contract's
per-qubit channels on a Qblox Cluster the station YAML names (`instruments/qblox_station.yaml`):
the flux bias is a QCM output offset, the drive a QCM sequencer (baseband NCO: a fluxonium's
sub-GHz f01 needs no mixer) and, optionally, a QCM-RF sequencer (LO + NCO) for the GHz lines
(plasmon transitions, f01 near integer flux), the readout a QRM-RF sequencer (LO + NCO) with
binned integration. Every acquisition compiles the sweep into Q1ASM (`qblox_program`),
uploads it through the driver, arms and starts the drive and readout sequencers and reads the
bins back; a sweep whose tones need different drive paths or LO settings runs in parts, one
program each. Ranges come from the driver's own validators (output offset, NCO, LO,
integration length) and the full-scale volts the lab states for each output.

With a dummy Cluster (`dummy_cfg` in the YAML) the driver has no signal to acquire; `simulate`
then names a fluxcal device file whose physics turns what was compiled (biases and LOs read
back from the driver, NCO frequencies, gains, timeline) into the bins the dummy returns.

Heralding: each shot integrates a herald (acquisition 0) before the drive and the measurement
(acquisition 1) after it, both as single-shot bins; shots whose herald read ground are kept
(`herald_ground`, a threshold between the two blobs the herald shots themselves show).
`device_time` adds up the compiled timelines (shots × every point's period) of the programs run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from qcodes.instrument import Instrument, InstrumentChannel
from qcodes.parameters import ParameterWithSetpoints
from qcodes.validators import Arrays, Enum, Ints, Numbers, Validator

from fluxcal.instruments.contract import SWEEPABLE, Bands, ContractError, setting_range
from fluxcal.instruments.contract_parameters import add_sequence_parameters, sweep_values_validator
from fluxcal.instruments.pulses import ResolvedPulse, resolve, trailing_wait
from fluxcal.instruments.qblox_program import (
    CHUNK_POINTS,
    PointTimeline,
    drive_program,
    gaussian_samples,
    ns,
    period_ns,
    readout_program,
)

#: Bins one QRM sequencer holds.
MAX_BINS = 131_072
#: Widest span of tones one LO setting serves (readout, upconverted drive): the LO sits in
#: the middle, the NCO (±500 MHz) covers ±400 MHz of it with margin.
LO_SEGMENT = 800e6
#: Minutes to wait for a sequencer to finish and its bins to arrive.
TIMEOUT_MINUTES = 1.0
#: Fraction of shots a herald is first assumed to keep (a fluxonium is ~30–40 % excited).
HERALD_ACCEPTANCE = 0.5
#: Runs of a chunk to collect the kept single shots every point needs.
HERALD_RETRIES = 6
#: Herald blobs closer than this (in their width) are not told apart: every shot is kept.
HERALD_MIN_SEPARATION = 1.5
MIXTURE_ITERATIONS = 40


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


@dataclass(frozen=True)
class DrivePath:
    """Where one program's drive tones go: a sequencer, its full scale and LO (0: baseband)."""

    port: Port
    full_scale: float
    lo: float = 0.0


class QbloxDrive(_QbloxRole):
    """Qubit drive: a QCM sequencer (baseband NCO) and, when `rf_wiring` names one, a
    QCM-RF sequencer (LO + NCO) for what the baseband NCO cannot reach.

    A fluxonium's f01 near half flux is sub-GHz (baseband); its plasmon lines and f01 near
    integer flux are GHz (upconverted). Per program every tone goes through one path: those
    up to the baseband NCO's reach through the QCM, the others through the QCM-RF with one LO
    setting per `LO_SEGMENT` of them (`path`). The channel's `frequency` validator is the
    union of both paths' bands, read from the driver's NCO and LO validators.
    """

    def __init__(
        self,
        name: str,
        cluster: str,
        wiring,
        full_scale: float = 1.0,
        rf_wiring=None,
        rf_full_scale: float | None = None,
        **kwargs,
    ):
        self.full_scale = float(full_scale)  # V at the QCM output for gain 1
        # V at the QCM-RF output for gain 1 (at its attenuation): the lab's calibration
        self.rf_full_scale = float(full_scale if rf_full_scale is None else rf_full_scale)
        self.rf_ports = _ports(rf_wiring or {})
        super().__init__(name, cluster, wiring, **kwargs)

    def _add_settings(self, channel, port):
        sequencer = self._sequencer(port)
        sequencer.mod_en_awg(True)  # the NCO modulates the AWG paths
        reach = sequencer.nco_freq.vals.max_value
        rf = self.rf_ports.get(channel.short_name)
        frequency: Validator = Numbers(0.0, reach)
        scale = self.full_scale
        if rf is not None:
            low, high = self._rf_band(rf)
            frequency = Bands((0.0, reach), (low, high))
            scale = min(scale, self.rf_full_scale)
        _setting(channel, "frequency", "Hz", 100e6, frequency)
        _setting(channel, "amplitude", "V", 0.0, Numbers(0.0, scale))
        _setting(channel, "duration", "s", 100e-9, Numbers(4e-9, 16e-6))
        _setting(channel, "delay", "s", 0.0, Numbers(0.0, 10e-3))
        add_sequence_parameters(channel)

    def _sequencer(self, port: Port) -> Any:
        return getattr(self.module(port), f"sequencer{port.sequencer}")

    def _rf_band(self, port: Port) -> tuple[float, float]:
        """The QCM-RF output's band, its LO's range (the upconverter's, 2 … 18 GHz: the NCO
        offsets tones within it, not beyond), its sequencer set up to play it: I/Q to the
        upconverter, the NCO modulating, the output switch (a marker) open."""
        module = self.module(port)
        if not (module.is_rf_type and module.is_qcm_type):
            raise ContractError(f"drive rf_wiring: slot {port.slot} is not a QCM-RF module")
        sequencer = self._sequencer(port)
        sequencer.parameters[f"connect_out{port.output}"]("IQ")
        sequencer.mod_en_awg(True)
        sequencer.marker_ovr_en(True)
        sequencer.marker_ovr_value(1 << port.output)  # QCM-RF: marker n switches output n
        module.parameters[f"out{port.output}_lo_en"](True)
        lo = setting_range(module.parameters[f"out{port.output}_lo_freq"])
        return lo.low, lo.high

    def segments(self, qubit: str, frequency: np.ndarray) -> np.ndarray:
        """Per tone, the program part it is played in: −1 through the baseband QCM, else
        its `LO_SEGMENT` of the upconverted tones (one LO setting each)."""
        reach = self._sequencer(self.ports[qubit]).nco_freq.vals.max_value
        baseband = frequency <= reach
        if baseband.all():
            return np.full(frequency.shape, -1)
        lowest = frequency[~baseband].min()
        return np.where(baseband, -1, np.floor((frequency - lowest) / LO_SEGMENT)).astype(int)

    def path(self, qubit: str, frequency: np.ndarray) -> DrivePath:
        """The path one program's tones (one segment) take; the QCM-RF's LO set for them.
        Only the path used syncs (`wait_sync`) with the readout."""
        port, rf = self.ports[qubit], self.rf_ports.get(qubit)
        reach = self._sequencer(port).nco_freq.vals.max_value
        if rf is None or np.all(frequency <= reach):
            used, other, path = port, rf, DrivePath(port, self.full_scale)
        else:
            module = self.module(rf)
            lo = lo_plan(frequency, self._sequencer(rf).nco_freq.vals.max_value)
            module.parameters[f"out{rf.output}_lo_freq"](lo)
            used, other, path = rf, port, DrivePath(rf, self.rf_full_scale, lo)
        self._sequencer(used).sync_en(True)
        if other is not None:
            self._sequencer(other).sync_en(False)
        return path


def lo_plan(frequency: np.ndarray, reach: float) -> float:
    """The LO setting for tones of one segment: the middle of their span, so that every
    tone is LO + an NCO offset the sequencer reaches (tones within the LO's range, as the
    channels' validators keep them, put it within that range too)."""
    low, high = float(np.min(frequency)), float(np.max(frequency))
    if high - low > 2 * reach:
        raise ContractError(
            f"tones {low:.6g}…{high:.6g} Hz need more than one LO setting (NCO ±{reach:.6g} Hz)"
        )
    return 0.5 * (low + high)


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
        herald_ring_down: float = 1e-6,
        simulate: bool | str = False,
        **kwargs,
    ):
        self.full_scale = float(full_scale)
        self.repetition_time = float(repetition_time)  # rest after each shot's readout
        self.herald_ring_down = float(herald_ring_down)  # wait after the herald readout
        self._device_seconds: dict[str, float] = {}
        self._roles = {"drive": drive, "flux": flux}
        self._simulation = None
        super().__init__(name, cluster, wiring, **kwargs)
        if simulate:
            self._simulation = _DummySignals(None if simulate is True else simulate)

    @property
    def simulated_device(self) -> Any:
        """The SimulatedDevice feeding a dummy's bins (None on hardware). Its clock is the
        wall clock, so the chip drifts as a real one does; set `.time` to freeze it."""
        return None if self._simulation is None else self._simulation.device

    def _add_settings(self, channel, port):
        module = self.module(port)
        sequencer = getattr(module, f"sequencer{port.sequencer}")
        sequencer.mod_en_awg(True)  # the NCO modulates the tone ...
        sequencer.demod_en_acq(True)  # ... and demodulates the integration
        sequencer.marker_ovr_en(True)
        sequencer.marker_ovr_value(0b11)  # QRM-RF: markers 0, 1 switch output and input
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
        channel.add_parameter(
            "device_time",
            unit="s",
            label="device time used",
            docstring="Seconds the compiled programs of this qubit ran, cumulative "
            "(shots × the timeline of every point): what calibration costs the fridge.",
            get_cmd=lambda: self._device_seconds.get(qubit, 0.0),
        )
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
        """Compile, upload, run and read back one sweep (in chunks of equal integration).

        Heralded sequences acquire a herald and a measurement per shot (single-shot bins of
        both) and keep the shots whose herald read ground (`herald_ground`): averaged IQ is
        the mean of the kept shots, single shots are the first `shots` kept ones (the chunk
        is run again until every point has them). Shots that need more bins than a
        sequencer holds are taken in several runs of the same program."""
        channel = self.submodules[qubit]
        sweep = channel.sweep_parameter()
        values = np.asarray(channel.sweep_values(), float)
        herald = bool(self._channel("drive", qubit).pulse_sequence().herald)
        settings = self._settings(qubit, sweep, values)
        shots = int(channel.shots())
        binned = herald or single  # a bin per shot (and a second for the herald)
        acquisitions = 2 if herald else 1
        run_shots = min(shots, MAX_BINS // acquisitions) if binned else shots
        if herald and single:
            run_shots = min(_raw_shots(shots, HERALD_ACCEPTANCE), MAX_BINS // acquisitions)
        per_point = acquisitions * (run_shots if binned else 1)
        result = np.empty((values.size, shots) if single else values.size, complex)
        flux = self._channel("flux", qubit).voltage
        bias = flux()
        drive_segments = Instrument.find_instrument(self._roles["drive"]).segments(
            qubit, settings["drive_frequency"]
        )
        try:
            for chunk in _chunks(
                settings["readout_duration"],
                settings["flux_voltage"],
                settings["readout_frequency"],
                drive_segments,
                min(CHUNK_POINTS, MAX_BINS // per_point),
            ):
                flux(float(settings["flux_voltage"][chunk][0]))  # a DC offset, set per program
                if herald and single:
                    result[chunk] = self._heralded_shots(qubit, settings, chunk, shots, run_shots)
                elif herald:
                    result[chunk] = self._heralded_mean(qubit, settings, chunk, shots, run_shots)
                elif single:
                    result[chunk] = np.concatenate(
                        [
                            self._run(qubit, settings, chunk, n, True)[1]
                            for n in _batches(shots, run_shots)
                        ],
                        axis=1,
                    )
                else:
                    result[chunk] = self._run(qubit, settings, chunk, shots, False)[1]
        finally:
            flux(bias)
        return result

    def _heralded_mean(self, qubit, settings, chunk, shots: int, run_shots: int) -> np.ndarray:
        """Mean IQ of the shots whose herald read ground, per point of a chunk."""
        total = np.zeros(chunk.size, complex)
        kept = np.zeros(chunk.size, int)
        everything = np.zeros(chunk.size, complex)
        for n in _batches(shots, run_shots):
            heralds, iq = self._run(qubit, settings, chunk, n, True, herald=True)
            keep = herald_ground(heralds, _readout_keys(settings, chunk))
            total += (iq * keep).sum(axis=1)
            kept += keep.sum(axis=1)
            everything += iq.sum(axis=1)
        return np.where(kept > 0, total / np.maximum(kept, 1), everything / shots)

    def _heralded_shots(self, qubit, settings, chunk, shots: int, raw: int) -> np.ndarray:
        """`shots` kept single shots per point of a chunk, running it until each has them."""
        collected: list[list[np.ndarray]] = [[] for _ in chunk]
        have = np.zeros(chunk.size, int)
        limit = MAX_BINS // (2 * chunk.size)
        runs = HERALD_RETRIES + int(np.ceil(_raw_shots(shots, HERALD_ACCEPTANCE) / limit))
        for _ in range(runs):
            heralds, iq = self._run(qubit, settings, chunk, raw, True, herald=True)
            keep = herald_ground(heralds, _readout_keys(settings, chunk))
            for i in range(chunk.size):
                collected[i].append(iq[i, keep[i]])
            have += keep.sum(axis=1)
            if have.min() >= shots:
                return np.stack([np.concatenate(c)[:shots] for c in collected])
            acceptance = max(float(keep.mean(axis=1).min()), 0.05)
            raw = min(_raw_shots(shots - int(have.min()), acceptance), limit)
        raise ContractError(f"the herald kept {int(have.min())} of {shots} shots after {runs} runs")

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
            role, name = SWEEPABLE[sweep]
            channel = readout if role == "readout" else self._channel(role, qubit)
            _check_sweep(channel.parameters[name], f"{role}.{qubit}.{name}", sweep, values)
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
        herald: bool = False,
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """One program over the chunk's points: (herald shots or None, measurement), the
        shots as (points, shots) when `single` or `herald`."""
        drive_channel = self._channel("drive", qubit)
        sequence = drive_channel.pulse_sequence()
        port = self.ports[qubit]
        part = {key: value[chunk] for key, value in settings.items()}
        readout_module = self.module(port)
        lo_parameter = readout_module.parameters[f"out{port.output}_in{port.output}_lo_freq"]
        reach = getattr(readout_module, f"sequencer{port.sequencer}").nco_freq.vals.max_value
        lo = lo_plan(part["readout_frequency"], reach)
        drive = Instrument.find_instrument(self._roles["drive"])
        path = drive.path(qubit, part["drive_frequency"])
        drive_port = path.port
        pulses = resolve(sequence, part["drive_amplitude"], part["drive_duration"], part["delay"])
        count = part["delay"].size
        trailing = np.broadcast_to(trailing_wait(sequence, part["delay"]), (count,))
        # a measurement without pulses, herald or single shots is continuous-wave: the qubit
        # needs no time to return to equilibrium between shots
        cw = not (sequence.pulses or herald or single)
        rest = 0 if cw else ns(self.repetition_time)
        points = [
            PointTimeline(
                drive_nco=float(part["drive_frequency"][i] - path.lo),
                pulses=tuple(_at(p, i, path.full_scale) for p in pulses),
                trailing_ns=ns(trailing[i]),
                readout_nco=float(part["readout_frequency"][i] - lo),
                readout_gain=float(part["readout_amplitude"][i]) / self.full_scale,
                integration_ns=ns(part["readout_duration"][i]),
                herald=herald,
                ring_down_ns=ns(self.herald_ring_down) if herald else 0,
                rest_ns=rest,
            )
            for i in range(count)
        ]
        durations = sorted(
            {max(ns(p.duration), 4) for q in points for p in q.pulses if p.shape == "gaussian"}
        )
        waveforms = {length: index for index, length in enumerate(durations)}
        lo_parameter(lo)
        readout_sequencer = getattr(readout_module, f"sequencer{port.sequencer}")
        readout_sequencer.sync_en(True)
        readout_sequencer.integration_length_acq(points[0].integration_ns)
        drive_module = getattr(self.cluster, f"module{drive_port.slot}")
        drive_sequencer = getattr(drive_module, f"sequencer{drive_port.sequencer}")
        bins = len(points) * (shots if single or herald else 1)
        acquisitions = {"iq": {"num_bins": bins, "index": 1 if herald else 0}}
        if herald:
            acquisitions["herald"] = {"num_bins": bins, "index": 0}
        drive_sequencer.sequence(
            {
                "waveforms": {
                    f"gaussian_{i}": {"data": gaussian_samples(length), "index": i}
                    for length, i in waveforms.items()
                },
                "weights": {},
                "acquisitions": {},
                "program": drive_program(points, shots, waveforms),
            }
        )
        readout_sequencer.sequence(
            {
                "waveforms": {},
                "weights": {},
                "acquisitions": acquisitions,
                "program": readout_program(points, shots, single),
            }
        )
        if self._simulation is not None:
            self._simulation.inject(
                self, qubit, points, path, sequence, part, shots, single or herald
            )
        for slot, seq in ((drive_port.slot, drive_port.sequencer), (port.slot, port.sequencer)):
            self.cluster.arm_sequencer(slot, seq)
        for slot, seq in ((drive_port.slot, drive_port.sequencer), (port.slot, port.sequencer)):
            self.cluster.start_sequencer(slot, seq)
        self.cluster.get_acquisition_status(port.slot, port.sequencer, timeout=TIMEOUT_MINUTES)
        self._device_seconds[qubit] = self._device_seconds.get(qubit, 0.0) + shots * 1e-9 * sum(
            period_ns(point) for point in points
        )
        data = self.cluster.get_acquisitions(port.slot, port.sequencer, as_numpy=True)
        length = points[0].integration_ns

        def volts(name: str) -> np.ndarray:
            integration = data[name]["acquisition"]["bins"]["integration"]
            iq = (np.asarray(integration["path0"]) + 1j * np.asarray(integration["path1"])) / length
            iq = iq * self.full_scale
            return iq.reshape(shots, len(points)).T if single or herald else iq

        return (volts("herald") if herald else None), volts("iq")


def _check_sweep(parameter: Any, where: str, sweep: str, values: np.ndarray) -> None:
    """Refuse, in one line and before anything is compiled, a sweep beyond the setting's
    range or (a drive of several bands) with values between its bands."""
    span = setting_range(parameter)
    if values.size and (values.min() < span.low or values.max() > span.high):
        raise ContractError(
            f"{sweep} swept over {values.min():.6g}…{values.max():.6g}, outside "
            f"{where}'s {span.low:.6g}…{span.high:.6g}"
        )
    bands = getattr(parameter.vals, "bands", ((span.low, span.high),))
    between = [v for v in values if not any(low <= v <= high for low, high in bands)]
    if between:
        raise ContractError(
            f"{sweep} swept over {values.min():.6g}…{values.max():.6g}: {len(between)} "
            f"values ({between[0]:.6g}…{between[-1]:.6g}) lie between {where}'s bands "
            f"{parameter.vals!r}"
        )


def _batches(shots: int, per_run: int) -> list[int]:
    """Shots per run when `shots` are taken `per_run` at a time."""
    return [min(per_run, shots - start) for start in range(0, shots, per_run)]


def _raw_shots(shots: int, acceptance: float) -> int:
    """Shots to run so that about `shots` pass a herald of this acceptance, with margin."""
    return int(np.ceil(shots / acceptance * 1.1)) + 8


def _readout_keys(settings: dict[str, np.ndarray], chunk: np.ndarray) -> np.ndarray:
    """Per point of a chunk, the readout settings its herald blobs depend on."""
    return np.stack(
        [
            settings[k][chunk]
            for k in ("readout_frequency", "readout_amplitude", "readout_duration")
        ],
        axis=1,
    )


def herald_ground(heralds: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
    """Which herald shots read ground: shape (points, shots) of bool.

    The herald measures the qubit in thermal equilibrium, so its shots form two blobs, the
    ground state's the heavier one. Points with equal readout settings (`keys`, one row per
    point) are pooled; along the blobs' principal axis a two-Gaussian mixture (equal widths)
    is fitted and shots on the ground side of the midpoint between the blobs are kept, as a
    threshold halfway between the 0 and 1 responses does. When the blobs are not resolved
    (readout not yet tuned), the herald cannot tell and every shot is kept.
    """
    heralds = np.asarray(heralds)
    keep = np.ones(heralds.shape, bool)
    if keys is None:
        keys = np.zeros((heralds.shape[0], 1))
    _, group = np.unique(keys, axis=0, return_inverse=True)
    for g in np.unique(group):
        rows = np.flatnonzero(group.reshape(-1) == g)
        keep[rows] = _ground_side(heralds[rows].reshape(-1)).reshape(rows.size, -1)
    return keep


def _ground_side(z: np.ndarray) -> np.ndarray:
    centred = z - z.mean()
    xy = np.stack([centred.real, centred.imag])
    _, vectors = np.linalg.eigh(xy @ xy.T)
    axis = vectors[0, 1] + 1j * vectors[1, 1]
    x = (centred * np.conj(axis)).real
    lo, hi = np.percentile(x, [20, 80])
    means = np.array([lo, hi])
    weights = np.array([0.5, 0.5])
    sigma = max(float(np.std(x)) / 2, 1e-30)
    for _ in range(MIXTURE_ITERATIONS):
        density = weights * np.exp(-0.5 * ((x[:, None] - means) / sigma) ** 2)
        responsibility = density / np.maximum(density.sum(axis=1, keepdims=True), 1e-300)
        weights = np.clip(responsibility.mean(axis=0), 1e-9, None)
        means = (responsibility * x[:, None]).sum(axis=0) / (weights * x.size)
        variance = (responsibility * (x[:, None] - means) ** 2).sum() / x.size
        sigma = max(float(np.sqrt(variance)), 1e-30)
    separation = abs(means[1] - means[0]) / sigma
    if separation < HERALD_MIN_SEPARATION or weights.min() < 0.01:
        return np.ones(z.shape, bool)
    ground = int(np.argmax(weights))
    midpoint = means.mean()
    return x < midpoint if means[ground] < midpoint else x > midpoint


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


def _chunks(
    integration: np.ndarray,
    bias: np.ndarray,
    frequency: np.ndarray,
    drive_segment: np.ndarray,
    size: int = CHUNK_POINTS,
) -> list[np.ndarray]:
    """Points run by one program: equal integration time (a static acquisition length), equal
    flux bias (a DC offset), readout tones within one LO setting's NCO reach, drive tones on
    one path and LO setting (`QbloxDrive.segments`), at most `size` of them (what the
    instruction memory and the bins hold)."""
    segment = np.floor((frequency - frequency.min()) / LO_SEGMENT)
    keys = np.stack([integration, bias, segment, drive_segment], axis=1)
    chunks = []
    for key in np.unique(keys, axis=0):
        where = np.flatnonzero(np.all(keys == key, axis=1))
        chunks += [where[i : i + size] for i in range(0, where.size, size)]
    return chunks


class _DummySignals:
    """Acquisition data for a dummy Cluster from fluxcal's physics, given what was compiled."""

    def __init__(self, device: str | None):
        from fluxcal.instruments.device import SimulatedDevice

        self.device = SimulatedDevice.from_yaml(device)
        self._count = 0

    def inject(self, readout: QbloxReadout, qubit, points, path, sequence, part, shots, single):
        """Bins for the program just uploaded, from what it plays: the bias, the LOs read
        back from the driver plus the compiled NCO frequencies, the compiled gains."""
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
        port = readout.ports[qubit]
        lo = readout.module(port).parameters[f"out{port.output}_in{port.output}_lo_freq"]()
        readout_frequency = float(lo) + np.array([p.readout_nco for p in points])
        drive_lo = 0.0
        if path.lo:
            drive_module = readout.module(path.port)
            drive_lo = float(drive_module.parameters[f"out{path.port.output}_lo_freq"]())
        pulse = PulseSettings(
            sequence,
            drive_lo + np.array([p.drive_nco for p in points]),
            _played_amplitude(points, sequence, path.full_scale, part["drive_amplitude"]),
            part["drive_duration"],
            part["delay"],
        )
        settings = ReadoutSettings(
            readout_frequency,
            np.array([p.readout_gain for p in points]) * readout.full_scale,
            np.array([p.integration_ns for p in points]) * 1e-9,
            shots,
        )
        # the dummy keeps bins per acquisition name: drop the previous program's
        readout.cluster.delete_dummy_binned_acquisition_data(port.slot, port.sequencer)
        if points[0].herald:
            heralds, iq = _heralded(physics, bias, pulse, settings, rng)
            self._set_bins(readout, port, "herald", heralds.T.reshape(-1), points, shots)
            self._set_bins(readout, port, "iq", iq.T.reshape(-1), points, shots)
            return
        measure = single_shot_iq if single else averaged_iq
        iq = measure(physics, bias, pulse, settings, rng)
        self._set_bins(readout, port, "iq", iq.T.reshape(-1) if single else iq, points, shots)

    @staticmethod
    def _set_bins(readout: QbloxReadout, port: Port, name: str, iq, points, shots) -> None:
        from qblox_instruments.ieee488_2 import DummyBinnedAcquisitionData

        bins = np.asarray(iq) / readout.full_scale * points[0].integration_ns
        readout.cluster.set_dummy_binned_acquisition_data(
            port.slot,
            port.sequencer,
            name,
            [
                DummyBinnedAcquisitionData(
                    data=(float(z.real), float(z.imag)), thres=0, avg_cnt=shots
                )
                for z in bins
            ],
        )


def _played_amplitude(points, sequence, full_scale: float, requested: np.ndarray) -> np.ndarray:
    """The channel amplitude (V) each point's compiled first pulse plays: its gain (clipped
    to full scale, not rounded to the 16-bit steps) × the path's full scale over the pulse's
    relative amplitude (`requested` where the sequence plays no pulse: nothing to see)."""
    from fluxcal.instruments.pulses import Pulse

    relative = [e.amplitude for e in sequence.elements if isinstance(e, Pulse)]
    index = next((i for i, a in enumerate(relative) if a), None)
    if index is None:
        return np.asarray(requested, float)
    gain = np.clip([float(p.pulses[index].amplitude) for p in points], -1.0, 1.0)
    return gain * full_scale / relative[index]


def _heralded(physics, bias, pulse, settings, rng) -> tuple[np.ndarray, np.ndarray]:
    """Herald and measurement single shots, (points, shots) each, for the dummy.

    The herald shots are the thermal qubit read out (blobs, decay tails); a shot whose herald
    lies on the ground side of the midpoint between the true 0 and 1 responses is measured
    from the simulator's heralded populations (what its own herald keeps), any other from the
    unheralded ones: the statistics the simulated lab gives a heralded sweep, shot by shot.
    """
    from fluxcal.instruments.pulses import PulseSequence
    from fluxcal.instruments.signals import PulseSettings, prepare, single_shot_iq

    idle = PulseSettings(PulseSequence(), pulse.frequency, 0.0, pulse.duration, 0.0)
    heralds = single_shot_iq(physics, bias, idle, settings, rng)
    _, response, _ = prepare(physics, bias, idle, settings)
    ground, excited = response.iq[..., 0][:, None], response.iq[..., 1][:, None]
    along = ((heralds - ground) * np.conj(excited - ground)).real / np.abs(excited - ground) ** 2
    kept = single_shot_iq(physics, bias, pulse, settings, rng)
    unheralded = dataclasses.replace(
        pulse, sequence=pulse.sequence.with_herald(False), herald=False
    )
    others = single_shot_iq(physics, bias, unheralded, settings, rng)
    return heralds, np.where(along < 0.5, kept, others)
