"""A node's handle on one qubit of a QCoDeS station: settings, sweeps and known parameters.

Calibrations reach hardware only through the station's `flux`, `drive` and `readout`
instruments and their per-qubit channels, which is the interface a real lab's drivers (or
thin wrappers around them) provide in the station YAML. `measure` runs a QCoDeS
`Measurement`, stores it in the QCoDeS database and returns `to_xarray_dataset()` with plain
names (`iq`, the swept setting, `flux_voltage`), plus the settings used in `attrs`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from qcodes import Station
from qcodes.dataset import Measurement, load_or_create_experiment

from fluxcal.instruments.contract import Range, channel_of, setting_bands, setting_range
from fluxcal.snapshots import CalibratedParameter

#: QCoDeS's SQLite transactions (a deferred BEGIN that reads, then writes) fail at once with
#: "database is locked" when two threads write one database: datasets are written one at a
#: time, after the acquisition, so qubits on separate lines still measure at once.
DATASET_LOCK = threading.Lock()
#: π-pulse length used until the Rabi node has calibrated one (its `pi_duration` setting is
#: the lab's convention; every other node reads the calibrated value via `pi_duration()`).
DEFAULT_PI_DURATION = 100e-9
#: Readout settings of the resonator nodes (which set their own integration time).
DEFAULT_READOUT = {"amplitude": 0.05, "integration_time": 2e-6, "shots": 1000}
#: Integration time of qubit-state readout until qubit spectroscopy measures a better one at
#: its line (`state_integration`) and readout_optimisation the best for single shots.
#: The shot repetition time (qubit reset, hundreds of µs) dwarfs it, so integrating longer
#: costs no device time while SNR grows as √τ; what limits it is the excited state decaying
#: during the readout: at 10 µs a qubit with T1 = 30 µs keeps 85 % of its contrast, and the
#: SNR still beats 2 µs for any T1 above 5 µs. Weakly dispersive chips (|χ| ≪ κ) see their
#: qubit line only with it.
UNOPTIMISED_QUBIT_INTEGRATION = 10e-6
ROLES = ("flux", "drive", "readout")
METADATA_TAG = "fluxcal"


class MissingParameter(KeyError):
    """A node needs a parameter no earlier node produced."""


@dataclass
class QubitSession:
    station: Station
    qubit: str
    known: dict[str, CalibratedParameter] = field(default_factory=dict)
    experiment_name: str = "fluxcal"

    def channel(self, role: str):
        return channel_of(self.station, role, self.qubit)

    def limits(self, role: str, name: str) -> Range:
        """The range the instrument accepts for a setting, read from its validator (the
        hardware contract), so nodes never copy one instrument's limits."""
        return setting_range(self.channel(role).parameters[name])

    def bands(self, role: str, name: str) -> tuple[Range, ...]:
        """The bands a setting reaches, lowest first (one, its range, unless the instrument
        plays it through paths with a gap between them): sweeps skip what none reaches."""
        return setting_bands(self.channel(role).parameters[name])

    def upper_limit(self, role: str, name: str, own: float | None = None) -> float:
        """The instrument's upper limit of a setting, or a node's own `own` limit if lower."""
        high = self.limits(role, name).high
        return high if own is None else min(high, float(own))

    def value(self, name: str) -> float:
        try:
            return float(self.known[name].value)
        except KeyError:
            raise MissingParameter(f"{self.qubit}: no calibrated {name} yet") from None

    def get(self, name: str, default: float) -> float:
        return float(self.known[name].value) if name in self.known else default

    def configure(self, **settings: dict[str, Any]) -> None:
        """Set channel parameters, e.g. configure(drive={"sequence": "rabi"})."""
        for role, values in settings.items():
            channel = self.channel(role)
            for name, value in values.items():
                channel.parameters[name].set(value)

    def symmetry_points(self) -> list[CalibratedParameter]:
        """Where to look for the qubit: the sweet spot, then the other flux-symmetry point.

        When resonator_flux could not tell half from integer flux it hands on its likelier
        `flux_symmetry_point` instead of a sweet spot; that is tried first when it is newer
        than any sweet spot known (an older one may predate a flux jump).
        """
        sweet = self.known.get("flux_sweet_spot")
        point = self.known.get("flux_symmetry_point")
        if point is not None and (sweet is None or point.updated > sweet.updated):
            sweet = point
        if sweet is None:
            raise MissingParameter(f"{self.qubit}: no calibrated flux_sweet_spot yet")
        alternate = self.known.get("flux_symmetry_alternate")
        return [sweet] if alternate is None else [sweet, alternate]

    def device_time(self) -> float | None:
        """Seconds this qubit's acquisitions have held the device so far, when the readout
        driver reports it (an optional `device_time` parameter); None otherwise (also for a
        session without a readout instrument, such as a walk whose checks are stand-ins)."""
        if self.station is None or "readout" not in self.station.components:
            return None
        parameter = self.channel("readout").parameters.get("device_time")
        return None if parameter is None else float(parameter.get())

    def pi_duration(self) -> float:
        """The calibrated π-pulse length, or the default convention before Rabi has run."""
        return self.get("pi_duration", DEFAULT_PI_DURATION)

    def readout_amplitude(self, setting: float | None = None) -> float:
        """A node's own setting if it has one, else the best amplitude known so far: the
        optimised one, else the largest linear one (readout_power), else the default."""
        if setting is not None:
            return float(setting)
        linear = self.get("readout_amplitude_linear", DEFAULT_READOUT["amplitude"])
        return self.get("readout_amplitude", linear)

    def state_integration(self) -> float:
        """Integration time of qubit-state readout: readout optimisation's, else the one
        qubit spectroscopy measured at the line, else `UNOPTIMISED_QUBIT_INTEGRATION`."""
        measured = self.get("state_integration", UNOPTIMISED_QUBIT_INTEGRATION)
        return self.get("readout_duration", measured)

    def operating_point(self, readout_frequency: float | None = None) -> None:
        """Bias at the sweet spot and read out with the best settings known so far."""
        self.configure(flux={"voltage": self.get("flux_sweet_spot", 0.0)})
        readout = {
            "amplitude": self.readout_amplitude(),
            "integration_time": self.state_integration(),
            "shots": DEFAULT_READOUT["shots"],
        }
        frequency = readout_frequency or self.known.get("readout_frequency")
        if frequency is not None:
            readout["frequency"] = float(getattr(frequency, "value", frequency))
        self.configure(readout=readout, drive={"herald": False})

    def measure(
        self,
        name: str,
        sweep: str,
        values: Sequence[float] | np.ndarray,
        outer: tuple[str, Sequence[float] | np.ndarray] | None = None,
        single_shot: bool = False,
        attrs: dict[str, Any] | None = None,
    ) -> xr.Dataset:
        """One hardware sweep (optionally inside a loop over `outer` = (role.param, values)).

        Returns a Dataset with variable `iq` over `sweep` (and `outer`, `shot`).
        """
        readout = self.channel("readout")
        readout.sweep_parameter(sweep)
        readout.sweep_values(np.asarray(values, float))
        result = readout.iq_shots if single_shot else readout.iq
        renames = {
            result.full_name: "iq",
            readout.sweep_values.full_name: sweep,
            readout.shot_index.full_name: SHOT,
        }
        outer_param = None
        if outer is None:
            rows = [((result, result.get()),)]
        else:
            role, parameter = outer[0].split(".")
            outer_param = self.channel(role).parameters[parameter]
            renames[outer_param.full_name] = f"{role}_{parameter}"
            rows = []
            for value in outer[1]:
                outer_param.set(float(value))
                rows.append(((outer_param, float(value)), (result, result.get())))
        attrs = {"experiment": name, "qubit": self.qubit, **(attrs or {})}
        with DATASET_LOCK:  # the device work is done: only the record waits its turn
            experiment = load_or_create_experiment(self.experiment_name, sample_name=self.qubit)
            measurement = Measurement(
                exp=experiment, station=self.station, name=f"{name}_{self.qubit}"
            )
            if outer_param is not None:
                measurement.register_parameter(outer_param)
            measurement.register_parameter(
                result, setpoints=None if outer_param is None else (outer_param,)
            )
            with measurement.run() as saver:
                for row in rows:
                    saver.add_result(*row)
            metadata = json.dumps({"renames": renames, "attrs": attrs})
            saver.dataset.add_metadata(METADATA_TAG, metadata)
            return tidy(saver.dataset.to_xarray_dataset())


#: Dimension of single shots. They are kept as complex64: float32 resolves ~1e-7 of the
#: signal, far below any amplifier's noise, and halves the raw data a snapshot stores.
SHOT = "shot"


def tidy(dataset: xr.Dataset) -> xr.Dataset:
    """Plain names and fluxcal's settings for a dataset converted from the QCoDeS database.

    `measure` stores the renames and the node's settings as run metadata, so a run loaded
    later from the database (`fluxcal analyse`) gives exactly the Dataset the live analysis saw
    (single shots included: both pass through the same complex64 cast).
    """
    try:
        meta = json.loads(dataset.attrs[METADATA_TAG])
    except KeyError:
        raise ValueError("not a fluxcal measurement (no fluxcal metadata in the run)") from None
    renames = {k: v for k, v in meta["renames"].items() if k in dataset.variables}
    tidied = dataset.rename(renames)
    if "iq" in tidied and SHOT in tidied["iq"].dims:
        tidied["iq"] = tidied["iq"].astype(np.complex64)
    keep = {"run_id": dataset.attrs.get("run_id"), "guid": dataset.attrs.get("guid")}
    tidied.attrs = {**keep, **meta["attrs"]}
    return tidied
