"""A temporary Prefect server in a subprocess: for benchmarks and tests against a real API.

`fluxcal server`'s command and environment, with a PREFECT_HOME of its own (its own SQLite
database, nothing shared with the user's server) and a free port. The process is always
stopped by its PID, never by name, so other servers on the machine are left alone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fluxcal.flows.deploy import server_command, server_env

QUIET_PREFECT = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    """This process's environment with its own PREFECT_HOME and, if given, API URL."""
    env = {**os.environ, **QUIET_PREFECT, "PREFECT_HOME": str(home)}
    for name in ("PREFECT_API_URL", "PREFECT_UI_API_URL"):
        env.pop(name, None)
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    return env


def start_server(home: Path, port: int, log: Path) -> subprocess.Popen:
    """`fluxcal server`'s command and environment, as a background process."""
    env = server_env("127.0.0.1", port, prefect_env(home))
    with open(log, "wb") as out:
        return subprocess.Popen(
            server_command("127.0.0.1", port), env=env, stdout=out, stderr=subprocess.STDOUT
        )


def wait_healthy(url: str, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Return once `url`/health answers; raise if the server exits or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Prefect server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"Prefect server at {url} not healthy after {timeout_s:g} s")


def stop_process(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace_s`."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace_s)


@contextmanager
def temporary_server(timeout_s: float = 120.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """(API URL, server process) of a fresh server in a temporary PREFECT_HOME, stopped by
    PID on leaving; its log is printed if it does not come up."""
    with tempfile.TemporaryDirectory(prefix="fluxcal-prefect-") as home:
        port = free_port()
        log = Path(home) / "server.log"
        process = start_server(Path(home), port, log)
        try:
            url = f"http://127.0.0.1:{port}/api"
            try:
                wait_healthy(url, process, timeout_s)
            except (RuntimeError, TimeoutError):
                print(log.read_text(errors="replace")[-4000:])
                raise
            yield url, process
        finally:
            stop_process(process)


@contextmanager
def api(url: str) -> Iterator[None]:
    """Context in which the Prefect clients of this process talk to the server at `url`.

    Prefect's events worker (task runs are recorded from its events) and its log worker are
    one per process whatever the API URL (the instance is keyed by client type only), bound
    to the API in use when the first run started them, and otherwise drained only at exit.
    They are drained on entering, so the next ones bind to `url`, and on leaving, so every
    event of the runs made here has reached `url` before anyone reads them back.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    flush_to_server()
    with temporary_settings(updates={PREFECT_API_URL: url}):
        try:
            yield
        finally:
            flush_to_server()


def flush_to_server(timeout_s: float = 30.0) -> None:
    """Send what this process still holds for the server: the events Prefect 3 records task
    runs from, and the run logs. Both go through background workers that otherwise drain
    only at interpreter exit: after the server has gone, or after a test has read back."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (EventsWorker, APILogWorker):
        worker.drain_all(timeout=timeout_s, at_exit=False)
