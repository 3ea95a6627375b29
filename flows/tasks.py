"""Calibration nodes as Prefect tasks, retried on instrument faults and never on physics.

A task runs one node on one qubit through the plain runner's `run_node`, which turns every
outcome into a `NodeResult` except instrument faults (TimeoutError, ConnectionError) when asked
to re-raise them: those fail the task run and Prefect retries it. A rejected fit is a result,
not an exception, so it is never retried. Each task run is named `<qubit>-<node>` and
publishes the node's fit report (with its plot) as an artifact.

`TaskExecutor` is the walker's executor in the flows (`calibrations.walker`): it submits each
node to the flow's task runner with its dependencies' task runs as `wait_for`, so the UI
draws the graph, and qubits the walker runs concurrently show side by side. Its fit reports
are posted from a background thread (`ReportPoster`): an artifact is one HTTP request that
a busy server answers in ~40 ms, most of Prefect's cost per task
(`benchmarks/bench_fleet.py --prefect`), and no node needs to wait for it.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

from prefect import get_client, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import ArtifactCreate
from prefect.context import AsyncClientContext, SyncClientContext
from prefect.futures import PrefectFuture
from prefect.states import Completed, Failed, State

from fluxcal.calibrations.graph import GraphEntry
from fluxcal.calibrations.node import now_iso
from fluxcal.calibrations.runner import INSTRUMENT_FAULTS, Fit, NodeResult, fit_here, run_node
from fluxcal.calibrations.session import QubitSession
from fluxcal.calibrations.settings import CalibrationSettings
from fluxcal.flows.artifacts import fit_report_request, publish_fit_report

#: Attempts after the first when an acquisition times out or loses its connection.
FAULT_RETRIES = 2
#: Pause before a retry: long enough for a hiccuping instrument, short for the simulator.
FAULT_RETRY_DELAY_S = 1.0
Publish = Callable[[NodeResult], None]
logger = logging.getLogger(__name__)


def is_instrument_fault(task: Any, task_run: Any, state: State) -> bool:
    """Prefect retry condition: retry only a task that failed with an instrument fault."""
    try:
        state.result()
    except INSTRUMENT_FAULTS:
        return True
    except Exception:
        return False
    return False


@task(
    name="calibrate",
    task_run_name="{qubit}-{node}",
    retries=FAULT_RETRIES,
    retry_delay_seconds=FAULT_RETRY_DELAY_S,
    retry_condition_fn=is_instrument_fault,
    cache_policy=NO_CACHE,  # a calibration measures the chip now: never reuse a result
)
def calibrate_node(
    qubit: str,
    node: str,
    entry: GraphEntry,
    session: QubitSession,
    plot_dir: Path,
    settings: CalibrationSettings | None = None,
    fit: Fit = fit_here,
    publish: Publish = publish_fit_report,
) -> State:
    """acquire → analyse → gate → update for one node, configured by `settings`, its fit run
    by `fit` (here, or a Dask task: `flows.engine`); the fit report becomes an artifact
    through `publish` (here, or posted in the background: `ReportPoster`).

    The task run ends as `Accepted` or `Rejected` (both completed: a rejection is a result),
    or `Failed` when the node could not run.
    """
    result = run_node(
        entry, node, session, plot_dir, reraise_faults=True, settings=settings, fit=fit
    )
    publish(result)
    if result.outcome == "failed":
        return Failed(data=result, message=result.reason)
    return Completed(data=result, name=result.outcome.capitalize(), message=result.reason)


class ReportPoster:
    """Posts fit reports as artifacts from one background thread; `close` waits for them.

    The report is made in its task run (`fit_report_request`: the artifact is linked to that
    task run and flow run) and posted by one client of the poster's own, opened in the
    caller's context (the same API) on first use. A report that cannot be posted is logged,
    never a failed calibration.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fluxcal-reports")
        self._posts: list[Future] = []
        self._lock = threading.Lock()
        self._context = contextvars.copy_context()
        self._context.run(_forget_clients)  # a run's client closes with its run
        self._client: SyncPrefectClient | None = None

    def __call__(self, result: NodeResult) -> None:
        request = fit_report_request(result)
        post = self._pool.submit(self._context.run, self._post, request)
        with self._lock:
            self._posts.append(post)

    def _post(self, request: ArtifactCreate) -> None:
        if self._client is None:
            self._client = get_client(sync_client=True)
            self._client.__enter__()
        self._client.create_artifact(request)

    def close(self) -> None:
        with self._lock:
            posts, self._posts = self._posts, []
        for post in posts:
            if post.exception() is not None:
                logger.warning("fit report not posted: %s", post.exception())
        if self._client is not None:
            self._pool.submit(self._context.run, self._client.__exit__, None, None, None).result()
        self._pool.shutdown()


def _forget_clients() -> None:
    for kind in (SyncClientContext, AsyncClientContext):
        kind.__var__.set(None)


class TaskExecutor:
    """Runs nodes as `calibrate` task runs for the walker, from any of its threads; use it
    as a context manager, so every fit report is posted before the flow run goes on."""

    def __init__(
        self, plot_dir: Path, settings: CalibrationSettings | None = None, fit: Fit = fit_here
    ):
        self.plot_dir = plot_dir
        self.settings = settings
        self.fit = fit
        self._futures: dict[tuple[str, str], PrefectFuture] = {}
        self._lock = threading.Lock()
        self._reports = ReportPoster()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._reports.close()

    def __call__(self, name: str, entry: GraphEntry, session: QubitSession) -> NodeResult:
        """Submit the node after its dependencies' task runs; a task that failed for good
        (retries spent) becomes a failed result."""
        qubit = session.qubit
        with self._lock:
            upstream = [
                self._futures[qubit, d] for d in entry.depends_on if (qubit, d) in self._futures
            ]
        future = calibrate_node.submit(
            qubit,
            name,
            entry,
            session,
            self.plot_dir,
            self.settings,
            self.fit,
            self._reports,
            wait_for=upstream,
        )
        with self._lock:
            self._futures[qubit, name] = future
        future.wait()
        value = future.state.result(raise_on_failure=False)
        if isinstance(value, NodeResult):
            return value
        if isinstance(value, INSTRUMENT_FAULTS):
            reason = f"instrument fault, {calibrate_node.retries + 1} attempts: {value}"
        else:
            reason = f"task failed: {value}"
        return NodeResult(name, qubit, "failed", reason, finished=now_iso())
