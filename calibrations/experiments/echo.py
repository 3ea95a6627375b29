"""Spin echo (Hahn): T2_echo at the sweet spot, the coherence left once slow noise is refocused.

π/2 – τ/2 – π – τ/2 – π/2 on resonance; the echo amplitude decays as exp(−τ/T2_echo) towards
the mixed state. An echo only removes dephasing, so T2_ramsey ≤ T2_echo ≤ 2·T1: the delays
start at ~4·T2_ramsey (3–5 echo times over that range) and the window is re-sized when the
decay is not resolved in it (`DecayNode`).
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def expected_decay(self, session: QubitSession) -> float:
        return session.value("T2_ramsey")
