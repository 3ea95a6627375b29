"""Two-tone qubit spectroscopy at the sweet spot: where is f01 of this fluxonium?

Nothing is known about the qubit yet except that a fluxonium at half flux sits low (tens of
MHz to ~2 GHz) and that f01 is there the lowest-frequency transition out of the ground state.
So the node first scans that whole range with a strong saturation tone, whose power
broadening makes the line tens of MHz wide and visible with coarse steps, and takes the
lowest line that is not much weaker than the strongest one (thermal population lets weaker
lines such as 1→2 show up too). It then zooms on that line with a weak tone, scaled from the
coarse linewidth to make the line ~0.5 MHz wide (in the strong-drive limit the saturated
linewidth grows linearly with the drive amplitude), and fits a Lorentzian: the centre is f01
to ~10 kHz, good enough for Rabi and for Ramsey to refine.

Shots are heralded by default (a pre-measurement keeps the shots that start in the ground
state), which multiplies the contrast of a thermally excited fluxonium. Each coarse sweep is
averaged until its line reaches the detection threshold or the shot budget is spent.

Half versus integer flux is decided here, physically: resonator_flux hands on the two
flux-symmetry points nearest 0 V (the likelier half-flux one first), and f01 is lowest at
half flux, so the node looks at both (re-centring the readout on the resonator at each) and
keeps the point with the lowest qubit line; at the second point it only sweeps below the
line already found. Both points get a first look before either is averaged further, so the
budget is not spent at integer flux, where f01 is out of range, when the line shows at once
at half flux. `flux_sweet_spot` is produced as that bias. Thermal evidence alone can
mislead: a light, hot fluxonium is thermally excited at integer flux too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import lmfit
import numpy as np
import xarray as xr
from scipy.optimize import nnls
from scipy.signal import find_peaks, peak_widths

from fluxcal.calibrations.averaging import RUNS, measure_averaged, noise_limited_score
from fluxcal.calibrations.experiments.state_integration import StateIntegration, separations
from fluxcal.calibrations.fitting import FitError
from fluxcal.calibrations.fitting.covariance import scale_errors_by_misfit
from fluxcal.calibrations.fitting.noise import difference_noise
from fluxcal.calibrations.fitting.spectrum import (
    peak_projection,
    projected_on,
    refine_peak,
    response_to_peak,
)
from fluxcal.calibrations.gate import Criterion, at_least, at_most, chi2_limit, relative_error
from fluxcal.calibrations.node import Analysis, Node
from fluxcal.calibrations.session import QubitSession
from fluxcal.instruments.contract import ContractError, band_pieces, bands_text

SWEEP = "drive_frequency"
COARSE = "coarse_frequency"
_MIN_FIT_POINTS = 15
#: Sweep points a coarse line is averaged over when judged (`find_broad_lines`): from the
#: 3 of a line a few steps wide up to a line tens of steps wide.
LINE_SCALES = (3, 5, 9, 17, 33)
#: Lines the coarse averaging is steered by (its score): 3 point-noise deviations of a
#: 3-point mean, the threshold this node used before lines were judged at their width, in
#: the standard errors of that mean.
_SCORE_SNR = 3.0 * np.sqrt(3.0)


@dataclass(frozen=True)
class Line:
    """A transition seen in a frequency sweep: centre and its stderr, FWHM (Hz) and SNR.

    `index` is the sweep point of the peak; on the grid the stderr is half a step. `scale` is
    the number of sweep points averaged when the SNR was judged (`find_broad_lines`).
    """

    centre: float
    stderr: float
    fwhm: float
    snr: float
    index: int
    scale: int = 1


@dataclass(frozen=True)
class _Look:
    """One coarse sweep at a symmetry point (bias and its stderr): its frequencies, averaged
    IQ, the refined qubit line in it (None if none) and the shots per point it took."""

    bias: float
    stderr: float
    frequency: np.ndarray
    iq: np.ndarray
    line: Line | None
    shots: int


def point_noise(y: np.ndarray) -> float:
    """Noise of one point from point-to-point differences: blind to peaks and slow baselines."""
    return max(difference_noise(y), float(np.finfo(float).tiny))


def find_lines(frequency: np.ndarray, iq: np.ndarray, min_snr: float) -> list[Line]:
    """Every peak of a saturation sweep at least `min_snr` noise deviations high, by frequency.

    The response is smoothed over three points and the height compared with the noise of
    one point, as `extract_peaks` does; centres are on the grid (see `refine_line`).
    """
    frequency = np.asarray(frequency, float)
    iq = np.asarray(iq)
    if iq.size < _MIN_FIT_POINTS or not np.all(np.isfinite(iq)):
        return []
    y = response_to_peak(iq)
    noise = point_noise(y)
    smooth = np.convolve(y, np.ones(3) / 3, mode="same")
    step = float(np.median(np.diff(frequency)))
    # Prominence, not only height: noise bumps on one power-broadened line are not lines.
    peaks, props = find_peaks(
        smooth, height=min_snr * noise, prominence=0.5 * min_snr * noise, width=1.0
    )
    return [
        Line(float(frequency[k]), step / 2, float(width) * step, float(smooth[k] / noise), int(k))
        for k, width in zip(peaks, props["widths"], strict=True)
    ]


def _matched_projection(iq: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The response (raw, and averaged over `scale` points) projected on the direction the
    averaged trace varies along, with a peak positive.

    A weak line hides in the noise of single points, so the direction of the raw trace's
    largest variance is the noise's; averaged over the line's width the line dominates it.
    """
    iq = np.asarray(iq).astype(complex)
    centred = iq - (np.median(iq.real) + 1j * np.median(iq.imag))
    smooth = _boxcar(centred, scale)
    axis = np.linalg.svd(np.stack([smooth.real, smooth.imag]), full_matrices=False)[0][:, 0]
    raw = axis @ np.stack([centred.real, centred.imag])
    averaged = axis @ np.stack([smooth.real, smooth.imag])
    sign = 1.0 if averaged.max() >= -averaged.min() else -1.0
    return sign * raw, sign * averaged


