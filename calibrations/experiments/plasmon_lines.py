"""Plasmon transitions at half flux: the lines that tell EJ from EC on a heavy fluxonium.

f01(Φ) of a heavy fluxonium (EJ/EC ≳ 4, small EL) is nearly straight away from half flux:
it fixes EL and the tunnelling gap at Φ0/2, which depends on EJ and EC only through one
combination, so the energies come out with several per cent of error. At half flux the
potential has two wells; levels 0 and 1 are the symmetric and antisymmetric well ground
states and levels 2 and 3 the first plasma excitation in each well, so 1→2 and 0→3 are
strong lines near the plasma frequency √(8·EJ·EC) (0→2 and 1→3 are parity-forbidden). One
frequency sweep at the sweet spot without heralding (level 1 is thermally populated when
f01 is a few hundred MHz) shows them, and either one separates EJ from EC. Not always:
with a small EL the fluxon states of the next wells out (~4π²·EL above the ground doublet)
can lie below the plasma excitation; levels 2, 3 are then those, 1→2 and 0→3 go mostly as
EL, and the lines that separate EJ from EC are the plasma excitations of the inner wells
(1→4, 0→5). The node searches them next when the lines it has leave EJ or EC uncertain.

Which line is which is decided by fitting, not by the f01-only prediction: along the valley
of EJ, EC that f01 leaves open the prediction is far from linear, and a linearised
covariance was seen 20 σ off. Every assignment of the seen lines to the transitions allowed
at half flux (1→2, 0→3, 1→4, 0→5; parity forbids the rest) is fitted jointly with f01, one
line first and larger sets only from lines that fit alone; an assignment counts when the
joint fit is consistent (f01 residuals within the node's limit, each line within a few of
its standard errors). The assignment used explains the most lines and is the only one that
does so: an ambiguous pairing adds nothing rather than something wrong, unless every
reading gives the same energies within their errors (levels 2 and 3 of a very heavy
fluxonium are nearly degenerate, and a line read as 1→2 or as 1→3 then says the same). When
one line is
seen and either plasmon transition could be it, the acquisition looks where its partner
would be under each reading, and the pair decides.

Each line moves the readout point its own way: from level i's dressed resonator to level
j's, so 1→2 and 0→3 can pull the IQ point in opposite directions. A sweep holding both is
therefore searched along both senses of its main direction of variation and of the one
across it (`find_lines_any_sense`); the single-sense peak search of f01 spectroscopy would
see the stronger line and take the other one for a dip of the baseline.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import brentq
from scipy.signal import find_peaks

from fluxcal.calibrations.experiments.qubit_spectroscopy import Line, point_noise
from fluxcal.calibrations.fitting import FitError, SpectrumFit
from fluxcal.calibrations.fitting.noise import whitened
from fluxcal.calibrations.fitting.spectrum import (
    OtherLine,
    PeakTrace,
    bias_to_flux,
    fit_with_EJ_held,
    refine_peak,
)
from fluxcal.instruments.fluxonium import FluxoniumModel

#: Transitions looked for at half flux (lower, upper level) ...
PLASMON: tuple[tuple[int, int], ...] = ((1, 2), (0, 3))
#: ... and every transition a seen line may be: parity allows odd ↔ even at half flux.
ALLOWED: tuple[tuple[int, int], ...] = ((1, 2), (0, 3), (1, 4), (0, 5))
#: Strongest lines read at first when assigning ...
_MAX_LINES = 2
#: ... and at most when the strongest leave the reading ambiguous: each further line must
#: be explained too (sampled chip 3000: 1→4 and 0→3 read the two strongest as well as 0→5
#: and 0→3 did, 2 σ apart in EJ; the third line, 0→5 at 9.25 GHz, fits only the first).
_MAX_DECIDING_LINES = 4
#: Independent relative error added to each predicted line where a partner is searched:
#: the linear propagation makes f03 − f12 look known to < 1 MHz, but away from the fitted
#: energies the curvature alone moves it by far more (and a real device has model errors).
_MODEL_ERROR = 0.01
#: Relative error of the bare fluxonium model at a plasmon line: coupling to the readout
#: resonator dresses the levels, by ~g²/Δ, largest for the plasma levels near the resonator
#: (2.1 MHz at 10 GHz seen against a 0.26 MHz line stderr on sampled chip 5028). The joint
#: fit weighs each line with it added, so a right reading is consistent and EJ, EC carry it.
DRESSING = 3e-4
#: An f01 fit whose energies are more uncertain than this (relative) predicts nothing: its
#: linearised covariance would be meaningless, and the tracking itself went wrong.
_MAX_RELATIVE_ERROR = 0.3


#: First relative step of EJ along the valley profile; each further step is twice as long
#: in log EJ, so a short valley is resolved and a long one walked in a few fits: at most
#: `_VALLEY_POINTS` each way (e^(0.03·(2⁷−1)) ≈ 45).
_VALLEY_STEP = 0.03
_VALLEY_POINTS = 7
#: How closely the valley's edge (where the chi-square reaches its limit) is located, in
#: log EJ: a plasma line moves at most about as fast as EJ along the valley, so the range of
#: a line over the valley then falls short of the edge's by well under the model error.
_EDGE_RESOLUTION = 0.005
#: Fewest sweep points a line search makes sense on.
_MIN_SWEEP_POINTS = 15


def senses(iq: np.ndarray) -> list[np.ndarray]:
    """The sweep's IQ, centred on its median with its noise made alike in every direction
    (`whitened`), projected on its main direction of variation and on the direction across
    it, each in both senses: a line is a peak in one of them whichever way it moves the
    readout point, as high as its noise allows."""
    z = np.asarray(iq, complex)
    points = whitened(z - (np.median(z.real) + 1j * np.median(z.imag)))
    axes = np.linalg.svd(points, full_matrices=False)[0].T
    projections = [axis @ points for axis in axes]
    return [sign * y for y in projections for sign in (1.0, -1.0)]


def as_reading(line: Line, shots: int) -> Line:
    """`line` as the assignment reads it: its SNR per √shot (how strongly the transition
    is driven, not how long it was averaged; a parity-forbidden line that needed 11 464
    shots to show must rank below an allowed one seen in 250) and its stderr with the bare
    model's error (`DRESSING`) added."""
    return replace(
        line,
        snr=line.snr / np.sqrt(max(shots, 1)),
        stderr=float(np.hypot(line.stderr, DRESSING * line.centre)),
    )


