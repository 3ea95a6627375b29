"""Drift of a simulated chip as a pure function of (seed, time).

Real chips drift: the flux offset random-walks and jumps after thermal events, T1 swings as
two-level systems wander, the resonator creeps. Here every drift quantity is computed from
the qubit's seed and the time alone, never from process state, so two processes (a daily
flow and a drift check an hour later) that build the device for the same time see the same
chip and drift accumulates across runs as it would in a lab.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fluxcal.instruments.device_config import Qubit

_STEP_S = 60.0  # random-walk resolution
_STEPS_PER_DAY = 1440
_HOUR_S = 3600.0
_T1_MODES = 4  # smooth T1 fluctuation: a few incommensurate slow oscillations


def random_walk(seed: int, stream: int, time_s: float) -> float:
    """Unit Brownian motion W(t) (√hour units) at time_s ≥ 0, deterministic in (seed, stream).

    Increments are drawn per day from a generator keyed by (seed, stream, day) and linearly
    interpolated between one-minute steps, so any time is cheap and reproducible.
    """
    if time_s <= 0:
        return 0.0
    step_sigma = np.sqrt(_STEP_S / _HOUR_S)
    day, within = divmod(time_s / _STEP_S, _STEPS_PER_DAY)
    day = int(day)
    start = sum(_day_total(seed, stream, d) for d in range(day)) * step_sigma
    path = np.concatenate(([0.0], np.cumsum(_day_increments(seed, stream, day)))) * step_sigma
    return float(start + np.interp(within, np.arange(_STEPS_PER_DAY + 1), path))


@lru_cache(maxsize=64)
def _day_increments(seed: int, stream: int, day: int) -> np.ndarray:
    return np.random.default_rng([seed, stream, day]).standard_normal(_STEPS_PER_DAY)


@lru_cache(maxsize=100_000)
def _day_total(seed: int, stream: int, day: int) -> float:
    return float(_day_increments(seed, stream, day).sum())


def smooth_fluctuation(seed: int, stream: int, time_s: float, timescale_s: float) -> float:
    """Zero-mean, unit-variance smooth fluctuation with correlation time ~timescale_s."""
    rng = np.random.default_rng([seed, stream])
    periods = timescale_s * rng.uniform(1.0, 6.0, _T1_MODES)
    phases = rng.uniform(0, 2 * np.pi, _T1_MODES)
    waves = np.sin(2 * np.pi * time_s / periods + phases)
    return float(waves.sum() * np.sqrt(2.0 / _T1_MODES))


@dataclass(frozen=True)
class DriftState:
    """How far a qubit has moved from its nominal description at one time."""

    flux_offset_phi0: float  # added to the external flux
    resonator_shift_hz: float
    t1_factor: float


_FLUX_STREAM, _RESONATOR_STREAM, _T1_STREAM = 1, 2, 3


def drift_at(qubit: Qubit, time_s: float) -> DriftState:
    """The qubit's drift at time_s seconds after the device epoch."""
    spec = qubit.drift
    flux = spec.flux_walk * random_walk(qubit.seed, _FLUX_STREAM, time_s)
    resonator = spec.resonator_walk * random_walk(qubit.seed, _RESONATOR_STREAM, time_s)
    t1_factor = float(
        np.exp(
            spec.t1_fluctuation
            * smooth_fluctuation(qubit.seed, _T1_STREAM, time_s, spec.t1_timescale)
        )
    )
    for event in qubit.events:
        if time_s >= event.time:
            if event.kind == "flux_jump":
                flux += event.size
            elif event.kind == "resonator_jump":
                resonator += event.size
            else:
                t1_factor *= event.size
    return DriftState(flux, resonator, t1_factor)
