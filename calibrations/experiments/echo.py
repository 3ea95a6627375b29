"""Spin echo (Hahn): T2_echo at the sweet spot, the coherence left once slow noise is refocused.

π/2 – τ/2 – π – τ/2 – π/2 on resonance; the echo amplitude decays as exp(−τ/T2_echo) towards
the mixed state. An echo only removes dephasing, so T2_ramsey ≤ T2_echo ≤ 2·T1. The first
window is sized from the upper bound, 2·T1, when T1 is known (T2_ramsey otherwise): it then
holds the tail of any echo decay, which pins the offset the amplitude would otherwise trade
off against (a window of ~2 echo times, 4·T2_ramsey on a chip whose echo lasts twice its
T2*, leaves the decay time ~9× less precise per shot than a designed one over the tail), and
the window is re-sized when the decay is not resolved in it (`DecayNode`). A long delay costs
no device time: the repetition time of a shot dwarfs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fluxcal.calibrations.experiments.decay_fits import HALF_SWING
from fluxcal.calibrations.experiments.decay_node import DecayNode
from fluxcal.calibrations.session import QubitSession


@dataclass
class Echo(DecayNode):
    """Hahn echo with the total free evolution swept; produces T2_echo (s)."""

    name = "echo"
    sequence = "echo"
    requires = (
        "T2_ramsey",
        "pi_amplitude",
        "qubit_frequency",
        "readout_frequency",
        "flux_sweet_spot",
    )
    produces = ("T2_echo",)
    swing = HALF_SWING  # the echo decays from a pure state to the mixed one, P = ½ ± ½e^(−τ/T2)

    window_factor: float = 4.0
    ratio_range: tuple[float, float] = (2.5, 8.0)
    shots: int = 2000  # the echo swings over half the contrast of a T1 trace
    # Shots (both repeats) the sequential delays may take, as Ramsey's: the echo swings over
    # half a T1 trace's contrast, and on a faint chip (an echo amplitude of ~0.07 of one
    # shot's noise) even the designed delays need 3–4M shots for the gate's 5 % stderr; the
    # stderr goals, not this cap, set what a clearer chip spends.
    adaptive_budget: int = 8_000_000

    def expected_decay(self, session: QubitSession) -> float:
        """The longest the echo can last: 2·T1 when T1 is calibrated (at least T2_ramsey,
        which a short-lived T1 estimate could undercut), else T2_ramsey."""
        ramsey, longest = session.value("T2_ramsey"), self.longest_decay(session)
        return max(ramsey, longest) if np.isfinite(longest) else ramsey

    def longest_decay(self, session: QubitSession) -> float:
        """2·T1: an echo refocuses dephasing, never relaxation (inf while T1 is unknown)."""
        return 2 * session.get("T1", np.inf)
