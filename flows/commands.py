"""The orchestration commands of the `fluxcal` CLI: server, serve, drift-check, recalibrate.

`fluxcal.cli` calls `register_commands(app)`; the flows themselves are imported only when a
command runs, so `fluxcal --help` stays fast. Bad input (unknown node or qubit, missing file,
a settings file that does not validate, inputs not calibrated yet) ends with one line on
stderr and exit code 1: files are checked before a flow run starts, so Prefect never logs a
crashed run for a typo. (No postponed annotations here: Typer reads the option types, which
are local names, from the signatures.)
"""

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

#: What the flows raise for bad input, as opposed to bugs.
BAD_INPUT = (ValueError, KeyError, FileNotFoundError, RuntimeError)


def register_commands(app: typer.Typer) -> None:
    """Add `server`, `serve`, `drift-check` and `recalibrate` to the fluxcal app."""
    from calibrations.settings import settings_from
    from fluxcal.cli import (
        ConfigOption,
        DeviceOption,
        StationOption,
        StoreOption,
        default_store,
        fail,
    )
    from fluxcal.tables import parameter_table

    JsonOption = Annotated[bool, typer.Option("--json", help="print the result as JSON")]
    QubitOption = Annotated[list[str] | None, typer.Option("--qubit", help="qubit(s); default all")]
    PrefectOption = Annotated[
        bool,
        typer.Option(
            "--prefect/--no-prefect",
            help="run as a Prefect flow (against PREFECT_API_URL, else a temporary server)",
        ),
    ]

    def text(path: Path | None) -> str | None:
        return None if path is None else str(path)

    @app.command()
    def server(
        host: Annotated[str, typer.Option(help="address to bind (no authentication!)")] = (
            "127.0.0.1"
        ),
        port: Annotated[int, typer.Option(help="port of the API and UI")] = 4200,
    ) -> None:
        """Start a Prefect server (API and UI) in the foreground, on 127.0.0.1 by default."""
        from flows.deploy import run_server

        typer.echo(
            f"Prefect UI: http://{host}:{port}  (export PREFECT_API_URL=http://{host}:{port}/api)"
        )
        raise typer.Exit(code=run_server(host, port))

    @app.command()
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
        from flows.deploy import build_deployments, describe_deployments, serve_deployments

        try:
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
        except BAD_INPUT as error:
            fail(str(error).strip("'\""))

    @app.command("drift-check")
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
    ) -> None:
        """Check every node cheaply; recalibrate what drifted; snapshot only if something did."""
        from flows.drift import drift_check, drift_check_plain
        from flows.lab import check_inputs

        try:
            check_inputs(device, station)
            settings_from(config)
            run = drift_check if prefect else drift_check_plain
            with contextlib.redirect_stdout(sys.stderr):  # stdout is for the result only
                report = run(
                    device=text(device),
                    station=text(station),
                    store=str(default_store(store)),
                    qubits=qubit,
                    now=now,
                    settings=text(config),
                )
        except BAD_INPUT as error:
            fail(str(error).strip("'\""))
        typer.echo(json.dumps(report.as_json(), indent=2) if as_json else report.summary())

    @app.command()
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
    ) -> None:
        """Recalibrate named nodes of named qubits from the current snapshot; store a snapshot."""
        from flows.lab import check_inputs, default_graph
        from flows.recalibrate import recalibrate as recalibrate_flow
        from flows.recalibrate import recalibrate_plain, selection

        try:
            check_inputs(device, station)
            settings_from(config)
            selection(default_graph(), nodes, with_dependents)
            run = recalibrate_flow if prefect else recalibrate_plain
            with contextlib.redirect_stdout(sys.stderr):  # stdout is for the result only
                outcome = run(
                    nodes=nodes,
                    qubits=qubit,
                    with_dependents=with_dependents,
                    device=text(device),
                    station=text(station),
                    store=str(default_store(store)),
                    settings=text(config),
                )
        except BAD_INPUT as error:
            fail(str(error).strip("'\""))
        if as_json:
            typer.echo(json.dumps(outcome.as_json(), indent=2))
            return
        typer.echo(outcome.summary())
        typer.echo(parameter_table(outcome.parameters, outcome.truth))
