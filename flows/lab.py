"""What one flow run works on: the station, its qubits, the graph, its settings, the store.

Deployments pass plain strings (device file, station YAML, settings file, store directory)
because Prefect stores flow parameters as JSON; tests and in-process callers may pass a ready
station (as a `LiveStation`), their own graph and settings as a parsed document instead.
Either way a flow opens its lab here, once, at the start of the run, so a settings file
edited between two scheduled runs takes effect at the next one. Each run gets its own QCoDeS
database and plot folder (`fluxcal.run_files`), so flow runs may overlap. The lab also says
which qubits may be walked at once (`groups`, from the device file's lines) and on how many
threads (`workers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qcodes import Station

from fluxcal.calibrate import CalibrationRequest, open_lab, qubits_of
from fluxcal.calibrations.graph import GraphEntry
from fluxcal.calibrations.settings import CalibrationSettings, settings_from
from fluxcal.canary import effective_settings
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.wiring import station_groups
from fluxcal.options import default_store
from fluxcal.run_files import RunFiles
from fluxcal.snapshots import SnapshotStore


class LiveStation:
    """A Station built by the caller, for in-process flow runs (tests, notebooks).

    Prefect records flow parameters as JSON and would walk every instrument trying to encode
    a bare Station (slowly, with warnings); this holder has no attribute dict and is not
    iterable, so the run records it as `<LiveStation>` at once.
    """

    __slots__ = ("station",)

    def __init__(self, station: Station):
        self.station = station


@dataclass
class FlowLab:
    station: Station
    device: SimulatedDevice | None  # the simulated chip behind the station, if any
    qubits: list[str]
    graph: dict[str, GraphEntry]
    store: SnapshotStore
    settings: CalibrationSettings
    files: RunFiles  # this run's QCoDeS database and plot folder
    groups: list[list[str]]  # qubits sharing a line; groups may run concurrently
    workers: int = 1  # threads walking groups at once

    @property
    def chip(self) -> str:
        """The chip's name (the device file's), for its one-run-at-a-time limit."""
        return self.device.config.name if self.device is not None else "station"


def default_graph() -> dict[str, GraphEntry]:
    """The calibration graph, imported only when a flow runs (it imports every experiment)."""
    from fluxcal.calibrations.graph import DEFAULT_GRAPH

    return DEFAULT_GRAPH


def check_inputs(device: str | Path | None, station: str | Path | None) -> None:
    """Fail before a flow run starts when a named device or station file is missing."""
    for what, path in (("device", device), ("station", station)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{what} file not found: {path}")


def open_flow_lab(
    device: str | Path | None,
    station: str | Path | LiveStation | None,
    store: str | Path | None,
    qubits: list[str] | None,
    graph: dict[str, GraphEntry] | None,
    settings: str | Path | dict | None = None,
    plot_dir: str | Path | None = None,
    create_store: bool = True,
    workers: int = 1,
) -> FlowLab:
    """Build (or adopt) the station, validate the settings (a file path or a parsed document)
    against the graph and the station's qubits, and open the store (a missing one is created
    only if `create_store`); the run's QCoDeS database goes into the store's runs folder."""
    graph = graph or default_graph()
    configured = settings_from(settings, graph)
    if isinstance(station, LiveStation):
        station = station.station
        simulated = getattr(station.components["readout"], "lab", None)
        device_object = getattr(simulated, "device", None)
    else:
        request = CalibrationRequest(
            device=Path(device) if device else None,
            station=Path(station) if station else None,
        )
        station, device_object = open_lab(request)
    snapshots = SnapshotStore(default_store(store), create=create_store)
    configured = effective_settings(snapshots.path, configured)  # a running canary's qubits
    snapshots.check_writable()  # before any device time is spent on results it cannot keep
    files = RunFiles.start(snapshots.path, plot_dir)
    files.open_database()
    chosen = qubits_of(station, qubits, configured)
    return FlowLab(
        station,
        device_object,
        chosen,
        graph,
        snapshots,
        configured,
        files,
        station_groups(station, chosen),
        max(1, workers),
    )
