"""Compile one hardware sweep of the contract into Qblox Q1ASM programs.

Two sequencers play each shot: the drive sequencer (a QCM) plays the pulse sequence, the
readout sequencer (a QRM) waits for it, plays the readout tone and integrates. Both run the
same timeline per sweep point ([herald,] drive, readout, rest to the repetition time), start
together on `wait_sync`, and loop over the shots; every sweep point is written out (immediate
values), so any sweep of any setting compiles the same way, and a long sweep is split into
chunks. Both programs take exactly `period_ns(point)` per point, so they never drift apart.

Heralding, as Qblox labs do it: the readout sequencer first plays the readout tone and
integrates into acquisition index 0 (`herald`), waits for the resonator to ring down, then,
after the drive, integrates the measurement into acquisition index 1 (`iq`); both in bin
`shot · points + point` (R1), so every measurement has its herald beside it and the
post-selection (keep shots whose herald read ground) is done on the bins afterwards.

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
    herald: bool = False  # a herald readout (and the resonator's ring-down) before the drive
    ring_down_ns: int = 0  # wait after the herald readout for the resonator to empty
    rest_ns: int = 0  # after the readout, until the next shot may start


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


def _timeline(total_ns: int) -> int:
    """Time `_waits(total_ns)` takes (0 → none, below 4 ns → 4 ns)."""
    return max(total_ns, MIN_NS) if total_ns > 0 else 0


def pulse_ns(pulse: ResolvedPulse) -> int:
    """Timeline a pulse takes: a waveform its length; a square pulse its length plus the
    `upd_param` that switches it off."""
    length = max(ns(pulse.duration), MIN_NS)
    return length if pulse.shape == "gaussian" else length + MIN_NS


def drive_time_ns(point: PointTimeline) -> int:
    """How long the drive part of a point takes on the timeline (pulses and waits)."""
    total = _timeline(point.trailing_ns)
    for pulse in point.pulses:
        total += _timeline(ns(pulse.wait_before)) + pulse_ns(pulse)
    return total


def readout_ns(point: PointTimeline) -> int:
    """Timeline of one readout: the tone on for the integration, then its `upd_param` off."""
    return 3 * MIN_NS + _timeline(point.integration_ns - 2 * MIN_NS)


def herald_ns(point: PointTimeline) -> int:
    """Timeline of the herald: a readout, then the resonator's ring-down (0 without)."""
    return readout_ns(point) + _timeline(point.ring_down_ns) if point.herald else 0


def period_ns(point: PointTimeline) -> int:
    """One shot of one point, on both sequencers: herald, drive, readout, rest."""
    return herald_ns(point) + drive_time_ns(point) + readout_ns(point) + _timeline(point.rest_ns)


def gaussian_samples(duration_ns: int) -> list[float]:
    """A gaussian envelope over ±2σ, peak 1, one sample per ns."""
    t = np.arange(duration_ns) + 0.5
    sigma = duration_ns / 4
    return list(np.exp(-0.5 * ((t - duration_ns / 2) / sigma) ** 2))


def drive_program(points: list[PointTimeline], shots: int, waveforms: dict[int, int]) -> str:
    """Q1ASM of the drive sequencer; `waveforms` maps gaussian durations to their index."""
    body = []
    for point in points:
        body += [f"set_freq {round(point.drive_nco * 4)}", "set_ph 0"]
        body += _waits(herald_ns(point))
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
        after = _timeline(point.trailing_ns) + readout_ns(point) + _timeline(point.rest_ns)
        body += _waits(after)
    return _shot_loop(body, shots)


def _tone(point: PointTimeline, acquisition: int, bin_: str) -> list[str]:
    """The readout tone with one integration, `readout_ns(point)` long."""
    return [
        f"set_freq {round(point.readout_nco * 4)}",
        f"set_awg_offs {_gain(point.readout_gain)}, 0",
        "upd_param 4",
        f"acquire {acquisition}, {bin_}, {MIN_NS}",
        *_waits(point.integration_ns - 2 * MIN_NS),
        "set_awg_offs 0, 0",
        "upd_param 4",
    ]


def readout_program(points: list[PointTimeline], shots: int, single: bool) -> str:
    """Q1ASM of the readout sequencer: acquisitions in bin `point` (averaged over shots by the
    hardware) or in bin `shot · points + point` (single shots, counted in R1). A heralded point
    integrates its herald into acquisition 0 and its measurement into acquisition 1, both
    single shots in the same bin."""
    body = []
    for index, point in enumerate(points):
        if point.herald:
            body += _tone(point, 0, "R1") + _waits(point.ring_down_ns)
        body += _waits(drive_time_ns(point))
        if point.herald or single:
            body += [*_tone(point, 1 if point.herald else 0, "R1"), "add R1, 1, R1"]
        else:
            body += _tone(point, 0, str(index))
        body += _waits(point.rest_ns)
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
