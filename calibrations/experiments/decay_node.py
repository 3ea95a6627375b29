"""The exponential-decay experiment shared by T1 and spin echo: a sequence, a delay, a decay.

Both drive at the calibrated qubit frequency with the calibrated π pulse, sweep the delay
from zero to a few expected decay times, and fit an exponential towards a free steady state.
The window is chosen from what is known (a subclass says what the expected decay time is)
and re-measured when the decay turns out not to be resolved in it. The gate checks the fit
(χ² against the repeat noise, relative stderr, contrast) and that the decay time sits inside
the window with margin, so a decay far longer than the window is never reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import xarray as xr

from calibrations.experiments.decay_fits import fit_decay, project, quality
from calibrations.experiments.time_domain import (
    measure_repeats,
    prepare_drive,
    resolve_window,
    with_enough_shots,
)
from calibrations.fitting import FitError
from calibrations.gate import at_least
from calibrations.node import Analysis, Node
from calibrations.session import QubitSession

SWEEP = "delay"


@dataclass
class DecayNode(Node):
    """Base of T1 and echo; subclasses set `sequence`, `produces` and `expected_decay`."""

    sequence: ClassVar[str]

    window_factor: float = 5.0  # delays up to this many expected decay times
    ratio_range: tuple[float, float] = (3.0, 10.0)  # window/decay accepted without re-measuring
    points: int = 101
    shots: int = 1000
    budget: int = 16_000  # shots per point a noisy trace may take
    herald: bool = True
    max_delay: float = 1e-2  # s, longest delay the AWG sequencer takes
    max_chi2: float = 3.0
    max_relative_error: float = 0.05
    min_snr: float = 8.0
    min_window_ratio: float = 2.0  # window/decay below this: the decay is not resolved
    min_points_per_decay: float = 4.0

    @property
    def key(self) -> str:
        return self.produces[0]

    def expected_decay(self, session: QubitSession) -> float:
        """Decay time (s) to size the first window from."""
        raise NotImplementedError

    def acquire(self, session: QubitSession) -> xr.Dataset:
        frequency = session.value("qubit_frequency")
        pi_amplitude = session.value("pi_amplitude")
        duration = session.pi_duration()
        prepare_drive(
            session,
            self.sequence,
            self.shots,
            frequency=frequency,
            amplitude=pi_amplitude,
            duration=duration,
            herald=self.herald,
        )
        guess = self.expected_decay(session)
        attrs = {
            "experiment": self.name,
            "qubit": session.qubit,
            "sequence": self.sequence,
            "drive_frequency": frequency,
            "pi_amplitude": pi_amplitude,
            "pi_duration": duration,
            "expected_decay": guess,
            "herald": int(self.herald),
            "shots": self.shots,
        }

        def measure(window: float) -> xr.Dataset:
            delays = np.linspace(0.0, window, self.points)
            iq = measure_repeats(session, self.name, SWEEP, delays)
            shots = int(session.channel("readout").shots())
            return xr.Dataset({"iq": iq}, attrs={**attrs, "shots": shots})

        data = resolve_window(
            measure,
            self._decay_or_nan,
            guess,
            self.window_factor,
            self.ratio_range,
            self.max_delay,
        )
        window = float(data[SWEEP].values.max())
        return with_enough_shots(session, measure, data, window, self.analyse, self.budget)

    def _decay_or_nan(self, data: xr.Dataset) -> float:
        try:
            return self.analyse(data).values[self.key][0]
        except FitError:
            return float("nan")

    def analyse(self, data: xr.Dataset) -> Analysis:
        trace = project(data[SWEEP].values, data["iq"].values)
        window = float(np.ptp(trace.x))
        fit = fit_decay(trace, decay_guess=window / self.window_factor)
        decay = fit.value("decay")
        step = window / (trace.x.size - 1)
        criteria = quality(
            fit, f"{self.name} fit", "decay", self.max_chi2, self.max_relative_error, self.min_snr
        )
        criteria += [
            at_least(f"delay window / {self.key}", window / decay[0], self.min_window_ratio),
            at_least(f"points per {self.key}", decay[0] / step, self.min_points_per_decay),
        ]
        fit_x, fit_y = fit.curve()
        return Analysis(
            values={self.key: decay},
            criteria=criteria,
            report=fit.result.fit_report(),
            fit=fit.result,
            curves={
                "x": trace.x * 1e6,
                "y": trace.y,
                "fit_x": fit_x * 1e6,
                "fit_y": fit_y,
                "xlabel": "delay (µs)",
                "ylabel": "projected IQ (V)",
            },
        )
