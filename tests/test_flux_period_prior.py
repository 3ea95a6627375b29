"""The flux period enters the spectrum fit as a prior, not as a held value.

A heavy fluxonium with a small EL (like sampled chip 3000) has an f01(Φ) that trades the
period against EJ and EC along a long valley: held one standard error off, the period pulled
EJ by ~25 % with a stderr of a fraction of a per cent, and a plasmon line then took the wrong
reading. Fitted under its prior, the period moves towards where the map puts it, and EJ,
EC and EL come out within three of their (now honest) errors (z −2.6…+2.1 over three noise
draws, against −9.6…+7.9 held).
"""

from __future__ import annotations

import numpy as np
import pytest

from fluxcal.calibrations.fitting.spectrum import PeakTrace, bias_to_flux, fit_flux_spectrum
from fluxcal.instruments.fluxonium import FluxoniumModel

EJ, EC, EL = 7.43, 1.92, 0.1535  # GHz, like sampled chip 3000
PERIOD, SWEET_SPOT = 0.48, 0.058
#: resonator_flux's period stderr on that chip (0.09 %); the period is given this far off
PERIOD_STDERR = 4.3e-4


def trace(seed: int) -> PeakTrace:
    """16 rows from half flux to integer flux, f01 with 0.3 MHz of noise."""
    rng = np.random.default_rng(seed)
    bias = SWEET_SPOT - np.linspace(0.0, 0.5, 16) * PERIOD
    model = FluxoniumModel(EJ, EC, EL)
    f01 = 1e9 * model.transition_frequency(bias_to_flux(bias, PERIOD, SWEET_SPOT))
    sigma = np.full(bias.size, 0.3e6)
    return PeakTrace(bias, f01 + sigma * rng.standard_normal(bias.size), sigma, sigma * 0 + 20)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_period_one_stderr_off_biases_held_fits_but_not_the_prior(seed: int) -> None:
    peaks = trace(seed)
    given = PERIOD + PERIOD_STDERR
    held = fit_flux_spectrum(peaks, period=given, sweet_spot_guess=SWEET_SPOT)
    prior = fit_flux_spectrum(
        peaks, period=given, sweet_spot_guess=SWEET_SPOT, period_stderr=PERIOD_STDERR
    )
    # held, the errors are many of their own standard errors
    for name, truth in (("EJ", EJ), ("EC", EC), ("EL", EL)):
        assert abs(getattr(held, name) - truth) > 5 * getattr(held, f"{name}_stderr")
    # under the prior every energy is within 3 standard errors of the truth ...
    for name, truth in (("EJ", EJ), ("EC", EC), ("EL", EL)):
        value, stderr = getattr(prior, name), getattr(prior, f"{name}_stderr")
        assert abs(value - truth) < 3 * stderr, (name, value, stderr)
    # ... and the map moves the period from the prior towards the truth
    assert PERIOD < prior.period < given
    assert prior.period_stderr < PERIOD_STDERR
    assert prior.period_prior == (given, PERIOD_STDERR)
    assert held.period == given and held.period_prior is None
