"""The orchestration commands of the `fluxcal` CLI: server, serve, drift-check, recalibrate.

`fluxcal.cli` calls `register_commands(app)`; the flows themselves are imported only when a
command runs, so `fluxcal --help` stays fast. Bad input (unknown node or qubit, missing file
or store, a settings file that does not validate, inputs not calibrated yet) ends with one
line on stderr and exit code 1 (`fluxcal.failures`): files and the store are checked before
a flow run starts, so Prefect never logs a crashed run for a typo. (No postponed annotations
here: Typer reads the option types, which are local names, from the signatures.)
"""

import json
from pathlib import Path
from typing import Annotated

import typer

from fluxcal.chatter import measurement_output
from fluxcal.failures import one_line_errors
from fluxcal.nodes import NodeListingCommand
from fluxcal.options import (
    ConfigOption,
    DeviceOption,
    QubitOption,
    SavePartialOption,
    StationOption,
    StoreOption,
    VerboseOption,
    default_store,
)

JsonOption = Annotated[bool, typer.Option("--json", help="print the result as JSON")]
PrefectOption = Annotated[
    bool,
    typer.Option(
        "--prefect/--no-prefect",
        help="run as a Prefect flow (against PREFECT_API_URL, else a temporary server)",
    ),
]


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def register_commands(app: typer.Typer) -> None:
    """Add `server`, `serve`, `drift-check` and `recalibrate` to the fluxcal app."""
    app.command()(one_line_errors(server))
    app.command()(one_line_errors(serve))
    app.command("drift-check")(one_line_errors(drift_check_command))
    app.command(cls=NodeListingCommand)(one_line_errors(recalibrate))


def server(
    host: Annotated[str, typer.Option(help="address to bind (no authentication!)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port of the API and UI")] = 4200,
) -> None:
    """Start a Prefect server (API and UI) in the foreground, on 127.0.0.1 by default."""
    from fluxcal.flows.deploy import run_server

    typer.echo(
        f"Prefect UI: http://{host}:{port}  (export PREFECT_API_URL=http://{host}:{port}/api)"
    )
    raise typer.Exit(code=run_server(host, port))


def serve(
    device: DeviceOption = None,
    station: StationOption = None,
    store: StoreOption = None,
    cron: Annotated[
        str, typer.Option(help="daily-calibration schedule (cron, local time)")
    ] = "0 6 * * *",
    timezone: Annotated[
        str | None, typer.Option(help="IANA time zone of the cron (default: this machine's)")
    ] = None,
    interval: Annotated[float, typer.Option(help="drift-check period in seconds")] = 3600.0,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register the deployments with PREFECT_API_URL's server and run them until stopped.

    Each run reads --config afresh: edits take effect at the next run.
    """
    from fluxcal.calibrations.settings import settings_from
    from fluxcal.flows.deploy import build_deployments, describe_deployments, serve_deployments

    settings_from(config)
    deployments = build_deployments(
        device, station, default_store(store), cron, timezone, interval, config
    )
    described = describe_deployments(deployments)
    if as_json:
        typer.echo(json.dumps(described, indent=2))
    else:
        for item in described:
            typer.echo(f"{item['deployment']}: {item['schedules'] or 'on demand'}")
    serve_deployments(deployments)


def drift_check_command(
    device: DeviceOption = None,
    station: StationOption = None,
    store: StoreOption = None,
    qubit: QubitOption = None,
    now: Annotated[
        str | None, typer.Option(help="ISO 8601 time to age parameters against (default: now)")
    ] = None,
    prefect: PrefectOption = True,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Check every node cheaply; recalibrate what drifted; snapshot only if something did.

    Works on an existing store only (a mistyped --store is an error, not a new store).
    """
    from fluxcal.calibrations.settings import settings_from
    from fluxcal.flows.drift import drift_check, drift_check_plain
    from fluxcal.flows.lab import check_inputs
    from fluxcal.snapshots import SnapshotStore

    check_inputs(device, station)
    settings_from(config)
    SnapshotStore(default_store(store), create=False)
    run = drift_check if prefect else drift_check_plain
    with measurement_output(verbose):
        report = run(
            device=_text(device),
            station=_text(station),
            store=str(default_store(store)),
            qubits=qubit,
            now=now,
            settings=_text(config),
        )
    typer.echo(json.dumps(report.as_json(), indent=2) if as_json else report.summary())


def recalibrate(
    nodes: Annotated[list[str], typer.Argument(help="calibration node(s), e.g. rabi ramsey")],
    device: DeviceOption = None,
    station: StationOption = None,
    store: StoreOption = None,
    qubit: QubitOption = None,
    with_dependents: Annotated[
        bool, typer.Option("--with-dependents", help="also every node downstream")
    ] = False,
    prefect: PrefectOption = True,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    save_partial: SavePartialOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Recalibrate named nodes of named qubits from the current snapshot; store a snapshot."""
    from fluxcal.calibrations.settings import settings_from
    from fluxcal.flows.lab import check_inputs, default_graph
    from fluxcal.flows.recalibrate import recalibrate as recalibrate_flow
    from fluxcal.flows.recalibrate import recalibrate_plain, selection
    from fluxcal.nodes import check_nodes
    from fluxcal.report import report_outcome

    check_inputs(device, station)
    settings_from(config)
    check_nodes(nodes)
    selection(default_graph(), nodes, with_dependents)
    run = recalibrate_flow if prefect else recalibrate_plain
    with measurement_output(verbose):
        outcome = run(
            nodes=nodes,
            qubits=qubit,
            with_dependents=with_dependents,
            device=_text(device),
            station=_text(station),
            store=str(default_store(store)),
            settings=_text(config),
            save_partial=save_partial,
        )
    report_outcome(outcome, as_json)
