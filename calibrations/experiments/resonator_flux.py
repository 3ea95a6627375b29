"""Resonator versus flux bias: the flux period and the two flux-symmetry points nearest 0 V.

Nothing is known about the qubit yet, only where the readout resonator sits
(`readout_frequency`), how wide it is (`resonator_kappa`) and how hard it may be driven
(`readout_amplitude_linear`). The resonator's response depends on the bias only through the
flux, so the map is periodic (one flux quantum per period) and mirror-symmetric about every
integer and half-integer flux point.

Steps:
1. A 2-D scan: a readout-frequency sweep at each bias of the flux source's range (default
   ±2.6 V, ≥ 2 periods of any device with ≤ 2.6 V/Φ0). The window is a few κ wide but at
   least `min_window` (the line moves with flux, by more than κ when |χ| > κ), in κ/3 steps.
   When the flux modulation hardly rises above noise (|χ| ≪ κ), the scan is repeated at a few
   frequencies across the dip with the same shots per column concentrated there.
2. Period and mirror axis from whole complex columns (`flux_symmetry`): no line model, so a
   thermal mixture of two dressed lines, a line leaving the window or any cable delay is
   handled alike. This finds all symmetry points, S/2 + m·P/2, without telling half from
   integer flux. When the two symmetry points nearest 0 V come out less precise than the
   gate's limit (a resonator that hardly moves with flux, features sharper than the bias
   step), one period around them is scanned again with as many columns and the shots the
   axis' noise part calls for, and the axis is refined there with the period held.
3. Which class is likelier half flux: at half flux the fluxonium sits lowest (tens to hundreds
   of MHz), so it is usually thermally excited and single-shot IQ at the resonator is
   bimodal (variance above amplifier noise by p(1 − p)·|ΔIQ|²). Single shots at one point of
   each class are added in rounds until the classes differ by `min_thermal_sigma` or the
   budget is spent. This only orders the candidates: a light, hot fluxonium is excited at
   integer flux too, so qubit spectroscopy decides (f01 is lowest at half flux).

`flux_symmetry_point` is the likelier half-flux point nearest 0 V, `flux_symmetry_alternate`
the nearest point of the other class; both have standard errors from the symmetry fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import xarray as xr

from fluxcal.calibrations.experiments.flux_symmetry import (
    BiasMap,
    Symmetry,
    find_symmetry,
    point_stderr,
    refine_axis,
    statistical_axis_stderr,
    symmetry_candidates,
)
from fluxcal.calibrations.fitting import FitError
from fluxcal.calibrations.gate import at_least, at_most, relative_error, within
from fluxcal.calibrations.node import Analysis, Node
from fluxcal.calibrations.session import DEFAULT_READOUT, QubitSession

BIAS = "flux_voltage"
FREQUENCY = "readout_frequency"
#: Frequency axis of the wide map when a focused re-scan replaced it (`wide_iq`).
WIDE_FREQUENCY = "wide_readout_frequency"
#: Bias axis of the finer map around the two symmetry points nearest 0 V (`fine_iq`).
FINE_BIAS = "fine_flux_voltage"
#: Dimensions of the single-shot discrimination data.
CANDIDATE, SHOT_POINT, SHOT = "candidate", "shot_point", "shot"
#: A column shows the resonator when its largest departure from the off-resonant level
#: exceeds this many noise standard deviations.
_VISIBLE_SIGMA = 6.0
#: A recorded shot point belongs to a symmetry class when it lies this close (in periods).
_CLASS_TOLERANCE = 0.05


# --------------------------------------------------------------------------- half vs integer


def thermal_excess(shots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean single-shot IQ variance per candidate and its standard error.

    `shots` has dims (candidate, frequency point, shot). The variance of each frequency point
    is the mean of |z − mean|², its error the spread of those squares over √shots.
    """
    deviation = np.abs(shots - np.nanmean(shots, axis=-1, keepdims=True)) ** 2
    count = np.isfinite(deviation).sum(axis=-1)
    variance = np.nanmean(deviation, axis=-1)
    error = np.nanstd(deviation, axis=-1) / np.sqrt(np.maximum(count, 1))
    points = variance.shape[-1]
    return variance.mean(axis=-1), np.sqrt((error**2).sum(axis=-1)) / points


