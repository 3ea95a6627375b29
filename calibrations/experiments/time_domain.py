"""Acquisition shared by the time-domain nodes: a heralded drive at the operating point.

Rabi, Ramsey, echo and T1 all bias at the sweet spot, read out with the best known settings,
drive the qubit with one pulse sequence (heralded by default: a pre-measurement keeps only
shots that start in the ground state, which multiplies the contrast of a thermally excited
fluxonium) and record each trace as two repeats, so the analysis can measure its noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import xarray as xr

from fluxcal.calibrations.averaging import next_total, noise_limited_score
from fluxcal.calibrations.fitting import FitError
from fluxcal.calibrations.node import Analysis
from fluxcal.calibrations.session import QubitSession

#: Dimension that holds the two repeats of a trace.
REPEAT = "repeat"

Data = TypeVar("Data")


def prepare_drive(session: QubitSession, sequence: str, shots: int, **drive: float | bool) -> None:
    """Operating point, then the drive `sequence` with the given settings."""
    session.operating_point()
    session.configure(readout={"shots": shots}, drive={"sequence": sequence, **drive})


def measure_repeats(
    session: QubitSession, name: str, sweep: str, values: Sequence[float] | np.ndarray
) -> xr.DataArray:
    """Complex IQ over `sweep` for two back-to-back repeats, dims (repeat, sweep)."""
    runs = [session.measure(name, sweep, values) for _ in range(2)]
    iq = xr.concat([run["iq"] for run in runs], dim=REPEAT)
    iq.attrs = {"run_ids": [int(run.attrs.get("run_id") or -1) for run in runs]}
    return iq


def resolve_window(
    acquire: Callable[[float], Data],
    decay_of: Callable[[Data], float],
    guess: float,
    window_factor: float,
    ratio_range: tuple[float, float],
    max_window: float,
    attempts: int = 3,
) -> Data:
    """Acquire over a delay window that contains the decay with the wanted margin.

    Starts at `window_factor` × the guessed decay time and re-acquires at `window_factor` ×
    the fitted one while window/decay is outside `ratio_range` (the decay was not resolved,
    or it was over within the first few points), growing or shrinking at most 10× per attempt
    and never past `max_window`. `acquire(window)` returns the data; `decay_of(data)` fits it
    (nan when the fit fails, which ends the search: the gate will judge that data).
    """
    window = min(window_factor * guess, max_window)
    data = acquire(window)
    for _ in range(attempts - 1):
        decay = decay_of(data)
        if not np.isfinite(decay) or ratio_range[0] <= window / decay <= ratio_range[1]:
            break
        wanted = float(np.clip(window_factor * decay, window / 10, window * 10))
        if min(wanted, max_window) == window:
            break
        window = min(wanted, max_window)
        data = acquire(window)
    return data


#: Rounds of more shots `with_enough_shots` may take (each at most 16× the one before).
_ROUNDS = 3


def with_enough_shots(
    session: QubitSession,
    acquire: Callable[[float], Data],
    data: Data,
    window: float,
    analyse: Callable[[Data], Analysis],
    budget: int,
    markers: tuple[str, ...] = ("relative stderr", "signal-to-noise"),
) -> Data:
    """The trace again with more shots when its noise-limited criteria fall short.

    The score is how far the gate's criteria named with one of `markers` (signal-to-noise
    and relative errors by default) are met (1: just met, 0: nothing fitted, when more
    shots would not tell what went wrong); the
    √shots law sets the shot count, within `budget`. The first trace is replaced, not
    averaged in, so every repeat of the new trace has the same shots. A round grows the
    shots at most 16×, so a faint trace seen first with few shots may take up to
    `_ROUNDS` of them (a 100-shot Rabi look that needed 2500 fell short after one).
    """
    readout = session.channel("readout")
    first = shots = int(readout.shots())
    try:
        for _ in range(_ROUNDS):
            try:
                criteria = analyse(data).criteria
            except FitError:
                return data
            reached = noise_limited_score(criteria, markers)
            if reached >= 1.0 or reached <= 0.0:
                return data
            wanted = next_total(shots, reached, 1.0, budget)
            if wanted <= shots:
                return data
            readout.shots(wanted)
            data = acquire(window)
            shots = wanted
        return data
    finally:
        readout.shots(first)
