"""`fluxcal metrics`: serve the store's Prometheus metrics on 127.0.0.1, or print them once.

Bound to loopback like `fluxcal server` (the exporter has no authentication): a Prometheus
on another machine reaches it through an SSH tunnel or a local reverse proxy. Typer alone is
imported at start-up; prometheus_client and the store load when the command runs.
"""

from __future__ import annotations

import threading
from typing import Annotated

import typer

from fluxcal.failures import one_line_errors
from fluxcal.options import StoreOption, default_store

#: Default port of the exporter (unassigned in the Prometheus default-port list).
DEFAULT_PORT = 9810
HOST = "127.0.0.1"


@one_line_errors
def metrics(
    store: StoreOption = None,
    port: Annotated[int, typer.Option("--port", help="port on 127.0.0.1", min=1, max=65535)] = (
        DEFAULT_PORT
    ),
    once: Annotated[
        bool, typer.Option("--once", help="print the metrics (text format) and exit")
    ] = False,
) -> None:
    """Serve Prometheus metrics of the store (parameters, ages, outcomes, drift checks)."""
    from prometheus_client import CollectorRegistry, generate_latest, start_http_server

    from fluxcal.metrics import StoreCollector, graph_slos
    from fluxcal.snapshots import SnapshotStore

    path = SnapshotStore(default_store(store), create=False).path  # a missing store fails here
    registry = CollectorRegistry()
    registry.register(StoreCollector(path, graph_slos()))
    if once:
        typer.echo(generate_latest(registry).decode("utf-8"), nl=False)
        return
    server, thread = start_http_server(port, addr=HOST, registry=registry)
    typer.echo(f"serving metrics of {path} on http://{HOST}:{port}/metrics", err=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        thread.join(timeout=5)
