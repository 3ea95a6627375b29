"""Resonator search and resonator spectroscopy: where the readout resonator is, and how wide.

`ResonatorSearch` is the first node of the graph: nothing is known, so it sweeps the readout
tone over the whole band of the readout line at zero flux bias, finds the dip in |S21| (the
magnitude ignores the cable delay that winds the phase by thousands of radians across the
band; a running-median baseline removes the line's slow gain variations), then zooms on it
and fits the notch line shape with its environment (`fitting.fit_notch`). The tone is weak,
well below the resonator's saturation, so the line is the linear one.

`ResonatorSpectroscopy` repeats the fine scan at the operating point (the half-flux sweet
spot found by `resonator_flux`), where the qubit is thermally excited: the line is then the
population-weighted mixture of the resonator dressed by each qubit state. Its fitted centre is
the dip of that mixture; the frequency that best separates |0⟩ from |1⟩ is for readout
optimisation to find later.

Both gate on the same notch-fit criteria: signal-to-noise, a physical linewidth, the centre
well inside the window, and small relative standard errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import xarray as xr
from scipy.ndimage import median_filter

from fluxcal.calibrations.averaging import measure_averaged, noise_limited_score
from fluxcal.calibrations.fitting import FitError, NotchLines, fit_notch_lines
from fluxcal.calibrations.fitting.noise import difference_noise
from fluxcal.calibrations.gate import Criterion, at_least, at_most, relative_error, within
from fluxcal.calibrations.node import Analysis, Node
from fluxcal.calibrations.session import DEFAULT_READOUT, QubitSession

FREQUENCY = "readout_frequency"
_UNRESOLVED = (float("nan"), float("nan"))
COARSE = "coarse_frequency"


@dataclass(frozen=True)
class NotchLimits:
    """Gate thresholds for a notch fit: what a trustworthy resonance looks like."""

    min_snr: float = 10.0
    kappa_bounds: tuple[float, float] = (20e3, 20e6)  # Hz, physical readout linewidths
    min_edge_distance: float = 2.0  # linewidths between the centre and the window edges
    max_kappa_rel_stderr: float = 0.1
    max_centre_stderr: float = 0.05  # in linewidths


# --------------------------------------------------------------------------- coarse search


@dataclass(frozen=True)
class Dip:
    """The deepest feature of a wide |S21| sweep: centre and FWHM (Hz), depth in noise units."""

    centre: float
    width: float
    prominence: float


def find_dip(frequency: np.ndarray, iq: np.ndarray, baseline_points: int) -> Dip:
    """Most prominent dip of |S21| relative to a running-median baseline.

    The depth 1 − |S21|/baseline is smoothed over three points (a few steps span a linewidth)
    and its maximum compared with the point-to-point noise of the depth, which no slow
    baseline or single dip affects. Non-finite points are ignored.
    """
    frequency = np.asarray(frequency, float)
    magnitude = np.abs(np.asarray(iq))
    finite = np.isfinite(magnitude)
    if finite.sum() < 10:
        raise FitError(f"resonator search needs at least 10 finite points, got {finite.sum()}")
    frequency, magnitude = frequency[finite], magnitude[finite]
    baseline = median_filter(magnitude, size=min(baseline_points, magnitude.size), mode="nearest")
    depth = 1.0 - magnitude / np.maximum(baseline, np.finfo(float).tiny)
    noise = difference_noise(depth)
    smooth = np.convolve(depth, np.ones(3) / 3, mode="same")
    peak = int(np.argmax(smooth))
    half = depth > smooth[peak] / 2
    left = peak
    while left > 0 and half[left - 1]:
        left -= 1
    right = peak
    while right < depth.size - 1 and half[right + 1]:
        right += 1
    step = float(np.median(np.diff(frequency)))
    width = max(float(frequency[right] - frequency[left]), step) + step
    return Dip(float(frequency[peak]), width, float(smooth[peak] / max(noise, 1e-300)))


# --------------------------------------------------------------------------- notch analysis


def notch_score(frequency: np.ndarray, limits: NotchLimits) -> Callable[[np.ndarray], float]:
    """Scorer for averaging: how far the gate's noise-limited criteria are met (1 = just met)."""

    def score(iq: np.ndarray) -> float:
        trace = xr.Dataset({"iq": (FREQUENCY, iq)}, coords={FREQUENCY: frequency})
        analysis = notch_analysis(trace, limits)
        return noise_limited_score(analysis.criteria, ("signal-to-noise", "stderr"))

    return score


