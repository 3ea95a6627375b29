"""`fluxcal settings ...`: write the default settings file, check a settings file.

A settings file is best started from `fluxcal settings defaults > lab.yaml` (every node and
field, with what it means) and trimmed to what the lab changes; `check` validates it the way
a calibration would, so a typo is found before the 06:00 run rather than by it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fluxcal.failures import one_line_errors

app = typer.Typer(help=__doc__, no_args_is_help=True)


@app.command()
@one_line_errors
def defaults() -> None:
    """Print the complete default settings file (YAML, every node and field, commented)."""
    from fluxcal.calibrations.settings_yaml import defaults_yaml

    typer.echo(defaults_yaml(), nl=False)


@app.command()
@one_line_errors
def check(file: Annotated[Path, typer.Argument(help="settings YAML to validate")]) -> None:
    """Validate a settings file; print what it sets, or one error line and exit 1."""
    from fluxcal.calibrations.settings import CalibrationSettings

    settings = CalibrationSettings.load(file)
    entries = list(_paths(settings.as_dict()))
    typer.echo(f"ok: {file} sets {len(entries)} value(s)")
    for path, value in entries:
        typer.echo(f"  {path} = {value}")


def _paths(data: Any, prefix: str = ""):
    """(dotted path, value) of every leaf the file sets, in file order."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, data
