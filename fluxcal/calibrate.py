"""The main job: build the lab, run the calibration graph, store one new snapshot.

Shared by `fluxcal calibrate` (plain runner, seconds) and the Prefect flows (which reuse the
request and outcome types). On the simulated device the outcome carries the device's truth
so the command can print calibrated values next to it. The nodes are configured by the
request's calibration settings (`calibrations.settings`), which the snapshot records.

A node that could not run (its acquisition raised: an instrument fault, a locked database,
a driver error) is not a physics result. A run with such a node is not saved, so it never
becomes CURRENT, unless the request says `save_partial`: a rejection is a result, a crash
is not. Each run measures into a QCoDeS database of its own (`fluxcal.run_files`); only the
newest `keep_databases` of them are kept. A store the run could not save to (read-only,
another user's) fails before the chain runs, so it costs no device time.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qcodes import Station

from fluxcal.calibrations.persist import current_parameters, save_run
from fluxcal.calibrations.runner import GraphRun, run_graph
from fluxcal.calibrations.settings import CalibrationSettings, SettingsError
from fluxcal.canary import effective_settings
from fluxcal.instruments.device import SimulatedDevice
from fluxcal.instruments.station import build_station, load_station
from fluxcal.instruments.wiring import station_groups
from fluxcal.metrics_push import after_flow_run
from fluxcal.nodes import check_nodes
from fluxcal.options import KEEP_DATABASES
from fluxcal.run_files import RunFiles
from fluxcal.snapshots import CalibratedParameter, SnapshotStore


class LabFileError(ValueError):
    """A device or station file that cannot build the lab; the message names the file."""


@dataclass
class CalibrationRequest:
    device: Path | None = None  # simulated chip file; None = built-in
    station: Path | None = None  # station YAML; None = simulated lab for `device`
    store: Path = Path("fluxcal-store")
    qubits: list[str] | None = None
    nodes: list[str] | None = None
    plot_dir: Path | None = None
    reason: str = "calibration"
    provenance: dict[str, str] = field(default_factory=dict)
    settings: CalibrationSettings | None = None  # None: every node field at its default
    save_partial: bool = False  # save even if nodes failed to run (see the module docstring)
    workers: int = 1  # threads walking groups of qubits that share no line
    dask_address: str | None = None  # Dask scheduler for the fits (Prefect runs only)
    keep_databases: int = KEEP_DATABASES  # run databases kept in STORE/runs (`run_files`)


@dataclass
class CalibrationOutcome:
    version: int | None  # None: not saved, because nodes failed to run
    run: GraphRun
    parameters: dict[str, dict[str, CalibratedParameter]]
    truth: dict[str, dict[str, float]] | None
    wall_s: float
    plots: Path | None = None

    @classmethod
    def stored(
        cls,
        store: SnapshotStore,
        version: int | None,
        run: GraphRun,
        device: SimulatedDevice | None,
        started: float,
        plots: Path | None = None,
    ) -> CalibrationOutcome:
        """The outcome of a run saved as `version` (None: the run's own parameters, unsaved),
        with the truth when the chip is simulated."""
        truth = device.truth() if device is not None else None
        parameters = store.load(version).parameters if version is not None else run.parameters
        return cls(version, run, parameters, truth, time.perf_counter() - started, plots)

    @property
    def failures(self) -> list[str]:
        return failed_nodes(self.run)

    def headline(self) -> str:
        """What happened to the run as a whole, in one line."""
        if self.version is None:
            return (
                f"not saved: {len(self.failures)} node(s) failed to run ({self.wall_s:.1f} s); "
                "--save-partial keeps the rest"
            )
        saved = f"snapshot v{self.version} written in {self.wall_s:.1f} s"
        return saved + (f", {len(self.failures)} node(s) failed to run" if self.failures else "")

    def summary(self) -> str:
        lines = [self.headline()]
        for qubit, results in self.run.results.items():
            for name, result in results.items():
                lines.append(
                    f"  {qubit} {name:<24} {result.outcome:<9} "
                    f"{result.device_s:9.1f} s  {result.reason}"
                )
            device = self.run.qubit_device_s(qubit)
            lines.append(f"  {qubit} device time {device:.0f} s ({device / 3600:.2f} h)")
        lines.append(self.run.device_time_line())
        if self.plots is not None:
            lines.append(f"plots: {self.plots}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "outcomes": self.run.outcomes(),
            "reasons": {
                q: {n: r.reason for n, r in rs.items()} for q, rs in self.run.results.items()
            },
            "failures": self.failures,
            "parameters": {
                q: {n: vars(p) for n, p in params.items()} for q, params in self.parameters.items()
            },
            "truth": self.truth,
            "plots": None if self.plots is None else str(self.plots),
        }


def failed_nodes(run: GraphRun) -> list[str]:
    """`qubit node: reason` of every node that could not run (`calibrations.runner` records
    an acquisition that raised as `failed`; a fit or gate that says no is `rejected`)."""
    return [
        f"{qubit} {name}: {result.reason}"
        for qubit, results in run.results.items()
        for name, result in results.items()
        if result.outcome == "failed"
    ]


def save_complete_run(
    store: SnapshotStore,
    run: GraphRun,
    station: Station,
    reason: str,
    provenance: dict[str, str],
    save_partial: bool,
) -> int | None:
    """Save the run as the new current version, unless nodes failed to run and
    `save_partial` is false; return the version (None: not saved)."""
    if failed_nodes(run) and not save_partial:
        return None
    return save_run(store, run, station, reason, provenance)


def open_lab(request: CalibrationRequest) -> tuple[Station, SimulatedDevice | None]:
    """The station to calibrate, and the simulated device behind it if there is one.

    Whatever stops a device or station file from building the lab (YAML syntax, the QCoDeS
    station schema, a driver that cannot be imported, an invalid device field) is reported
    as a `LabFileError` that names the file.
    """
    path = request.station if request.station is not None else request.device
    try:
        if request.station is not None:
            return _load_station(request.station)
        device = SimulatedDevice.from_yaml(request.device)
        return build_station(device), device
    except (FileNotFoundError, LabFileError):
        raise
    except Exception as error:
        if path is None:
            raise  # the built-in device failed: a bug, not a bad file
        message = " ".join(str(error).split()) or type(error).__name__
        where = f"{path}: " if not message.startswith(str(path)) else ""
        raise LabFileError(f"{where}{message}") from error


def _load_station(path: Path) -> tuple[Station, SimulatedDevice | None]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"station file not found: {path}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            station = load_station(path)
        except Exception as error:
            schema = " (it also fails the QCoDeS station schema)" if caught else ""
            reason = f"{type(error).__name__}: {error}"
            raise LabFileError(f"{path}: cannot load the station ({reason}){schema}") from error
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    lab = getattr(station.components["readout"], "lab", None)
    return station, getattr(lab, "device", None)


def qubits_of(
    station: Station, requested: list[str] | None, settings: CalibrationSettings | None = None
) -> list[str]:
    """The qubits to calibrate; unknown ones, requested or configured, are an error."""
    available = list(station.components["readout"].submodules)
    if settings is not None:
        settings.check_qubits(available)
    if not requested:
        return available
    unknown = [q for q in requested if q not in available]
    if unknown:
        raise ValueError(
            f"unknown qubit(s) {', '.join(unknown)}; station has {', '.join(available)}"
        )
    return requested


def run_calibration(request: CalibrationRequest) -> CalibrationOutcome:
    """Calibrate with the plain runner and save a snapshot; nothing is stored on a crash, nor
    when nodes failed to run unless the request says `save_partial`."""
    start = time.perf_counter()
    check_nodes(request.nodes)
    station, device = open_lab(request)
    qubits = qubits_of(station, request.qubits, request.settings)
    store = SnapshotStore(request.store)
    settings = effective_settings(store.path, request.settings or CalibrationSettings())
    store.check_writable()
    files = RunFiles.start(store.path, request.plot_dir)
    files.open_database()
    run = run_graph(
        station,
        qubits,
        nodes=request.nodes,
        known=current_parameters(store),
        plot_dir=files.plots,
        settings=settings,
        groups=station_groups(station, qubits),
        workers=request.workers,
    )
    provenance = {**request.provenance, **files.provenance()}
    version = save_complete_run(
        store, run, station, request.reason, provenance, request.save_partial
    )
    after_flow_run(store.path, "calibrate", run.results, version)  # run log, metrics push
    plots = files.finish(version, request.keep_databases)
    return CalibrationOutcome.stored(store, version, run, device, start, plots)


def snapshot_settings(store: Path, version: int | None) -> CalibrationSettings:
    """The settings a stored version was made with (None: the current one), every field
    explicit per qubit, to repeat that calibration. Fails if the code no longer has a field
    the snapshot set: the run could not be the same."""
    snapshot = SnapshotStore(store, create=False).load(version)
    if not snapshot.settings:
        raise SettingsError(f"snapshot v{snapshot.version} records no calibration settings")
    source = f"settings of snapshot v{snapshot.version}"
    return CalibrationSettings.from_dict({"qubits": snapshot.settings}, source=source)