def measure_notch(
    session: QubitSession,
    name: str,
    frequency: np.ndarray,
    limits: NotchLimits,
    budget: int,
    attrs: dict,
) -> xr.Dataset:
    """A resonator trace averaged until the gate's noise-limited notch criteria are met."""
    score = notch_score(frequency, limits)
    return measure_averaged(session, name, FREQUENCY, frequency, score, 1.0, budget, attrs)


def notch_analysis(data: xr.Dataset, limits: NotchLimits) -> Analysis:
    """Notch fit of `iq` over `readout_frequency` → readout_frequency, κ and the Q factors.

    The line is fitted as one Lorentzian and as the thermal mixture of two dressed lines, and
    κ comes from the model the data support (`fitting.fit_notch_lines`): a fluxonium at its
    sweet spot is 10–45 % excited, and one line fitted to two reads their spread as width.
    readout_frequency stays the deepest point of the measured line (the mixture's dip) for
    the nodes downstream; the dressed lines and the excited weight are reported when resolved.
    loaded_q is fr/κ of the chosen model; internal_q and coupling_q are the one-line fit's,
    the numbers other tools give. Needs nothing from `attrs`, so a trace from a VNA file
    (Touchstone) is analysed the same way as a live one.
    """
    frequency = data[FREQUENCY].values.astype(float)
    iq = data["iq"].values.astype(complex)
    try:
        lines = fit_notch_lines(frequency, iq)
    except FitError as error:
        return Analysis({}, [at_least(f"notch fit ({error})", 0, 1)], str(error))
    single = lines.single
    kappa, kappa_stderr = lines.kappa, lines.kappa_stderr
    edge = min(lines.dip - frequency.min(), frequency.max() - lines.dip) / kappa
    criteria = [
        at_least("notch fit signal-to-noise", single.snr, limits.min_snr),
        *within("resonator linewidth κ (Hz)", kappa, *limits.kappa_bounds),
        at_least("centre distance from window edge (κ)", edge, limits.min_edge_distance),
        at_most(
            "κ relative stderr",
            relative_error(kappa, kappa_stderr),
            limits.max_kappa_rel_stderr,
        ),
        at_most("centre stderr (κ)", lines.dip_stderr / kappa, limits.max_centre_stderr),
    ]
    loaded_q = lines.dip / kappa
    values = {
        "readout_frequency": (lines.dip, lines.dip_stderr),
        "resonator_kappa": (kappa, kappa_stderr),
        "loaded_q": (loaded_q, loaded_q * kappa_stderr / kappa),
        "internal_q": (single.Qi, single.Qi_stderr),
        "coupling_q": (single.Qc, single.Qc_stderr),
    }
    if lines.mixture is not None and lines.is_mixture:
        mixture = lines.mixture
        values["dressed_frequency_0"] = (mixture.f0, mixture.f0_stderr)
        values["dressed_frequency_1"] = (mixture.f1, mixture.f1_stderr)
        values["excited_weight"] = (mixture.p1, mixture.p1_stderr)
    unit = data["iq"].attrs.get("units", "V")
    curves = _curves(frequency, iq, lines, unit)
    return Analysis(values, criteria, _report(lines), lines.chosen, curves)


def _report(lines: NotchLines) -> str:
    single = lines.single
    text = (
        f"dip {lines.dip:.0f} ± {lines.dip_stderr:.0f} Hz, κ = {lines.kappa:.0f} ± "
        f"{lines.kappa_stderr:.0f} Hz; one line: fr = {single.fr:.0f} Hz, κ = "
        f"{single.kappa:.0f} Hz (Ql {single.Ql:.0f}, Qi {single.Qi:.0f}, Qc {single.Qc:.0f}), "
        f"cable delay {single.delay * 1e9:.2f} ns, SNR {single.snr:.0f}, "
        f"reduced χ² {single.redchi:.2f}\n{lines.reason}"
    )
    if lines.mixture is not None and lines.is_mixture:
        mixture = lines.mixture
        text += (
            f"\ndressed lines {mixture.f0:.0f} and {mixture.f1:.0f} Hz, excited weight "
            f"{mixture.p1:.3f} ± {mixture.p1_stderr:.3f}, reduced χ² {mixture.redchi:.2f}"
        )
    return text


