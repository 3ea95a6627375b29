"""T1: energy relaxation time at the sweet spot, from a π pulse followed by a delay.

The excited population relaxes to its thermal steady state; the delays reach ~5·T1 of what
is expected: the last calibrated T1 when there is one, otherwise T2_ramsey (T1 ≥ T2/2, and on
a fluxonium at its sweet spot the two are usually alike), otherwise a generic guess, and the
window is re-sized when the decay is not resolved in it (`DecayNode`).
"""

from __future__ import annotations

from dataclasses import dataclass

from fluxcal.calibrations.experiments.decay_node import DecayNode
from fluxcal.calibrations.session import QubitSession


@dataclass
class T1(DecayNode):
    """π pulse, delay, readout; produces T1 (s)."""

    name = "t1"
    sequence = "t1"
    requires = ("pi_amplitude", "qubit_frequency", "readout_frequency", "flux_sweet_spot")
    produces = ("T1",)

    t1_guess: float = 200e-6  # s, generic when neither T1 nor T2_ramsey is known

    def expected_decay(self, session: QubitSession) -> float:
        return session.get("T1", session.get("T2_ramsey", self.t1_guess))
