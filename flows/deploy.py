"""Deployments of the three flows and the Prefect server that schedules them.

`fluxcal server` runs `prefect server start` (API and UI) bound to 127.0.0.1 unless told
otherwise: the server has no authentication. `fluxcal serve` registers the deployments with
the server named by PREFECT_API_URL and executes their runs in this process's children:

- `daily-calibration/fluxcal` on a cron schedule, default 06:00 in the local time zone (a
  cron schedule without a time zone runs in UTC, so the local zone is always passed);
- `drift-check/fluxcal` on an interval, default hourly;
- `recalibrate/fluxcal` on demand (from the UI or `prefect deployment run`).

At most one run executes at a time: the flows share the instruments.

For several hosts, `fluxcal deploy --pool NAME` registers the same deployments with a
Prefect work pool of type `process` (created if missing) instead of serving them here:
every host that runs `prefect worker start --pool NAME` (with fluxcal installed) picks up
flow runs, one process each, and the chip's global concurrency limit (created here, limit
1; `flows.engine.one_run_per_chip`) keeps one calibration per chip at a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron, Interval

DEPLOYMENT = "fluxcal"
DAILY_CRON = "0 6 * * *"
DRIFT_INTERVAL_S = 3600.0
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4200


def local_timezone() -> str:
    """IANA name of this machine's time zone (TZ, /etc/localtime, or the OS setting)."""
    import tzlocal

    return tzlocal.get_localzone_name() or "UTC"


def flow_parameters(
    device: Path | None, station: Path | None, store: Path, settings: Path | None = None
) -> dict[str, str | None]:
    """What every deployed run is given: absolute paths, since runs start in other processes.

    The settings file is passed by path, not content, so an edit reaches the next run
    without redeploying (and a broken edit fails that run with the field named).
    """

    def absolute(path: Path | None) -> str | None:
        return None if path is None else str(Path(path).resolve())

    return {
        "device": absolute(device),
        "station": absolute(station),
        "store": absolute(store),
        "settings": absolute(settings),
    }


def build_deployments(
    device: Path | None,
    station: Path | None,
    store: Path,
    cron: str = DAILY_CRON,
    timezone: str | None = None,
    interval_s: float = DRIFT_INTERVAL_S,
    settings: Path | None = None,
) -> list[RunnerDeployment]:
    from fluxcal.flows.daily import daily_calibration
    from fluxcal.flows.drift import drift_check
    from fluxcal.flows.recalibrate import recalibrate

    zone = timezone or local_timezone()
    parameters = flow_parameters(device, station, store, settings)
    common: dict[str, Any] = {
        "name": DEPLOYMENT,
        "parameters": parameters,
        "entrypoint_type": EntrypointType.MODULE_PATH,  # flows is installed: works from any cwd
        "tags": ["fluxcal"],
    }
    return [
        daily_calibration.to_deployment(
            schedule=Cron(cron, timezone=zone),
            description=f"Whole calibration graph at '{cron}' ({zone}).",
            **common,
        ),
        drift_check.to_deployment(
            schedule=Interval(interval_s, timezone=zone),
            description=f"Cheap checks every {interval_s:g} s; recalibrates what drifted.",
            **common,
        ),
        recalibrate.to_deployment(
            description="On demand: named nodes (and optionally dependents) of named qubits.",
            **common,
        ),
    ]


def describe_deployments(deployments: list[RunnerDeployment]) -> list[dict[str, Any]]:
    """Name, schedule and parameters of each deployment, for printing."""
    out = []
    for deployment in deployments:
        schedules = [s.schedule for s in deployment.schedules or []]
        out.append(
            {
                "deployment": f"{deployment.flow_name}/{deployment.name}",
                "schedules": [s.model_dump(mode="json", exclude_none=True) for s in schedules],
                "parameters": deployment.parameters,
            }
        )
    return out


def serve_deployments(deployments: list[RunnerDeployment]) -> None:
    """Register the deployments and run their flow runs until interrupted (SIGTERM/Ctrl-C)."""
    from prefect import serve
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise RuntimeError(
            "PREFECT_API_URL is not set: start a server with `fluxcal server` and export "
            f"PREFECT_API_URL=http://{DEFAULT_HOST}:{DEFAULT_PORT}/api"
        )
    serve(*deployments, limit=1)


def server_command(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> list[str]:
    return [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]


def server_env(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, base: dict[str, str] | None = None
) -> dict[str, str]:
    """Environment of the server process. The UI asks the server where the API is, and the
    server answers with its default port (4200) unless PREFECT_UI_API_URL says otherwise,
    so it is set to this server's address (a value already in the environment wins)."""
    return {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": f"http://{host}:{port}/api",
        **(os.environ if base is None else base),
    }


def run_server(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
    """`prefect server start` in the foreground; returns its exit code."""
    try:
        command = server_command(host, port)
        return subprocess.run(command, env=server_env(host, port), check=False).returncode
    except KeyboardInterrupt:
        return 0


def create_chip_limit(chip: str) -> str:
    """Create (or reset to 1) the chip's global concurrency limit; return its name."""
    from prefect import get_client

    from fluxcal.flows.engine import chip_limit

    name = chip_limit(chip)
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, limit=1)
    return name


def create_process_pool(pool: str) -> None:
    """Create the process work pool `pool` unless it exists."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))


def deploy_to_pool(deployments: list[RunnerDeployment], pool: str, chip: str) -> list[str]:
    """Register the deployments with the process pool `pool` (created if missing) and the
    chip's concurrency limit; workers started on any host then run the flow runs."""
    from prefect.deployments.runner import deploy

    create_process_pool(pool)
    create_chip_limit(chip)
    ids = deploy(
        *deployments, work_pool_name=pool, build=False, push=False, print_next_steps_message=False
    )
    return [str(i) for i in ids]
