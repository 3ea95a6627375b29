"""Two-tone spectroscopy versus flux: the fluxonium energies EJ, EC, EL from f01(Φ).

The qubit line is followed from the sweet spot (Φ0/2) out to integer flux, where f01 rises
from a few hundred MHz to several GHz. A map over that whole range would be mostly empty, so
the node tracks the line instead: one short frequency sweep per bias row, centred on a
prediction from the rows already measured. Near half flux f01² is quadratic in the flux
offset (the avoided crossing of the two fluxon states), so predictions extrapolate f01²
through the last points (mirrored about the sweet spot at the start), and the window
half-width comes from the disagreement between quadratic and linear extrapolation. The
saturation tone is re-scaled row by row so the line stays a few frequency steps wide (away
from the sweet spot T2 drops ~100× and the same tone gives a far wider line); a row without
a line is retried wider, stronger and with more shots, one with a too-wide line weaker.
Tracking ends after a few rows in a row without a line (far from Φ0/2 the dispersive shift
can vanish, and with it the readout contrast); each miss doubles the flux step, so a band
where the shift changes sign is stepped over rather than filled with missed rows.

A row costs what its line needs: a wide window is swept only where the last lines' misses
say the line can be (`_narrowed`), on its grid; a row averages by the height the lines found
so far had, ends after a quarter of its budget when it shows nothing (a line unseen by then
would not reach the detection threshold at the budget), and a row whose line needs far more
shots than its neighbours' is deferred (`_row_budget`).

The analysis is the shared spectrum fit: `extract_peaks` per row (each row has its own
frequency axis), then `fit_flux_spectrum` with the calibrated flux period as a prior (its
standard error bounds how far the map may move it) and the half-flux bias fitted. The map
has half a period of precise peaks that pin the symmetry point far better than the resonator
does, and for a light fluxonium (f01 rising steeply) a sweet-spot error of 3·10⁻⁴ Φ0, well
inside its tolerance, would bias EJ and EC by 2 %; the fitted sweet spot must agree with the
calibrated one. Energies come out in GHz and are handed on in Hz.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, field, fields, replace

import numpy as np
import xarray as xr
from scipy.ndimage import minimum_filter1d

from fluxcal.calibrations.averaging import measure_averaged
from fluxcal.calibrations.experiments import plasmon_lines as plasmon
from fluxcal.calibrations.experiments.qubit_spectroscopy import (
    Line,
    centre_readout,
    find_lines,
    point_noise,
    qubit_line,
    refine_line,
)
from fluxcal.calibrations.fitting import (
    FitError,
    PeakTrace,
    SpectrumFit,
    extract_peaks,
    fit_flux_spectrum,
)
from fluxcal.calibrations.fitting.noise import difference_noise
from fluxcal.calibrations.fitting.spectrum import OtherLine, bias_to_flux, response_to_peak
from fluxcal.calibrations.gate import at_least, at_most, relative_error, within
from fluxcal.calibrations.node import Analysis, Node
from fluxcal.calibrations.session import QubitSession
from fluxcal.instruments.contract import (
    ContractError,
    Range,
    band_of,
    band_pieces,
    bands_text,
)

ROW = "flux_voltage"
POINT = "point"
SWEEP = "drive_frequency"
ENERGIES = ("EJ", "EC", "EL")
#: The energies whose precision the plasmon lines provide where f01(Φ) leaves it short
PLASMON_PINNED = ("EJ", "EC")
#: Dimensions of the plasmon-line sweeps at half flux (a coarse one, then one zoom per line).
PLASMON_ROW, PLASMON_POINT = "plasmon_row", "plasmon_point"
_SPIKE_SIGMAS = 8.0
#: Noise deviations at which a row's averaging, and the check for a faint line, see a line.
_SEEN_SNR = 3.0


@dataclass(frozen=True)
class Window:
    """Predicted f01 (Hz) of the next row and the half-width of the sweep around it."""

    centre: float
    half_width: float


@dataclass
class _Tracking:
    """The state of a map's tracking: the flux mapping, the lines found (offset from the
    sweet spot in Φ0, f01), the rows measured and where the next one goes."""

    period: float
    sweet_spot: float
    f_half: float
    direction: float  # towards 0 V: either side of the sweet spot reaches integer flux
    step: float
    offset: float = 0.0
    found_flux: list[float] = field(default_factory=list)
    found_f01: list[float] = field(default_factory=list)
    #: shots per point each line needed to show at `min_line_snr`, and its height (the
    #: response's units): what the next row's line is expected to need (`_row_budget`, `_score`)
    found_needed: list[float] = field(default_factory=list)
    found_heights: list[float] = field(default_factory=list)
    tones: list[tuple[float, float, float]] = field(default_factory=list)  # (amp., fwhm, bias)
    rows: list[tuple] = field(default_factory=list)  # (bias, frequency, iq, tone, shots)
    budgets: list[int] = field(default_factory=list)  # per row: the shots it might take
    misses: list[float] = field(default_factory=list)  # |line − prediction| / half-width
    missed: int = 0  # rows without the line since the last one with it, not deferred
    defer: bool = True  # rows may be deferred (`QubitFluxSpectroscopy._row_budget`)
    deferred: int = 0  # rows deferred
    deferring: int = 0  # rows deferred since the last line
    before_deferral: _Tracking | None = None  # the state before the first deferred row

    @property
    def last_tone(self) -> tuple[float, float] | None:
        """(amplitude, linewidth) of the last line seen."""
        return self.tones[-1][:2] if self.tones else None

    def copy(self) -> _Tracking:
        """A copy whose lists the tracking can extend without changing this one's."""
        lists = {
            f.name: list(v) for f in fields(self) if isinstance(v := getattr(self, f.name), list)
        }
        return replace(self, **lists)


def predict(flux: np.ndarray, f01: np.ndarray, next_flux: float, floor: float) -> Window:
    """Where the next row's line should be, from (flux offset from Φ0/2, f01) rows so far.

    f01² is extrapolated, quadratically through the last three points and linearly through
    the last two (mirror images about Φ0/2 stand in for missing points near the sweet spot);
    twice their disagreement, or a quarter of the last change of f01 if larger (sharp bends
    near integer flux), sets the half-width, never narrower than `floor`.
    """
    flux = np.asarray(flux, float)
    f01 = np.asarray(f01, float)
    mirrored = flux > 0
    x = np.r_[-flux[mirrored][::-1], flux]
    y = np.r_[f01[mirrored][::-1], f01] ** 2
    if x.size < 3:  # only the sweet spot: no idea how fast f01 rises yet
        raise ValueError("need at least the sweet spot and one more row to predict")
    quadratic = np.polyval(np.polyfit(x[-3:], y[-3:], 2), next_flux)
    linear = np.polyval(np.polyfit(x[-2:], y[-2:], 1), next_flux)
    centre = np.sqrt(max(quadratic, 0.0))
    spread = max(2.0 * abs(centre - np.sqrt(max(linear, 0.0))), 0.25 * abs(f01[-1] - f01[-2]))
    return Window(float(centre), float(max(spread, floor)))


def _precision(energy: str) -> str:
    """The gate's criterion on an energy's relative standard error."""
    return f"{energy} relative stderr"


def _pinned_by_lines() -> list[str]:
    """The gate's criteria on EJ and EC that the plasmon lines decide where f01(Φ) alone
    cannot: their precision, and their physical range, which an f01-only fit sliding along
    the long valley of EJ, EC leaves (sampled chip 5003: EJ 114 GHz ± 55 % from a map short
    of its deferred rows; the lines then placed it within 0.1 %)."""
    return [
        criterion
        for name in PLASMON_PINNED
        for criterion in (_precision(name), f"{name} lower bound", f"{name} upper bound")
    ]


def glitched(iq: np.ndarray) -> bool:
    """Whether a row holds isolated spikes in more than one place: a glitch, not a qubit line.

    A point stands alone when it is far (`_SPIKE_SIGMAS` noise deviations) from the mean of its
    two neighbours and most of its excursion from the baseline is that jump. A saturated line
    is one feature a few steps wide (an unresolved one, a single point); a digitiser glitch
    spikes many points, and far: beyond anything the qubit can do to the readout.

    That last condition matters at few shots: a point averages a handful of heralded shots,
    so the odd shot found excited moves it by (state separation)/shots, 5 noise deviations
    per shot at 50 shots on a bright readout, and points on a line's flanks scatter by
    several such steps (sampled chips 5011, 5029, 5059: two thirds of their rows read as
    glitched, and their maps were rejected). Such a point stays within what the row's
    features three points wide reach, and within the baseline's distance from zero (the
    qubit moves the readout along the resonator's response, whose dip keeps part of the
    transmission), while a glitch adds tens of times the largest signal. A spike must pass
    both to count.
    """
    z = np.asarray(iq, complex)
    noise = difference_noise(z)
    baseline = np.median(z.real) + 1j * np.median(z.imag)
    excursion = np.abs(z - baseline)
    jump = np.abs(z[1:-1] - (z[:-2] + z[2:]) / 2)
    spike = np.r_[False, (jump > _SPIKE_SIGMAS * noise) & (jump > 0.7 * excursion[1:-1]), False]
    # what a feature three points wide reaches, spikes aside: its smallest point's excursion
    reach = max(float(np.max(minimum_filter1d(np.where(spike, 0.0, excursion), 3))), abs(baseline))
    alone = (spike & (excursion > reach))[1:-1]
    places = np.count_nonzero(alone[1:] & ~alone[:-1]) + int(alone[0])
    return places > 1


def on_edge(frequency: np.ndarray, line: Line) -> bool:
    """Whether `line` lies within two steps of the sweep's ends: a peak cut by the edge is
    no place to judge a row's line by."""
    step = frequency[1] - frequency[0]
    return min(line.centre - frequency[0], frequency[-1] - line.centre) < 2 * step


def _doubled(narrowed: Window | None) -> Window | None:
    """A narrowed sweep twice as wide, for a retry without the line: a line just outside it
    is the narrowing's risk, and the whole window, doubled after each miss, is wide."""
    return None if narrowed is None else Window(narrowed.centre, 2 * narrowed.half_width)


