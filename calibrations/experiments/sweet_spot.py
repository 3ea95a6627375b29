"""Sweet-spot refinement: Ramsey frequency at a few biases, the vertex of the parabola.

The resonator-vs-flux scan finds half flux to ~1e-4 of a period, but a light fluxonium's f01
curves so steeply that 2.5e-4 Φ0 off the sweet spot already moves it by ~30 kHz and lets
first-order flux noise cut T2 by a factor of three. Labs therefore refine the bias on the
qubit itself: f01(V) = f0 + c·(V − V0)² near half flux, measured by Ramsey fringes (kHz
precision) at biases spaced so the outer ones move f01 by about a megahertz. The drive sits
below the lowest f01 (half flux is a minimum), so every fringe frequency f01(V) − f_drive is
positive and no sign ambiguity arises.

When the fluxonium energies are known (qubit_flux_spectroscopy runs before), they set the
first pass instead of fixed constants: the spacing that moves f01 by the megahertz target
from the model's curvature at half flux, the drive below the model's f01 minimum (the stored
f01 was measured at the stored bias, which on a light fluxonium can sit megahertz above the
minimum: sampled chip 3002, 0.7 mΦ0 off, 5.7 MHz above it, put the drive above the vertex and
every fringe frequency's sign was wrong), and the delay window from the fastest fringe the
model predicts at the outer biases.

Device time goes only where the gate needs it: a first pass at a fixed flux spacing; only if
it is not accepted, a second with the spacing rescaled to the megahertz target; only if the
vertex then lies outside the biases, a third around it. Every pass takes a first look with
`shots`; the last is measured again with as many shots as the √shots law says the vertex and
curvature precision need (within `budget`), so a clear readout is not over-averaged and a
faint one still reaches the gate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
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
from fluxcal.instruments.fluxonium import FluxoniumModel

SWEEP = "delay"
BIAS = "flux_voltage"
ENERGIES = ("EJ", "EC", "EL")
#: Flux offset (Φ0) over which the model's curvature at half flux is taken.
CURVATURE_PROBE = 1e-4
#: A locating pass spans this many times the stored bias's distance from the minimum, so
#: the vertex lies inside it whichever side the bias is on.
LOCATE_MARGIN = 1.5


@dataclass(frozen=True)
class _Plan:
    """The first pass: flux step (Φ0), the stored bias's distance from the minimum (Φ0, up
    to its sign), the lowest f01 to expect (Hz), and f01 (Hz) at the outer bias of a pass
    spanning ± a flux offset around the stored bias (the fastest fringe)."""

    step: float
    offset: float
    lowest: float
    f01: Callable[[float], float]


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
    #: at least, over the window: 5 per period of the fastest fringe (`_delays` adds points
    #: for a faster one); more points at the same shots only buy precision, which the last
    #: pass's shots set by the √shots law anyway
    delay_points: int = 41
    fringes: float = 8.0  # over the delay window at the largest expected fringe frequency
    #: first look per pass: enough to fit the fringes (a look too faint to fit is taken again
    #: with 4×); the last pass then gets the shots its precision needs. The precision the
    #: gate asks of the vertex is ~100× looser than a 50-shot, 81-delay look gave on the
    #: built-in and two sampled chips, so a first look is about fitting, not precision.
    shots: int = 25
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
        plan = self._plan(session)
        drive = plan.lowest - self.detuning
        prepare_drive(
            session,
            "ramsey",
            self.shots,
            amplitude=session.value("pi_amplitude"),
            duration=session.pi_duration(),
            frequency=drive,
            herald=True,
        )
        step = plan.step
        if plan.offset > step:  # the stored bias lies beyond a pass's span: locate first
            span = LOCATE_MARGIN * plan.offset
            data = self._measure(
                session, centre, period * span, drive, self._delays(plan.f01(span) - drive)
            )
            located = self._located(data)
            if located is not None:
                centre, drive = located[0], located[1] - self.detuning
        delays = self._delays(plan.f01(step) - drive if plan.offset <= step else None)
        data = self._measure(session, centre, period * step, drive, delays)
        try:  # each further pass only when the last one would not be accepted
            analysis = self.analyse(data)
            shift = _edge_shift(analysis)
            if shift > 0 and not self.gate(analysis).accepted:
                step *= float(np.clip(np.sqrt(self.target_shift / shift), 0.3, 3.0))
                data = self._measure(session, centre, period * step, drive, delays)
                analysis = self.analyse(data)
            # a vertex outside the biases already fails the gate
            recentred = self._recentred(analysis, centre, period * step)
            if recentred is not None:
                centre, f0 = recentred
                drive = f0 - self.detuning
                delays = self._delays()
                data = self._measure(session, centre, period * step, drive, delays)
        except FitError:
            pass  # keep the last pass; its analysis will say why it cannot be used
        last = (centre, period * step, drive, delays)
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

    def _plan(self, session: QubitSession) -> _Plan:
        """The first pass from the fitted energies when known; without them the fixed step
        around the stored bias, whose f01 is taken for the minimum."""
        stored = session.value("qubit_frequency")
        fixed = _Plan(self.flux_step, 0.0, stored, lambda span: stored + 1.5 * self.target_shift)
        if not all(name in session.known for name in ENERGIES):
            return fixed
        model = FluxoniumModel(*(session.value(name) / 1e9 for name in ENERGIES))

        def f01(offset: float) -> float:
            return 1e9 * float(model.transition_frequency(0.5 + offset))

        minimum = f01(0.0)
        # f01² = f0² + 2·f0·c·Φ² near half flux (the parabola the analysis fits)
        curvature = (f01(CURVATURE_PROBE) ** 2 - minimum**2) / (2 * minimum * CURVATURE_PROBE**2)
        if not (np.isfinite(curvature) and curvature > 0):
            return dataclasses.replace(fixed, lowest=min(stored, minimum))
        # the stored bias may sit off the minimum: its f01 tells how far, up to the sign
        excess = max(stored - minimum, 0.0)
        offset = float(np.sqrt(excess * (stored + minimum) / (2 * minimum * curvature)))
        return _Plan(
            float(np.sqrt(self.target_shift / curvature)),
            offset,
            min(stored, minimum),
            lambda span: max(f01(offset + span), stored + 1.5 * self.target_shift),
        )

    def _delays(self, fastest_fringe: float | None = None) -> np.ndarray:
        """Delays holding `fringes` periods of the fastest fringe expected (default: a pass
        centred on the vertex) and at least one of the slowest (the detuning), sampled at
        ≥ 3 points per period of the fastest."""
        fastest = fastest_fringe or self.detuning + 1.5 * self.target_shift
        window = max(self.fringes / fastest, 1.0 / self.detuning)
        points = max(self.delay_points, int(np.ceil(3 * fastest * window)) + 1)
        return np.linspace(0.0, window, points)

    def _located(self, data: xr.Dataset) -> tuple[float, float] | None:
        """(vertex, f01 there) of a locating pass when its parabola has its minimum among
        the biases; None when the pass cannot say (the normal passes then start from the
        stored bias as before)."""
        try:
            analysis = self.analyse(data)
        except FitError:
            return None
        vertex = analysis.values["flux_sweet_spot"][0]
        biases = data[BIAS].values
        if analysis.values["curvature"][0] > 0 and biases.min() <= vertex <= biases.max():
            return vertex, analysis.values["qubit_frequency"][0]
        return None

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

    def _measure(
        self, session, centre: float, span: float, drive: float, delays: np.ndarray
    ) -> xr.Dataset:
        session.configure(drive={"frequency": drive})
        biases = centre + span * np.linspace(-1, 1, self.biases)
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
