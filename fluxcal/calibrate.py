"""The main job: build the lab, run the calibration graph, store one new snapshot.

Shared by `fluxcal calibrate` (plain runner, seconds) and the Prefect flows (which reuse the
request and outcome types). On the simulated device the outcome carries the device's truth
so the command can print calibrated values next to it. The nodes are configured by the
request's calibration settings (`calibrations.settings`), which the snapshot records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qcodes import Station
from qcodes.dataset import initialise_or_create_database_at

from calibrations.persist import current_parameters, save_run
from calibrations.runner import GraphRun, run_graph
from calibrations.settings import CalibrationSettings, SettingsError
from instruments.device import SimulatedDevice
from instruments.station import build_station, load_station
from snapshots import CalibratedParameter, SnapshotStore


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


@dataclass
class CalibrationOutcome:
    version: int
    run: GraphRun
    parameters: dict[str, dict[str, CalibratedParameter]]
    truth: dict[str, dict[str, float]] | None
    wall_s: float

    @classmethod
    def stored(
        cls,
        store: SnapshotStore,
        version: int,
        run: GraphRun,
        device: SimulatedDevice | None,
        started: float,
    ) -> CalibrationOutcome:
        """The outcome of a run saved as `version`, with the truth when the chip is simulated."""
        truth = device.truth() if device is not None else None
        parameters = store.load(version).parameters
        return cls(version, run, parameters, truth, time.perf_counter() - started)

    def summary(self) -> str:
        lines = [f"snapshot v{self.version} written in {self.wall_s:.1f} s"]
        for qubit, results in self.run.results.items():
            for name, result in results.items():
                lines.append(
                    f"  {qubit} {name:<24} {result.outcome:<9} "
                    f"{result.device_s:9.1f} s  {result.reason}"
                )
            device = sum(r.device_s for r in results.values())
            lines.append(f"  {qubit} device time {device:.0f} s ({device / 3600:.2f} h)")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "outcomes": self.run.outcomes(),
            "reasons": {
                q: {n: r.reason for n, r in rs.items()} for q, rs in self.run.results.items()
            },
            "parameters": {
                q: {n: vars(p) for n, p in params.items()} for q, params in self.parameters.items()
            },
            "truth": self.truth,
        }


def open_lab(request: CalibrationRequest) -> tuple[Station, SimulatedDevice | None]:
    """The station to calibrate, and the simulated device behind it if there is one."""
    if request.station is not None:
        if not Path(request.station).is_file():
            raise FileNotFoundError(f"station file not found: {request.station}")
        station = load_station(request.station)
        lab = getattr(station.components["readout"], "lab", None)
        return station, getattr(lab, "device", None)
    device = SimulatedDevice.from_yaml(request.device)
    return build_station(device), device


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
    """Calibrate with the plain runner and save a snapshot; nothing is stored on a crash."""
    start = time.perf_counter()
    station, device = open_lab(request)
    store = SnapshotStore(request.store)
    initialise_or_create_database_at(str(Path(request.store) / "experiments.db"))
    qubits = qubits_of(station, request.qubits, request.settings)
    run = run_graph(
        station,
        qubits,
        nodes=request.nodes,
        known=current_parameters(store),
        plot_dir=request.plot_dir,
        settings=request.settings,
    )
    version = save_run(store, run, station, request.reason, request.provenance)
    return CalibrationOutcome.stored(store, version, run, device, start)


def snapshot_settings(store: Path, version: int | None) -> CalibrationSettings:
    """The settings a stored version was made with (None: the current one), every field
    explicit per qubit, to repeat that calibration. Fails if the code no longer has a field
    the snapshot set: the run could not be the same."""
    snapshot = SnapshotStore(store, create=False).load(version)
    if not snapshot.settings:
        raise SettingsError(f"snapshot v{snapshot.version} records no calibration settings")
    source = f"settings of snapshot v{snapshot.version}"
    return CalibrationSettings.from_dict({"qubits": snapshot.settings}, source=source)
