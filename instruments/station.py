"""Build the QCoDeS Station of the simulated lab, in code or from a station YAML.

The station YAML (`instruments/station.yaml`, QCoDeS format) is where a real lab puts its own
drivers; `build_station()` gives the same three instruments for a device in code (tests and
the default `fluxcal calibrate`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from qcodes import Station
from qcodes.instrument import Instrument

from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.simulated import SimulatedDigitiser, SimulatedDriveAWG, SimulatedFluxSource


def default_station_path() -> Path:
    return Path(str(resources.files("fluxcal.instruments") / "station.yaml"))


def build_station(device: str | Path | SimulatedDevice | None = None) -> Station:
    """A Station with flux, drive and readout instruments wired to one simulated device.

    Instruments of an earlier station in this process are closed first: QCoDeS instrument
    names are process-global.
    """
    for name in ("flux", "drive", "readout"):
        if Instrument.exist(name):
            Instrument.find_instrument(name).close()
    return Station(
        SimulatedFluxSource("flux", device=device),
        SimulatedDriveAWG("drive", device=device),
        SimulatedDigitiser("readout", device=device),
    )


def load_station(config: str | Path, names: tuple[str, ...] = ("flux", "drive", "readout")):
    """Load a station YAML: every instrument it lists, in its order (an adapter's
    flux/drive/readout may wrap a vendor instrument listed before them), and at least
    `names`."""
    station = Station(config_file=str(config))
    listed = list(station.config.get("instruments", {}) if station.config else {})
    order = [*listed, *(name for name in names if name not in listed)]
    for name in order:
        if Instrument.exist(name):
            Instrument.find_instrument(name).close()
    for name in order:
        station.load_instrument(name)
    return station
