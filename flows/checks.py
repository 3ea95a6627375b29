"""check_data of the drift check: is a node's stored calibration still in spec?

Optimus (Kelly et al. 2018) gives every node a cheap check with three answers: in spec, out
of spec (the data is good and says the parameter moved by more than its tolerance), or bad
data (the check could not measure the parameter at all: no fringes, no dip, no contrast,
which points upstream). Here a check is a small callable keyed by node name in `CHECKS`; a
node without one is judged by its state alone (age and dependencies). A check reads the
stored values from the qubit's session and measures with the `probes`.

A drift counts as out of spec when it exceeds the tolerance by more than twice the combined
uncertainty (the probe's and the stored value's), so the check's own noise does not trigger
recalibrations; a probe too imprecise to resolve the tolerance is bad data.

The qubit-frequency probe serves four nodes (the coarse and the refined sweet spot, the
spectroscopy line and the Ramsey frequency) with different tolerances, so it is measured once
per operating point and shared through the `CheckContext`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from fluxcal.calibrations.runner import device_clock
from fluxcal.calibrations.session import MissingParameter, QubitSession
from fluxcal.flows import probes
from fluxcal.flows.probes import Estimate

Verdict = Literal["in_spec", "out_of_spec", "bad_data", "unavailable"]

#: Known parameters the qubit-frequency probe depends on: a new value means a new probe.
PROBE_INPUTS = (
    "flux_sweet_spot",
    "qubit_frequency",
    "pi_amplitude",
    "readout_frequency",
    "readout_amplitude",
    "readout_duration",
    "state_integration",
)


@dataclass(frozen=True)
class CheckResult:
    """What a check measured, what was stored, and its verdict with the reason."""

    node: str
    verdict: Verdict
    reason: str
    measured: dict[str, tuple[float, float]] = field(default_factory=dict)
    stored: dict[str, float] = field(default_factory=dict)
    tolerance: dict[str, float] = field(default_factory=dict)
    measured_now: bool = True  # False when the measurement was shared with an earlier check


@dataclass
class CheckContext:
    """One qubit's session during one drift-check walk, with the measurements made so far."""

    session: QubitSession
    measurements: int = 0  # check measurements actually made (shared ones count once)
    #: Device seconds the check under way may spend in all once its probe, at
    #: `probes.MAX_SHOTS`, is still too faint to judge (`maintain.CHECK_SHARE` of its
    #: node's last calibration, set by the walk): giving up sets off that calibration.
    #: Sampled chip 5016's echo check ended at signal-to-noise 4.5 < 5 after 2 000 shots
    #: (32 device-s), and the recalibration it set off took 3 820 device-s to find T2_echo
    #: where it was.
    allowance_s: float = 0.0
    _probes: dict[tuple, Estimate] = field(default_factory=dict)

    def qubit_offset(self, tolerance: float) -> tuple[Estimate, bool]:
        """The qubit-frequency probe at the current operating point, precise enough for
        `tolerance`, and whether it was measured for this call (False: reused). A shared
        probe too coarse for a tighter tolerance is measured again, more precisely."""
        key = tuple(self.session.known[n].value for n in PROBE_INPUTS if n in self.session.known)
        shared = self._probes.get(key)
        if shared is not None and (not shared.usable or shared.stderr <= target(tolerance)):
            return shared, False
        self._probes[key] = self._measure_qubit_offset(tolerance, shared)
        return self._probes[key], True

    def _measure_qubit_offset(self, tolerance: float, earlier: Estimate | None) -> Estimate:
        """A coarse look until usable (or the `earlier`, too coarse, estimate of this walk),
        then a refined long look when that is not precise enough; where no T2* is stored, or
        the refined look fails, the coarse look with the shots its stderr needs, as before
        the refined look existed."""
        self.measurements += 1
        goal = target(tolerance)

        def coarse_look(shots: int) -> Estimate:
            return probes.qubit_frequency_offset(self.session, shots=shots)

        allowance = self._allowance(tolerance)
        # usable is enough: the refined look gives the precision
        coarse = earlier or probes.to_precision(
            coarse_look, math.inf, probes.RAMSEY_FIRST_SHOTS, allowance=allowance
        )
        if not coarse.usable or coarse.stderr <= goal:
            return coarse
        dephasing = self.session.known.get("T2_ramsey")
        if dephasing is not None and float(dephasing.value) > 0:  # False for nan
            refined = probes.to_precision(
                lambda shots: probes.refine_qubit_frequency_offset(
                    self.session, coarse, shots=shots
                ),
                goal,
                probes.RAMSEY_FIRST_SHOTS,
                allowance=allowance,
            )
            if refined.usable and refined.stderr <= goal:
                return refined
        return probes.to_precision(
            coarse_look, goal, 2 * probes.RAMSEY_FIRST_SHOTS, allowance=allowance
        )

    def measure(
        self,
        tolerance: float,
        probe: Callable[..., Estimate],
        *args,
        first: int = probes.FIRST_SHOTS,
        pooled: bool = False,
        **kwargs,
    ) -> Estimate:
        """`probe` with the shots its stderr needs to resolve `tolerance` (`target`),
        starting from `first` shots per point; a `pooled` probe (one taking a `pool`)
        estimates from all its looks (`probes.Pool`)."""
        self.measurements += 1
        if pooled:
            kwargs["pool"] = probes.Pool()
        return probes.to_precision(
            lambda shots: probe(self.session, *args, shots=shots, **kwargs),
            target(tolerance),
            first,
            pooled=pooled,
            allowance=self._allowance(tolerance),
        )

    def _allowance(self, tolerance: float) -> probes.Allowance | None:
        """`allowance_s` for a probe judged against `tolerance` (None when there is none)."""
        if self.allowance_s <= 0:
            return None
        return probes.Allowance(self.allowance_s, device_clock(self.session), tolerance)