def _curves(frequency: np.ndarray, iq: np.ndarray, lines: NotchLines, unit: str) -> dict:
    """Magnitude and fit; `unit` is the trace's (V from the digitiser, none for an S21 file)."""
    fine = np.linspace(frequency.min(), frequency.max(), 1000)
    return {
        "x": frequency,
        "y": np.abs(iq),
        "fit_x": fine,
        "fit_y": np.abs(lines.chosen.best_fit(fine)),
        "xlabel": "readout frequency (Hz)",
        "ylabel": f"|S21| ({unit})" if unit else "|S21|",
    }


def _prepare_readout(session: QubitSession, amplitude: float, duration: float, shots: int):
    """A plain readout: no drive, no herald, the given tone."""
    session.configure(
        drive={"sequence": "none", "herald": False},
        readout={"amplitude": amplitude, "integration_time": duration, "shots": shots},
    )


# --------------------------------------------------------------------------- nodes


@dataclass
class ResonatorSearch(Node):
    """Find the readout resonator in the band at zero bias and fit its line."""

    name: ClassVar[str] = "resonator_search"
    produces: ClassVar[tuple[str, ...]] = ("readout_frequency", "resonator_kappa")

    band: tuple[float, float] = (4e9, 9e9)  # Hz, the readout line's band
    step: float = 200e3  # Hz, a few points per linewidth of any readout resonator
    bias: float = 0.0  # V; nothing is known about the flux yet
    readout_amplitude: float = 0.05  # V, below saturation (readout_power measures it next)
    readout_duration: float = DEFAULT_READOUT["integration_time"]
    coarse_shots: int = 100  # first look at the band; more only if the dip is not clear
    coarse_budget: int = 3200  # shots per point the band may take
    shots: int = DEFAULT_READOUT["shots"]
    fine_budget: int = 32_000  # shots per point the fine scan may take
    baseline_width: float = 20e6  # Hz, running-median window ≫ κ
    min_prominence: float = 8.0  # dip depth in noise units
    fine_widths: float = 8.0  # fine-scan half-span in coarse dip widths
    fine_points: int = 401
    limits: NotchLimits = NotchLimits()

    def acquire(self, session: QubitSession) -> xr.Dataset:
        _prepare_readout(session, self.readout_amplitude, self.readout_duration, self.coarse_shots)
        session.configure(flux={"voltage": self.bias})
        coarse_frequency = np.arange(self.band[0], self.band[1] + self.step / 2, self.step)
        baseline = self._baseline_points()

        def prominence(iq: np.ndarray) -> float:
            return find_dip(coarse_frequency, iq, baseline).prominence

        coarse = measure_averaged(
            session,
            f"{self.name}_coarse",
            FREQUENCY,
            coarse_frequency,
            prominence,
            self.min_prominence,
            self.coarse_budget,
        )
        dip = find_dip(coarse_frequency, coarse["iq"].values, baseline)
        half = self.fine_widths * dip.width
        frequency = np.linspace(dip.centre - half, dip.centre + half, self.fine_points)
        attrs = {
            "bias": self.bias,
            "readout_amplitude": self.readout_amplitude,
            "readout_duration": self.readout_duration,
            "coarse_shots": coarse.attrs["shots"],
            "baseline_points": baseline,
            "coarse_run_id": coarse.attrs["averaging_runs"],
        }
        session.configure(readout={"shots": self.shots})
        data = measure_notch(session, self.name, frequency, self.limits, self.fine_budget, attrs)
        return data.assign(coarse_iq=(COARSE, coarse["iq"].values)).assign_coords(
            {COARSE: coarse_frequency}
        )

    def _baseline_points(self) -> int:
        return int(self.baseline_width / self.step) | 1

    def analyse(self, data: xr.Dataset) -> Analysis:
        dip = find_dip(
            data[COARSE].values, data["coarse_iq"].values, int(data.attrs["baseline_points"])
        )
        analysis = notch_analysis(data, self.limits)
        analysis.criteria.insert(0, self._prominence(dip))
        fine = data[FREQUENCY].values
        analysis.report = (
            f"coarse dip at {dip.centre:.0f} Hz, width {dip.width:.0f} Hz, "
            f"prominence {dip.prominence:.0f} σ; fine scan {fine.min():.0f}–{fine.max():.0f} Hz\n"
            + analysis.report
        )
        return analysis

    def _prominence(self, dip: Dip) -> Criterion:
        return at_least("coarse dip prominence (σ)", dip.prominence, self.min_prominence)