def _peaks(frequency: np.ndarray, y: np.ndarray, min_snr: float) -> list[Line]:
    """Peaks of one real response, as `find_lines` finds them, with refined centres."""
    noise = point_noise(y)
    smooth = np.convolve(y, np.ones(3) / 3, mode="same")
    step = float(np.median(np.diff(frequency)))
    found, props = find_peaks(
        smooth, height=min_snr * noise, prominence=0.5 * min_snr * noise, width=1.0
    )
    lines = []
    for k, width in zip(found, props["widths"], strict=True):
        centre, stderr = refine_peak(frequency, y, int(k))
        lines.append(Line(centre, stderr, float(width) * step, float(smooth[k] / noise), int(k)))
    return lines


def find_lines_any_sense(frequency: np.ndarray, iq: np.ndarray, min_snr: float) -> list[Line]:
    """Every line of a saturation sweep at least `min_snr` noise deviations high, whichever
    way it moves the readout point, strongest first, centres refined. A line seen in more
    than one projection (closer than its width) counts once, with its highest SNR."""
    frequency = np.asarray(frequency, float)
    iq = np.asarray(iq)
    if iq.size < _MIN_SWEEP_POINTS or not np.all(np.isfinite(iq)):
        return []
    found = sorted(
        (line for y in senses(iq) for line in _peaks(frequency, y, min_snr)),
        key=lambda x: -x.snr,
    )
    distinct: list[Line] = []
    for line in found:
        if all(abs(line.centre - kept.centre) > max(line.fwhm, kept.fwhm) for kept in distinct):
            distinct.append(line)
    return distinct


