"""How a calibrating command ends: its result on stdout, and exit code 1 if nodes failed.

A run in which nodes failed to run (not a physics rejection) was not saved, unless
`--save-partial` said to: the command still prints what it did, then one error line on
stderr and exit code 1, so a script or scheduler notices. A partial run that was saved on
request exits 0 with one warning line.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from fluxcal.failures import fail
from fluxcal.tables import parameter_table

if TYPE_CHECKING:
    from fluxcal.calibrate import CalibrationOutcome


def report_outcome(outcome: CalibrationOutcome, as_json: bool) -> None:
    """Print the outcome (JSON or tables); exit 1 when it was not saved for failed nodes."""
    if as_json:
        typer.echo(json.dumps(outcome.as_json(), indent=2))
    else:
        typer.echo(outcome.summary())
        typer.echo(parameter_table(outcome.parameters, outcome.truth))
    failures = outcome.failures
    if not failures:
        return
    listed = "; ".join(failures)
    if outcome.version is None:
        fail(
            f"run not saved, {len(failures)} node(s) failed to run: {listed} "
            "(--save-partial saves the rest)"
        )
    typer.echo(f"warning: v{outcome.version} saved with node(s) that failed: {listed}", err=True)