# --------------------------------------------------------------------------- the node


@dataclass
class ResonatorFlux(Node):
    """Resonator response versus flux bias → flux period and half-flux sweet spot."""

    name: ClassVar[str] = "resonator_flux"
    requires: ClassVar[tuple[str, ...]] = ("readout_frequency", "resonator_kappa")
    #: The alternate (integer-flux) point is handed on too, so qubit spectroscopy can look
    #: there should the thermal evidence have been too weak to decide.
    produces: ClassVar[tuple[str, ...]] = (
        "flux_period",
        "flux_symmetry_point",
        "flux_symmetry_alternate",
    )

    bias_range: tuple[float, float] = (-2.6, 2.6)  # V: the flux source's usable range
    bias_points: int = 401
    period_bounds: tuple[float, float] = (0.25, 2.6)  # V/Φ0 searched
    window_linewidths: float = 5.0  # frequency window half-width in κ ...
    min_window: float = 2e6  # Hz ... and at least this: the line moves with flux
    points_per_linewidth: float = 3.0
    max_frequency_points: int = 121
    readout_amplitude: float | None = None  # V; None: the largest linear one (readout_power)
    readout_duration: float = DEFAULT_READOUT["integration_time"]
    shots: int = DEFAULT_READOUT["shots"]
    shot_points: int = 5  # readout frequencies per candidate, across ±κ/2
    focused_points: int = 5  # frequencies across ±κ/2 of a re-scan when flux hardly shows
    max_focused_shots: int = 32_000  # per point of that re-scan
    max_thermal_shots: int = 64_000  # per point: the budget for the half-flux evidence
    # Gate thresholds.
    min_finite_fraction: float = 0.8
    min_visible_fraction: float = 0.2
    min_modulation: float = 0.05  # log(1 + d²) above noise (its own noise is ~0.005)
    min_contrast: float = 0.3
    max_mismatch: float = 2.0
    max_period_rel_stderr: float = 0.005
    max_sweet_spot_stderr: float = 0.005  # in periods: qubit spectroscopy looks within it
    min_thermal_sigma: float = 4.0  # stop adding thermal shots once this is reached

    def frequencies(self, centre: float, kappa: float) -> np.ndarray:
        """Readout window: wide enough for the line's flux motion, κ/3 steps (capped)."""
        half = max(self.window_linewidths * kappa, self.min_window)
        points = int(np.ceil(2 * half * self.points_per_linewidth / kappa)) + 1
        points = int(np.clip(points, 21, self.max_frequency_points))
        return np.linspace(centre - half, centre + half, points)

    def acquire(self, session: QubitSession) -> xr.Dataset:
        kappa = session.value("resonator_kappa")
        centre = session.value("readout_frequency")
        amplitude = session.readout_amplitude(self.readout_amplitude)
        session.configure(
            drive={"sequence": "none", "herald": False},
            readout={
                "amplitude": amplitude,
                "integration_time": self.readout_duration,
                "shots": self.shots,
            },
        )
        frequency = self.frequencies(centre, kappa)
        source = session.limits("flux", "voltage")  # the node's range within the source's
        low, high = max(self.bias_range[0], source.low), min(self.bias_range[1], source.high)
        bias = np.linspace(low, high, self.bias_points)
        attrs = {
            "kappa": kappa,
            "readout_frequency_reference": centre,
            "period_min": self.period_bounds[0],
            "period_max": self.period_bounds[1],
            "readout_amplitude": amplitude,
            "readout_duration": self.readout_duration,
            "shots": self.shots,
        }
        data = session.measure(
            self.name, FREQUENCY, frequency, outer=("flux.voltage", bias), attrs=attrs
        )
        symmetry = _symmetry_or_none(data, self.period_bounds)
        if symmetry is None or symmetry.modulation < self.min_modulation:
            data = self._focused_map(session, data, bias, kappa, attrs)
            symmetry = _symmetry_or_none(data, self.period_bounds)
        if symmetry is None:
            return data  # nothing to discriminate; the analysis rejects with the reason
        data = self._finer_map(session, data, symmetry, attrs)
        symmetry = _refined(data, symmetry)
        candidates = symmetry_candidates(symmetry)
        return self._record_shots(session, data, _bias_map(data), candidates, kappa)

    def _focused_map(
        self, session: QubitSession, wide: xr.Dataset, bias: np.ndarray, kappa: float, attrs
    ) -> xr.Dataset:
        """The bias scan again at a few frequencies across the line, with the wide map's
        shots per column concentrated on them.

        When |χ| ≪ κ the resonator moves by a small fraction of its width with flux, and the
        wide window spends most shots where the line is not. Across ±κ/2 of the mean dip the
        response changes fastest with the line's position, so the same device time there
        shows the flux modulation with √(wide points / focused points) less noise. The wide
        map is kept (`wide_iq`) for the visibility check and the record.
        """
        frequency = wide[FREQUENCY].values
        try:
            dip = float(np.median(frequency[_bias_map(wide).dip_trace()]))
        except FitError:
            dip = float(np.mean(frequency))
        focused = dip + np.linspace(-kappa / 2, kappa / 2, self.focused_points)
        shots = int(min(self.shots * frequency.size / self.focused_points, self.max_focused_shots))
        session.configure(readout={"shots": shots})
        data = session.measure(
            f"{self.name}_focused",
            FREQUENCY,
            focused,
            outer=("flux.voltage", bias),
            attrs={**attrs, "shots": shots, "wide_run_id": wide.attrs.get("run_id")},
        )
        session.configure(readout={"shots": self.shots})
        wide_iq = wide["iq"].rename({FREQUENCY: WIDE_FREQUENCY})
        return data.assign(wide_iq=wide_iq)

    def _finer_map(
        self, session: QubitSession, data: xr.Dataset, symmetry: Symmetry, attrs: dict
    ) -> xr.Dataset:
        """The period around the two symmetry points nearest 0 V again, on a finer bias grid
        and with more shots, when the map leaves them less precise than the gate's limit.

        The axis error has two measured parts: noise (the Jacobian's, ∝ 1/√shots) and linear
        interpolation across features sharper than the bias step (half the difference of
        the even and odd bias points' refinements, shrinking at least ∝ step). The finer map
        holds as many columns as the whole one over a single period, so its step is
        span/period times finer while its mirror pairs, which average the noise, stay as
        many; its shots grow by the square of the noise part over the target (at most
        `max_focused_shots`).
        """
        period = symmetry.period
        candidates = symmetry_candidates(symmetry)
        worst = max(point_stderr(symmetry, v) for v in candidates)
        if worst <= self.max_sweet_spot_stderr * period:
            return data
        target = self.max_sweet_spot_stderr * period  # axis stderr aimed at: half the limit's
        statistical = statistical_axis_stderr(_bias_map(data), symmetry)
        scanned = data[BIAS].values  # the coarse scan's range: the node's, within the source's
        low = max(min(candidates) - period / 4, float(scanned.min()))
        high = min(max(candidates) + period / 4, float(scanned.max()))
        points = data.sizes[BIAS]
        shots = int(data.attrs["shots"]) * max(1.0, (statistical / target) ** 2)
        shots = int(min(shots, self.max_focused_shots))
        session.configure(readout={"shots": shots})
        fine = session.measure(
            f"{self.name}_fine",
            FREQUENCY,
            data[FREQUENCY].values,
            outer=("flux.voltage", np.linspace(low, high, points)),
            attrs={**attrs, "shots": shots},
        )
        session.configure(readout={"shots": self.shots})
        data.attrs["fine_shots"] = shots
        return data.assign(fine_iq=fine["iq"].rename({BIAS: FINE_BIAS}))

    def _record_shots(self, session, data, bmap: BiasMap, candidates, kappa) -> xr.Dataset:
        """Single shots across the dip at one point of each symmetry class.

        Shots are added in rounds of 4× more until the two classes differ by
        `min_thermal_sigma` or the budget `max_thermal_shots` per point is spent: a strongly
        dispersive chip decides in one round, a weakly coupled one gets what it needs.
        """
        frequency = data[FREQUENCY].values
        dips = frequency[bmap.dip_trace()]
        offsets = np.linspace(-kappa / 2, kappa / 2, self.shot_points)
        points = [float(np.interp(v, bmap.bias, dips)) + offsets for v in candidates]
        shots: list[list[np.ndarray]] = [[], []]
        run_ids = []
        count, batch = 0, self.shots
        while True:
            for k, voltage in enumerate(candidates):
                session.configure(flux={"voltage": voltage}, readout={"shots": batch})
                measured = session.measure(
                    f"{self.name}_shots", FREQUENCY, points[k], single_shot=True
                )
                shots[k].append(measured["iq"].transpose(FREQUENCY, SHOT).values)
                run_ids.append(measured.attrs.get("run_id"))
            count += batch
            stacked = np.stack([np.concatenate(s, axis=-1) for s in shots])
            variance, error = thermal_excess(stacked)
            sigma = abs(variance[0] - variance[1]) / max(float(np.hypot(*error)), 1e-300)
            batch = 3 * count  # the next round brings the total to 4×
            if sigma >= self.min_thermal_sigma or count + batch > self.max_thermal_shots:
                break
        session.configure(readout={"shots": self.shots})
        data = data.assign(shot_iq=((CANDIDATE, SHOT_POINT, SHOT), stacked))
        data = data.assign_coords(
            candidate_voltage=(CANDIDATE, np.asarray(candidates)),
            shot_frequency=((CANDIDATE, SHOT_POINT), np.stack(points)),
        )
        data.attrs["shot_run_ids"] = ",".join(str(r) for r in run_ids)
        return data

    def analyse(self, data: xr.Dataset) -> Analysis:
        bounds = (float(data.attrs["period_min"]), float(data.attrs["period_max"]))
        try:
            bmap = _bias_map(data)
            symmetry = _refined(data, find_symmetry(bmap, bounds))
        except FitError as error:
            return Analysis({}, [at_least(f"resonator map ({error})", 0, 1)], str(error))
        finite = float(bmap.finite.mean())
        visible = float((_visibility_map(data, bmap).visibility() >= _VISIBLE_SIGMA).mean())
        span = float(bmap.bias[-1] - bmap.bias[0])
        period = symmetry.period
        candidates = symmetry_candidates(symmetry)
        criteria = [
            at_least(
                "bias columns without missing points (fraction)", finite, self.min_finite_fraction
            ),
            at_least(
                "bias columns showing the resonator (fraction)", visible, self.min_visible_fraction
            ),
            at_least(
                "flux modulation of the resonator above noise",
                symmetry.modulation,
                self.min_modulation,
            ),
            at_least("symmetry contrast", symmetry.contrast, self.min_contrast),
            at_most("mirror mismatch (d²)", symmetry.mismatch, self.max_mismatch),
            at_least("periods covered by the scan", span / period, 2.0),
            *within("flux period (V)", period, *bounds),
            at_most(
                "flux period relative stderr",
                relative_error(period, symmetry.period_stderr),
                self.max_period_rel_stderr,
            ),
            at_most(
                "symmetry point stderr (periods)",
                max(point_stderr(symmetry, v) for v in candidates) / period,
                self.max_sweet_spot_stderr,
            ),
        ]
        values = {"flux_period": (period, symmetry.period_stderr)}
        report = [
            f"period {period:.5f} ± {symmetry.period_stderr:.1e} V/Φ0 from {symmetry.pairs} "
            f"mirror pairs; contrast {symmetry.contrast:.2f}, mismatch {symmetry.mismatch:.2f}; "
            f"resonator visible in {visible:.0%} of the bias columns",
            f"symmetry points nearest 0 V: {candidates[0]:+.5f} V and {candidates[1]:+.5f} V",
        ]
        if "shot_iq" not in data:
            criteria.append(at_least("half-flux evidence recorded", 0, 1))
        else:
            likelier, other, sigma, variance = _half_flux(data, symmetry)
            values["flux_symmetry_point"] = (likelier, point_stderr(symmetry, likelier))
            values["flux_symmetry_alternate"] = (other, point_stderr(symmetry, other))
            values["half_flux_significance"] = (sigma, 1.0)
            report.append(
                f"single-shot variances {' vs '.join(f'{v:.3g}' for v in variance)} V² "
                f"({sigma:.1f} σ): half flux likelier at {likelier:+.5f} V than at "
                f"{other:+.5f} V; qubit spectroscopy decides (f01 is lowest at half flux)"
            )
        return Analysis(values, criteria, "\n".join(report), symmetry, _curves(data, bmap))


