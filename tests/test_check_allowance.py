"""A drift check too faint to judge at `MAX_SHOTS` may average on, for a share of what
recalibrating its node last cost; giving up as bad data sets that recalibration off.

The probes here are stand-ins whose signal-to-noise grows as √shots and whose device time
is counted per shot, so the arithmetic of the allowance is checked exactly. On sampled chip
5016 the real daily echo check went from bad data (SNR 4.5) and a 3 820 device-s
recalibration to in spec in 128–373 device-s (`benchmarks/bench_device_time.py`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from fluxcal.calibrations.session import UNOPTIMISED_QUBIT_INTEGRATION, QubitSession
from fluxcal.flows import probes
from fluxcal.flows.probes import Allowance, Estimate, Pool
from fluxcal.runlog import NodeRun, RunRecord, append, calibration_costs
from fluxcal.snapshots import CalibratedParameter

SECONDS_PER_SHOT = 0.016  # a probe of 8 delays × 2 repeats at ~1 ms a shot


class FaintProbe:
    """An estimate faint below `snr_at_one * √shots` = 5, on a device clock that counts
    `SECONDS_PER_SHOT` per shot per point measured."""

    def __init__(self, snr_at_one: float, pooled: bool) -> None:
        self.snr_at_one, self.pooled = snr_at_one, pooled
        self.pool = Pool()
        self.clock_s = 0.0
        self.looks: list[int] = []

    def clock(self) -> float:
        return self.clock_s

    def __call__(self, shots: int) -> Estimate:
        self.looks.append(shots)
        self.clock_s += shots * SECONDS_PER_SHOT
        total = self.pool.shots + shots if self.pooled else shots
        self.pool.shots = total
        snr = self.snr_at_one * math.sqrt(total)
        if snr < 5.0:
            return Estimate(1.0, 0.01, [f"signal-to-noise {snr:.3g} < 5"], faint=True)
        return Estimate(1.0, 0.01)


def _needing(shots: int) -> float:
    """The SNR per √shot of a probe that reaches SNR 5 at `shots` shots."""
    return 5.0 / math.sqrt(shots)


@pytest.mark.parametrize("pooled", [True, False])
def test_without_an_allowance_a_faint_probe_stops_at_the_most_shots(pooled: bool) -> None:
    probe = FaintProbe(_needing(3000), pooled)
    estimate = probes.to_precision(probe, 1.0, pooled=pooled)
    assert not estimate.usable and estimate.faint
    assert probe.pool.shots == probes.MAX_SHOTS


@pytest.mark.parametrize("pooled", [True, False])
def test_an_allowance_buys_the_shots_a_faint_probe_needs(pooled: bool) -> None:
    probe = FaintProbe(_needing(3000), pooled)
    allowance = Allowance(300.0, probe.clock)
    estimate = probes.to_precision(probe, 1.0, pooled=pooled, allowance=allowance)
    assert estimate.usable
    assert probe.pool.shots >= 3000
    assert probe.clock_s <= 300.0


@pytest.mark.parametrize("pooled", [True, False])
def test_the_looks_never_spend_more_than_the_allowance(pooled: bool) -> None:
    """A probe that never shows: the looks go on past `MAX_SHOTS` only while the device
    seconds of all of them stay within the allowance."""
    probe = FaintProbe(0.0, pooled)
    allowance = Allowance(200.0, probe.clock)
    estimate = probes.to_precision(probe, 1.0, pooled=pooled, allowance=allowance)
    assert not estimate.usable
    assert probe.pool.shots > probes.MAX_SHOTS
    assert probe.clock_s <= 200.0


def _imprecise(looks: list[int], clock: list[float]) -> Callable[[int], Estimate]:
    """A usable probe whose stderr is 10/√shots (0.22 at `MAX_SHOTS`)."""

    def probe(shots: int) -> Estimate:
        looks.append(shots)
        clock[0] += shots * SECONDS_PER_SHOT
        return Estimate(1.0, 10.0 / math.sqrt(shots))

    return probe


@pytest.mark.parametrize(("judged", "beyond"), [(0.3, False), (0.1, True)])
def test_the_allowance_pays_only_for_a_look_that_cannot_be_judged(
    judged: float, beyond: bool
) -> None:
    """Short of the target (0.05) at `MAX_SHOTS`, a look that a verdict can rest on (stderr
    ≤ `judged_stderr`) ends the probing as before; one that cannot goes on."""
    looks: list[int] = []
    clock = [0.0]
    allowance = Allowance(1000.0, lambda: clock[0], judged)
    estimate = probes.to_precision(_imprecise(looks, clock), 0.05, allowance=allowance)
    assert (looks[-1] > probes.MAX_SHOTS) is beyond
    assert allowance.judges(estimate)
    assert estimate.stderr == pytest.approx(10.0 / math.sqrt(looks[-1]))
    if not beyond:
        assert looks[-1] == probes.MAX_SHOTS


def test_probes_sharing_an_allowance_share_its_seconds() -> None:
    """The qubit-frequency check takes up to three probes on one allowance: together they
    spend no more than it."""
    probe = FaintProbe(0.0, pooled=True)
    allowance = Allowance(200.0, probe.clock)
    for _ in range(3):
        probe.pool = Pool()
        probes.to_precision(probe, 1.0, pooled=True, allowance=allowance)
    assert probe.clock_s <= 200.0 + 3 * probes.MAX_SHOTS * SECONDS_PER_SHOT


def test_a_session_reads_the_state_with_the_best_integration_it_knows() -> None:
    """Readout optimisation's integration, else qubit spectroscopy's, else the default."""

    def known(**values: float) -> dict[str, CalibratedParameter]:
        return {n: CalibratedParameter(v, 0.0, "s", "test", "") for n, v in values.items()}

    assert QubitSession(None, "q0", {}).state_integration() == UNOPTIMISED_QUBIT_INTEGRATION
    measured = QubitSession(None, "q0", known(state_integration=80e-6))
    assert measured.state_integration() == 80e-6
    both = known(state_integration=80e-6, readout_duration=3e-6)
    assert QubitSession(None, "q0", both).state_integration() == 3e-6


def test_an_allowance_below_the_most_shots_changes_nothing() -> None:
    probe = FaintProbe(_needing(3000), pooled=True)
    probes.to_precision(probe, 1.0, pooled=True, allowance=Allowance(1.0, probe.clock))
    assert probe.pool.shots == probes.MAX_SHOTS


def _record(finished: dt.datetime, outcome: str, device_s: float) -> RunRecord:
    return RunRecord(
        "daily_calibration",
        finished.isoformat(),
        None,
        nodes={"q0": {"echo": NodeRun(outcome, device_s)}},
    )


def test_a_nodes_cost_is_its_last_calibration_accepted_or_rejected(tmp_path: Path) -> None:
    store = tmp_path  # the store folder
    t0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    append(store, _record(t0, "accepted", 3700.0))
    append(store, _record(t0 + dt.timedelta(hours=1), "rejected", 900.0))
    append(store, _record(t0 + dt.timedelta(hours=2), "failed", 5.0))
    append(store, _record(t0 + dt.timedelta(hours=3), "skipped", 0.0))
    append(store, _record(t0 + dt.timedelta(hours=5), "accepted", 120.0))
    assert calibration_costs(store, t0 + dt.timedelta(hours=4)) == {("q0", "echo"): 900.0}
    assert calibration_costs(store, t0 + dt.timedelta(hours=6)) == {("q0", "echo"): 120.0}
    assert calibration_costs(store, t0 - dt.timedelta(hours=1)) == {}
