"""Compile one hardware sweep of the contract into Qblox Q1ASM programs.

Two sequencers play each shot: the drive sequencer (a QCM) plays the pulse sequence, the
readout sequencer (a QRM) waits for it, plays the readout tone and integrates. Both run the
same timeline per sweep point (drive, readout, rest to the repetition time), start together
on `wait_sync`, and loop over the shots; every sweep point is written out (immediate values),
so any sweep of any setting compiles the same way, and a long sweep is split into chunks.

Square pulses and the readout tone are DC offsets of the AWG path (`set_awg_offs`), modulated
by the sequencer's NCO, so their length is limited only by the timeline; gaussian pulses are
waveforms (`play`). Amplitudes are fractions of the output's full scale (`set_awg_offs` and
`set_awg_gain` take −32768 … 32767); NCO frequencies are in units of 1/4 Hz; phases in units
of 1e−9 of a turn; times in ns, waits longer than 65 535 ns split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fluxcal.instruments.pulses import ResolvedPulse

#: Largest immediate argument of `wait`, and the shortest instruction duration (ns).
MAX_WAIT_NS = 65_535
MIN_NS = 4
#: Sweep points per program: a few instructions each stays inside the instruction memory.
CHUNK_POINTS = 500
FULL_SCALE_STEPS = 32_767
#: Waveform index of the gaussian envelope; samples are made for each distinct duration.
GAUSSIAN_WAVEFORM = "gaussian_{index}"


@dataclass(frozen=True)
class PointTimeline:
    """One sweep point in absolute units: what the drive plays, then the readout."""

    drive_nco: float  # Hz
    pulses: tuple[ResolvedPulse, ...]  # scalar values
    trailing_ns: int
    readout_nco: float  # Hz
    readout_gain: float  # fraction of full scale
    integration_ns: int


def ns(seconds: float) -> int:
    """Seconds on the sequencer's 1 ns grid."""
    return round(float(seconds) * 1e9)


def _waits(total_ns: int) -> list[str]:
    """`wait` instructions for any non-negative time (0 → none, below 4 ns → 4 ns)."""
    if total_ns <= 0:
        return []
    total_ns = max(total_ns, MIN_NS)
    lines = []
    while total_ns > MAX_WAIT_NS:
        step = MAX_WAIT_NS if total_ns - MAX_WAIT_NS >= MIN_NS else MAX_WAIT_NS - MIN_NS
        lines.append(f"wait {step}")
        total_ns -= step
    return [*lines, f"wait {total_ns}"]


def _gain(fraction: float) -> int:
    return int(np.clip(round(fraction * FULL_SCALE_STEPS), -FULL_SCALE_STEPS, FULL_SCALE_STEPS))


def drive_time_ns(point: PointTimeline) -> int:
    """How long the drive part of a point takes on the timeline."""
    total = point.trailing_ns
    for pulse in point.pulses:
        total += max(ns(pulse.wait_before), 0) + max(ns(pulse.duration), MIN_NS)
    return total


def gaussian_samples(duration_ns: int) -> list[float]:
    """A gaussian envelope over ±2σ, peak 1, one sample per ns."""
    t = np.arange(duration_ns) + 0.5
    sigma = duration_ns / 4
    return list(np.exp(-0.5 * ((t - duration_ns / 2) / sigma) ** 2))


def drive_program(
    points: list[PointTimeline], shots: int, rest_ns: int, waveforms: dict[int, int]
) -> str:
    """Q1ASM of the drive sequencer; `waveforms` maps gaussian durations to their index."""
    body = []
    for point in points:
        body += [f"set_freq {round(point.drive_nco * 4)}", "set_ph 0"]
        for pulse in point.pulses:
            body += _waits(ns(pulse.wait_before))
            body.append(f"set_ph {round((pulse.phase / (2 * np.pi)) % 1 * 1e9)}")
            length = max(ns(pulse.duration), MIN_NS)
            gain = _gain(float(pulse.amplitude))
            if pulse.shape == "gaussian":
                body += [
                    f"set_awg_gain {gain}, 0",
                    f"play {waveforms[length]}, {waveforms[length]}, {length}",
                ]
            else:
                body += [f"set_awg_offs {gain}, 0", "upd_param 4", *_waits(length - MIN_NS)]
                body += ["set_awg_offs 0, 0", "upd_param 4"]
        body += _waits(point.trailing_ns + point.integration_ns + rest_ns)
    return _shot_loop(body, shots)


def readout_program(points: list[PointTimeline], shots: int, rest_ns: int, single: bool) -> str:
    """Q1ASM of the readout sequencer: acquisitions in bin `point` (averaged over shots by the
    hardware) or in bin `shot · points + point` (single shots, counted in R1)."""
    body = []
    for index, point in enumerate(points):
        body += _waits(drive_time_ns(point))
        body += [f"set_freq {round(point.readout_nco * 4)}"]
        body += [f"set_awg_offs {_gain(point.readout_gain)}, 0", "upd_param 4"]
        if single:
            body += [f"acquire 0, R1, {MIN_NS}", "add R1, 1, R1"]
        else:
            body += [f"acquire 0, {index}, {MIN_NS}"]
        body += _waits(point.integration_ns - 2 * MIN_NS)
        body += ["set_awg_offs 0, 0", "upd_param 4", *_waits(rest_ns)]
    return _shot_loop(body, shots)


def _shot_loop(body: list[str], shots: int) -> str:
    lines = [
        "        wait_sync 4",
        f"        move {int(shots)}, R0",
        "        move 0, R1",
        "shot:",
        *(f"        {line}" for line in body),
        "        loop R0, @shot",
        "        stop",
    ]
    return "\n".join(lines) + "\n"