def target(tolerance: float) -> float:
    """Stderr a probe aims at: a third of the tolerance, so a drift of one tolerance stands
    out by three standard deviations while the check stays a few device-seconds."""
    return tolerance / 3.0


Check = Callable[[str, CheckContext], CheckResult]


def every_walk(check: Check) -> bool:
    """Whether a check runs on every walk of the hourly drift check: it guards a setting
    that gates or readout use (a flux jump or a drive-line change must be found within the
    hour). A decay time sets nothing; it is a figure of merit, checked when its node is due,
    and it holds most of a check's device time (delays of several T1). Unknown: always."""
    return bool(getattr(check, "every_walk", True))


def judge(
    node: str,
    name: str,
    estimate: Estimate,
    stored: float,
    stored_stderr: float,
    tolerance: float,
    measured_now: bool = True,
    direction: int = 0,
) -> CheckResult:
    """Verdict for one parameter: bad data, out of spec beyond tolerance + 2σ, else in spec.

    `direction` +1 or −1: only a drift that way counts (the qubit frequency at a sweet spot
    can only rise when the bias leaves it; a readout that got better has not drifted).
    """
    sigma = math.hypot(estimate.stderr, stored_stderr if math.isfinite(stored_stderr) else 0.0)
    facts = dict(
        measured={name: (estimate.value, estimate.stderr)},
        stored={name: stored},
        tolerance={name: tolerance},
        measured_now=measured_now,
    )
    if not estimate.usable:
        problems = "; ".join(estimate.problems) or "no usable estimate"
        return CheckResult(node, "bad_data", f"{name}: {problems}", **facts)
    if sigma > tolerance:
        reason = f"{name}: check uncertainty {sigma:.3g} exceeds the tolerance {tolerance:.3g}"
        return CheckResult(node, "bad_data", reason, **facts)
    drift = estimate.value - stored
    size = drift * direction if direction else abs(drift)
    sign = {1: "+", -1: "−", 0: "±"}[direction]
    text = f"{name} moved by {drift:+.4g} (±{sigma:.2g}); tolerance {sign}{tolerance:.4g}"
    if size > tolerance + 2 * sigma:
        return CheckResult(node, "out_of_spec", text, **facts)
    return CheckResult(node, "in_spec", text, **facts)


