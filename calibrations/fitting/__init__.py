"""Fit models shared by the calibration nodes: resonator line shapes and fluxonium spectra.

Everything here is a pure function of numpy arrays, so analyses can be tested on recorded
data with no instrument attached.
"""

from fluxcal.calibrations.fitting.errors import FitError
from fluxcal.calibrations.fitting.resonator import (
    MixtureFit,
    NotchLines,
    ResonatorFit,
    fit_notch,
    fit_notch_lines,
    fit_notch_mixture,
    fit_reflection,
    fit_resonator,
    notch_mixture_s21,
    notch_s21,
    reflection_s11,
)
from fluxcal.calibrations.fitting.spectrum import (
    PeakTrace,
    SpectrumFit,
    extract_peaks,
    fit_flux_spectrum,
)

__all__ = [
    "FitError",
    "MixtureFit",
    "NotchLines",
    "PeakTrace",
    "ResonatorFit",
    "SpectrumFit",
    "extract_peaks",
    "fit_flux_spectrum",
    "fit_notch",
    "fit_notch_lines",
    "fit_notch_mixture",
    "fit_reflection",
    "fit_resonator",
    "notch_mixture_s21",
    "notch_s21",
    "reflection_s11",
]
