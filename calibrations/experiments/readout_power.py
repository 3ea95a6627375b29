"""Readout power: the strongest readout tone that still leaves the resonator linear.

Every node before readout optimisation reads the qubit out through the resonator, and its
signal grows with the readout amplitude while the resonator stays linear. A fixed amplitude
is tuned to one chip: too weak on a line with more attenuation or a noisier amplifier (the
flux and qubit nodes then see nothing), too strong on a resonator that saturates early. So
right after the resonator is found, this node sweeps the readout amplitude over decades with
the tone across the line (centre and ±κ/2, ±κ) and takes the highest amplitude at which the
normalised response S21 = IQ/amplitude is still within `compression_db` of its low-power
value. That criterion holds for the ways a resonator leaves the linear regime — compression
of the response, a punched-out or Kerr-shifted line — without modelling any of them.

The result, `readout_amplitude_linear`, is the amplitude flux and qubit nodes read out with
until readout optimisation has found the best one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import xarray as xr

from fluxcal.calibrations.gate import at_least
from fluxcal.calibrations.node import Analysis, Node
from fluxcal.calibrations.session import DEFAULT_READOUT, QubitSession

AMPLITUDE = "readout_amplitude"
FREQUENCY = "readout_frequency"
#: Deviations are judged against this many standard errors of the noise, on top of the
#: compression allowed, so noise alone never ends the linear regime early.
_NOISE_SIGMAS = 3.0
#: The lowest amplitudes, assumed linear, that set the noise and the first reference.
_NOISE_AMPLITUDES = 6


@dataclass(frozen=True)
class Linearity:
    """Per amplitude: relative deviation of the normalised response and its noise."""

    amplitude: np.ndarray
    deviation: np.ndarray
    noise: np.ndarray
    linear_index: int  # last amplitude of the unbroken linear run from the lowest one


def _linear_run(response, slope, scale, amplitude, low, allowed, noise) -> int:
    """Last index of the run, from the lowest amplitudes up, that agrees with a reference
    updated as it goes (inverse-variance mean, weights ∝ amplitude²)."""
    weights, reference, linear = amplitude[:low] ** 2, slope, low - 1
    for k in range(low, amplitude.size):
        deviation = float(np.abs(response[k] - reference).mean()) / scale
        if deviation > allowed + _NOISE_SIGMAS * noise[k]:
            break
        linear = k
        weights = np.append(weights, amplitude[k] ** 2)
        reference = (weights[:, None] * response[: k + 1]).sum(axis=0) / weights.sum()
    return linear


def linearity(amplitude: np.ndarray, iq: np.ndarray, allowed: float) -> Linearity:
    """Walk up in amplitude while the normalised response agrees with the running reference.

    The IQ noise (amplifier noise, the same at every amplitude) comes from the residuals of
    IQ = amplitude · r fitted to the lowest amplitudes, where the resonator is surely linear.
    The reference is the inverse-variance mean (weights ∝ amplitude²) of the normalised
    responses accepted so far.
    """
    low = min(_NOISE_AMPLITUDES, amplitude.size)
    a = amplitude[:low, None]
    slope = (a * iq[:low]).sum(axis=0) / (a**2).sum(axis=0)
    residual = iq[:low] - a * slope
    dof = max((low - 1) * iq.shape[1], 1)
    sigma_iq = float(np.sqrt((np.abs(residual) ** 2).sum() / (2 * dof)))
    response = iq / amplitude[:, None]
    scale = float(np.mean(np.abs(slope)))
    noise = sigma_iq / amplitude / max(scale, 1e-300)
    deviation = np.abs(response - slope).mean(axis=1) / max(scale, 1e-300)
    linear = _linear_run(response, slope, scale, amplitude, low, allowed, noise)
    # The running reference drifts with a slow compression; judge again against the
    # amplitudes well below the first answer, where compression is negligible.
    settled = max(int(np.searchsorted(amplitude, amplitude[linear] / 3)), low)
    weights = amplitude[:settled, None] ** 2
    reference = (weights * response[:settled]).sum(axis=0) / weights.sum()
    deviation = np.abs(response - reference).mean(axis=1) / max(scale, 1e-300)
    beyond = deviation > allowed + _NOISE_SIGMAS * noise
    beyond[:low] = False
    linear = int(np.argmax(beyond)) - 1 if beyond.any() else amplitude.size - 1
    return Linearity(amplitude, deviation, noise, linear)


@dataclass
class ReadoutPower(Node):
    """Readout amplitude sweep at the resonator → the largest linear readout amplitude."""

    name: ClassVar[str] = "readout_power"
    requires: ClassVar[tuple[str, ...]] = ("readout_frequency", "resonator_kappa")
    produces: ClassVar[tuple[str, ...]] = ("readout_amplitude_linear",)

    min_amplitude: float = 2e-3  # V
    max_amplitude: float = 1.0  # V: the most the readout line should ever carry
    points: int = 31
    compression_db: float = 1.0  # allowed change of the normalised response
    readout_duration: float = DEFAULT_READOUT["integration_time"]
    shots: int = DEFAULT_READOUT["shots"]
    min_linear_points: int = 3
    max_noise_at_choice: float = 0.05  # relative noise where the choice is made

    def acquire(self, session: QubitSession) -> xr.Dataset:
        kappa = session.value("resonator_kappa")
        centre = session.value("readout_frequency")
        session.configure(
            drive={"sequence": "none", "herald": False},
            readout={"integration_time": self.readout_duration, "shots": self.shots},
        )
        frequency = centre + kappa * np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
        amplitude = np.geomspace(self.min_amplitude, self.max_amplitude, self.points)
        attrs = {
            "kappa": kappa,
            "readout_duration": self.readout_duration,
            "shots": self.shots,
            "compression_db": self.compression_db,
        }
        return session.measure(
            self.name, FREQUENCY, frequency, outer=("readout.amplitude", amplitude), attrs=attrs
        )

    def analyse(self, data: xr.Dataset) -> Analysis:
        iq = data["iq"].transpose(AMPLITUDE, FREQUENCY).values.astype(complex)
        amplitude = data[AMPLITUDE].values.astype(float)
        allowed = 1 - 10 ** (-float(data.attrs["compression_db"]) / 20)
        result = linearity(amplitude, iq, allowed)
        k = result.linear_index
        chosen = float(amplitude[k])
        ratio = float(amplitude[1] / amplitude[0])
        compressed = k < amplitude.size - 1
        criteria = [
            at_least("amplitudes in the linear regime", k + 1, self.min_linear_points),
            at_least(
                "resolution of the compression where chosen (1 / relative noise)",
                1 / max(float(result.noise[k]), 1e-300),
                1 / self.max_noise_at_choice,
            ),
        ]
        report = f"normalised response within {self.compression_db:g} dB up to {chosen:.4g} V " + (
            f"(compressed beyond: deviation {result.deviation[k + 1]:.3f} at "
            f"{amplitude[k + 1]:.4g} V)"
            if compressed
            else "(linear over the whole sweep)"
        )
        values = {"readout_amplitude_linear": (chosen, chosen * (ratio - 1) / 2)}
        curves = {
            "x": amplitude,
            "y": result.deviation,
            "xlabel": "readout amplitude (V)",
            "ylabel": "relative change of IQ / amplitude",
        }
        return Analysis(values, criteria, report, result, curves)
