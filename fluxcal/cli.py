"""`fluxcal` command line: calibrate, inspect snapshots, orchestrate with Prefect.

Bad input (a missing file, a broken device, station or settings file, an unknown node) ends
with one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from calibrations.settings import settings_from
from flows.commands import register_commands
from fluxcal.calibrate import CalibrationRequest, run_calibration, snapshot_settings
from fluxcal.settings_cli import app as settings_app
from fluxcal.tables import parameter_table
from snapshots import StoreError
from snapshots.cli import app as snapshots_app
from snapshots.cli import parse_version

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
app.add_typer(snapshots_app, name="snapshots", help="Inspect and manage calibration snapshots.")
app.add_typer(settings_app, name="settings", help="Calibration settings files.")

DeviceOption = Annotated[
    Path | None,
    typer.Option("--device", help="device.yaml of a simulated chip (default: built-in)"),
]
StationOption = Annotated[
    Path | None, typer.Option("--station", help="QCoDeS station YAML (default: simulated lab)")
]
StoreOption = Annotated[
    Path | None, typer.Option("--store", help="snapshot store directory [env FLUXCAL_STORE]")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="calibration settings YAML (`fluxcal settings defaults`)"),
]


def default_store(store: Path | None) -> Path:
    return store or Path(os.environ.get("FLUXCAL_STORE", "fluxcal-store"))


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


@app.command()
def calibrate(
    device: DeviceOption = None,
    station: StationOption = None,
    store: StoreOption = None,
    qubit: Annotated[
        list[str] | None, typer.Option("--qubit", help="qubit(s); default all")
    ] = None,
    node: Annotated[
        list[str] | None, typer.Option("--node", help="run only these nodes (default: all)")
    ] = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="write fit plots here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the new snapshot as JSON")] = False,
    prefect: Annotated[bool, typer.Option("--prefect", help="run as the Prefect flow")] = False,
    config: ConfigOption = None,
    config_from_snapshot: Annotated[
        str | None,
        typer.Option(
            "--config-from-snapshot",
            help="repeat the settings a snapshot was made with (version or 'current')",
        ),
    ] = None,
) -> None:
    """Run the calibration chain and store a new snapshot (default: built-in simulated chip)."""
    if config is not None and config_from_snapshot is not None:
        fail("give --config or --config-from-snapshot, not both")
    if prefect:
        from flows.daily import run_daily_calibration_flow as runner
    else:
        runner = run_calibration
    try:
        if config_from_snapshot is not None:
            settings = snapshot_settings(default_store(store), parse_version(config_from_snapshot))
        else:
            settings = settings_from(config)
        request = CalibrationRequest(
            device=device,
            station=station,
            store=default_store(store),
            qubits=qubit,
            nodes=node,
            plot_dir=plots,
            reason="fluxcal calibrate",
            settings=settings,
        )
        with contextlib.redirect_stdout(sys.stderr):  # QCoDeS chatter; stdout is the result
            outcome = runner(request)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError, StoreError) as error:
        fail(str(error).strip("'\""))
    if as_json:
        typer.echo(json.dumps(outcome.as_json(), indent=2))
        return
    typer.echo(outcome.summary())
    typer.echo(parameter_table(outcome.parameters, outcome.truth))


def _parse_axes(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    pairs = [item.split("=", 1) for item in text.split(",")]
    if any(len(pair) != 2 for pair in pairs):
        fail(f"--axes takes name=axis pairs separated by commas, got {text!r}")
    return {name.strip(): axis.strip() for name, axis in pairs}


@app.command()
def analyse(
    file: Annotated[Path, typer.Argument(help="recorded data: .db, .h5/.nc, .s2p, .npz, .csv")],
    experiment: Annotated[str, typer.Option("--experiment", help="node name, e.g. ramsey")],
    qubit: Annotated[str | None, typer.Option("--qubit", help="qubit in a snapshot")] = None,
    run_id: Annotated[int | None, typer.Option("--run-id", help="QCoDeS run id")] = None,
    axes: Annotated[
        str | None, typer.Option("--axes", help="npz/CSV: array=axis pairs, e.g. xs=flux_voltage")
    ] = None,
    data: Annotated[str, typer.Option("--data", help="npz/CSV: the data array")] = "data",
    plot: Annotated[Path | None, typer.Option("--plot", help="write the fit figure")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Re-run one experiment's analysis and gate on a recorded file (no instrument)."""
    from fluxcal.analyse import analyse_file

    try:
        result = analyse_file(file, experiment, qubit, run_id, _parse_axes(axes), data, plot)
    except (ValueError, KeyError, OSError) as error:
        fail(" ".join(str(error).strip("'\"").split()))
    typer.echo(json.dumps(result.as_json(), indent=2) if as_json else result.text())


# Prefect commands (server, serve, drift-check, recalibrate) use the options defined above.
register_commands(app)
