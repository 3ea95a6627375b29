"""Where a flow run's work happens: fits on a Dask cluster, and one run per chip at a time.

Acquisition stays in the flow run's process, on the flow's thread-pool task runner: the
instruments live there. Fits are pure functions of a dataset, so with a Dask cluster named
(`dask_address`, else `FLUXCAL_DASK_ADDRESS`) each node's analysis is a `fit` task run
submitted through `prefect-dask`'s `DaskTaskRunner` to that cluster (`tcp://host:8786` from
`dask scheduler`, or any address a `distributed.Client` accepts); without one, it runs in the
node's own task.

Several workers of one work pool may pick up flow runs for the same chip; `one_run_per_chip`
holds a slot of the Prefect global concurrency limit `fluxcal-chip-<chip name>` (limit 1,
created by `fluxcal deploy`) for the whole run, so the second run waits for the first.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager

import xarray as xr
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext, TaskRunContext

from fluxcal.calibrations.node import Analysis, Node
from fluxcal.calibrations.runner import Fit, fit_here
from fluxcal.flows.worker_memory import keep_freed_memory

DASK_ADDRESS_ENV = "FLUXCAL_DASK_ADDRESS"
CHIP_LIMIT_PREFIX = "fluxcal-chip-"


@task(name="fit", task_run_name="{qubit}-{experiment}-fit", cache_policy=NO_CACHE)
def fit_task(node: Node, experiment: str, qubit: str, data: xr.Dataset) -> Analysis:
    """A node's analysis, on whichever Dask worker takes it (its allocator tuned first:
    `worker_memory`)."""
    keep_freed_memory()
    return node.analyse(data)


def dask_address(address: str | None = None) -> str | None:
    """The Dask scheduler to fit on: the argument, else the environment, else none."""
    return address or os.environ.get(DASK_ADDRESS_ENV) or None


@contextmanager
def fit_engine(address: str | None = None) -> Iterator[Fit]:
    """How this flow run fits: on the Dask cluster at `address` (see `dask_address`), or here."""
    address = dask_address(address)
    if address is None:
        yield fit_here
        return
    from prefect_dask import DaskTaskRunner

    with DaskTaskRunner(address=address) as runner:

        def fit(node: Node, qubit: str, data: xr.Dataset) -> Analysis:
            parameters = {"node": node, "experiment": node.name, "qubit": qubit, "data": data}
            submit = lambda: runner.submit(fit_task, parameters=parameters).result()  # noqa: E731
            return _without_run_parameters().run(submit)

        yield fit


def _without_run_parameters() -> contextvars.Context:
    """This context, minus the flow's and task's parameters: Prefect ships the run context
    to the Dask worker, and those parameters hold the station, whose QCoDeS instruments
    cannot be pickled (nor should they leave the process that drives them)."""
    context = contextvars.copy_context()

    def strip() -> None:
        for kind in (FlowRunContext, TaskRunContext):
            current = kind.get()
            if current is not None:
                kind.__var__.set(current.model_copy(update={"parameters": {}}))

    context.run(strip)
    return context


def chip_limit(chip: str) -> str:
    """Name of the global concurrency limit that keeps one calibration per chip running."""
    return CHIP_LIMIT_PREFIX + chip


@contextmanager
def one_run_per_chip(chip: str) -> Iterator[None]:
    """Hold the chip's concurrency slot for the body (a no-op where no limit was created)."""
    with concurrency(chip_limit(chip), occupy=1):
        yield