def nearest_line(lines: list[Line], frequency: float) -> Line | None:
    return min(lines, key=lambda line: abs(line.centre - frequency)) if lines else None


@dataclass
class QubitFluxSpectroscopy(Node):
    """f01 tracked from half to integer flux; produces EJ, EC, EL (Hz)."""

    name = "qubit_flux_spectroscopy"
    requires = ("flux_period", "flux_sweet_spot", "qubit_frequency", "readout_frequency")
    produces = ENERGIES

    rows: int = 30  # at most, bias rows from Φ0/2 to integer flux
    flux_span: float = 0.5  # Φ0 covered from the sweet spot (0.5 reaches integer flux)
    first_step: float = 0.006  # Φ0 to the first row off the sweet spot, where f01 is unknown
    min_step: float = 0.003  # Φ0
    max_flux_step: float = 0.04  # Φ0
    target_jump: float = 150e6  # Hz of f01 change aimed at between rows ...
    far_jump: float = 250e6  # Hz ... and where the last prediction was good
    good_prediction: float = 15e6  # Hz between the predicted and the found line
    points: int = 61  # frequency points per row
    min_frequency: float = 10e6  # Hz, lowest drive frequency swept
    first_span: float = 2.0e9  # Hz above f01(Φ0/2) searched in the first row off the sweet spot
    min_half_width: float = 15e6  # Hz, narrowest window
    points_per_linewidth: float = 4.0  # wanted FWHM of the line in frequency steps
    start_amplitude: float = 0.02  # V, first tone at the sweet spot (adapted row by row)
    min_amplitude: float = 1e-5  # V
    max_amplitude: float = 0.5  # V, a stronger tone mostly reveals other transitions
    max_tone_growth: float = 3.0  # from one row to the next
    retries: int = 4  # re-measurements of a row: re-centred, zoomed or re-scaled tone
    budget: int = 16_000  # shots per point a faint row may take
    max_step: float = 5e6  # Hz: a line placed on a coarser grid is measured again, zoomed
    readout_span: float = 3e6  # Hz, at least: readout re-centring window when a row misses
    max_missed_rows: int = 3  # consecutive rows without the line end the tracking
    max_prediction_miss: float = 4.0  # window half-widths a found line may be off its prediction
    #: Window half-widths within which the last `trusted_rows` lines all fell: the tracking
    #: predicts f01 well, so a row whose full budget shows no line at all is in a readout
    #: contrast null (the dispersive shift changes sign along flux), not off its window.
    #: Such a row gets one retry with the readout re-centred, not the widening ones: on
    #: sampled chip 5009 the widening retries of one such row (χ = −8.5 kHz against κ =
    #: 3.5 MHz) took 6 768 device-s, a third of the map, and found nothing.
    trusted_miss: float = 0.25
    trusted_rows: int = 3
    #: A row sweeps `narrowing` times the largest miss of the last `trusted_rows` lines'
    #: predictions, on its window's grid, when that leaves out points (`_narrowed`): a
    #: margin for misses that grow from row to row where f01 bends; a line outside the
    #: sweep is found by the retry, which doubles it.
    narrowing: float = 8.0
    #: A row may average to `defer_factor` times the shots the faintest of the last
    #: `typical_rows` lines needed; a row without its line by then is deferred
    #: (`_row_budget`). Found lines are worth about the same to the fit, so a row costing
    #: several neighbours' shots is the first to leave out; 4× is twice the line
    #: amplitude's noise, so a line as bright as its neighbours' is never deferred by a
    #: noisy first look.
    defer_factor: float = 4.0
    typical_rows: int = 3
    #: Deferred rows in a row that end the tracking: doubling the flux step and the budget
    #: from one to the next, four cross ~0.1 Φ0 (sampled chip 5005's line needs 12 800
    #: shots or more from 0.045 Φ0 off the sweet spot and is bright again at 0.12)
    max_deferred_rows: int = 4
    #: First look of each row; a row whose line is fainter than `min_line_snr` is averaged
    #: up to `budget`, so a clear row costs only this. Built-in chip's node: 618 device-s at
    #: 250 shots, ~313 at 50, EJ, EC, EL within 0.3 % either way.
    shots: int = 50
    #: First look of each plasmon-search sweep: its lines decide between readings of the
    #: map that fit f01 alike, so a false one costs a wrong value, not a missed row. At 50
    #: (with the rows') design chip 3000 was accepted with EJ −27 % (z −66); at 250 with
    #: 50-shot rows, −0.001 %
    plasmon_shots: int = 250
    herald: bool = True
    min_line_snr: float = 6.0
    min_relative_snr: float = 0.25  # of the strongest line, for the lowest line to be f01
    max_residual_linewidths: float = 0.5  # residual rms over the median linewidth
    max_relative_error: float = 0.01  # of EJ, EC and EL
    min_points: int = 8  # peaks in the fit: three energies and a margin
    min_flux_span: float = 0.1  # Φ0 spanned by the fitted peaks: away from the sweet spot
    max_sweet_spot_shift: float = 0.01  # Φ0 between the fitted and the calibrated sweet spot
    max_glitched_fraction: float = 0.2  # of the rows (left out of the fit)
    plasmon_sigmas: float = 5.0  # predicted standard deviations the plasmon search covers
    max_plasmon_span: float = 4e9  # Hz: a wider prediction is no prediction; not searched
    #: Most points of a plasmon search; a narrower window is swept at `max_step`, as a map
    #: row is (`_grid_size`)
    plasmon_points: int = 401
    max_plasmon_lines: int = 3  # lines zoomed into
    max_deciding_searches: int = 3  # searches for a line that decides between readings
    max_drive_frequency: float = 20e9  # Hz
    max_plasmon_residual: float = 5.0  # standard errors between a plasmon line and the fit
    #: Physical range of fluxonium energies (Hz): outside, the fit found something else.
    EJ_bounds: tuple[float, float] = (0.5e9, 50e9)
    EC_bounds: tuple[float, float] = (0.1e9, 10e9)
    EL_bounds: tuple[float, float] = (0.02e9, 5e9)

    def acquire(self, session: QubitSession) -> xr.Dataset:
        period = session.value("flux_period")
        sweet_spot = session.value("flux_sweet_spot")
        f_half = session.value("qubit_frequency")
        session.operating_point()
        session.configure(drive={"sequence": "saturation", "herald": self.herald})
        # towards 0 V: either side of the sweet spot reaches integer flux
        track = _Tracking(
            period, sweet_spot, f_half, -1.0 if sweet_spot > 0 else 1.0, self.first_step
        )
        bands = self._bands(session)
        self._track(session, track, bands)
        if track.deferred and not self._sufficient(self._dataset(session, track)):
            track = self._tracked_in_full(session, track, bands)
        data = self._with_lines(session, track)
        if track.deferred and track.defer and not self._accepted(data):
            # the lines placed by the map short of its deferred rows did not pin the energies
            track = self._tracked_in_full(session, track, bands)
            data = self._with_lines(session, track)
        return data

    def _with_lines(self, session: QubitSession, track: _Tracking) -> xr.Dataset:
        """The tracked map, with the plasmon lines it calls for (`_with_plasmon_lines`)."""
        data = self._dataset(session, track).assign_attrs(
            deferred_rows=track.deferred, tracked_in_full=int(not track.defer)
        )
        sweet_tone = next(((a, w) for a, w, b in track.tones if b == track.sweet_spot), None)
        return self._with_plasmon_lines(session, data, track.sweet_spot, sweet_tone)

    def _accepted(self, data: xr.Dataset, excused: frozenset[str] = frozenset()) -> bool:
        """Whether the node's gate passes `data`, criteria named in `excused` left out; what
        cannot be judged does not pass."""
        try:
            analysis = self.analyse(data)
        except (FitError, ValueError, np.linalg.LinAlgError):
            return False
        kept = [c for c in analysis.criteria if c.name not in excused]
        return self.gate(replace(analysis, criteria=kept)).accepted

    def _track(self, session: QubitSession, track: _Tracking, bands: tuple[Range, ...]) -> None:
        """Rows outward from the sweet spot, each centred on the prediction from the lines
        found so far, until `rows` rows, `flux_span`, `max_missed_rows` missed or
        `max_deferred_rows` deferred in a row (see `_row_budget`)."""
        while len(track.rows) < self.rows and track.offset <= self.flux_span + 1e-12:
            if track.missed >= self.max_missed_rows or track.deferring >= self.max_deferred_rows:
                break  # the line has faded out (the dispersive shift can vanish far from Φ0/2)
            offset, step = track.offset, track.step
            window = self._window(offset, track.found_flux, track.found_f01, track.f_half, step)
            # Without a prediction yet (first row off the sweet spot) the window is wide:
            # f01 is then the lowest line in it.
            lowest = len(track.found_flux) == 1
            band = band_of(bands, window.centre - window.half_width if lowest else window.centre)
            if band is None and offset == 0.0:
                raise ContractError(
                    f"{self.name}: f01 = {track.f_half / 1e9:.4g} GHz at the sweet spot lies "
                    f"where the drive plays nothing (it reaches {bands_text(bands)})"
                )
            if band is None:  # predicted where the drive plays nothing: on to the next row
                track.offset = self._next_offset(offset, step)
                continue
            across_gap = not lowest and window.centre - window.half_width < band.low
            if across_gap:
                window = self._across_gap(window, track.found_f01[-1])
            bias = track.sweet_spot + track.direction * offset * track.period
            session.configure(flux={"voltage": bias})
            trusted = len(track.misses) >= self.trusted_rows and all(
                m <= self.trusted_miss for m in track.misses[-self.trusted_rows :]
            )
            budget = self._row_budget(track)
            if budget < self.budget and not track.deferred:
                track.before_deferral = track.copy()
            frequency, iq, amplitude, shots, line = self._measure_row(
                session,
                window,
                band,
                track.last_tone,
                lowest,
                across_gap,
                trusted,
                budget,
                self._expected_height(track),
                self._narrowed(window, track),
            )
            track.rows.append((bias, frequency, iq, amplitude, shots))
            track.budgets.append(budget)
            if line is not None:
                track.missed = track.deferring = 0
            elif budget < self.budget:  # deferred: the map may do without it
                track.deferred += 1
                track.deferring += 1
            else:
                track.missed += 1
            if line is None and offset == 0.0:  # qubit spectroscopy measured f01 here
                track.found_flux.append(0.0)
                track.found_f01.append(track.f_half)
            if line is not None:
                if not lowest and offset > 0:  # the sweet spot's window is no prediction
                    track.misses.append(abs(line.centre - window.centre) / window.half_width)
                track.found_flux.append(offset)
                track.found_f01.append(line.centre)
                track.found_needed.append(shots * (self.min_line_snr / line.snr) ** 2)
                track.found_heights.append(line.snr * point_noise(response_to_peak(iq)))
                track.tones.append((amplitude, line.fwhm, bias))
            if offset > 0:
                missed_by = abs(line.centre - window.centre) if line else np.inf
                track.step = self._next_step(step, track.found_f01, missed_by)
            track.offset = self._next_offset(offset, track.step)

    def _row_budget(self, track: _Tracking) -> int:
        """Shots per point a row may take: `defer_factor` times what the faintest of the last
        `typical_rows` lines needed to show at `min_line_snr` (at least the first look's),
        doubled for each row deferred since the last line (the full `budget` before there
        are that many lines, and when tracking in full).

        A row whose line needs far more shots than its neighbours' sits where the readout
        barely sees the qubit (the dispersive shift changes sign along flux); at full budget
        such a row cost the built-in chip 207 of its map's 332 device-s, and sampled chip
        5003 1 650 of 2 140 (two rows averaged to 16 000 shots, one without a line). All
        found lines place f01 alike, so such a row is deferred: left without its line, or,
        when the map without it does not pass the gate (`_sufficient`), tracked again in
        full from it on (`_tracked_in_full`).

        What a line needed (its shots scaled by the √shots law to `min_line_snr`), not what
        its row took: a row's averaging overshoots (a line unseen after 800 shots gets up to
        16× more), and the budget would follow the overshoot. The faintest, not the median:
        the contrast fades along flux, so the next line is more likely as faint as the
        faintest than as the typical one. Past a deferred row the contrast is lower than the
        lines before it said, so the next row may take more, and deferred rows end the
        tracking only after `max_deferred_rows` (before, three deferred rows ended it: on
        sampled chips 5004, 5005 and 5009 short of the gate, and tracking them again in full
        took 3 405, 7 007 and 13 663 of their maps' 4 304, 7 270 and 19 672 device-s).
        """
        if not track.defer or len(track.found_needed) < self.typical_rows:
            return self.budget
        needed = max(*track.found_needed[-self.typical_rows :], self.shots)
        return int(min(needed * self.defer_factor * 2.0**track.deferring, self.budget))

    def _expected_height(self, track: _Tracking) -> float | None:
        """The next row's line height expected from the last `typical_rows` lines found (in
        the response's units; fewer at the start, None before any)."""
        heights = track.found_heights[-self.typical_rows :]
        return float(np.median(heights)) if heights else None

    def _narrowed(self, window: Window, track: _Tracking) -> Window | None:
        """The part of `window` a row sweeps: `narrowing` times the largest miss of the last
        `trusted_rows` lines (in half-widths); None (all of it) before a line was predicted
        or when that is no narrower.

        After a row without its line the flux step doubles and the window widens (the two
        extrapolations disagree more, f01 rose further), to hundreds of points at the
        largest step: without narrowing, sampled chip 5009's rows of 66 to 401 points took
        14.7 of its map's 18.3 device-ks, and the lines they found fell within 1.5 % of
        their prediction's half-width. The sweep never has fewer than `points` (`_sweep`):
        in fewer, the median baseline and the noise take in the line's tails (at 25 points
        a line at twice the detection threshold reads 25 % lower than at 61, and shows in
        three quarters of the noise draws instead of all but 1 %).
        """
        if not track.misses:
            return None
        half = self.narrowing * max(track.misses[-self.trusted_rows :]) * window.half_width
        return Window(window.centre, half) if half < window.half_width else None

    def _sufficient(self, data: xr.Dataset) -> bool:
        """Whether the f01 map as measured passes the node's own gate, but for the precision
        and range of EJ and EC that the plasmon lines searched next provide where f01(Φ)
        alone leaves them open (`_with_plasmon_lines`, `_pinned_by_lines`).

        Judged before any plasmon-line search: those searches are placed by the f01 map's
        fit, so a map short of its deferred rows would place them worse (on sampled chips
        5000, 5010 and 5021 the lines then left EJ 2–12 % uncertain, with the rows measured
        after). A chip whose f01 map cannot pass the gate is tracked in full before the
        search. Not for EJ and EC's precision, though: a heavy fluxonium's f01(Φ) barely
        separates them whatever its rows (sampled chips 5000, 5010 and 5018: 4–7 % after
        the full tracking, 0.03–0.2 % with the lines), and tracking those chips in full for
        it took 190, 680 and 790 of their maps' 478, 966 and 1 315 device-s (sampled chip
        5009: 7 000 of 11 059). Where the lines such a map places still leave the energies
        short, the map is tracked in full then and the lines searched again (`acquire`:
        sampled chip 5077, EJ ±25 % from the short map, was rejected without).
        """
        return self._accepted(data, frozenset(_pinned_by_lines()))

    def _tracked_in_full(
        self, session: QubitSession, track: _Tracking, bands: tuple[Range, ...]
    ) -> _Tracking:
        """The tracking again from the first deferred row on, every row at the full budget.

        Not only the deferred rows: after a row without its line the flux step doubles and
        the next windows are predicted without it, so the rows that followed differ from
        those a full tracking measures, and a heavy chip's plasmon-line search, placed by
        the map's fit, assigned lines wrongly from such a map (sampled chip 5000: EJ −11 %,
        accepted). The rows measured after the first deferral stay in the database.
        """
        again = track.before_deferral.copy()
        again.defer = False
        again.deferred = track.deferred
        self._track(session, again, bands)
        return again

    def _dataset(self, session: QubitSession, track: _Tracking) -> xr.Dataset:
        bias, frequency, iq, amplitude, shots = zip(*track.rows, strict=True)
        frequency, iq = _padded(frequency), _padded(iq)
        bias, amplitude, shots = np.array(bias), np.array(amplitude), np.array(shots)
        return xr.Dataset(
            {
                "iq": ((ROW, POINT), iq),
                "drive_amplitude": (ROW, amplitude),
                "shots": (ROW, shots),
                "row_budget": (ROW, np.array(track.budgets)),
            },
            coords={ROW: bias, SWEEP: ((ROW, POINT), frequency)},
            attrs={
                "experiment": self.name,
                "qubit": session.qubit,
                "flux_period": track.period,
                "flux_period_stderr": float(session.known["flux_period"].stderr),
                "flux_sweet_spot": track.sweet_spot,
                "qubit_frequency": track.f_half,
                "readout_frequency": float(session.channel("readout").frequency()),
                "herald": int(self.herald),
            },
        )

    def _with_plasmon_lines(
        self,
        session: QubitSession,
        data: xr.Dataset,
        sweet_spot: float,
        sweet_tone: tuple[float, float] | None,
    ) -> xr.Dataset:
        """The map plus the plasmon lines at half flux when f01(Φ) alone leaves EJ or EC
        less certain than wanted (see `plasmon_lines`).

        The search windows are the f01-only fit's predictions of f12 and f03 ± `plasmon_sigmas`
        or their range along the EJ, EC valley (`_plasmon_windows`; lines seen twice count
        once); lines are found whichever way they move the readout point;
        the tone is the sweet-spot row's, scaled by the ratio of charge matrix elements and
        by the wanted linewidth on the coarse grid. Each line found is measured again zoomed,
        with the tone scaled to its width. No heralding: level 1 must stay populated. The
        lines are measured at half flux as the map placed it (`_plasmon_bias`); while those
        assigned still leave EJ or EC uncertain, the most informative other allowed line is
        searched (`_informative_search`).

        The readout goes back to the dip calibrated at half flux: the map re-centres it
        wherever a row misses, and left there (1 MHz off on sampled chip 5018) it loses the
        lines whose upper level barely moves the resonator. The dip is where the response
        is steepest for such a shift: 0→3 of a heavy fluxonium shifts it by 0.1 MHz against
        κ = 0.75 MHz (5018), visible there, lost under the noise 1.4 κ away.
        """
        tracked = _f01_fit(data, self.min_line_snr, self.max_residual_linewidths, self.min_points)
        if tracked is None or sweet_tone is None:
            return data
        fit, peaks, linewidths = tracked
        try:
            refits = _period_refits(data, peaks, fit)
        except FitError:
            return data  # nor could the plasmon lines be predicted
        if self._energies_precise(fit, _period_errors(refits)):
            return data
        bias = self._plasmon_bias(session, fit, sweet_spot)
        starts = self._starts(peaks, fit)
        windows, pieces = self._plasmon_windows(peaks, fit, bias, refits)
        if not windows:
            return data
        readout = session.value("readout_frequency")
        session.configure(
            flux={"voltage": bias}, drive={"herald": False}, readout={"frequency": readout}
        )
        amplitude, width = sweet_tone
        per_step = amplitude * self.points_per_linewidth / width  # tone per Hz of step at f01
        tone = per_step * plasmon.charge_ratio(starts[len(starts) // 2])
        rows: list[tuple[np.ndarray, np.ndarray, float, int, bool]] = []
        for window in windows:
            searched = self._plasmon_search(session, window, tone)
            rows += searched
            # one line pins the valley: the partner search below finds the other (only the
            # new rows are read: the earlier pieces showed none)
            if pieces and distinct_lines(searched, self.min_line_snr):
                break
        seen = distinct_lines(rows, self.min_line_snr)
        joint = self._joint_fits(peaks, linewidths, fit, starts)
        if seen and len(plasmon.assign(seen, bias, joint.consistent, joint.equivalent)) < 2:
            # A line that more than one transition could be: look where its partner would
            # be under each reading; the pair then decides.
            for reading in plasmon.readings(seen, bias, joint.consistent):
                window = self._partner_window(joint, bias, reading)
                if window is not None:
                    rows += self._plasmon_search(session, window, tone)
        rows += self._deciding_search(session, joint, bias, rows, per_step)
        rows += self._informative_search(session, data, joint, bias, rows, per_step)
        session.configure(drive={"herald": self.herald}, readout={"shots": self.shots})
        frequency, iq, amplitude, shots, zoomed = zip(*rows, strict=True)
        return (
            data.assign(
                plasmon_iq=((PLASMON_ROW, PLASMON_POINT), _padded(iq)),
                plasmon_amplitude=(PLASMON_ROW, np.array(amplitude)),
                plasmon_shots=(PLASMON_ROW, np.array(shots)),
                plasmon_zoomed=(PLASMON_ROW, np.array(zoomed)),
            )
            .assign_coords(plasmon_frequency=((PLASMON_ROW, PLASMON_POINT), _padded(frequency)))
            .assign_attrs(plasmon_bias=bias, plasmon_readout_frequency=readout)
        )

    def _plasmon_bias(self, session: QubitSession, fit: SpectrumFit, calibrated: float) -> float:
        """Where the plasmon lines are measured: at half flux as the f01 map placed it when
        that is more precise than the calibrated sweet spot (the map's half period of sharp
        peaks usually pins it ~20× better than the resonator).

        Half flux matters to the lines: on a heavy fluxonium with small EL the levels 2, 3
        can be the fluxon states of the next wells out (energy ~4π²·EL), a doublet split by
        only a few MHz, and a flux offset of 3·10⁻⁴ Φ0 (one resonator stderr) mixes it
        fully: the parity-forbidden 0→2 and 1→3 then show as strongly as 0→3 and 1→2, a few
        MHz from them, and are read as the allowed ones (sampled chip 3000).
        """
        fitted = fit.sweet_spot - fit.period * np.round((fit.sweet_spot - calibrated) / fit.period)
        stderr = float(session.known["flux_sweet_spot"].stderr)
        shift = abs(fitted - calibrated) / fit.period
        if fit.sweet_spot_stderr < stderr and shift <= self.max_sweet_spot_shift:
            return float(fitted)
        return calibrated

    def _informative_search(
        self,
        session: QubitSession,
        data: xr.Dataset,
        joint: JointFits,
        bias: float,
        rows: list[tuple[np.ndarray, np.ndarray, float, int, bool]],
        per_step: float,
    ) -> list[tuple[np.ndarray, np.ndarray, float, int, bool]]:
        """Searches for the allowed lines not yet assigned while the joint fit of those
        that are still leaves EJ or EC less certain than wanted, the most informative first.

        Which lines separate EJ from EC depends on the chip: when levels 2, 3 are fluxon
        states of the outer wells (4π²·EL below the plasma frequency) 1→2 and 0→3 go as EL
        and barely move along the EJ, EC valley, while the plasma excitations of the inner
        wells (1→4, 0→5 there) move by GHz. The joint fit predicts every unassigned line
        (with the held period's share and the model error); the one whose prediction is
        widest in units of its own measurement error (`plasmon.DRESSING`) is searched
        (± `plasmon_sigmas`, in pieces if wide), its tone scaled by its charge element.
        """
        added: list[tuple[np.ndarray, np.ndarray, float, int, bool]] = []
        tried: set[tuple[int, int]] = set()
        while True:
            seen = distinct_lines(rows + added, self.min_line_snr)
            others = tuple(plasmon.assign(seen, bias, joint.consistent, joint.equivalent))
            refit = joint.of(others) if others else None
            if refit is None:
                return added
            try:
                refits = _period_refits(data, joint.peaks, refit, others)
                mapping = _period_errors(refits)
            except FitError:  # a capped joint refit that crawls: the model error stands in
                refits, mapping = None, dict.fromkeys(ENERGIES, np.inf)
            if self._energies_precise(refit, mapping):
                return added
            assigned = {(o.lower, o.upper) for o in others}
            remaining = tuple(t for t in plasmon.ALLOWED if t not in assigned | tried)
            if not remaining:
                return added
            try:
                transition, window = self._informative_window(refit, bias, refits, remaining)
            except FitError:
                return added
            tried.add(transition)
            if window is None:
                continue
            tone = per_step * plasmon.charge_ratio(refit, (transition,))
            for piece in plasmon.cut_windows([window], self.max_plasmon_span):
                added += self._plasmon_search(session, piece, tone, seen)
                if len(distinct_lines(rows + added, self.min_line_snr)) > len(seen):
                    break  # a new line: the assignment and the joint fit decide again

    def _deciding_search(
        self,
        session: QubitSession,
        joint: JointFits,
        bias: float,
        rows: list[tuple[np.ndarray, np.ndarray, float, int, bool]],
        per_step: float,
    ) -> list[tuple[np.ndarray, np.ndarray, float, int, bool]]:
        """While the lines seen have several consistent readings that disagree (nothing
        assigned), searches where one reading puts a line it has not used and the others
        put none (`_deciding_window`), at most `max_deciding_searches` times.

        The partner search looks only for the other plasmon line, and a heavy chip's may
        not show: on sampled chip 5013 (levels 2, 3 4.9 MHz apart) 0→3 was not seen in
        16 000 shots, and when it was, 7.14 and 7.29 GHz read as 1→2 with 0→3 (EJ 9.1 GHz)
        or as 1→2 with 1→4 (EJ 8.1 GHz) fitted alike. The first puts 1→4 at 9.1 GHz, where
        the second has no line: a line there decides.
        """
        added: list[tuple[np.ndarray, np.ndarray, float, int, bool]] = []
        searched: list[tuple[float, float]] = []
        for _ in range(self.max_deciding_searches):
            seen = distinct_lines(rows + added, self.min_line_snr)
            if not seen or plasmon.assign(seen, bias, joint.consistent, joint.equivalent):
                return added
            candidates = plasmon.competing(seen, bias, joint.consistent)
            if len(candidates) < 2:
                return added
            choice = self._deciding_window(joint, bias, candidates, searched)
            if choice is None:
                return added
            window, tone_ratio = choice
            searched.append(window)
            added += self._plasmon_search(session, window, per_step * tone_ratio, seen)
        return added

    def _deciding_window(
        self,
        joint: JointFits,
        bias: float,
        candidates: list[tuple[OtherLine, ...]],
        searched: list[tuple[float, float]],
    ) -> tuple[tuple[float, float], float] | None:
        """Of the allowed transitions each candidate reading leaves unused, the window
        (± `plasmon_sigmas` of its joint fit's prediction, with the model error; its widest
        part not searched before) that holds no line any other candidate predicts and fits
        below `max_drive_frequency` within `max_plasmon_span`: the strongest such line
        (largest charge element), with its tone ratio (`plasmon.charge_ratio`). None when
        no window decides.

        Only the searched part of a window is left out: a reading's prediction made after a
        search often overlaps it. On sampled chip 5013's recorded map a search at 9.21–12.27
        GHz found 0→5 at 10.79 GHz, which read as 0→5 or as 1→4 (EJ 9.23 or 11.04 GHz); the
        first reading's 1→4 at 9.12 ± 0.46 GHz, in the unsearched 8.66–9.21 GHz, decides."""
        predictions = {}
        for candidate in candidates:
            fit = joint.of(candidate)
            used = {(o.lower, o.upper) for o in candidate}
            unused = tuple(t for t in plasmon.ALLOWED if t not in used)
            if fit is None or not unused:
                continue
            try:
                prediction = plasmon.predict(fit, bias, unused).with_model_error()
            except FitError:
                continue
            predictions[candidate] = (fit, prediction)
        options = []
        for candidate, (fit, prediction) in predictions.items():
            others = [
                float(f)
                for other, (_, p) in predictions.items()
                if other != candidate
                for f in p.mean
            ]
            spread = self.plasmon_sigmas * np.sqrt(np.diag(prediction.covariance))
            for transition, centre, half in zip(
                prediction.transitions, prediction.mean, spread, strict=True
            ):
                low, high = max(centre - half, self.min_frequency), centre + half
                if high > self.max_drive_frequency or high - low > self.max_plasmon_span:
                    continue
                pieces = _unsearched(low, high, searched)
                if not pieces:
                    continue
                low, high = max(pieces, key=lambda piece: piece[1] - piece[0])
                if any(low <= f <= high for f in others):
                    continue
                ratio = plasmon.charge_ratio(fit, (transition,))
                options.append((ratio, (float(low), float(high))))
        if not options:
            return None
        ratio, window = min(options)  # the strongest line needs the weakest tone
        return window, ratio

    def _informative_window(
        self,
        fit: SpectrumFit,
        bias: float,
        refits: list[SpectrumFit] | None,
        transitions: tuple[tuple[int, int], ...],
    ) -> tuple[tuple[int, int], tuple[float, float] | None]:
        """Of `transitions`, the one whose prediction by `fit` (with the held period's share
        from `refits` and the model error) is widest in units of its measurement error
        (`plasmon.DRESSING`): measuring it narrows EJ, EC most. Its window is ± `plasmon_sigmas`
        (None when nothing of it lies below `max_drive_frequency`). Raises FitError."""
        prediction = _plasmon_prediction(fit, bias, refits, transitions).with_model_error()
        spread = np.sqrt(np.diag(prediction.covariance))
        best = int(np.argmax(spread / (plasmon.DRESSING * prediction.mean)))
        centre, half = float(prediction.mean[best]), self.plasmon_sigmas * float(spread[best])
        low = max(centre - half, self.min_frequency)
        high = min(centre + half, self.max_drive_frequency)
        return transitions[best], ((low, high) if high > low else None)

    def _plasmon_search(
        self,
        session: QubitSession,
        window: tuple[float, float],
        tone: float,
        known: list[Line] | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray, float, int, bool]]:
        """A coarse sweep over `window` (tone per Hz of step given) and one zoomed sweep per
        line found in it, its tone scaled to the line's width: (sweep, IQ, tone, shots,
        zoomed) per row. Lines within a linewidth of a `known` one are not zoomed again.
        A window across a gap of the drive's bands is swept piece by piece, at its step."""
        span = window[1] - window[0]
        step = span / (self._grid_size(span, self.plasmon_points) - 1)
        rows = []
        for piece in band_pieces(self._bands(session), *window):
            points = max(self.points, round((piece.high - piece.low) / step) + 1)
            frequency = np.linspace(piece.low, piece.high, points)
            coarse = self._plasmon_row(session, frequency, tone * (frequency[1] - frequency[0]))
            rows.append((*coarse, False))
            lines = plasmon.find_lines_any_sense(frequency, coarse[1], self.min_line_snr)
            lines = [
                line
                for line in lines
                if all(abs(line.centre - k.centre) > max(line.fwhm, k.fwhm) for k in known or [])
            ]
            for line in lines[: self.max_plasmon_lines]:
                half = 2 * line.fwhm
                low, high = max(line.centre - half, piece.low), min(line.centre + half, piece.high)
                zoom = np.linspace(low, high, self.points)
                wanted = self.points_per_linewidth * (zoom[1] - zoom[0])
                tone_zoom = coarse[2] * wanted / line.fwhm
                rows.append((*self._plasmon_row(session, zoom, tone_zoom), True))
        return rows

    def _plasmon_windows(
        self,
        peaks: PeakTrace,
        fit: SpectrumFit,
        bias: float,
        refits: list[SpectrumFit] | None,
    ) -> tuple[list[tuple[float, float]], bool]:
        """Where to search the plasmon lines, and whether the windows are pieces of one long
        range (searched until a line shows). ± `plasmon_sigmas` of the f01-only fit's
        linearised prediction (with the held period's share), or, when that is no
        prediction (a long valley of EJ, EC, or a period refit that slid along it), the
        lines' range along the valleys at the held period and at period ± its stderr; a
        range wider than `max_plasmon_span` is cut into pieces (`plasmon.cut_windows`)."""
        try:
            prediction = _plasmon_prediction(fit, bias, refits)
            windows = prediction.windows(self.plasmon_sigmas, self.min_frequency)
        except FitError:
            windows = []
        if windows and all(hi - lo <= self.max_plasmon_span for lo, hi in windows):
            return self._below_top(windows), False
        fits = self._valleys(peaks, fit, refits)
        windows = self._below_top(plasmon.valley_windows(fits, bias, self.min_frequency))
        if all(hi - lo <= self.max_plasmon_span for lo, hi in windows):
            return windows, False
        return plasmon.cut_windows(windows, self.max_plasmon_span), True

    def _below_top(self, windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
        """`windows` cut at `max_drive_frequency` (those entirely above it dropped)."""
        windows = [(lo, min(hi, self.max_drive_frequency)) for lo, hi in windows]
        return [(lo, hi) for lo, hi in windows if hi > lo]

    def _valley(self, peaks: PeakTrace, fit: SpectrumFit) -> list[SpectrumFit]:
        bounds = (self.EJ_bounds[0] / 1e9, self.EJ_bounds[1] / 1e9)
        return plasmon.valley(peaks, fit, self.plasmon_sigmas, bounds)

    def _valleys(
        self, peaks: PeakTrace, fit: SpectrumFit, refits: list[SpectrumFit] | None
    ) -> list[SpectrumFit]:
        """The valley of EJ, EC at the held flux period and at period ± its stderr (the
        `refits`): the period scales the flux axis and so moves the whole valley; a period
        one standard error off would otherwise put the plasmon lines outside every window."""
        return [f for start in [fit, *(refits or [])] for f in self._valley(peaks, start)]

    def _starts(self, peaks: PeakTrace, fit: SpectrumFit) -> list[SpectrumFit]:
        """Where joint fits start: points along the valley of EJ, EC that f01 leaves open
        (the f01-only `fit` among them), so that each reading starts on the valley where
        its line falls (`plasmon.valley_start`)."""
        return self._valley(peaks, fit)

    def _joint_fits(
        self,
        peaks: PeakTrace,
        linewidths: np.ndarray,
        fit: SpectrumFit,
        starts: list[SpectrumFit],
    ) -> JointFits:
        return JointFits(
            peaks,
            linewidths,
            fit,
            starts,
            self.max_residual_linewidths,
            self.max_plasmon_residual,
        )

    def _partner_window(
        self, joint: JointFits, bias: float, reading: OtherLine
    ) -> tuple[float, float] | None:
        """Where the other plasmon line is, were `reading` right: ± `plasmon_sigmas` of the
        reading's joint fit's prediction (with the assignment's model error); None if
        nothing to search."""
        refit = joint.of((reading,))
        if refit is None:
            return None
        try:
            partner = plasmon.predict(refit, bias).with_model_error()
        except FitError:
            return None
        reading_transition = (reading.lower, reading.upper)
        index = next(k for k, t in enumerate(partner.transitions) if t != reading_transition)
        centre = float(partner.mean[index])
        half = self.plasmon_sigmas * float(np.sqrt(partner.covariance[index, index]))
        low = max(centre - half, self.min_frequency)
        high = min(centre + half, self.max_drive_frequency)
        return (low, high) if 0 < high - low <= self.max_plasmon_span else None

    def _plasmon_row(
        self, session: QubitSession, frequency: np.ndarray, amplitude: float
    ) -> tuple[np.ndarray, np.ndarray, float, int]:
        """A plasmon sweep averaged until its strongest line (either sense) reaches
        `min_line_snr`, or it ends as a flux-map row does when nothing shows (`_enough`).

        Why the early end: a window that holds no line averaged to the full budget, and the
        windows of a deciding search (`_deciding_search`) are empty for every reading but
        the right one: sampled chip 5013's map went 8 467 → 11 740 device-s with them."""
        amplitude = float(np.clip(amplitude, self.min_amplitude, self.max_amplitude))
        session.configure(drive={"amplitude": amplitude}, readout={"shots": self.plasmon_shots})

        def strongest(iq: np.ndarray) -> float:
            lines = plasmon.find_lines_any_sense(frequency, iq, _SEEN_SNR)
            return lines[0].snr if lines else 0.0

        data = measure_averaged(
            session,
            f"{self.name}_plasmon",
            SWEEP,
            frequency,
            strongest,
            self.min_line_snr,
            self.budget,
            futile=(self._enough(self.budget), lambda iq: strongest(iq) == 0.0),
        )
        return frequency, data["iq"].values, amplitude, int(data.attrs["shots"])

    def _energies_precise(self, fit: SpectrumFit, mapping: dict[str, float]) -> bool:
        """Whether EJ and EC, with the held period's share of their error, meet the target."""
        return all(
            relative_error(
                getattr(fit, n), float(np.hypot(getattr(fit, f"{n}_stderr"), mapping[n]))
            )
            <= self.max_relative_error
            for n in PLASMON_PINNED
        )

    def _next_offset(self, offset: float, step: float) -> float:
        """The next row's flux offset: `step` on, the last row at `flux_span`, then none (inf)."""
        if offset >= self.flux_span:
            return np.inf
        return min(offset + step, self.flux_span)

    def _bands(self, session: QubitSession) -> tuple[Range, ...]:
        """The drive's bands within `min_frequency` … `max_drive_frequency`: a drive with a
        gap between its paths (e.g. 0.5–2 GHz) has f01 cross it between two rows; rows
        predicted in the gap are skipped, plasmon windows searched piece by piece."""
        bands = session.bands("drive", "frequency")
        return tuple(band_pieces(bands, self.min_frequency, self.max_drive_frequency))

    def _next_step(self, step: float, f01: list[float], missed_by: float) -> float:
        """Flux step to the next row: f01 should move by about `target_jump` per row, so
        predictions stay close where f01 bends, and by `far_jump` where the last prediction
        was good to `good_prediction` (f01 nearly straight), so rows are not wasted there.

        After a row without the line the step doubles: where the dispersive shift of 0 and
        1 changes sign along flux the readout contrast vanishes over a band of a few
        hundredths of Φ0 (chips 5005, 5027), and rows at the old step would all fall in it.
        """
        if not np.isfinite(missed_by):
            return float(min(2 * step, self.max_flux_step))
        if len(f01) < 2:
            return step
        jump = max(abs(f01[-1] - f01[-2]), 1.0)
        target = self.far_jump if missed_by <= self.good_prediction else self.target_jump
        step *= float(np.clip(target / jump, 0.5, 2.0))
        return float(np.clip(step, self.min_step, self.max_flux_step))

    def _window(
        self, offset: float, flux: list[float], f01: list[float], f_half: float, step: float
    ) -> Window:
        if not flux or offset == 0.0:
            return Window(f_half, self.min_half_width)
        if len(flux) == 1:  # rising from the sweet spot at an unknown rate
            span = self.first_span * min(1.0, (step / self.max_flux_step) ** 2 * 4)
            low, high = f01[0] - self.min_half_width, f01[0] + max(span, 4 * self.min_half_width)
            return Window(0.5 * (low + high), 0.5 * (high - low))
        return predict(np.array(flux), np.array(f01), offset, self.min_half_width)

    def _sweep(self, window: Window, band: Range, narrowed: Window | None = None) -> np.ndarray:
        """The row's tones: the window within `band`, at least 2 `min_half_width` wide; with
        `narrowed`, only the part of its grid that covers `narrowed`, at least `points`."""
        narrowest = min(2 * self.min_half_width, band.high - band.low)
        low = min(max(window.centre - window.half_width, band.low), band.high - narrowest)
        high = min(max(window.centre + window.half_width, low + narrowest), band.high)
        # a wide window gets more points, so a line of a few steps is never very broad
        points = self._grid_size(high - low, 401)
        grid = np.linspace(low, high, points)
        if narrowed is None:
            return grid
        step = grid[1] - grid[0]
        count = max(int(np.ceil(2 * narrowed.half_width / step)) + 1, self.points)
        if count >= points:
            return grid
        first = narrowed.centre - (count - 1) / 2 * step
        return np.clip(first, low, high - (count - 1) * step) + step * np.arange(count)

    def _grid_size(self, span: float, most: int) -> int:
        """Points of a sweep over `span` Hz at `max_step`, between `points` and `most`: a
        line a few steps wide on a coarser grid is zoomed anyway, and a finer one only costs
        shots (the tone scales with the step, so the line is as many points wide)."""
        return int(np.clip(np.ceil(span / self.max_step) + 1, self.points, most))

    def _measure_row(
        self,
        session: QubitSession,
        window: Window,
        band: Range,
        last_tone: tuple[float, float] | None,
        lowest: bool = False,
        across_gap: bool = False,
        trusted: bool = False,
        budget: int | None = None,
        expected: float | None = None,
        narrowed: Window | None = None,
    ) -> tuple[np.ndarray, np.ndarray, float, int, Line | None]:
        """One row, re-measured while the line is missing or too wide.

        The tone should make the line `points_per_linewidth` steps wide: the last line's
        (amplitude, linewidth) scaled linearly, but never more than `max_tone_growth` times
        the last tone, since away from the sweet spot T2 drops and the same tone gives a far
        wider line (`start_amplitude` at first). A missing line may lie outside the
        window, be too narrow for the grid or too faint (the dispersive shift shrinks in
        places), so a retry doubles the window and the tone and triples the shots; a line much
        wider than wanted is re-measured with the tone scaled down. Returns the sweep, IQ,
        tone and shots of the last attempt and the line nearest the window centre. A glitched
        row is simply measured again. A row whose `budget` (default: the node's) is below the
        node's and shows no line is left so: deferred (`_row_budget`). `expected` is the line
        height the tracking expects (`_score`); a sweep covers only `narrowed` of the window
        when given (`_narrowed`; a retry without the line twice as much).
        """
        budget = budget or self.budget
        shots = self.shots
        amplitude = None
        predicted = window
        recentred = False
        for attempt in range(self.retries + 1):
            frequency = self._sweep(window, band, narrowed)
            step = frequency[1] - frequency[0]
            wanted = self.points_per_linewidth * step
            if amplitude is None:
                amplitude = self._first_tone(last_tone, wanted, lowest)
            amplitude = float(np.clip(amplitude, self.min_amplitude, self.max_amplitude))
            session.configure(drive={"amplitude": amplitude}, readout={"shots": shots})
            data = measure_averaged(
                session,
                self.name,
                SWEEP,
                frequency,
                self._score(frequency, window, expected),
                self.min_line_snr,
                budget,
                futile=self._futile(frequency, budget),
            )
            iq, shots = data["iq"].values, int(data.attrs["shots"])
            if glitched(iq):  # an instrument hiccup: measure the row again as it was
                line = None
                continue
            lines = find_lines(frequency, iq, self.min_line_snr)
            if lowest:
                line = qubit_line(lines, self.min_relative_snr)
                lowest = line is None  # once found, zooming keeps the nearest line
            else:
                line = self._predicted_line(lines, window, predicted, frequency, across_gap)
            if line is not None:
                line = refine_line(frequency, iq, line)
            resolved = line is not None and line.fwhm > 1.5 * step and step <= self.max_step
            if attempt == self.retries or (resolved and line.fwhm <= 3 * wanted):
                break
            if line is None and budget < self.budget:
                break  # deferred: the map may do without it
            if line is None and not lowest and self._faint_where_predicted(frequency, iq, window):
                break  # the line is there, in a readout-contrast null: wider looks can't help
            if line is None and trusted and shots >= self._enough(budget):
                if recentred:
                    break  # in a contrast null: neither the readout nor a wider look helps
                recentred = True
                centre_readout(session, f"{self.name}_readout", self.readout_span)
                shots, narrowed = self.shots, _doubled(narrowed)
                continue
            shots = self.shots
            if line is None:
                # off the line, out of the window, or read out off the moving resonator
                centre_readout(session, f"{self.name}_readout", self.readout_span)
                window = Window(window.centre, 2 * window.half_width)
                narrowed = _doubled(narrowed)
                amplitude *= 2
            elif not resolved:  # the window was too coarse to place the line: zoom in
                window = Window(line.centre, max(self.min_half_width, 2 * line.fwhm))
                narrowed = None
            else:
                amplitude *= wanted / line.fwhm
        return frequency, iq, amplitude, shots, line

    def _faint_where_predicted(self, frequency: np.ndarray, iq: np.ndarray, window: Window) -> bool:
        """Whether a row averaged to its budget shows the line faintly (3 noise deviations)
        within its window, off the sweep's edges: the line is where predicted and the readout
        barely sees it (the dispersive shift of 0 and 1 changes sign along flux there), so a
        wider window, a stronger tone and more shots, a retry's remedies for a line outside
        the window, would only cost device time (on the built-in chip one such row's four
        widening retries took 580 device-s with 500 shots a point at most)."""
        line = nearest_line(find_lines(frequency, iq, _SEEN_SNR), window.centre)
        if line is None:
            return False
        near = abs(line.centre - window.centre) <= window.half_width
        return near and not on_edge(frequency, line)

    def _across_gap(self, window: Window, last_f01: float) -> Window:
        """A prediction extrapolated across a gap in the drive's bands, narrowed to half the
        rise it predicts.

        Rows skipped in the gap leave the next prediction far from the last line, and the
        disagreement of its extrapolations then spans gigahertz (the heavy chip: 2.02 ±
        1.98 GHz, reaching down into the gap), which other transitions share: its 0–2 line
        at 5.1–5.2 GHz was taken for f01 (2.00 and 2.63 GHz) and every later row followed
        it. f01² rises as a hyperbola away from the sweet spot, which the centre
        extrapolates (there within 1 %), so f01 lies within half the predicted rise.
        """
        rise = abs(window.centre - last_f01)
        return Window(window.centre, max(min(window.half_width, 0.5 * rise), self.min_half_width))

    def _predicted_line(
        self,
        lines: list[Line],
        window: Window,
        predicted: Window,
        frequency: np.ndarray,
        across_gap: bool = False,
    ) -> Line | None:
        """The line nearest the window centre, if it can be the tracked one: not on the
        sweep's edge and within `max_prediction_miss` half-widths of the row's prediction. A
        widened retry where the readout contrast has vanished (the dispersive shift changes
        sign along flux) otherwise locks onto another transition, and every later row would
        follow it; a missed row is only a missed row. Across a gap in the drive's bands
        (`_across_gap`) the line must lie within the prediction itself: f01 may sit in the
        gap, and the band shows other transitions.
        """
        line = nearest_line(lines, window.centre)
        if line is None:
            return None
        miss = 1.0 if across_gap else self.max_prediction_miss
        far = abs(line.centre - predicted.centre) > miss * predicted.half_width
        return None if on_edge(frequency, line) or far else line

    def _enough(self, budget: int) -> int:
        """Shots after which a row that shows nothing at `_SEEN_SNR` has had all of `budget`
        it could use: a line unseen by then would stand below `min_line_snr` at the budget
        (√shots), a quarter of it.

        Rows in a readout-contrast null show nothing at any budget; averaged to it in full
        (five rows, some more than once: re-measured with the readout re-centred) they took
        8 336 of sampled chip 5009's 19 672 map device-s and 3 920 of 5005's 7 270.
        """
        return int(np.ceil(budget * (_SEEN_SNR / self.min_line_snr) ** 2))

    def _futile(self, frequency: np.ndarray, budget: int):
        """The averaging's early end (`measure_averaged`): `_enough` shots, nothing seen."""
        return self._enough(budget), lambda iq: not find_lines(frequency, iq, _SEEN_SNR)

    def _score(self, frequency: np.ndarray, window: Window, expected: float | None = None):
        """Averaging target of a row: the SNR of the line nearest the prediction; when none
        shows (at `_SEEN_SNR`), the `expected` line height over the row's noise, below that
        threshold (0 without an expectation).

        The averaging plans its next round from the score by the √shots law; 0 says
        nothing, and the round is the largest allowed (16×): a line that needs 5 000 shots,
        unseen at 800, was averaged to 12 800 (sampled chip 5006: 18 of its 30 rows, and
        8 924 of its map's 17 071 device-s beyond what the lines needed). The lines found
        so far say how high the next one should stand above this noise.
        """

        def score(iq: np.ndarray) -> float:
            line = nearest_line(find_lines(frequency, iq, _SEEN_SNR), window.centre)
            if line is not None:
                return line.snr
            if expected is None:
                return 0.0
            return min(expected / point_noise(response_to_peak(iq)), _SEEN_SNR)

        return score

    def _first_tone(
        self, last_tone: tuple[float, float] | None, wanted: float, unbounded: bool = False
    ) -> float:
        """The last tone scaled to the wanted linewidth; its growth is capped (T2 drops off
        the sweet spot), less so on the first row off it, whose wide grid needs a broader
        line (a much stronger tone would show other transitions)."""
        if last_tone is None:
            return self.start_amplitude
        amplitude, linewidth = last_tone
        growth = min(wanted / linewidth, (3 if unbounded else 1) * self.max_tone_growth)
        return amplitude * growth

    def analyse(self, data: xr.Dataset) -> Analysis:
        """Fit EJ/EC/EL to the tracked f01; the flux mapping is fitted when not recorded.

        A live map records the calibrated period and sweet spot in its attrs; a map from
        another lab (one shared frequency axis, NaN where nothing was measured) may not, and
        then the period and the half-flux bias are fitted too.
        """
        period = _optional(data.attrs.get("flux_period"))
        period_stderr = _optional(data.attrs.get("flux_period_stderr"))
        calibrated = _optional(data.attrs.get("flux_sweet_spot"))
        peaks, linewidths, n_glitched = row_peaks(data, self.min_line_snr)
        clean = at_most(
            "glitched rows (fraction)", n_glitched / data.sizes[ROW], self.max_glitched_fraction
        )
        try:
            fit, peaks, linewidths = tracked_fit(
                peaks,
                linewidths,
                period,
                calibrated,
                self.max_residual_linewidths,
                self.min_points,
                period_stderr,
            )
        except FitError as error:
            return Analysis(
                values={name: (np.nan, np.nan) for name in ENERGIES},
                criteria=[
                    clean,
                    at_least("row peaks found", peaks.bias.size, self.min_points),
                    at_least("spectrum fit converged", 0.0, 1.0),
                ],
                report=f"spectrum fit failed: {error}\n",
                curves=_map_curves(data, peaks),
            )
        others, plasmon_report = (), ""
        if "plasmon_iq" in data:
            starts = self._starts(peaks, fit)
            joint = self._joint_fits(peaks, linewidths, fit, starts)
            others, plasmon_report = recorded_plasmon_lines(
                data, peaks, fit, self.min_line_snr, joint.consistent, joint.equivalent
            )
        if others:
            try:  # from where the assignment's joint fit started (not from the f01 grid)
                fit = fit_flux_spectrum(
                    peaks,
                    period=period,
                    sweet_spot_guess=calibrated,
                    others=others,
                    start=joint.start(others),
                    period_stderr=period_stderr,
                )
            except FitError as error:
                others, plasmon_report = (), f"plasmon lines not fitted: {error}\n"
        flux = bias_to_flux(peaks.bias[fit.used], fit.period, fit.sweet_spot)
        sweet_spot = fit.sweet_spot
        if calibrated is not None:
            # f01 has period one flux quantum: the fit may land on an equivalent half-flux point
            sweet_spot -= fit.period * np.round((fit.sweet_spot - calibrated) / fit.period)
        criteria = [
            clean,
            at_least("peaks used in the fit", fit.n_points, self.min_points),
            at_least("flux span of the fitted peaks (Φ0)", np.ptp(flux), self.min_flux_span),
            at_most(
                "residual rms / median linewidth",
                residual_linewidths(fit, linewidths),
                self.max_residual_linewidths,
            ),
        ]
        if others:
            stderr = np.array([o.stderr for o in others])
            criteria.append(
                at_most(
                    "plasmon line residual (standard errors)",
                    float(np.max(np.abs(fit.other_residuals_hz) / stderr)),
                    self.max_plasmon_residual,
                )
            )
        if calibrated is not None:
            criteria.append(
                at_most(
                    "fitted − calibrated sweet spot (Φ0)",
                    abs(sweet_spot - calibrated) / fit.period,
                    self.max_sweet_spot_shift,
                )
            )
        values = {"flux_sweet_spot": (sweet_spot, fit.sweet_spot_stderr)}
        if period is None:
            values["flux_period"] = (fit.period, fit.period_stderr)
        mapping = _period_errors_of(data, peaks, fit, others)
        for name in ENERGIES:
            value = 1e9 * getattr(fit, name)
            stderr = 1e9 * float(np.hypot(getattr(fit, f"{name}_stderr"), mapping[name]))
            values[name] = (value, stderr)
            criteria.append(
                at_most(
                    _precision(name),
                    relative_error(value, stderr),
                    self.max_relative_error,
                )
            )
            criteria += within(name, value, *getattr(self, f"{name}_bounds"))
        return Analysis(
            values=values,
            criteria=criteria,
            report=_report(fit, peaks, sweet_spot, calibrated) + plasmon_report,
            fit=fit.result,
            curves=_map_curves(data, peaks, fit),
        )


@dataclass
class JointFits:
    """Joint fits of f01 and readings of other lines, each reading fitted once.

    The assignment tries a reading alone and then in company, the partner search asks for
    the single readings again, and the equivalence test for the largest ones: every one is
    the same least-squares problem, and on a heavy chip each takes seconds.

    A fit starts at the point of `starts` (the f01-only fit, or points along the EJ, EC
    valley it leaves open) that puts the reading's first line nearest where it is read,
    with EJ and EC scaled together to put it there: the f01-only fit may lie far along the
    valley, further than the least squares walk.
    """

    peaks: PeakTrace
    linewidths: np.ndarray
    fit: SpectrumFit
    starts: list[SpectrumFit]
    max_residual_linewidths: float
    max_line_residual: float  # standard errors between a line and the joint fit
    _fits: dict[tuple[OtherLine, ...], SpectrumFit | None] = field(default_factory=dict)

    def of(self, others: tuple[OtherLine, ...]) -> SpectrumFit | None:
        """The joint fit of a reading, None when it fails or a line of it lies off the
        valley (`plasmon.on_valley`)."""
        if others not in self._fits:
            if not all(plasmon.on_valley(self.starts, line) for line in others):
                self._fits[others] = None
                return None
            try:
                held, stderr = self.fit.period_prior or (self.fit.period, None)
                self._fits[others] = fit_flux_spectrum(
                    self.peaks,
                    period=held,
                    sweet_spot_guess=self.fit.sweet_spot,
                    others=others,
                    start=self.start(others),
                    period_stderr=stderr,
                )
            except (FitError, ValueError):
                self._fits[others] = None
        return self._fits[others]

    def start(self, others: tuple[OtherLine, ...]) -> SpectrumFit:
        """Where the joint fit of a reading starts (see the class)."""
        return plasmon.valley_start(self.peaks, self.starts, others[0])

    def consistent(self, others: tuple[OtherLine, ...]) -> bool:
        """Whether f01 and the reading fit jointly: f01 residuals within
        `max_residual_linewidths`, each line within `max_line_residual` of its errors, and
        the chi-square no more than `max_line_residual`² (in units of the f01-only fit's
        reduced chi-square) above the f01-only fit's.

        The last is the valley's own limit (`plasmon.valley`). Without it a wrong pair can
        pass: on sampled chip 5000, 1→4 at 6.20 GHz with 1→2 at 5.94 GHz fitted with each
        line 3–4 standard errors off and f01 eight times further from its peaks than under
        the right pair, both within the first two limits; the chi-square rose by hundreds.
        """
        joint = self.of(others)
        if joint is None:
            return False
        stderr = np.array([o.stderr for o in others])
        lines_fit = np.abs(joint.other_residuals_hz) <= self.max_line_residual * stderr
        added = joint.result.chisqr - self.fit.result.chisqr
        return bool(
            residual_linewidths(joint, self.linewidths) <= self.max_residual_linewidths
            and lines_fit.all()
            and added <= self.max_line_residual**2 * max(self.fit.redchi, 1.0)
        )

    def equivalent(self, candidates: list[tuple[OtherLine, ...]]) -> int | None:
        """Which of several consistent readings to use: the best-fitting one when every
        reading gives EJ and EC within one combined standard error of it (the choice then
        does not matter); None when they disagree."""
        fits = [self.of(candidate) for candidate in candidates]
        if any(f is None for f in fits):
            return None
        chosen = min(range(len(fits)), key=lambda k: fits[k].result.chisqr)
        best = fits[chosen]
        for other in fits:
            for name in ("EJ", "EC"):
                difference = abs(getattr(other, name) - getattr(best, name))
                combined = np.hypot(
                    getattr(other, f"{name}_stderr"), getattr(best, f"{name}_stderr")
                )
                if not difference <= combined:
                    return None
        return chosen


def _period_refits(
    data: xr.Dataset, peaks: PeakTrace, fit: SpectrumFit, others: tuple[OtherLine, ...] = ()
) -> list[SpectrumFit] | None:
    """The fit repeated with the held flux period at ± its stderr (None when the map records
    no period or no finite stderr, or the fit took the period as a prior: its covariance
    then carries the period's share). The period maps bias to flux and so scales EL (and
    through it EJ, EC); these refits carry that share of the error. Raises FitError."""
    period = _optional(data.attrs.get("flux_period"))
    stderr = _optional(data.attrs.get("flux_period_stderr"))
    if period is None or not stderr or not np.isfinite(stderr) or fit.period_prior is not None:
        return None
    return [
        fit_flux_spectrum(
            peaks,
            period=period + sign * stderr,
            sweet_spot_guess=fit.sweet_spot,
            others=others,
            start=fit,
        )
        for sign in (1, -1)
    ]


def _plasmon_prediction(
    fit: SpectrumFit,
    bias: float,
    refits: list[SpectrumFit] | None,
    transitions: tuple[tuple[int, int], ...] = plasmon.PLASMON,
) -> plasmon.Prediction:
    """The plasmon lines (`transitions`) predicted by a fit, including what the held flux
    period's uncertainty does to them: the `refits` at period ± stderr move them together,
    by far more than the statistical errors when f01 alone leaves EJ and EC free to trade
    off."""
    prediction = plasmon.predict(fit, bias, transitions)
    if refits is None:
        return prediction
    means = [plasmon.predict(f, bias, transitions).mean for f in refits]
    return prediction.widened((means[0] - means[1]) / 2)


def _period_errors(refits: list[SpectrumFit] | None) -> dict[str, float]:
    """Errors (GHz) the held flux period's own uncertainty gives EJ, EC and EL: half the
    spread of each energy over the `refits`, added in quadrature to its statistical error."""
    if refits is None:
        return dict.fromkeys(ENERGIES, 0.0)
    return {n: abs(getattr(refits[0], n) - getattr(refits[1], n)) / 2 for n in ENERGIES}


def _period_errors_of(
    data: xr.Dataset, peaks: PeakTrace, fit: SpectrumFit, others: tuple[OtherLine, ...] = ()
) -> dict[str, float]:
    """`_period_errors` of fresh refits; infinite when a refit fails."""
    try:
        return _period_errors(_period_refits(data, peaks, fit, others))
    except FitError:
        return dict.fromkeys(ENERGIES, np.inf)


def residual_linewidths(fit: SpectrumFit, linewidths: np.ndarray) -> float:
    """The fit's residual rms over the median linewidth of the rows it used."""
    return float(fit.residual_rms_hz / np.nanmedian(linewidths[fit.used]))


def tracked_fit(
    peaks: PeakTrace,
    linewidths: np.ndarray,
    period: float | None,
    sweet_spot: float | None,
    max_residual: float,
    min_points: int,
    period_stderr: float | None = None,
) -> tuple[SpectrumFit, PeakTrace, np.ndarray]:
    """The spectrum fit of the rows, cut where the tracking lost the qubit line.

    Rows are measured outward from the sweet spot, each centred on a prediction from the
    ones before. Where the readout contrast vanishes (the dispersive shift changes sign
    along flux) a widened retry can lock onto another transition, and every later row
    follows it. The robust fit drops a few stray rows but not a wrong branch. When the
    residual criterion fails, the longest run of rows from the sweet spot outward (at least
    `min_points`) that fits within it is used instead: those rows are f01. Returns the fit
    and the peaks and linewidths it was made from. Needs the calibrated sweet spot; without
    it (a recorded map) the full fit is returned. A `period` with a `period_stderr` is a
    prior (`fit_flux_spectrum`).
    """
    mapping = {"period": period, "period_stderr": period_stderr}
    fit = fit_flux_spectrum(peaks, sweet_spot_guess=sweet_spot, **mapping)
    if sweet_spot is None or residual_linewidths(fit, linewidths) <= max_residual:
        return fit, peaks, linewidths
    order = np.argsort(np.abs(peaks.bias - sweet_spot), kind="stable")
    for count in range(order.size - 1, min_points - 1, -1):
        keep = np.sort(order[:count])
        subset = PeakTrace(*(np.asarray(column)[keep] for column in astuple(peaks)))
        try:
            trial = fit_flux_spectrum(subset, sweet_spot_guess=sweet_spot, **mapping)
        except FitError:
            continue
        if residual_linewidths(trial, linewidths[keep]) <= max_residual:
            return trial, subset, linewidths[keep]
    return fit, peaks, linewidths


def _f01_fit(data: xr.Dataset, min_snr: float, max_residual: float, min_points: int):
    """The f01-only spectrum fit of a map (cut where tracking failed), None when it fails."""
    peaks, linewidths, _ = row_peaks(data, min_snr)
    try:
        return tracked_fit(
            peaks,
            linewidths,
            _optional(data.attrs.get("flux_period")),
            _optional(data.attrs.get("flux_sweet_spot")),
            max_residual,
            min_points,
            _optional(data.attrs.get("flux_period_stderr")),
        )
    except FitError:
        return None


def distinct_lines(rows, min_snr: float) -> list[Line]:
    """The lines seen in plasmon rows (sweep, IQ, tone, shots, zoomed), strongest first.

    A zoomed row gives the centre of the line it was centred on; lines seen only in coarse
    rows (no zoom of them) count with their coarse centre. Lines closer than a linewidth are
    one line.

    Lines are handed on as `plasmon.as_reading` makes them: strength is the SNR per √shot
    (a weak line averaged long enough to show must not outrank a strong one seen at once),
    the stderr includes the bare model's error.
    """
    found: list[tuple[Line, bool]] = []
    for frequency, iq, _, shots, zoomed in rows:
        lines = plasmon.find_lines_any_sense(frequency, iq, min_snr)
        if zoomed:  # the line zoomed into sits in the middle
            lines = [line] if (line := nearest_line(lines, float(np.mean(frequency)))) else []
        found += [(plasmon.as_reading(line, shots), zoomed) for line in lines]
    distinct: list[Line] = []
    # zoomed centres first: a coarse sighting of the same line adds nothing
    for line, _ in sorted(found, key=lambda x: (not x[1], -x[0].snr)):
        if all(abs(line.centre - kept.centre) > max(line.fwhm, kept.fwhm) for kept in distinct):
            distinct.append(line)
    return sorted(distinct, key=lambda x: -x.snr)


def recorded_plasmon_lines(
    data: xr.Dataset,
    peaks: PeakTrace,
    fit: SpectrumFit,
    min_snr: float,
    consistent,
    equivalent=None,
) -> tuple[tuple[OtherLine, ...], str]:
    """The plasmon lines a map recorded, assigned against the f01-only `fit` (of `peaks`),
    and a report.

    See `distinct_lines` for which centres count.
    """
    if "plasmon_iq" not in data:
        return (), ""
    distinct = recorded_lines(data, min_snr)
    bias = float(data.attrs["plasmon_bias"])
    others = tuple(plasmon.assign(distinct, bias, consistent, equivalent))
    predicted = _predicted_text(data, peaks, fit, bias)
    seen = ", ".join(f"{line.centre / 1e9:.4f}" for line in distinct) or "none"
    used = ", ".join(f"f{o.lower}{o.upper} = {o.frequency / 1e9:.4f} GHz" for o in others)
    return others, (
        f"plasmon lines at half flux: predicted {predicted}; seen {seen} GHz; "
        f"{'used ' + used if others else 'none assigned unambiguously'}\n"
    )


def recorded_lines(data: xr.Dataset, min_snr: float) -> list[Line]:
    """The distinct lines (`distinct_lines`) of a map's recorded plasmon rows."""
    iq = data["plasmon_iq"].transpose(PLASMON_ROW, ...).values
    frequency = data["plasmon_frequency"].transpose(PLASMON_ROW, ...).values
    rows = []
    for f, z, shots, zoomed in zip(
        frequency, iq, data["plasmon_shots"].values, data["plasmon_zoomed"].values, strict=True
    ):
        measured = np.isfinite(z) & np.isfinite(f)
        rows.append((f[measured], z[measured], np.nan, int(shots), bool(zoomed)))
    return distinct_lines(rows, min_snr)


def _predicted_text(data: xr.Dataset, peaks: PeakTrace, fit: SpectrumFit, bias: float) -> str:
    """The f01-only fit's plasmon prediction for the report (or why there is none: the
    search then covered the lines' range along the EJ, EC valley)."""
    try:
        prediction = _plasmon_prediction(fit, bias, _period_refits(data, peaks, fit))
    except FitError as error:
        return f"none ({error}; searched over the EJ, EC valley)"
    return ", ".join(
        f"f{lo}{u} {m / 1e9:.3f} ± {s / 1e9:.3f} GHz"
        for (lo, u), m, s in zip(
            prediction.transitions,
            prediction.mean,
            np.sqrt(np.diag(prediction.covariance)),
            strict=True,
        )
    )


def row_peaks(data: xr.Dataset, min_snr: float) -> tuple[PeakTrace, np.ndarray, int]:
    """Peak per row (rows have their own frequency axes), the linewidth (Hz) of each and the
    number of glitched rows (left out)."""
    traces, widths = [], []
    clean = [(bias, frequency, iq) for bias, frequency, iq in rows(data) if not glitched(iq)]
    for bias, frequency, iq in clean:
        trace = extract_peaks(np.array([bias]), frequency, iq[None], min_snr=min_snr)
        if trace.bias.size:
            line = nearest_line(find_lines(frequency, iq, min_snr), trace.peak_frequency[0])
            traces.append(trace)
            widths.append(line.fwhm if line else np.nan)
    n_glitched = data.sizes[ROW] - len(clean)
    if not traces:
        empty = np.empty(0)
        return PeakTrace(empty, empty, empty, empty), empty, n_glitched
    trace = PeakTrace(
        np.concatenate([t.bias for t in traces]),
        np.concatenate([t.peak_frequency for t in traces]),
        np.concatenate([t.peak_stderr for t in traces]),
        np.concatenate([t.snr for t in traces]),
    )
    return trace, np.array(widths), n_glitched


def _unsearched(
    low: float, high: float, searched: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The parts of (low, high) outside every `searched` window."""
    pieces = [(low, high)]
    for a, b in searched:
        pieces = [
            part
            for start, stop in pieces
            for part in ((start, min(stop, a)), (max(start, b), stop))
            if part[1] > part[0]
        ]
    return pieces


def _padded(arrays: tuple[np.ndarray, ...]) -> np.ndarray:
    """Rows of different lengths (wide windows get more points) as one NaN-padded array."""
    width = max(a.size for a in arrays)
    dtype = np.result_type(*arrays, float)
    out = np.full((len(arrays), width), np.nan, dtype=dtype)
    for k, a in enumerate(arrays):
        out[k, : a.size] = a
    return out


def _optional(value: object) -> float | None:
    return None if value is None else float(value)


def rows(data: xr.Dataset):
    """(bias, frequencies, iq) per bias row, measured points only.

    Live maps give each row its own frequency window (a 2-D frequency coordinate); recorded
    maps from elsewhere share one frequency axis and mark unmeasured points with NaN.
    """
    frequency = data[SWEEP].values
    iq = data["iq"].transpose(ROW, ...).values
    for index, bias in enumerate(data[ROW].values):
        row_f = frequency[index] if frequency.ndim == 2 else frequency
        measured = np.isfinite(iq[index]) & np.isfinite(row_f)
        yield bias, row_f[measured], iq[index][measured]


def _report(fit: SpectrumFit, peaks: PeakTrace, sweet_spot: float, calibrated: float | None) -> str:
    if calibrated is not None and fit.period_prior is None:
        period = f"period held at {fit.period:.6f} V"
    else:
        period = f"period fitted: {fit.period:.6f} ± {fit.period_stderr:.1g} V"
        if fit.period_prior is not None:
            period += f" (prior {fit.period_prior[0]:.6f} ± {fit.period_prior[1]:.1g} V)"
    mapping = f"(calibrated {calibrated:.6f} V), " if calibrated is not None else ""
    return (
        f"{fit.n_points} of {peaks.bias.size} row peaks fitted ({fit.n_rejected} outliers)\n"
        f"half flux at {sweet_spot:.6f} ± {fit.sweet_spot_stderr:.1g} V {mapping}{period}\n"
        f"EJ = {fit.EJ:.4f} ± {fit.EJ_stderr:.2g} GHz, EC = {fit.EC:.4f} ± {fit.EC_stderr:.2g}"
        f" GHz, EL = {fit.EL:.4f} ± {fit.EL_stderr:.2g} GHz\n"
        f"residual rms {fit.residual_rms_hz / 1e6:.3g} MHz, reduced chi-square {fit.redchi:.3g}\n"
    )


def _map_curves(data: xr.Dataset, peaks: PeakTrace, fit: SpectrumFit | None = None) -> dict:
    """The rows resampled on one frequency grid (NaN outside each row's window) for the plot."""
    frequency = data[SWEEP].values
    grid = np.linspace(np.nanmin(frequency), np.nanmax(frequency), 400)
    image = np.full((grid.size, data.sizes[ROW]), np.nan)
    for i, (_, row_f, iq) in enumerate(rows(data)):
        if row_f.size < 2:
            continue
        inside = (grid >= row_f.min()) & (grid <= row_f.max())
        response = response_to_peak(iq)
        image[inside, i] = np.interp(grid[inside], row_f, response / max(np.ptp(response), 1e-30))
    bias = data[ROW].values
    curves = {
        "image": image,
        "image_x": bias,
        "image_y": grid,
        "trace_x": peaks.bias,
        "trace_y": peaks.peak_frequency,
        "xlabel": "flux bias (V)",
        "ylabel": "drive frequency (Hz)",
    }
    if fit is not None:
        curves["fit_x"] = np.linspace(bias.min(), bias.max(), 200)
        curves["fit_y"] = fit.f01(curves["fit_x"])
    return curves