def _bias_map(data: xr.Dataset) -> BiasMap:
    iq = data["iq"].transpose(BIAS, FREQUENCY).values.astype(complex)
    return BiasMap.from_scan(data[BIAS].values.astype(float), iq)


def _refined(data: xr.Dataset, symmetry: Symmetry) -> Symmetry:
    """`symmetry` with its axis from the finer map around the symmetry points, if measured."""
    if "fine_iq" not in data:
        return symmetry
    iq = data["fine_iq"].transpose(FINE_BIAS, FREQUENCY).values.astype(complex)
    return refine_axis(BiasMap.from_scan(data[FINE_BIAS].values.astype(float), iq), symmetry)


def _visibility_map(data: xr.Dataset, bmap: BiasMap) -> BiasMap:
    """The map whose columns show whether the resonator is in the window: the wide one when
    a focused re-scan (a few points across the dip, no off-resonant level) replaced it."""
    if "wide_iq" not in data:
        return bmap
    iq = data["wide_iq"].transpose(BIAS, WIDE_FREQUENCY).values.astype(complex)
    return BiasMap.from_scan(data[BIAS].values.astype(float), iq)


def _symmetry_or_none(data: xr.Dataset, bounds: tuple[float, float]) -> Symmetry | None:
    try:
        return find_symmetry(_bias_map(data), bounds)
    except FitError:
        return None


