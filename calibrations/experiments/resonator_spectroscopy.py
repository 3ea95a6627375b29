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

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import xarray as xr
from scipy.ndimage import median_filter

from calibrations.fitting import FitError, ResonatorFit, fit_notch
from calibrations.fitting.noise import difference_noise
from calibrations.gate import Criterion, at_least, at_most, relative_error, within
from calibrations.node import Analysis, Node
from calibrations.session import DEFAULT_READOUT, QubitSession

FREQUENCY = "readout_frequency"
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


def notch_analysis(data: xr.Dataset, limits: NotchLimits) -> Analysis:
    """Notch fit of `iq` over `readout_frequency` → readout_frequency, κ and the Q factors.

    Needs nothing from `attrs`, so a trace from a VNA file (Touchstone) is analysed the same
    way as a live one; the quality factors let such a trace be checked against other tools.
    """
    frequency = data[FREQUENCY].values.astype(float)
    iq = data["iq"].values.astype(complex)
    try:
        fit = fit_notch(frequency, iq)
    except FitError as error:
        return Analysis({}, [at_least(f"notch fit ({error})", 0, 1)], str(error))
    edge = min(fit.fr - frequency.min(), frequency.max() - fit.fr) / fit.kappa
    criteria = [
        at_least("notch fit signal-to-noise", fit.snr, limits.min_snr),
        *within("resonator linewidth κ (Hz)", fit.kappa, *limits.kappa_bounds),
        at_least("centre distance from window edge (κ)", edge, limits.min_edge_distance),
        at_most(
            "κ relative stderr",
            relative_error(fit.kappa, fit.kappa_stderr),
            limits.max_kappa_rel_stderr,
        ),
        at_most("centre stderr (κ)", fit.fr_stderr / fit.kappa, limits.max_centre_stderr),
    ]
    values = {
        "readout_frequency": (fit.fr, fit.fr_stderr),
        "resonator_kappa": (fit.kappa, fit.kappa_stderr),
        "loaded_q": (fit.Ql, fit.Ql_stderr),
        "internal_q": (fit.Qi, fit.Qi_stderr),
        "coupling_q": (fit.Qc, fit.Qc_stderr),
    }
    unit = data["iq"].attrs.get("units", "V")
    curves = _curves(frequency, iq, fit, unit)
    return Analysis(values, criteria, _report(fit), fit, curves)


def _report(fit: ResonatorFit) -> str:
    return (
        f"fr = {fit.fr:.0f} ± {fit.fr_stderr:.0f} Hz, κ = {fit.kappa:.0f} ± "
        f"{fit.kappa_stderr:.0f} Hz (Ql {fit.Ql:.0f}, Qi {fit.Qi:.0f}, Qc {fit.Qc:.0f}), "
        f"cable delay {fit.delay * 1e9:.2f} ns, SNR {fit.snr:.0f}"
    )


def _curves(frequency: np.ndarray, iq: np.ndarray, fit: ResonatorFit, unit: str) -> dict:
    """Magnitude and fit; `unit` is the trace's (V from the digitiser, none for an S21 file)."""
    fine = np.linspace(frequency.min(), frequency.max(), 1000)
    return {
        "x": frequency,
        "y": np.abs(iq),
        "fit_x": fine,
        "fit_y": np.abs(fit.best_fit(fine)),
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

    band: tuple[float, float] = (6e9, 8e9)  # Hz, the readout line's band
    step: float = 200e3  # Hz, a few points per linewidth of any readout resonator
    bias: float = 0.0  # V; nothing is known about the flux yet
    readout_amplitude: float = 0.02  # V, well below saturation
    readout_duration: float = DEFAULT_READOUT["integration_time"]
    shots: int = DEFAULT_READOUT["shots"]
    baseline_width: float = 20e6  # Hz, running-median window ≫ κ
    min_prominence: float = 8.0  # dip depth in noise units
    fine_widths: float = 8.0  # fine-scan half-span in coarse dip widths
    fine_points: int = 401
    limits: NotchLimits = NotchLimits()

    def acquire(self, session: QubitSession) -> xr.Dataset:
        _prepare_readout(session, self.readout_amplitude, self.readout_duration, self.shots)
        session.configure(flux={"voltage": self.bias})
        coarse_frequency = np.arange(self.band[0], self.band[1] + self.step / 2, self.step)
        coarse = session.measure(f"{self.name}_coarse", FREQUENCY, coarse_frequency)
        dip = find_dip(coarse_frequency, coarse["iq"].values, self._baseline_points())
        half = self.fine_widths * dip.width
        frequency = np.linspace(dip.centre - half, dip.centre + half, self.fine_points)
        attrs = {
            "bias": self.bias,
            "readout_amplitude": self.readout_amplitude,
            "readout_duration": self.readout_duration,
            "shots": self.shots,
            "baseline_points": self._baseline_points(),
            "coarse_run_id": coarse.attrs.get("run_id"),
        }
        data = session.measure(self.name, FREQUENCY, frequency, attrs=attrs)
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
    produces: ClassVar[tuple[str, ...]] = ("readout_frequency", "resonator_kappa")

    window_linewidths: float = 6.0  # half-span in κ: the flux and thermal shifts are < κ
    points: int = 301
    readout_amplitude: float = DEFAULT_READOUT["amplitude"]
    readout_duration: float = DEFAULT_READOUT["integration_time"]
    shots: int = DEFAULT_READOUT["shots"]
    limits: NotchLimits = NotchLimits()

    def acquire(self, session: QubitSession) -> xr.Dataset:
        kappa = session.value("resonator_kappa")
        centre = session.value("readout_frequency")
        bias = session.value("flux_sweet_spot")
        _prepare_readout(session, self.readout_amplitude, self.readout_duration, self.shots)
        session.configure(flux={"voltage": bias})
        half = self.window_linewidths * kappa
        frequency = np.linspace(centre - half, centre + half, self.points)
        attrs = {
            "bias": bias,
            "kappa_reference": kappa,
            "readout_amplitude": self.readout_amplitude,
            "readout_duration": self.readout_duration,
            "shots": self.shots,
        }
        return session.measure(self.name, FREQUENCY, frequency, attrs=attrs)

    def analyse(self, data: xr.Dataset) -> Analysis:
        return notch_analysis(data, self.limits)
