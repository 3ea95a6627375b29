"""The calibration nodes a user can name: listed in `--help` and in the unknown-node error.

The names come from the graph (`calibrations.graph`, declared once), which imports every
experiment and QCoDeS; so this module imports it only when the names are needed, and the
commands that take `--node` list them in an epilog computed when their help is shown,
leaving `fluxcal --help` fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from typer.core import TyperCommand

if TYPE_CHECKING:
    from fluxcal.calibrations.graph import GraphEntry


def node_names(graph: Mapping[str, GraphEntry] | None = None) -> list[str]:
    """Every node of `graph` (default: the calibration graph), dependencies first."""
    from fluxcal.calibrations.graph import DEFAULT_GRAPH, order

    return order(dict(graph if graph is not None else DEFAULT_GRAPH))


def check_nodes(names: Iterable[str] | None, graph: Mapping[str, GraphEntry] | None = None) -> None:
    """Raise ValueError naming the unknown nodes among `names` and listing the known ones."""
    if names is None:
        return
    known = node_names(graph)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(
            f"unknown calibration node(s): {', '.join(unknown)}; the nodes are {', '.join(known)}"
        )


class NodeListingCommand(TyperCommand):
    """A command whose help ends with the node names, looked up only when help is shown."""

    @property
    def epilog(self) -> str:
        listed = f"Calibration nodes, dependencies first: {', '.join(node_names())}."
        return f"{self._epilog}\n\n{listed}" if self._epilog else listed

    @epilog.setter
    def epilog(self, text: str | None) -> None:
        self._epilog = text