def _half_flux(data: xr.Dataset, symmetry: Symmetry) -> tuple[float, float, float, np.ndarray]:
    """(sweet spot, alternate, significance σ, variance per class) from the single shots.

    Each recorded point is assigned to its symmetry class; evidence that does not cover both
    classes (shots taken elsewhere) has significance 0.
    """
    shots = data["shot_iq"].transpose(CANDIDATE, SHOT_POINT, SHOT).values
    variance, error = thermal_excess(shots)
    phase = (data["candidate_voltage"].values - symmetry.axis / 2) / (symmetry.period / 2)
    order = np.rint(phase)
    classes = order.astype(int) % 2
    on_point = np.abs(phase - order) < 2 * _CLASS_TOLERANCE
    candidates = symmetry_candidates(symmetry)
    if variance.size != 2 or not on_point.all() or classes[0] == classes[1]:
        return candidates[0], candidates[1], 0.0, variance
    sigma = abs(variance[0] - variance[1]) / max(float(np.hypot(*error)), np.finfo(float).tiny)
    half_class = int(classes[int(np.argmax(variance))])
    return candidates[half_class], candidates[1 - half_class], float(sigma), variance


def _curves(data: xr.Dataset, bmap: BiasMap) -> dict:
    frequency = data[FREQUENCY].values
    visible = _visibility_map(data, bmap).visibility() >= _VISIBLE_SIGMA
    return {
        "image": np.abs(bmap.iq).T,
        "image_x": bmap.bias,
        "image_y": frequency,
        "trace_x": bmap.bias[visible],
        "trace_y": frequency[bmap.dip_trace()][visible],
        "xlabel": "flux bias (V)",
        "ylabel": "readout frequency (Hz)",
    }