def _stored(session: QubitSession, name: str) -> tuple[float, float]:
    parameter = session.known.get(name)
    if parameter is None:
        raise MissingParameter(f"{session.qubit}: no calibrated {name} yet")
    return float(parameter.value), float(parameter.stderr)


@dataclass(frozen=True)
class QubitFrequencyCheck:
    """The qubit line is where it was stored, within `tolerance_hz` (Ramsey probe).

    `direction` −1 counts only a fall: for a node measured at a bias that the sweet-spot
    checks guard (`SweetSpotCheck`). f01 is a minimum there, so a rise at the stored bias is
    first the bias's: a 2σ hour of the device file's flux walk (0.2 mΦ0/√h) moves the sweet
    spot by 0.4–0.5 mΦ0, and f01 at the old bias rises by 200–300 kHz (1.25 MHz/mΦ0² on the
    built-in heavy qubit q1).
    The bias checks see a rise and move the bias back; recalibrating the line at the old bias
    instead would store f01 off the sweet spot (which then hides the bias error from the
    sweet-spot check that compares with it), or fail on a line broadened by first-order flux
    noise. A fall is the line itself: no bias brings f01 below its minimum.
    """

    every_walk: ClassVar[bool] = True  # a flux jump moves it at any moment

    tolerance_hz: float
    direction: int = 0

    def __call__(self, node: str, ctx: CheckContext) -> CheckResult:
        value, stderr = _stored(ctx.session, "qubit_frequency")
        offset, fresh = ctx.qubit_offset(self.tolerance_hz)
        estimate = Estimate(value + offset.value, offset.stderr, offset.problems)
        return judge(
            node,
            "qubit_frequency",
            estimate,
            value,
            stderr,
            self.tolerance_hz,
            fresh,
            direction=self.direction,
        )


@dataclass(frozen=True)
class SweetSpotCheck:
    """The bias still sits at the sweet spot: the qubit frequency there is a minimum in flux,
    so a bias that has left it shows as a qubit frequency above the stored one."""

    every_walk: ClassVar[bool] = True  # a flux jump moves it at any moment

    max_rise_hz: float

    def __call__(self, node: str, ctx: CheckContext) -> CheckResult:
        _stored(ctx.session, "flux_sweet_spot")
        value, stderr = _stored(ctx.session, "qubit_frequency")
        offset, fresh = ctx.qubit_offset(self.max_rise_hz)
        estimate = Estimate(value + offset.value, offset.stderr, offset.problems)
        result = judge(
            node, "qubit_frequency", estimate, value, stderr, self.max_rise_hz, fresh, direction=1
        )
        return CheckResult(
            node,
            result.verdict,
            "flux_sweet_spot via the qubit frequency at the stored bias: " + result.reason,
            result.measured,
            result.stored,
            result.tolerance,
            fresh,
        )


@dataclass(frozen=True)
class PiAmplitudeCheck:
    """The π amplitude is within `relative_tolerance` of the stored one (short Rabi)."""

    every_walk: ClassVar[bool] = True  # gates use it: a drive-line change is found within the hour

    relative_tolerance: float = 0.03

    def __call__(self, node: str, ctx: CheckContext) -> CheckResult:
        value, stderr = _stored(ctx.session, "pi_amplitude")
        tolerance = self.relative_tolerance * value
        estimate = ctx.measure(tolerance, probes.pi_amplitude, pooled=True)
        return judge(node, "pi_amplitude", estimate, value, stderr, tolerance)