@dataclass
class ResonatorSpectroscopy(Node):
    """Resonator line at the operating point: the dip readout starts from."""

    name: ClassVar[str] = "resonator_spectroscopy"
    requires: ClassVar[tuple[str, ...]] = (
        "flux_sweet_spot",
        "readout_frequency",
        "resonator_kappa",
    )
    #: `resonator_splitting` (|f1 − f0| of the dressed lines, unresolved: 0 ± κ) tells readout
    #: optimisation how wide to look for the best-discriminating frequency.
    #: `resonator_frequency` is the dip again, kept for the node's drift check: readout
    #: optimisation moves `readout_frequency` to where the states separate best, up to κ away
    #: from the dip, and a check of the dip against that read every hour as a moved resonator
    #: (sampled chip 5015: 0.35 κ, the flux map behind it measured again every hour).
    produces: ClassVar[tuple[str, ...]] = (
        "readout_frequency",
        "resonator_frequency",
        "resonator_kappa",
        "resonator_splitting",
    )

    window_linewidths: float = 6.0  # half-span in κ around the line(s) ...
    min_window: float = 8e6  # Hz ... and at least this: a second dressed line may sit |χ| away
    points: int = 301
    readout_amplitude: float | None = None  # V; None: the largest linear one (readout_power)
    readout_duration: float = DEFAULT_READOUT["integration_time"]
    shots: int = DEFAULT_READOUT["shots"]
    budget: int = 32_000  # shots per point, spent only when the line is weak
    limits: NotchLimits = NotchLimits()

    def acquire(self, session: QubitSession) -> xr.Dataset:
        """The line at the sweet spot; re-centred and widened once when it sits off-centre.

        The window starts around the last known readout frequency, found at another bias
        (the search runs at 0 V); at the sweet spot the thermal mixture can put the dip or a
        second dressed line near an edge, so the window then moves onto the lines seen and
        widens to hold them with `window_linewidths` κ on either side.
        """
        kappa = session.value("resonator_kappa")
        centre = session.value("readout_frequency")
        bias = session.value("flux_sweet_spot")
        amplitude = session.readout_amplitude(self.readout_amplitude)
        _prepare_readout(session, amplitude, self.readout_duration, self.shots)
        session.configure(flux={"voltage": bias})
        attrs = {
            "bias": bias,
            "kappa_reference": kappa,
            "readout_amplitude": amplitude,
            "readout_duration": self.readout_duration,
        }
        half = max(self.window_linewidths * kappa, self.min_window)
        for attempt in range(2):
            frequency = np.linspace(centre - half, centre + half, self.points)
            data = measure_notch(session, self.name, frequency, self.limits, self.budget, attrs)
            lines = self._lines_seen(self.analyse(data))
            if attempt or lines is None or self._inside(frequency, lines, kappa):
                return data
            centre = float(np.mean(lines))
            half = float(np.ptp(lines)) / 2 + self.window_linewidths * kappa
        return data

    @staticmethod
    def _lines_seen(analysis: Analysis) -> np.ndarray | None:
        """Dressed-line centres of the fit (or its dip), None when nothing was fitted."""
        names = ("dressed_frequency_0", "dressed_frequency_1")
        found = [analysis.values[n][0] for n in names if n in analysis.values]
        if not found and "readout_frequency" in analysis.values:
            found = [analysis.values["readout_frequency"][0]]
        found = [f for f in found if np.isfinite(f)]
        return np.array(found) if found else None

    def _inside(self, frequency: np.ndarray, lines: np.ndarray, kappa: float) -> bool:
        margin = self.limits.min_edge_distance * kappa
        return bool(lines.min() - frequency[0] >= margin and frequency[-1] - lines.max() >= margin)

    def analyse(self, data: xr.Dataset) -> Analysis:
        analysis = notch_analysis(data, self.limits)
        lines = [analysis.values.get(f"dressed_frequency_{k}") for k in (0, 1)]
        kappa = analysis.values.get("resonator_kappa", _UNRESOLVED)[0]
        if all(lines):
            splitting = (abs(lines[1][0] - lines[0][0]), float(np.hypot(lines[0][1], lines[1][1])))
        else:
            splitting = (0.0, kappa)
        analysis.values["resonator_splitting"] = splitting
        if "readout_frequency" in analysis.values:
            analysis.values["resonator_frequency"] = analysis.values["readout_frequency"]
        return analysis
