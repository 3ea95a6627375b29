"""Sweet-spot refinement: Ramsey frequency at a few biases, the vertex of the parabola.

The resonator-vs-flux scan finds half flux to ~1e-4 of a period, but a light fluxonium's f01
curves so steeply that 2.5e-4 Φ0 off the sweet spot already moves it by ~30 kHz and lets
first-order flux noise cut T2 by a factor of three. Labs therefore refine the bias on the
qubit itself: f01(V) = f0 + c·(V − V0)² near half flux, measured by Ramsey fringes (kHz
precision) at biases spaced so the outer ones move f01 by about a megahertz. The drive sits
below the lowest f01 (half flux is a minimum), so every fringe frequency f01(V) − f_drive is
positive and no sign ambiguity arises.

Device time goes only where the gate needs it: a first pass at a fixed flux spacing; only if
it is not accepted, a second with the spacing rescaled to the megahertz target; only if the
vertex then lies outside the biases, a third around it. Every pass takes a first look with
`shots`; the last is measured again with as many shots as the √shots law says the vertex and
curvature precision need (within `budget`), so a clear readout is not over-averaged and a
faint one still reaches the gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import lmfit
import numpy as np
import xarray as xr

from fluxcal.calibrations.experiments.decay_fits import fit_ramsey, project
from fluxcal.calibrations.experiments.time_domain import REPEAT, prepare_drive, with_enough_shots
from fluxcal.calibrations.fitting import FitError
from fluxcal.calibrations.gate import at_least, at_most, relative_error
from fluxcal.calibrations.node import Analysis, Node
from fluxcal.calibrations.session import QubitSession

SWEEP = "delay"
BIAS = "flux_voltage"
#: The gate's criteria that more shots improve: the vertex's and the curvature's precision.
PRECISION_MARKERS = ("vertex stderr", "relative stderr")


@dataclass
class SweetSpot(Node):
    name: ClassVar[str] = "sweet_spot"
    requires: ClassVar[tuple[str, ...]] = (
        "flux_sweet_spot",
        "flux_period",
        "qubit_frequency",
        "pi_amplitude",
        "readout_frequency",
    )
    #: f01 at the vertex comes with it: once the bias moves there, the spectroscopic f01
    #: (measured at the old bias) no longer describes the operating point
    produces: ClassVar[tuple[str, ...]] = ("flux_sweet_spot", "qubit_frequency")

    flux_step: float = 0.0012  # Φ0 between the outer bias and the centre, first pass
    target_shift: float = 1.2e6  # Hz the outer biases should move f01 by
    detuning: float = 1.5e6  # Hz the drive sits below the coarse f01
    biases: int = 7
    delay_points: int = 81
    fringes: float = 8.0  # over the delay window at the largest expected fringe frequency
    shots: int = 50  # first look per pass (built-in chip: the gate passes at 50, 57 device-s)
    budget: int = 4000  # shots per point the last pass may take to reach the precision
    max_chi2: float = 4.0
    max_vertex_error: float = 2e-4  # of a flux period
    #: Hz added in quadrature to f01 at the vertex: the fringes carry shifts of this order
    #: that the parabola's stderr does not see (up to 1.5 kHz against truth on the test
    #: chips); Ramsey then refines f01 to its own precision
    f0_systematic: float = 2e3
    max_recentre: float = 4.0  # bias spans a vertex outside the biases may be re-measured at

    def acquire(self, session: QubitSession) -> xr.Dataset:
        centre = session.value("flux_sweet_spot")
        period = session.value("flux_period")
        drive = session.value("qubit_frequency") - self.detuning
        prepare_drive(
            session,
            "ramsey",
            self.shots,
            amplitude=session.value("pi_amplitude"),
            duration=session.pi_duration(),
            frequency=drive,
            herald=True,
        )
        step = self.flux_step
        data = self._measure(session, centre, period * step, drive)
        try:  # each further pass only when the last one would not be accepted
            analysis = self.analyse(data)
            shift = _edge_shift(analysis)
            if shift > 0 and not self.gate(analysis).accepted:
                step *= float(np.clip(np.sqrt(self.target_shift / shift), 0.3, 3.0))
                data = self._measure(session, centre, period * step, drive)
                analysis = self.analyse(data)
            # a vertex outside the biases already fails the gate
            recentred = self._recentred(analysis, centre, period * step)
            if recentred is not None:
                centre, f0 = recentred
                drive = f0 - self.detuning
                data = self._measure(session, centre, period * step, drive)
        except FitError:
            pass  # keep the last pass; its analysis will say why it cannot be used
        last = (centre, period * step, drive)
        if not self._fits(data):  # too faint for a first look to fit: one look with 4× shots
            session.configure(readout={"shots": min(4 * self.shots, self.budget)})
            data = self._measure(session, *last)
        data = with_enough_shots(
            session,
            lambda _: self._measure(session, *last),
            data,
            0.0,
            self.analyse,
            self.budget,
            PRECISION_MARKERS,
        )
        session.configure(
            flux={"voltage": session.value("flux_sweet_spot")}, readout={"shots": self.shots}
        )
        return data

    def _fits(self, data: xr.Dataset) -> bool:
        try:
            self.analyse(data)
        except FitError:
            return False
        return True

    def _recentred(
        self, analysis: Analysis, centre: float, span: float
    ) -> tuple[float, float] | None:
        """(vertex, f01 there) to measure around again when the parabola's vertex lies
        outside the biases: the upstream sweet spot was off by more than the span, and a
        vertex extrapolated from one flank is no measurement. None when it lies inside, or
        so far out (beyond `max_recentre` spans) or so ill-defined that extrapolating the
        parabola there means nothing."""
        vertex = analysis.values["flux_sweet_spot"][0]
        f0 = analysis.values["qubit_frequency"][0]
        curvature = analysis.values["curvature"][0]
        offset = abs(vertex - centre) / span
        if not (np.isfinite(vertex) and np.isfinite(f0) and curvature > 0):
            return None
        if offset <= 1.0 or offset > self.max_recentre:
            return None
        return vertex, f0

    def _measure(self, session, centre: float, span: float, drive: float) -> xr.Dataset:
        session.configure(drive={"frequency": drive})
        biases = centre + span * np.linspace(-1, 1, self.biases)
        window = self.fringes / (self.detuning + self.target_shift * 1.5)
        delays = np.linspace(0.0, window, self.delay_points)
        runs = [
            session.measure(self.name, SWEEP, delays, outer=("flux.voltage", biases))
            for _ in range(2)
        ]
        iq = xr.concat([run["iq"] for run in runs], dim=REPEAT)
        return xr.Dataset(
            {"iq": iq},
            attrs={
                "experiment": self.name,
                "qubit": session.qubit,
                "drive_frequency": drive,
                "flux_period": session.value("flux_period"),
                "previous_sweet_spot": centre,
                "shots": int(session.channel("readout").shots()),
            },
        )

    def analyse(self, data: xr.Dataset) -> Analysis:
        delays = data[SWEEP].values
        biases = data[BIAS].values
        drive = float(data.attrs["drive_frequency"])
        frequencies, errors, chi2 = [], [], []
        for index in range(biases.size):
            trace = project(delays, data["iq"].isel({BIAS: index}).transpose(REPEAT, SWEEP).values)
            fit = fit_ramsey(trace, decay_guess=float(np.ptp(delays)))
            value, stderr = fit.value("frequency")
            frequencies.append(drive + value)
            errors.append(stderr)
            chi2.append(fit.reduced_chi2)
        frequencies, errors = np.array(frequencies), np.array(errors)
        if not np.all(np.isfinite(errors)) or np.any(errors <= 0):
            raise FitError("a Ramsey fringe fit gave no frequency uncertainty")
        parabola = _fit_parabola(biases, frequencies, errors)
        vertex, vertex_err = _param(parabola, "vertex")
        f0, f0_err = _param(parabola, "f0")
        curvature, curvature_err = _param(parabola, "curvature")
        period = float(data.attrs["flux_period"])
        criteria = [
            at_most("worst fringe reduced chi-square", max(chi2), self.max_chi2),
            at_most("parabola reduced chi-square", parabola.redchi, self.max_chi2 * 2),
            at_least("curvature (f01 is a minimum)", curvature, 0.0),
            at_most("curvature relative stderr", relative_error(curvature, curvature_err), 0.2),
            at_most("vertex stderr / period", vertex_err / period, self.max_vertex_error),
            at_most("vertex inside the biases", abs(vertex - biases.mean()) / np.ptp(biases), 0.5),
        ]
        fit_x = np.linspace(biases.min(), biases.max(), 200)
        return Analysis(
            values={
                "flux_sweet_spot": (vertex, vertex_err),
                "qubit_frequency": (f0, float(np.hypot(f0_err, self.f0_systematic))),
                "curvature": (curvature, curvature_err),
            },
            criteria=criteria,
            report=parabola.fit_report(),
            fit=parabola,
            curves={
                "x": biases,
                "y": frequencies,
                "fit_x": fit_x,
                "fit_y": parabola.eval(x=fit_x),
                "xlabel": "flux bias (V)",
                "ylabel": "f01 from Ramsey (Hz)",
            },
        )


def _parabola(x, f0, curvature, vertex):
    """f01 near half flux: the avoided crossing of the two fluxon states,
    √(f0² + 2·f0·curvature·(V − V0)²), which is f0 + curvature·(V − V0)² for small shifts
    but keeps the quartic term a heavy fluxonium (f0 of tens of MHz) shows within a MHz."""
    return np.sqrt(np.maximum(f0**2 + 2 * f0 * curvature * (x - vertex) ** 2, 0.0))


def _fit_parabola(biases, frequencies, errors) -> lmfit.model.ModelResult:
    coefficients = np.polyfit(biases, frequencies, 2, w=1 / errors)
    a, b, _ = coefficients
    vertex = -b / (2 * a) if a > 0 else float(biases[np.argmin(frequencies)])
    params = lmfit.Parameters()
    params.add("f0", value=float(np.polyval(coefficients, vertex)))
    params.add("curvature", value=float(a))
    params.add("vertex", value=float(vertex))
    return lmfit.Model(_parabola).fit(frequencies, params, x=biases, weights=1 / errors)


def _param(result, name: str) -> tuple[float, float]:
    parameter = result.params[name]
    stderr = parameter.stderr if parameter.stderr is not None else np.inf
    return float(parameter.value), float(stderr)


def _edge_shift(analysis: Analysis) -> float:
    """How far the outermost bias moved f01 (Hz), from the fitted parabola."""
    biases = analysis.curves["x"]
    curvature = analysis.values["curvature"][0]
    vertex = analysis.values["flux_sweet_spot"][0]
    return float(curvature * np.max((biases - vertex) ** 2))