def _boxcar(y: np.ndarray, points: int) -> np.ndarray:
    """`y` averaged over `points` neighbours, the sweep's outside taken as background (0)."""
    return np.convolve(y, np.ones(points) / points, mode="same")


def _distinct(lines: list[Line]) -> list[Line]:
    """One line per peak, at the scale that shows it best, by frequency."""
    kept: list[Line] = []
    for line in sorted(lines, key=lambda x: -x.snr):
        if all(abs(line.centre - other.centre) > max(line.fwhm, other.fwhm) for other in kept):
            kept.append(line)
    return sorted(kept, key=lambda x: x.centre)


def find_broad_lines(
    frequency: np.ndarray, iq: np.ndarray, min_snr: float, scales: tuple[int, ...] = LINE_SCALES
) -> list[Line]:
    """Every line of a strong-tone sweep whose response, averaged over its width, stands
    `min_snr` standard errors of that average above the background; by frequency.

    A power-broadened line spans a few to tens of coarse steps. Judged point by point its SNR
    is that of one point; averaged over its width (a matched filter) it gains √width, which
    is √width less noise for the same shots, or width-fold fewer shots for the same evidence.
    The sweep is averaged over each of `scales` points and each line is judged at the scale
    that shows it best, against the noise of that average (point noise / √scale). The width
    is the averaged peak's at half its height above the background (the median), with the
    boxcar's removed in quadrature (exact for a Lorentzian); centres are on the grid (see
    `refine_broad_line`).
    """
    frequency = np.asarray(frequency, float)
    iq = np.asarray(iq)
    if iq.size < _MIN_FIT_POINTS or not np.all(np.isfinite(iq)):
        return []
    step = float(np.median(np.diff(frequency)))
    lines = []
    for scale in (k for k in scales if k <= iq.size // 5):
        raw, averaged = _matched_projection(iq, scale)
        noise = point_noise(raw) / np.sqrt(scale)
        peaks, _ = find_peaks(averaged, height=min_snr * noise, prominence=0.5 * min_snr * noise)
        for k, width in zip(peaks, _half_height_widths(averaged, peaks), strict=True):
            fwhm = np.sqrt(max((width * step) ** 2 - (scale * step) ** 2, step**2))
            snr = float(averaged[k] / noise)
            lines.append(Line(float(frequency[k]), step / 2, float(fwhm), snr, int(k), scale))
    return _distinct(lines)


def _half_height_widths(y: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Widths (in points) of `peaks` of `y` at half their height above zero, the background.

    Not at half their prominence: a line on a neighbour's flank or at the sweep's edge has a
    small prominence, and its width there would be the tip's.
    """
    if peaks.size == 0:
        return np.zeros(0)
    ends = (np.zeros(peaks.size, int), np.full(peaks.size, y.size - 1))
    return peak_widths(y, peaks, 0.5, (y[peaks], *ends))[0]


def refine_broad_line(frequency: np.ndarray, iq: np.ndarray, line: Line) -> Line:
    """`line` of `find_broad_lines` with its centre from a local Lorentzian fit (`refine_peak`)
    to the response projected on the line's direction and averaged over three points.

    The average over the line's own scale shows a faint line best but, near the sweep's edge,
    pulls its peak away from the edge; three points only steady the fit's start. The fit takes
    the averages as independent, but only every third one is, so its stderr is scaled by √3.
    The width stays the matched scale's (a width fitted to a faint line's flanks wanders by
    factors, and the fine tone is scaled from it).
    """
    raw, _ = _matched_projection(iq, line.scale)
    centre, stderr = refine_peak(np.asarray(frequency, float), _boxcar(raw, 3), line.index)
    return replace(line, centre=centre, stderr=stderr * np.sqrt(3.0))


def strong_tone_lines(frequency: np.ndarray, iq: np.ndarray, min_snr: float) -> list[Line]:
    """The lines of a strong-tone sweep: those three-point smoothing shows (`find_lines`),
    else those only averaging over a broad line's width shows (`find_broad_lines`).

    A line that shows point by point keeps the three-point width and centre the fine tone
    has always been scaled from: a matched average over a broad, bright line splits its noise
    bumps into lines and smears its width. Only a faint line needs the matched average.
    """
    return find_lines(frequency, iq, min_snr) or find_broad_lines(frequency, iq, min_snr)


def refine_strong_tone_line(frequency: np.ndarray, iq: np.ndarray, line: Line) -> Line:
    """`line` of `strong_tone_lines` with a sub-grid centre, as its detector saw it."""
    if line.scale == 1:
        return refine_line(frequency, iq, line)
    return refine_broad_line(frequency, iq, line)


def line_amplitude(iq: np.ndarray, line: Line) -> float:
    """Response height of a `strong_tone_lines` line in its sweep (SNR times the noise)."""
    raw, _ = _matched_projection(iq, line.scale)
    return line.snr * point_noise(raw) / np.sqrt(line.scale)


def refine_line(frequency: np.ndarray, iq: np.ndarray, line: Line) -> Line:
    """The line with its centre from a local Lorentzian fit (grid point if that fails)."""
    centre, stderr = refine_peak(np.asarray(frequency, float), response_to_peak(iq), line.index)
    return replace(line, centre=centre, stderr=stderr)


def qubit_line(lines: list[Line], min_relative_snr: float) -> Line | None:
    """The lowest-frequency line not much weaker than the strongest: f01 at half flux."""
    if not lines:
        return None
    strongest = max(line.snr for line in lines)
    return next(line for line in lines if line.snr >= min_relative_snr * strongest)


def centre_readout(session: QubitSession, name: str, span: float, points: int = 121) -> float:
    """Move the readout tone to the resonator dip at the present bias (drive off).

    The dressed resonator moves with flux, by several κ where |χ| > κ, so a readout
    frequency found at one bias can sit off the line at another and show no qubit contrast.
    The sweep spans ±max(`span`, 6κ) around the last known readout frequency. It is a
    continuous-wave resonator sweep, as a lab runs it (no herald: a pre-measurement per shot
    would double the repetition time of a measurement that needs no qubit pulse); the
    deepest point of the thermal mixture of the qubit states' dips still shows contrast.
    """
    readout = session.channel("readout")
    drive = session.channel("drive")
    sequence, herald = drive.sequence(), drive.herald()
    centre = session.value("readout_frequency")
    span = max(span, 6 * session.get("resonator_kappa", 0.0))
    sweep = np.linspace(centre - span, centre + span, points)
    session.configure(drive={"sequence": "none", "herald": False})
    try:
        iq = session.measure(name, "readout_frequency", sweep)["iq"].values
    finally:
        session.configure(drive={"sequence": sequence, "herald": herald})
    best = float(sweep[np.argmin(np.abs(iq))])
    readout.frequency(best)
    return best


def lorentzian_peak(x, centre, fwhm, height, offset):
    """Saturated two-level population versus drive frequency: a Lorentzian on a baseline."""
    return offset + height / (1.0 + (2.0 * (x - centre) / fwhm) ** 2)


@dataclass(frozen=True)
class LineFit:
    """Lorentzian fit of a fine saturation sweep, with the noise it was judged against."""

    result: lmfit.model.ModelResult
    x: np.ndarray
    y: np.ndarray
    noise: float
    #: each point's noise (V) when the sweep's runs measured it, else None (uniform weights)
    point_noise: np.ndarray | None = None

    def value(self, name: str) -> tuple[float, float]:
        parameter = self.result.params[name]
        stderr = parameter.stderr if parameter.stderr is not None else np.inf
        return float(parameter.value), float(stderr)

    @property
    def snr(self) -> float:
        """Fitted line height over its standard error: the evidence the whole fine sweep
        holds for the line (one point's noise would undersell a faint, well-sampled line;
        the coarse search, which must not mistake noise for a line among hundreds of
        points, keeps the per-point threshold)."""
        height = self.result.params["height"]
        stderr = height.stderr if height.stderr is not None else np.inf
        return abs(height.value) / stderr if stderr > 0 else 0.0

    @property
    def height_per_noise(self) -> float:
        """Fitted line height over one point's noise."""
        return abs(self.result.params["height"].value) / self.noise

    def curve(self, points: int = 600) -> tuple[np.ndarray, np.ndarray]:
        x = np.linspace(self.x.min(), self.x.max(), points)
        return x, self.result.eval(x=x)


def fit_line(
    frequency: np.ndarray, iq: np.ndarray, runs: tuple[np.ndarray, np.ndarray] | None = None
) -> LineFit:
    """Lorentzian plus constant on the IQ projected to a positive peak.

    Weighted by the point-to-point noise, uniformly; with the sweep's `runs` (their traces
    and shots, two or more), refitted with each point's own noise as their scatter measures
    it (`measured_noise`): on the line the qubit's projection noise adds to the readout's,
    which uniform weights miss, failing the χ² test of a right line and understating the
    centre's error (chip 5048: 3.4×). Raises FitError on non-finite data, too few points or
    a failed fit.
    """
    x = np.asarray(frequency, float)
    iq = np.asarray(iq)
    if x.size < _MIN_FIT_POINTS or not np.all(np.isfinite(iq)):
        raise FitError(f"fine sweep has {x.size} points or non-finite values")
    centre_iq, direction = peak_projection(iq)
    y = projected_on(iq, centre_iq, direction)
    noise = point_noise(y)
    step = float(np.median(np.diff(x)))
    smooth = np.convolve(y, np.ones(3) / 3, mode="same")
    k = int(np.argmax(smooth))
    above = np.flatnonzero(smooth > smooth[k] / 2)
    fwhm = max(float(np.ptp(x[above])) if above.size > 1 else step, step)
    params = lmfit.Parameters()
    params.add("centre", value=x[k], min=x[0] - np.ptp(x), max=x[-1] + np.ptp(x))
    params.add("fwhm", value=fwhm, min=step / 10, max=10 * np.ptp(x))
    params.add("height", value=float(smooth[k]))
    params.add("offset", value=float(np.median(y)))
    model = lmfit.Model(lorentzian_peak)
    sigma = None
    try:
        result = model.fit(y, params, x=x, weights=np.full(x.size, 1.0 / noise))
        if runs is not None and np.all(np.isfinite(result.best_fit)):
            traces = projected_on(runs[0], centre_iq, direction)
            sigma = measured_noise(traces, runs[1], result)
            result = model.fit(y, result.params, x=x, weights=1.0 / sigma, scale_covar=False)
            scale_errors_by_misfit(result)
    except (ValueError, TypeError) as error:
        raise FitError(f"Lorentzian fit failed: {error}") from None
    if not np.all(np.isfinite(result.best_fit)):
        raise FitError("Lorentzian fit diverged")
    return LineFit(result, x, y, noise, sigma)


def measured_noise(
    traces: np.ndarray, shots: np.ndarray, result: lmfit.model.ModelResult
) -> np.ndarray:
    """Each point's noise (V) in the shot-weighted mean of the runs `traces` (runs × points,
    projected), from their scatter, smoothed as the readout's noise plus an excess that
    follows the fitted line's shape.

    A driven qubit is found in 0 or 1 shot by shot, so on the line a point scatters by the
    projection noise p(1 − p)·(blob separation)²/shots on top of the amplifier's (built-in
    chip: 2.4× in amplitude). One point's scatter over a few runs is too noisy a weight, so
    the variances are fitted (least squares, both terms ≥ 0) as a + b·shape. The runs repeat
    the same sweep, so a misfit of the line does not enter: χ² still tests the line's shape.
    """
    n = np.asarray(shots, float)[:, None]
    mean = (n * traces).sum(axis=0) / n.sum()
    variance = (n * (traces - mean) ** 2).sum(axis=0) / ((n.size - 1) * n.sum())
    v = result.params.valuesdict()
    height = v["height"] if v["height"] > 0 else np.inf
    shape = np.clip((result.best_fit - v["offset"]) / height, 0.0, 1.0)
    (floor, excess), _ = nnls(np.column_stack([np.ones_like(shape), shape]), variance)
    if not floor > 0:  # nothing off the line to measure it by: the median point's
        floor = max(float(np.median(variance)), float(np.finfo(float).tiny))
    return np.sqrt(floor + excess * shape)


def _runs(data: xr.Dataset) -> tuple[np.ndarray, np.ndarray] | None:
    """The fine sweep's runs (traces, shots) when the record keeps them (older ones do not)."""
    if "iq_runs" not in data:
        return None
    return data["iq_runs"].values, data[f"{RUNS}_shots"].values


@dataclass
class QubitSpectroscopy(Node):
    """Saturation spectroscopy at the sweet spot; produces qubit_frequency (Hz)."""

    name = "qubit_spectroscopy"
    requires = ("flux_symmetry_point", "readout_frequency")
    produces = ("qubit_frequency", "flux_sweet_spot", "state_integration")

    coarse_start: float = 20e6  # Hz: a fluxonium at half flux is above tens of MHz ...
    coarse_stop: float = 2.0e9  # ... and below ~2 GHz
    coarse_step: float = 4e6  # Hz, a few steps per power-broadened line
    sparse_every: int = 3  # coarse points of a point's first look taken first (`_sparse_look`)
    #: linewidths either side of a line seen in the sparse look that are measured at every
    #: point to confirm it: the line's half maximum must lie inside (`_lines`), and the
    #: median baseline must lie off it (a window the line filled set it on the line)
    confirm_widths: float = 3.0
    coarse_amplitude: float = 0.5  # V, strong enough for a line tens of MHz wide
    #: Hz around a previously calibrated f01 searched first (0: always the whole range)
    warm_half_span: float = 100e6
    fine_linewidth: float = 0.5e6  # Hz, wanted FWHM of the weak-tone line
    fine_half_span: float = 6.0  # fine window half-width in wanted linewidths
    #: fine sweep points per wanted linewidth, whatever the window: the gate asks for 3, the
    #: χ² test for the line's shape; more points at the same shots only add precision, and
    #: the averaging adds the shots the precision needs
    fine_points_per_linewidth: float = 5.0
    shots: int = 200  # first look of each coarse sweep; averaging adds what the line needs
    #: first look of the fine sweep: `fine_runs` runs of `fine_shots` each, whose scatter
    #: is each point's noise (`measured_noise`); the averaging adds what the precision needs,
    #: so a first look too small costs nothing, one too large all its excess. At 200 the
    #: built-in chip's and sampled chip 5007's looks met every criterion with room to spare
    #: (centre 0.011–0.035 linewidths against 0.1), 16 device-s more than 100 needs
    fine_shots: int = 100
    fine_runs: int = 2
    budget: int = 16_000  # shots per point a weak line may take
    herald: bool = True
    readout_span: float = 6e6  # Hz, at least: resonator re-centring window at each point
    min_line_snr: float = 8.0  # coarse detection threshold
    min_relative_snr: float = 0.25  # weaker lines than this fraction of the strongest are not f01
    min_snr: float = 10.0
    max_chi2: float = 3.0
    max_relative_error: float = 0.1  # of the centre, in linewidths
    #: relative stderr of the linewidth: no node takes it on, it only judges the window and
    #: re-scales the tone, so it needs less precision than the centre. At 0.1 two faint
    #: sampled chips (5016, 5054) spent the shot budget, 12 600 and 18 300 device-s, and were
    #: rejected at 0.107 and 0.118 with f01 right to 0.5 and 0.2 stderr
    max_linewidth_error: float = 0.25
    min_edge_distance: float = 1.5  # linewidths between the centre and the window edges
    min_points_per_linewidth: float = 3.0
    max_linewidth_fraction: float = 0.3  # of the fine window
    max_coarse_offset: float = 2.0  # coarse linewidths between the fine and the coarse centre
    fine_retries: int = 1  # re-centred, re-powered fine sweeps when the first is off
    #: the readout integration the nodes up to readout optimisation use, measured at the
    #: line once it is placed (`state_integration`)
    integration: StateIntegration = field(default_factory=StateIntegration)
    #: best state separation over its standard error below which no integration is chosen
    min_integration_resolved: float = 3.0

    def acquire(self, session: QubitSession) -> xr.Dataset:
        session.operating_point()
        session.configure(
            readout={"shots": self.shots}, drive={"sequence": "saturation", "herald": self.herald}
        )
        points = self._symmetry_points(session)
        looks: list[_Look] = []  # every coarse look, in the order taken
        found = self._warm_look(session, points[0], looks)
        if found is None:
            found = self._search(session, points, looks)
        look = found or next(x for x in looks if x.shots == max(y.shots for y in looks))
        tried = list(dict.fromkeys((x.bias, x.stderr) for x in looks))
        if looks[-1].bias != look.bias:  # back to the point with the qubit line
            session.configure(flux={"voltage": look.bias})
            self._centre_readout(session)
        tried = [*(t for t in tried if t[0] != look.bias), (look.bias, look.stderr)]
        line = look.line
        if line is None:  # nothing to zoom on: the record says why, without more device time
            return self._dataset(session, None, look, tried, 0.0)
        fine, amplitude = self._fine_settings(line)
        session.configure(readout={"shots": self.fine_shots})
        dataset = None
        for attempt in range(self.fine_retries + 1):
            session.configure(drive={"amplitude": amplitude})
            measured = measure_averaged(
                session,
                self.name,
                SWEEP,
                fine,
                self._fine_score(fine),
                1.0,
                self.budget,
                min_runs=self.fine_runs,
            )
            dataset = self._dataset(session, measured, look, tried, amplitude)
            retry = self._recentred(dataset, amplitude) if attempt < self.fine_retries else None
            if retry is None:
                break
            fine, amplitude = retry
        return self._with_integration(session, dataset, amplitude)

    def _with_integration(
        self, session: QubitSession, data: xr.Dataset, amplitude: float
    ) -> xr.Dataset:
        """The record with the state-integration shots at the fitted line, driven with the
        fine sweep's tone (`state_integration`); as it is when the line cannot be placed, or
        when readout optimisation has chosen the integration (`QubitSession.state_integration`
        would not use another)."""
        if "readout_duration" in session.known:
            return data
        try:
            centre = self.analyse(data).values["qubit_frequency"][0]
        except (FitError, ValueError, np.linalg.LinAlgError):
            return data
        if not np.isfinite(centre):
            return data
        session.configure(drive={"frequency": centre})
        shots = self.integration.measure(session, f"{self.name}_integration", amplitude)
        return xr.merge([data, shots], combine_attrs="no_conflicts").assign_attrs(state_line=centre)

    def _warm_look(
        self, session: QubitSession, point: tuple[float, float], looks: list[_Look]
    ) -> _Look | None:
        """A daily run: the line looked for where the last calibration left it, at the point it
        was found at; None (the search starts over) if it is not there or nothing is known."""
        warm = self._warm_window(session)
        if warm is None:
            return None
        looks.append(self._coarse_look(session, point, warm, self.budget))
        return looks[-1] if looks[-1].line is not None else None

    def _search(
        self, session: QubitSession, points: list[tuple[float, float]], looks: list[_Look]
    ) -> _Look | None:
        """The look with the qubit line over the symmetry points, or None.

        With two points, each first gets one look at the first-look shots, and only if
        neither shows a line is each averaged up to the budget in turn: averaging at the
        wrong (integer-flux) point, where f01 lies far above the range, is the costliest way
        to learn nothing (sampled chip 5001: 7900 device-s there before its half-flux point,
        whose line showed in the first 200 shots). Where a line is found, the points not yet
        searched to the budget are searched below it (`_below`).
        """
        start, top = self._coarse_span(session)
        coarse = np.arange(start, top + self.coarse_step / 2, self.coarse_step)
        coarse = coarse[coarse <= top]
        found, searched = None, set()
        for budget in (self.shots, self.budget) if len(points) > 1 else (self.budget,):
            for point in points:
                sparse = budget == self.shots or len(points) == 1  # this point's first look
                looks.append(self._coarse_look(session, point, coarse, budget, sparse=sparse))
                if budget >= self.budget:
                    searched.add(point)
                if looks[-1].line is not None:
                    found = looks[-1]
                    break
            if found is not None:
                break
        for point in points if found is not None else []:
            if point != (found.bias, found.stderr) and point not in searched:
                found = self._below(session, point, found, looks) or found
        return found

    def _below(
        self, session: QubitSession, point: tuple[float, float], found: _Look, looks: list[_Look]
    ) -> _Look | None:
        """The look at the other symmetry `point` if it shows a line below `found`'s, else None.

        f01 is lowest at half flux: at the other point only a line below the one already
        found could mean that this point is the half-flux one; the sweep stops once a line
        `min_relative_snr` as strong as the found one would stand out (`_line_score`).
        """
        start, _ = self._coarse_span(session)
        stop = found.line.centre - 2 * found.line.fwhm
        if stop < start + 10 * self.coarse_step:
            return None
        coarse = np.arange(start, stop + self.coarse_step / 2, self.coarse_step)
        coarse = coarse[coarse <= stop]
        reference = (line_amplitude(found.iq, found.line), found.line)
        looks.append(self._coarse_look(session, point, coarse, self.budget, reference))
        return looks[-1] if looks[-1].line is not None else None

    def _coarse_span(self, session: QubitSession) -> tuple[float, float]:
        """Where the coarse search runs: `coarse_start` … `coarse_stop` within the lowest band
        the drive reaches there. f01 at half flux is the lowest line, so a drive with a gap
        (e.g. 0–0.5 and 2–18 GHz) is searched below it, never refused mid-sweep in it."""
        bands = session.bands("drive", "frequency")
        pieces = band_pieces(bands, self.coarse_start, self.coarse_stop)
        if not pieces:
            raise ContractError(
                f"{self.name}: the drive reaches {bands_text(bands)}, nothing of the coarse "
                f"search's {self.coarse_start / 1e9:.4g}–{self.coarse_stop / 1e9:.4g} GHz"
            )
        return pieces[0].low, pieces[0].high

    def _warm_window(self, session: QubitSession) -> np.ndarray | None:
        """The coarse sweep ± `warm_half_span` around the qubit frequency a previous run
        calibrated (none in a bring-up: this node is the first to measure it)."""
        known = session.known.get("qubit_frequency")
        if known is None or not np.isfinite(known.value) or self.warm_half_span <= 0:
            return None
        start, top = self._coarse_span(session)
        low = max(start, float(known.value) - self.warm_half_span)
        high = min(top, float(known.value) + self.warm_half_span)
        if high - low < 10 * self.coarse_step:
            return None
        return np.arange(low, high + self.coarse_step / 2, self.coarse_step)

    def _coarse_look(
        self,
        session: QubitSession,
        point: tuple[float, float],
        coarse: np.ndarray,
        budget: int,
        reference: tuple[float, Line] | None = None,
        sparse: bool = False,
    ) -> _Look:
        """Strong-tone sweep at the symmetry `point`, averaged up to `budget` shots per point
        until its qubit line shows: its IQ and the refined qubit line in it, if any.

        `reference` is the response amplitude of a line found elsewhere, and that line: the
        sweep then also stops once a line `min_relative_snr` as strong would stand out
        (looking longer for a line that is not there is the costliest way to learn nothing).
        With `sparse`, the first look is taken sparse first (`_sparse_look`).
        """
        session.configure(flux={"voltage": point[0]})
        self._centre_readout(session)
        session.configure(drive={"amplitude": self.coarse_amplitude})
        if sparse:
            look = self._sparse_look(session, point, coarse)
            if look.line is not None or budget <= self.shots:
                return look
        data = measure_averaged(
            session,
            self.name,
            SWEEP,
            coarse,
            self._line_score(coarse, reference),
            self.min_line_snr,
            budget,
        )
        return self._look(point, coarse, data["iq"].values, int(data.attrs["shots"]))

    def _sparse_look(
        self, session: QubitSession, point: tuple[float, float], coarse: np.ndarray
    ) -> _Look:
        """The first look at every `sparse_every`-th point of the coarse sweep (and its last);
        a line there is confirmed by measuring every point within `confirm_widths` of its
        linewidths and finding it in that window. Without a confirmed line the rest of the
        sweep is measured: the whole sweep at the first-look shots, for the cost of one look.

        The coarse step puts a few points on the narrowest power-broadened lines, but most
        are far broader (14–290 MHz on 40 of 41 chips against a 4 MHz step), and the
        first look over the whole range was most of the node's device time (the built-in
        chip: 99 of 144 device-s).
        """
        measured = np.zeros(coarse.size, bool)
        iq = np.empty(coarse.size, complex)

        def measure(points: np.ndarray) -> None:
            """The `points` (a mask of the sweep) not yet measured, at the first-look shots."""
            new = points & ~measured
            if new.any():
                iq[new] = session.measure(self.name, SWEEP, coarse[new])["iq"].values
                measured[new] = True

        sparse = np.zeros(coarse.size, bool)
        sparse[:: self.sparse_every] = sparse[-1] = True
        session.configure(readout={"shots": self.shots})
        measure(sparse)
        look = self._look(point, coarse[sparse], iq[sparse], self.shots)
        if look.line is not None and not measured.all():
            near = np.abs(coarse - look.line.centre) <= self.confirm_widths * max(
                look.line.fwhm, self.sparse_every * self.coarse_step
            )
            measure(near)
            look = self._look(point, coarse[near], iq[near], self.shots)
            if look.line is not None:
                return look
        measure(np.ones(coarse.size, bool))
        return self._look(point, coarse, iq, self.shots)

    def _look(
        self, point: tuple[float, float], frequency: np.ndarray, iq: np.ndarray, shots: int
    ) -> _Look:
        """A coarse sweep's look: the refined qubit line in it, if any."""
        line = qubit_line(self._lines(frequency, iq), self.min_relative_snr)
        if line is not None:
            line = refine_strong_tone_line(frequency, iq, line)
        return _Look(*point, frequency, iq, line, shots)

    def _lines(self, frequency: np.ndarray, iq: np.ndarray) -> list[Line]:
        """The coarse sweep's lines, without those whose half maximum lies beyond an edge the
        node chose (a warm window, a stop below a line already found, the drive's upper limit).

        Why: the baseline is the sweep's median, so a line broad enough to fill such a window
        makes both its edges look like lines; the lowest was taken for f01 (a drift check
        that recalibrated a line broadened threefold by flux noise off the sweet spot: edge
        "lines" 90 MHz from f01, a fine sweep with nothing in it, 4000 device-s). The edges
        of the whole search range are the physics' own: lines there are kept.
        """
        lines = strong_tone_lines(frequency, iq, self.min_line_snr)
        step = float(np.median(np.diff(frequency))) if frequency.size > 1 else 0.0
        low = frequency[0] if frequency[0] > self.coarse_start + step / 2 else -np.inf
        high = frequency[-1] if frequency[-1] < self.coarse_stop - step / 2 else np.inf
        return [  # a line's half maximum must lie inside
            ln for ln in lines if ln.centre - low >= ln.fwhm / 2 <= high - ln.centre
        ]

    def _line_score(self, frequency: np.ndarray, reference: tuple[float, Line] | None = None):
        """Averaging target of the coarse sweep: the SNR of its qubit line (0 if none).

        With a `reference` (amplitude, line), a sweep quiet enough to show a line of that
        width `min_relative_snr` as strong also scores: the reference's line would not have
        been taken for f01 next to a weaker one.
        """

        def score(iq: np.ndarray) -> float:
            # as `strong_tone_lines` will judge it: point by point if it shows so, else averaged
            lines = find_lines(frequency, iq, 3.0) or find_broad_lines(frequency, iq, _SCORE_SNR)
            line = qubit_line(lines, self.min_relative_snr)
            seen = line.snr if line else 0.0
            if reference is None:
                return seen
            amplitude, like = reference
            raw, _ = _matched_projection(iq, like.scale)
            noise = point_noise(raw) / np.sqrt(like.scale)
            return max(seen, self.min_relative_snr * amplitude / noise)

        return score

    def _fine_score(self, frequency: np.ndarray):
        """Averaging target of the fine sweep: how far its noise-limited criteria are met
        (1: just met; the line's SNR, the centre's and the linewidth's precision all follow
        the √shots law), 0 if nothing fits; judged, as the analysis will judge them, with
        each point's noise measured by the runs."""

        def score(iq: np.ndarray, runs: tuple[np.ndarray, np.ndarray] | None = None) -> float:
            try:
                fit = fit_line(frequency, iq, runs)
            except FitError:
                return 0.0
            return noise_limited_score(self._line_precision(fit), ("signal-to-noise", "stderr"))

        return score

    def _line_precision(self, fit: LineFit) -> list[Criterion]:
        """The fine line's noise-limited criteria: its SNR and the precision of its centre
        and linewidth (what more shots improve)."""
        centre_err = fit.value("centre")[1]
        fwhm, fwhm_err = fit.value("fwhm")
        fwhm = abs(fwhm)
        return [
            at_least("line signal-to-noise", fit.snr, self.min_snr),
            at_most("centre stderr / linewidth", centre_err / fwhm, self.max_relative_error),
            at_most(
                "linewidth relative stderr",
                relative_error(fwhm, fwhm_err),
                self.max_linewidth_error,
            ),
        ]

    def _recentred(self, data: xr.Dataset, amplitude: float) -> tuple[np.ndarray, float] | None:
        """A new fine window and tone when the first fine sweep's line is off-centre, too
        broad or too narrow (the coarse line only locates f01 to a fraction of its
        power-broadened width, and gives that width only roughly when faint; a line narrower
        than wanted spreads over fewer points with less saturated signal, and its width is
        then the criterion that fails); None when the sweep is fine as it is or gives nothing
        to re-centre on."""
        try:
            analysis = self.analyse(data)
        except FitError:
            return None
        centre, fwhm = (
            analysis.values["qubit_frequency"][0],
            analysis.values.get("qubit_linewidth", (np.nan, np.nan))[0],
        )
        if self.gate(analysis).accepted or not (np.isfinite(centre) and fwhm > 0):
            return None
        scale = float(np.clip(self.fine_linewidth / fwhm, 0.1, 10.0))
        amplitude = min(amplitude * scale, self.coarse_amplitude)
        return self._fine_window(centre, self.fine_half_span * self.fine_linewidth), amplitude

    def _dataset(self, session, measured, look, tried, amplitude) -> xr.Dataset:
        """The record, with the fine sweep's runs; without a coarse line (`measured` None)
        the fine sweep is not measured and its place holds no data."""
        coarse, coarse_iq, line = look.frequency, look.iq, look.line
        if measured is None:
            centre = 0.5 * (self.coarse_start + self.coarse_stop)
            fine = self._fine_window(centre, self.fine_linewidth)
            fine_iq = xr.DataArray(np.full(fine.size, np.nan + 0j), {SWEEP: fine}, (SWEEP,))
            fine_runs = {}
        else:
            fine_iq = measured["iq"]
            fine_runs = {"iq_runs": measured["iq_runs"]} if "iq_runs" in measured else {}
        return xr.Dataset(
            {"iq": fine_iq, "iq_coarse": (COARSE, coarse_iq), **fine_runs},
            coords={COARSE: coarse},
            attrs={
                "experiment": self.name,
                "qubit": session.qubit,
                "flux_voltage": tried[-1][0],
                "flux_voltage_stderr": tried[-1][1],
                "symmetry_points_tried": np.array([bias for bias, _ in tried]),
                "readout_frequency": float(session.channel("readout").frequency()),
                "coarse_amplitude": self.coarse_amplitude,
                "fine_amplitude": amplitude,
                "coarse_line": line.centre if line else np.nan,
                "coarse_linewidth": line.fwhm if line else np.nan,
                "herald": int(self.herald),
                "shots": self.fine_shots,
                "coarse_shots": look.shots,
            },
        )

    @staticmethod
    def _symmetry_points(session: QubitSession) -> list[tuple[float, float]]:
        """(bias, stderr) of the sweet spot, then of the other symmetry point if one was left."""
        return [(float(p.value), float(p.stderr)) for p in session.symmetry_points()]

    def _centre_readout(self, session: QubitSession) -> None:
        centre_readout(session, f"{self.name}_readout", self.readout_span)

    def _fine_settings(self, line: Line) -> tuple[np.ndarray, float]:
        """Fine window around the coarse line, and the tone that makes it ~fine_linewidth wide."""
        half = max(self.fine_half_span * self.fine_linewidth, 3 * line.stderr, self.coarse_step)
        amplitude = self.coarse_amplitude * self.fine_linewidth / max(line.fwhm, self.coarse_step)
        amplitude = float(np.clip(amplitude, 1e-5, self.coarse_amplitude))
        return self._fine_window(line.centre, half), amplitude

    def _fine_window(self, centre: float, half: float) -> np.ndarray:
        """The fine sweep over `centre` ± `half`, `fine_points_per_linewidth` points per
        wanted linewidth (at least the fit's minimum)."""
        points = int(np.ceil(2 * half * self.fine_points_per_linewidth / self.fine_linewidth))
        return np.linspace(centre - half, centre + half, max(points + 1, _MIN_FIT_POINTS))

    def analyse(self, data: xr.Dataset) -> Analysis:
        frequency = data[SWEEP].values
        bias = (float(data.attrs["flux_voltage"]), float(data.attrs["flux_voltage_stderr"]))
        lines = self._lines(data[COARSE].values, data["iq_coarse"].values)
        coarse = qubit_line(lines, self.min_relative_snr)  # the line the fine sweep zoomed on
        report = self._report(data, lines)
        coarse_snr = at_least(
            "coarse line signal-to-noise", coarse.snr if coarse else 0.0, self.min_line_snr
        )
        if coarse is None:
            return Analysis(
                values={"qubit_frequency": (np.nan, np.nan), "flux_sweet_spot": bias},
                criteria=[coarse_snr],
                report=report + self._detection_limit(data),
            )
        try:
            fit = fit_line(frequency, data["iq"].values, _runs(data))
        except FitError as error:
            return Analysis(
                values={"qubit_frequency": (np.nan, np.nan), "flux_sweet_spot": bias},
                criteria=[coarse_snr, at_least("Lorentzian fit converged", 0.0, 1.0)],
                report=report + f"fit failed: {error}\n",
            )
        centre, centre_err = fit.value("centre")
        fwhm, fwhm_err = fit.value("fwhm")
        fwhm = abs(fwhm)
        snr, *precision = self._line_precision(fit)
        low, high = float(frequency.min()), float(frequency.max())
        step = (high - low) / (frequency.size - 1)
        criteria = [
            coarse_snr,
            at_most(
                "fine centre off the coarse line (coarse linewidths)",
                abs(centre - coarse.centre) / coarse.fwhm,
                self.max_coarse_offset,
            ),
            snr,
            at_most(
                "Lorentzian reduced chi-square",
                fit.result.redchi,
                chi2_limit(self.max_chi2, fit.height_per_noise),
            ),
            at_least(
                "centre to window edge (linewidths)",
                min(centre - low, high - centre) / fwhm,
                self.min_edge_distance,
            ),
            at_least("points per linewidth", fwhm / step, self.min_points_per_linewidth),
            at_most("linewidth / window", fwhm / (high - low), self.max_linewidth_fraction),
            *precision,
        ]
        fit_x, fit_y = fit.curve()
        integration, integration_report = self._integration(data)
        return Analysis(
            values={
                "qubit_frequency": (centre, centre_err),
                "qubit_linewidth": (fwhm, fwhm_err),
                "flux_sweet_spot": bias,
                "state_integration": integration,
            },
            criteria=criteria,
            report=report + fit.result.fit_report() + integration_report,
            fit=fit.result,
            curves={
                "x": fit.x,
                "y": fit.y,
                "fit_x": fit_x,
                "fit_y": fit_y,
                "xlabel": "drive frequency (Hz)",
                "ylabel": "projected IQ (V)",
            },
        )

    def _integration(self, data: xr.Dataset) -> tuple[tuple[float, float], str]:
        """The chosen state integration (s) ± half a ladder step, and its report line; NaN
        when not measured, or when no integration time separated the states clearly."""
        if "state_mean" not in data:
            return (np.nan, np.nan), ""
        choice = separations(data)
        table = ", ".join(
            f"{t * 1e6:.3g} µs {d:.3g}"
            for t, d in zip(choice.durations, choice.separation, strict=True)
        )
        text = f"\nstate separation per shot by integration time ({table}): "
        if choice.resolved < self.min_integration_resolved:
            return (np.nan, np.nan), text + "none resolved, nothing chosen\n"
        return (choice.duration, choice.resolution), text + f"{choice.duration * 1e6:.3g} µs\n"

    def _detection_limit(self, data: xr.Dataset) -> str:
        """Why no line was found, physically: the smallest line the coarse sweep would have
        shown, against its noise (more shots, a stronger readout or a larger dispersive shift
        would show a weaker one)."""
        _, averaged = _matched_projection(data["iq_coarse"].values, 1)
        noise = point_noise(averaged)
        widths = [k for k in LINE_SCALES if k <= data[COARSE].size // 5]
        steps = f"{widths[0]}–{widths[-1]} steps" if widths else "one step"
        smallest = self.min_line_snr * noise / np.sqrt(widths[-1] if widths else 1)
        return (
            f"no qubit line: the coarse sweep's point noise is {noise:.3g} V, so a saturated "
            f"line {steps} wide had to change the readout by {smallest:.3g}–"
            f"{smallest * np.sqrt(widths[-1] / widths[0]) if widths else smallest:.3g} V to "
            f"stand {self.min_line_snr:g} standard errors out; the readout contrast of the "
            "qubit states is below that within the shot budget\n"
        )

    @staticmethod
    def _report(data: xr.Dataset, lines: list[Line]) -> str:
        tried = np.atleast_1d(data.attrs["symmetry_points_tried"])
        found = ", ".join(f"{line.centre / 1e6:.0f} MHz (SNR {line.snr:.0f})" for line in lines)
        return (
            f"bias points tried: {', '.join(f'{v:.4f} V' for v in tried)}\n"
            f"coarse lines at {data.attrs['coarse_amplitude']:.3g} V: {found or 'none'}\n"
            f"fine tone {data.attrs['fine_amplitude']:.3g} V\n"
        )
