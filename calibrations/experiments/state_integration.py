"""How long to integrate the readout of the qubit's state before single-shot optimisation.

Every node between qubit spectroscopy and readout optimisation (the flux map, Rabi, the
sweet-spot refinement, Ramsey, T1, echo) reads the qubit's state with one integration time.
A shot holds the chip for the repetition time whatever its integration, so integrating longer
costs no device time while the noise falls as 1/√τ, until the excited state decays during the
readout (T1) or the readout itself flips it: the signal-to-noise of a shot peaks near
τ ≈ T1. A fixed 10 µs suited a qubit with T1 ~ 20 µs; a heavy fluxonium with T1 of hundreds
of µs and a weak dispersive shift saw its qubit line at 0.29 noise deviations per √shot there
and at 1.0 at 160 µs (sampled chip 5009): twelve times fewer shots for the same line. T1 is
not known yet, so the choice is measured: heralded shots at the qubit line with the drive off
and on (saturated), over a ladder of integration times; the one whose states stand furthest
apart in units of the resting (drive-off) shots' noise is kept, until readout optimisation chooses
`readout_duration` from single-shot fidelity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from fluxcal.calibrations.session import UNOPTIMISED_QUBIT_INTEGRATION, QubitSession

DURATION = "state_duration"
DRIVE = "state_drive"  # 0: drive off, 1: drive on at the qubit line
COVARIANCE = "iq_moment"  # var(I), var(Q), cov(I, Q) of the shots


@dataclass(frozen=True)
class IntegrationChoice:
    """The separation of the drive-off and drive-on shots per integration time, in units of
    the drive-off shots' noise (and its standard error), and the chosen time (s)."""

    durations: np.ndarray
    separation: np.ndarray
    separation_stderr: np.ndarray
    #: the integration in use before (s): kept while it separates the states within one
    #: standard error of the best
    preferred: float = np.nan

    @property
    def best(self) -> int:
        """The index of the chosen time: the one in use before when it is within one standard
        error of the largest separation, else the shortest that is: the optimum is broad (a
        30 µs T1 chip separated its states within 10 % alike from 20 to 80 µs), and a shorter
        readout disturbs the qubit less for the same information."""
        top = int(np.argmax(self.separation))
        good = self.separation >= self.separation[top] - self.separation_stderr[top]
        before = np.isclose(self.durations, self.preferred, rtol=1e-6) & good
        return int(np.argmax(before)) if before.any() else int(np.argmax(good))

    @property
    def duration(self) -> float:
        return float(self.durations[self.best])

    @property
    def resolution(self) -> float:
        """Half a step of the ladder at the chosen time (the setting's stated uncertainty;
        0 for a ladder of one)."""
        if self.durations.size < 2:
            return 0.0
        return self.duration * (self.durations[1] / self.durations[0] - 1) / 2

    @property
    def resolved(self) -> float:
        """The best separation over its standard error."""
        return float(self.separation[self.best] / self.separation_stderr[self.best])


def separations(data: xr.Dataset) -> IntegrationChoice:
    """Per integration time, |mean(on) − mean(off)| over the drive-off shots' noise along that
    line: the height of a driven line over the noise of the sweep around it, where the qubit
    rests in its ground state (heralded). The driven shots' own spread is mostly projection
    noise, the same at every integration time: counted in, it hid the amplifier noise that
    the integration averages down (sampled chip 5000 chose 2.5 µs, and its flux map took
    three times as long). Its standard error combines the difference's, √((1 + r²)/n) for a
    ratio r of the driven to the resting shots' spread, and the noise estimate's, d/√(2n)."""
    means = data["state_mean"].values  # (duration, drive)
    moments = data["state_moments"].values  # (duration, drive, moment)
    shots = float(data.attrs["state_shots"])
    difference = means[:, 1] - means[:, 0]
    distance = np.abs(difference)
    unit = np.where(distance > 0, difference / np.where(distance > 0, distance, 1.0), 1.0)
    u, v = unit.real, unit.imag
    along = (
        moments[:, :, 0] * u[:, None] ** 2
        + moments[:, :, 1] * v[:, None] ** 2
        + 2 * moments[:, :, 2] * (u * v)[:, None]
    )
    along = np.maximum(along, np.finfo(float).tiny)
    separation = distance / np.sqrt(along[:, 0])
    variance_ratio = along[:, 1] / along[:, 0]
    stderr = np.sqrt((1.0 + variance_ratio) / shots + separation**2 / (2.0 * shots))
    preferred = float(data.attrs.get("state_preferred", np.nan))
    return IntegrationChoice(data[DURATION].values, separation, stderr, preferred)