@dataclass(frozen=True)
class Prediction:
    """Predicted frequencies (Hz) of `transitions` at one bias and their covariance (Hz²)."""

    bias: float
    transitions: tuple[tuple[int, int], ...]
    mean: np.ndarray
    covariance: np.ndarray

    def widened(self, shift: np.ndarray) -> Prediction:
        """With a correlated error `shift` (Hz per line, e.g. one standard error of a held
        parameter) added to the covariance."""
        shift = np.asarray(shift, float)
        return replace(self, covariance=self.covariance + np.outer(shift, shift))

    def with_model_error(self) -> Prediction:
        """With the assignment's independent relative error (`_MODEL_ERROR`) added."""
        return replace(self, covariance=self.covariance + np.diag((_MODEL_ERROR * self.mean) ** 2))

    def windows(self, sigmas: float, lowest: float) -> list[tuple[float, float]]:
        """Per line, the frequency range within `sigmas` standard deviations (from `lowest`)."""
        spread = sigmas * np.sqrt(np.diag(self.covariance))
        return [
            (max(float(m - s), lowest), float(m + s))
            for m, s in zip(self.mean, spread, strict=True)
            if m + s > lowest
        ]


def _frequencies(
    values: dict[str, float],
    bias: float,
    cutoff: int,
    transitions: tuple[tuple[int, int], ...] = PLASMON,
) -> np.ndarray:
    model = FluxoniumModel(values["EJ"], values["EC"], values["EL"], cutoff=cutoff)
    flux = bias_to_flux(np.array([bias]), values["period"], values["sweet_spot"])
    levels = model.energies(flux, n_levels=max(u for _, u in transitions) + 1)[0]
    return 1e9 * np.array([levels[u] - levels[lo] for lo, u in transitions])


def predict(
    fit: SpectrumFit, bias: float, transitions: tuple[tuple[int, int], ...] = PLASMON
) -> Prediction:
    """The `transitions` (f12, f03 unless given) at `bias` from a spectrum fit, with its
    covariance propagated linearly."""
    result = fit.result
    if result.covar is None:
        raise FitError("the f01 fit has no covariance to predict the plasmon lines from")
    values = _values(fit)
    worst = max(abs(getattr(fit, f"{n}_stderr") / getattr(fit, n)) for n in ("EJ", "EC", "EL"))
    if not worst <= _MAX_RELATIVE_ERROR:
        raise FitError(f"the f01 fit's energies are {worst:.0%} uncertain: nothing to predict")
    mean = _frequencies(values, bias, fit.cutoff, transitions)
    jacobian = np.empty((mean.size, len(result.var_names)))
    for k, name in enumerate(result.var_names):
        step = 0.01 * (result.params[name].stderr or 1e-6 * max(abs(values[name]), 1e-9))
        shifted = [
            _frequencies(
                {**values, name: values[name] + sign * step}, bias, fit.cutoff, transitions
            )
            for sign in (1, -1)
        ]
        jacobian[:, k] = (shifted[0] - shifted[1]) / (2 * step)
    covariance = jacobian @ np.asarray(result.covar) @ jacobian.T
    return Prediction(bias, transitions, mean, covariance)


def valley(
    peaks: PeakTrace, fit: SpectrumFit, sigmas: float, bounds: tuple[float, float]
) -> list[SpectrumFit]:
    """Fits of `peaks` along the valley of EJ, EC that f01(Φ) leaves open, by EJ: EJ held
    at growing steps (`_VALLEY_STEP`) out from the f01-only `fit` (within `bounds`, GHz)
    while the chi-square stays within `sigmas`² (in units of the fit's reduced chi-square)
    of it. A `fit` beyond a bound is left out and the walk goes on inside it: on a flat
    valley the least squares may stop anywhere, the physical range included. A walk whose
    next step would pass a bound takes its last step to the bound, and one whose step
    passes the chi-square limit looks for the edge (`_towards_edge`): the valley's range
    reaches its true ends, not the walk's last point.

    Where the valley is long the linearised covariance means nothing (the least squares
    may even stop far along a nearly flat valley), yet the plasmon lines can move little
    along it: their range over the valley is the honest prediction.
    """
    allowed = fit.result.chisqr + sigmas**2 * max(fit.redchi, 1.0)
    inside = bounds[0] <= fit.EJ <= bounds[1]
    fits = [fit] if inside else []
    for sign in (1.0, -1.0):
        last = fit
        for k in range(_VALLEY_POINTS):
            EJ = fit.EJ * np.exp(sign * _VALLEY_STEP * (2 ** (k + 1) - 1))
            at_bound = not bounds[0] <= EJ <= bounds[1]
            if at_bound and not bounds[0] <= last.EJ <= bounds[1]:
                # a fit beyond a bound (the least squares slid along a flat valley) walks
                # back inside it
                continue
            if at_bound:  # a walk from inside ends at the bound, its last stretch sampled
                EJ = float(np.clip(EJ, *bounds))
            try:
                held = fit_with_EJ_held(peaks, last, EJ)
            except FitError:
                break
            if held.result.chisqr > allowed:
                fits += _towards_edge(peaks, last, held, allowed)
                break
            last = held
            fits.append(last)
            if at_bound:
                break
    return sorted(fits or [fit], key=lambda f: f.EJ)


