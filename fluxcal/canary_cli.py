"""`fluxcal canary start|status|decide`: the command line of `fluxcal.canary`.

Loaded only when `fluxcal canary` runs (`fluxcal.lazy`); errors are one line, exit 1.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from fluxcal.failures import one_line_errors
from fluxcal.options import StoreOption, default_store

app = typer.Typer(help="Canary rollout of a calibration settings change.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]


@app.command()
@one_line_errors
def start(
    candidate: Annotated[Path, typer.Argument(help="the changed settings file")],
    settings: Annotated[
        Path, typer.Option("--settings", help="the lab's settings file it would replace")
    ],
    qubit: Annotated[list[str], typer.Option("--qubit", help="canary qubit(s)")],
    min_runs: Annotated[int, typer.Option("--min-runs", min=1, help="runs before deciding")] = 1,
    store: StoreOption = None,
) -> None:
    """Apply CANDIDATE to the canary qubits only, from the next run on."""
    from fluxcal.canary import start as begin

    canary = begin(default_store(store), candidate, settings, qubit, min_runs)
    typer.echo(
        f"canary {canary.id} running on {', '.join(canary.qubits)} from v"
        f"{canary.baseline_version}; decide after {canary.min_runs} run(s)"
    )


@app.command()
@one_line_errors
def status(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """The latest canary, and what `decide` would do now."""
    from fluxcal.canary import current, evaluate

    path = default_store(store)
    canary = current(path)
    if canary is None:
        typer.echo("no canary has been started")
        return
    evaluation = evaluate(path) if canary.state == "running" else None
    if as_json:
        record = dataclasses.asdict(canary)
        record.pop("candidate")
        if evaluation is not None:
            record["evaluation"] = dataclasses.asdict(evaluation)
        typer.echo(json.dumps(record, indent=2))
        return
    typer.echo(
        f"canary {canary.id} {canary.state}: {', '.join(canary.qubits)}, "
        f"candidate {canary.candidate_path}, started {canary.started}"
    )
    if evaluation is not None:
        typer.echo(f"would {evaluation.verdict} after {evaluation.runs} canary run(s):")
        reasons = evaluation.reasons
    else:
        typer.echo(f"decided {canary.decided}: {canary.decision}")
        reasons = canary.reasons
    typer.echo("\n".join(f"  {line}" for line in reasons))


@app.command()
@one_line_errors
def decide(
    promote: Annotated[bool, typer.Option("--promote", help="promote regardless")] = False,
    rollback: Annotated[bool, typer.Option("--rollback", help="roll back regardless")] = False,
    store: StoreOption = None,
) -> None:
    """Promote the candidate to every qubit, or roll it back, as the canary runs say."""
    from fluxcal.canary import CanaryError
    from fluxcal.canary import decide as act

    if promote and rollback:
        raise CanaryError("give --promote or --rollback, not both")
    force = "promote" if promote else "rollback" if rollback else None
    canary = act(default_store(store), force)
    done = (
        f"{canary.settings_path} now holds the candidate"
        if canary.decision == "promote"
        else "restored as snapshot v" + str(canary.restored_version)
        if canary.restored_version is not None
        else "no parameters to restore"
    )
    typer.echo(f"canary {canary.id} {canary.state}: {done}")
    typer.echo("\n".join(f"  {line}" for line in canary.reasons))