@dataclass(frozen=True)
class StateIntegration:
    """The measurement: heralded saturation shots at the qubit line, drive off and on."""

    #: s: the integration nodes used before; shorter ones are not tried. What a shorter one
    #: gains on the f01 line at a strong readout (measurement-induced flips grow with the
    #: integration: sampled chip 5013 at 0.29 V separated its states best at 2.5 µs) it
    #: loses on the plasmon lines the flux map reads, whose levels those flips do not
    #: reach (5013's map took 4 095 device-s at 2.5 µs, 2 080 at 10 µs)
    shortest: float = UNOPTIMISED_QUBIT_INTEGRATION
    #: s: within the repetition time of fluxonium labs (~0.5 ms), so a shot's period, which
    #: holds the chip, is unchanged however long it integrates
    longest: float = 400e-6
    first_shots: int = 200
    budget: int = 3200  # shots per setting: ~40 device-s over 12 settings, heralded at 0.5 ms
    #: wanted standard error of the best separation, relative: the optimum is broad (within
    #: 10 % of its height over a factor ~2 in τ), so a coarse estimate places it well enough
    relative_stderr: float = 0.15

    def durations(self, session: QubitSession) -> np.ndarray:
        """Integration times tried: doubling from `shortest` to `longest` (or the readout's
        own limit, if lower; only that limit when it is below `shortest`)."""
        high = session.upper_limit("readout", "integration_time", self.longest)
        if high < self.shortest:
            return np.array([high])
        count = int(np.floor(np.log2(high / self.shortest) + 1e-9)) + 1
        return self.shortest * 2.0 ** np.arange(count)

    def measure(self, session: QubitSession, name: str, amplitude: float) -> xr.Dataset:
        """Shots at the drive's current frequency with the drive at 0 and at `amplitude`,
        over `durations`, averaged until the best separation is known to `relative_stderr`
        or `budget` shots; the shots' means and moments, pooled over the looks, and the
        integration in use before (restored after), which is kept unless another time
        separates the states better by more than the noise (`IntegrationChoice.best`)."""
        return self.measure_at(session, name, amplitude, self.durations(session))

    def measure_at(
        self, session: QubitSession, name: str, amplitude: float, durations: np.ndarray
    ) -> xr.Dataset:
        """`measure` over the given integration times (the record holds them sorted and
        once each, as the dataset of the sweep does); the readout's integration and shots
        are put back however the measurement ends."""
        drives = np.array([0.0, abs(amplitude)])
        durations = np.unique(np.asarray(durations, float))
        readout = session.channel("readout")
        preferred, shots_before = float(readout.integration_time()), int(readout.shots())
        pooled: tuple[np.ndarray, np.ndarray] | None = None
        total, look = 0, self.first_shots
        try:
            while True:
                session.configure(readout={"shots": look})
                iq = session.measure(
                    name,
                    "drive_amplitude",
                    drives,
                    outer=("readout.integration_time", durations),
                    single_shot=True,
                )["iq"]
                order = ("readout_integration_time", "drive_amplitude", "shot")
                means, moments = _moments(iq.transpose(*order).values)
                pooled = (
                    (means, moments)
                    if pooled is None
                    else _pool(pooled, total, means, moments, look)
                )
                total += look
                data = _dataset(durations, *pooled, total).assign_attrs(state_preferred=preferred)
                choice = separations(data)
                best, known = choice.separation[choice.best], choice.separation_stderr[choice.best]
                if known <= self.relative_stderr * best or total >= self.budget:
                    return data
                look = min(total * 3, self.budget - total)
        finally:
            session.configure(readout={"integration_time": preferred, "shots": shots_before})


def _moments(shots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means (complex) and var(I), var(Q), cov(I, Q) over the last axis."""
    means = shots.mean(axis=-1)
    centred = shots - means[..., None]
    moments = np.stack(
        [
            np.mean(centred.real**2, axis=-1),
            np.mean(centred.imag**2, axis=-1),
            np.mean(centred.real * centred.imag, axis=-1),
        ],
        axis=-1,
    )
    return means, moments


def _pool(
    earlier: tuple[np.ndarray, np.ndarray],
    n: int,
    means: np.ndarray,
    moments: np.ndarray,
    m: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Means and moments of n earlier and m new shots together (the parallel-axis rule)."""
    old_means, old_moments = earlier
    total = n + m
    pooled = (n * old_means + m * means) / total
    shift_old, shift_new = old_means - pooled, means - pooled

    def spread(shift: np.ndarray) -> np.ndarray:
        return np.stack([shift.real**2, shift.imag**2, shift.real * shift.imag], axis=-1)

    moments = (n * (old_moments + spread(shift_old)) + m * (moments + spread(shift_new))) / total
    return pooled, moments


def _dataset(
    durations: np.ndarray, means: np.ndarray, moments: np.ndarray, shots: int
) -> xr.Dataset:
    """The record: per integration time and drive state, the shots' mean and moments (all a
    separation needs; the node's record stays small, while the QCoDeS database keeps every
    look's shots)."""
    return xr.Dataset(
        {
            "state_mean": ((DURATION, DRIVE), means),
            "state_moments": ((DURATION, DRIVE, COVARIANCE), moments),
        },
        coords={DURATION: durations, DRIVE: [0, 1], COVARIANCE: ["var_i", "var_q", "cov_iq"]},
        attrs={"state_shots": shots},
    )