def _towards_edge(
    peaks: PeakTrace, inside: SpectrumFit, outside: SpectrumFit, allowed: float
) -> list[SpectrumFit]:
    """Valley points between `inside` (the walk's last fit within the `allowed` chi-square)
    and `outside` (its first step beyond) on the way to the edge where the chi-square
    reaches `allowed`, found by Brent's method in log EJ to `_EDGE_RESOLUTION`.

    The walk's steps double, so its last stretch would go unsampled, and there the
    fast-moving lines (1→4, 0→5, ∝ √(EJ·EC)) move furthest: sampled chip 5000's valley
    went on 15 % in EJ past its last point. A line read there must be inside the valley's
    range (`on_valley`). Two bisections, as first done, were not enough: on sampled chip
    3009 the last point inside lay 2 % in EJ short of the edge, the right 0→3 reading of
    its strongest line fell outside the range, and the line was read as 1→2 (EJ 28 % off).
    """
    found: list[SpectrumFit] = []
    bracket = (float(np.log(inside.EJ)), float(np.log(outside.EJ)))
    ends = {x: f.result.chisqr - allowed for x, f in zip(bracket, (inside, outside), strict=True)}

    def excess(log_ej: float) -> float:
        if log_ej in ends:  # the walk has fitted both ends already
            return ends[log_ej]
        held = fit_with_EJ_held(peaks, inside, float(np.exp(log_ej)))
        if held.result.chisqr <= allowed:
            found.append(held)
        return held.result.chisqr - allowed

    with contextlib.suppress(FitError):  # the points found so far stand
        brentq(excess, *bracket, xtol=_EDGE_RESOLUTION, rtol=1e-12)
    return found


def valley_windows(
    fits: list[SpectrumFit], bias: float, lowest: float
) -> list[tuple[float, float]]:
    """Per plasmon line, the frequency range it takes over the valley `fits`, widened by
    the model error (`_MODEL_ERROR`) each way."""
    lines = np.array([_frequencies(_values(f), bias, f.cutoff) for f in fits])
    low = lines.min(axis=0) * (1 - _MODEL_ERROR)
    high = lines.max(axis=0) * (1 + _MODEL_ERROR)
    return [
        (max(float(lo), lowest), float(hi)) for lo, hi in zip(low, high, strict=True) if hi > lowest
    ]


def cut_windows(windows: list[tuple[float, float]], span: float) -> list[tuple[float, float]]:
    """`windows` merged where they overlap and cut into equal pieces at most `span` wide,
    lowest first.

    Along a long valley the lines can lie anywhere over many GHz: one sweep over all of it
    would be so coarse that only a tone broadening the lines far beyond their width shows
    them, so the range is searched piece by piece. The chi-square along such a valley is
    flat and says nothing of where; a plasma line goes as √(EJ·EC), which along the valley
    grows about as EJ, so with no scale preferred (EJ equally likely per octave) an equal
    piece at lower frequency spans more octaves of EJ: the lowest pieces go first.
    """
    merged: list[list[float]] = []
    for lo, hi in sorted(windows):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    pieces = []
    for lo, hi in merged:
        edges = np.linspace(lo, hi, int(np.ceil((hi - lo) / span)) + 1)
        pieces += [(float(a), float(b)) for a, b in itertools.pairwise(edges)]
    return pieces


def _values(fit: SpectrumFit) -> dict[str, float]:
    return {name: float(p.value) for name, p in fit.result.params.items()}


