"""Plasmon transitions at half flux: the lines that tell EJ from EC on a heavy fluxonium.

f01(Φ) of a heavy fluxonium (EJ/EC ≳ 4, small EL) is nearly straight away from half flux:
it fixes EL and the tunnelling gap at Φ0/2, which depends on EJ and EC only through one
combination, so the energies come out with several per cent of error. At half flux the
potential has two wells; levels 0 and 1 are the symmetric and antisymmetric well ground
states and levels 2 and 3 the first plasma excitation in each well, so 1→2 and 0→3 are
strong lines near the plasma frequency √(8·EJ·EC) (0→2 and 1→3 are parity-forbidden). One
frequency sweep at the sweet spot without heralding (level 1 is thermally populated when
f01 is a few hundred MHz) shows them, and either one separates EJ from EC.

Which line is which is decided against the prediction of the f01-only fit: its covariance,
propagated linearly to (f12, f03), gives a Mahalanobis distance for every assignment of the
found lines. Only an assignment that explains the most lines, is inside the 99.99 % region
and is the only one that does so is used: an ambiguous pairing adds nothing rather than
something wrong.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from calibrations.experiments.qubit_spectroscopy import Line
from calibrations.fitting import FitError, SpectrumFit
from calibrations.fitting.spectrum import OtherLine, bias_to_flux
from instruments.fluxonium import FluxoniumModel

#: Transitions looked for at half flux (lower, upper level).
PLASMON: tuple[tuple[int, int], ...] = ((1, 2), (0, 3))
#: Probability mass inside which an assignment of lines to transitions is believed.
_CONFIDENCE = 0.9999
#: Independent relative error added to each predicted line when assigning: the linear
#: propagation makes f03 − f12 look known to < 1 MHz, but 2σ away from the fitted energies
#: the curvature alone moves it by ~10 MHz (and a real device has model errors).
_MODEL_ERROR = 0.01


@dataclass(frozen=True)
class Prediction:
    """Predicted frequencies (Hz) of `transitions` at one bias and their covariance (Hz²)."""

    bias: float
    transitions: tuple[tuple[int, int], ...]
    mean: np.ndarray
    covariance: np.ndarray

    def windows(self, sigmas: float, lowest: float) -> list[tuple[float, float]]:
        """Per line, the frequency range within `sigmas` standard deviations (from `lowest`)."""
        spread = sigmas * np.sqrt(np.diag(self.covariance))
        return [
            (max(float(m - s), lowest), float(m + s))
            for m, s in zip(self.mean, spread, strict=True)
            if m + s > lowest
        ]


def _frequencies(values: dict[str, float], bias: float, cutoff: int) -> np.ndarray:
    model = FluxoniumModel(values["EJ"], values["EC"], values["EL"], cutoff=cutoff)
    flux = bias_to_flux(np.array([bias]), values["period"], values["sweet_spot"])
    levels = model.energies(flux, n_levels=max(u for _, u in PLASMON) + 1)[0]
    return 1e9 * np.array([levels[u] - levels[lo] for lo, u in PLASMON])


def predict(fit: SpectrumFit, bias: float) -> Prediction:
    """(f12, f03) at `bias` from a spectrum fit, with its covariance propagated linearly."""
    result = fit.result
    if result.covar is None:
        raise FitError("the f01 fit has no covariance to predict the plasmon lines from")
    values = {name: float(p.value) for name, p in result.params.items()}
    mean = _frequencies(values, bias, fit.cutoff)
    jacobian = np.empty((mean.size, len(result.var_names)))
    for k, name in enumerate(result.var_names):
        step = 0.01 * (result.params[name].stderr or 1e-6 * max(abs(values[name]), 1e-9))
        shifted = [
            _frequencies({**values, name: values[name] + sign * step}, bias, fit.cutoff)
            for sign in (1, -1)
        ]
        jacobian[:, k] = (shifted[0] - shifted[1]) / (2 * step)
    covariance = jacobian @ np.asarray(result.covar) @ jacobian.T
    return Prediction(bias, PLASMON, mean, covariance)


def charge_ratio(fit: SpectrumFit) -> float:
    """|⟨0|n|1⟩| / min over the plasmon lines of |⟨i|n|j⟩| at half flux, from the fit.

    A tone scaled by this drives the plasmon lines as hard as the one that gave a line of
    known width at f01: the Rabi rate is proportional to the charge matrix element.
    """
    model = FluxoniumModel(fit.EJ, fit.EC, fit.EL, cutoff=fit.cutoff)
    n = np.abs(model.spectrum(0.5, n_levels=max(u for _, u in PLASMON) + 1).n_matrix)
    plasmon = min(n[lo, u] for lo, u in PLASMON)
    return float(n[0, 1] / max(plasmon, 1e-12))


def assign(lines: list[Line], prediction: Prediction) -> list[OtherLine]:
    """The one assignment of lines to transitions that explains the most lines.

    Each transition takes at most one line and each line one transition. An assignment is
    plausible when its Mahalanobis distance (prediction covariance plus the lines' own
    errors) lies inside the `_CONFIDENCE` region; of the plausible ones with the most lines
    it must be the only one, else nothing is assigned.
    """
    best: list[list[tuple[Line, int]]] = []
    most = 0
    n = len(prediction.transitions)
    for k in range(min(n, len(lines)), 0, -1):
        for chosen in itertools.permutations(range(len(lines)), k):
            for targets in itertools.combinations(range(n), k):
                pairs = [(lines[i], t) for i, t in zip(chosen, targets, strict=True)]
                if _plausible(pairs, prediction):
                    if k > most:
                        best, most = [], k
                    best.append(pairs)
        if best:
            break
    if len(best) != 1:
        return []
    return [
        OtherLine(prediction.bias, line.centre, line.stderr, *prediction.transitions[t])
        for line, t in best[0]
    ]


def _plausible(pairs: list[tuple[Line, int]], prediction: Prediction) -> bool:
    targets = [t for _, t in pairs]
    found = np.array([line.centre for line, _ in pairs])
    errors = np.array([line.stderr for line, _ in pairs])
    model = _MODEL_ERROR * prediction.mean[targets]
    covariance = prediction.covariance[np.ix_(targets, targets)] + np.diag(errors**2 + model**2)
    residual = found - prediction.mean[targets]
    try:
        distance = float(residual @ np.linalg.solve(covariance, residual))
    except np.linalg.LinAlgError:
        return False
    return distance <= chi2.ppf(_CONFIDENCE, len(pairs))
