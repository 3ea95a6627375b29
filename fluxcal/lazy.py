"""A sub-command group that is imported only when it is used.

`fluxcal snapshots ...` lives in `snapshots.cli`, and importing anything from the `snapshots`
package loads h5py and xarray (about 0.4 s). `fluxcal --help` only needs the group's help
line, so the root group holds this stand-in, which imports the real group on first use.
"""

from __future__ import annotations

import functools
import importlib

import typer
from typer.core import TyperGroup


class LazyGroup(TyperGroup):
    """Stands in for the Typer app at `target` ('module:attribute'), loaded when used."""

    def __init__(self, name: str, target: str, help: str):
        super().__init__(name=name, help=help, no_args_is_help=True)
        self._target = target

    @functools.cached_property
    def _group(self) -> TyperGroup:
        module, attribute = self._target.split(":")
        group = typer.main.get_command(getattr(importlib.import_module(module), attribute))
        if not isinstance(group, TyperGroup):
            raise TypeError(f"{self._target} is not a Typer app with sub-commands")
        return group

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return self._group.list_commands(ctx)

    def get_command(self, ctx: typer.Context, cmd_name: str):
        return self._group.get_command(ctx, cmd_name)
