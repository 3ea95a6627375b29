"""Calibration nodes as Prefect tasks, retried on instrument faults and never on physics.

A task runs one node on one qubit through the plain runner's `run_node`, which turns every
outcome into a `NodeResult` except instrument faults (TimeoutError, ConnectionError) when asked
to re-raise them: those fail the task run and Prefect retries it. A rejected fit is a result,
not an exception, so it is never retried. Each task run is named `<qubit>-<node>` and
publishes the node's fit report (with its plot) as an artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from calibrations.graph import GraphEntry
from calibrations.node import now_iso
from calibrations.runner import INSTRUMENT_FAULTS, NodeResult, run_node
from calibrations.session import QubitSession
from calibrations.settings import CalibrationSettings
from flows.artifacts import publish_fit_report

#: Attempts after the first when an acquisition times out or loses its connection.
FAULT_RETRIES = 2
#: Pause before a retry: long enough for a hiccuping instrument, short for the simulator.
FAULT_RETRY_DELAY_S = 1.0


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
) -> State:
    """acquire → analyse → gate → update for one node, configured by `settings`; the fit
    report becomes an artifact.

    The task run ends as `Accepted` or `Rejected` (both completed: a rejection is a result),
    or `Failed` when the node could not run.
    """
    result = run_node(entry, node, session, plot_dir, reraise_faults=True, settings=settings)
    publish_fit_report(result)
    if result.outcome == "failed":
        return Failed(data=result, message=result.reason)
    return Completed(data=result, name=result.outcome.capitalize(), message=result.reason)


def run_calibration_task(
    qubit: str,
    node: str,
    entry: GraphEntry,
    session: QubitSession,
    plot_dir: Path,
    settings: CalibrationSettings | None = None,
) -> NodeResult:
    """Run the task; a task that failed for good (retries spent) becomes a failed result."""
    state = calibrate_node(qubit, node, entry, session, plot_dir, settings, return_state=True)
    value = state.result(raise_on_failure=False)
    if isinstance(value, NodeResult):
        return value
    error = value
    if isinstance(error, INSTRUMENT_FAULTS):
        reason = f"instrument fault, {calibrate_node.retries + 1} attempts: {error}"
    else:
        reason = f"task failed: {error}"
    return NodeResult(node, qubit, "failed", reason, finished=now_iso())