@dataclass(frozen=True)
class DecayCheck:
    """A decay time (T1, T2_echo) within `relative_tolerance` of the stored one."""

    every_walk: ClassVar[bool] = False  # a figure of merit, no gate setting: checked once due

    parameter: str
    sequence: str
    relative_tolerance: float = 0.3

    def __call__(self, node: str, ctx: CheckContext) -> CheckResult:
        value, stderr = _stored(ctx.session, self.parameter)
        _stored(ctx.session, "pi_amplitude")
        tolerance = self.relative_tolerance * value
        estimate = ctx.measure(
            tolerance, probes.decay_time, self.parameter, self.sequence, pooled=True
        )
        return judge(node, self.parameter, estimate, value, stderr, tolerance)


@dataclass(frozen=True)
class ReadoutResonatorCheck:
    """The readout resonator dip is within `tolerance_kappa` linewidths of where it was.

    Judged against the dip the resonator node found (`resonator_frequency`), not against
    `readout_frequency`, which readout optimisation moves to where the states separate
    best; a store from before the dip was kept on its own has only the latter.
    """

    every_walk: ClassVar[bool] = True  # the dressed resonator moves with the qubit

    parameter: str = "resonator_frequency"
    before_optimisation: str = "readout_frequency"
    tolerance_kappa: float = 0.25

    def __call__(self, node: str, ctx: CheckContext) -> CheckResult:
        known = ctx.session.known
        parameter = self.parameter if self.parameter in known else self.before_optimisation
        value, stderr = _stored(ctx.session, parameter)
        kappa, _ = _stored(ctx.session, "resonator_kappa")
        tolerance = self.tolerance_kappa * kappa
        estimate = ctx.measure(tolerance, probes.resonator_frequency, parameter, kappa)
        return judge(node, parameter, estimate, value, stderr, tolerance)


@dataclass(frozen=True)
class AssignmentFidelityCheck:
    """Single-shot readout with the stored settings still reaches the stored fidelity."""

    every_walk: ClassVar[bool] = True  # the readout every node relies on

    max_loss: float = 0.03

    def __call__(self, node: str, ctx: CheckContext) -> CheckResult:
        value, stderr = _stored(ctx.session, "assignment_fidelity")
        for name in ("readout_threshold", "readout_angle", "pi_amplitude"):
            _stored(ctx.session, name)
        estimate = ctx.measure(self.max_loss, probes.assignment_fidelity)
        return judge(
            node, "assignment_fidelity", estimate, value, stderr, self.max_loss, direction=-1
        )


#: Cheap checks of the default graph's nodes; resonator_search (a wide search, valid for
#: days) and qubit_flux_spectroscopy (chip energies, which do not drift) have none. The bias
#: has two: the resonator scan is redone only when the qubit has moved beyond what the
#: qubit-based refinement (`sweet_spot`, ±1e-3 Φ0) can recover, ~300 kHz on the test chips.
#: A rise of the qubit frequency is therefore the bias checks' alone (sweet_spot's +10 kHz
#: or resonator_flux's +300 kHz): the spectroscopy line, checked between them and measured
#: at the stored bias, counts only a fall (`QubitFrequencyCheck`); a rise of 200–300 kHz
#: would otherwise recalibrate it off the sweet spot. Ramsey, after sweet_spot, sees rises
#: only once sweet_spot has (the same probe, the same tolerance).
CHECKS: dict[str, Check] = {
    "resonator_flux": SweetSpotCheck(max_rise_hz=300e3),
    "resonator_spectroscopy": ReadoutResonatorCheck(),
    "qubit_spectroscopy": QubitFrequencyCheck(tolerance_hz=200e3, direction=-1),
    "rabi": PiAmplitudeCheck(),
    "sweet_spot": SweetSpotCheck(max_rise_hz=10e3),
    "ramsey": QubitFrequencyCheck(tolerance_hz=10e3),
    "t1": DecayCheck("T1", "t1"),
    "echo": DecayCheck("T2_echo", "echo"),
    "readout_optimisation": AssignmentFidelityCheck(),
}
