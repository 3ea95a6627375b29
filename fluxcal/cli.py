"""`fluxcal` command line: calibrate, inspect snapshots, orchestrate with Prefect.

Bad input (a missing file, a broken device, station or settings file, an unknown node, a
missing or damaged store) ends with one line on stderr and a non-zero exit, never a
traceback (`fluxcal.failures`). Start-up stays fast: this module imports only Typer, and
each command imports the calibration stack (QCoDeS, Prefect, lmfit, xarray) when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from fluxcal.chatter import measurement_output
from fluxcal.failures import fail, one_line_errors
from fluxcal.flows.commands import register_commands
from fluxcal.lazy import LazyGroup
from fluxcal.metrics_cli import metrics
from fluxcal.nodes import NodeListingCommand
from fluxcal.options import (
    KEEP_DATABASES,
    ConfigOption,
    DeviceOption,
    KeepDatabasesOption,
    QubitOption,
    SavePartialOption,
    StationOption,
    StoreOption,
    VerboseOption,
    default_store,
)
from fluxcal.settings_cli import app as settings_app


class FluxcalGroup(TyperGroup):
    """The root command group, with `snapshots` and `canary` loaded only when used."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        help = "Inspect and manage calibration snapshots."
        self.add_command(LazyGroup("snapshots", "fluxcal.snapshots.cli:app", help))
        help = "Roll a settings change out to canary qubits first, then promote or roll back."
        self.add_command(LazyGroup("canary", "fluxcal.canary_cli:app", help))


app = typer.Typer(
    help="Calibrate fluxonium qubits into versioned snapshots, inspect them, run it with Prefect.",
    no_args_is_help=True,
    add_completion=False,
    cls=FluxcalGroup,
)
app.add_typer(settings_app, name="settings", help="Calibration settings files.")


@app.command(cls=NodeListingCommand)
@one_line_errors
def calibrate(
    device: DeviceOption = None,
    station: StationOption = None,
    store: StoreOption = None,
    qubit: QubitOption = None,
    node: Annotated[
        list[str] | None,
        typer.Option("--node", help="run only these nodes (default: all, listed below)"),
    ] = None,
    plots: Annotated[
        Path | None, typer.Option("--plots", help="keep fit plots in DIR/v<version>/")
    ] = None,
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
    save_partial: SavePartialOption = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="qubits walked at once (only qubits that share no line, per the device file)",
        ),
    ] = 1,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            help="Dask scheduler address for the fits (with --prefect); "
            "default $FLUXCAL_DASK_ADDRESS",
        ),
    ] = None,
    keep_databases: KeepDatabasesOption = KEEP_DATABASES,
    verbose: VerboseOption = False,
) -> None:
    """Run the calibration chain and store a new snapshot (default: built-in simulated chip)."""
    if config is not None and config_from_snapshot is not None:
        fail("give --config or --config-from-snapshot, not both")
    from fluxcal.calibrate import CalibrationRequest, run_calibration, snapshot_settings
    from fluxcal.calibrations.settings import settings_from
    from fluxcal.report import report_outcome
    from fluxcal.snapshots.cli import parse_version

    if prefect:
        from fluxcal.flows.daily import run_daily_calibration_flow as runner
    else:
        runner = run_calibration
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
        save_partial=save_partial,
        workers=workers,
        dask_address=dask,
        keep_databases=keep_databases,
    )
    with measurement_output(verbose):
        outcome = runner(request)
    report_outcome(outcome, as_json)


@app.command()
@one_line_errors
def deploy(
    pool: Annotated[str, typer.Option("--pool", help="Prefect work pool (type process)")],
    device: DeviceOption = None,
    station: StationOption = None,
    store: StoreOption = None,
    config: ConfigOption = None,
) -> None:
    """Register the deployments with a work pool, for `prefect worker start --pool` on N hosts.

    Also creates the chip's concurrency limit (one calibration per chip at a time).
    """
    from fluxcal.calibrate import CalibrationRequest, open_lab
    from fluxcal.calibrations.settings import settings_from
    from fluxcal.flows.deploy import build_deployments, deploy_to_pool
    from fluxcal.flows.lab import check_inputs

    check_inputs(device, station)
    settings_from(config)
    _, simulated = open_lab(CalibrationRequest(device=device, station=station))
    chip = simulated.config.name if simulated is not None else "station"
    deployments = build_deployments(device, station, default_store(store), settings=config)
    for deployment_id in deploy_to_pool(deployments, pool, chip):
        typer.echo(f"deployment {deployment_id} on work pool {pool}")


def _parse_axes(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    pairs = [item.split("=", 1) for item in text.split(",")]
    if any(len(pair) != 2 for pair in pairs):
        fail(f"--axes takes name=axis pairs separated by commas, got {text!r}")
    return {name.strip(): axis.strip() for name, axis in pairs}


@app.command()
@one_line_errors
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
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Re-run one experiment's analysis and gate on a recorded file (no instrument)."""
    import json

    from fluxcal.analyse import analyse_file

    result = analyse_file(
        file, experiment, qubit, run_id, _parse_axes(axes), data, plot, settings=config
    )
    typer.echo(json.dumps(result.as_json(), indent=2) if as_json else result.text())


# Prefect commands (server, serve, drift-check, recalibrate) use the options of fluxcal.options.
register_commands(app)
app.command("metrics")(metrics)