def _predicted_at_half_flux(fit: SpectrumFit, reading: OtherLine) -> float:
    """`reading`'s transition (Hz) at half flux as `fit` predicts it."""
    model = FluxoniumModel(fit.EJ, fit.EC, fit.EL, cutoff=fit.cutoff)
    return 1e9 * float(model.transition_frequency(0.5, reading.lower, reading.upper))


def nearest_start(fits: list[SpectrumFit], reading: OtherLine) -> SpectrumFit:
    """The fit of `fits` (points along the valley) whose prediction of `reading`'s
    transition is nearest its frequency, scaled onto it (`scaled_start`): a joint fit
    started far along the valley crawls."""
    return scaled_start(
        min(fits, key=lambda f: abs(_predicted_at_half_flux(f, reading) - reading.frequency)),
        reading,
    )


def on_valley(fits: list[SpectrumFit], reading: OtherLine) -> bool:
    """Whether `reading`'s frequency lies in its transition's range along the valley `fits`,
    widened by the model error (`_MODEL_ERROR`) each way as `valley_windows` widens it: the
    range holds everywhere f01 lets the line be. A reading outside it is not fitted: its
    joint fit can only crawl (sampled chip 5000: 22 processor-s for a 1→2 reading of a
    line 175 MHz above the highest f12 along its valley)."""
    predicted = [_predicted_at_half_flux(f, reading) for f in fits]
    low, high = min(predicted) * (1 - _MODEL_ERROR), max(predicted) * (1 + _MODEL_ERROR)
    return low <= reading.frequency <= high


def valley_start(peaks: PeakTrace, fits: list[SpectrumFit], reading: OtherLine) -> SpectrumFit:
    """Where a joint fit of `reading` starts: the point of the valley `fits` (f01 fits at
    held EJ, sorted by EJ) at which the reading's transition is predicted at its frequency.
    Between the two neighbouring points that bracket it, EJ is interpolated in log and f01
    fitted again with EJ held there; where several pairs bracket it, the pair that fits f01
    best. The `nearest_start` when no pair brackets it or that fit fails.

    Why on the valley: `scaled_start` keeps EJ/EC and so leaves the valley, and f01 then
    fits badly; from there the least squares may crawl. On sampled chip 5000 the right
    reading of its 0→3 line crawled for 200 evaluations from the nearest valley point
    scaled (EJ 2 % from the answer; the flux period walked 10 σ from its prior), so the right
    pair of lines, tried only when each of its lines fits alone, was never tried. From the
    interpolated point it converges in a dozen.
    """
    predicted = np.array([_predicted_at_half_flux(f, reading) for f in fits])
    above = predicted >= reading.frequency
    brackets = [k for k in range(len(fits) - 1) if above[k] != above[k + 1]]
    if brackets:
        k = min(brackets, key=lambda j: fits[j].result.chisqr + fits[j + 1].result.chisqr)
        weight = (reading.frequency - predicted[k]) / (predicted[k + 1] - predicted[k])
        low, high = np.log(fits[k].EJ), np.log(fits[k + 1].EJ)
        nearer = fits[k] if weight < 0.5 else fits[k + 1]
        try:
            return fit_with_EJ_held(peaks, nearer, float(np.exp(low + weight * (high - low))))
        except FitError:
            pass  # the nearest point, scaled, is the fallback
    return nearest_start(fits, reading)


def scaled_start(fit: SpectrumFit, reading: OtherLine) -> SpectrumFit:
    """`fit` with EJ and EC scaled by one factor so that `reading`'s transition at half flux
    falls on its frequency: a plasma line goes as √(8·EJ·EC), so the factor is the ratio of
    the seen to the predicted frequency; EJ/EC, and with it the shape of f01, is kept."""
    model = FluxoniumModel(fit.EJ, fit.EC, fit.EL, cutoff=fit.cutoff)
    predicted = float(model.transition_frequency(0.5, reading.lower, reading.upper)) * 1e9
    factor = reading.frequency / predicted if predicted > 0 else 1.0
    return replace(fit, EJ=fit.EJ * factor, EC=fit.EC * factor)


