"""Rabi: the drive amplitude of a π pulse of fixed duration at the sweet spot.

Nothing about the drive coupling is known when this node runs, so it first sweeps the
amplitude coarsely over a generic range and estimates the oscillation period with a
periodogram, then sweeps finely over ~2.5 π-amplitudes of that estimate (never beyond the AWG
full scale) and fits P(a) ∝ cos(π·a/a_π), the population of a rectangular pulse whose Rabi rate
is proportional to its amplitude. Heralded, two repeats for the noise figure; the coarse trace
is kept in the dataset as the record of how the fine window was chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from fluxcal.calibrations.averaging import measure_averaged
from fluxcal.calibrations.experiments.calibration_points import references
from fluxcal.calibrations.experiments.decay_fits import (
    fit_rabi,
    project_single,
    project_trace,
    quality,
    scan_frequency,
)
from fluxcal.calibrations.experiments.time_domain import (
    measure_repeats,
    prepare_drive,
    with_enough_shots,
)
from fluxcal.calibrations.fitting import FitError
from fluxcal.calibrations.fitting.noise import difference_noise
from fluxcal.calibrations.gate import at_least, at_most
from fluxcal.calibrations.node import Analysis, Node
from fluxcal.calibrations.session import DEFAULT_PI_DURATION, QubitSession

SWEEP = "drive_amplitude"
COARSE = "drive_amplitude_coarse"


@dataclass
class Rabi(Node):
    """Amplitude Rabi; produces pi_amplitude (V) for a pulse of `pi_duration` (s)."""

    name = "rabi"
    requires = ("qubit_frequency", "readout_frequency", "flux_sweet_spot")
    produces = ("pi_amplitude", "pi_duration")

    pi_duration: float = DEFAULT_PI_DURATION  # the device's π-pulse length convention
    coarse_max_amplitude: float = 1.0  # V, generic first range (half the AWG full scale)
    coarse_points: int = 101
    max_amplitude: float | None = None  # V; None: the drive's full scale (its validator)
    fine_span: float = 2.5  # fine sweep up to this many estimated π-amplitudes
    fine_points: int = 101
    #: first look of both sweeps; a faint oscillation gets more (the coarse sweep's averaging,
    #: `with_enough_shots` for the fine one). 50 heralded shots put a bright chip's π
    #: amplitude at 0.3–0.45 % of itself, within the gate, for half the device time of the
    #: 100 this replaced. Not 25: on a hot chip the herald keeps about half the shots, and a
    #: dozen per point make the stated stderr half the true scatter (sampled chip 5021, f01
    #: 82 MHz: z of 6 noise draws spread 2.1 at 25 shots, 0.9 at 100)
    shots: int = 50
    budget: int = 16_000  # shots per point a faint oscillation may take
    herald: bool = True
    max_chi2: float = 3.0
    #: a quarter of the 2 % a π amplitude is held to (tests/robustness.py), so an accepted
    #: one is within it at 4 stderr; at 1 % a faint chip's first look passed the gate at
    #: 0.8 % and was accepted 2.7 % off (sampled chip 5036); the shots follow from this
    #: (`with_enough_shots`): a bright chip's first look already meets it
    max_relative_error: float = 0.005
    min_snr: float = 8.0
    #: the coarse sweep is averaged until its oscillation stands this far above the noise of
    #: its estimate: a fainter one places the fine window on noise
    min_coarse_snr: float = 10.0

    def acquire(self, session: QubitSession) -> xr.Dataset:
        prepare_drive(
            session,
            "rabi",
            self.shots,
            frequency=session.value("qubit_frequency"),
            duration=self.pi_duration,
            delay=0.0,
            herald=self.herald,
        )
        full_scale = session.upper_limit("drive", "amplitude", self.max_amplitude)
        coarse = np.linspace(0.0, min(self.coarse_max_amplitude, full_scale), self.coarse_points)
        coarse_iq = measure_averaged(
            session,
            self.name,
            SWEEP,
            coarse,
            lambda iq: oscillation_snr(coarse, iq),
            self.min_coarse_snr,
            self.budget,
        )["iq"].rename({SWEEP: COARSE})
        try:
            estimate = estimate_pi_amplitude(coarse, coarse_iq.values)
        except FitError:  # sweep the coarse range finely; the analysis will judge that data
            estimate = self.coarse_max_amplitude / self.fine_span
        top = min(self.fine_span * estimate, full_scale)

        def measure(top: float) -> xr.Dataset:
            fine = np.linspace(0.0, top, self.fine_points)
            return xr.Dataset(
                {"iq": measure_repeats(session, self.name, SWEEP, fine), "iq_coarse": coarse_iq},
                attrs={
                    "experiment": self.name,
                    "qubit": session.qubit,
                    "pi_duration": self.pi_duration,
                    "drive_frequency": session.value("qubit_frequency"),
                    "pi_amplitude_estimate": estimate,
                    "herald": int(self.herald),
                    "shots": int(session.channel("readout").shots()),
                },
            )

        # a weakly dispersive readout sees the oscillation faintly: more shots, within budget
        return with_enough_shots(session, measure, measure(top), top, self.analyse, self.budget)

    def analyse(self, data: xr.Dataset) -> Analysis:
        trace = project_trace(data[SWEEP].values, data["iq"].values, references(data))
        fit = fit_rabi(trace)
        pi_amplitude = fit.value("pi_amplitude")
        window = float(trace.x.max())
        step = float(np.ptp(trace.x)) / (trace.x.size - 1)  # a sweep may start below zero
        criteria = quality(
            fit, "rabi fit", "pi_amplitude", self.max_chi2, self.max_relative_error, self.min_snr
        )
        criteria += [
            # the minimum of the oscillation and the return after it must be in the sweep
            at_most("pi_amplitude / swept range", pi_amplitude[0] / window, 0.8),
            at_least("points per π-amplitude", pi_amplitude[0] / step, 4.0),
        ]
        fit_x, fit_y = fit.curve()
        values = {"pi_amplitude": pi_amplitude}
        if "pi_duration" in data.attrs:  # a recorded trace from another stack may not say
            values["pi_duration"] = (float(data.attrs["pi_duration"]), 0.0)
        return Analysis(
            values=values,
            criteria=criteria,
            report=fit.report(),
            fit=fit.result,
            curves={
                "x": trace.x,
                "y": trace.y,
                "fit_x": fit_x,
                "fit_y": fit_y,
                "xlabel": "drive amplitude (V)",
                "ylabel": trace.ylabel,
            },
        )


def estimate_pi_amplitude(amplitudes: np.ndarray, iq: np.ndarray) -> float:
    """Half the dominant period of a coarse amplitude sweep (V)."""
    if not np.all(np.isfinite(iq)):
        raise FitError("coarse Rabi sweep has non-finite points")
    return 0.5 / _dominant_frequency(amplitudes, project_single(iq))


def oscillation_snr(amplitudes: np.ndarray, iq: np.ndarray) -> float:
    """How far the coarse sweep's dominant cosine stands above noise: its least-squares
    amplitude over that amplitude's standard error (the point noise over √(N/2)); 0 for a
    trace with non-finite points."""
    iq = np.asarray(iq)
    if not np.all(np.isfinite(iq)):
        return 0.0
    y = project_single(iq)
    frequency = _dominant_frequency(amplitudes, y)
    design = np.stack([np.ones_like(amplitudes), np.cos(2 * np.pi * frequency * amplitudes)], 1)
    (_, amplitude), *_ = np.linalg.lstsq(design, y, rcond=None)
    noise = max(difference_noise(y), float(np.finfo(float).tiny))
    return float(abs(amplitude) / (noise / np.sqrt(y.size / 2)))


def _dominant_frequency(amplitudes: np.ndarray, y: np.ndarray) -> float:
    """Periodogram peak (per volt) of a Rabi trace, from a quarter to half the sampling rate."""
    span = float(np.ptp(amplitudes))
    step = span / (amplitudes.size - 1)
    frequencies = np.arange(0.25 / span, 0.5 / step, 0.05 / span)
    return scan_frequency(amplitudes, y, frequencies, free_phase=False)