def charge_ratio(fit: SpectrumFit, transitions: tuple[tuple[int, int], ...] = PLASMON) -> float:
    """|⟨0|n|1⟩| / min over the `transitions` of |⟨i|n|j⟩| at half flux, from the fit.

    A tone scaled by this drives those lines as hard as the one that gave a line of
    known width at f01: the Rabi rate is proportional to the charge matrix element.
    """
    model = FluxoniumModel(fit.EJ, fit.EC, fit.EL, cutoff=fit.cutoff)
    n = np.abs(model.spectrum(0.5, n_levels=max(u for _, u in transitions) + 1).n_matrix)
    plasmon = min(n[lo, u] for lo, u in transitions)
    return float(n[0, 1] / max(plasmon, 1e-12))


def assign(
    lines: list[Line],
    bias: float,
    consistent: Callable[[tuple[OtherLine, ...]], bool],
    equivalent: Callable[[list[tuple[OtherLine, ...]]], int | None] | None = None,
) -> list[OtherLine]:
    """The one largest assignment of `lines` to `ALLOWED` transitions whose joint fit is
    `consistent`, or nothing when there is none or more than one, unless `equivalent` says
    which of several to use (the one, say, whose energies all the others agree with: then
    the choice does not matter).

    Each transition takes at most one line and each line one transition. A set of lines is
    only tried when each of its parts one line smaller fitted jointly under the same reading
    (fewer lines leave a fit more freedom: lines that no fit can place together cannot be
    placed together in larger company; on sampled chip 3000 this cut the joint fits of
    three lines from 12 to 2, with the same assignment). The strongest
    `_MAX_LINES` are read first; while their reading is ambiguous the next strongest line
    joins, up to `_MAX_DECIDING_LINES`.
    """
    ranked = sorted(lines, key=lambda x: -x.snr)
    for count in range(_MAX_LINES, _MAX_DECIDING_LINES + 1):
        best = _largest_readings(ranked[:count], bias, consistent)
        if len(best) > 1 and equivalent is not None:
            chosen = equivalent(best)
            best = [best[chosen]] if chosen is not None else best
        if len(best) <= 1:
            return list(best[0]) if best else []
        if count >= len(ranked):  # no weaker line left to decide by
            break
    return []


def competing(
    lines: list[Line], bias: float, consistent: Callable[[tuple[OtherLine, ...]], bool]
) -> list[tuple[OtherLine, ...]]:
    """The largest consistent readings of the strongest `_MAX_DECIDING_LINES` of `lines`:
    when `assign` finds them ambiguous, the readings a further line must decide between."""
    ranked = sorted(lines, key=lambda x: -x.snr)[:_MAX_DECIDING_LINES]
    return _largest_readings(ranked, bias, consistent)


def _largest_readings(
    lines: list[Line], bias: float, consistent: Callable[[tuple[OtherLine, ...]], bool]
) -> list[tuple[OtherLine, ...]]:
    """Every consistent reading of `lines` that explains the most of them (see `assign`)."""
    readings = {
        (i, t): OtherLine(bias, line.centre, line.stderr, *t)
        for i, line in enumerate(lines)
        for t in ALLOWED
    }
    fitted = {(key,) for key, reading in readings.items() if consistent((reading,))}
    best: list[tuple[OtherLine, ...]] = [(readings[key],) for (key,) in sorted(fitted)]
    alone = sorted(key for (key,) in fitted)
    for size in range(2, len(lines) + 1):
        found = set()
        for keys in itertools.combinations(alone, size):
            indices = [i for i, _ in keys]
            targets = [t for _, t in keys]
            if len(set(indices)) < size or len(set(targets)) < size:
                continue
            if any(part not in fitted for part in itertools.combinations(keys, size - 1)):
                continue
            if consistent(tuple(readings[key] for key in keys)):
                found.add(keys)
        if not found:
            break
        fitted = found
        best = [tuple(readings[key] for key in keys) for keys in sorted(found)]
    return best


def readings(
    lines: list[Line], bias: float, consistent: Callable[[tuple[OtherLine, ...]], bool]
) -> list[OtherLine]:
    """Every reading of a single line as a plasmon transition (1→2 or 0→3) that fits."""
    candidates = [
        OtherLine(bias, line.centre, line.stderr, *t)
        for line in sorted(lines, key=lambda x: -x.snr)[:_MAX_LINES]
        for t in PLASMON
    ]
    return [reading for reading in candidates if consistent((reading,))]
